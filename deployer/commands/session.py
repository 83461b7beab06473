"""The flow of every state-changing command, written once for every target:

plan without the lock (in sync: stop, taking nothing) -> lock -> plan again under it -> show ->
what must hold first (registry login, images in the registry) -> confirm -> record -> apply ->
on a failure that changed something, undo (`deploy.on_failure: rollback`) -> record the outcome,
whatever ends the command (an error, an interrupt, a bug).

An `Operation` says what one command does at each step (deploy and rollback: a target's plan;
restart; down); the target does the work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Generic, NoReturn, TypeVar

from deployer.core.desired import DesiredState
from deployer.core.errors import (
    ConfirmationRefusedError,
    DeployerError,
    RolledBackError,
    RolloutFailedError,
)
from deployer.core.plan import Plan
from deployer.core.progress import Progress
from deployer.core.results import FAILED, INTERRUPTED, ROLLED_BACK, SUCCESS, ByHost, HostOutcome
from deployer.core.variables import Redactor
from deployer.state import audit, releases, retention
from deployer.state import lock as lock_module
from deployer.state.lock import DEPLOY_TTL, Lock, holding
from deployer.state.releases import history
from deployer.state.store import Actor, Store
from deployer.targets.base import Failed, Place, Planned, Target
from deployer.targets.hosts import in_turn

T = TypeVar("T")
P = TypeVar("P")


@dataclass(frozen=True)
class Interaction:
    """How a command talks to its user; the CLI provides it."""

    progress: Progress
    confirm: Callable[[str], bool]  # asks a yes/no question (or refuses without a terminal)
    # Each host's plan, by host (one: as the plan of the environment), shown at once.
    show_plans: Callable[[Sequence[tuple[str, Plan]]], None]
    redact: Redactor


def confirmed(target: Target[Any, Any], ui: Interaction, question: str) -> None:
    """Ask where the spec says so; a "no" changes nothing."""
    if target.env.spec.confirm and not ui.confirm(question):
        raise ConfirmationRefusedError(f"{target.env.name}: not confirmed; nothing changed")


@dataclass
class Held:
    """A command under the environment's lock: where its records go, and who it is."""

    target: Target[Any, Any]
    store: Store
    actor: Actor


@contextmanager
def locked(target: Target[Any, Any], what: str, lock_wait: float) -> Iterator[Held]:
    """Hold the environment's lock (on every host of several) for a state-changing command."""
    store = target.store()
    actor = target.env.outside.actor()
    lock = Lock.new(actor, f"{what} {target.env.name}", "process", DEPLOY_TTL)
    with holding(store, target.env.name, lock, lock_wait):
        yield Held(target, store, actor)


@dataclass
class Recording:
    """What a state-changing command has done so far, for the record written however it ends."""

    changes: Sequence[str] = ()
    applying: Planned | None = None  # once set, the command makes a release of what runs
    states: list[DesiredState] = field(default_factory=list)  # what its services may now run
    rolling_back: DeployerError | None = None  # the failure being rolled back, while it is

    def applies(self, planned: Planned) -> None:
        """From here on the command changes what runs: its release will be recorded."""
        self.changes, self.applying = planned.lines(), planned
        self.states.extend(planned.states)


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
def recorded(
    held: Held,
    command: str,
    redact: Redactor,
    changes: Sequence[str] = (),
    progress: Progress | None = None,
) -> Iterator[Recording]:
    """The one place a state-changing command's record is written: its audit entry, and its
    release once it applies a plan, whatever ends it (an error, an interrupt, a bug). After a
    release, records beyond retention go (`progress` hears if they cannot)."""
    target, store = held.target, held.store
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
                store,
                held.actor,
                target.env.name,
                command,
                result,
                redact,
                recording.changes,
                error,
            )
            if recording.applying is not None:
                earlier = history(store)
                services, hosts = target.snapshot(
                    recording.applying, recording.states, earlier, redact
                )
                # A release is written only under the lock still held: if it was broken and
                # taken meanwhile, the release numbers are someone else's now.
                lock_module.verify_held(store)
                spec = target.env.spec
                releases.record(
                    store,
                    held.actor,
                    command,
                    result,
                    spec,
                    target.env.variables,
                    services,
                    recording.changes,
                    hosts,
                )
                running = {name: s.image_id for name, s in services.items()}
                trim_records(store, spec.keep_history, running, progress)
        except DeployerError as e:
            if ended is None:
                raise
            ended.add_note(f"its record could not be written: {e.message}")


def trim_records(
    store: Store, keep_history: int, running: dict[str, str], progress: Progress | None
) -> None:
    """Retention after a recorded release: failing to tidy up is said, never fatal."""
    try:
        retention.trim(store, keep_history, running)
    except DeployerError as e:
        if progress is not None:
            progress.done("records", f"old records not removed: {e.message}")


class Operation(ABC, Generic[P, T]):
    """One state-changing command on one target, step by step."""

    verb: str  # what the lock is held for: deploy, rollback, restart, down

    def __init__(self, target: Target[Any, Any], ui: Interaction) -> None:
        self.target, self.ui = target, ui

    def probe(self) -> P | None:
        """The plan made without the lock, where it tells cheaply that there is nothing to do."""
        return None

    @abstractmethod
    def plan(self, held: Held, first: P | None) -> P:
        """The plan, under the lock."""

    def show(self, planned: P) -> None:
        """Show the plan (before any question)."""

    def in_sync(self, planned: P) -> bool:
        """Whether the plan changes nothing: the command then ends with `unchanged`."""
        return False

    def unchanged(self, planned: P) -> T:
        raise NotImplementedError  # only asked where in_sync says so

    def prepare(self, planned: P) -> None:
        """What must hold before anything changes, checked before the question."""

    @abstractmethod
    def question(self, planned: P) -> str: ...

    def confirm(self, planned: P) -> None:
        confirmed(self.target, self.ui, self.question(planned))

    @abstractmethod
    def command(self, planned: P) -> str:
        """The command as its records name it."""

    def changes(self, planned: P) -> Sequence[str]:
        """What its audit entry lists, until a release says what changed."""
        return ()

    def released(self, planned: P) -> Planned | None:
        """The target's plan, where applying it records a release of what then runs."""
        return None

    @abstractmethod
    def apply(self, planned: P) -> T:
        """Carry out the plan; a target's failure is raised as Failed."""

    def after(self, done: T) -> None:
        """What follows a success, outside the lock's record."""


def change(operation: Operation[P, T], lock_wait: float) -> T:
    """The one flow of a state-changing command (see the module's docstring)."""
    target, ui = operation.target, operation.ui
    first = operation.probe()
    if first is not None and operation.in_sync(first):
        operation.show(first)
        return operation.unchanged(first)
    with locked(target, operation.verb, lock_wait) as held:
        planned = operation.plan(held, first)
        operation.show(planned)
        if operation.in_sync(planned):
            return operation.unchanged(planned)
        operation.prepare(planned)
        operation.confirm(planned)
        command = operation.command(planned)
        changes = operation.changes(planned)
        with recorded(held, command, ui.redact, changes, ui.progress) as recording:
            releasing = operation.released(planned)
            if releasing is not None:
                recording.applies(releasing)
            done = _applied(operation, planned, held, recording)
    operation.after(done)
    return done


def _applied(operation: Operation[P, T], planned: P, held: Held, recording: Recording) -> T:
    """Apply; a failure that changed something is undone where the spec says so."""
    target, ui = operation.target, operation.ui
    try:
        return operation.apply(planned)
    except Failed as failed:
        if target.env.spec.on_failure != "rollback":
            _fail(failed, None)
        if not failed.changed():
            _fail(failed, [])
        recording.rolling_back = failed.error
        undone = target.undo(planned, ui.progress, history(held.store))
        recording.states[:0] = undone.states
        names = sorted({*undone.names, *failed.put_back})
        if not names:  # nothing was put back: the failure is the command's
            recording.rolling_back = None
        _fail(failed, names)


def _fail(failed: Failed, undone: Sequence[str] | None) -> NoReturn:
    """End with the error a target's failure comes to, given what was put back."""
    error = failed.reported(undone)
    if error is failed.error:
        raise error
    raise error from failed.error


def host_by_host(
    target: Target[Any, Any],
    ui: Interaction,
    question: str | None,
    action: Callable[[Place[Any], Interaction, bool], T],
) -> ByHost[T]:
    """A one-place operation on each part of the target in turn, stopping at the first that
    fails. `question` is asked once for every host (where the spec asks) rather than by each;
    with one part the operation asks its own, and its error is the command's."""
    parts = target.parts()
    hosts = tuple(part.host for part in parts)
    if len(parts) == 1:
        return ByHost(hosts, (HostOutcome(hosts[0], action(parts[0], ui, False)),))
    if question is not None:
        confirmed(target, ui, question)
        ui = replace(ui, confirm=lambda _: True)

    def on(part: Place[Any]) -> T:
        ui.progress.done(part.host, f"on {part.host}:")
        return action(part, ui, True)

    return ByHost(hosts, tuple(in_turn(parts, on)))
