"""Pure parts of the lock and of releases: staleness, rollback targets, pinning."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import DeployerError, LockedError
from deployer.lock import Lock, stale_reason
from deployer.releases import (
    Release,
    pinned_reference,
    pinned_spec,
    rollback_target,
)
from deployer.spec import ServiceOverride, Spec

LOCK = Lock(
    "alice", "host-a", 4242, "deploy staging", "process", "t", ttl=600.0, since=1000.0, renewed=1000.0
)  # fmt: skip


def test_a_lock_whose_holder_or_what_it_started_still_runs_on_its_host_is_not_stale() -> None:
    assert stale_reason(LOCK, 2000.0, ["process 4242 (the holder)"]) is None
    assert stale_reason(LOCK, 2000.0, ["process 77 (docker compose up)"]) is None


def test_on_another_host_only_the_time_to_live_tells() -> None:
    assert stale_reason(LOCK, 1500.0, None) is None
    assert stale_reason(LOCK, 1700.0, None) == (
        "past its time to live (expired 1970-01-01T00:26:40Z)"
    )


def test_a_lock_whose_process_and_all_it_started_are_gone_is_stale() -> None:
    assert stale_reason(LOCK, 1001.0, []) == "process 4242 on host-a is gone"
    manual = Lock("bob", "host-a", 1, "db migration", "manual", "t", 86400.0, 1000.0, 1000.0)
    assert stale_reason(manual, 2000.0, []) is None
    assert stale_reason(manual, 90000.0, []) == (
        "past its time to live (expired 1970-01-02T00:16:40Z)"
    )


def test_locked_error_messages() -> None:
    held = LockedError(
        "staging", "alice on host-a (pid 4242)", "2026-11-28T04:00:00Z", "deploy staging", None
    )
    stale = LockedError(
        "staging",
        "alice on host-a (pid 4242)",
        "2026-11-28T04:00:00Z",
        "deploy staging",
        "process 4242 on host-a is gone",
    )
    assert held.message == (
        "staging is locked: held by alice on host-a (pid 4242) since 2026-11-28T04:00:00Z (deploy staging). "
        "Wait with --lock-wait SECONDS"
    )
    assert stale.message == (
        "the lock of staging is stale: process 4242 on host-a is gone; held by alice on host-a (pid 4242) "
        "since 2026-11-28T04:00:00Z (deploy staging). Break it with `deploy lock release staging --force`"
    )


def release(number: int, result: str) -> Release:
    return Release(number, "t", "alice", "h", "deploy", "s", "v", result, {})


def test_rollback_target_is_the_good_release_before_the_current_one() -> None:
    history = [
        release(4, "rolled back"),
        release(3, "success"),
        release(2, "failed"),
        release(1, "success"),
    ]
    assert rollback_target(history, None).number == 1
    assert rollback_target(history, 2).number == 2
    with pytest.raises(DeployerError, match=r"^no release 9 \(releases: 4, 3, 2, 1\)$"):
        rollback_target(history, 9)
    with pytest.raises(DeployerError, match="no earlier good release"):
        rollback_target([release(1, "success")], None)


def test_pinned_reference_prefers_a_digest_of_the_same_repository() -> None:
    digests = {"sha256:1": ["other/web@sha256:aa", "reg:5000/web@sha256:bb"], "sha256:2": []}
    assert pinned_reference("reg:5000/web:1.0", "sha256:1", digests) == "reg:5000/web@sha256:bb"
    assert pinned_reference("reg:5000/web:1.0", "sha256:2", digests) == "sha256:2"


def test_pinned_spec_replaces_images_and_keeps_other_overrides(tmp_path: Path) -> None:
    spec = Spec(
        "staging", tmp_path / "staging.yml", "shop", (), (), frozenset(),
        {"web": ServiceOverride(tag="1.1", replicas=2, environment={"A": "1"})}, False, 60.0, None,
    )  # fmt: skip
    pinned = pinned_spec(spec, {"web": "reg/web@sha256:bb", "worker": "sha256:2"})
    assert pinned.services == {
        "web": ServiceOverride(
            image="reg/web@sha256:bb", tag=None, replicas=2, environment={"A": "1"}
        ),
        "worker": ServiceOverride(image="sha256:2"),
    }
