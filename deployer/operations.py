"""What each command does, stage by stage. The CLI calls these and renders what they return."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from deployer import audit, compose, releases, runner
from deployer import lock as lock_module
from deployer.apply import Applied, Login, Progress, apply, registry_of, wait_ready
from deployer.compose import Command, docker_login, up
from deployer.desired import DesiredState, compose_project, resolve
from deployer.engine import Engine, EngineClient
from deployer.errors import (
    ConfigError,
    ConfigIssue,
    ConfirmationRefusedError,
    DeployerError,
    Interrupted,
    RolledBackError,
    UnhealthyServiceError,
)
from deployer.lock import DEPLOY_TTL, Lock, holding
from deployer.observed import (
    ObservedContainer,
    ObservedState,
    image_ids,
    normalize_reference,
    observe,
)
from deployer.plan import Plan, plan
from deployer.prune import Pruned, prunable, repository_of
from deployer.releases import (
    FAILED,
    INTERRUPTED,
    ROLLED_BACK,
    SUCCESS,
    Release,
    change_lines,
    history,
    pinned_spec,
    rollback_target,
    running_services,
)
from deployer.spec import Spec, find_specs, load_spec, spec_path
from deployer.state import Actor, StateStore
from deployer.status import EnvironmentStatus
from deployer.status import status as environment_status
from deployer.variables import Redactor, Variables, is_secret, load_variables

T = TypeVar("T")


@dataclass(frozen=True)
class Loaded:
    spec: Spec
    variables: Variables
    engine: Engine


def load(
    folder: Path, name: str, redact: Redactor, process_env: Mapping[str, str] | None = None
) -> Loaded:
    """Spec and variables of one environment; their secret values are taught to `redact`."""
    environ = os.environ if process_env is None else process_env
    spec = load_spec(spec_path(folder, name))
    variables = load_variables(spec.env_files, environ, spec.secrets)
    redact.add(variables.secret_values())
    return Loaded(spec, variables, Engine.choose(spec.engine_host, environ))


def desired_state(loaded: Loaded, redact: Redactor) -> DesiredState:
    desired = resolve(loaded.spec, loaded.variables, loaded.engine, runner.run)
    # Secrets that reach containers from elsewhere (env_file:, the process environment).
    redact.add(_secret_values(desired, loaded.spec.secrets))
    return desired


def _secret_values(desired: DesiredState, declared: Iterable[str]) -> list[str]:
    names = frozenset(declared)
    values = []
    for service in desired.model.get("services", {}).values():
        for name, value in (service.get("environment") or {}).items():
            if value is not None and is_secret(name, names):
                values.append(str(value).replace("$$", "$"))
    return values


def validate(folder: Path, names: list[str], redact: Redactor) -> list[str]:
    """Check each named environment (all when none named); returns the names checked."""
    names = names or sorted(find_specs(folder))
    issues: list[ConfigIssue] = []
    for name in names:
        try:
            desired_state(load(folder, name, redact), redact)
        except ConfigError as e:
            issues.extend(e.issues)
    if issues:
        raise ConfigError(issues)
    return names


def render(loaded: Loaded, redact: Redactor) -> tuple[Command, DesiredState]:
    desired = desired_state(loaded, redact)
    return up(desired.project, [], remove_orphans=True), desired


def diff(loaded: Loaded, redact: Redactor) -> tuple[Plan, DesiredState, EngineClient]:
    desired, observed, client = _desired_and_observed(loaded, redact)
    return plan(desired, observed), desired, client


def _desired_and_observed(
    loaded: Loaded, redact: Redactor
) -> tuple[DesiredState, ObservedState, EngineClient]:
    # Compose resolves the model in its own process while this one reads the engine.
    with ThreadPoolExecutor(max_workers=1) as pool:
        resolving = pool.submit(desired_state, loaded, redact)
        try:
            client = EngineClient(loaded.engine)
            observed = observe(client, loaded.spec.project)
        except DeployerError:
            resolving.result()  # a problem in the spec is reported before one with the engine
            raise
        desired = resolving.result()
    return desired, observed, client


@dataclass(frozen=True)
class Interaction:
    """How an operation talks to its user; the CLI provides it."""

    progress: Progress
    confirm: Callable[[str], bool]  # asks a yes/no question (or refuses without a terminal)
    show_plan: Callable[[Plan], None]
    redact: Redactor


def _confirmed(loaded: Loaded, ui: Interaction, question: str) -> None:
    """Ask where the spec says so; a "no" changes nothing."""
    if loaded.spec.confirm and not ui.confirm(question):
        raise ConfirmationRefusedError(f"{loaded.spec.name}: not confirmed; nothing changed")


def _plan_question(loaded: Loaded, the_plan: Plan) -> str:
    return f"Apply {len(the_plan.changes)} change(s) to {loaded.spec.name}?"


@contextmanager
def _locked(
    loaded: Loaded, client: EngineClient, what: str, lock_wait: float
) -> Iterator[tuple[StateStore, Actor]]:
    """Hold the environment lock for a state-changing command."""
    store = StateStore(client, loaded.spec.project)
    actor = Actor.current()
    lock = Lock.new(actor, f"{what} {loaded.spec.name}", "process", DEPLOY_TTL)
    with holding(store, loaded.spec.name, lock, lock_wait):
        yield store, actor


def _audited(
    store: StateStore,
    actor: Actor,
    loaded: Loaded,
    command: str,
    redact: Redactor,
    action: Callable[[], T],
    changes: Sequence[str] = (),
) -> T:
    """Run a state-changing action and append its audit entry, whatever its outcome."""
    name = loaded.spec.name
    try:
        result = action()
    except DeployerError as e:
        audit.write(store, actor, name, command, FAILED, redact, changes, e.message)
        raise
    except KeyboardInterrupt:
        audit.write(store, actor, name, command, INTERRUPTED, redact, changes)
        raise
    audit.write(store, actor, name, command, SUCCESS, redact, changes)
    return result


def registry_login(loaded: Loaded, pulls: Sequence[str], redact: Redactor) -> Login | None:
    """The spec's registry credentials, when a pull needs them; None when none is set up."""
    registry = loaded.spec.registry
    if registry is None:
        return None
    password = loaded.variables.values().get(registry.password_env) or os.environ.get(
        registry.password_env
    )
    if not password:
        if not any(registry_of(image) == registry.server for image in pulls):
            return None
        raise DeployerError(
            f"registry {registry.server}: set the variable {registry.password_env} "
            f"(in the environment or an env file) to the password of {registry.username}"
        )
    redact.add([password])
    return Login(registry.server, registry.username, password)


def deploy(
    loaded: Loaded, ui: Interaction, command: str, lock_wait: float = 0.0, save_login: bool = False
) -> Applied | Plan:
    """Plan, confirm where the spec asks, apply under the environment lock, record the release.

    The first plan is made without the lock, so that a deploy with nothing to do stays cheap and
    takes nothing; with changes, the lock is taken and the plan made again under it.
    """
    the_plan, desired, client = diff(loaded, ui.redact)
    if the_plan.in_sync:
        ui.show_plan(the_plan)
        return the_plan
    with _locked(loaded, client, "deploy", lock_wait) as (store, actor):
        return _plan_and_apply(loaded, loaded, ui, store, actor, command, desired, save_login)


def _plan_and_apply(
    loaded: Loaded,
    deployed: Loaded,
    ui: Interaction,
    store: StateStore,
    actor: Actor,
    command: str,
    desired: DesiredState,
    save_login: bool = False,
) -> Applied | Plan:
    """Under the lock: plan against what runs now, show it, confirm, apply and record.

    `deployed` is what the release records: the spec itself, or for a rollback the pinned one."""
    before = observe(store.client, loaded.spec.project)
    the_plan = plan(desired, before)
    ui.show_plan(the_plan)
    if the_plan.in_sync:
        return the_plan
    login = registry_login(loaded, the_plan.pulls, ui.redact)
    _confirmed(loaded, ui, _plan_question(loaded, the_plan))
    applied = _apply_recorded(deployed, ui, store, actor, command, the_plan, desired, before, login)
    if save_login and login is not None:
        runner.run(docker_login(loaded.engine, login.server, login.username, login.password))
    return applied


def _apply_recorded(
    loaded: Loaded,
    ui: Interaction,
    store: StateStore,
    actor: Actor,
    command: str,
    the_plan: Plan,
    desired: DesiredState,
    before: ObservedState,
    login: Login | None,
) -> Applied:
    """Apply a plan and record the outcome as a release and an audit entry, whatever it is."""
    client = store.client

    def finish(result: str, error: str = "") -> None:
        services = running_services(observe(client, loaded.spec.project))
        lock_module.verify_held(store)
        releases.record(
            store, actor, command, result, loaded.spec, loaded.variables, services, the_plan
        )
        audit.write(
            store,
            actor,
            loaded.spec.name,
            command,
            result,
            ui.redact,
            change_lines(the_plan),
            error,
        )

    try:
        applied = apply(the_plan, desired, client, runner.run, ui.progress, login)
    except UnhealthyServiceError as failure:
        if loaded.spec.on_failure != "rollback":
            finish(FAILED, failure.message)
            raise
        try:
            restored = _restore(loaded, ui, client, the_plan, before)
        except DeployerError as e:
            finish(FAILED, f"{failure.message}; the rollback failed too: {e.message}")
            raise
        finish(ROLLED_BACK, failure.message)
        raise RolledBackError(failure, restored) from failure
    except DeployerError as e:
        finish(FAILED, e.message)
        raise
    except KeyboardInterrupt:
        finish(INTERRUPTED)
        raise
    finish(SUCCESS)
    return applied


def _restore(
    loaded: Loaded, ui: Interaction, client: EngineClient, failed: Plan, before: ObservedState
) -> list[str]:
    """Put the changed services back on the exact images they ran before the deploy."""
    changed = set(failed.services_to_up)
    previous = replace(
        before, containers=tuple(c for c in before.containers if c.service in changed)
    )
    images = {n: s.pinned for n, s in running_services(previous).items()}
    if not images:
        return []
    pinned = Loaded(pinned_spec(loaded.spec, images), loaded.variables, loaded.engine)
    desired = desired_state(pinned, ui.redact)
    restore_plan = plan(desired, observe(client, loaded.spec.project))
    apply(restore_plan, desired, client, runner.run, ui.progress)
    return sorted(images)


def rollback(
    loaded: Loaded, ui: Interaction, to: int | None, lock_wait: float = 0.0
) -> Applied | Plan:
    """Redeploy release `to` (default: the last good one before the current) by its exact images."""
    client = EngineClient(loaded.engine)
    with _locked(loaded, client, "rollback", lock_wait) as (store, actor):
        target = rollback_target(history(store), to)
        known = desired_state(loaded, ui.redact).services
        images = {n: s.pinned for n, s in target.services.items() if n in known}
        pinned = Loaded(pinned_spec(loaded.spec, images), loaded.variables, loaded.engine)
        desired = desired_state(pinned, ui.redact)
        command = f"rollback to release {target.number}"
        return _plan_and_apply(loaded, pinned, ui, store, actor, command, desired)


def history_of(loaded: Loaded) -> list[Release]:
    return history(StateStore(EngineClient(loaded.engine), loaded.spec.project))


def audit_of(loaded: Loaded) -> list[audit.AuditEntry]:
    return audit.entries(StateStore(EngineClient(loaded.engine), loaded.spec.project))


def lock_status(loaded: Loaded) -> tuple[Lock | None, str | None]:
    return lock_module.status(StateStore(EngineClient(loaded.engine), loaded.spec.project))


def lock_acquire(loaded: Loaded, reason: str, ttl: float, redact: Redactor) -> Lock:
    """Take the lock for a maintenance window; it stays until released or its TTL passes."""
    store = StateStore(EngineClient(loaded.engine), loaded.spec.project)
    actor = Actor.current()
    lock = Lock.new(actor, reason, "manual", ttl)
    command = f"lock acquire --reason {reason!r}"
    try:
        lock_module.acquire(store, loaded.spec.name, lock, wait=0.0)
    except DeployerError as e:
        audit.write(store, actor, loaded.spec.name, command, "refused", redact, error=e.message)
        raise
    audit.write(store, actor, loaded.spec.name, command, SUCCESS, redact)
    return lock


def lock_release(loaded: Loaded, force: bool, redact: Redactor) -> Lock | None:
    """Release a maintenance lock; a deploy's lock (live or stale) only with `force`."""
    store = StateStore(EngineClient(loaded.engine), loaded.spec.project)
    held, stale = lock_module.status(store)
    if held is None:
        return None
    if held.kind == "process" and not force:
        state = f"stale: {stale}" if stale else "its deploy is running"
        raise DeployerError(
            f"the lock of {loaded.spec.name} is held by a deploy of {held.describe()} ({state}); "
            f"break it with `deploy lock release {loaded.spec.name} --force`"
        )
    lock_module.break_lock(store, loaded.spec.name, held)
    command = "lock release --force" if force else "lock release"
    audit.write(
        store,
        Actor.current(),
        loaded.spec.name,
        command,
        SUCCESS,
        redact,
        error=f"released the lock of {held.describe()}",
    )
    return held


def status(loaded: Loaded, redact: Redactor) -> EnvironmentStatus:
    desired, observed, client = _desired_and_observed(loaded, redact)
    return environment_status(desired, observed, history(StateStore(client, loaded.spec.project)))


def logs(
    loaded: Loaded, services: Sequence[str], follow: bool, since: str | None, tail: int | None
) -> Iterator[str]:
    """The services' log lines, as Compose prints them (all services when none named)."""
    project = compose_project(loaded.spec, loaded.variables, loaded.engine)
    return runner.stream(compose.logs(project, services, follow, since, tail))


def restart(
    loaded: Loaded, ui: Interaction, services: Sequence[str], lock_wait: float = 0.0
) -> tuple[ObservedContainer, ...]:
    """Restart the services (all when none named) and wait until they are ready again."""
    desired = desired_state(loaded, ui.redact)
    unknown = sorted(set(services) - set(desired.services))
    if unknown:
        raise DeployerError(
            f"no service {', '.join(unknown)} in {loaded.spec.name} (services: {', '.join(desired.services)})"
        )
    targets = list(services) or sorted(desired.services)
    client = EngineClient(loaded.engine)
    with _locked(loaded, client, "restart", lock_wait) as (store, actor):
        _confirmed(loaded, ui, f"Restart {', '.join(targets)} in {loaded.spec.name}?")

        def restart_and_wait() -> tuple[ObservedContainer, ...]:
            restarted = (
                f"`docker compose restart` was not cut short: {', '.join(targets)} restarted"
            )
            with Interrupted.leaving(restarted):
                runner.run(compose.restart(desired.compose, targets))
            with Interrupted.leaving(f"{restarted}, not waited for until ready"):
                return wait_ready(client, desired, targets, ui.progress)

        command = f"restart {' '.join(services)}".rstrip()
        return _audited(store, actor, loaded, command, ui.redact, restart_and_wait, targets)


def down(loaded: Loaded, ui: Interaction, volumes: bool, lock_wait: float = 0.0) -> None:
    """Stop and remove the environment's containers and networks (volumes only if asked).

    deployer's own records (history, audit) stay: they are not the project's volumes."""
    client = EngineClient(loaded.engine)
    project = compose_project(loaded.spec, loaded.variables, loaded.engine)
    with _locked(loaded, client, "down", lock_wait) as (store, actor):
        what = "containers, networks and volumes" if volumes else "containers and networks"
        _confirmed(loaded, ui, f"Stop and remove the {what} of {loaded.spec.name}?")
        command = "down --volumes" if volumes else "down"

        def take_down() -> None:
            outcome = f"`docker compose down` was not cut short: the {what} of {loaded.spec.name} are removed"
            with Interrupted.leaving(outcome):
                runner.run(compose.down(project, volumes))

        _audited(store, actor, loaded, command, ui.redact, take_down)


def prune(
    loaded: Loaded, ui: Interaction, aggressive: bool, dry_run: bool, lock_wait: float = 0.0
) -> Pruned:
    """Remove dangling images; with `aggressive`, also this environment's unused images except
    those of the last `deploy.keep_releases` releases. Never an image a container uses."""
    desired = desired_state(loaded, ui.redact)
    client = EngineClient(loaded.engine)
    with _locked(loaded, client, "prune", lock_wait) as (store, actor):
        recorded = history(store)
        local = client.images()
        local_ids = image_ids(local)
        # Kept: the images of the last releases, and those the spec names now.
        kept = recorded[: loaded.spec.keep_releases]
        keep = {s.image_id for r in kept for s in r.services.values()}
        keep |= {local_ids.get(normalize_reference(s.image), "") for s in desired.services.values()}
        repositories = {repository_of(s.image) for s in desired.services.values()}
        repositories |= {repository_of(s.image) for r in recorded for s in r.services.values()}
        images = client.dangling_images() + (local if aggressive else [])
        unique = list({i["Id"]: i for i in images}.values())
        candidates = prunable(unique, client.images_in_use(), keep, repositories, aggressive)
        if dry_run or not candidates:
            return Pruned(tuple(candidates), dry_run, 0)
        _confirmed(
            loaded, ui, f"Remove {len(candidates)} image(s) from the engine of {loaded.spec.name}?"
        )

        def remove() -> Pruned:
            before = client.layers_size()
            stopped = f"stopped while removing images; `deploy prune {loaded.spec.name} --dry-run` shows what is left"
            with Interrupted.leaving(stopped):
                for candidate in candidates:
                    client.remove_image(candidate.image_id)
            return Pruned(tuple(candidates), False, max(0, before - client.layers_size()))

        command = "prune --aggressive" if aggressive else "prune"
        removed = [
            f"{c.image_id[7:19]} {' '.join(c.references) or '(dangling)'}" for c in candidates
        ]
        return _audited(store, actor, loaded, command, ui.redact, remove, removed)
