"""`deploy serve`'s agent (commands.serve.Agent) over the in-memory worlds (tests/unit/worlds.py):
what its rounds read, tell, deploy and keep, on a clock the test sets. No engine, no process, no
network: each round loads the world's target anew, as the agent loads each spec anew."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from deployer.commands import serve as serving
from deployer.commands.locks import lock_acquire, lock_release
from deployer.commands.serve import SKIPPED, Agent, AgentDeploy, Settings, View, agent_actor
from deployer.core.command import Command, Completed
from deployer.core.errors import (
    CommandFailedError,
    ConfigError,
    ConfigIssue,
    DeployerError,
    GitPullError,
    ServeOptionError,
    UnknownEnvironmentError,
)
from deployer.core.results import ROLLED_BACK, SUCCESS
from deployer.core.spec import Watch
from deployer.core.variables import Redactor, Variable, Variables
from deployer.core.watch import (
    AUTO,
    HEALTHY,
    IN_SYNC,
    INVALID,
    NOTIFY,
    OFF,
    OUT_OF_SYNC,
    UNKNOWN,
    HostReading,
    Memory,
    Reading,
)
from deployer.infra.engine import DEFAULT_ENGINE_HOST
from deployer.infra.notify import Message
from deployer.state.lock import MANUAL_TTL
from deployer.state.store import Actor
from deployer.targets.base import Environment, Outside, Target
from deployer.targets.choose import target_of
from tests.unit.fakes import ACTOR
from tests.unit.worlds import DIGESTS, HOSTS, OneEngine, SeveralHosts, World, model

CHANGE = "web recreate: image reg/web:1 -> 2"
DOWN = "Docker engine at fake is unreachable: Cannot connect to the Docker daemon"
COMMIT = "abcdef1234567890abcdef1234567890abcdef12"
DRIFT = Message("test: out of sync", CHANGE, True)
AFTER_ROLLBACK = f"web recreate: image reg/web@{DIGESTS['1']} -> 2"  # web as rolled back


class Clock:
    """The agent's clock, as the test sets it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def no_git(command: Command) -> Completed:
    raise AssertionError(f"not to be run: {command.argv}")


@dataclass
class Watching:
    """An agent watching the world's environment `test`; what it sent and logged."""

    world: World
    agent: Agent
    clock: Clock
    sent: list[Message] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    error: DeployerError | None = None  # what loading the spec raises, while set
    reconnects: list[float] = field(default_factory=list)  # when it dropped its connections

    @property
    def view(self) -> View:
        [view] = self.agent.views()
        return view

    def rounds(self, count: int, every: float = 60.0) -> None:
        """`count` rounds, each due: the clock moves on `every` seconds after each."""
        for _ in range(count):
            self.agent.round()
            self.clock.now += every


NOTIFYING = Watch()  # the default: notify, at the agent's interval
NO_VARIABLES = Variables({})


def watching(
    world: World,
    watch: Watch = NOTIFYING,
    *,
    run: Callable[[Command], Completed] = no_git,
    git: bool = False,
    outside: Outside | None = None,
    variables: Variables = NO_VARIABLES,
    redact: Redactor | None = None,
    teach: tuple[str, ...] = (),
    names: tuple[str, ...] = (),
    on_send: Callable[[Message], None] | None = None,
) -> Watching:
    """An agent over `world`, whose spec says `watch`; `teach`: the secret values its loading
    teaches the redactor, as commands.load does; `on_send`: called with each message, once it
    is counted as sent."""
    redactor = redact or Redactor()

    def load(name: str) -> Target[Any, Any]:
        assert name == "test", name
        if watched.error is not None:
            raise watched.error
        redactor.add(teach)
        environment = Environment(world.spec(watch=watch), variables, outside or world.outside())
        return target_of(environment, {}, world.selected)

    clock = Clock()
    (world.tmp_path / "test.yml").touch()  # the folder lists `test`
    settings = Settings(world.tmp_path, names, 60.0, git)
    sent: list[Message] = []
    log: list[str] = []

    def send(message: Message) -> None:
        sent.append(message)
        if on_send is not None:
            on_send(message)

    reconnects: list[float] = []
    agent = Agent(
        settings, load, send, redactor, log.append, run, clock, lambda: reconnects.append(clock())
    )
    watched = Watching(world, agent, clock, sent, log, reconnects=reconnects)
    return watched


@pytest.fixture
def world(tmp_path: Path) -> OneEngine:
    """web runs version 1, as deployed; version 2 is declared."""
    made = OneEngine(tmp_path)
    made.deploy("1")
    made.set_model(model("2"))
    return made


def drifted(reading: Reading) -> Reading:
    """`test` on the local engine, web to be recreated on version 2 (the drift as read)."""
    assert reading.drift
    host = HostReading(DEFAULT_ENGINE_HOST, OUT_OF_SYNC, HEALTHY)
    return Reading("test", OUT_OF_SYNC, HEALTHY, (CHANGE,), "", (host,), reading.drift)


IN_SYNC_READING = Reading(
    "test", IN_SYNC, HEALTHY, (), "", (HostReading(DEFAULT_ENGINE_HOST, IN_SYNC, HEALTHY),)
)


def engine_down(world: OneEngine, down: bool = True) -> None:
    world.compose.dead = down
    world.records.alive = lambda: not down


# What each `apply` does with a difference.


def test_notify_tells_a_drift_once_over_rounds_and_deploys_nothing(world: OneEngine) -> None:
    watched = watching(world, Watch(apply=NOTIFY))

    watched.rounds(3)

    assert watched.sent == [DRIFT]
    assert world.running() == world.everywhere("1")
    assert world.releases() == [(1, "deploy test", "success")]
    view = watched.view
    assert (view.apply, view.reading, view.rounds, view.errors, view.deployed) == (
        NOTIFY,
        drifted(view.reading),
        3,
        0,
        None,
    )


def test_auto_deploys_as_deploy_yes_would_and_records_the_agent_as_performer(
    world: OneEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release is recorded with the agent's actor (`deploy serve (agent of ...)`); it tells
    "deploying" then "deployed", not the drift it made good; the next rounds tell nothing."""
    monkeypatch.setattr(Actor, "current", classmethod(lambda cls: ACTOR))
    watched = watching(
        world, Watch(apply=AUTO), outside=replace(world.outside(), actor=agent_actor)
    )

    watched.rounds(1)

    assert world.running() == world.everywhere("2")
    assert [(r.number, r.performer, r.host, r.command, r.result) for r in world.history()] == [
        (2, "deploy serve (agent of alice)", "host-a", "deploy test", "success"),
        (1, "alice", "host-a", "deploy test", "success"),
    ]
    assert watched.sent == [
        Message("test: deploying", CHANGE, False),
        Message("test: deployed", CHANGE, False),
    ]
    view = watched.view
    assert (view.apply, view.reading, view.deployed, view.errors) == (
        AUTO,
        IN_SYNC_READING,
        AgentDeploy(1000.0, SUCCESS, "deploy test"),
        0,
    )
    assert [(r.number, r.command) for r in view.releases] == [
        (2, "deploy test"),
        (1, "deploy test"),
    ]
    watched.rounds(2)
    assert (len(watched.sent), len(world.history())) == (2, 2)


def test_off_shows_the_drift_and_deploys_nothing(world: OneEngine) -> None:
    watched = watching(world, Watch(apply=OFF))

    watched.rounds(3)

    assert world.running() == world.everywhere("1")
    assert world.releases() == [(1, "deploy test", "success")]
    view = watched.view
    assert (view.apply, view.reading, view.deployed) == (OFF, drifted(view.reading), None)


def test_off_tells_nothing_of_a_drift_a_problem_or_a_recovery(world: OneEngine) -> None:
    """Off only shows: nothing is sent, whatever the rounds read, and nothing is remembered as
    told (a spec switched to notify later tells what it then reads)."""
    watched = watching(world, Watch(apply=OFF))

    watched.rounds(2)
    engine_down(world)
    watched.rounds(2)
    engine_down(world, False)
    watched.rounds(2)

    assert watched.sent == []
    assert [line for line in watched.log if line.startswith("notify:")] == []
    assert (watched.view.reading, watched.view.rounds) == (drifted(watched.view.reading), 6)
    assert world.store().records("agent") == []


def test_a_failed_deploy_is_told_and_retried_only_after_its_back_off(world: OneEngine) -> None:
    """Version 2 never gets healthy: the deploy is rolled back and told; a round before its
    retry is due (woken) does not deploy again; a round once it is due (an interval after the
    failure) does."""
    world.broken = {"2"}
    watched = watching(world, Watch(apply=AUTO))

    watched.agent.round()
    first = watched.view
    watched.clock.now = 1030.0
    watched.agent.wake()
    watched.agent.round()
    assert (watched.view.rounds, len(world.history())) == (2, 2)
    watched.clock.now = 1090.0  # the next round (1030 + 60), the retry due since 1060
    watched.agent.round()

    assert world.running() == world.everywhere("1")
    assert world.releases() == [
        (3, "deploy test", "rolled back"),
        (2, "deploy test", "rolled back"),
        (1, "deploy test", "success"),
    ]

    after = AFTER_ROLLBACK
    assert watched.sent == [
        Message("test: deploying", CHANGE, False),
        Message("test: deploy rolled back", rolled_back("web-2"), True),
        Message("test: out of sync", after, True),
        Message("test: deploying", after, False),
        Message("test: deploy rolled back", rolled_back("web-4"), True),
    ]
    assert [
        (first.deployed, first.errors),
        (watched.view.deployed, watched.view.errors),
    ] == [
        (AgentDeploy(1000.0, ROLLED_BACK, rolled_back("web-2")), 1),
        (AgentDeploy(1090.0, ROLLED_BACK, rolled_back("web-4")), 2),
    ]
    assert watched.view.reading.sync == OUT_OF_SYNC
    drift = watched.view.reading.drift
    assert world.store().records("agent") == [
        Memory(drift=drift, failed=drift, failures=2, failed_at=1090.0, time=1000.0).record()
    ]


HELD = "locked by alice on host-a (pid 4242) (maintenance)"


def test_a_deploy_the_lock_holds_back_is_skipped(world: OneEngine) -> None:
    """A maintenance lock is held: the agent does not wait for it, nor start the deploy (no
    release, no audit entry); the skip is logged and shown; it is not an error."""
    lock_acquire(world.target, "maintenance", MANUAL_TTL, Redactor())
    watched = watching(world, Watch(apply=AUTO))

    watched.rounds(1)

    assert world.releases() == [(1, "deploy test", "success")]
    assert world.audit() == [
        ("deploy test", "success"),
        ("lock acquire --reason 'maintenance'", "success"),
    ]
    assert world.running() == world.everywhere("1")
    view = watched.view
    assert (view.reading, view.deployed, view.errors) == (
        drifted(view.reading),
        AgentDeploy(1000.0, SKIPPED, HELD),
        0,
    )
    assert watched.log == [
        f"test: deploy skipped this round: {HELD}",
        "notify: test: out of sync",
        "test: out-of-sync, healthy",
    ]


def test_a_deploy_the_lock_holds_back_tells_nothing_of_a_deploy(world: OneEngine) -> None:
    """Round after round while the lock is held: only the drift is told (once, as notify tells
    it), no "deploying"; the skip is no failure (no back-off): the round after the lock is
    released deploys at once."""
    lock_acquire(world.target, "maintenance", MANUAL_TTL, Redactor())
    watched = watching(world, Watch(apply=AUTO))

    watched.rounds(3)

    assert watched.sent == [DRIFT]
    assert watched.log.count(f"test: deploy skipped this round: {HELD}") == 3
    drift = watched.view.reading.drift
    assert world.store().records("agent") == [Memory(drift=drift, time=1000.0).record()]
    assert watched.view.deployed == AgentDeploy(1120.0, SKIPPED, HELD)

    lock_release(world.target, False, Redactor())
    watched.rounds(1)

    assert watched.sent[1:] == [
        Message("test: deploying", CHANGE, False),
        Message("test: deployed", CHANGE, False),
        Message("test: in sync again", "", False),
    ]
    assert (watched.view.deployed, world.running()) == (
        AgentDeploy(1180.0, SUCCESS, "deploy test"),
        world.everywhere("2"),
    )


def test_a_lock_taken_just_before_the_deploy_skips_it_as_a_lock_seen_before(
    world: OneEngine,
) -> None:
    """A lock taken between the agent's look at it and its deploy: the deploy is skipped (told),
    not failed; no error counted, no failure remembered."""

    def take_the_lock(message: Message) -> None:
        if message.title == "test: deploying":  # after the agent looked, before it deploys
            lock_acquire(world.target, "maintenance", MANUAL_TTL, Redactor())

    watched = watching(world, Watch(apply=AUTO), on_send=take_the_lock)

    watched.rounds(1)

    assert world.releases() == [(1, "deploy test", "success")]
    assert [m.title for m in watched.sent] == [
        "test: deploying",
        "test: deploy skipped",
        "test: out of sync",
    ]
    [memory] = world.store().records("agent")
    deployed = watched.view.deployed
    assert deployed is not None
    assert (deployed.result, watched.view.errors, memory["failed"], memory["failures"]) == (
        SKIPPED,
        0,
        "",
        0,
    )


# What cannot be read.


def test_a_spec_that_does_not_load_reads_invalid_and_is_told_once(world: OneEngine) -> None:
    """Its problem is the ConfigError's lines; the view has no documents; once it loads again,
    the recovery and the drift are told."""
    issue = ConfigIssue(
        str(world.tmp_path / "test.yml"),
        3,
        "watch.apply",
        "'sometimes' is not one of ['notify', 'auto', 'off']",
    )
    watched = watching(world)
    watched.error = ConfigError([issue])

    watched.rounds(3)

    assert watched.sent == [Message("test: spec invalid", str(issue), True)]
    view = watched.view
    assert (view.apply, view.reading, view.rounds, view.errors, view.diff, view.status) == (
        NOTIFY,
        Reading("test", INVALID, UNKNOWN, problem=str(issue)),
        3,
        3,
        None,
        None,
    )

    watched.error = None
    watched.rounds(1)

    assert watched.sent[1:] == [Message("test: recovered", "read again: out-of-sync", False), DRIFT]
    assert world.running() == world.everywhere("1")


def test_an_engine_down_reads_unknown_and_is_read_again_after_5_then_10_then_20_seconds(
    world: OneEngine,
) -> None:
    world.set_model(model("1"))
    engine_down(world)
    watched = watching(world)

    seen = []
    for now in (1000.0, 1004.9, 1005.0, 1014.9, 1015.0, 1034.9, 1035.0):
        watched.clock.now = now
        watched.agent.round()
        seen.append((watched.view.rounds, watched.view.started))

    assert seen == [
        (1, 1000.0),
        (1, 1000.0),
        (2, 1005.0),
        (2, 1005.0),
        (3, 1015.0),
        (3, 1015.0),
        (4, 1035.0),
    ]
    assert (watched.view.reading, watched.view.errors) == (
        Reading("test", UNKNOWN, UNKNOWN, problem=DOWN),
        4,
    )
    assert watched.sent == [Message("test: not reachable", DOWN, True)]
    # After each round that could not read it, the connections kept open are dropped: an SSH
    # master of a host that rebooted is dead, and the next round dials anew.
    assert watched.reconnects == [1000.0, 1005.0, 1015.0, 1035.0]

    engine_down(world, False)
    for now in (1074.9, 1075.0, 1134.9, 1135.0):  # back: its interval again
        watched.clock.now = now
        watched.agent.round()
        seen.append((watched.view.rounds, watched.view.started))

    assert seen[-4:] == [(4, 1035.0), (5, 1075.0), (5, 1075.0), (6, 1135.0)]
    assert watched.reconnects == [1000.0, 1005.0, 1015.0, 1035.0]
    assert watched.view.reading == IN_SYNC_READING
    assert watched.sent[1:] == [Message("test: recovered", "read again: in-sync", False)]


def test_a_spec_interval_is_the_environments_own(world: OneEngine) -> None:
    watched = watching(world, Watch(interval=10.0))

    for now in (1000.0, 1009.9, 1010.0):
        watched.clock.now = now
        watched.agent.round()

    assert (watched.view.rounds, watched.view.started) == (2, 1010.0)


def test_several_hosts_one_unreachable_then_back(tmp_path: Path) -> None:
    """Unknown while a host is; its error names it; once back, the drift of every host."""
    world = SeveralHosts(tmp_path)
    world.deploy("1")
    world.set_model(model("2"))
    world.hosts.unreachable.add(HOSTS[1])
    watched = watching(world)

    watched.rounds(1)
    problem = f"{HOSTS[1]}: Docker engine at {HOSTS[1]} is unreachable: Cannot connect to the Docker daemon"
    assert (watched.view.reading.sync, watched.view.reading.problem) == (UNKNOWN, problem)
    assert [h.sync for h in watched.view.reading.hosts] == [OUT_OF_SYNC, UNKNOWN, OUT_OF_SYNC]

    world.hosts.unreachable.clear()
    watched.rounds(2)

    changes = tuple(f"{host}: {CHANGE}" for host in HOSTS)
    assert watched.sent == [
        Message("test: not reachable", problem, True),
        Message("test: recovered", "read again: out-of-sync", False),
        Message("test: out of sync", "\n".join(changes), True),
    ]
    reading = watched.view.reading
    assert reading == Reading(
        "test",
        OUT_OF_SYNC,
        HEALTHY,
        changes,
        "",
        tuple(HostReading(host, OUT_OF_SYNC, HEALTHY) for host in HOSTS),
        reading.drift,
    )
    assert world.running() == world.everywhere("1")


# What is kept across restarts.


def test_a_restarted_agent_does_not_tell_the_same_drift_again(world: OneEngine) -> None:
    first = watching(world)
    first.rounds(1)

    restarted = watching(world)
    restarted.rounds(2)

    assert (first.sent, restarted.sent) == ([DRIFT], [])
    assert restarted.view.reading == first.view.reading
    assert world.store().records("agent") == [
        Memory(drift=first.view.reading.drift, time=1000.0).record()
    ]


def test_a_restart_while_the_engine_is_down_does_not_tell_the_drift_again(
    world: OneEngine,
) -> None:
    """The memory is read from the store once it is reachable, the problem told meanwhile
    with it: the recovery is told, the drift told before the restart is not; the store was
    not written before it was read."""
    first = watching(world)
    first.rounds(1)
    drift = first.view.reading.drift
    engine_down(world)
    restarted = watching(world)
    restarted.rounds(1)

    engine_down(world, False)
    restarted.rounds(1)

    assert restarted.sent == [
        Message("test: not reachable", DOWN, True),
        Message("test: recovered", "read again: out-of-sync", False),
    ]
    assert world.store().records("agent") == [Memory(drift=drift, time=1060.0).record()]


def test_a_restart_while_the_spec_is_invalid_does_not_tell_the_drift_again(
    world: OneEngine,
) -> None:
    """No target, no store: the problem is told and kept in the process only; once the spec
    loads, the store's memory is read and merged with it."""
    issue = ConfigIssue(str(world.tmp_path / "test.yml"), 1, "project", "expected a string")
    first = watching(world)
    first.rounds(1)
    drift = first.view.reading.drift
    restarted = watching(world)
    restarted.error = ConfigError([issue])
    restarted.rounds(2)
    assert world.store().records("agent") == [Memory(drift=drift, time=1000.0).record()]

    restarted.error = None
    restarted.rounds(2)

    assert restarted.sent == [
        Message("test: spec invalid", str(issue), True),
        Message("test: recovered", "read again: out-of-sync", False),
    ]
    assert world.store().records("agent") == [Memory(drift=drift, time=1120.0).record()]


def rolled_back(container: str) -> str:
    """What a deploy of the broken version 2 tells, rolled back: `container` said bye."""
    return (
        "service web did not become healthy within 5s (last state: Exited (1) 1 second "
        f"ago); rolled back: web; last log lines of web:;   {container}: bye"
    )


def test_a_restarted_agent_keeps_the_back_off_of_the_drift_whose_deploy_failed(
    world: OneEngine,
) -> None:
    """The failure, how often and when, is kept in the store: a restarted agent deploys the
    failed drift again only once its back-off has passed (an interval after one failure, two
    after two), not at each start."""
    world.broken = {"2"}
    first = watching(world, Watch(apply=AUTO))
    first.rounds(1)
    drift = first.view.reading.drift
    assert world.store().records("agent") == [
        Memory(drift=drift, failed=drift, failures=1, failed_at=1000.0, time=1000.0).record()
    ]

    restarted = watching(world, Watch(apply=AUTO))  # its clock: 1000 again
    restarted.agent.round()
    assert (restarted.sent, len(world.history()), restarted.view.deployed) == ([], 2, None)
    restarted.clock.now = 1060.0  # the retry is due
    restarted.agent.round()

    assert len(world.history()) == 3
    assert restarted.sent == [
        Message("test: deploying", AFTER_ROLLBACK, False),
        Message("test: deploy rolled back", rolled_back("web-4"), True),
    ]
    assert world.store().records("agent") == [
        Memory(drift=drift, failed=drift, failures=2, failed_at=1060.0, time=1000.0).record()
    ]

    again = watching(world, Watch(apply=AUTO))
    for now in (1060.0, 1179.9):  # two failures: 120 s
        again.clock.now = now
        again.agent.wake()
        again.agent.round()
    assert (again.sent, len(world.history())) == ([], 3)
    again.clock.now = 1180.0
    again.agent.wake()
    again.agent.round()
    assert (again.sent, len(world.history())) == (
        [
            Message("test: deploying", AFTER_ROLLBACK, False),
            Message("test: deploy rolled back", rolled_back("web-6"), True),
        ],
        4,
    )
    assert world.store().records("agent") == [
        Memory(drift=drift, failed=drift, failures=3, failed_at=1180.0, time=1000.0).record()
    ]


def test_a_deploy_that_succeeds_after_failing_forgets_the_failures(world: OneEngine) -> None:
    """Version 2 fixed after a failure: the retry deploys it; in sync, nothing of the failure
    is kept."""
    world.broken = {"2"}
    watched = watching(world, Watch(apply=AUTO))
    watched.rounds(1)
    world.broken = set()

    watched.rounds(1)

    assert world.releases() == [
        (3, "deploy test", "success"),
        (2, "deploy test", "rolled back"),
        (1, "deploy test", "success"),
    ]
    assert watched.sent == [
        Message("test: deploying", CHANGE, False),
        Message("test: deploy rolled back", rolled_back("web-2"), True),
        Message("test: out of sync", AFTER_ROLLBACK, True),
        Message("test: deploying", AFTER_ROLLBACK, False),
        Message("test: deployed", AFTER_ROLLBACK, False),
        Message("test: in sync again", "", False),
    ]
    assert (watched.view.reading, watched.view.deployed) == (
        IN_SYNC_READING,
        AgentDeploy(1060.0, SUCCESS, "deploy test"),
    )
    assert world.store().records("agent") == [Memory(time=1060.0).record()]


# The loop.


def test_stop_makes_run_return(world: OneEngine) -> None:
    """run() sleeps until the next round is due; stop() ends it at once."""
    watched = watching(world)
    loop = threading.Thread(target=watched.agent.run)
    loop.start()
    deadline = time.monotonic() + 5
    while not watched.agent.views() and time.monotonic() < deadline:
        time.sleep(0.005)

    watched.agent.stop()
    loop.join(5)

    assert (loop.is_alive(), watched.agent.alive, watched.view.rounds) == (False, False, 1)


def test_a_stop_before_run_ends_it_before_any_round(world: OneEngine) -> None:
    watched = watching(world)
    watched.agent.stop()

    watched.agent.run()

    assert (watched.agent.views(), watched.agent.alive, watched.sent) == ([], False, [])


def test_a_wake_makes_a_round_that_is_not_due(world: OneEngine) -> None:
    watched = watching(world)
    watched.agent.round()
    watched.agent.round()  # not due
    assert watched.view.rounds == 1

    watched.agent.wake()
    watched.agent.round()

    assert (watched.view.rounds, watched.sent) == (2, [DRIFT])


def test_a_wake_before_the_first_round(world: OneEngine) -> None:
    """A webhook or SIGHUP may come before an environment's first round (or a new spec's):
    that round is made, the loop goes on."""
    watched = watching(world)
    watched.agent.wake()

    watched.agent.round()

    assert (watched.view.rounds, watched.sent) == (1, [DRIFT])


def test_an_environment_whose_spec_is_removed_is_no_longer_watched(world: OneEngine) -> None:
    watched = watching(world)
    watched.rounds(1)

    (world.tmp_path / "test.yml").unlink()
    watched.rounds(1)

    assert watched.agent.views() == []


# With --git: the folder is pulled before each round.


def git_runner(
    commands: list[tuple[str, ...]], pull: Completed | DeployerError
) -> Callable[[Command], Completed]:
    def run(command: Command) -> Completed:
        commands.append(command.argv)
        if "pull" in command.argv:
            if isinstance(pull, DeployerError):
                raise pull
            return pull
        return Completed(0, COMMIT + "\n", "")

    return run


def test_a_failing_git_pull_reads_invalid_and_deploys_nothing(world: OneEngine) -> None:
    folder = str(world.tmp_path)
    output = "hint: Diverging branches\nfatal: Not possible to fast-forward, aborting."
    commands: list[tuple[str, ...]] = []
    failing = CommandFailedError(("git", "-C", folder, "pull", "--ff-only"), 128, output)
    watched = watching(world, Watch(apply=AUTO), run=git_runner(commands, failing), git=True)

    watched.rounds(1)

    problem = GitPullError(folder, output).message
    assert problem.endswith("failed: fatal: Not possible to fast-forward, aborting.")
    assert commands == [("git", "-C", folder, "pull", "--ff-only")]
    assert (watched.view.reading, watched.view.commit) == (
        Reading("test", INVALID, UNKNOWN, problem=problem),
        "",
    )
    assert watched.sent == [Message("test: spec invalid", problem, True)]
    assert f"error: {problem}" in watched.log
    assert world.running() == world.everywhere("1")
    assert world.releases() == [(1, "deploy test", "success")]


def test_a_git_pull_records_the_commit_in_the_view_and_the_release(world: OneEngine) -> None:
    folder = str(world.tmp_path)
    commands: list[tuple[str, ...]] = []
    pulled = Completed(0, "Already up to date.\n", "")
    watched = watching(world, Watch(apply=AUTO), run=git_runner(commands, pulled), git=True)

    watched.rounds(1)

    assert commands == [
        ("git", "-C", folder, "pull", "--ff-only"),
        ("git", "-C", folder, "rev-parse", "HEAD"),
    ]
    assert (watched.view.commit, watched.agent.commit) == (COMMIT, COMMIT)
    assert world.releases() == [
        (2, "deploy test (git abcdef123456)", "success"),
        (1, "deploy test", "success"),
    ]
    assert watched.view.deployed == AgentDeploy(1000.0, SUCCESS, "deploy test (git abcdef123456)")
    assert "checkout at abcdef123456" in watched.log


# Secrets.


def test_what_is_sent_and_logged_is_masked(world: OneEngine) -> None:
    """A secret in an engine's error (taught to the redactor as loading teaches it) is masked
    in the problem, the notification and the log."""
    secret = "hunter-2222-xyz"
    run = world.compose

    def failing(command: Command, check: bool = True) -> Completed:
        if "config" in command.argv:
            raise CommandFailedError(command.argv, 1, f"invalid interpolation: {secret}")
        return run(command, check)

    variables = Variables({"DB_PASSWORD": Variable("DB_PASSWORD", secret, ".env:1", True)})
    outside = replace(world.outside(), run=failing)
    watched = watching(world, outside=outside, variables=variables, teach=(secret,))

    watched.rounds(1)

    problem = watched.view.reading.problem
    assert "invalid interpolation: ***" in problem
    assert watched.sent == [Message("test: not reachable", problem, True)]
    assert [line for line in watched.log if secret in line] == []


# Which environments are watched.


def test_the_environments_named_are_the_only_ones_watched(world: OneEngine) -> None:
    """Named: `test` only, though the folder has another spec (never loaded)."""
    (world.tmp_path / "other.yml").write_text("project: other\n")
    watched = watching(world, names=("test",))

    watched.rounds(2)

    assert [view.name for view in watched.agent.views()] == ["test"]


def test_the_agent_refuses_an_unknown_environment_or_notification_url(tmp_path: Path) -> None:
    """Before anything starts: what is named must be in the folder, each URL one Apprise
    knows (shown by its scheme only)."""
    (tmp_path / "test.yml").write_text("project: shop\n")
    redact, log = Redactor(), print

    with pytest.raises(UnknownEnvironmentError) as unknown:
        serving.agent(tmp_path, ["nope"], 60.0, False, [], redact, log)
    with pytest.raises(ServeOptionError) as url:
        serving.agent(tmp_path, ["test"], 60.0, False, ["nope://t0ken@x"], redact, log)

    assert [unknown.value.message, url.value.message] == [
        f"unknown environment 'nope' in {tmp_path} (known: test)",
        "--notify #1 (nope://...): not a notification URL Apprise knows",
    ]


def checkout_spec(world: World, watch: str) -> None:
    """`test.yml` in the checkout, as the agent reads it before a pull: a valid spec whose
    watch: is `watch` (the test's load reads the world's spec, and writes it over)."""
    (world.tmp_path / "app").mkdir(exist_ok=True)
    (world.tmp_path / "app" / "compose.yml").write_text("services: {}\n")
    spec = f"project: shop\ncompose_files: [app/compose.yml]\nwatch: {watch}\n"
    (world.tmp_path / "test.yml").write_text(spec)


def test_a_spec_watch_git_pulls_before_the_first_round(world: OneEngine) -> None:
    """Without --git, a spec whose checkout says `watch.git: true` is pulled before its very
    first round is read (and deployed): the release names the commit pulled."""
    folder = str(world.tmp_path)
    commands: list[tuple[str, ...]] = []
    pulled = Completed(0, "Already up to date.\n", "")
    checkout_spec(world, "{git: true}")
    watched = watching(world, Watch(apply=AUTO, git=True), run=git_runner(commands, pulled))

    watched.agent.round()

    assert commands == [
        ("git", "-C", folder, "pull", "--ff-only"),
        ("git", "-C", folder, "rev-parse", "HEAD"),
    ]
    assert world.releases() == [
        (2, "deploy test (git abcdef123456)", "success"),
        (1, "deploy test", "success"),
    ]
    assert (watched.view.commit, watched.view.deployed) == (
        COMMIT,
        AgentDeploy(1000.0, SUCCESS, "deploy test (git abcdef123456)"),
    )


def test_a_spec_without_watch_git_is_not_pulled(world: OneEngine) -> None:
    """Without --git, `watch.git: false` in the checkout: no git command at all (no_git)."""
    checkout_spec(world, "{git: false, apply: auto}")
    watched = watching(world, Watch(apply=AUTO))

    watched.agent.round()

    assert (watched.view.commit, world.releases()) == (
        "",
        [(2, "deploy test", "success"), (1, "deploy test", "success")],
    )
