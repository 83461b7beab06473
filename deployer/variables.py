"""Stage 2: the variables an environment deploys with, and where each came from.

deployer is the only parser of the user's .env files (python-dotenv). Compose receives the merged
values through its process environment, which it never parses, so every byte arrives as read.
Precedence is Compose's: env files in order (later wins), the process environment over all.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from deployer.errors import ConfigError, ConfigIssue

PROCESS_ENVIRONMENT = "process environment"
MASK = "***"
# Names that hold secrets unless a spec says nothing: matched anywhere in the name, any case.
SECRET_NAME_PATTERN = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)
# Shorter secret values are masked where they are shown as values, but not searched for in free text.
MIN_REDACTED_LENGTH = 3


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


def is_secret(name: str, declared: Iterable[str]) -> bool:
    return name in declared or SECRET_NAME_PATTERN.search(name) is not None


def read_env_file(path: Path) -> tuple[dict[str, str], dict[str, int]]:
    """Values of one env file as python-dotenv reads them, and the line where each is set."""
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
    lines: dict[str, int] = {}
    issues = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            # python-dotenv would skip the line with a warning; Compose would refuse the file.
            # The line itself is not shown: it may hold a secret.
            message = "cannot parse this line (expected NAME=value)"
            issues.append(ConfigIssue(file, binding.original.line, "", message))
        elif binding.key is not None:
            lines[binding.key] = binding.original.line
    if issues:
        raise ConfigError(issues)
    values = dotenv_values(stream=io.StringIO(text))
    # A name with no `=` (a bare `NAME` line) has no value: Compose ignores it too.
    return {k: v for k, v in values.items() if v is not None}, lines


def load_variables(
    env_files: Iterable[Path], process_env: Mapping[str, str], secrets: Iterable[str]
) -> Variables:
    """Merge env files in order, then let the process environment win, as Compose does."""
    declared = frozenset(secrets)
    merged: dict[str, Variable] = {}
    issues: list[ConfigIssue] = []
    for path in env_files:
        try:
            values, lines = read_env_file(path)
        except ConfigError as e:
            issues.extend(e.issues)
            continue
        for name, value in values.items():
            source = f"{path}:{lines.get(name, 0)}"
            merged[name] = Variable(name, value, source, is_secret(name, declared))
    if issues:
        raise ConfigError(issues)
    for name, variable in merged.items():
        if name in process_env:
            merged[name] = Variable(name, process_env[name], PROCESS_ENVIRONMENT, variable.secret)
    return Variables(merged)


class Redactor:
    """Replaces every secret value in text with ***: applied where output leaves the program."""

    def __init__(self) -> None:
        self._values: list[str] = []

    def add(self, secret_values: Iterable[str]) -> None:
        known = {*self._values, *(v for v in secret_values if len(v) >= MIN_REDACTED_LENGTH)}
        # Longest first, so that a secret containing another is masked whole.
        self._values = sorted(known, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text
