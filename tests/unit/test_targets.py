"""The one flow of a state-changing command on every target: deploy, nothing to do, a failure
undone, a failure left (`on_failure: stop`), rollback, an interrupt; each on one engine, on three
hosts and on a swarm (tests/unit/worlds.py), with what runs, the records and the lock
afterwards."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from deployer.core.errors import (
    DeployerError,
    Interrupted,
    RolledBackError,
    RolloutFailedError,
    SwarmServiceError,
    UnhealthyServiceError,
)
from deployer.core.plan import Plan
from deployer.core.results import Applied, Rollout, SwarmApplied
from deployer.infra.engine import Engine
from deployer.targets.choose import target_of
from tests.unit.worlds import HOSTS, WORLDS, OneEngine, World

RESULT = {"one engine": Applied, "several hosts": Rollout, "swarm": SwarmApplied}
IN_SYNC = {"one engine": Plan, "several hosts": Rollout, "swarm": Plan}
FAILURE = {
    "one engine": UnhealthyServiceError,
    "several hosts": RolloutFailedError,
    "swarm": SwarmServiceError,
}
UNDONE = {
    "one engine": RolledBackError,
    "several hosts": RolloutFailedError,
    "swarm": RolledBackError,
}


@pytest.fixture(params=sorted(WORLDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def world_of(kind: str, tmp_path: Path, on_failure: str = "rollback") -> World:
    return WORLDS[kind](tmp_path, on_failure)


def test_a_deploy_changes_what_runs_and_records_it(kind: str, tmp_path: Path) -> None:
    world = world_of(kind, tmp_path)
    world.deploy("1")

    done = world.deploy("2")

    assert type(done) is RESULT[kind]
    assert world.running() == world.everywhere("2")
    assert world.releases() == [(2, "deploy test", "success"), (1, "deploy test", "success")]
    assert world.audit() == [("deploy test", "success")] * 2
    assert not world.locked()


def test_a_deploy_with_nothing_to_change_takes_nothing(kind: str, tmp_path: Path) -> None:
    world = world_of(kind, tmp_path)
    world.deploy("1")
    world.store().claim_lock({"holder": "bob", "token": "held"})  # it would refuse a change

    done = world.deploy("1")

    assert type(done) is IN_SYNC[kind]
    assert world.shown[-1] == Plan("test", "shop", ())
    assert world.releases() == [(1, "deploy test", "success")]
    assert world.audit() == [("deploy test", "success")]


def test_a_failure_is_undone_and_recorded_rolled_back(kind: str, tmp_path: Path) -> None:
    world = world_of(kind, tmp_path)
    world.deploy("1")
    world.broken.add("2")

    with pytest.raises(UNDONE[kind]) as raised:
        world.deploy("2")

    assert raised.value.message.endswith(
        f"rolled back: {HOSTS[0]}" if kind == "several hosts" else "rolled back: web"
    )
    # Swarm rolled web back by itself: deployer left it to Swarm.
    state = "rollback_completed" if kind == "swarm" else None
    assert world.running() == world.everywhere("1", state)
    assert world.releases()[0] == (2, "deploy test", "rolled back")
    assert world.audit()[-1] == ("deploy test", "rolled back")
    assert not world.locked()


def test_with_on_failure_stop_a_failure_is_left_and_recorded_failed(
    kind: str, tmp_path: Path
) -> None:
    world = world_of(kind, tmp_path, on_failure="stop")
    world.deploy("1")
    world.broken.add("2")

    with pytest.raises(FAILURE[kind]):
        world.deploy("2")

    left = {
        "one engine": {"here": ("2", "exited")},
        "several hosts": {HOSTS[0]: ("2", "exited")} | dict.fromkeys(HOSTS[1:], ("1", "running")),
        "swarm": {"here": ("1", "rollback_completed")},  # as Swarm left it
    }
    assert world.running() == left[kind]
    assert world.releases()[0] == (2, "deploy test", "failed")
    assert not world.locked()


def test_rollback_goes_back_to_the_release_before_the_current_one(
    kind: str, tmp_path: Path
) -> None:
    world = world_of(kind, tmp_path)
    world.deploy("1")
    world.deploy("2")

    done = world.rollback()

    assert type(done) is RESULT[kind]
    assert world.running() == world.everywhere("1")
    assert world.releases()[0] == (3, "rollback to release 1", "success")
    assert world.audit()[-1] == ("rollback to release 1", "success")


def test_an_interrupt_is_recorded_and_the_lock_released(kind: str, tmp_path: Path) -> None:
    world = world_of(kind, tmp_path)
    world.deploy("1")
    world.interrupt_next_change()

    with pytest.raises(Interrupted):
        world.deploy("2")

    assert world.releases()[0] == (2, "deploy test", "interrupted")
    assert world.audit()[-1] == ("deploy test", "interrupted")
    assert not world.locked()


def test_a_lock_held_refuses_a_change_before_anything_changes(kind: str, tmp_path: Path) -> None:
    world = world_of(kind, tmp_path)
    world.deploy("1")
    world.store().claim_lock({"holder": "bob", "host": "elsewhere", "token": "held"})

    with pytest.raises(DeployerError, match="locked"):
        world.deploy("2")

    assert world.running() == world.everywhere("1")
    assert world.releases() == [(1, "deploy test", "success")]


def test_the_hosts_of_several_are_connected_to_at_once(tmp_path: Path) -> None:
    """Each host's connection is made in a thread of its own, all at once: a connection that
    waits for the others (as an SSH handshake takes its time) is not waited for by them."""
    world = WORLDS["several hosts"](tmp_path)
    all_connecting = threading.Barrier(len(HOSTS), timeout=5)
    connect = world.hosts.connect  # type: ignore[attr-defined]

    def meeting(engine: Engine) -> Any:
        all_connecting.wait()  # BrokenBarrierError if the hosts are connected one at a time
        return connect(engine)

    env = replace(world.target.env, outside=replace(world.outside(), connect=meeting))

    assert [part.host for part in target_of(env, {}).reached()] == list(HOSTS)  # type: ignore[attr-defined]


def test_a_container_an_engine_restart_left_created_is_replaced_by_a_forced_recreate(
    tmp_path: Path,
) -> None:
    world = OneEngine(tmp_path)
    world.deploy("1")
    leftover = world.compose.containers["web"]
    leftover.update(State="created", Status="Created")
    ups = len(world.compose.up_args)

    done = world.deploy("1")

    assert type(done) is Applied
    assert done.plan.lines() == [
        "web replace: shop-web-1 created, never started (a deploy cut short or failed)"
    ]
    assert world.compose.up_args[ups:] == [
        ("up", "--detach", "--pull", "never", "--force-recreate", "web")
    ]
    assert world.running() == world.everywhere("1")
    assert world.compose.containers["web"]["Id"] != leftover["Id"]
