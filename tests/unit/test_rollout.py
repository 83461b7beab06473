"""Deploys over several hosts, end to end through the commands over the fleet target on in-memory fakes (one FakeCompose
and one FakeStore per host): batches, failures and their rollback, unreachable and dying hosts,
the lock over every host, interrupts, and the one release each deploy writes to every host."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deployer.cli.render.history import history_document, history_text
from deployer.commands import read
from deployer.commands.deploy import deploy, rollback
from deployer.commands.locks import lock_acquire, lock_release
from deployer.commands.session import Interaction
from deployer.core.errors import (
    CommandFailedError,
    HostsFailedError,
    Interrupted,
    LockedError,
    RolloutFailedError,
)
from deployer.core.plan import Plan
from deployer.core.results import Rollout
from deployer.core.spec import Spec
from deployer.core.variables import Redactor, Variable, Variables
from deployer.state import audit
from deployer.state.fleet_store import FleetStore
from deployer.state.releases import history
from deployer.state.store import StoredLock
from deployer.targets.base import Environment, Outside
from deployer.targets.choose import target_of
from deployer.targets.fleet.target import FleetTarget
from tests.unit.fakes import ACTOR, FakeHosts
from tests.unit.test_operations import BAD, GOOD, IMAGES, PINNED, exits_with, model

H1, H2, H3 = (f"unix:///run/dh{n}/docker.sock" for n in (1, 2, 3))
HOSTS = [H1, H2, H3]
DEBUG = "web recreate: environment LOG_LEVEL changed"
UNHEALTHY = "service web did not become healthy within 5s (last state: Exited (1) 1 second ago)"


@dataclass
class Recorder:
    """Progress as the user sees it: the lines of finished steps, in order."""

    lines: list[str] = field(default_factory=list)

    def update(self, subject: str, text: str) -> None:
        pass

    def done(self, subject: str, text: str) -> None:
        self.lines.append(text)


@dataclass
class Fleet:
    hosts: FakeHosts
    env: Environment
    ui: Interaction
    progress: Recorder
    shown: list[list[tuple[str, Plan]]]
    selected: tuple[str, ...] = ()  # `--hosts`

    @property
    def target(self) -> FleetTarget:
        """The environment's target, as each command loads it anew."""
        return self.on(*self.selected)

    def on(self, *hosts: str) -> FleetTarget:
        """The target acting on some of the hosts (`--hosts`; all when none named)."""
        found = target_of(self.env, {}, hosts)
        assert isinstance(found, FleetTarget)
        return found

    def deploy(self, command: list[str], log_level: str = "info") -> Any:
        for compose in self.hosts.composes.values():
            compose.model = model(command, log_level)
        self.progress.lines.clear()
        return deploy(self.target, self.ui, "deploy production")

    def running(self) -> dict[str, tuple[str, str, str]]:
        """Per host: web's state, command and LOG_LEVEL-bearing image."""
        found = {}
        for host, compose in self.hosts.composes.items():
            web = compose.containers["web"]
            found[host] = (web["State"], web["Command"], web["Image"])
        return found

    def ups(self) -> list[str]:
        """The hosts `docker compose up` ran on, in the order it did."""
        calls = [(n, host) for host, c in self.hosts.composes.items() for n, _ in c.up_order]
        return [host for _, host in sorted(calls)]

    def releases(self, host: str = H1) -> list[tuple[Any, ...]]:
        """As `host` keeps them: number, command, result, and per host its result and web's
        LOG_LEVEL."""
        return [
            (
                r.number,
                r.command,
                r.result,
                [(h.host, h.result, _log_level(h.services)) for h in r.hosts],
            )
            for r in history(self.hosts.stores[host])
        ]

    def locked(self) -> dict[str, bool]:
        return {host: store.current is not None for host, store in self.hosts.stores.items()}


def _log_level(services: Any) -> str | None:
    web = services.get("web")
    return web.config["environment"]["LOG_LEVEL"] if web and web.config else None


def make_fleet(
    tmp_path: Path, batch: int | str = 1, on_failure: str = "rollback", pause: float = 0.0
) -> Fleet:
    spec_file = tmp_path / "production.yml"
    spec_file.write_text("project: shop\n")
    spec = Spec(
        "production", spec_file, "shop", (tmp_path / "compose.yml",), (), frozenset(), {}, False,
        5.0, None, on_failure, engine_hosts=tuple(HOSTS), batch=batch, batch_pause=pause,
    )  # fmt: skip
    variables = Variables(
        {
            "LOG_LEVEL": Variable("LOG_LEVEL", "info", ".env:1", False),
            "DB_PASSWORD": Variable("DB_PASSWORD", "hunter22", ".env:2", True),
        }
    )
    hosts = FakeHosts.of(HOSTS, model(GOOD), IMAGES)
    outside = Outside(
        run=hosts,
        connect=hosts.connect,  # type: ignore[arg-type]
        store=lambda client, project: client.store,  # type: ignore[attr-defined]
        actor=lambda: ACTOR,
    )
    progress, shown = Recorder(), []  # type: ignore[var-annotated]
    ui = Interaction(progress, lambda q: True, shown.append, Redactor())
    return Fleet(hosts, Environment(spec, variables, outside), ui, progress, shown)


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    made = make_fleet(tmp_path)
    made.deploy(GOOD)
    return made


def summary(rollout: Rollout) -> list[tuple[str, str, list[str], str]]:
    return [(h.host, h.result, list(h.changes), h.error) for h in rollout.hosts]


def test_hosts_are_deployed_one_batch_after_the_other_and_one_release_goes_to_every_host(
    fleet: Fleet,
) -> None:
    rollout = fleet.deploy(GOOD, log_level="debug")

    assert [line for line in fleet.progress.lines if line.startswith("batch")] == [
        f"batch 1: {H1}",
        f"batch 2: {H2}",
        f"batch 3: {H3}",
    ]
    assert fleet.ups() == [H1, H2, H3, H1, H2, H3]
    assert summary(rollout) == [(h, "success", [DEBUG], "") for h in HOSTS]
    expected = [
        (2, "deploy production", "success", [(h, "success", "debug") for h in HOSTS]),
        (1, "deploy production", "success", [(h, "success", "info") for h in HOSTS]),
    ]
    assert [fleet.releases(h) for h in HOSTS] == [expected, expected, expected]
    entry = audit.entries(fleet.hosts.stores[H2])[-1]
    assert entry.changes == [f"{h}: {DEBUG}" for h in HOSTS]
    assert fleet.locked() == {h: False for h in HOSTS}


def test_a_batch_of_two_deploys_its_hosts_together_and_hosts_in_sync_are_left_alone(
    tmp_path: Path,
) -> None:
    fleet = make_fleet(tmp_path, batch=2)
    fleet.deploy(GOOD)
    fleet.selected = (H2,)
    fleet.deploy(GOOD, log_level="debug")
    fleet.selected = ()
    fleet.hosts.composes[H3].model = model(GOOD, "debug")
    rollout = fleet.deploy(GOOD, log_level="debug")

    assert [line for line in fleet.progress.lines if line.startswith("batch")] == [
        f"batch 1: {H1}, {H3}"
    ]
    assert [(c.ups) for c in fleet.hosts.composes.values()] == [2, 2, 2]
    assert summary(rollout) == [
        (H1, "success", [DEBUG], ""),
        (H2, "unchanged", [], ""),
        (H3, "success", [DEBUG], ""),
    ]
    assert fleet.releases()[0] == (
        3,
        "deploy production",
        "success",
        [(h, r, "debug") for h, r in [(H1, "success"), (H2, "unchanged"), (H3, "success")]],
    )
    assert fleet.releases()[1][3] == [(H2, "success", "debug")]  # --hosts H2: its own release
    assert [s.count for s in fleet.hosts.stores.values()] == [3, 3, 3]  # each deploy locked all
    in_sync = fleet.deploy(GOOD, log_level="debug")
    assert summary(in_sync) == [(h, "unchanged", [], "") for h in HOSTS]
    assert [len(plans) for plans in fleet.shown][-1] == 3


def test_batches_are_paused_between_not_before_the_first_nor_after_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet = make_fleet(tmp_path, batch=2, pause=7.5)
    slept: list[tuple[float, list[int]]] = []
    ups = lambda: [c.ups for c in fleet.hosts.composes.values()]  # noqa: E731
    monkeypatch.setattr(
        "deployer.targets.fleet.target.time.sleep", lambda s: slept.append((s, ups()))
    )

    fleet.deploy(GOOD)

    assert slept == [(7.5, [1, 1, 0])]


def test_a_failure_in_the_second_batch_rolls_back_the_first_two_and_never_touches_the_third(
    fleet: Fleet,
) -> None:
    fleet.hosts.composes[H2].behaviour = exits_with(BAD)

    with pytest.raises(RolloutFailedError) as raised:
        fleet.deploy(BAD)

    assert raised.value.lines() == [
        f"deploy of production failed on {H2}: {UNHEALTHY}; rolled back: {H1}, {H2}",
        f"  {H1}  rolled back",
        f"  {H2}  rolled back: {UNHEALTHY}",
        f"  {H3}  not started",
        "last log lines of web:",
        "  web-2: bye",
    ]
    # Deployed once by the fixture; then H1 and H2: deployed, restored; H3 never touched.
    assert fleet.ups()[:5] == [H1, H2, H3, H1, H2]
    assert [c.ups for c in fleet.hosts.composes.values()] == [3, 3, 1]
    assert fleet.running() == {
        H1: ("running", "httpd -f", PINNED),
        H2: ("running", "httpd -f", PINNED),
        H3: ("running", "httpd -f", "reg/web:1.0"),
    }
    assert fleet.releases()[0] == (
        2,
        "deploy production",
        "rolled back",
        [(H1, "rolled back", "info"), (H2, "rolled back", "info"), (H3, "not started", "info")],
    )
    assert [(e.command, e.result, e.error) for e in read.audit(fleet.target)][-1] == (
        "deploy production",
        "rolled back",
        f"{H2}: {UNHEALTHY}",
    )
    assert fleet.locked() == {h: False for h in HOSTS}


def test_a_failure_that_replaced_no_container_is_failed_with_nothing_to_roll_back(
    fleet: Fleet,
) -> None:
    fleet.hosts.composes[H1].raise_on_up = CommandFailedError(["docker"], 1, "no such network")

    with pytest.raises(RolloutFailedError) as raised:
        fleet.deploy(GOOD, log_level="debug")

    assert raised.value.lines() == [
        f"deploy of production failed on {H1}: `docker ...` failed (exit 1): no such network; "
        "rolled back: no host was changed",
        f"  {H1}  failed: `docker ...` failed (exit 1): no such network",
        f"  {H2}  not started",
        f"  {H3}  not started",
    ]
    assert fleet.releases()[0][2] == "failed"
    assert [c.ups for c in fleet.hosts.composes.values()] == [2, 1, 1]


def test_a_secret_in_a_hosts_error_is_masked_in_its_release(fleet: Fleet) -> None:
    failure = CommandFailedError(["docker"], 1, "cannot log in with hunter22")
    fleet.hosts.composes[H1].raise_on_up = failure

    with pytest.raises(RolloutFailedError):
        fleet.deploy(GOOD, log_level="debug")

    [first, *_] = history(fleet.hosts.stores[H1])[0].hosts
    assert first.error == "`docker ...` failed (exit 1): cannot log in with ***"


def test_with_on_failure_stop_nothing_is_undone(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, on_failure="stop")
    fleet.deploy(GOOD)
    fleet.hosts.composes[H2].behaviour = exits_with(BAD)

    with pytest.raises(RolloutFailedError) as raised:
        fleet.deploy(BAD)

    assert raised.value.message == (
        f"deploy of production failed on {H2}: {UNHEALTHY}; "
        "nothing undone (deploy.on_failure: stop)"
    )
    assert fleet.running() == {
        H1: ("running", "false", "reg/web:1.0"),
        H2: ("exited", "false", "reg/web:1.0"),
        H3: ("running", "httpd -f", "reg/web:1.0"),
    }
    assert fleet.releases()[0][2:] == (
        "failed",
        [(H1, "success", "info"), (H2, "failed", "info"), (H3, "not started", "info")],
    )


def test_a_host_that_cannot_be_reached_fails_the_deploy_before_any_change(fleet: Fleet) -> None:
    fleet.hosts.unreachable.add(H3)

    with pytest.raises(HostsFailedError) as raised:
        fleet.deploy(GOOD, log_level="debug")

    assert raised.value.lines() == [
        f"production: {H3}: Docker engine at {H3} is unreachable: "
        "Cannot connect to the Docker daemon; nothing changed on any host"
    ]
    assert [c.ups for c in fleet.hosts.composes.values()] == [1, 1, 1]
    assert [len(fleet.releases(h)) for h in HOSTS] == [1, 1, 1]
    assert fleet.locked() == {h: False for h in HOSTS}


def test_a_lock_held_on_any_host_refuses_the_deploy_naming_holder_and_host(fleet: Fleet) -> None:
    other = {"holder": "bob", "host": "laptop", "pid": 7, "reason": "deploy production"}
    record = {**other, "kind": "manual", "token": "t-bob", "ttl": 3600.0}
    fleet.hosts.stores[H2].current = StoredLock(record, "id-bob", 1000.0, 1000.0)

    with pytest.raises(LockedError) as raised:
        fleet.deploy(GOOD, log_level="debug")

    assert raised.value.message == (
        f"production is locked: held by bob on laptop (pid 7), on engine {H2} since "
        "1970-01-01T00:16:40Z (deploy production). Wait with --lock-wait SECONDS"
    )
    assert fleet.locked() == {H1: False, H2: True, H3: False}
    assert [c.ups for c in fleet.hosts.composes.values()] == [1, 1, 1]


def test_two_deploys_at_once_meet_on_the_first_host(fleet: Fleet) -> None:
    store = FleetStore(dict(reversed(list(fleet.hosts.stores.items()))))
    first = {"holder": "alice", "token": "t-1"}
    second = {"holder": "bob", "token": "t-2"}

    assert store.claim_lock(first)
    assert not store.claim_lock(second)
    assert [s.current and s.current.record["token"] for s in fleet.hosts.stores.values()] == [
        "t-1",
        "t-1",
        "t-1",
    ]
    fleet.hosts.stores[H1].current = None  # the first deploy's lock on H1 went (a prune)
    assert not store.claim_lock(second)  # H2 refuses: what it took on H1 is given back
    assert fleet.hosts.stores[H1].current is None


def test_an_interrupt_mid_rollout_lets_the_host_under_way_finish_and_starts_no_other(
    fleet: Fleet,
) -> None:
    fleet.hosts.composes[H2].signal_ups = frozenset({2})

    with pytest.raises(Interrupted) as raised:
        fleet.deploy(GOOD, log_level="debug")

    assert raised.value.outcome == (
        f"no further host started: {H1} success, {H2} success, {H3} not started"
    )
    assert fleet.releases()[0] == (
        2,
        "deploy production",
        "interrupted",
        [(H1, "success", "debug"), (H2, "success", "debug"), (H3, "not started", "info")],
    )
    assert fleet.hosts.composes[H3].ups == 1
    assert fleet.locked() == {h: False for h in HOSTS}


def test_a_host_that_dies_mid_deploy_is_unknown_and_the_others_are_rolled_back(
    fleet: Fleet,
) -> None:
    fleet.hosts.composes[H2].dies_at_ups = frozenset({2})

    with pytest.raises(RolloutFailedError) as raised:
        fleet.deploy(GOOD, log_level="debug")

    failure = "`docker compose --project-name shop ...` failed (exit 1): Cannot connect to the Docker daemon"
    assert raised.value.lines() == [
        f"deploy of production failed on {H2}: {failure}; rolled back: {H1}",
        f"  {H1}  rolled back",
        f"  {H2}  unknown: {failure}",
        f"  {H3}  not started",
    ]
    assert fleet.releases(H1)[0] == (
        2,
        "deploy production",
        "rolled back",
        [(H1, "rolled back", "info"), (H2, "unknown", None), (H3, "not started", "info")],
    )
    assert fleet.releases(H3) == fleet.releases(H1)
    assert fleet.locked() == {H1: False, H2: True, H3: False}  # H2's engine is down meanwhile


def test_rollback_to_a_release_restores_every_host_as_that_release_recorded_it(
    fleet: Fleet,
) -> None:
    fleet.deploy(GOOD, log_level="debug")

    rolled = rollback(fleet.target, fleet.ui, 1)

    assert isinstance(rolled, Rollout)
    assert [(h, result) for h, result, _, _ in summary(rolled)] == [(h, "success") for h in HOSTS]
    assert fleet.releases()[0] == (
        3,
        "rollback to release 1",
        "success",
        [(h, "success", "info") for h in HOSTS],
    )
    assert fleet.running() == {h: ("running", "httpd -f", PINNED) for h in HOSTS}


def test_history_is_read_from_the_hosts_that_answer_and_flags_a_diverged_host(
    fleet: Fleet,
) -> None:
    fleet.hosts.composes[H3].containers.clear()  # someone removed web on H3 by hand
    fleet.hosts.unreachable.add(H2)

    found, flagged = read.releases(fleet.target)

    assert [r.number for r in found] == [1]
    assert history_text("production", found, flagged).splitlines()[-2:] == [
        f"{H2} DIVERGES from its releases: unknown: Docker engine at {H2} is unreachable: "
        "Cannot connect to the Docker daemon",
        f"{H3} DIVERGES from release #1: web runs no container (release: reg/web:1.0)",
    ]
    [document] = history_document(found, flagged)
    assert [h.get("diverged") for h in document["hosts"]] == [
        None,
        None,
        ["web runs no container (release: reg/web:1.0)"],
    ]


def test_the_lock_is_acquired_and_released_on_every_host(fleet: Fleet) -> None:
    lock_acquire(fleet.target, "maintenance", 3600.0, Redactor())
    assert fleet.locked() == {h: True for h in HOSTS}

    with pytest.raises(LockedError):
        fleet.deploy(GOOD, log_level="debug")

    held = lock_release(fleet.target, False, Redactor())
    assert held is not None and held.reason == "maintenance"
    assert fleet.locked() == {h: False for h in HOSTS}
