"""`deploy serve`: the agent. Round after round it reads each environment as `deploy diff` and
`deploy status` do, tells what differs (once per distinct drift, core.watch), deploys where the
spec says `watch.apply: auto` (exactly as `deploy ENV --yes`, through the one flow of
session.change), and keeps what it saw for the web view and the metrics (deployer.cli.web).

The loop runs on one thread: rounds of different environments never overlap, and a stop asked for
(SIGTERM) ends the loop between two environments, never inside a deploy."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deployer.commands import deploy as deploying
from deployer.commands.load import load
from deployer.commands.session import Interaction
from deployer.core.command import Command, Runner
from deployer.core.errors import (
    CommandFailedError,
    DeployerError,
    GitPullError,
    LockedError,
    RolledBackError,
    UnknownEnvironmentError,
)
from deployer.core.plan import CONVERGE
from deployer.core.results import FAILED, ROLLED_BACK, SUCCESS, Diff, Divergence, Statuses
from deployer.core.spec import find_specs, load_spec, spec_path
from deployer.core.status import SwarmStatus
from deployer.core.variables import Redactor
from deployer.core.watch import (
    DEPLOY_FAILED,
    DEPLOY_SKIPPED,
    DEPLOY_STARTED,
    DEPLOY_SUCCEEDED,
    INVALID,
    NOTIFY,
    OFF,
    UNKNOWN,
    HostReading,
    Memory,
    Notice,
    Reading,
    deploys,
    host_reading,
    next_due,
    reading,
    told,
    unreadable,
)
from deployer.core.watch import ROLLED_BACK as ROLLED_BACK_NOTICE
from deployer.infra.notify import Message, Notifier
from deployer.infra.runner import SSH, run
from deployer.state import agent as agent_memory
from deployer.state import audit as audit_trail
from deployer.state import lock as lock_module
from deployer.state.audit import AuditEntry
from deployer.state.releases import Release, history, spec_hash, variables_hash
from deployer.state.store import Actor
from deployer.targets.base import Outside, Target

SKIPPED = "skipped"  # a deploy the agent did not start: the lock was held


@dataclass(frozen=True)
class Settings:
    folder: Path
    names: Sequence[str]  # the environments watched; none: every one in the folder
    interval: float  # seconds between rounds, where a spec's watch.interval does not say
    git: bool  # pull the folder before each round (`--git`; a spec's watch.git too)


@dataclass(frozen=True)
class AgentDeploy:
    """A deploy the agent started (or skipped), and how it ended."""

    time: float
    result: str  # success | failed | rolled-back | skipped
    text: str


@dataclass(frozen=True)
class View:
    """One environment as the agent saw it last: what the page, the API and the metrics show."""

    name: str
    apply: str
    reading: Reading
    started: float  # when the round began
    seconds: float  # how long it took
    diff: Diff | None = None
    status: Statuses | SwarmStatus | None = None
    releases: tuple[Release, ...] = ()
    divergences: tuple[Divergence, ...] = ()
    audit: tuple[AuditEntry, ...] = ()
    deployed: AgentDeploy | None = None  # the agent's last deploy of it
    rounds: int = 0
    errors: int = 0  # rounds that could not read it, or whose deploy failed
    commit: str = ""  # of the checkout, with --git


@dataclass
class _Watched:
    """What the agent keeps of one environment between rounds."""

    due: float = 0.0
    failures: int = 0  # rounds in a row that could not read it
    memory: Memory = field(default_factory=Memory)
    view: View | None = None
    rounds: int = 0
    errors: int = 0
    deployed: AgentDeploy | None = None
    recalled: bool = False  # whether `memory` was read from the environment's store yet


class LogProgress:
    """A deploy's progress, as lines of the agent's log."""

    def __init__(self, environment: str, log: Callable[[str], None]) -> None:
        self.environment, self.log = environment, log

    def update(self, subject: str, text: str) -> None:
        """Only what is done is logged: updates of a line would flood the log."""

    def done(self, subject: str, text: str) -> None:
        self.log(f"{self.environment}: {text}")


def agent_actor() -> Actor:
    """Who the agent's deploys are recorded as: `deploy serve`, on this machine."""
    person = Actor.current()
    return replace(person, performer=f"deploy serve (agent of {person.performer})")


class Agent:
    """Watches environments; `run` loops until `stop`."""

    def __init__(
        self,
        settings: Settings,
        load: Callable[[str], Target[Any, Any]],
        send: Callable[[Message], None],
        redact: Redactor,
        log: Callable[[str], None],
        run: Runner,
        clock: Callable[[], float] = time.time,
        reconnect: Callable[[], None] = lambda: None,
    ) -> None:
        """`load` reads an environment's spec and variables anew (teaching `redact` its
        secrets): each round sees the folder as it is then. `reconnect` drops the connections
        kept open (SSH masters), so that a host that could not be read is dialled anew: one
        that rebooted left its master dead."""
        self.settings, self._load, self._send, self.redact = settings, load, send, redact
        self._log, self._run, self._clock, self._reconnect = log, run, clock, reconnect
        self._watched: dict[str, _Watched] = {}
        self._views_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self.alive = True  # until the loop has ended
        self.commit = ""

    # What other threads ask of it (the web server, signal handlers).

    def views(self) -> list[View]:
        with self._views_lock:
            return [w.view for _, w in sorted(self._watched.items()) if w.view is not None]

    def wake(self) -> None:
        """A round of every environment now (or right after the one under way): webhooks and
        SIGHUP; several before it starts make one round."""
        self._wake.set()

    def stop(self) -> None:
        """End after the environment under way (SIGTERM)."""
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # The loop.

    def run(self) -> None:
        try:
            while not self.stopping:
                self.round()
                self._sleep()
        finally:
            self.alive = False

    def round(self) -> None:
        """One round of every environment due (all of them after a wake)."""
        woken = self._wake.is_set()
        self._wake.clear()
        names = self._names()
        now = self._clock()
        with self._views_lock:  # the web server's threads read _watched
            watched = [self._watched.setdefault(n, _Watched()) for n in names]
        due = [n for n, w in zip(names, watched, strict=True) if woken or w.due <= now]
        if not due:
            return
        pulled = self._pull() if self._pulls(due) else None
        for name in due:
            if self.stopping:
                return
            self._reconcile(name, pulled)

    def _sleep(self) -> None:
        if self.stopping:
            return
        soonest = min((w.due for w in self._watched.values()), default=self._clock() + 1)
        self._wake.wait(max(0.0, min(soonest - self._clock(), 60.0)))

    def _names(self) -> list[str]:
        """The environments watched this round: those named, or every spec in the folder now
        (a spec removed from it leaves the page)."""
        names = list(self.settings.names) or sorted(find_specs(self.settings.folder))
        with self._views_lock:
            for gone in set(self._watched) - set(names):
                del self._watched[gone]
        return names

    def _pulls(self, names: Sequence[str]) -> bool:
        """--git, or a spec's watch.git (read from the checkout as it is before the pull)."""
        return self.settings.git or any(self._watches_git(n) for n in names)

    def _watches_git(self, name: str) -> bool:
        try:
            return load_spec(spec_path(self.settings.folder, name)).watch.git
        except DeployerError:
            return False  # told when the environment is read

    def _pull(self) -> GitPullError | None:
        """`git pull --ff-only` in the folder; the error, where it failed, for every round."""
        folder = str(self.settings.folder)
        try:
            self._run(Command(("git", "-C", folder, "pull", "--ff-only")))
            commit = self._run(Command(("git", "-C", folder, "rev-parse", "HEAD"))).stdout.strip()
        except DeployerError as e:
            output = e.output if isinstance(e, CommandFailedError) else e.message
            error = GitPullError(folder, self.redact(output))
            self._log(f"error: {error.message}")
            return error
        if commit != self.commit:
            self._log(f"checkout at {commit[:12]}")
        self.commit = commit
        return None

    def _reconcile(self, name: str, pulled: GitPullError | None) -> None:
        watched = self._watched[name]
        started = self._clock()
        interval, apply = self.settings.interval, NOTIFY
        target: Target[Any, Any] | None = None
        documents: dict[str, Any] = {}
        try:
            target = self._load(name)
        except DeployerError as e:
            now = unreadable(name, INVALID, self.redact("; ".join(e.lines())))
        else:
            watch = target.env.spec.watch
            interval, apply = watch.interval or interval, watch.apply
            now, documents = self._read(target)
            if pulled is not None:
                now = unreadable(name, INVALID, pulled.message)
        memory = self._recall(watched, target)
        if target is not None and now.sync not in (INVALID, UNKNOWN):
            if deploys(apply, now, memory, self._clock(), interval):
                memory = self._deploy(target, watched, now, memory)
                now, documents = self._read(target)
            documents.update(self._records(target))
        if apply != OFF:  # off only shows
            notices, memory = told(memory, now, started)
            for notice in notices:
                self._tell(notice)
        self._keep(watched, target, memory)
        watched.failures = watched.failures + 1 if now.sync == UNKNOWN else 0
        if now.sync == UNKNOWN:
            self._reconnect()
        watched.rounds += 1
        watched.errors += now.sync in (UNKNOWN, INVALID)
        watched.due = next_due(self._clock(), interval, now, watched.failures)
        view = View(
            name,
            apply,
            now,
            started,
            self._clock() - started,
            deployed=watched.deployed,
            rounds=watched.rounds,
            errors=watched.errors,
            commit=self.commit,
            **documents,
        )
        before = watched.view.reading if watched.view else None
        with self._views_lock:
            watched.view = view
        if before is None or (before.sync, before.health, before.problem) != (
            now.sync,
            now.health,
            now.problem,
        ):  # a line per change, not per round
            problem = f": {now.problem}" if now.problem else ""
            self._log(f"{name}: {now.sync}, {now.health}{problem}")

    def _read(self, target: Target[Any, Any]) -> tuple[Reading, dict[str, Any]]:
        """The environment as `deploy diff` and `deploy status` read it, and those two."""
        name = target.env.name
        try:
            found = target.diff(self.redact)
            status = target.status(self.redact)
        except DeployerError as e:
            return unreadable(name, UNKNOWN, self.redact("; ".join(e.lines()))), {}
        except Exception as e:  # a bug: the round of this one environment ends, the agent goes on
            self._log("".join(traceback.format_exception(e)).rstrip())
            return unreadable(name, UNKNOWN, f"unexpected error: {type(e).__name__}: {e}"), {}
        several = len(found.outcomes) > 1
        hosts: list[HostReading] = []
        changes: list[str] = []
        drift: list[str] = []
        for outcome in found.outcomes:
            plan, error = outcome.value, outcome.error
            healthy = None if plan is None else _healthy(status, outcome.host)
            hosts.append(
                host_reading(
                    outcome.host,
                    None if plan is None else plan.in_sync,
                    healthy,
                    "" if error is None else self.redact(error.message),
                )
            )
            for change, line in (
                [] if plan is None else zip(plan.changes, plan.lines(), strict=True)
            ):
                if change.action == CONVERGE:  # Swarm's to do, not a change deploy would make
                    continue
                changes.append(self.redact(f"{outcome.host}: {line}" if several else line))
                drift.append(f"{outcome.host} {change.service} {change.action} {change.image}")
        env = target.env
        drift += [spec_hash(env.spec), variables_hash(env.variables)]
        return reading(name, hosts, changes, drift), {"diff": found, "status": status}

    def _records(self, target: Target[Any, Any]) -> dict[str, Any]:
        """What the page shows beside the reading: the history and the audit."""
        try:
            store = target.store(reading=True)
            releases = history(store)
            return {
                "releases": tuple(releases),
                "divergences": tuple(target.divergences(releases)),
                "audit": tuple(audit_trail.entries(store)),
            }
        except DeployerError as e:
            self._log(f"{target.env.name}: records not read: {e.message}")
            return {}

    def _recall(self, watched: _Watched, target: Target[Any, Any] | None) -> Memory:
        """What was told, as the environment's store keeps it (read once it is reachable); a
        problem told meanwhile, while it was not, is kept too."""
        if not watched.recalled and target is not None:
            try:
                kept = agent_memory.recalled(target.store(reading=True))
            except DeployerError:
                return watched.memory
            problem = watched.memory.problem or kept.problem
            watched.memory, watched.recalled = replace(kept, problem=problem), True
        return watched.memory

    def _keep(self, watched: _Watched, target: Target[Any, Any] | None, memory: Memory) -> None:
        if memory == watched.memory:
            return
        watched.memory = memory
        if target is None or not watched.recalled:
            return  # the store was not read yet: writing would forget what it holds
        try:
            agent_memory.keep(target.store(), memory)
        except DeployerError as e:  # kept in this process still: only a restart forgets it
            self._log(f"{target.env.name}: what was told not kept: {e.message}")

    def _deploy(
        self, target: Target[Any, Any], watched: _Watched, now: Reading, memory: Memory
    ) -> Memory:
        """Deploy as `deploy ENV --yes` would, unless someone holds the lock (never broken: the
        next round tries again). A failed drift is remembered, with how often it failed, for
        its back-off (core.watch.deploys)."""
        name = target.env.name
        holder = self._lock_holder(target)
        if holder:
            self._log(f"{name}: deploy skipped this round: locked by {holder}")
            watched.deployed = AgentDeploy(self._clock(), SKIPPED, f"locked by {holder}")
            return memory
        command = f"deploy {name}" + (f" (git {self.commit[:12]})" if self.commit else "")
        ui = Interaction(LogProgress(name, self._log), lambda _: True, lambda _: None, self.redact)
        started = self._clock()
        self._tell(Notice(DEPLOY_STARTED, name, f"{name}: deploying", "\n".join(now.changes)))
        try:
            deploying.deploy(target, ui, command)
        except LockedError as e:  # taken since it was looked at: a skip, not a failure
            self._log(f"{name}: deploy skipped this round: {e.message}")
            self._tell(Notice(DEPLOY_SKIPPED, name, f"{name}: deploy skipped", e.message))
            watched.deployed = AgentDeploy(started, SKIPPED, self.redact(e.message))
            return memory
        except DeployerError as e:
            result = ROLLED_BACK if isinstance(e, RolledBackError) else FAILED
            text = self.redact("; ".join(e.lines()))
            kind = ROLLED_BACK_NOTICE if result == ROLLED_BACK else DEPLOY_FAILED
            self._tell(Notice(kind, name, f"{name}: deploy {result}", text))
            watched.deployed = AgentDeploy(started, result, text)
            watched.errors += 1
            return memory.deploy_failed(now.drift, self._clock())
        self._tell(Notice(DEPLOY_SUCCEEDED, name, f"{name}: deployed", "\n".join(now.changes)))
        watched.deployed = AgentDeploy(started, SUCCESS, command)
        return memory.deployed()

    def _lock_holder(self, target: Target[Any, Any]) -> str:
        """Who holds the environment's lock ("" when no one does, or it cannot be read: the
        deploy then finds out itself)."""
        try:
            lock, _ = lock_module.status(target.store(reading=True))
        except DeployerError:
            return ""
        return self.redact(f"{lock.describe()} ({lock.reason})") if lock is not None else ""

    def _tell(self, notice: Notice) -> None:
        self._log(f"notify: {notice.title}")
        self._send(Message(self.redact(notice.title), self.redact(notice.body), notice.failing))


def _healthy(status: Statuses | SwarmStatus, host: str) -> bool | None:
    """Whether what runs on `host` is running and healthy (a swarm: the whole stack)."""
    if isinstance(status, SwarmStatus):
        return status.healthy
    return next((o.value.healthy for o in status.outcomes if o.host == host and o.value), None)


@dataclass(frozen=True)
class Serving:
    """An agent and the notifier it tells through."""

    agent: Agent
    notifier: Notifier

    def notifications_failed(self) -> int:
        return self.notifier.failures

    def close(self) -> None:
        """Send what is still queued (a little while at most)."""
        self.notifier.close(CLOSE_TIMEOUT)


CLOSE_TIMEOUT = 15.0


def agent(
    folder: Path,
    names: Sequence[str],
    interval: float,
    git: bool,
    urls: Sequence[str],
    redact: Redactor,
    log: Callable[[str], None],
) -> Serving:
    """The agent of `deploy serve`: its environments checked to exist, its notification URLs to
    be ones Apprise knows, before anything starts."""
    known = find_specs(folder)
    for name in names:
        if name not in known:
            raise UnknownEnvironmentError(name, str(folder), sorted(known))
    notifier = Notifier(urls, log)
    settings = Settings(folder, tuple(names), interval, git)
    outside = Outside(actor=agent_actor)

    def loaded(name: str) -> Target[Any, Any]:
        return load(folder, name, redact, outside=outside)

    agent = Agent(settings, loaded, notifier.send, redact, log, run, reconnect=SSH.close)
    return Serving(agent, notifier)
