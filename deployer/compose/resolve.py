"""The desired state as Compose resolves it, on the compose target's engine: the spec's, or a
release's (each service on its exact image with the configuration the release recorded)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from deployer.compose.project import ComposeProject, config_json
from deployer.core.command import Runner
from deployer.core.desired import (
    ComposeFiles,
    DesiredState,
    Replacement,
    check_images,
    check_services_exist,
    desired_services,
    dump_compose,
    environment_override,
    spec_overrides,
    with_overrides,
)
from deployer.core.errors import CommandFailedError, ConfigError, ConfigIssue
from deployer.core.spec import Spec
from deployer.core.variables import MASK, SecretPolicy, Variables
from deployer.infra.engine import Engine
from deployer.state.releases import Secrets, ServiceRelease


def resolve(spec: Spec, variables: Variables, engine: Engine, run: Runner) -> DesiredState:
    """Ask Compose for the resolved model, then apply the spec's overrides to it.

    One `config` call: Compose interpolates the spec's `environment:` overrides; images, tags and
    replicas need no interpolation and are set in the resolved model as `up` will set them.
    """
    project = ComposeProject(ComposeFiles.of(spec, variables), engine)
    environment = environment_override(spec)
    try:
        model = _config(spec, project.with_override(environment), run)
    except ConfigError:
        if environment is None:
            raise
        # Compose refuses an override of a service that does not exist: say that plainly.
        check_services_exist(spec, _config(spec, project, run))
        raise
    check_services_exist(spec, model)
    entries = spec_overrides(spec, model)
    model = with_overrides(model, entries)
    services = desired_services(model, spec.is_secret)
    check_images(spec, services)
    return DesiredState(
        spec.name,
        project.files,
        entries,
        services,
        model,
        spec.wait_timeout,
        _written(project.with_override(environment), run) if variables.secret_values() else dict,
    )


def _config(spec: Spec, project: ComposeProject, run: Runner) -> dict[str, Any]:
    try:
        result = run(config_json(project))
    except CommandFailedError as e:
        raise ConfigError([compose_issue(spec, e.output)]) from e
    model: dict[str, Any] = json.loads(result.stdout)
    return model


def _written(project: ComposeProject, run: Runner) -> Callable[[], dict[str, Any]]:
    """How to read the project's model as written, `${NAME}` not interpolated: which values
    refer to which secret, so that a release records references only where the compose files
    make them."""

    def read() -> dict[str, Any]:
        command = project.command("config", "--no-interpolate", "--format", "json")
        model: dict[str, Any] = json.loads(run(command).stdout)
        return model

    return read


_REQUIRED = re.compile(r"required variable (\w+) is missing a value")
_FILE_IN_MESSAGE = re.compile(r"(?:parse|validating) (\S+?):? ")
_INTERPOLATING = re.compile(r"error while interpolating services\.([^.\s]+)\.environment\.(\S+?):")


def compose_issue(spec: Spec, output: str) -> ConfigIssue:
    """Place Compose's complaint in the file (and line, where it can be found) it is about."""
    message = output.strip().splitlines()[-1] if output.strip() else "docker compose config failed"
    file, line = str(spec.compose_files[0]), None
    if named := _FILE_IN_MESSAGE.search(message):
        file = named.group(1)
    if required := _REQUIRED.search(message):
        message = message.split(": ", 1)[-1] if message.startswith("error while") else message
        in_spec = _spec_reference(spec, output, required.group(1))
        if in_spec is not None:
            return spec.issue(in_spec, f"compose: {message}")
        file, line = _find_reference(spec.compose_files, required.group(1)) or (file, None)
    return ConfigIssue(file, line, "", f"compose: {message}")


def _spec_reference(spec: Spec, output: str, variable: str) -> str | None:
    """The path of the spec's `environment:` override that requires `variable`, if one does:
    the one Compose names, else the first that refers to it."""
    pattern = re.compile(r"\$\{" + re.escape(variable) + r"\b")
    candidates = [
        (service, name)
        for service, override in sorted(spec.services.items())
        for name, value in override.environment.items()
        if pattern.search(value)
    ]
    if named := _INTERPOLATING.search(output):
        if (named.group(1), named.group(2)) in candidates:
            return f"services.{named.group(1)}.environment.{named.group(2)}"
        return None  # Compose names an entry of a compose file
    return f"services.{candidates[0][0]}.environment.{candidates[0][1]}" if candidates else None


def _find_reference(files: tuple[Path, ...], name: str) -> tuple[str, int] | None:
    pattern = re.compile(r"\$\{" + re.escape(name) + r"(?::?\?)")
    for path in files:
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(text):
                return str(path), number
    return None


def restore_state(
    current: DesiredState,
    targets: Mapping[str, ServiceRelease],
    secrets: Secrets,
    engine: Engine,
    run: Runner,
) -> DesiredState:
    """The desired state that puts `targets` back: each service with its recorded configuration
    (the current one where none was recorded) on its exact image; the other services as in
    `current`. Compose resolves the configurations again, secret references from the current
    variables."""
    services = current.model["services"]
    replacements = {
        name: Replacement({**_configuration(target, services[name]), "image": target.pinned})
        for name, target in sorted(targets.items())
    }
    project = ComposeProject(current.files, engine, dump_compose({"services": replacements}))
    resolved = json.loads(run(config_json(project)).stdout)
    model = {
        **current.model,
        "services": {**services, **{n: resolved["services"][n] for n in replacements}},
    }
    kept = {n: e for n, e in current.overrides.items() if n not in replacements}
    return DesiredState(
        current.environment,
        current.files,
        {**kept, **replacements},
        desired_services(model, secrets.is_secret),
        model,
        current.wait_timeout,
        _written(project, run) if secrets.values else dict,
    )


def _configuration(target: ServiceRelease, current: Mapping[str, Any]) -> Mapping[str, Any]:
    """The recorded configuration, each secret kept as *** given its current value (left out
    if it has none now); the current configuration where none was recorded."""
    if target.config is None:
        return current
    if "environment" not in target.config:
        return target.config
    now_environment = current.get("environment") or {}
    environment = {
        name: now_environment[name] if value == MASK else value
        for name, value in target.config["environment"].items()
        if value != MASK or name in now_environment
    }
    return {**target.config, "environment": environment}


def secret_values(desired: DesiredState, is_secret: SecretPolicy) -> list[str]:
    """The secret values that reach containers from elsewhere than the spec's variables
    (`env_file:`, the process environment), as they run (Compose prints `$` doubled)."""
    values = []
    for service in desired.model.get("services", {}).values():
        for name, value in (service.get("environment") or {}).items():
            if value is not None and is_secret(name):
                values.append(str(value).replace("$$", "$"))
    return values
