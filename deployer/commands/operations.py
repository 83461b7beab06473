"""What each command does, stage by stage. The CLI calls these and renders what they return."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from deployer.core.desired import DesiredState, Runner, compose_project, identifiers, resolve
from deployer.core.errors import (
    ConfigError,
    ConfigIssue,
    ConfirmationRefusedError,
    DeployerError,
    EngineUnreachableError,
    HostsFailedError,
    Interrupted,
    PromotionRefusedError,
    RolledBackError,
    RolloutFailedError,
    SwarmNotBuiltError,
    SwarmNotConvergedError,
    TagMovedError,
    TagNotInRegistryError,
)
from deployer.core.reference import ImageReference, is_image_id, lookup_key
from deployer.core.spec import SWARM, Spec, find_specs, load_spec, spec_path
from deployer.core.spec_edit import pin_images
from deployer.core.variables import (
    PROCESS_ENVIRONMENT,
    Redactor,
    SecretPolicy,
    Variables,
    compose_reading_issues,
    load_variables,
    referenced_names,
    weak_secret_issues,
)
from deployer.infra import runner
from deployer.infra.engine import PROJECT_LABEL as COMPOSE_PROJECT_LABEL
from deployer.infra.engine import Engine, EngineClient
from deployer.state import audit, releases, retention
from deployer.state import fleet_store as fleet_state
from deployer.state import lock as lock_module
from deployer.state.lock import DEPLOY_TTL, Lock, holding
from deployer.state.releases import (
    FAILED,
    INTERRUPTED,
    NOT_STARTED,
    ROLLED_BACK,
    SUCCESS,
    UNCHANGED,
    UNKNOWN,
    HostRelease,
    Release,
    Secrets,
    ServiceRelease,
    change_lines,
    history,
    newest_configs,
    newest_first,
    restore_state,
    rollback_target,
    running_services,
    stack_services,
)
from deployer.state.store import Actor, StateStore, Store, records_of_every_project
from deployer.state.swarm_store import SwarmStore
from deployer.targets.compose import build as build_stage
from deployer.targets.compose import project as compose
from deployer.targets.compose.apply import Applied, Login, Progress, apply, registry_of, wait_ready
from deployer.targets.compose.observe import (
    ObservedContainer,
    ObservedState,
    image_ids,
    observe,
    observe_containers,
)
from deployer.targets.compose.plan import Change, Plan, plan
from deployer.targets.compose.project import Command, docker_login, env_files_reading, up
from deployer.targets.compose.prune import Pruned, kept_by_releases, prunable, repository_of
from deployer.targets.compose.registry import RegistryDigests, resolve_digests, tags_to_check
from deployer.targets.compose.status import EnvironmentStatus, ServiceStatus
from deployer.targets.compose.status import status as environment_status
from deployer.targets.fleet import hosts as fleet
from deployer.targets.swarm import apply as swarm_apply
from deployer.targets.swarm import plan as swarm_plan
from deployer.targets.swarm.apply import SwarmApplied
from deployer.targets.swarm.commands import (
    log_line,
    service_logs,
    service_remove,
    service_restart,
    service_rollback,
    stack_rm,
)
from deployer.targets.swarm.observe import ObservedStack, observe_stack, stack_leftovers
from deployer.targets.swarm.stack import (
    StackFile,
    convert,
    located_issues,
    slow_updates,
    stack_deploy,
)
from deployer.targets.swarm.status import SwarmStatus

T = TypeVar("T")
_ANONYMOUS_VOLUME = re.compile(r"^[0-9a-f]{64}$")  # the name the engine gives an anonymous volume


@dataclass(frozen=True)
class Outside:
    """Where operations reach beyond this process: processes, the engine, the records, who acts.
    The unit tests give fakes (tests/unit/fakes.py)."""

    run: Runner = runner.run
    connect: Callable[[Engine], EngineClient] = EngineClient
    store: Callable[[EngineClient, str], Store] = StateStore
    swarm_store: Callable[[EngineClient, str], Store] = SwarmStore  # a swarm environment's
    actor: Callable[[], Actor] = Actor.current


@dataclass(frozen=True)
class Loaded:
    spec: Spec
    variables: Variables
    engine: Engine  # the host operations act on; one of `hosts`
    outside: Outside = field(default_factory=Outside)
    hosts: tuple[Engine, ...] = ()  # the hosts the command acts on (`--hosts`; default all)
    every_host: tuple[Engine, ...] = ()  # all the spec's hosts, whatever `--hosts` selects

    def on(self, engine: Engine) -> Loaded:
        """The same environment, acting on one of its hosts."""
        return replace(self, engine=engine)

    @property
    def environment_hosts(self) -> tuple[Engine, ...]:
        """Every host of the environment: where its lock is taken and its records are kept."""
        return self.every_host or self.hosts or (self.engine,)

    @property
    def selected_hosts(self) -> tuple[Engine, ...]:
        """The hosts the command acts on."""
        return self.hosts or (self.engine,)

    def store(self, client: EngineClient) -> Store:
        """Where the environment's records and lock live on the engine `client` reaches (on a
        swarm: in the swarm, whichever manager `client` reaches)."""
        make = self.outside.swarm_store if self.spec.orchestrator == SWARM else self.outside.store
        return make(client, self.spec.project)


def load(
    folder: Path,
    name: str,
    redact: Redactor,
    process_env: Mapping[str, str] | None = None,
    hosts: Sequence[str] = (),
    swarm_ready: bool = False,
) -> Loaded:
    """Spec and variables of one environment; their secret values are taught to `redact`.
    `hosts` (`--hosts`) limits the environment to some of its hosts. A command that does not
    work on a swarm yet (`swarm_ready` False) refuses an environment on one."""
    environ = os.environ if process_env is None else process_env
    spec = load_spec(spec_path(folder, name))
    if spec.orchestrator == SWARM and not swarm_ready:
        raise SwarmNotBuiltError(spec.name)
    referenced = referenced_names(spec.interpolated_texts())
    variables = load_variables(spec.env_files, environ, spec.is_secret, referenced)
    redact.add(variables.secret_values())
    urls = spec.engine_hosts or (spec.engine_host,)
    every = [Engine.choose(url, environ) for url in urls]
    chosen = tuple(fleet.selected(every, hosts, spec.name))
    return Loaded(spec, variables, chosen[0], hosts=chosen, every_host=tuple(every))


def desired_state(loaded: Loaded, redact: Redactor) -> DesiredState:
    desired = resolve(loaded.spec, loaded.variables, loaded.engine, loaded.outside.run)
    # Secrets that reach containers from elsewhere (env_file:, the process environment).
    redact.add(_secret_values(desired, loaded.spec.is_secret))
    return desired


def _secret_values(desired: DesiredState, is_secret: SecretPolicy) -> list[str]:
    values = []
    for service in desired.model.get("services", {}).values():
        for name, value in (service.get("environment") or {}).items():
            if value is not None and is_secret(name):
                values.append(str(value).replace("$$", "$"))
    return values


@dataclass(frozen=True)
class Validated:
    names: list[str]  # the environments checked
    # What works but is risky: weak secrets, env file lines Compose would read otherwise.
    warnings: list[ConfigIssue]


def validate(folder: Path, names: list[str], redact: Redactor) -> Validated:
    """Check each named environment (all when none named); errors raise, warnings are returned."""
    names = names or sorted(find_specs(folder))
    issues: list[ConfigIssue] = []
    warnings: list[ConfigIssue] = []
    for name in names:
        try:
            loaded = load(folder, name, redact, swarm_ready=True)
            desired = desired_state(loaded, redact)
        except ConfigError as e:
            issues.extend(e.issues)
            continue
        if loaded.spec.orchestrator == SWARM:
            refused, ignored = located_issues(_converted(desired), loaded.spec)
            issues += refused
            warnings += ignored
        model_names = identifiers(desired.model, loaded.spec.project)
        warnings += weak_secret_issues(loaded.variables, model_names)
        warnings += _compose_reading_issues(loaded, redact)
    if issues:
        raise ConfigError(issues)
    return Validated(names, warnings)


def _compose_reading_issues(loaded: Loaded, redact: Redactor) -> list[ConfigIssue]:
    """Compare deployer's reading of the env files with Compose's own (`--env-file`)."""
    if not loaded.spec.env_files:
        return []
    process = {
        n: v.value for n, v in loaded.variables.items.items() if v.source == PROCESS_ENVIRONMENT
    }
    command = env_files_reading(loaded.spec.project, loaded.spec.env_files, process)
    result = runner.run(command, check=False)
    failure = redact(result.stderr or result.stdout) if result.returncode != 0 else None
    return compose_reading_issues(loaded.variables, result.stdout, failure)


def render(loaded: Loaded, redact: Redactor) -> tuple[Command, DesiredState]:
    desired = desired_state(loaded, redact)
    return up(desired.project, [], remove_orphans=True), desired


def render_stack(loaded: Loaded, redact: Redactor) -> tuple[Command, StackFile, list[ConfigIssue]]:
    """The `docker stack deploy` invocation of a swarm environment, its stack file, and the
    warnings of the conversion; a feature Swarm cannot honour is an error."""
    stack, ignored = _stack_file(loaded, desired_state(loaded, redact))
    registry_auth = loaded.spec.registry is not None
    return stack_deploy(loaded.spec.project, loaded.engine, stack, registry_auth), stack, ignored


def _stack_file(loaded: Loaded, desired: DesiredState) -> tuple[StackFile, list[ConfigIssue]]:
    """The stack file of a desired state, and the conversion's warnings; a feature Swarm
    cannot honour is an error."""
    stack = _converted(desired)
    refused, ignored = located_issues(stack, loaded.spec)
    if refused:
        raise ConfigError(refused)
    return stack, ignored


def _converted(desired: DesiredState) -> StackFile:
    """The stack file of a desired state, with warnings for updates a deploy would not wait
    for to the end."""
    return slow_updates(convert(desired.model), desired.wait_timeout)


def swarm_diff(loaded: Loaded, redact: Redactor) -> Plan:
    """The plan of a swarm environment: its stack file against the stack on the swarm."""
    return swarm_status(loaded, redact).plan


def swarm_status(loaded: Loaded, redact: Redactor) -> SwarmStatus:
    _, stack, _ = render_stack(loaded, redact)
    observed = observe_stack(loaded.outside.connect(loaded.engine), loaded.spec.project)
    return SwarmStatus(
        loaded.spec.name, observed, swarm_plan.plan(loaded.spec.name, stack, observed)
    )


# The swarm target (`engine.orchestrator: swarm`): the same stages, the stack handed to Swarm
# through a manager (swarm_apply.py), records and lock kept in the swarm (loaded.store).


def swarm_logs(
    loaded: Loaded,
    services: Sequence[str],
    follow: bool,
    since: str | None,
    tail: int | None,
    redact: Redactor,
) -> Iterator[str]:
    """The log lines of a swarm environment's services (those of the stack on the swarm when
    none named), from their tasks on every node, as they come."""
    desired = desired_state(loaded, redact)  # also teaches `redact` their secrets
    wanted = _named_services(loaded, desired, services)  # all when none named
    name, project = loaded.spec.name, loaded.spec.project
    on_swarm = observe_stack(loaded.outside.connect(loaded.engine), project).services
    absent = sorted(set(services) - set(on_swarm))
    if absent:
        them = "them" if len(absent) > 1 else "it"
        raise DeployerError(
            f"{name} has no {', '.join(absent)} on the swarm yet (`deploy {name}` creates {them})"
        )
    names = sorted(set(wanted) & set(on_swarm))
    commands = [service_logs(loaded.engine, project, s, follow, since, tail) for s in names]
    for _, line in runner.streams(commands):
        if isinstance(line, DeployerError):
            raise line
        yield log_line(project, line)


def swarm_down(loaded: Loaded, ui: Interaction, volumes: bool, lock_wait: float = 0.0) -> list[str]:
    """Remove the stack (`docker stack rm`) under the environment lock and wait until its
    services and networks are gone; returns the services removed. History and audit stay."""
    name, project = loaded.spec.name, loaded.spec.project
    if volumes:
        raise DeployerError(
            f"{name} is a swarm stack: its volumes are on each node that ran its tasks, "
            f"out of reach of `deploy down --volumes`; nothing changed (`deploy down {name}`, "
            "then `docker volume rm` on each node)"
        )
    client = loaded.outside.connect(loaded.engine)
    # An engine that is not a manager gets the one-line error from the swarm store, before the lock.
    with _locked(loaded, client, "down", lock_wait) as (store, actor):
        removed = sorted(observe_stack(client, project).services)
        _confirmed(loaded, ui, f"Remove the stack {project} of {name}, its services and networks?")

        def take_down() -> None:
            with Interrupted.leaving(f"`docker stack rm` was not cut short: {project} is removed"):
                loaded.outside.run(stack_rm(loaded.engine, project))
            with Interrupted.leaving(f"{project} is removed; its networks may still be going"):
                _wait_removed(client, project, loaded.spec.wait_timeout)

        changes = [f"service {s} removed" for s in removed]
        _audited(store, actor, loaded, "down", ui.redact, take_down, changes)
    return removed


def _wait_removed(client: EngineClient, project: str, timeout: float) -> None:
    """Until nothing of the stack is left on the swarm (the manager removes its networks once
    their tasks have stopped), for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while left := stack_leftovers(client, project):
        if time.monotonic() >= deadline:
            raise DeployerError(
                f"the stack {project} was removed, but after {timeout:g}s the swarm still has "
                f"{', '.join(left)}"
            )
        time.sleep(0.25)


def swarm_deploy(
    loaded: Loaded,
    ui: Interaction,
    command: str,
    lock_wait: float = 0.0,
) -> SwarmApplied | Plan:
    """Plan, confirm where the spec asks, hand the changed services to Swarm under the lock,
    wait until they converge, record the release. Nothing to change touches nothing: no lock,
    no `docker stack deploy` (which would update every service anyway)."""
    manager = loaded.outside.connect(loaded.engine)
    desired = desired_state(loaded, ui.redact)
    stack, _ = _stack_file(loaded, desired)
    first, _ = _swarm_plan(loaded, manager, stack)
    if not swarm_apply.changes_anything(first):
        return _nothing_to_deploy(ui, first)
    with _locked(loaded, manager, "deploy", lock_wait) as (store, actor):
        return _swarm_apply(loaded, ui, manager, store, actor, command, desired, stack)


def _swarm_plan(
    loaded: Loaded, manager: EngineClient, stack: StackFile
) -> tuple[Plan, ObservedStack]:
    observed = observe_stack(manager, loaded.spec.project)
    return swarm_plan.plan(loaded.spec.name, stack, observed), observed


def _nothing_to_deploy(ui: Interaction, the_plan: Plan) -> Plan:
    """In sync: the plan. Services that have not converged (tasks down, an update paused) are
    Swarm's to fix, or a deploy's once something changes: an error, not a success."""
    ui.show_plan(the_plan)
    if the_plan.changes:
        raise SwarmNotConvergedError(the_plan.environment, change_lines(the_plan))
    return the_plan


def _swarm_apply(
    loaded: Loaded,
    ui: Interaction,
    manager: EngineClient,
    store: Store,
    actor: Actor,
    command: str,
    desired: DesiredState,
    stack: StackFile,
) -> SwarmApplied | Plan:
    """Under the lock: plan again, check that the registry has every image to deploy, show,
    confirm, apply and record; a service that does not converge rolls the others back
    (`deploy.on_failure: rollback`) where Swarm has not already."""
    the_plan, before = _swarm_plan(loaded, manager, stack)
    if not swarm_apply.changes_anything(the_plan):
        return _nothing_to_deploy(ui, the_plan)
    ui.show_plan(the_plan)
    services = stack.document["services"]
    images = sorted({str(services[n]["image"]) for n in swarm_apply.deployed_services(the_plan)})
    login = registry_login(loaded, images, ui.redact)
    _require_in_registry(manager, images, login)
    _confirmed(loaded, ui, _plan_question(loaded, the_plan))
    with _recorded(loaded, store, actor, command, ui.redact, (), ui.progress) as recording:
        recording.applies_to_swarm(the_plan, desired, manager)
        try:
            return swarm_apply.apply(
                the_plan,
                stack,
                manager,
                loaded.outside.run,
                ui.progress,
                login,
                desired.wait_timeout,
            )
        except DeployerError as failure:
            if loaded.spec.on_failure != "rollback":
                raise
            recording.rolling_back = failure
            undone = _swarm_undo(loaded, ui, manager, the_plan, before, desired.wait_timeout)
            if not undone:  # it failed before any service changed: nothing was rolled back
                recording.rolling_back = None
                raise
            raise RolledBackError(failure, undone) from failure


def _require_in_registry(manager: EngineClient, images: Sequence[str], login: Login | None) -> None:
    """Every image in its registry, asked through the manager: the nodes pull them there."""
    found = resolve_digests(manager, images, login)
    if found.failures:
        raise next(iter(sorted(found.failures.items())))[1]
    missing = [image for image in images if found.digests.get(image) is None]
    if missing:
        raise TagNotInRegistryError(missing)


def _swarm_undo(
    loaded: Loaded,
    ui: Interaction,
    manager: EngineClient,
    failed: Plan,
    before: ObservedStack,
    timeout: float,
) -> list[str]:
    """Put back the services a failed deploy created or updated: Swarm's own rollback to the
    spec each had before (the deploy updated each once: its version moved), created ones
    removed; the ones Swarm rolled back already are left as they are, and so are the ones the
    deploy did not reach. Returns the services put back."""
    project, engine = loaded.spec.project, loaded.engine
    observed = observe_stack(manager, project)
    undone, rolling = [], []
    for name in swarm_apply.deployed_services(failed):
        service, earlier = observed.services.get(name), before.services.get(name)
        if service is None or (earlier is not None and earlier.version == service.version):
            continue
        undone.append(name)
        if earlier is None:
            loaded.outside.run(service_remove(engine, project, [name]))
        elif swarm_apply.convergence(service).state != swarm_apply.ROLLED_BACK:
            loaded.outside.run(service_rollback(engine, project, name))
            rolling.append(name)
    accepted = frozenset({swarm_apply.CONVERGED, swarm_apply.ROLLED_BACK})
    with Interrupted.leaving(f"stopped while waiting for the rollback of {', '.join(rolling)}"):
        swarm_apply.wait(manager, project, rolling, timeout, ui.progress, accepted)
    return undone


def swarm_rollback(
    loaded: Loaded, ui: Interaction, to: int | None, lock_wait: float = 0.0
) -> SwarmApplied | Plan:
    """Redeploy release `to` (default: the last good one before the current) on a swarm: its
    exact images by digest with the configuration it recorded."""
    manager = loaded.outside.connect(loaded.engine)
    with _locked(loaded, manager, "rollback", lock_wait) as (store, actor):
        command, desired = _rollback_state(
            loaded,
            ui,
            store,
            to,
            lambda targets: _by_tag_where_unmoved(loaded, manager, targets, ui.redact),
        )
        stack, _ = _stack_file(loaded, desired)
        return _swarm_apply(loaded, ui, manager, store, actor, command, desired, stack)


def _by_tag_where_unmoved(
    loaded: Loaded,
    manager: EngineClient,
    targets: Mapping[str, ServiceRelease],
    redact: Redactor,
) -> dict[str, ServiceRelease]:
    """The services to go back to, each by the reference it was deployed with where its
    registry still gives that tag the digest it ran (Swarm resolves it to that digest again,
    and a service not changed since keeps its spec: it is not updated), by digest otherwise."""
    images = sorted({t.image for t in targets.values()})
    found = resolve_digests(manager, images, registry_login(loaded, images, redact))
    return {
        name: replace(t, pinned=t.image) if found.digests.get(t.image) == t.image_id else t
        for name, t in targets.items()
    }


def _rollback_state(
    loaded: Loaded,
    ui: Interaction,
    store: Store,
    to: int | None,
    pinned: Callable[[Mapping[str, ServiceRelease]], Mapping[str, ServiceRelease]] = dict,
) -> tuple[str, DesiredState]:
    """The command's name and the desired state of a rollback to release `to` (default: the
    last good one before the current): the release's services the compose files still have,
    on their exact images (as `pinned` refers to them) with their recorded configuration."""
    target = rollback_target(history(store), to)
    current = desired_state(loaded, ui.redact)
    targets = pinned({n: s for n, s in target.services.items() if n in current.services})
    secrets = Secrets.of(loaded.spec, loaded.variables)
    desired = restore_state(current, targets, secrets, loaded.outside.run)
    return f"rollback to release {target.number}", desired


def swarm_restart(
    loaded: Loaded, ui: Interaction, services: Sequence[str], lock_wait: float = 0.0
) -> SwarmApplied:
    """A rolling restart of the services (all when none named): a forced update of each, as
    its update_config says (one task at a time by default); waits until they converge."""
    desired = desired_state(loaded, ui.redact)
    targets = _named_services(loaded, desired, services)
    manager = loaded.outside.connect(loaded.engine)
    project = loaded.spec.project
    with _locked(loaded, manager, "restart", lock_wait) as (store, actor):
        _confirmed(loaded, ui, f"Restart {', '.join(targets)} in {loaded.spec.name}?")
        started = time.monotonic()

        def restart_and_wait() -> SwarmApplied:
            for name in targets:
                loaded.outside.run(service_restart(loaded.engine, project, name))
            with Interrupted.leaving("stopped while waiting: Swarm goes on restarting"):
                after = swarm_apply.wait(
                    manager, project, targets, desired.wait_timeout, ui.progress
                )
            changes = tuple(Change(n, "restart", ("forced update",)) for n in targets)
            return SwarmApplied(
                Plan(loaded.spec.name, project, changes),
                time.monotonic() - started,
                tuple(after.services[n] for n in targets if n in after.services),
                done="restarted",
            )

        command = f"restart {' '.join(services)}".rstrip()
        return _audited(store, actor, loaded, command, ui.redact, restart_and_wait, targets)


def _named_services(loaded: Loaded, desired: DesiredState, services: Sequence[str]) -> list[str]:
    """The services a command names (all when it names none); one it does not know is an
    error."""
    unknown = sorted(set(services) - set(desired.services))
    if unknown:
        raise DeployerError(
            f"no service {', '.join(unknown)} in {loaded.spec.name} (services: {', '.join(desired.services)})"
        )
    return list(services) or sorted(desired.services)


def diff(loaded: Loaded, redact: Redactor) -> tuple[Plan, DesiredState, EngineClient]:
    """The plan; a registry that cannot be asked about a tag leaves a warning in the plan
    (`Plan.unchecked`), not an error: a look at what would change stays possible."""
    the_plan, desired, client, _ = _checked_diff(loaded, redact, strict=False)
    return the_plan, desired, client


def diff_hosts(loaded: Loaded, redact: Redactor) -> list[fleet.HostOutcome[Plan]]:
    """The plan of every host, each made as `diff` makes one host's, the hosts read in
    parallel. With one host, its error is the command's."""

    def plan_on(desired: DesiredState, observed: ObservedState, client: EngineClient) -> Plan:
        return _checked_plan(loaded, desired, observed, client, redact, strict=False)[0]

    return _read_each_host(loaded, redact, plan_on)


def _read_each_host(
    loaded: Loaded,
    redact: Redactor,
    read: Callable[[DesiredState, ObservedState, EngineClient], T],
) -> list[fleet.HostOutcome[T]]:
    """`read` on every host with what it runs, the hosts observed in parallel while Compose
    resolves the model once (it does not depend on the host). A problem in the spec is the
    command's error, reported before any host's."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        resolving = pool.submit(desired_state, loaded, redact)

        def on(engine: Engine) -> T:
            client = loaded.outside.connect(engine)
            observed = observe(client, loaded.spec.project)
            return read(resolving.result(), observed, client)

        outcomes = fleet.each(loaded.selected_hosts, on)
        resolving.result()
    return _alone_raises(outcomes)


def _alone_raises(outcomes: list[fleet.HostOutcome[T]]) -> list[fleet.HostOutcome[T]]:
    """The outcomes; an environment of one host fails as it always has, with its error."""
    if len(outcomes) == 1 and outcomes[0].error is not None:
        raise outcomes[0].error
    return outcomes


def _checked_diff(
    loaded: Loaded, redact: Redactor, strict: bool
) -> tuple[Plan, DesiredState, EngineClient, RegistryDigests]:
    """The plan with the running tags checked in their registries (`_checked_plan`)."""
    desired, observed, client = _desired_and_observed(loaded, redact)
    the_plan, digests = _checked_plan(loaded, desired, observed, client, redact, strict)
    return the_plan, desired, client, digests


def _checked_plan(
    loaded: Loaded,
    desired: DesiredState,
    observed: ObservedState,
    client: EngineClient,
    redact: Redactor,
    strict: bool,
) -> tuple[Plan, RegistryDigests]:
    """The plan of one host with the running tags checked in their registries. A moved tag in
    an environment whose tags are immutable is an error; with `strict`, so is a registry that
    cannot be asked."""
    images = tags_to_check(desired, observed)
    login = registry_login(loaded, images, redact) if images else None
    digests = resolve_digests(client, images, login)
    if strict and digests.failures:
        raise next(iter(sorted(digests.failures.items())))[1]
    the_plan = plan(desired, observed, digests)
    if loaded.spec.immutable_tags and the_plan.moved:
        moved = the_plan.moved[0]
        raise TagMovedError(
            moved.image,
            moved.tag,
            moved.old,
            moved.new,
            f"{loaded.spec.name} has immutable tags (deploy.immutable_tags): nothing changed; "
            "deploy a new tag, or pin the digest to run (image: repo:tag@sha256:...)",
        )
    return the_plan, digests


def _desired_and_observed(
    loaded: Loaded, redact: Redactor
) -> tuple[DesiredState, ObservedState, EngineClient]:
    # Compose resolves the model in its own process while this one reads the engine.
    with ThreadPoolExecutor(max_workers=1) as pool:
        resolving = pool.submit(desired_state, loaded, redact)
        try:
            client = loaded.outside.connect(loaded.engine)
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
    # Several hosts: each host's plan, by host, shown at once.
    show_plans: Callable[[Sequence[tuple[str, Plan]]], None] = lambda plans: None


def _confirmed(loaded: Loaded, ui: Interaction, question: str) -> None:
    """Ask where the spec says so; a "no" changes nothing."""
    if loaded.spec.confirm and not ui.confirm(question):
        raise ConfirmationRefusedError(f"{loaded.spec.name}: not confirmed; nothing changed")


def _plan_question(loaded: Loaded, the_plan: Plan) -> str:
    return f"Apply {len(the_plan.changes)} change(s) to {loaded.spec.name}?"


@contextmanager
def _locked(
    loaded: Loaded, client: EngineClient, what: str, lock_wait: float
) -> Iterator[tuple[Store, Actor]]:
    """Hold the environment lock for a state-changing command."""
    with _holding(loaded, loaded.store(client), what, lock_wait) as (
        store,
        actor,
    ):
        yield store, actor


@contextmanager
def _holding(
    loaded: Loaded, store: Store, what: str, lock_wait: float
) -> Iterator[tuple[Store, Actor]]:
    actor = loaded.outside.actor()
    lock = Lock.new(actor, f"{what} {loaded.spec.name}", "process", DEPLOY_TTL)
    with holding(store, loaded.spec.name, lock, lock_wait):
        yield store, actor


@dataclass
class Recording:
    """What a state-changing command has done so far, for the record written however it ends."""

    changes: Sequence[str] = ()
    # Set once a plan is applied: the command then makes a release.
    applying: tuple[Plan, EngineClient] | None = None
    states: list[DesiredState] = field(default_factory=list)  # what its services may now run
    rolling_back: DeployerError | None = None  # the failure being rolled back, while it is
    # Several hosts: what the command does on each; once set, the command makes a release.
    hosts: Sequence[HostRun] = ()
    # A swarm: the manager the command changes services through; once set, it makes a release.
    swarm: EngineClient | None = None

    def applies(self, plan: Plan, desired: DesiredState, client: EngineClient) -> None:
        """From here on the command changes containers: its release will be recorded."""
        self.changes, self.applying = change_lines(plan), (plan, client)
        self.states.append(desired)

    def applies_to_swarm(self, plan: Plan, desired: DesiredState, manager: EngineClient) -> None:
        """From here on the command changes a swarm's services: its release will be recorded."""
        self.changes, self.swarm = change_lines(plan), manager
        self.states.append(desired)

    @property
    def releases(self) -> bool:
        return self.applying is not None or bool(self.hosts) or self.swarm is not None


def outcome(ended: BaseException | None, rolling_back: DeployerError | None) -> tuple[str, str]:
    """The result and the error text of a command that ended with `ended` (None: it succeeded)."""
    if ended is None:
        return SUCCESS, ""
    if isinstance(ended, RolledBackError):
        return ROLLED_BACK, ended.failure.message
    if isinstance(ended, RolloutFailedError):
        return ended.result, ended.failure
    if rolling_back is not None:
        if isinstance(ended, KeyboardInterrupt):
            return INTERRUPTED, f"{rolling_back.message}; interrupted during the rollback"
        return FAILED, f"{rolling_back.message}; the rollback failed too: {_described(ended)}"
    if isinstance(ended, KeyboardInterrupt):
        return INTERRUPTED, ""
    return FAILED, _described(ended)


def _described(error: BaseException) -> str:
    if isinstance(error, DeployerError):
        return error.message
    return f"unexpected error: {type(error).__name__}: {error}"


@contextmanager
def _recorded(
    loaded: Loaded,
    store: Store,
    actor: Actor,
    command: str,
    redact: Redactor,
    changes: Sequence[str] = (),
    progress: Progress | None = None,
) -> Iterator[Recording]:
    """The one place a state-changing command's record is written: its audit entry, and its
    release once it applies a plan, whatever ends it (an error, an interrupt, a bug). After a
    release, records beyond retention go (`progress` hears if they cannot)."""
    recording = Recording(changes)
    ended: BaseException | None = None
    try:
        yield recording
    except BaseException as e:
        ended = e
        raise
    finally:
        result, error = outcome(ended, recording.rolling_back)
        try:
            audit.write(
                store, actor, loaded.spec.name, command, result, redact, recording.changes, error
            )
            if recording.releases:
                services, hosts = _released(loaded, store, recording, redact)
                # A release is written only under the lock still held: if it was broken and
                # taken meanwhile, the release numbers are someone else's now.
                lock_module.verify_held(store)
                releases.record(
                    store,
                    actor,
                    command,
                    result,
                    loaded.spec,
                    loaded.variables,
                    services,
                    recording.changes,
                    hosts,
                )
                _trim_records(store, loaded.spec, services, progress)
        except DeployerError as e:
            if ended is None:
                raise
            ended.add_note(f"its record could not be written: {e.message}")


def _released(
    loaded: Loaded, store: Store, recording: Recording, redact: Redactor
) -> tuple[dict[str, ServiceRelease], list[HostRelease]]:
    """What runs when the command ends (services of its first host) and, with several hosts,
    on each host together with what the command did there."""
    secrets = Secrets.of(loaded.spec, loaded.variables)
    if recording.swarm is not None:
        on_swarm = stack_services(
            observe_stack(recording.swarm, loaded.spec.project), recording.states, secrets
        )
        return _configured(on_swarm, history(store)), []
    if not recording.hosts:
        assert recording.applying is not None
        client = recording.applying[1]
        return running_services(observe(client, loaded.spec.project), recording.states, secrets), []

    earlier = history(store)

    def released(run: HostRun) -> HostRelease:
        error = redact(run.error.message) if run.error is not None else ""
        try:
            observed = observe(run.client, loaded.spec.project)
        except DeployerError as e:
            error = error or redact(e.message)
            return HostRelease(run.host, UNKNOWN, {}, run.changes, run.rounded, error)
        services = running_services(observed, recording.states, secrets)
        if run.result == NOT_STARTED:
            # Untouched: it runs what its last release recorded, configuration included.
            services = _as_recorded(services, earlier, run.host)
        return HostRelease(run.host, run.result, services, run.changes, run.rounded, error)

    with ThreadPoolExecutor(max_workers=len(recording.hosts)) as pool:
        hosts = list(pool.map(released, recording.hosts))
    return next((dict(h.services) for h in hosts if h.services), {}), hosts


def _configured(
    services: Mapping[str, ServiceRelease], releases: Sequence[Release]
) -> dict[str, ServiceRelease]:
    """`services`, each whose configuration is not known (Swarm rolled it back to a spec this
    command did not make) with the one the newest release recorded for the same image."""
    filled = dict(services)
    for name, service in services.items():
        if service.config is not None:
            continue
        recorded = (r.services.get(name) for r in releases)
        filled[name] = next(
            (r for r in recorded if r is not None and r.image_id == service.image_id), service
        )
    return filled


def _as_recorded(
    services: Mapping[str, ServiceRelease], releases: Sequence[Release], host: str
) -> dict[str, ServiceRelease]:
    """`services` with the configuration the newest release recorded for `host`, where it
    recorded the image each runs."""
    recorded = next((r.services_on(host) for r in releases if r.on(host) is not None), {})
    return {
        name: recorded[name]
        if name in recorded and recorded[name].image_id == service.image_id
        else service
        for name, service in services.items()
    }


def _audited(
    store: Store,
    actor: Actor,
    loaded: Loaded,
    command: str,
    redact: Redactor,
    action: Callable[[], T],
    changes: Sequence[str] = (),
) -> T:
    """Run a state-changing action that makes no release; its audit entry is written however
    it ends."""
    with _recorded(loaded, store, actor, command, redact, changes):
        return action()


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
) -> Applied | Plan | Rollout:
    """Plan, confirm where the spec asks, apply under the environment lock, record the release.

    The first plan is made without the lock, so that a deploy with nothing to do stays cheap and
    takes nothing; with changes, the lock is taken and the plan made again under it.
    """
    if loaded.spec.engine_hosts is not None:
        return _deploy_hosts(loaded, ui, command, lock_wait, save_login)
    the_plan, desired, client, digests = _checked_diff(loaded, ui.redact, strict=True)
    if the_plan.in_sync:
        ui.show_plan(the_plan)
        return the_plan
    with _locked(loaded, client, "deploy", lock_wait) as (store, actor):
        return _plan_and_apply(
            loaded, ui, client, store, actor, command, desired, save_login, digests
        )


def _plan_and_apply(
    loaded: Loaded,
    ui: Interaction,
    client: EngineClient,
    store: Store,
    actor: Actor,
    command: str,
    desired: DesiredState,
    save_login: bool = False,
    digests: RegistryDigests | None = None,
) -> Applied | Plan:
    """Under the lock: plan against what runs now (and the registries' `digests` of its tags),
    show it, confirm, apply and record."""
    before = observe(client, loaded.spec.project)
    the_plan = plan(desired, before, digests)
    ui.show_plan(the_plan)
    if the_plan.in_sync:
        return the_plan
    login = registry_login(loaded, the_plan.pulls, ui.redact)
    _confirmed(loaded, ui, _plan_question(loaded, the_plan))
    with _recorded(loaded, store, actor, command, ui.redact, (), ui.progress) as recording:
        recording.applies(the_plan, desired, client)
        applied = _apply_or_restore(
            loaded, ui, client, store, recording, the_plan, desired, before, login
        )
    if save_login and login is not None:
        loaded.outside.run(
            docker_login(loaded.engine, login.server, login.username, login.password)
        )
    return applied


def _apply_or_restore(
    loaded: Loaded,
    ui: Interaction,
    client: EngineClient,
    store: Store,
    recording: Recording,
    the_plan: Plan,
    desired: DesiredState,
    before: ObservedState,
    login: Login | None,
) -> Applied:
    """Apply the plan; when it fails after a container was replaced, put the changed services
    back as they were (`deploy.on_failure: rollback`)."""
    try:
        return apply(the_plan, desired, client, loaded.outside.run, ui.progress, login)
    except DeployerError as failure:
        if loaded.spec.on_failure != "rollback":
            raise
        after = observe_containers(client, loaded.spec.project)
        if not replaced(before, after, the_plan.services_to_up):
            raise
        recording.rolling_back = failure
        restored = _restore(loaded, ui, client, store, recording, the_plan, before, desired)
        raise RolledBackError(failure, restored) from failure


def replaced(
    before: ObservedState, after: Sequence[ObservedContainer], services: Sequence[str]
) -> bool:
    """Whether any container of `services` is not the one it was: from then on, a failure
    leaves the environment changed and is rolled back."""
    wanted = set(services)
    return {c.id for c in before.containers if c.service in wanted} != {
        c.id for c in after if c.service in wanted
    }


def _restore(
    loaded: Loaded,
    ui: Interaction,
    client: EngineClient,
    store: Store,
    recording: Recording,
    failed: Plan,
    before: ObservedState,
    current: DesiredState,
) -> list[str]:
    """Put the changed services back on the exact images they ran before the deploy, with the
    configuration the newest release recorded for them."""
    changed = set(failed.services_to_up)
    previous = replace(
        before, containers=tuple(c for c in before.containers if c.service in changed)
    )
    configs = newest_configs(history(store), loaded.engine.host)
    targets = {
        name: replace(service, config=configs.get(name))
        for name, service in running_services(previous).items()
    }
    if not targets:
        return []
    secrets = Secrets.of(loaded.spec, loaded.variables)
    state = restore_state(current, targets, secrets, loaded.outside.run)
    recording.states.insert(0, state)
    restore_plan = plan(state, observe(client, loaded.spec.project))
    apply(restore_plan, state, client, loaded.outside.run, ui.progress)
    return sorted(targets)


def rollback(
    loaded: Loaded, ui: Interaction, to: int | None, lock_wait: float = 0.0
) -> Applied | Plan | Rollout:
    """Redeploy release `to` (default: the last good one before the current): its exact images
    with the configuration it recorded."""
    if loaded.spec.engine_hosts is not None:
        return _rollback_hosts(loaded, ui, to, lock_wait)
    client = loaded.outside.connect(loaded.engine)
    with _locked(loaded, client, "rollback", lock_wait) as (store, actor):
        command, desired = _rollback_state(loaded, ui, store, to)
        return _plan_and_apply(loaded, ui, client, store, actor, command, desired)


# Several hosts (`engine.hosts`): every host is reached and planned before anything changes;
# then the hosts with changes are deployed batch by batch (deploy.batch), each exactly as one
# host is; a failure stops the rollout and, under `on_failure: rollback`, puts back every host it
# changed. One lock over all hosts (fleet_state.FleetStore), one release listing each host.


@dataclass
class HostRun:
    """One host of a rollout: its plan, and what the rollout has done there so far."""

    engine: Engine
    client: EngineClient
    desired: DesiredState
    before: ObservedState
    plan: Plan
    result: str = ""
    changed: bool = False  # a container of its was replaced: there is something to undo
    seconds: float = 0.0
    error: DeployerError | None = None

    def __post_init__(self) -> None:
        self.result = self.result or (UNCHANGED if self.plan.in_sync else NOT_STARTED)

    @property
    def host(self) -> str:
        return self.engine.host

    @property
    def changes(self) -> list[str]:
        return change_lines(self.plan)

    @property
    def rounded(self) -> float:
        return round(self.seconds, 1)

    def summary(self) -> HostRelease:
        error = self.error.message if self.error is not None else ""
        return HostRelease(self.host, self.result, {}, self.changes, self.rounded, error)


@dataclass(frozen=True)
class Rollout:
    """What a deploy over several hosts did on each (services left out: see the release)."""

    environment: str
    hosts: tuple[HostRelease, ...]

    @property
    def in_sync(self) -> bool:
        return all(h.result == UNCHANGED for h in self.hosts)


def _rollout(loaded: Loaded, runs: Sequence[HostRun]) -> Rollout:
    return Rollout(loaded.spec.name, tuple(run.summary() for run in runs))


def _on_host(desired: DesiredState, engine: Engine) -> DesiredState:
    """The desired state, resolved once, as `docker compose` is to apply it on `engine`."""
    return replace(desired, compose=replace(desired.compose, engine=engine))


def _deploy_hosts(
    loaded: Loaded, ui: Interaction, command: str, lock_wait: float, save_login: bool
) -> Rollout:
    """Reach and plan every host (a host that fails fails the deploy before any change); with
    changes, plan again under the lock of every host and roll out."""
    desired = desired_state(loaded, ui.redact)
    clients = _reached(loaded, loaded.environment_hosts)

    def desired_on(engine: Engine) -> DesiredState:
        return _on_host(desired, engine)

    runs = _plan_hosts(loaded, ui.redact, clients, desired_on, checked=True)
    if all(run.plan.in_sync for run in runs):
        ui.show_plans([(run.host, run.plan) for run in runs])
        return _rollout(loaded, runs)
    with _holding(loaded, _fleet_store(loaded, clients), "deploy", lock_wait) as (store, actor):
        runs = _plan_hosts(loaded, ui.redact, clients, desired_on, checked=True)
        rollout, login = _roll(loaded, ui, store, actor, command, runs)
    if save_login and login is not None:
        for engine in loaded.selected_hosts:
            loaded.outside.run(docker_login(engine, login.server, login.username, login.password))
    return rollout


def _rollback_hosts(loaded: Loaded, ui: Interaction, to: int | None, lock_wait: float) -> Rollout:
    """Roll every host out to what release `to` recorded for it; a host the release did not
    list is left as it is."""
    clients = _reached(loaded, loaded.environment_hosts)
    with _holding(loaded, _fleet_store(loaded, clients), "rollback", lock_wait) as (store, actor):
        target = rollback_target(history(store), to)
        current = desired_state(loaded, ui.redact)
        secrets = Secrets.of(loaded.spec, loaded.variables)

        def restored_on(engine: Engine) -> DesiredState:
            recorded = target.services_on(engine.host).items()
            targets = {n: s for n, s in recorded if n in current.services}
            return restore_state(_on_host(current, engine), targets, secrets, loaded.outside.run)

        listed = replace(
            loaded, hosts=tuple(e for e in loaded.selected_hosts if target.on(e.host) is not None)
        )
        runs = _plan_hosts(listed, ui.redact, clients, restored_on, checked=False)
        command = f"rollback to release {target.number}"
        return _roll(loaded, ui, store, actor, command, runs)[0]


def _plan_hosts(
    loaded: Loaded,
    redact: Redactor,
    clients: Mapping[str, EngineClient],
    desired_on: Callable[[Engine], DesiredState],
    checked: bool,
) -> list[HostRun]:
    """Observe and plan the selected hosts in parallel (`checked`: their tags checked in the
    registries, as a deploy does). Any host that fails fails them all, naming it."""

    def planned(engine: Engine) -> HostRun:
        client = clients[engine.host]
        desired = desired_on(engine)
        observed = observe(client, loaded.spec.project)
        if checked:
            the_plan, _ = _checked_plan(
                loaded.on(engine), desired, observed, client, redact, strict=True
            )
        else:
            the_plan = plan(desired, observed)
        return HostRun(engine, client, desired, observed, the_plan)

    outcomes = fleet.each(loaded.selected_hosts, planned)
    failed = fleet.failures(outcomes)
    if failed:
        raise HostsFailedError(loaded.spec.name, failed)
    return [o.value for o in outcomes if o.value is not None]


def _roll(
    loaded: Loaded,
    ui: Interaction,
    store: Store,
    actor: Actor,
    command: str,
    runs: Sequence[HostRun],
) -> tuple[Rollout, Login | None]:
    """Under the lock: show the plans, confirm once, deploy batch by batch and record."""
    ui.show_plans([(run.host, run.plan) for run in runs])
    changing = [run for run in runs if not run.plan.in_sync]
    if not changing:
        return _rollout(loaded, runs), None
    login = registry_login(loaded, sorted({i for r in changing for i in r.plan.pulls}), ui.redact)
    count = sum(len(run.plan.changes) for run in changing)
    _confirmed(
        loaded,
        ui,
        f"Apply {count} change(s) to {loaded.spec.name} on {len(changing)} of {len(runs)} host(s)?",
    )
    with _recorded(loaded, store, actor, command, ui.redact, (), ui.progress) as recording:
        recording.hosts = runs
        recording.changes = [f"{run.host}: {line}" for run in changing for line in run.changes]
        recording.states.extend(run.desired for run in changing)
        _batches(loaded, ui, store, recording, changing, login)
    return _rollout(loaded, runs), login


def _batches(
    loaded: Loaded,
    ui: Interaction,
    store: Store,
    recording: Recording,
    changing: Sequence[HostRun],
    login: Login | None,
) -> None:
    """Deploy the hosts a batch at a time; a batch starts once every host of the one before is
    healthy (and `batch_pause` has passed)."""
    try:
        for index, batch in enumerate(fleet.batches(changing, loaded.spec.batch)):
            if index and loaded.spec.batch_pause:
                ui.progress.update("batch", f"pausing {loaded.spec.batch_pause:g}s")
                time.sleep(loaded.spec.batch_pause)
            hosts = ", ".join(run.host for run in batch)
            ui.progress.done("batch", f"batch {index + 1}: {hosts}")
            # An interrupt lets every host under way finish: Compose is never cut short.
            fleet.together(batch, lambda run: _deploy_host(loaded, ui, run, login))
            failed = [run for run in batch if run.error is not None]
            if failed:
                _stop(loaded, ui, store, recording, changing, failed)
    except KeyboardInterrupt as e:
        raise Interrupted(f"no further host started: {_results(recording.hosts)}") from e


def _results(runs: Sequence[HostRun]) -> str:
    return ", ".join(f"{run.host} {run.result}" for run in runs)


def _deploy_host(loaded: Loaded, ui: Interaction, run: HostRun, login: Login | None) -> None:
    """Deploy one host exactly as a one-host deploy applies; a failure is kept with the host."""
    started = time.monotonic()
    try:
        progress = fleet.HostProgress(ui.progress, run.host)
        apply(run.plan, run.desired, run.client, loaded.outside.run, progress, login)
        run.result, run.changed = SUCCESS, True
    except DeployerError as failure:
        run.result, run.error = FAILED, failure
        try:
            after = observe_containers(run.client, loaded.spec.project)
        except DeployerError:
            run.result = UNKNOWN  # its engine no longer answers
        else:
            run.changed = replaced(run.before, after, run.plan.services_to_up)
    finally:
        run.seconds = time.monotonic() - started


def _stop(
    loaded: Loaded,
    ui: Interaction,
    store: Store,
    recording: Recording,
    changing: Sequence[HostRun],
    failed: Sequence[HostRun],
) -> None:
    """A host failed: no further batch; put back every host the rollout changed, in parallel
    (`on_failure: rollback`), and fail naming each host's result."""
    failures = [(run.host, run.error) for run in failed if run.error is not None]
    undone: list[str] | None = None
    result = FAILED
    if loaded.spec.on_failure == "rollback":
        recording.rolling_back = failures[0][1]
        changed = [run for run in changing if run.changed]
        fleet.together(changed, lambda run: _undo_host(loaded, ui, store, recording, run))
        undone = [run.host for run in changed if run.result == ROLLED_BACK]
        result = ROLLED_BACK if changed and len(undone) == len(changed) else FAILED
    # A failure can be the first sign of an engine going down: ask the failed hosts again.
    fleet.together([run for run in failed if run.result == FAILED], lambda run: _probe(loaded, run))
    lines = _result_lines(recording.hosts)
    raise RolloutFailedError(loaded.spec.name, failures, undone, lines, result)


def _probe(loaded: Loaded, run: HostRun) -> None:
    """A host whose engine no longer answers is in a state unknown."""
    try:
        observe_containers(run.client, loaded.spec.project)
    except DeployerError:
        run.result = UNKNOWN


def _undo_host(
    loaded: Loaded, ui: Interaction, store: Store, recording: Recording, run: HostRun
) -> None:
    started = time.monotonic()
    try:
        progress = fleet.HostProgress(ui.progress, run.host)
        _restore(
            loaded.on(run.engine),
            replace(ui, progress=progress),
            run.client,
            store,
            recording,
            run.plan,
            run.before,
            run.desired,
        )
        run.result = ROLLED_BACK
    except DeployerError as e:
        # An engine that stopped answering meanwhile leaves its host in a state unknown.
        run.result = UNKNOWN if isinstance(e, EngineUnreachableError) else FAILED
        failure = f"{run.error.message}; " if run.error is not None else ""
        run.error = DeployerError(f"{failure}the rollback failed: {e.message}")
    finally:
        run.seconds += time.monotonic() - started


def _result_lines(runs: Sequence[HostRun]) -> list[str]:
    width = max(len(run.host) for run in runs)
    lines = []
    for run in runs:
        detail = f": {run.error.message}" if run.error is not None else ""
        lines.append(f"{run.host:<{width}}  {run.result}{detail}")
    return lines


@dataclass(frozen=True)
class Divergence:
    """A host whose running services are not those its newest release recorded for it."""

    host: str
    release: int | None  # the newest release listing the host (None: none does)
    differences: tuple[str, ...]


def divergences(loaded: Loaded, releases: Sequence[Release]) -> list[Divergence]:
    """Per selected host of several: how what runs differs from its newest release (none for
    a host that runs what it recorded; the reason for a host that cannot be reached)."""
    if loaded.spec.engine_hosts is None:
        return []

    def running(engine: Engine) -> dict[str, ServiceRelease]:
        client = loaded.outside.connect(engine)
        return running_services(observe(client, loaded.spec.project))

    found = []
    for outcome in fleet.each(loaded.selected_hosts, running):
        if outcome.error is not None:
            found.append(Divergence(outcome.host, None, (f"unknown: {outcome.error.message}",)))
            continue
        release = next((r for r in releases if r.on(outcome.host) is not None), None)
        recorded = release.services_on(outcome.host) if release is not None else {}
        differences = _differences(recorded, outcome.value or {})
        if differences:
            number = release.number if release is not None else None
            found.append(Divergence(outcome.host, number, tuple(differences)))
    return found


def _differences(
    recorded: Mapping[str, ServiceRelease], running: Mapping[str, ServiceRelease]
) -> list[str]:
    lines = []
    for name in sorted(set(recorded) | set(running)):
        then, now = recorded.get(name), running.get(name)
        if now is None:
            lines.append(f"{name} runs no container (release: {then and then.image})")
        elif then is None:
            lines.append(f"{name} runs {now.image} (not in the release)")
        elif then.image_id != now.image_id:
            lines.append(
                f"{name} runs {now.image} {now.image_id[7:19]} (release: {then.image} {then.image_id[7:19]})"
            )
    return lines


def build(
    loaded: Loaded, ui: Interaction, services: Sequence[str], push: bool
) -> list[build_stage.Built]:
    """Build the services with a `build:` section (those named, or all), tagged as the spec
    resolves their images; with `push`, push them where the registry does not hold the tag."""
    desired = desired_state(loaded, ui.redact)
    names = build_stage.buildable(desired, services)
    images = [desired.services[name].image for name in names]
    # Credentials and confirmation come before a build that could take minutes.
    login = registry_login(loaded, images, ui.redact) if push else None
    if push:
        _confirmed(loaded, ui, f"Build and push {', '.join(images)}?")
    client = loaded.outside.connect(loaded.engine)
    built = build_stage.build(desired, names, client, loaded.outside.run, ui.progress)
    return build_stage.push(built, client, login, ui.progress) if push else built


def _store(loaded: Loaded, reading: bool = False) -> Store:
    """The environment's records and lock: on its host, or on every host of several. Reading
    needs one host that answers; the lock needs them all."""
    clients = _reached(loaded, loaded.environment_hosts, every=not reading)
    return _fleet_store(loaded, clients)


def _fleet_store(loaded: Loaded, clients: Mapping[str, EngineClient]) -> Store:
    stores = [(host, loaded.store(c)) for host, c in clients.items()]
    return fleet_state.of(stores)


def _reached(
    loaded: Loaded, engines: Sequence[Engine], every: bool = True
) -> dict[str, EngineClient]:
    """A client per host, by URL; a host that cannot be reached is an error naming it (with
    `every`; else only when no host can be reached)."""
    outcomes = fleet.each(engines, loaded.outside.connect)
    failed = fleet.failures(outcomes)
    if failed and (every or len(failed) == len(outcomes)):
        if len(outcomes) == 1:
            raise failed[0][1]
        raise HostsFailedError(loaded.spec.name, failed)
    return {o.host: o.value for o in outcomes if o.value is not None}


def history_of(loaded: Loaded) -> list[Release]:
    return history(_store(loaded, reading=True))


def audit_of(loaded: Loaded) -> list[audit.AuditEntry]:
    return audit.entries(_store(loaded, reading=True))


def lock_status_hosts(loaded: Loaded) -> list[fleet.HostOutcome[tuple[Lock | None, str | None]]]:
    """The lock as each host's own records hold it, read in parallel."""

    def on(host: Engine) -> tuple[Lock | None, str | None]:
        client = loaded.outside.connect(host)
        return lock_module.status(loaded.store(client))

    return _alone_raises(fleet.each(loaded.selected_hosts, on))


def lock_acquire(loaded: Loaded, reason: str, ttl: float, redact: Redactor) -> Lock:
    """Take the lock for a maintenance window; it stays until released or its TTL passes."""
    store, actor = _store(loaded), loaded.outside.actor()
    lock = Lock.new(actor, redact(reason), "manual", ttl)
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
    store = _store(loaded)
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
        loaded.outside.actor(),
        loaded.spec.name,
        command,
        SUCCESS,
        redact,
        error=f"released the lock of {held.describe()}",
    )
    return held


def status_hosts(loaded: Loaded, redact: Redactor) -> list[fleet.HostOutcome[EnvironmentStatus]]:
    """What runs on every host, the hosts read in parallel."""

    def status_on(
        desired: DesiredState, observed: ObservedState, client: EngineClient
    ) -> EnvironmentStatus:
        store = loaded.store(client)
        return environment_status(desired, observed, history(store))

    return _read_each_host(loaded, redact, status_on)


def logs(
    loaded: Loaded, services: Sequence[str], follow: bool, since: str | None, tail: int | None
) -> Iterator[fleet.HostOutcome[str]]:
    """The services' log lines on every host, as Compose prints them (all services when none
    named), each host's lines as they come. With several hosts a host that fails gives its
    error among the lines and the others go on; with one, its error is the command's."""
    hosts = loaded.selected_hosts
    commands = [
        compose.logs(
            compose_project(loaded.spec, loaded.variables, host), services, follow, since, tail
        )
        for host in hosts
    ]
    for index, line in runner.streams(commands):
        if isinstance(line, DeployerError):
            if len(hosts) == 1:
                raise line
            yield fleet.HostOutcome(hosts[index].host, error=line)
        else:
            yield fleet.HostOutcome(hosts[index].host, line)


def _host_by_host(
    loaded: Loaded,
    ui: Interaction,
    question: str | None,
    action: Callable[[Loaded, Interaction], T],
) -> list[fleet.HostOutcome[T]]:
    """A one-host operation on each host in turn, stopping at the first that fails. `question`
    is asked once for every host (where the spec asks) rather than by each; with one host the
    operation asks its own, and its error is the command's."""
    hosts = loaded.selected_hosts
    if len(hosts) == 1:
        return [fleet.HostOutcome(hosts[0].host, action(loaded.on(hosts[0]), ui))]
    if question is not None:
        _confirmed(loaded, ui, question)
        ui = replace(ui, confirm=lambda _: True)

    def on(host: Engine) -> T:
        ui.progress.done(host.host, f"on {host.host}:")
        return action(loaded.on(host), ui)

    return fleet.in_turn(hosts, on)


def _which_host(loaded: Loaded) -> str:
    """Where a question about one host of several names it."""
    return f" on {loaded.engine.host}" if len(loaded.selected_hosts) > 1 else ""


def restart_hosts(
    loaded: Loaded, ui: Interaction, services: Sequence[str], lock_wait: float = 0.0
) -> list[fleet.HostOutcome[tuple[ObservedContainer, ...]]]:
    """A rolling restart: `restart` on one host after the other, each ready again before the
    next starts; the first host that fails stops it."""
    hosts = loaded.selected_hosts
    what = ", ".join(services) or "every service"
    question = f"Restart {what} in {loaded.spec.name} on {len(hosts)} hosts, one after the other?"
    return _host_by_host(loaded, ui, question, lambda on, ui: restart(on, ui, services, lock_wait))


def down_hosts(
    loaded: Loaded, ui: Interaction, volumes: bool, lock_wait: float = 0.0
) -> list[fleet.HostOutcome[list[str]]]:
    """`down` on one host after the other; with `volumes`, each host asks naming its own."""
    question = (
        None
        if volumes
        else f"Stop and remove the containers and networks of {loaded.spec.name} "
        f"on {len(loaded.selected_hosts)} hosts?"
    )
    return _host_by_host(loaded, ui, question, lambda on, ui: down(on, ui, volumes, lock_wait))


def prune_hosts(
    loaded: Loaded, ui: Interaction, aggressive: bool, dry_run: bool, lock_wait: float = 0.0
) -> list[fleet.HostOutcome[Pruned]]:
    """`prune` on one host after the other (each asks about its own images)."""
    return _host_by_host(
        loaded, ui, None, lambda on, ui: prune(on, ui, aggressive, dry_run, lock_wait)
    )


def restart(
    loaded: Loaded, ui: Interaction, services: Sequence[str], lock_wait: float = 0.0
) -> tuple[ObservedContainer, ...]:
    """Restart the services (all when none named) and wait until they are ready again."""
    desired = desired_state(loaded, ui.redact)
    targets = _named_services(loaded, desired, services)
    client = loaded.outside.connect(loaded.engine)
    with _locked(loaded, client, "restart", lock_wait) as (store, actor):
        _confirmed(loaded, ui, f"Restart {', '.join(targets)} in {loaded.spec.name}?")

        def restart_and_wait() -> tuple[ObservedContainer, ...]:
            restarted = (
                f"`docker compose restart` was not cut short: {', '.join(targets)} restarted"
            )
            with Interrupted.leaving(restarted):
                loaded.outside.run(compose.restart(desired.compose, targets))
            with Interrupted.leaving(f"{restarted}, not waited for until ready"):
                return wait_ready(client, desired, targets, ui.progress)

        command = f"restart {' '.join(services)}".rstrip()
        return _audited(store, actor, loaded, command, ui.redact, restart_and_wait, targets)


def down(loaded: Loaded, ui: Interaction, volumes: bool, lock_wait: float = 0.0) -> list[str]:
    """Stop and remove the environment's containers and networks; returns the volumes removed.

    With `volumes`, the project's volumes go too, after a question that names them whatever the
    spec says (or `--yes`): their data cannot be brought back. deployer's own records (history,
    audit) stay: they are not the project's volumes."""
    client = loaded.outside.connect(loaded.engine)
    project = compose_project(loaded.spec, loaded.variables, loaded.engine)
    name = loaded.spec.name
    with _locked(loaded, client, "down", lock_wait) as (store, actor):
        doomed = project_volumes(client, loaded.spec.project) if volumes else []
        if volumes:
            listed = ", ".join(doomed) or "none found"
            question = (
                f"Stop and remove the containers and networks of {name}{_which_host(loaded)} "
                f"and DELETE its volumes ({listed})? Their data cannot be brought back."
            )
            try:
                if not ui.confirm(question):
                    raise ConfirmationRefusedError(f"{name}: not confirmed; nothing changed")
            except ConfirmationRefusedError as e:
                raise ConfirmationRefusedError(f"{e.message} (volumes: {listed})") from e
        else:
            _confirmed(loaded, ui, f"Stop and remove the containers and networks of {name}?")
        command = "down --volumes" if volumes else "down"

        def take_down() -> None:
            what = "containers, networks and volumes" if volumes else "containers and networks"
            outcome = f"`docker compose down` was not cut short: the {what} of {name} are removed"
            with Interrupted.leaving(outcome):
                loaded.outside.run(compose.down(project, volumes))

        _audited(
            store,
            actor,
            loaded,
            command,
            ui.redact,
            take_down,
            [f"volume {v} removed" for v in doomed],
        )
    return doomed


def project_volumes(client: EngineClient, project: str) -> list[str]:
    """The volumes `docker compose down --volumes` removes: the project's named volumes and
    the anonymous ones its containers use."""
    named = {v["Name"] for v in client.volumes([f"{COMPOSE_PROJECT_LABEL}={project}"])}
    anonymous = {
        mount["Name"]
        for container in client.project_containers(project)
        for mount in container.get("Mounts") or []
        if mount.get("Type") == "volume" and _ANONYMOUS_VOLUME.match(mount.get("Name") or "")
    }
    return sorted(named | anonymous)


def prune(
    loaded: Loaded, ui: Interaction, aggressive: bool, dry_run: bool, lock_wait: float = 0.0
) -> Pruned:
    """Remove dangling images; with `aggressive`, also this environment's unused images. Never
    an image a container uses, nor one of the last `deploy.keep_releases` releases of any
    environment on the engine (they share it, and images)."""
    desired = desired_state(loaded, ui.redact)
    client = loaded.outside.connect(loaded.engine)
    with _locked(loaded, client, "prune", lock_wait) as (store, actor):
        every_project = records_of_every_project(client, "release")
        recorded = newest_first(every_project.get(loaded.spec.project, []))
        local = client.images()
        local_ids = image_ids(local)
        # Kept: the images of every project's last releases, and those the spec names now.
        keep = kept_by_releases(every_project, loaded.spec.keep_releases)
        keep |= {local_ids.get(lookup_key(s.image), "") for s in desired.services.values()}
        repositories = {repository_of(s.image) for s in desired.services.values()}
        repositories |= {repository_of(s.image) for r in recorded for s in r.services.values()}
        images = client.dangling_images() + (local if aggressive else [])
        unique = list({i["Id"]: i for i in images}.values())
        candidates = prunable(unique, client.images_in_use(), keep, repositories, aggressive)
        if dry_run:
            return Pruned(tuple(candidates), True, 0)
        if candidates:
            _confirmed(
                loaded,
                ui,
                f"Remove {len(candidates)} image(s) from the engine of "
                f"{loaded.spec.name}{_which_host(loaded)}?",
            )
        running = running_services(observe(client, loaded.spec.project))

        def remove() -> Pruned:
            freed = 0
            if candidates:
                before = client.layers_size()
                stopped = f"stopped while removing images; `deploy prune {loaded.spec.name} --dry-run` shows what is left"
                with Interrupted.leaving(stopped):
                    for candidate in candidates:
                        client.remove_image(candidate.image_id)
                freed = max(0, before - client.layers_size())
            trimmed = retention.trim(store, loaded.spec.keep_history, _image_ids(running))
            return Pruned(tuple(candidates), False, freed, trimmed)

        command = "prune --aggressive" if aggressive else "prune"
        if not candidates:
            pruned = remove()
            if pruned.trimmed.lines():
                audit.write(
                    store,
                    actor,
                    loaded.spec.name,
                    command,
                    SUCCESS,
                    ui.redact,
                    pruned.trimmed.lines(),
                )
            return pruned
        removed = [
            f"{c.image_id[7:19]} {' '.join(c.references) or '(dangling)'}" for c in candidates
        ]
        return _audited(store, actor, loaded, command, ui.redact, remove, removed)


def _image_ids(services: Mapping[str, ServiceRelease]) -> dict[str, str]:
    return {name: service.image_id for name, service in services.items()}


def _trim_records(
    store: Store, spec: Spec, running: Mapping[str, ServiceRelease], progress: Progress | None
) -> None:
    """Retention after a recorded release: failing to tidy up is said, never fatal."""
    try:
        retention.trim(store, spec.keep_history, _image_ids(running))
    except DeployerError as e:
        if progress is not None:
            progress.done("records", f"old records not removed: {e.message}")


@dataclass(frozen=True)
class PinnedService:
    service: str
    before: str  # the image TARGET's spec resolves to now
    pinned: str  # `repository:tag@sha256:...`: the exact image SOURCE runs
    source_release: int | None  # the newest release of SOURCE that ran it


@dataclass(frozen=True)
class Promotion:
    """What `deploy promote` writes into TARGET's spec, and the texts before and after."""

    source: str
    target: Loaded
    source_release: int | None
    services: tuple[PinnedService, ...]
    original: str
    edited: str

    @property
    def changes(self) -> bool:
        return self.edited != self.original


def promotion(
    source: Loaded, target: Loaded, services: Sequence[str], redact: Redactor
) -> Promotion:
    """The exact images SOURCE runs, pinned in TARGET's spec text (nothing written yet).
    Refused unless SOURCE is in sync and healthy, TARGET declares each service, and both name
    the same repository for it."""
    source_name, target_name = source.spec.name, target.spec.name

    def refused(reason: str) -> PromotionRefusedError:
        return PromotionRefusedError(source_name, target_name, reason)

    if source.spec.path == target.spec.path:
        raise refused("they are the same environment")
    statuses = _source_statuses(source, redact, refused)
    running = statuses[0][1]
    by_name = {s.service: s for s in running.services}
    names = sorted(set(services)) or sorted(by_name)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise refused(f"{source_name} has no service {', '.join(unknown)}")
    declared = desired_state(target, redact).services
    undeclared = [n for n in names if n not in declared]
    if undeclared:
        raise refused(
            f"{target_name} does not declare {', '.join(undeclared)} (its compose files have no such service)"
        )
    pinned = tuple(_pinned(refused, source_name, by_name[n], declared[n].image) for n in names)
    # Several hosts: each must run exactly what the first runs, or there is no one image to pin.
    for host, other in statuses[1:]:
        theirs = {s.service: s for s in other.services}
        for chosen in pinned:
            image = declared[chosen.service].image
            again = _pinned(refused, source_name, theirs[chosen.service], image).pinned
            if again != chosen.pinned:
                raise refused(
                    f"{chosen.service} runs {chosen.pinned} on {statuses[0][0]} "
                    f"but {again} on {host}"
                )
    numbers = [p.source_release for p in pinned if p.source_release is not None]
    source_release = max(numbers, default=None)
    path = target.spec.path
    original = path.read_text(encoding="utf-8")
    promoted_from: dict[str, str | int] = {"environment": source_name}
    if source_release is not None:
        promoted_from["release"] = source_release
    edited = pin_images(original, str(path), {p.service: p.pinned for p in pinned}, promoted_from)
    return Promotion(source_name, target, source_release, pinned, original, edited)


def _source_statuses(
    source: Loaded, redact: Redactor, refused: Callable[[str], DeployerError]
) -> list[tuple[str, EnvironmentStatus]]:
    """What SOURCE runs on each of its hosts; refused unless every host is read, in sync and
    healthy."""
    name = source.spec.name
    statuses = []
    for outcome in status_hosts(source, redact):
        where = f" on {outcome.host}" if len(source.selected_hosts) > 1 else ""
        if outcome.value is None:
            assert outcome.error is not None
            raise refused(f"{name} cannot be read{where}: {outcome.error.message}")
        running = outcome.value
        if not running.in_sync:
            raise refused(
                f"{name} is not in sync with its spec{where} (`deploy diff {name}` shows how)"
            )
        if not running.healthy:
            unhealthy = ", ".join(s.service for s in running.services if not s.healthy)
            raise refused(f"{name} is not healthy{where}: {unhealthy} (see `deploy status {name}`)")
        statuses.append((outcome.host, running))
    return statuses


def _pinned(
    refused: Callable[[str], DeployerError],
    source_name: str,
    running: ServiceStatus,
    target_image: str,
) -> PinnedService:
    """The reference that pins the image `running` runs, in the repository it was deployed from."""
    if not running.containers:
        raise refused(f"{running.service} runs no container on {source_name}")
    container = running.containers[0]
    if is_image_id(container.image) or is_image_id(container.pinned):
        raise refused(
            f"the image of {running.service} on {source_name} has no registry digest "
            f"({container.image}): push it to its registry and deploy {source_name} from there"
        )
    source_ref = ImageReference.parse(container.image)
    target_repository = ImageReference.parse(target_image).repository
    if source_ref.repository != target_repository:
        raise refused(
            f"{running.service} comes from {source_ref.repository} on {source_name} "
            f"but from {target_repository} on the target"
        )
    digest = ImageReference.parse(container.pinned).digest
    return PinnedService(
        running.service,
        target_image,
        str(replace(source_ref, digest=digest)),
        container.release,
    )


def promote(promoted: Promotion, ui: Interaction) -> None:
    """Write the pinned references into TARGET's spec, after a question where it asks; the
    edit is recorded in TARGET's audit trail. Nothing is deployed."""
    target = promoted.target
    if not promoted.changes:
        return
    path = target.spec.path
    _confirmed(target, ui, f"Pin {len(promoted.services)} image(s) in {path.name}?")
    if path.read_text(encoding="utf-8") != promoted.original:
        raise DeployerError(f"{path.name} changed while promote ran; nothing written, run it again")
    # Written whole or not at all: a reader never sees half a spec.
    temporary = path.with_name(f".{path.name}.promote")
    try:
        temporary.write_text(promoted.edited, encoding="utf-8")
        os.chmod(temporary, path.stat().st_mode)
        os.replace(temporary, path)
    except OSError as e:
        temporary.unlink(missing_ok=True)
        raise DeployerError(f"cannot write {path}: {e.strerror}; nothing written") from e
    release = f" release {promoted.source_release}" if promoted.source_release else ""
    audit.write(
        _store(target),
        target.outside.actor(),
        target.spec.name,
        f"promote from {promoted.source}{release}",
        SUCCESS,
        ui.redact,
        [f"{p.service}: {p.before} -> {p.pinned}" for p in promoted.services],
    )
