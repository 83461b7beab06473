"""When a service counts as ready: one-shot jobs that completed, and containers that stay up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer.core.desired import ComposeFiles, DesiredService, DesiredState, restart_policy_of
from deployer.core.errors import UnhealthyServiceError
from deployer.core.observed import ObservedContainer, ObservedState, is_completed, is_steady
from deployer.core.plan import Change, Plan
from deployer.infra.engine import engine_timestamp
from deployer.targets.host import apply
from deployer.targets.host.apply import wait_ready
from deployer.targets.host.observe import container_from_summary
from deployer.targets.host.plan import plan
from deployer.targets.host.status import status

NOW = engine_timestamp("2026-11-28T14:00:10Z")


def test_engine_timestamps_with_nanoseconds_and_zones() -> None:
    assert engine_timestamp("2026-11-28T14:00:10.250000000Z") == NOW + 0.25
    assert engine_timestamp("2026-11-28T15:00:10.5+01:00") == NOW + 0.5
    assert engine_timestamp("2026-11-28T14:00:10Z") == NOW
    with pytest.raises(ValueError, match="not an engine time"):
        engine_timestamp("yesterday")


def test_steady_by_the_engine_clock() -> None:
    assert [is_steady(NOW - age, NOW, 2.0) for age in (0.5, 1.99, 2.0, 3600)] == [
        False,
        False,
        True,
        True,
    ]


@pytest.mark.parametrize(
    ("service", "policy"),
    [
        ({}, "no"),
        ({"restart": "no"}, "no"),
        ({"restart": "on-failure:3"}, "on-failure:3"),
        ({"restart": "always"}, "always"),
        ({"restart": "always", "deploy": {"restart_policy": {"condition": "none"}}}, "no"),
        ({"deploy": {"restart_policy": {"condition": "any"}}}, "always"),
        ({"deploy": {"resources": {}}}, "no"),
    ],
)
def test_restart_policy_as_compose_gives_it(service: dict[str, Any], policy: str) -> None:
    assert restart_policy_of(service) == policy


def test_completed_only_with_exit_0_under_a_policy_that_leaves_it_stopped() -> None:
    assert [
        is_completed("exited", 0, "no"),
        is_completed("exited", 0, "on-failure:3"),
        is_completed("exited", 1, "no"),
        is_completed("exited", None, "no"),
        is_completed("exited", 0, "always"),
        is_completed("exited", 0, "unless-stopped"),
        is_completed("running", None, "no"),
    ] == [True, True, False, False, False, False, False]


def service(name: str, restart: str, replicas: int = 1) -> DesiredService:
    return DesiredService(name, f"reg/{name}:1", replicas, {"image": name}, frozenset(), restart)


def desired(*services: DesiredService, wait_timeout: float = 30.0) -> DesiredState:
    files = ComposeFiles("shop", (Path("compose.yml"),), {})
    return DesiredState("staging", files, {}, {s.name: s for s in services}, {}, wait_timeout)


def summary(service: str, state: str, status: str, number: int = 1) -> dict[str, Any]:
    return {
        "Id": f"{service}{number}",
        "Names": [f"/shop-{service}-{number}"],
        "Image": f"reg/{service}:1",
        "ImageID": f"sha256:{service}",
        "State": state,
        "Status": status,
        "Labels": {
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": str(number),
            "dev.deployer.fingerprint": f'{{"image":"{service}"}}',
        },
    }


def container(service: str, state: str, status: str) -> ObservedContainer:
    found = container_from_summary(summary(service, state, status))
    assert found is not None
    return found


def migration_and_web(
    migrate: tuple[str, str], web: tuple[str, str]
) -> tuple[DesiredState, ObservedState]:
    """A migration (restart "no") and a web (restart "always"), their containers in these states."""
    wanted = desired(service("migrate", "no"), service("web", "always"))
    images = {"reg/migrate:1": "sha256:migrate", "reg/web:1": "sha256:web"}
    observed = ObservedState(
        "shop", (container("migrate", *migrate), container("web", *web)), images
    )
    return wanted, observed


def test_a_completed_one_shot_is_in_sync_and_ready() -> None:
    wanted, observed = migration_and_web(
        ("exited", "Exited (0) 5 minutes ago"), ("running", "Up 5 minutes")
    )

    assert plan(wanted, observed) == Plan("staging", "shop", ())
    current = status(wanted, observed, [])
    assert [(s.service, s.ready, s.healthy) for s in current.services] == [
        ("migrate", 1, True),
        ("web", 1, True),
    ]
    assert (current.in_sync, current.healthy) == (True, True)


def test_a_failed_one_shot_or_a_stopped_service_is_started() -> None:
    wanted, observed = migration_and_web(
        ("exited", "Exited (1) 5 minutes ago"), ("exited", "Exited (0) 5 minutes ago")
    )

    assert plan(wanted, observed).changes == (
        Change(
            "migrate", "start", ("no running container: shop-migrate-1 exited (1) 5 minutes ago",)
        ),
        Change("web", "start", ("no running container: shop-web-1 exited (0) 5 minutes ago",)),
    )
    assert not status(wanted, observed, []).healthy


class Clock:
    """Local time for wait_ready: it moves only when wait_ready sleeps."""

    def __init__(self) -> None:
        self.elapsed = 0.0

    def time(self) -> float:
        return 1_000.0 + self.elapsed

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        self.elapsed += seconds


class FakeEngine:
    """The engine as wait_ready reads it: the containers at each look (the last one repeats),
    and per container the times it (re)started, by the engine's clock (NOW at the first look)."""

    def __init__(
        self, clock: Clock, looks: list[list[dict[str, Any]]], starts: dict[str, list[float]]
    ) -> None:
        self.clock, self.looks, self.starts = clock, looks, starts
        self.inspections = 0

    def project_containers(self, project: str) -> list[dict[str, Any]]:
        return self.looks.pop(0) if len(self.looks) > 1 else self.looks[0]

    def system_time(self) -> float:
        return NOW + self.clock.elapsed

    def start_record(self, container_id: str) -> tuple[float, int]:
        self.inspections += 1
        now = NOW + self.clock.elapsed
        started = [moment for moment in self.starts[container_id] if moment <= now]
        return started[-1], len(started) - 1

    def logs(self, container_id: str, tail: int) -> list[str]:
        return [f"{container_id}: last words"]


class Progress:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def update(self, subject: str, text: str) -> None:
        self.lines.append(f"update {text}")

    def done(self, subject: str, text: str) -> None:
        self.lines.append(f"done {text}")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(apply, "time", fake)
    return fake


def wait(engine: FakeEngine, state: DesiredState, progress: Progress) -> list[str]:
    found = wait_ready(engine, state, sorted(state.services), progress)  # type: ignore[arg-type]
    return [c.name for c in found]


def test_wait_counts_a_one_shot_that_exited_0_and_a_steady_container(clock: Clock) -> None:
    engine = FakeEngine(
        clock,
        [
            [
                summary("migrate", "exited", "Exited (0) 1 second ago"),
                summary("web", "running", "Up 3 seconds"),
            ]
        ],
        {"web1": [NOW - 3.0]},
    )
    progress = Progress()

    names = wait(engine, desired(service("migrate", "no"), service("web", "always")), progress)

    assert names == ["shop-migrate-1", "shop-web-1"]
    assert progress.lines == [
        "done migrate: shop-migrate-1 Exited (0) 1 second ago",
        "done web: shop-web-1 Up 3 seconds",
    ]
    assert clock.elapsed == 0.0


def test_wait_holds_a_young_container_until_it_has_stayed_up(clock: Clock) -> None:
    engine = FakeEngine(
        clock, [[summary("web", "running", "Up Less than a second")]], {"web1": [NOW - 0.5]}
    )
    progress = Progress()

    assert wait(engine, desired(service("web", "always")), progress) == ["shop-web-1"]
    assert progress.lines == [
        "update waiting for web: shop-web-1 Up Less than a second",
        "update waiting for web: shop-web-1 Up Less than a second",
        "update waiting for web: shop-web-1 Up Less than a second",
        "done web: shop-web-1 Up Less than a second",
    ]
    assert (clock.elapsed, engine.inspections) == (1.5, 2)  # inspected when seen, then when due


class CrashLoop(FakeEngine):
    """A container up 0.5 s at a time, restarted by the engine after a growing back-off."""

    def project_containers(self, project: str) -> list[dict[str, Any]]:
        now = NOW + self.clock.elapsed
        last = max(moment for moment in self.starts["web1"] if moment <= now)
        if now - last < 0.5:
            return [summary("web", "running", "Up Less than a second")]
        return [summary("web", "restarting", "Restarting (1) Less than a second ago")]


def test_wait_does_not_take_a_crash_loop_for_ready(clock: Clock) -> None:
    starts = [NOW - 0.3, NOW + 0.3, NOW + 1.0, NOW + 1.9, NOW + 3.2, NOW + 5.3, NOW + 9.0]
    engine = CrashLoop(clock, [], {"web1": starts})

    with pytest.raises(UnhealthyServiceError) as raised:
        wait(engine, desired(service("web", "always"), wait_timeout=10.0), Progress())

    assert raised.value.lines() == [
        "service web did not become healthy within 10s "
        "(last state: Restarting (1) Less than a second ago, restarted 6 times)",
        "last log lines of web:",
        "  web1: last words",
    ]


def test_wait_fails_at_once_on_a_one_shot_that_exited_non_zero(clock: Clock) -> None:
    engine = FakeEngine(clock, [[summary("migrate", "exited", "Exited (3) 1 second ago")]], {})

    with pytest.raises(UnhealthyServiceError) as raised:
        wait(engine, desired(service("migrate", "no")), Progress())

    assert raised.value.message == (
        "service migrate did not become healthy within 30s (last state: Exited (3) 1 second ago)"
    )
    assert clock.elapsed == 0.0


def test_wait_fails_on_an_exit_0_where_the_policy_would_restart(clock: Clock) -> None:
    engine = FakeEngine(clock, [[summary("web", "exited", "Exited (0) 1 second ago")]], {})

    with pytest.raises(UnhealthyServiceError, match=r"last state: Exited \(0\) 1 second ago"):
        wait(engine, desired(service("web", "always")), Progress())
