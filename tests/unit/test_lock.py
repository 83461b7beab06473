"""The lock against an in-memory store: waiting, breaking by ID, renewals, the engine's clock."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from deployer.cli.render.locks import lock_text
from deployer.core.errors import LockedError, LockLostError
from deployer.state import lock as lock_module
from deployer.state.lock import (
    LOCK_ENV,
    Lock,
    acquire,
    break_lock,
    holding,
    status,
    verify_held,
    working,
)
from deployer.state.store import StoredLock
from tests.unit.fakes import FakeStore

ELSEWHERE = "another-host"  # a lock taken on another host: its processes cannot be seen from here


def a_lock(holder: str, host: str = ELSEWHERE, ttl: float = 600.0) -> Lock:
    return Lock(holder, host, 4242, f"deploy by {holder}", "process", f"token-{holder}", ttl)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_lock_wait_sleeps_until_its_deadline_and_not_past_it() -> None:
    store, time = FakeStore(), FakeTime()
    acquire(store, "staging", a_lock("alice"), 0.0)

    with pytest.raises(LockedError, match=r"^staging is locked: held by alice on another-host "):
        acquire(store, "staging", a_lock("bob"), 1.2, time.clock, time.sleep)

    assert time.slept == [0.5, 0.5, pytest.approx(0.2)]


class FlappingStore(FakeStore):
    """A lock taken and released by others between each claim and each look."""

    def __init__(self, free_after: int | None = None) -> None:
        super().__init__()
        self.claims, self.free_after = 0, free_after

    def claim_lock(self, record: Mapping[str, Any]) -> bool:
        self.claims += 1
        assert self.claims < 50, "acquire spins"
        return self.claims == self.free_after and super().claim_lock(record)


def test_lock_wait_does_not_spin_when_the_lock_is_free_at_every_look() -> None:
    """A claim refused while no lock is to be seen is tried again for SETTLE_SECONDS (the engine
    shows a lock a moment after it refuses its name to others), a short sleep between claims."""
    store, time = FlappingStore(), FakeTime()

    with pytest.raises(LockedError, match=r"^staging is locked: held by others since now "):
        acquire(store, "staging", a_lock("bob"), 0.0, time.clock, time.sleep)

    assert set(time.slept) == {lock_module.SETTLE_POLL_SECONDS}
    assert sum(time.slept) == pytest.approx(lock_module.SETTLE_SECONDS)
    assert store.claims == len(time.slept) + 2  # the first, again at once, then after each sleep


def test_a_lock_out_of_sight_a_moment_is_waited_for_even_without_lock_wait() -> None:
    store, time = FlappingStore(free_after=5), FakeTime()

    acquire(store, "staging", a_lock("bob"), 0.0, time.clock, time.sleep)

    assert (time.slept, store.holding) == ([lock_module.SETTLE_POLL_SECONDS] * 3, "token-bob")


def test_a_lock_released_between_claim_and_look_is_claimed_again_at_once() -> None:
    store, time = FlappingStore(free_after=2), FakeTime()

    acquire(store, "staging", a_lock("bob"), 0.0, time.clock, time.sleep)

    assert (time.slept, store.holding) == ([], "token-bob")


def test_breaking_a_lock_removes_the_one_inspected_not_its_successor() -> None:
    store = FakeStore()
    acquire(store, "staging", a_lock("alice"), 0.0)
    inspected, _ = status(store)
    assert inspected is not None
    # Meanwhile a second operator breaks it too and deploys: a new lock under the same name.
    break_lock(store, "staging", inspected)
    acquire(store, "staging", a_lock("carol"), 0.0)

    break_lock(store, "staging", inspected)

    held, _ = status(store)
    assert held is not None and (held.holder, held.id) == ("carol", "id-2")


def test_a_release_is_recorded_only_under_a_lock_still_held() -> None:
    store = FakeStore()
    acquire(store, "staging", a_lock("alice"), 0.0)
    verify_held(store)
    held, _ = status(store)
    assert held is not None
    store.remove_lock(held.id, held.token)  # broken by someone else
    store.claim_lock(a_lock("carol").record())

    with pytest.raises(LockLostError) as lost:
        verify_held(store)

    assert lost.value.message == (
        "the lock of project shop is no longer this command's (now held by carol on another-host "
        "(pid 4242)): its outcome is not recorded as a release"
    )


def test_staleness_by_time_counts_from_the_last_renewal_on_the_engine_clock() -> None:
    store = FakeStore(now=1000.0)
    acquire(store, "staging", a_lock("alice", ttl=600.0), 0.0)
    store.now = 1500.0
    store.renew_lock("token-alice", 1)
    store.now = 2000.0

    assert status(store)[1] is None  # 500 s after its renewal, though 1000 s after it was taken
    store.now = 2101.0
    assert status(store)[1] == "past its time to live (expired 1970-01-01T00:35:00Z)"


def test_holding_renews_the_lock_and_marks_every_process_started_meanwhile() -> None:
    store = FakeStore()
    lock = a_lock("alice")

    with holding(store, "staging", lock, 0.0, renew_every=0.001):
        assert os.environ[LOCK_ENV] == "token-alice"
        assert store.renewed.wait(10)

    assert LOCK_ENV not in os.environ
    assert (store.current, store.holding) == (None, None)
    assert store.renewals[0] == ("token-alice", 1)


def test_what_of_a_holder_still_works_on_this_machine() -> None:
    here = lock_module.Lock("alice", "host-a", 4242, "deploy", "process", "t", 600.0, machine="m-a")
    compose = [(5000, "docker compose --project-name shop up --detach web")]

    assert working(here, "m-a", lambda pid: True, lambda token: []) == ["process 4242 (the holder)"]
    assert working(here, "m-a", lambda pid: False, lambda token: compose) == [
        "process 5000 (docker compose --project-name shop up --detach web)"
    ]
    assert working(here, "m-a", lambda pid: False, lambda token: []) == []
    # Another machine (of the same host name, as two CI runners): its processes are not ours.
    assert working(here, "m-b", lambda pid: False, lambda token: []) is None
    # A lock taken before machines were told apart (a host name only): not known either.
    old = replace(here, machine="")
    assert working(old, "m-a", lambda pid: False, lambda token: []) is None


def test_a_lock_read_from_a_record_without_a_machine_is_of_a_machine_not_known() -> None:
    record = {"holder": "alice", "host": "host-a", "pid": 4242, "kind": "process", "ttl": 600}
    assert Lock.from_stored(StoredLock(record, "id", 1000.0, 1000.0)).machine == ""
    assert Lock.from_stored(StoredLock({**record, "machine": "m-a"}, "id", 1.0, 1.0)).machine == (
        "m-a"
    )


def test_status_says_what_cannot_be_known_of_a_lock_taken_on_another_machine() -> None:
    lock = Lock(
        "alice", "host-a", 4242, "deploy staging", "process", "t", 600.0, 1000.0, 1060.0,
        machine="m-a",
    )  # fmt: skip
    held_elsewhere = (
        "staging: locked by alice on host-a (pid 4242) since 1970-01-01T00:16:40Z: deploy staging\n"
        "  kind process, expires 1970-01-01T00:27:40Z; held; taken on host-a, whose processes "
        "cannot be seen from here: stale if not renewed by 1970-01-01T00:27:40Z"
    )

    assert lock_text("staging", lock, None, here="m-a") == (
        "staging: locked by alice on host-a (pid 4242) since 1970-01-01T00:16:40Z: deploy staging\n"
        "  kind process, expires 1970-01-01T00:27:40Z; held"
    )
    assert lock_text("staging", lock, None, here="m-b") == held_elsewhere
    assert lock_text("staging", replace(lock, machine=""), None, here="m-a") == held_elsewhere


def test_a_lock_that_cannot_be_released_does_not_hide_what_ended_the_command() -> None:
    alive = True
    store = FakeStore(alive=lambda: alive)

    with pytest.raises(RuntimeError) as raised, holding(store, "staging", a_lock("alice"), 0.0):
        alive = False  # the engine stopped meanwhile
        raise RuntimeError("the deploy failed")

    assert raised.value.__notes__ == [
        "the lock could not be released: Docker engine at fake is unreachable: "
        "Cannot connect to the Docker daemon"
    ]
