"""`deploy serve`'s agent (commands.serve.Agent) and its web side (deployer.cli.web) over the
in-memory swarm of tests/unit/worlds.py (OnSwarm): a swarm is one place, read through its manager,
and what runs is shown as `deploy status` shows a stack, every task of it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from markupsafe import escape

from deployer.cli.render.status import status_document_of, status_text_of
from deployer.commands.serve import AgentDeploy, agent_actor
from deployer.core.errors import EngineUnreachableError
from deployer.core.results import SUCCESS
from deployer.core.spec import Watch
from deployer.core.status import SwarmStatus
from deployer.core.watch import (
    AUTO,
    HEALTHY,
    IN_SYNC,
    NOTIFY,
    OUT_OF_SYNC,
    UNHEALTHY,
    UNKNOWN,
    HostReading,
    Reading,
)
from deployer.infra.engine import Engine
from deployer.infra.notify import Message
from deployer.state.store import Actor
from tests.unit.fakes import ACTOR, FakeSwarm
from tests.unit.test_serve_agent import watching
from tests.unit.test_web import as_json, client_of, samples, states
from tests.unit.worlds import DIGESTS, OnSwarm, model

MANAGER = "unix:///fake/manager.sock"  # FakeSwarm's engine: the host the swarm target names
UPDATE = "web update: image reg/web:1 -> 2"
DOWN = f"Docker engine at {MANAGER} is unreachable: Cannot connect to the Docker daemon"
STATUS = (
    "test (stack shop): healthy, in sync\n"
    "SERVICE  RUNNING  IMAGE      DIGEST        UPDATE  NODE  STATE    HEALTH  SINCE\n"
    f"web      1/1      reg/web:1  {DIGESTS['1'][7:19]}  -       dh4   running  -       "
    "2026-12-01T10:00:00Z"
)


@pytest.fixture
def world(tmp_path: Path) -> OnSwarm:
    """web runs version 1 on the swarm, as deployed, converged."""
    made = OnSwarm(tmp_path)
    made.deploy("1")
    return made


def swarm_reading(sync: str, health: str = HEALTHY, changes: tuple[str, ...] = ()) -> Reading:
    """`test` read through the manager: one place, the manager's URL."""
    return Reading("test", sync, health, changes, "", (HostReading(MANAGER, sync, health),))


IN_SYNC_READING = swarm_reading(IN_SYNC)


@dataclass
class Manager:
    """Connecting to the swarm's manager: down, it cannot be connected to (as FakeHosts'
    unreachable hosts): nothing of the swarm is read, nor its records (kept on the swarm)."""

    swarm: FakeSwarm
    down: bool = False

    def connect(self, engine: Engine) -> FakeSwarm:
        assert engine.host == MANAGER, engine.host
        if self.down:
            raise EngineUnreachableError(engine.host, "Cannot connect to the Docker daemon")
        return self.swarm


def test_a_swarm_in_sync_and_converged_reads_in_sync_and_healthy_in_one_place(
    world: OnSwarm,
) -> None:
    """One HostReading, the manager's; the status kept for the page is the stack's."""
    watched = watching(world)

    watched.rounds(2)

    view = watched.view
    assert (view.apply, view.reading, view.rounds, view.errors, view.deployed) == (
        NOTIFY,
        IN_SYNC_READING,
        2,
        0,
        None,
    )
    assert isinstance(view.status, SwarmStatus)
    assert (view.status.environment, view.status.healthy, view.status.plan.in_sync) == (
        "test",
        True,
        True,
    )
    assert sorted(view.status.stack.services) == ["web"]
    assert view.diff is not None and [o.host for o in view.diff.outcomes] == [MANAGER]
    assert [(r.number, r.command, r.result) for r in view.releases] == [
        (1, "deploy test", "success")
    ]
    assert (watched.sent, watched.log, watched.reconnects) == (
        [],
        ["test: in-sync, healthy"],
        [],
    )


def test_notify_tells_a_swarm_service_on_another_image_once_and_deploys_nothing(
    world: OnSwarm,
) -> None:
    world.set_model(model("2"))
    watched = watching(world, Watch(apply=NOTIFY))

    watched.rounds(3)

    assert watched.sent == [Message("test: out of sync", UPDATE, True)]
    assert (world.running(), world.swarm.image_of("web")) == (world.everywhere("1"), "reg/web:1")
    assert world.releases() == [(1, "deploy test", "success")]
    assert [argv[1:3] for argv in world.swarm.ran] == [("stack", "deploy")]  # the first deploy's
    view = watched.view
    assert view.reading.drift
    assert (view.reading, view.rounds, view.errors, view.deployed) == (
        replace(swarm_reading(OUT_OF_SYNC, changes=(UPDATE,)), drift=view.reading.drift),
        3,
        0,
        None,
    )


def test_auto_deploys_a_swarm_service_on_another_image_and_records_the_release(
    world: OnSwarm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`docker stack deploy` once; the service then runs the declared image; the release is
    the agent's; "deploying" then "deployed" is told, and nothing in the rounds after."""
    monkeypatch.setattr(Actor, "current", classmethod(lambda cls: ACTOR))
    world.set_model(model("2"))
    outside = replace(world.outside(), actor=agent_actor)
    watched = watching(world, Watch(apply=AUTO), outside=outside)

    watched.rounds(1)

    assert (world.running(), world.swarm.image_of("web")) == (world.everywhere("2"), "reg/web:2")
    assert world.swarm.services["web"].spec["TaskTemplate"]["ContainerSpec"]["Image"] == (
        f"reg/web:2@{DIGESTS['2']}"
    )
    assert [argv[1:3] for argv in world.swarm.ran] == [("stack", "deploy")] * 2
    assert [(r.number, r.performer, r.host, r.command, r.result) for r in world.history()] == [
        (2, "deploy serve (agent of alice)", "host-a", "deploy test", "success"),
        (1, "alice", "host-a", "deploy test", "success"),
    ]
    assert watched.sent == [
        Message("test: deploying", UPDATE, False),
        Message("test: deployed", UPDATE, False),
    ]
    assert watched.log == [
        "notify: test: deploying",
        "test: web: 1/1 tasks running",
        "notify: test: deployed",
        "test: in-sync, healthy",
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

    assert (len(watched.sent), len(world.history()), len(world.swarm.ran)) == (2, 2, 2)


def test_a_swarm_manager_down_reads_unknown_is_told_once_and_its_recovery_once(
    world: OnSwarm,
) -> None:
    """Read again after 5 then 10 seconds, the connections dropped after each; once the manager
    answers, in sync again at its interval."""
    manager = Manager(world.swarm, down=True)
    outside = replace(world.outside(), connect=manager.connect)  # type: ignore[arg-type]
    watched = watching(world, outside=outside)

    for now in (1000.0, 1004.9, 1005.0, 1015.0):
        watched.clock.now = now
        watched.agent.round()

    view = watched.view
    assert (view.reading, view.rounds, view.errors, view.status, view.diff) == (
        Reading("test", UNKNOWN, UNKNOWN, problem=DOWN),
        3,
        3,
        None,
        None,
    )
    assert watched.reconnects == [1000.0, 1005.0, 1015.0]
    assert watched.sent == [Message("test: not reachable", DOWN, True)]

    manager.down = False
    for now in (1035.0, 1095.0, 1155.0):
        watched.clock.now = now
        watched.agent.round()

    assert (watched.view.reading, watched.view.rounds, watched.view.errors) == (
        IN_SYNC_READING,
        6,
        3,
    )
    assert watched.reconnects == [1000.0, 1005.0, 1015.0]
    assert watched.sent == [
        Message("test: not reachable", DOWN, True),
        Message("test: recovered", "read again: in-sync", False),
    ]
    assert watched.log == [
        "notify: test: not reachable",
        f"test: unknown, unknown: {DOWN}",
        "notify: test: recovered",
        "test: in-sync, healthy",
    ]


# The web side.


def test_the_page_of_a_swarm_environment_shows_its_stack_and_every_task(world: OnSwarm) -> None:
    watched = watching(world)
    watched.agent.round()

    answer = client_of(watched).get("/environments/test")

    view, redact = watched.view, watched.agent.redact
    assert view.status is not None
    assert status_text_of(view.status, redact) == STATUS
    assert answer.status_code == 200
    assert states(answer.text) == [
        ("state sync in-sync", "in-sync"),
        ("state health healthy", "healthy"),
        ("state success", "success"),  # release 1
        ("state success", "success"),  # its audit entry
    ]
    assert f"<pre>{escape(STATUS)}</pre>" in answer.text


def test_the_api_document_of_a_swarm_environment(world: OnSwarm) -> None:
    watched = watching(world)
    watched.agent.round()

    document = client_of(watched).get("/api/environments/test").json()

    view, redact = watched.view, watched.agent.redact
    assert view.status is not None
    assert document["status"] == as_json(status_document_of(view.status, redact))
    assert document["status"] == {
        "environment": "test",
        "project": "shop",
        "in_sync": True,
        "healthy": True,
        "services": [
            {
                "service": "web",
                "image": "reg/web:1",
                "digest": DIGESTS["1"],
                "replicas": {"running": 1, "desired": 1},
                "update": {"state": None, "message": ""},
                "tasks": [
                    {
                        "slot": 1,
                        "node": "dh4",
                        "desired_state": "running",
                        "state": "running",
                        "health": None,
                        "since": "2026-12-01T10:00:00Z",
                        "error": "",
                        "current": True,
                    }
                ],
            }
        ],
    }
    assert (document["sync"], document["health"], document["changes"], document["hosts"]) == (
        "in-sync",
        "healthy",
        [],
        [{"host": MANAGER, "sync": "in-sync", "health": "healthy", "error": ""}],
    )


def test_the_metrics_of_a_swarm_name_the_manager_as_its_one_host(world: OnSwarm) -> None:
    """No per-service sample: deployer_service_healthy is of one engine and several hosts
    (docs/serve.md)."""
    watched = watching(world)
    watched.agent.round()

    text = client_of(watched).get("/metrics").text

    here = f'environment="test",host="{MANAGER}"'
    assert samples(text) == [
        'deployer_in_sync{environment="test"} 1.0',
        'deployer_readable{environment="test"} 1.0',
        'deployer_healthy{environment="test"} 1.0',
        'deployer_pending_changes{environment="test"} 0.0',
        'deployer_last_reconcile_timestamp_seconds{environment="test"} 1000.0',
        'deployer_last_reconcile_duration_seconds{environment="test"} 0.0',
        f"deployer_host_in_sync{{{here}}} 1.0",
        f"deployer_host_healthy{{{here}}} 1.0",
        'deployer_rounds_total{environment="test"} 1.0',
        'deployer_errors_total{environment="test"} 0.0',
        "deployer_notifications_failed_total 0.0",
    ]


def test_a_swarm_in_sync_but_not_converged_has_no_pending_change(world: OnSwarm) -> None:
    """web's update paused, its task failed: in sync (`deploy diff` exits 0, `deploy test`
    would change nothing), not healthy. deployer_pending_changes is documented as "changes
    `deploy ENV` would make": none."""
    world.swarm.services["web"].state = "paused"
    watched = watching(world)
    watched.agent.round()
    assert (watched.view.reading.sync, watched.view.reading.health) == (IN_SYNC, UNHEALTHY)
    assert watched.view.diff is not None
    assert [o.value.in_sync for o in watched.view.diff.outcomes if o.value] == [True]

    text = client_of(watched).get("/metrics").text

    assert 'deployer_pending_changes{environment="test"} 0.0' in samples(text)
