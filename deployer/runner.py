"""The one place deployer starts processes. Never through a shell."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from deployer.compose import Command, compose_version
from deployer.errors import (
    CommandFailedError,
    ComposeUnavailableError,
    DeployerError,
    ProgramNotFoundError,
)

# What the docker CLI and its plugins need from the process environment to run, find their
# plugins and configuration, and reach an engine. Every other variable reaches a process only
# through its Command, so Compose interpolates with exactly the variables deployer shows and hashes.
TOOL_VARIABLES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SSH_AUTH_SOCK"}
    | {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"}
    | {"no_proxy", "all_proxy"}
)
TOOL_PREFIXES = ("DOCKER_", "BUILDKIT_", "LC_", "XDG_")


def tool_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of `environ` every process started here inherits."""
    return {
        name: value
        for name, value in environ.items()
        if name in TOOL_VARIABLES or name.startswith(TOOL_PREFIXES)
    }


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def run(command: Command, check: bool = True) -> Completed:
    """Run `command` to its end. An interrupt (Ctrl-C, SIGTERM) does not cut it short: the
    process runs in its own session, out of reach of the terminal's Ctrl-C, and is waited for,
    so that `docker compose up` never stops halfway between two releases. The interrupt is
    raised once it has finished."""
    env = {**tool_environment(os.environ), **command.env}
    try:
        proc = subprocess.Popen(
            list(command.argv),
            stdin=subprocess.PIPE if command.stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError as e:
        raise ProgramNotFoundError(command.argv[0]) from e
    interrupted: KeyboardInterrupt | None = None
    stdin = command.stdin
    while True:
        try:
            stdout, stderr = proc.communicate(stdin)
            break
        except KeyboardInterrupt as e:
            interrupted, stdin = e, None
    if interrupted is not None:
        raise interrupted
    result = Completed(proc.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        raise _failure(command, proc.returncode, stderr or stdout)
    return result


def stream(command: Command) -> Iterator[str]:
    """Run `command`, yielding its output lines (stdout and stderr) as they come.

    Unlike run(), an interrupt stops the process too: it only reads (`logs --follow`)."""
    try:
        proc = subprocess.Popen(
            list(command.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**tool_environment(os.environ), **command.env},
            text=True,
            encoding="utf-8",
            errors="replace",
        )
    except FileNotFoundError as e:
        raise ProgramNotFoundError(command.argv[0]) from e
    last: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            last = [*last[-4:], line]
            yield line.rstrip("\n")
        returncode = proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
    if returncode != 0:
        raise _failure(command, returncode, "".join(last))


# What the docker CLI says when it has no compose plugin: `docker compose --project-name ...`
# reads as an unknown flag of `docker` itself, `docker compose up` as an unknown command.
_NO_COMPOSE = ("'compose' is not a docker command", "unknown command", "unknown flag")


def _failure(command: Command, returncode: int, output: str) -> DeployerError:
    """The error for a failed command; Compose's absence is confirmed by asking its version."""
    if (
        command.argv[:2] == ("docker", "compose")
        and any(sign in output for sign in _NO_COMPOSE)
        and run(compose_version(command.env), check=False).returncode != 0
    ):
        client = run(Command(("docker", "--version")), check=False).stdout.strip()
        return ComposeUnavailableError(f"{client or 'a docker CLI'} without the compose plugin")
    return CommandFailedError(command.argv, returncode, output)
