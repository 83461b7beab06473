"""Stage 6 for the swarm target: carry out a swarm plan with the real docker CLI, then wait until
the swarm has converged or given up. Decides nothing: the plan says which services change.

`docker stack deploy` updates every service of the file it is given, changed or not, and each
update makes the service's current spec its rollback target (PreviousSpec): so the file handed to
it holds only the services the plan creates or updates, and the services the spec no longer
declares are removed by name, as `--prune` would remove them.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from deployer.core.command import Command, Completed
from deployer.core.errors import DeployerError, Interrupted, SwarmServiceError
from deployer.core.observed import ObservedService, ObservedStack
from deployer.core.plan import Plan
from deployer.core.progress import Progress
from deployer.core.results import SwarmApplied
from deployer.infra.engine import EngineClient
from deployer.infra.registry import Login
from deployer.targets.swarm.commands import files_remove, service_remove, service_restart
from deployer.targets.swarm.observe import Mask, mounted_files, read_stack
from deployer.targets.swarm.stack import StackFile, stack_deploy

POLL_SECONDS = 1.0
LOG_LINES = 20
CONVERGED = "converged"
ROLLED_BACK = "rolled back"  # by Swarm, as the service's update_config says on failure
PAUSED = "paused"
# UpdateStatus states on the way to one of the above.
_MOVING = frozenset({"updating", "rollback_started"})


# What `docker stack deploy` is handed a service for: every change but a removal writes its spec
# (an adopted or restarted service's labels at least).
_DEPLOYED = frozenset({"adopt", "create", "update", "restart", "signal"})


def deployed_services(plan: Plan) -> list[str]:
    """The services handed to `docker stack deploy`: those the plan changes, but removes."""
    return sorted({c.service for c in plan.changes if c.action in _DEPLOYED})


def restarted_services(plan: Plan) -> list[str]:
    return sorted({c.service for c in plan.changes if c.action == "restart"})


def removed_services(plan: Plan) -> list[str]:
    return sorted({c.service for c in plan.changes if c.action == "remove"})


def changes_anything(plan: Plan) -> bool:
    return bool(deployed_services(plan) or removed_services(plan))


@contextmanager
def registry_config(login: Login | None) -> Iterator[dict[str, str]]:
    """The docker CLI's configuration with the spec's registry login, for `--with-registry-auth`
    (which hands the client's login to the nodes): in a private folder of its own, removed
    afterwards, so that the password is never on a command line nor left on disk."""
    if login is None:
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="deployer-docker-") as folder:
        os.chmod(folder, 0o700)
        token = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
        config = os.path.join(folder, "config.json")
        descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump({"auths": {login.server: {"auth": token}}}, file)
        yield {"DOCKER_CONFIG": folder}


def apply(
    plan: Plan,
    stack: StackFile,
    client: EngineClient,
    run: Callable[[Command], Completed],
    progress: Progress,
    login: Login | None,
    timeout: float,
    redact: Mask,
    signal_tasks: Callable[[str, str], None],
) -> SwarmApplied:
    """Deploy the plan's created and updated services, remove its removed ones, and wait until
    the deployed ones have converged (SwarmServiceError when one does not)."""
    started = time.monotonic()
    engine, project = client.engine, plan.project
    deploying = deployed_services(plan)
    unavailable = unavailable_nodes(client.nodes())
    for node in unavailable:
        progress.done(node, f"note: node {node} is unavailable: Swarm places no task there")
    left = f"`deploy status {plan.environment}` shows where the swarm is"
    if deploying:
        with (
            Interrupted.leaving(f"stopped while handing the stack to Swarm; {left}"),
            registry_config(login) as config,
        ):
            partial = stack.only(deploying)
            command = stack_deploy(project, engine, partial, login is not None, prune=False)
            run(command.with_env(config))
            for name in restarted_services(plan):
                progress.update(name, f"docker service update --force {project}_{name}")
                run(service_restart(engine, project, name))
            for name, signal in plan.signals:
                progress.update(name, f"{signal} to each task of {name}")
                signal_tasks(name, signal)
    with Interrupted.leaving(f"stopped while waiting: Swarm goes on updating; {left}"):
        observed = wait(client, project, deploying, timeout, progress, redact)
    # Only once the rest has converged: a failed deploy leaves the removed services running.
    removing = removed_services(plan)
    if removing:
        run(service_remove(engine, project, removing))
    remove_unused_files(client, project, stack, run, progress)
    return SwarmApplied(
        plan,
        time.monotonic() - started,
        tuple(observed.services[s] for s in deploying if s in observed.services),
        tuple(unavailable),
    )


def remove_unused_files(
    client: EngineClient,
    project: str,
    stack: StackFile,
    run: Callable[[Command], Completed],
    progress: Progress,
) -> None:
    """Remove the stack's configs and secrets that no service mounts any more, nor would roll
    back to (an older content of a file, one the spec no longer declares); failing to tidy up
    is said, never fatal."""
    unused = unused_files(client.stack_files(project), client.stack_services(project), stack)
    for kind, names in sorted(unused.items()):
        try:
            run(files_remove(client.engine, kind, names))
        except DeployerError as e:
            progress.done(kind, f"note: unused {kind} not removed: {e.message}")
            continue
        progress.done(kind, f"removed unused {kind}: {', '.join(names)}")


def unused_files(
    listed: Sequence[tuple[str, str]], services: Sequence[Mapping[str, Any]], stack: StackFile
) -> dict[str, list[str]]:
    """Of the stack's configs and secrets (kind, name), per kind those that neither the stack
    file declares nor any service's spec or previous spec (Swarm's rollback target) mounts."""
    used: set[str] = set()
    for service in services:
        for spec in (service.get("Spec"), service.get("PreviousSpec")):
            used |= mounted_files(spec or {})
    unused: dict[str, list[str]] = {}
    for kind, name in sorted(listed):
        declared = {entry.get("name") for entry in (stack.document.get(kind) or {}).values()}
        if name not in used and name not in declared:
            unused.setdefault(kind, []).append(name)
    return unused


def unavailable_nodes(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """The nodes Swarm places no task on: drained or paused, or not ready (down)."""
    found = []
    for node in nodes:
        name = (node.get("Description") or {}).get("Hostname") or node.get("ID", "?")
        availability = (node.get("Spec") or {}).get("Availability", "active")
        state = (node.get("Status") or {}).get("State", "ready")
        if availability != "active":
            found.append(f"{name} ({availability})")
        elif state != "ready":
            found.append(f"{name} ({state})")
    return sorted(found)


@dataclass(frozen=True)
class Convergence:
    state: str | None  # CONVERGED, ROLLED_BACK, PAUSED; None while Swarm is still at work
    text: str  # where the service is, in a few words


def convergence(service: ObservedService | None) -> Convergence:
    """Where a service just deployed stands. Its UpdateStatus was reset by the deploy, so a
    state seen now is this deploy's; Swarm calls a task running once it is healthy."""
    if service is None:
        return Convergence(None, "not on the swarm yet")
    said = f": {service.update_message}" if service.update_message else ""
    if service.update_state == "rollback_completed":
        return Convergence(ROLLED_BACK, "update rolled back")
    if service.update_state in ("paused", "rollback_paused"):
        return Convergence(PAUSED, f"update {service.update_state}{said}")
    current = [t for t in service.tasks if t.current and t.state == "running"]
    counts = f"{len(current)}/{service.desired_tasks} tasks running"
    if service.update_state in _MOVING:
        return Convergence(None, f"{service.update_state.replace('_', ' ')}{said}; {counts}")
    if len(current) == service.desired_tasks == service.running and all(
        t.current for t in service.tasks
    ):
        return Convergence(CONVERGED, counts)
    return Convergence(None, counts)


def wait(
    client: EngineClient,
    project: str,
    services: Sequence[str],
    timeout: float,
    progress: Progress,
    redact: Mask,
    accept: frozenset[str] = frozenset({CONVERGED}),
) -> ObservedStack:
    """Watch `services` until each has settled in an `accept`ed state; the first that settles
    otherwise, or is still at work after `timeout` seconds, is a SwarmServiceError."""
    deadline = time.monotonic() + timeout
    pending = list(services)
    reasons: dict[str, str] = {}  # the first thing Swarm said went wrong, per service
    while True:
        observed = read_stack(client, project, redact)
        for name in list(pending):
            service = observed.services.get(name)
            where = convergence(service)
            if service is not None and service.update_state in ("rollback_started", "paused"):
                reasons.setdefault(name, service.update_message)
            if where.state is None:
                progress.update(name, f"{name}: {where.text}")
                continue
            if where.state not in accept:
                reason = reasons.get(name) or (service.update_message if service else "")
                raise failure(client, name, service, where, reason, redact)
            progress.done(name, f"{name}: {where.text}")
            pending.remove(name)
        if not pending:
            return observed
        if time.monotonic() >= deadline:
            name = pending[0]
            service = observed.services.get(name)
            late = Convergence(
                None, f"not converged within {timeout:g}s: {convergence(service).text}"
            )
            raise failure(client, name, service, late, reasons.get(name, ""), redact)
        time.sleep(POLL_SECONDS)


def failure(
    client: EngineClient,
    name: str,
    service: ObservedService | None,
    where: Convergence,
    reason: str,
    redact: Mask,
) -> SwarmServiceError:
    """What went wrong with a service: Swarm's words, its tasks' errors, its last log lines."""
    if service is None:
        return SwarmServiceError(name, where.text, "", [], [])
    errors = sorted(({t.error for t in service.tasks} | {service.last_error}) - {""})
    logs = [redact(line) for line in client.service_logs(service.id, LOG_LINES)]
    return SwarmServiceError(name, where.text, reason, errors, logs)
