"""`deploy render` and `deploy env`: the invocation, the resolved model or stack file, the
variables; every value masked as data (identifiers never are)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from deployer.cli.render.table import table
from deployer.core.command import Command
from deployer.core.desired import SafeDumper, dump_compose, dump_stack, load_compose
from deployer.core.results import Rendering, StackRendering
from deployer.core.variables import MASK, Redactor, Variables


def variables_rows(variables: Variables, redact: Redactor) -> list[dict[str, Any]]:
    """Each variable; a secret's value is masked, and so is a secret inside another value."""
    return [
        {
            "name": v.name,
            "value": MASK if v.secret else redact(v.value),
            "source": v.source,
            "secret": v.secret,
        }
        for v in sorted(variables.items.values(), key=lambda v: v.name)
    ]


def variables_text(variables: Variables, redact: Redactor) -> str:
    rows = [("NAME", "VALUE", "SOURCE")]
    for row in variables_rows(variables, redact):
        rows.append((row["name"], _one_line(row["value"]), row["source"]))
    return table(rows)


def _one_line(value: str) -> str:
    """A value shown in a table: quoted where whitespace or control characters would hide it."""
    if value == MASK or (value.isprintable() and value.strip() == value and value):
        return value
    return json.dumps(value, ensure_ascii=False)


# Keys of a compose model whose values name things rather than carry configuration values.
IDENTIFIER_KEYS = frozenset(
    {"image", "container_name", "hostname", "domainname", "name", "network_mode", "driver"}
    | {"source", "target", "platform", "pull_policy", "restart", "condition", "type"}
)


# Mappings whose keys are names chosen by the user, not compose keys: their values are all values.
VALUE_MAPPINGS = frozenset({"environment", "labels", "annotations", "args", "sysctls"})


def masked(value: Any, redact: Redactor, key: str = "") -> Any:
    """`value` with secret values masked in every string except identifiers; keys, booleans and
    numbers are never touched."""
    if isinstance(value, Mapping):
        if key in VALUE_MAPPINGS:
            items = {k: masked(v, redact) for k, v in value.items()}
        else:
            items = {k: masked(v, redact, str(k)) for k, v in value.items()}
        # A Replacement stays one: it is written back as `!override`.
        return type(value)(items) if isinstance(value, dict) else items
    if isinstance(value, list | tuple):
        return [masked(v, redact, key) for v in value]
    if isinstance(value, str) and key not in IDENTIFIER_KEYS:
        return redact(value)
    return value


def masked_model(
    model: Mapping[str, Any], is_secret: Callable[[str], bool], redact: Redactor
) -> dict[str, Any]:
    """The resolved compose model with secret variables' values masked, as data."""
    document: dict[str, Any] = masked(model, redact)
    for service in document.get("services", {}).values():
        environment = service.get("environment") or {}
        for name in environment:
            if is_secret(name):
                environment[name] = MASK
    return document


def _masked_override(command: Command, redact: Redactor) -> str | None:
    if command.stdin is None:
        return None
    return dump_compose(masked(load_compose(command.stdin), redact))


def render_text(command: Command, model: Mapping[str, Any], redact: Redactor) -> str:
    override = _masked_override(command, redact)
    stdin = (" <<'OVERRIDE'", f"{override}OVERRIDE\n") if override else ("", "")
    invocation = f"{command.shell(redact)}{stdin[0]}\n{command.here_documents(redact)}{stdin[1]}"
    dumped = yaml.dump(dict(model), Dumper=SafeDumper, sort_keys=False, allow_unicode=True)
    return f"# invocation\n{invocation}\n# resolved compose model\n{dumped}"


def render_document(command: Command, model: Mapping[str, Any], redact: Redactor) -> dict[str, Any]:
    return {
        "argv": list(command.argv),
        "env": command.shown_env(redact),
        "stdin": _masked_override(command, redact),
        "files": {path: redact(file.shown) for path, file in command.files.items()},
        "shell": command.shell(redact),
        "model": dict(model),
    }


def stack_render_text(command: Command, stack: Mapping[str, Any], redact: Redactor) -> str:
    """The `docker stack deploy` invocation with its stack file (masked) on stdin."""
    return f"# invocation\n{command.shell(redact)} <<'STACK'\n{dump_stack(stack)}STACK"


def stack_render_document(
    command: Command, stack: Mapping[str, Any], redact: Redactor
) -> dict[str, Any]:
    return {
        "argv": list(command.argv),
        "env": command.shown_env(redact),
        "stdin": dump_stack(stack),
        "shell": command.shell(redact),
        "stack": dict(stack),
    }


def rendering_text(rendering: Rendering, redact: Redactor) -> str:
    if isinstance(rendering, StackRendering):
        stack = masked_model(rendering.stack, rendering.is_secret, redact)
        return stack_render_text(rendering.command, stack, redact)
    model = masked_model(rendering.model, rendering.is_secret, redact)
    return render_text(rendering.command, model, redact)


def rendering_document(rendering: Rendering, redact: Redactor) -> dict[str, Any]:
    if isinstance(rendering, StackRendering):
        stack = masked_model(rendering.stack, rendering.is_secret, redact)
        return stack_render_document(rendering.command, stack, redact)
    model = masked_model(rendering.model, rendering.is_secret, redact)
    return render_document(rendering.command, model, redact)
