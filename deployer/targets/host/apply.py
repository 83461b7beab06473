"""Stage 6: carry out a plan. Decides nothing: pulls what the plan pulls, ups what it ups, waits."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from deployer.compose import project as compose
from deployer.core.command import Runner
from deployer.core.desired import DesiredState
from deployer.core.errors import (
    DeployerError,
    Interrupted,
    PullError,
    RegistryLoginError,
    StartFirstFailedError,
    UnhealthyServiceError,
)
from deployer.core.observed import ObservedContainer, is_steady
from deployer.core.plan import Plan, Roll
from deployer.core.progress import Progress
from deployer.core.results import Applied
from deployer.infra.engine import EngineClient
from deployer.infra.registry import Login, registry_of
from deployer.targets.host.observe import observe_containers

PARALLEL_PULLS = 4
POLL_SECONDS = 0.5
LOG_LINES = 20
# A container in one of these states will not become healthy by waiting.
FINAL_STATES = frozenset({"exited", "dead"})
# A running container without a health check counts as ready once it has been up this long, by
# the engine's clock: one that crash-loops is then not taken for ready at a lucky moment.
STEADY_SECONDS = 2.0


_AUTH_FAILURES = ("unauthorized", "authentication required", "no basic auth credentials", "denied")


def apply(
    plan: Plan,
    desired: DesiredState,
    project: compose.ComposeProject,
    client: EngineClient,
    run: Runner,
    progress: Progress,
    login: Login | None = None,
) -> Applied:
    """Pull what the plan pulls, `docker compose up` the services it changes (of `project`, the
    desired state as it is deployed on the engine `client` reaches), wait until they are ready."""
    started = time.monotonic()
    with Interrupted.leaving("no service was changed: stopped while pulling images"):
        pull_all(client, plan.pulls, progress, login)
    left = f"`deploy diff {plan.environment}` shows what is left to do"
    # Start-first updates first: the `up` of the others (their dependencies with them) then
    # finds the rolled services up to date, and never recreates one stop-first.
    for service, roll in plan.rolls:
        roll_out(service, roll, desired, project, client, run, progress, left)
    rolled = {service for service, _ in plan.rolls}
    if set(plan.services_to_up) - rolled or plan.removes_orphans:
        with Interrupted.leaving(
            f"`docker compose up` was not cut short: every service runs its old or its new release; {left}"
        ):
            replaced = plan.services_to_replace
            if replaced:
                progress.update(
                    "compose", f"docker compose up --force-recreate {' '.join(replaced)}"
                )
                run(compose.up(project, replaced, False, force_recreate=True))
            others = [s for s in plan.services_to_up if s not in replaced and s not in rolled]
            if others or plan.removes_orphans:
                progress.update("compose", f"docker compose up {' '.join(others)}".rstrip())
                run(compose.up(project, others, plan.removes_orphans))
        progress.done("compose", "docker compose up done")
    for service, signal in plan.signals:
        progress.update("compose", f"docker compose kill --signal {signal} {service}")
        run(compose.kill(project, [service], signal))
    with Interrupted.leaving(f"the services were changed, not waited for until ready; {left}"):
        containers = wait_ready(client, desired, plan.services_to_up, progress)
    return Applied(plan, time.monotonic() - started, containers)


def roll_out(
    service: str,
    roll: Roll,
    desired: DesiredState,
    project: compose.ComposeProject,
    client: EngineClient,
    run: Runner,
    progress: Progress,
    left: str,
) -> None:
    """Update `service` start-first: new containers beside the old ones, which are stopped and
    removed only once the new ones are ready. New ones that fail are removed, the old ones
    untouched. An interrupt at any step leaves the old or the new containers serving."""
    engine = project.engine
    with Interrupted.leaving(
        f"{service}: its old containers still serve, new ones were starting beside them; {left}"
    ):
        if roll.discard:
            run(compose.remove_containers(engine, roll.discard))
        beside = f" beside {', '.join(roll.retire)}" if roll.retire else ""
        progress.update(service, f"{service}: starting new containers{beside} (start-first)")
        try:
            run(compose.scale_beside(project, service, roll.scale))
            wait_ready(client, desired, [service], progress, frozenset(roll.retire))
        except DeployerError as failure:
            after = observe_containers(client, desired.files.project)
            new = [c.name for c in after if c.service == service and c.name not in roll.retire]
            if new:
                run(compose.remove_containers(engine, new))
            raise StartFirstFailedError(service, failure) from failure
    if not roll.retire:
        return
    with Interrupted.leaving(
        f"{service}: its new containers are ready and serve, its old ones were being stopped; {left}"
    ):
        progress.update(service, f"{service}: stopping {', '.join(roll.retire)}")
        run(compose.stop_containers(engine, roll.retire))
        run(compose.remove_containers(engine, roll.retire))
    progress.done(service, f"{service}: updated start-first, {', '.join(roll.retire)} removed")


def pull_all(
    client: EngineClient, images: list[str], progress: Progress, login: Login | None = None
) -> None:
    """Pull images in parallel. The first failure, or an interrupt, cancels the pulls not yet
    started and stops following those under way; it is raised once they have let go."""
    if not images:
        return
    cancelled = threading.Event()
    with ThreadPoolExecutor(max_workers=PARALLEL_PULLS) as pool:
        futures = [
            pool.submit(_pull, client, image, progress, login, cancelled) for image in images
        ]
        try:
            for future in futures:
                future.result()
        except BaseException:
            cancelled.set()
            for future in futures:
                future.cancel()
            raise


def _pull(
    client: EngineClient,
    image: str,
    progress: Progress,
    login: Login | None,
    cancelled: threading.Event,
) -> None:
    auth = login.auth_for(image) if login else None
    try:
        _pull_with_progress(client, image, progress, auth, cancelled)
    except PullError as e:
        if not any(word in e.reason.lower() for word in _AUTH_FAILURES):
            raise
        if login is not None and auth is not None:
            raise RegistryLoginError(login.server, login.username, e.reason) from e
        raise RegistryLoginError(registry_of(image), None, e.reason) from e


def _pull_with_progress(
    client: EngineClient,
    image: str,
    progress: Progress,
    auth: dict[str, str] | None,
    cancelled: threading.Event,
) -> None:
    started = time.monotonic()
    layers: dict[str, tuple[int, int]] = {}
    progress.update(image, f"pulling {image}")
    for event in client.pull(image, auth):
        if cancelled.is_set():
            return  # the abandoned stream is closed as it goes out of scope
        detail: dict[str, Any] = event.get("progressDetail") or {}
        if event.get("id") and detail.get("total"):
            layers[event["id"]] = (int(detail.get("current", 0)), int(detail["total"]))
            done = sum(c for c, _ in layers.values()) / 1e6
            total = sum(t for _, t in layers.values()) / 1e6
            progress.update(image, f"pulling {image} {done:.1f}/{total:.1f} MB")
    progress.done(image, f"pulled {image} in {time.monotonic() - started:.1f}s")


def wait_ready(
    client: EngineClient,
    desired: DesiredState,
    services: list[str],
    progress: Progress,
    leaving: frozenset[str] = frozenset(),
) -> tuple[ObservedContainer, ...]:
    """Wait until each service has its replicas ready: running and healthy where they have a
    health check, else running for STEADY_SECONDS; a one-shot container may have exited 0.
    Containers named in `leaving` (old ones, still serving) do not count."""
    deadline = time.monotonic() + desired.wait_timeout
    pending = set(services)
    clock = _EngineClock(client)
    while True:
        containers = observe_containers(client, desired.files.project)
        for service in sorted(pending):
            own = [c for c in containers if c.service == service and c.name not in leaving]
            wanted = desired.services[service]
            done = [c for c in own if c.done(wanted.restart)]
            if len(own) == len(done) == wanted.replicas and all(clock.steady(c) for c in done):
                pending.discard(service)
                progress.done(service, f"{service}: {_states(own)}")
                continue
            failed = [c for c in own if c.state in FINAL_STATES and c not in done]
            if failed or time.monotonic() >= deadline:
                suspects = failed or [c for c in own if c not in done] or own
                culprit = suspects[0] if suspects else None
                raise UnhealthyServiceError(
                    service,
                    clock.describe(culprit) if culprit else "no container",
                    desired.wait_timeout,
                    client.logs(culprit.id, LOG_LINES) if culprit else [],
                )
            progress.update(service, f"waiting for {service}: {_states(own)}")
        if not pending:
            return tuple(c for c in containers if c.service in services)
        time.sleep(POLL_SECONDS)


class _EngineClock:
    """How long containers have been up, by the engine's clock (read once, then kept by offset).

    A container is inspected when first seen and again once its window may have passed: twice
    in all when it stays up, however long the wait."""

    def __init__(self, client: EngineClient) -> None:
        self.client = client
        self.offset: float | None = None  # engine time minus local time
        self.started: dict[str, float] = {}  # container ID -> StartedAt at its last inspection

    def now(self) -> float:
        if self.offset is None:
            self.offset = self.client.system_time() - time.time()
        return time.time() + self.offset

    def steady(self, container: ObservedContainer) -> bool:
        """A health check that passed, a completed one-shot, or up for STEADY_SECONDS."""
        if container.state != "running" or container.health is not None:
            return True
        known = self.started.get(container.id)
        if known is not None and not is_steady(known, self.now(), STEADY_SECONDS):
            return False
        # Inspect again: a container that restarted meanwhile has a new StartedAt.
        started, _ = self.client.start_record(container.id)
        self.started[container.id] = started
        return is_steady(started, self.now(), STEADY_SECONDS)

    def describe(self, container: ObservedContainer) -> str:
        if container.state not in ("running", "restarting"):
            return container.status
        _, restarts = self.client.start_record(container.id)
        return f"{container.status}, restarted {restarts} times" if restarts else container.status


def _states(containers: list[ObservedContainer]) -> str:
    return ", ".join(f"{c.name} {c.status}" for c in containers) or "no container yet"
