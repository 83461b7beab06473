"""The process value: one command to run and, once run, what it gave. Commands are data: the
functions that build them run nothing; deployer.infra.runner is the one place that runs them."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from deployer.core.variables import MASK


@dataclass(frozen=True)
class InputFile:
    """A file given to a process from memory: its content, and the same as people are shown it."""

    content: str = field(repr=False)  # may hold secrets
    shown: str  # secret values masked


def descriptor_path(number: int) -> str:
    """How argv names the file a Command gives its process on descriptor `number`."""
    return f"/dev/fd/{number}"


@dataclass(frozen=True)
class Command:
    """One process to run: argv, variables added to its environment, text for its stdin, and
    files that exist only for the process (`files`: the content of each by the descriptor path
    that names it in argv, as `docker compose --env-file /dev/fd/3 ... 3<<'EOF'` would).

    stdin and files are whole before the process starts (the runner writes them to memory
    first): a process never reads half a document, whatever happens to deployer meanwhile."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: str | None = field(default=None, repr=False)  # may hold a password (docker login)
    secret_names: frozenset[str] = frozenset()
    files: Mapping[str, InputFile] = field(default_factory=dict)

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
        redirections = [f"{path.rpartition('/')[2]}<<'{_END}'" for path in self.files]
        return " ".join([*assignments, *(shlex.quote(a) for a in self.argv), *redirections])

    def here_documents(self, redact: Callable[[str], str]) -> str:
        """The bodies of shell()'s here-documents: each file as shown, masked, in order."""
        return "".join(f"{redact(file.shown)}{_END}\n" for file in self.files.values())


# What ends a here-document in shell(): no line of an env file deployer writes looks like it.
_END = "EOF"


@dataclass(frozen=True)
class Completed:
    """A process that ran to its end."""

    returncode: int
    stdout: str
    stderr: str


# How a command is run: deployer.infra.runner.run, or a fake in the unit tests.
Runner = Callable[[Command], Completed]
