"""Pure parts of the lock and of releases: staleness, rollback targets, pinning, recorded
configurations, record keys claimed on the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer.core.desired import ComposeFiles, DesiredState
from deployer.core.errors import DeployerError, LockedError
from deployer.core.reference import pinned_reference
from deployer.core.variables import SecretPolicy
from deployer.state.engine_store import StateStore
from deployer.state.lock import Lock, stale_reason
from deployer.state.releases import Release, Secrets, recorded_config, rollback_target

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
    digests = {
        "sha256:1": [
            "other/web@sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "reg:5000/web@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        ],
        "sha256:2": [],
    }
    assert (
        pinned_reference("reg:5000/web:1.0", "sha256:1", digests)
        == "reg:5000/web@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
    )
    assert pinned_reference("reg:5000/web:1.0", "sha256:2", digests) == "sha256:2"


def recorded(service: dict[str, Any], written: dict[str, Any] | None, secrets: Secrets) -> Any:
    """`service` as a release records it, `written` its model before interpolation."""
    files = ComposeFiles("shop", (Path("compose.yml"),), {})
    sources = {"services": {"web": written}} if written is not None else {}
    model = {"services": {"web": service}}
    state = DesiredState("staging", files, {}, {}, model, 1.0, lambda: sources)
    return recorded_config(state, "web", secrets)


def test_a_recorded_configuration_holds_secrets_by_reference_only() -> None:
    secrets = Secrets({"PW": "p$w", "TOKEN": "t0ken-1"}, SecretPolicy(frozenset({"API_KEY"})))
    service = {
        "command": ["app", "--token", "t0ken-1"],
        "environment": {
            "DSN": "db://u:p$$w@db",
            "PW": "p$$w",
            "API_KEY": "from-env-file",
            "A": "1",
        },
        "image": "reg/web:1.0",
        "labels": {"team": "x", "dev.deployer.fingerprint": "{}"},
    }
    written = {
        "command": ["app", "--token", "${TOKEN:?}"],
        "environment": {"DSN": "db://u:$PW@db", "PW": "${PW}", "API_KEY": "from-env-file"},
        "image": "reg/web:1.0",
    }

    assert recorded(service, written, secrets) == {
        "command": ["app", "--token", "${TOKEN}"],
        "environment": {"DSN": "db://u:${PW}@db", "PW": "${PW}", "API_KEY": "***", "A": "1"},
        "image": "reg/web:1.0",
        "labels": {"team": "x"},
    }


def test_a_weak_secret_is_a_reference_only_where_the_compose_file_refers_to_it() -> None:
    """Issue 18, 6: with `PW=postgres`, the volume's target and the user stay as written (a
    rotated password must not move them); only the values that refer to PW become `${PW}`."""
    secrets = Secrets({"PW": "postgres"})
    service = {
        "environment": {"POSTGRES_PASSWORD": "postgres", "URL": "pg://postgres:postgres@db"},
        "user": "postgres",
        "volumes": [{"type": "volume", "source": "data", "target": "/var/lib/postgresql/data"}],
        "ports": [{"target": 5432, "published": "5432"}],
        "healthcheck": {"test": ["CMD", "pg_isready", "-U", "postgres"]},
    }
    written = {
        "environment": {"POSTGRES_PASSWORD": "${PW}", "URL": "pg://postgres:${PW}@db"},
        "user": "postgres",
        "volumes": [{"type": "volume", "source": "data", "target": "/var/lib/postgresql/data"}],
        "ports": ["${PORT:-5432}:5432"],  # parsed by Compose only once interpolated
        "healthcheck": {"test": ["CMD", "pg_isready", "-U", "postgres"]},
    }

    assert recorded(service, written, secrets) == {
        "environment": {"POSTGRES_PASSWORD": "${PW}", "URL": "pg://postgres:${PW}@db"},
        "user": "postgres",
        "volumes": [{"type": "volume", "source": "data", "target": "/var/lib/postgresql/data"}],
        "ports": [{"target": 5432, "published": "5432"}],
        "healthcheck": {"test": ["CMD", "pg_isready", "-U", "postgres"]},
    }
    # Where the source is not known (a model recorded without it), only an exact value.
    assert recorded(service, None, secrets) == {
        **service,
        "environment": {"POSTGRES_PASSWORD": "${PW}", "URL": "pg://postgres:postgres@db"},
        "user": "${PW}",
        "healthcheck": {"test": ["CMD", "pg_isready", "-U", "${PW}"]},
    }


class Volumes:
    """The engine's volume calls as StateStore makes them: creating a name that exists returns
    the existing volume, its labels unchanged."""

    def __init__(self) -> None:
        self.labels: dict[str, dict[str, str]] = {}

    def create_volume(self, name: str, labels: dict[str, str]) -> dict[str, str]:
        return self.labels.setdefault(name, labels)

    def volumes(self, filters: list[str]) -> list[dict[str, object]]:
        return [{"Name": n, "Labels": labels} for n, labels in sorted(self.labels.items())]


def test_the_engine_store_tells_a_record_it_wrote_from_one_it_found() -> None:
    engine = Volumes()
    store = StateStore(engine, "shop")  # type: ignore[arg-type]

    assert store.add("release", "000001", {"number": 1, "by": "alice"}) is True
    assert store.add("release", "000001", {"number": 1, "by": "bob"}) is False
    assert store.records("release") == [{"number": 1, "by": "alice"}]
