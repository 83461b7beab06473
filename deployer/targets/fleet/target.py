"""Several hosts (`engine: {hosts: [...]}`): a composite of one-engine targets, rolled out in
batches. Every host is reached and planned before anything changes; then the hosts with changes
are deployed batch by batch (`deploy.batch`), each exactly as one host is; a failure stops the
rollout, and the undo puts back every host it changed. One lock over all hosts
(state/fleet_store.FleetStore), one release listing each host, kept on every host."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from deployer.core.desired import DesiredState
from deployer.core.errors import (
    DeployerError,
    EngineUnreachableError,
    HostsFailedError,
    Interrupted,
    RolloutFailedError,
)
from deployer.core.plan import Plan
from deployer.core.progress import Progress
from deployer.core.results import (
    FAILED,
    NOT_STARTED,
    ROLLED_BACK,
    SUCCESS,
    UNCHANGED,
    UNKNOWN,
    ComposeRendering,
    Diff,
    Divergence,
    HostOutcome,
    HostResult,
    Rollout,
    Statuses,
)
from deployer.core.variables import Redactor
from deployer.infra.registry import Login
from deployer.state import fleet_store
from deployer.state.releases import HostRelease, Release, ServiceRelease, rollback_target
from deployer.state.store import Store
from deployer.targets.base import Check, Environment, Failed, Target, Undone
from deployer.targets.host.observe import running_services
from deployer.targets.host.target import HostPlan, HostTarget
from deployer.targets.hosts import (
    HostProgress,
    alone_raises,
    batches,
    each,
    failures,
    stream_by_host,
    together,
)

T = TypeVar("T")


@dataclass(frozen=True)
class OnHosts:
    """Desired states by host (a release's): the hosts it does not name are left as they are."""

    states: Mapping[str, DesiredState]


Desired = DesiredState | OnHosts


@dataclass
class HostRun:
    """One host of a rollout: its plan, and what the rollout has done there so far."""

    part: HostTarget
    planned: HostPlan
    result: str = ""
    changed: bool = False  # a container of its was replaced: there is something to undo
    seconds: float = 0.0
    error: DeployerError | None = None

    def __post_init__(self) -> None:
        self.result = self.result or (UNCHANGED if self.plan.in_sync else NOT_STARTED)

    @property
    def host(self) -> str:
        return self.part.host

    @property
    def plan(self) -> Plan:
        return self.planned.plan

    @property
    def changes(self) -> list[str]:
        return self.plan.lines()

    def summary(self) -> HostResult:
        error = self.error.message if self.error is not None else ""
        return HostResult(
            self.host, self.result, tuple(self.changes), round(self.seconds, 1), error
        )


@dataclass(frozen=True)
class FleetPlan:
    """The plan of every host, and what the rollout does on each."""

    runs: list[HostRun]

    @property
    def changing(self) -> list[HostRun]:
        return [run for run in self.runs if not run.plan.in_sync]

    @property
    def changes_anything(self) -> bool:
        return bool(self.changing)

    @property
    def plans(self) -> list[tuple[str, Plan]]:
        return [(run.host, run.plan) for run in self.runs]

    @property
    def states(self) -> list[DesiredState]:
        return [state for run in self.changing for state in run.planned.states]

    def lines(self) -> list[str]:
        return [f"{run.host}: {line}" for run in self.changing for line in run.changes]

    def rollout(self, environment: str) -> Rollout:
        return Rollout(environment, tuple(run.summary() for run in self.runs))

    def results(self) -> str:
        return ", ".join(f"{run.host} {run.result}" for run in self.runs)


class RolloutFailed(Failed):
    """A host failed: no further batch started."""

    def __init__(self, environment: str, planned: FleetPlan, failed: Sequence[HostRun]) -> None:
        errors = [(run.host, run.error) for run in failed if run.error is not None]
        super().__init__(errors[0][1], lambda: any(run.changed for run in planned.changing))
        self.environment, self.planned, self.errors = environment, planned, errors
        self.failed = list(failed)

    def reported(self, undone: Sequence[str] | None) -> DeployerError:
        """Every host's result; `rolled back` only where every host changed was put back. A
        failure can be the first sign of an engine going down: once the others are put back,
        the failed hosts are asked again."""
        together([run for run in self.failed if run.result == FAILED], _probe)
        changed = [run for run in self.planned.changing if run.changed]
        result = ROLLED_BACK if undone and len(undone) == len(changed) else FAILED
        return RolloutFailedError(
            self.environment, self.errors, undone, _result_lines(self.planned.runs), result
        )


def _result_lines(runs: Sequence[HostRun]) -> list[str]:
    width = max(len(run.host) for run in runs)
    lines = []
    for run in runs:
        detail = f": {run.error.message}" if run.error is not None else ""
        lines.append(f"{run.host:<{width}}  {run.result}{detail}")
    return lines


class FleetTarget(Target[Desired, FleetPlan]):
    """The hosts of an environment, each a HostTarget; commands act on the `selected` ones
    (`--hosts`), the lock and the records are on every one."""

    def __init__(
        self, env: Environment, every: Sequence[HostTarget], selected: Sequence[HostTarget]
    ) -> None:
        super().__init__(env, selected[0].engine)
        self.every, self.selected = list(every), list(selected)

    def parts(self) -> Sequence[HostTarget]:
        return self.selected

    def reached(self, every: bool = True) -> list[HostTarget]:
        """The hosts whose engines answer; one that does not is an error naming it (with
        `every`; else only when none does)."""
        outcomes = each(self.every, lambda part: part.client)
        failed = failures(outcomes)
        if failed and (every or len(failed) == len(outcomes)):
            if len(outcomes) == 1:
                raise failed[0][1]
            raise HostsFailedError(self.env.name, failed)
        answered = {o.host for o in outcomes if o.error is None}
        return [part for part in self.every if part.host in answered]

    def store(self, reading: bool = False) -> Store:
        """The records and lock of every host (reading: of those that answer)."""
        return fleet_store.of([(part.host, part.store()) for part in self.reached(not reading)])

    # Deploy and rollback
    def plan(self, desired: Callable[[], Desired], redact: Redactor, check: Check) -> FleetPlan:
        """Reach every host (the lock needs them all), then plan the selected ones in parallel
        (those a release has states for); any host that fails fails them all, naming it."""
        try:
            self.reached()
        except DeployerError:
            desired()  # a problem in the spec is reported before one with a host
            raise
        resolved = desired()
        if isinstance(resolved, OnHosts):
            states = resolved.states
            chosen = [part for part in self.selected if part.host in states]
        else:
            states = {part.host: resolved for part in self.selected}
            chosen = self.selected
        outcomes = each(chosen, lambda part: part.plan(lambda: states[part.host], redact, check))
        failed = failures(outcomes)
        if failed:
            raise HostsFailedError(self.env.name, failed)
        return FleetPlan(
            [
                HostRun(part, o.value)
                for part, o in zip(chosen, outcomes, strict=True)
                if o.value is not None
            ]
        )

    def replan(self, planned: FleetPlan, redact: Redactor) -> FleetPlan:
        """Every host planned again, its tags checked in the registries as a deploy does."""
        states = OnHosts({run.host: run.planned.desired for run in planned.runs})
        return self.plan(lambda: states, redact, Check.STRICT)

    def unchanged(self, planned: FleetPlan) -> Rollout:
        return planned.rollout(self.env.name)

    def prepare(self, planned: FleetPlan, redact: Redactor) -> Login | None:
        pulls = sorted({image for run in planned.changing for image in run.plan.pulls})
        return self.env.login(pulls, redact)

    def question(self, planned: FleetPlan) -> str:
        count = sum(len(run.plan.changes) for run in planned.changing)
        return (
            f"Apply {count} change(s) to {self.env.name} on {len(planned.changing)} of "
            f"{len(planned.runs)} host(s)?"
        )

    def apply(self, planned: FleetPlan, progress: Progress, login: Login | None) -> Rollout:
        """The hosts a batch at a time; a batch starts once every host of the one before is
        healthy (and `batch_pause` has passed). A failed host stops the rollout."""
        spec = self.env.spec
        try:
            for index, batch in enumerate(batches(planned.changing, spec.batch)):
                if index and spec.batch_pause:
                    progress.update("batch", f"pausing {spec.batch_pause:g}s")
                    time.sleep(spec.batch_pause)
                hosts = ", ".join(run.host for run in batch)
                progress.done("batch", f"batch {index + 1}: {hosts}")
                # An interrupt lets every host under way finish: Compose is never cut short.
                together(batch, lambda run: self._deploy(run, progress, login))
                failed = [run for run in batch if run.error is not None]
                if failed:
                    raise RolloutFailed(self.env.name, planned, failed)
        except KeyboardInterrupt as e:
            raise Interrupted(f"no further host started: {planned.results()}") from e
        return planned.rollout(self.env.name)

    def _deploy(self, run: HostRun, progress: Progress, login: Login | None) -> None:
        """Deploy one host exactly as one host is deployed; a failure is kept with the host."""
        started = time.monotonic()
        try:
            run.part.apply(run.planned, HostProgress(progress, run.host), login)
            run.result, run.changed = SUCCESS, True
        except Failed as failed:
            run.result, run.error = FAILED, failed.error
            try:
                run.changed = failed.changed()
            except DeployerError:
                run.result = UNKNOWN  # its engine no longer answers
        finally:
            run.seconds = time.monotonic() - started

    def undo(self, planned: FleetPlan, progress: Progress, releases: Sequence[Release]) -> Undone:
        """Put back every host the rollout changed, in parallel; a host that cannot be put back
        is failed (or unknown, where its engine no longer answers), the others go on."""
        changed = [run for run in planned.changing if run.changed]
        states: list[DesiredState] = []
        try:
            together(changed, lambda run: states.extend(self._undo(run, progress, releases)))
        except KeyboardInterrupt as e:
            raise Interrupted(f"no further host started: {planned.results()}") from e
        return Undone([run.host for run in changed if run.result == ROLLED_BACK], states)

    def _undo(
        self, run: HostRun, progress: Progress, releases: Sequence[Release]
    ) -> list[DesiredState]:
        started = time.monotonic()
        try:
            undone = run.part.undo(run.planned, HostProgress(progress, run.host), releases)
            run.result = ROLLED_BACK
            return undone.states
        except DeployerError as e:
            # An engine that stopped answering meanwhile leaves its host in a state unknown.
            run.result = UNKNOWN if isinstance(e, EngineUnreachableError) else FAILED
            failure = f"{run.error.message}; " if run.error is not None else ""
            run.error = DeployerError(f"{failure}the rollback failed: {e.message}")
            return []
        finally:
            run.seconds += time.monotonic() - started

    def snapshot(
        self,
        planned: FleetPlan,
        states: Sequence[DesiredState],
        releases: Sequence[Release],
        redact: Redactor,
    ) -> tuple[dict[str, ServiceRelease], list[HostRelease]]:
        """What runs on each host the command acted on, with what it did there."""

        def released(run: HostRun) -> HostRelease:
            error = redact(run.error.message) if run.error is not None else ""
            seconds = round(run.seconds, 1)
            try:
                services = run.part.services(states, releases)
            except DeployerError as e:
                error = error or redact(e.message)
                return HostRelease(run.host, UNKNOWN, {}, run.changes, seconds, error)
            return HostRelease(run.host, run.result, services, run.changes, seconds, error)

        with ThreadPoolExecutor(max_workers=len(planned.runs)) as pool:
            hosts = list(pool.map(released, planned.runs))
        return next((dict(h.services) for h in hosts if h.services), {}), hosts

    def rollback_target(self, releases: Sequence[Release], number: int | None) -> Release:
        return rollback_target(releases, number, self.hosts)

    def release_state(self, release: Release, redact: Redactor) -> OnHosts:
        """Each selected host as `release` recorded it; a host it does not list is left as it
        is, and a release that lists none of them has nothing to roll back."""
        listed = [part for part in self.selected if release.on(part.host) is not None]
        if not listed:
            raise DeployerError(
                f"release {release.number} lists none of {', '.join(self.hosts)} (it lists "
                f"{', '.join(h.host for h in release.hosts)}): nothing to roll back; nothing changed"
            )
        current = self.resolve(redact)
        return OnHosts(
            {part.host: part.restored(current, release.services_on(part.host)) for part in listed}
        )

    # Reading: every selected host at once, Compose resolving the model meanwhile
    def each_host(
        self, redact: Redactor, read: Callable[[HostTarget, Callable[[], DesiredState]], T]
    ) -> list[HostOutcome[T]]:
        """`read` on every selected host in parallel while Compose resolves the model once (it
        does not depend on the host). A problem in the spec is the command's error, reported
        before any host's; with one host, its error is the command's."""
        with self.resolving(redact) as desired:
            outcomes = each(self.selected, lambda part: read(part, desired))
            desired()
        return alone_raises(outcomes)

    def diff(self, redact: Redactor) -> Diff:
        outcomes = self.each_host(
            redact, lambda part, desired: part.plan(desired, redact, Check.WARN).plan
        )
        return Diff(self.env.name, self.env.project, tuple(outcomes))

    def status(self, redact: Redactor) -> Statuses:
        outcomes = self.each_host(redact, lambda part, desired: part.status_of(desired))
        return Statuses(self.env.name, self.env.project, tuple(outcomes))

    def running(self, redact: Redactor) -> Statuses:
        return self.status(redact)

    def divergences(self, releases: Sequence[Release]) -> list[Divergence]:
        """Per selected host: how what runs differs from its newest release (none for a host
        that runs what it recorded; the reason for a host that cannot be reached)."""
        found = []
        running = each(self.selected, lambda part: running_services(part.observe()))
        for outcome in running:
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

    def logs(
        self,
        services: Sequence[str],
        follow: bool,
        since: str | None,
        tail: int | None,
        redact: Redactor,
    ) -> Iterator[HostOutcome[str]]:
        commands = [
            (part.host, part.log_command(services, follow, since, tail)) for part in self.selected
        ]
        return stream_by_host(commands)

    def render(self, desired: DesiredState) -> ComposeRendering:
        """The same invocation serves every host: the first one's."""
        return self.selected[0].render(desired)


def _probe(run: HostRun) -> None:
    """A host whose engine no longer answers is in a state unknown."""
    try:
        run.part.observe()
    except DeployerError:
        run.result = UNKNOWN


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
