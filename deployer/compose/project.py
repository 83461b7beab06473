"""Commands as data: the `docker compose` invocations deployer makes. Nothing here runs them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from deployer.core.command import Command, InputFile, descriptor_path
from deployer.core.desired import ComposeFiles, DesiredState
from deployer.core.variables import MASK
from deployer.infra.engine import Engine

# Where Compose finds deployer's env file: a descriptor of its own process (the runner gives it).
VARIABLES_FILE = descriptor_path(3)


def env_file(variables: Mapping[str, str], secret_names: frozenset[str]) -> InputFile:
    """`variables` as an env file that Compose reads back exactly as they are: every value
    double-quoted, with `\\`, `"`, `$`, CR and LF escaped (checked against Compose itself in the
    integration tests); as shown, secret values are masked."""

    def quoted(value: str) -> str:
        for raw, escaped in _ESCAPES:
            value = value.replace(raw, escaped)
        return f'"{value}"'

    content = "".join(f"{name}={quoted(value)}\n" for name, value in variables.items())
    shown = "".join(
        f"{name}={MASK if name in secret_names else quoted(value)}\n"
        for name, value in variables.items()
    )
    return InputFile(content, shown)


_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("$", "$$"), ("\n", "\\n"), ("\r", "\\r"))


@dataclass(frozen=True)
class ComposeProject:
    """What every `docker compose` call of one environment on one engine shares."""

    files: ComposeFiles
    engine: Engine
    # deployer's overrides as a compose file, given on stdin (`-f -`) so no file holds them.
    override: str | None = None

    @property
    def name(self) -> str:
        return self.files.project

    def command(self, *args: str) -> Command:
        # Compose reads no .env of its own: deployer hands it the merged values as its one env
        # file, for interpolation only. Through the process environment they would also be the
        # docker CLI's own settings (HTTPS_PROXY, DOCKER_CONFIG, ...).
        argv = ["docker", "compose", "--project-name", self.name, "--env-file", VARIABLES_FILE]
        for path in self.files.paths:
            argv += ["--file", str(path)]
        if self.override is not None:
            argv += ["--file", "-"]
        variables = env_file(self.files.variables, self.files.secret_names)
        return Command(
            tuple(argv + list(args)),
            self.engine.cli_environment(),
            self.override,
            self.files.secret_names,
            {VARIABLES_FILE: variables},
        )

    def with_override(self, override: str | None) -> ComposeProject:
        return replace(self, override=override)


def deploying(desired: DesiredState, engine: Engine) -> ComposeProject:
    """The project as `up` gets it on `engine`: the spec's overrides plus the fingerprints."""
    return ComposeProject(desired.files, engine, desired.override)


def config_json(project: ComposeProject) -> Command:
    return project.command("config", "--format", "json")


def config_hashes(project: ComposeProject) -> Command:
    """`<service> <hash>` per service: Compose's config hash, as `up` labels a container with."""
    return project.command("config", "--hash", "*")


def parse_hashes(output: str) -> dict[str, str]:
    """What `config --hash` prints: `<service> <hash>` per line."""
    pairs = (line.split() for line in output.splitlines())
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def hashing(model: Mapping[str, Any], files: ComposeFiles, engine: Engine) -> ComposeProject:
    """A project of the resolved `model` alone (given on stdin): Compose hashes its services as
    `up` would those of the compose files it came from, `env_file:` resolved (which `config
    --hash` of the files themselves skips in Compose 2.40)."""
    alone = replace(files, paths=(), variables={})
    return ComposeProject(alone, engine, json.dumps(model))


def kill(project: ComposeProject, services: Sequence[str], signal: str) -> Command:
    """Send `signal` to the main process of each container of `services`."""
    return project.command("kill", "--signal", signal, *services)


def up(
    project: ComposeProject,
    services: Sequence[str],
    remove_orphans: bool,
    force_recreate: bool = False,
) -> Command:
    """`force_recreate`: new containers for `services` even where Compose sees no change (their
    dependencies are recreated only where they changed)."""
    args = ["up", "--detach", "--pull", "never"]
    if remove_orphans:
        args.append("--remove-orphans")
    if force_recreate:
        args.append("--force-recreate")
    return project.command(*args, *services)


def scale_beside(project: ComposeProject, service: str, scale: int) -> Command:
    """`scale` containers of `service`, the ones it has kept as they are: new ones, made as the
    service is declared now, start beside the old. Its dependencies are started where they do
    not run, never recreated."""
    return project.command(
        "up",
        "--detach",
        "--pull",
        "never",
        "--no-recreate",
        "--scale",
        f"{service}={scale}",
        service,
    )


def stop_containers(engine: Engine, names: Sequence[str]) -> Command:
    """Stop containers as Compose does: their stop signal, then their stop_grace_period."""
    return Command(("docker", "stop", *names), engine.cli_environment())


def remove_containers(engine: Engine, names: Sequence[str]) -> Command:
    """Remove containers (stopped or not), with the anonymous volumes they had."""
    return Command(("docker", "rm", "--force", "--volumes", *names), engine.cli_environment())


def remove(project: ComposeProject, services: Sequence[str]) -> Command:
    """Stop and remove the containers of `services` (their volumes stay)."""
    return project.command("rm", "--stop", "--force", *services)


def logs(
    project: ComposeProject,
    services: Sequence[str],
    follow: bool,
    since: str | None,
    tail: int | None,
) -> Command:
    return project.command("logs", "--no-color", *log_options(follow, since, tail), *services)


def log_options(follow: bool, since: str | None, tail: int | None) -> list[str]:
    """The options `docker compose logs` and `docker service logs` share."""
    options = ["--follow"] if follow else []
    if since:
        options += ["--since", since]
    if tail is not None:
        options += ["--tail", str(tail)]
    return options


def build(project: ComposeProject, services: Sequence[str]) -> Command:
    """`docker compose build`: each image tagged as the service's `image:` (the spec's overrides
    in the project's override) says."""
    return project.command("build", *services)


def restart(project: ComposeProject, services: Sequence[str]) -> Command:
    return project.command("restart", *services)


def down(project: ComposeProject, volumes: bool) -> Command:
    return project.command("down", "--remove-orphans", *(["--volumes"] if volumes else []))


def docker_login(engine: Engine, server: str, username: str, password: str) -> Command:
    """`docker login` with the password on stdin, never on the command line."""
    argv = ("docker", "login", "--username", username, "--password-stdin", server)
    return Command(argv, engine.cli_environment(), stdin=password)
