"""Stage 2: the variables an environment deploys with, and where each came from.

deployer reads the user's .env files exactly as Compose reads them (envfile: a port of Compose's
own parser). Compose receives the merged values as its one env file, written so that it reads
them back exactly (compose.project.env_file). Precedence is Compose's: env files in order (later
wins), the process environment over all; a `${VAR}` in a file sees the process environment, then
earlier lines and files, as with `docker compose --env-file A --env-file B`. Of the process
environment Compose is given only what the tools need (runner.tool_environment), so what is
shown, hashed and deployed is one set.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from deployer.core import envfile
from deployer.core.envfile import Binding
from deployer.core.errors import ConfigError, ConfigIssue

PROCESS_ENVIRONMENT = "process environment"
MASK = "***"
# A name is secret when one of its parts (split at `_`, `-`, `.` and camelCase) ends with one of
# these words, plural or not: DB_PASSWORD, apiKey, SSH_KEYS; not KEYCLOAK_ENABLED or TOKENIZER.
SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL")
_NAME_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")
# Shorter secret values are masked where they are shown as values, but not searched for in free text.
MIN_REDACTED_LENGTH = 3
# Process variables that set Compose's own options (COMPOSE_PROFILES, ...): Compose reads them
# although no file names them, so they count as variables of the environment.
COMPOSE_OPTION_PREFIX = "COMPOSE_"
# `$$` (a literal dollar), or the name in `${NAME...` / `$NAME`, as Compose's interpolation reads them.
_REFERENCE = re.compile(r"\$\$|\$\{?([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Variable:
    name: str
    value: str
    source: str  # "FILE:LINE" or PROCESS_ENVIRONMENT
    secret: bool

    @property
    def shown(self) -> str:
        return MASK if self.secret else self.value


@dataclass(frozen=True)
class Variables:
    """The merged variables, in the order they were first defined."""

    items: Mapping[str, Variable]

    def values(self) -> dict[str, str]:
        return {name: v.value for name, v in self.items.items()}

    def secret_names(self) -> frozenset[str]:
        return frozenset(name for name, v in self.items.items() if v.secret)

    def secret_values(self) -> list[str]:
        return [v.value for v in self.items.values() if v.secret]


@dataclass(frozen=True)
class SecretPolicy:
    """Which variables are secret: the declared ones, and names with a secret word unless excluded."""

    declared: frozenset[str] = frozenset()
    not_secret: frozenset[str] = frozenset()

    def __call__(self, name: str) -> bool:
        if name in self.declared:
            return True
        if name in self.not_secret:
            return False
        parts = (part.upper().rstrip("S") for part in _NAME_PARTS.findall(name))
        return any(part.endswith(SECRET_WORDS) for part in parts)


def referenced_names(texts: Iterable[str]) -> frozenset[str]:
    """The variables that `${NAME}` / `$NAME` in compose texts refer to (`$$` refers to none)."""
    return frozenset(
        match.group(1) for text in texts for match in _REFERENCE.finditer(text) if match.group(1)
    )


def _bindings(
    path: Path, process_env: Mapping[str, str], known: Mapping[str, str]
) -> list[Binding]:
    """The variables one env file sets, as Compose reads it after the files before it."""
    file = str(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(
            [ConfigIssue(file, None, "", f"cannot read env file: {e.strerror}")]
        ) from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(file, line, "", "env file is not valid UTF-8 text")]) from e
    bindings = envfile.parse(text, file, process_env, known)
    # A NUL cannot travel in a process environment, which is how values reach Compose.
    issues = [
        ConfigIssue(file, b.line, b.name, "a value cannot hold a NUL character")
        for b in bindings
        if "\0" in b.value
    ]
    if issues:
        raise ConfigError(issues)
    return bindings


def load_variables(
    env_files: Iterable[Path],
    process_env: Mapping[str, str],
    is_secret: SecretPolicy,
    referenced: Iterable[str] = (),
) -> Variables:
    """Read env files in order as Compose does (each seeing the process environment first, then
    what earlier lines and files set), then let the process environment win; add the process
    variables the compose files and spec refer to, and Compose's own options."""
    merged: dict[str, Variable] = {}
    issues: list[ConfigIssue] = []
    for path in env_files:
        known = {name: v.value for name, v in merged.items()}
        try:
            bindings = _bindings(path, process_env, known)
        except ConfigError as e:
            issues.extend(e.issues)
            continue
        for binding in bindings:
            # compose-go also reads `=value` (and a last bare name without a line break) as a
            # variable named "": no `${...}` can refer to it, and no environment can carry it.
            if binding.name:
                source = f"{path}:{binding.line}"
                merged[binding.name] = Variable(
                    binding.name, binding.value, source, is_secret(binding.name)
                )
    if issues:
        raise ConfigError(issues)
    wanted = set(merged) | set(referenced)
    wanted |= {name for name in process_env if name.startswith(COMPOSE_OPTION_PREFIX)}
    for name in sorted(wanted & set(process_env)):
        merged[name] = Variable(name, process_env[name], PROCESS_ENVIRONMENT, is_secret(name))
    return Variables(merged)


def escaped_forms(value: str) -> set[str]:
    """How a value can appear in text deployer or Compose prints: as is, JSON- or YAML-escaped,
    shell-quoted, or with `$` doubled as Compose writes it in a model."""
    json_inner = json.dumps(value, ensure_ascii=False)[1:-1]
    return {
        value,
        json_inner,
        json.dumps(value)[1:-1],
        value.replace("'", "''"),
        shlex.quote(value),
        value.replace("$", "$$"),
        json_inner.replace("$", "$$"),
    }


class Redactor:
    """Replaces every secret value in free text with ***, in each of its escaped forms.

    For text deployer does not build from data: logs, Compose's and the engine's messages, errors.
    Structured output is masked as data instead (see report), so identifiers stay readable.
    """

    def __init__(self) -> None:
        self._forms: list[str] = []

    def add(self, secret_values: Iterable[str]) -> None:
        known = set(self._forms)
        for value in secret_values:
            if len(value) >= MIN_REDACTED_LENGTH:
                known |= escaped_forms(value)
        # Longest first, so that a secret containing another is masked whole.
        self._forms = sorted(known, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


# Secrets shorter than this are easy to guess and, in free text, mask ordinary words.
MIN_SECRET_LENGTH = 8


def _location(variable: Variable) -> tuple[str, int | None]:
    if variable.source == PROCESS_ENVIRONMENT:
        return PROCESS_ENVIRONMENT, None
    file, _, line = variable.source.rpartition(":")
    return file, int(line)


def weak_secret_issues(variables: Variables, identifiers: Iterable[str]) -> list[ConfigIssue]:
    """Secrets too short to be safe, or equal to a name of the environment (which masking would
    then hide wherever free text mentions it). No value is shown."""
    names = frozenset(identifiers)
    issues = []
    for variable in variables.items.values():
        if not variable.secret:
            continue
        file, line = _location(variable)
        if variable.value in names:
            why = "its value is also a name in this environment (service, image, project, network, volume or host)"
        elif len(variable.value) < MIN_SECRET_LENGTH:
            why = f"its value is shorter than {MIN_SECRET_LENGTH} characters"
        else:
            continue
        issues.append(ConfigIssue(file, line, variable.name, f"weak secret: {why}"))
    return issues
