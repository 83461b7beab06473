"""The process value: one command to run and, once run, what it gave. Commands are data: the
functions that build them run nothing; deployer.infra.runner is the one place that runs them."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from deployer.core.variables import MASK


@dataclass(frozen=True)
class Command:
    """One process to run: argv, variables added to its environment, text for its stdin."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = field(default=None, repr=False)  # may hold a password (docker login)
    secret_names: frozenset[str] = frozenset()

    def with_env(self, more: Mapping[str, str]) -> Command:
        return replace(self, env={**self.env, **more})

    def shown_env(self, redact: Callable[[str], str]) -> dict[str, str]:
        """The added variables as shown to people: secret ones masked, and secrets inside others."""
        return {
            name: MASK if name in self.secret_names else redact(value)
            for name, value in self.env.items()
        }

    def shell(self, redact: Callable[[str], str]) -> str:
        """The command as a person would type it, shell-quoted, secret values masked."""
        assignments = [
            f"{name}={value if value == MASK else shlex.quote(value)}"
            for name, value in self.shown_env(redact).items()
        ]
        return " ".join([*assignments, *(shlex.quote(a) for a in self.argv)])


@dataclass(frozen=True)
class Completed:
    """A process that ran to its end."""

    returncode: int
    stdout: str
    stderr: str


# How a command is run: deployer.infra.runner.run, or a fake in the unit tests.
Runner = Callable[[Command], Completed]
