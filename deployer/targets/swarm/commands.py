"""Commands as data for the swarm target: the docker CLI invocations deployer makes through a
manager, besides `docker stack deploy` (swarm_stack.stack_deploy). Nothing here runs them
(deployer/runner.py)."""

from __future__ import annotations

from collections.abc import Sequence

from deployer.compose.project import log_options
from deployer.core.command import Command
from deployer.infra.engine import Engine


def service_logs(
    engine: Engine,
    project: str,
    service: str,
    follow: bool,
    since: str | None,
    tail: int | None,
) -> Command:
    """The logs of every task of one service of the stack, gathered by the manager from every
    node; each line starts `PROJECT_SERVICE.SLOT@NODE | ` (`log_line` drops `PROJECT_`)."""
    options = log_options(follow, since, tail)
    argv = ("docker", "service", "logs", "--no-task-ids", *options, f"{project}_{service}")
    return Command(argv, engine.cli_environment())


def log_line(project: str, line: str) -> str:
    """A line of `docker service logs` as the user reads it: `web.1@dh4 | ...`, the stack's
    name left out as the compose target leaves the project's out."""
    return line.removeprefix(f"{project}_")


def stack_rm(engine: Engine, project: str) -> Command:
    """Remove the stack's services, networks, configs and secrets (those labelled with its
    namespace); the manager removes the networks once their tasks have stopped."""
    return Command(("docker", "stack", "rm", project), engine.cli_environment())


def service_remove(engine: Engine, project: str, services: Sequence[str]) -> Command:
    return Command(
        ("docker", "service", "rm", *(f"{project}_{s}" for s in services)),
        engine.cli_environment(),
    )


def service_rollback(engine: Engine, project: str, service: str) -> Command:
    """Swarm's own rollback to the spec the service had before its last update."""
    argv = ("docker", "service", "rollback", "--detach", "--quiet", f"{project}_{service}")
    return Command(argv, engine.cli_environment())


def service_restart(engine: Engine, project: str, service: str) -> Command:
    """A rolling restart: a forced update replaces every task, as the update_config says."""
    argv = ("docker", "service", "update", "--force", "--detach", "--quiet", f"{project}_{service}")
    return Command(argv, engine.cli_environment())


def files_remove(engine: Engine, kind: str, names: Sequence[str]) -> Command:
    """`docker config rm` or `docker secret rm` (kind: configs, secrets) of these names."""
    return Command(("docker", kind.removesuffix("s"), "rm", *names), engine.cli_environment())
