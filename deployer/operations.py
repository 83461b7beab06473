"""What each command does, stage by stage. The CLI calls these and renders what they return."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from deployer import audit, releases, runner
from deployer import lock as lock_module
from deployer.apply import Applied, Progress, apply
from deployer.compose import Command, up
from deployer.desired import DesiredState, resolve
from deployer.engine import Engine, EngineClient
from deployer.errors import (
    ConfigError,
    ConfigIssue,
    ConfirmationRefusedError,
    DeployerError,
    RolledBackError,
    UnhealthyServiceError,
)
from deployer.lock import DEPLOY_TTL, Lock, holding
from deployer.observed import ObservedState, observe
from deployer.plan import Plan, plan
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
from deployer.variables import Redactor, Variables, is_secret, load_variables


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
    return plan(desired, observed), desired, client


@dataclass(frozen=True)
class Interaction:
    """How an operation talks to its user; the CLI provides it."""

    progress: Progress
    confirm: Callable[[Plan], bool]
    show_plan: Callable[[Plan], None]
    redact: Redactor


def _confirmed(loaded: Loaded, the_plan: Plan, ui: Interaction) -> None:
    if loaded.spec.confirm and not ui.confirm(the_plan):
        raise ConfirmationRefusedError(f"{loaded.spec.name}: not confirmed; nothing changed")


def deploy(loaded: Loaded, ui: Interaction, command: str, lock_wait: float = 0.0) -> Applied | Plan:
    """Plan, confirm where the spec asks, apply under the environment lock, record the release.

    The first plan is made without the lock, so that a deploy with nothing to do stays cheap and
    takes nothing; with changes, the lock is taken and the plan made again under it.
    """
    the_plan, desired, client = diff(loaded, ui.redact)
    if the_plan.in_sync:
        ui.show_plan(the_plan)
        return the_plan
    store = StateStore(client, loaded.spec.project)
    actor = Actor.current()
    lock = Lock.new(actor, f"deploy {loaded.spec.name}", "process", DEPLOY_TTL)
    with holding(store, loaded.spec.name, lock, lock_wait):
        before = observe(client, loaded.spec.project)
        the_plan = plan(desired, before)
        ui.show_plan(the_plan)
        if the_plan.in_sync:
            return the_plan
        _confirmed(loaded, the_plan, ui)
        return _apply_recorded(loaded, ui, store, actor, command, the_plan, desired, before)


def _apply_recorded(
    loaded: Loaded,
    ui: Interaction,
    store: StateStore,
    actor: Actor,
    command: str,
    the_plan: Plan,
    desired: DesiredState,
    before: ObservedState,
) -> Applied:
    """Apply a plan and record the outcome as a release and an audit entry, whatever it is."""
    client = store.client

    def finish(result: str, error: str = "") -> None:
        services = running_services(observe(client, loaded.spec.project), client.image_digests())
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
        applied = apply(the_plan, desired, client, runner.run, ui.progress)
    except UnhealthyServiceError as failure:
        if loaded.spec.on_failure != "rollback":
            finish(FAILED, failure.message)
            raise
        restored = _restore(loaded, ui, client, the_plan, before)
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
    previous = ObservedState(
        before.project,
        tuple(c for c in before.containers if c.service in changed),
        before.image_ids,
    )
    images = {n: s.pinned for n, s in running_services(previous, client.image_digests()).items()}
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
    store = StateStore(client, loaded.spec.project)
    actor = Actor.current()
    lock = Lock.new(actor, f"rollback {loaded.spec.name}", "process", DEPLOY_TTL)
    with holding(store, loaded.spec.name, lock, lock_wait):
        target = rollback_target(history(store), to)
        known = desired_state(loaded, ui.redact).services
        images = {n: s.pinned for n, s in target.services.items() if n in known}
        pinned = Loaded(pinned_spec(loaded.spec, images), loaded.variables, loaded.engine)
        desired = desired_state(pinned, ui.redact)
        before = observe(client, loaded.spec.project)
        the_plan = plan(desired, before)
        ui.show_plan(the_plan)
        if the_plan.in_sync:
            return the_plan
        _confirmed(loaded, the_plan, ui)
        command = f"rollback to release {target.number}"
        return _apply_recorded(pinned, ui, store, actor, command, the_plan, desired, before)


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
    store.remove_lock()
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
