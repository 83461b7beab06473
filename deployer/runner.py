"""The one place deployer starts processes. Never through a shell."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

from deployer.compose import Command, compose_version
from deployer.engine import Engine
from deployer.errors import CommandFailedError, ComposeUnavailableError


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


def run(command: Command, check: bool = True) -> Completed:
    env = {**os.environ, **command.env}
    try:
        proc = subprocess.run(
            list(command.argv),
            input=command.stdin,
            env=env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            check=False,
        )
    except FileNotFoundError as e:
        raise ComposeUnavailableError(f"no `{command.argv[0]}` command on PATH") from e
    result = Completed(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        if command.argv[:2] == ("docker", "compose") and _compose_missing(proc.stderr):
            raise ComposeUnavailableError(_describe_compose(command))
        raise CommandFailedError(command.argv, proc.returncode, proc.stderr or proc.stdout)
    return result


def _compose_missing(stderr: str) -> bool:
    return "'compose' is not a docker command" in stderr or "unknown command" in stderr


def _describe_compose(command: Command) -> str:
    engine = Engine(command.env.get("DOCKER_HOST", ""))
    version = run(compose_version(engine), check=False)
    if version.returncode == 0:
        return f"docker compose {version.stdout.strip()}"
    client = run(Command(("docker", "--version")), check=False).stdout.strip()
    return f"{client or 'a docker CLI'} without the compose plugin"
