"""Start-first updates on plain Compose, end to end through the commands over one engine and over
three hosts (tests/unit/worlds.py): web declares `deploy.update_config.order: start-first`, so a
new release starts its new containers beside the old ones (`up --no-recreate --scale`), waits
until they are ready, then stops and removes the old ones. New containers that never become
ready are removed and the old ones, never stopped, go on serving; an interrupt leaves the old
or the new ones serving, and the next deploy finishes the update. Every docker command run is
asserted whole, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer.commands.read import diff
from deployer.core.desired import UpdateOrder
from deployer.core.errors import Interrupted, RolledBackError, RolloutFailedError
from deployer.core.plan import Change, Roll
from deployer.core.variables import Redactor
from deployer.state import audit
from deployer.targets.host import apply as host_apply
from tests.unit.worlds import GOOD, HOSTS, OneEngine, SeveralHosts, World, version_of

H1, H2, H3 = HOSTS
START_FIRST = {"order": "start-first"}
KINDS = {"one engine": OneEngine, "several hosts": SeveralHosts}

Ran = list[tuple[str, tuple[str, ...]]]


def start_first(replicas: int | None = None) -> dict[str, Any]:
    """web's deploy: section: updated start-first (with `replicas`)."""
    deploy: dict[str, Any] = {"update_config": START_FIRST}
    if replicas is not None:
        deploy["replicas"] = replicas
    return {"deploy": deploy}


def made(kind: str, tmp_path: Path, replicas: int | None = None) -> World:
    """The world of `kind`, web deployed on version 1 and updated start-first."""
    world = KINDS[kind](tmp_path, web=start_first(replicas))
    world.deploy("1")
    return world


def one_engine(tmp_path: Path) -> OneEngine:
    world = OneEngine(tmp_path, web=start_first())
    world.deploy("1")
    return world


def several_hosts(tmp_path: Path) -> SeveralHosts:
    world = SeveralHosts(tmp_path, web=start_first())
    world.deploy("1")
    return world


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readiness is polled at once: a wait for a container that never becomes healthy lasts
    the spec's wait_timeout, not a poll more."""
    monkeypatch.setattr(host_apply, "POLL_SECONDS", 0.01)


def compose(world: World, *args: str) -> tuple[str, ...]:
    """`docker compose` of the project, the spec's overrides on stdin."""
    files = ("--file", str(world.tmp_path / "compose.yml"))
    return ("docker", "compose", "--project-name", "shop", "--env-file", "/dev/fd/3", *files, "--file", "-", *args)  # fmt: skip


def config(world: World) -> tuple[str, ...]:
    """`docker compose config` of the compose files alone (the spec read)."""
    files = ("--file", str(world.tmp_path / "compose.yml"))
    return ("docker", "compose", "--project-name", "shop", "--env-file", "/dev/fd/3", *files, "config", "--format", "json")  # fmt: skip


def restoring(world: World) -> tuple[str, ...]:
    """`docker compose config` with a release's configuration on stdin (a rollback's)."""
    return compose(world, "config", "--format", "json")


def scale(world: World, count: int) -> tuple[str, ...]:
    return compose(world, "up", "--detach", "--pull", "never", "--no-recreate", "--scale", f"web={count}", "web")  # fmt: skip


def up(world: World, *services: str) -> tuple[str, ...]:
    return compose(world, "up", "--detach", "--pull", "never", *services)


def stop(*names: str) -> tuple[str, ...]:
    return ("docker", "stop", *names)


def remove(*names: str) -> tuple[str, ...]:
    return ("docker", "rm", "--force", "--volumes", *names)


def on(place: str, *commands: tuple[str, ...]) -> Ran:
    return [(place, command) for command in commands]


def ran_by(world: World, action: Any) -> Ran:
    """The docker commands `action()` runs, in order, with the place each ran."""
    before = len(world.ran())
    action()
    return world.ran()[before:]


Container = tuple[str, str, str, str]  # name, ID, version of web, state


def on_each(places: tuple[str, ...], *containers: Container) -> dict[str, list[Container]]:
    """The same containers in every place."""
    return {place: list(containers) for place in places}


def in_sync(world: World) -> bool:
    return diff(world.target, Redactor()).in_sync


def rolled(retire: tuple[str, ...], scale: int, discard: tuple[str, ...] = ()) -> Change:
    """web's change from version 1 to 2, made start-first."""
    return Change(
        "web",
        "recreate",
        ("image reg/web:1 -> 2",),
        order=UpdateOrder(True),
        roll=Roll(scale, retire, discard),
    )


def test_a_new_image_starts_beside_the_old_containers_which_are_retired_once_it_is_ready(
    kind: str, tmp_path: Path
) -> None:
    world = made(kind, tmp_path, replicas=2)
    assert world.containers() == on_each(
        world.places, ("shop-web-1", "web-1", "1", "running"), ("shop-web-2", "web-1-2", "1", "running")
    )  # fmt: skip
    old = ("shop-web-1", "shop-web-2")

    ran = ran_by(world, lambda: world.deploy("2"))

    # Each place in turn (a batch a host): 2 new containers beside the 2 old, which then go.
    assert ran == [
        (world.places[0], config(world)),
        *[
            command
            for place in world.places
            for command in on(place, scale(world, 4), stop(*old), remove(*old))
        ],
    ]
    change = Change("web", "recreate", ("image reg/web:1 -> 2",), order=UpdateOrder(True), roll=Roll(4, old, ()))  # fmt: skip
    assert [plan.changes for plan in world.shown[-len(world.places) :]] == [
        (change,) for _ in world.places
    ]
    assert world.containers() == on_each(
        world.places, ("shop-web-3", "web-2", "2", "running"), ("shop-web-4", "web-2-4", "2", "running")
    )  # fmt: skip
    assert world.releases() == [(2, "deploy test", "success"), (1, "deploy test", "success")]
    assert in_sync(world)
    hosts = [f"{place}: " for place in world.places] if kind == "several hosts" else [""]
    assert [line for line in world.steps.lines if "start-first" in line] == [
        f"{host}web: updated start-first, shop-web-1, shop-web-2 removed" for host in hosts
    ]


def test_new_containers_that_never_become_healthy_are_removed_and_the_old_ones_never_stopped(
    kind: str, tmp_path: Path
) -> None:
    world = made(kind, tmp_path)
    world.wait_timeout = 0.2
    world.unhealthy.add("2")
    old = world.containers()

    with pytest.raises((RolledBackError, RolloutFailedError)) as raised:
        world.deploy("2")

    failure = (
        "service web did not become healthy within 0.2s (last state: Up 1 second (unhealthy)); "
        "its new containers were removed, the old ones never stopped"
    )
    if kind == "one engine":
        assert raised.value.lines() == [
            f"{failure}; rolled back: web",
            "last log lines of web:",
            "  web-2: bye",
        ]
    else:  # the first host failed: the others never started
        assert raised.value.lines() == [
            f"deploy of test failed on {H1}: {failure}; rolled back: {H1}",
            f"  {H1}  rolled back: {failure}",
            f"  {H2}  not started",
            f"  {H3}  not started",
            "last log lines of web:",
            "  web-2: bye",
        ]
    # The new container removed; no other container was replaced: nothing left to put back.
    first = world.places[0]
    assert world.ran()[-3:] == on(first, config(world), scale(world, 2), remove("shop-web-2"))
    assert old == on_each(world.places, ("shop-web-1", "web-1", "1", "running"))
    assert world.containers() == old
    assert world.releases()[0] == (2, "deploy test", "rolled back")
    entry = audit.entries(world.store())[-1]
    where = "" if kind == "one engine" else f"{H1}: "
    assert (entry.command, entry.result, entry.error) == (
        "deploy test",
        "rolled back",
        f"{where}{failure}",
    )
    assert not world.locked()


def test_a_new_container_that_cannot_start_is_removed_and_the_old_one_serves_on(
    tmp_path: Path,
) -> None:
    """`up --scale` itself fails once it made the new container (its port is taken)."""
    world = one_engine(tmp_path)
    world.compose.behaviour = lambda config: (
        "fails" if version_of(config["image"]) == "2" else world.behaviour(config)
    )

    with pytest.raises(RolledBackError) as raised:
        world.deploy("2")

    assert raised.value.message == (
        "`docker compose --project-name shop ...` failed (exit 1): Error: port is already "
        "allocated; its new containers were removed, the old ones never stopped; rolled back: web"
    )
    assert world.ran()[-3:] == on("here", config(world), scale(world, 2), remove("shop-web-2"))
    assert world.containers() == {"here": [("shop-web-1", "web-1", "1", "running")]}
    assert world.releases()[0] == (2, "deploy test", "rolled back")


def worker(version: str) -> dict[str, Any]:
    """A service updated stop-first (Compose's default), on web's image."""
    return {"worker": {"image": f"reg/web:{version}", "command": GOOD}}


def test_a_stop_first_service_of_the_same_deploy_is_updated_by_the_usual_up_after_the_roll(
    kind: str, tmp_path: Path
) -> None:
    world = KINDS[kind](tmp_path, web=start_first())
    world.deploy("1", services=worker("1"))

    ran = ran_by(world, lambda: world.deploy("2", services=worker("2")))

    assert ran == [
        (world.places[0], config(world)),
        *[
            command
            for place in world.places
            for command in on(
                place,
                scale(world, 2),
                stop("shop-web-1"),
                remove("shop-web-1"),
                up(world, "worker"),
            )
        ],
    ]
    assert world.shown[-1].changes == (
        rolled(("shop-web-1",), 2),
        Change(
            "worker",
            "recreate",
            ("image reg/web:1 -> 2",),
            order=UpdateOrder(False, "default order"),
        ),
    )
    assert world.containers() == on_each(
        world.places,
        ("shop-web-2", "web-2", "2", "running"),
        ("shop-worker-1", "worker-3", "2", "running"),
    )
    assert world.releases()[0] == (2, "deploy test", "success")
    assert in_sync(world)


NEW_ONES_STARTING = (
    "web: its old containers still serve, new ones were starting beside them; "
    "`deploy diff test` shows what is left to do"
)
OLD_ONES_STOPPING = (
    "web: its new containers are ready and serve, its old ones were being stopped; "
    "`deploy diff test` shows what is left to do"
)


def test_ctrl_c_while_the_new_containers_start_leaves_both_and_the_next_deploy_retires_the_old(
    tmp_path: Path,
) -> None:
    world = one_engine(tmp_path)
    world.interrupt_next_change()  # Ctrl-C as `up --scale` returns

    with pytest.raises(Interrupted) as raised:
        world.deploy("2")

    assert raised.value.outcome == NEW_ONES_STARTING
    assert world.ran()[-2:] == on("here", config(world), scale(world, 2))
    both = [("shop-web-1", "web-1", "1", "running"), ("shop-web-2", "web-2", "2", "running")]
    assert world.containers() == {"here": both}
    assert world.releases()[0] == (2, "deploy test", "interrupted")
    assert not world.locked()

    ran = ran_by(world, lambda: world.deploy("2"))

    # The new container, running as declared, is kept: `up --scale` makes none; the old goes.
    assert world.shown[-1].changes == (rolled(("shop-web-1",), 2),)
    assert ran == on(
        "here", config(world), scale(world, 2), stop("shop-web-1"), remove("shop-web-1")
    )
    assert world.containers() == {"here": [("shop-web-2", "web-2", "2", "running")]}
    assert world.releases()[0] == (3, "deploy test", "success")
    assert in_sync(world)


def test_ctrl_c_while_the_old_containers_stop_leaves_the_new_serving_and_the_next_removes_the_old(
    tmp_path: Path,
) -> None:
    world = one_engine(tmp_path)
    world.compose.interrupt_after = ("docker", "stop")

    with pytest.raises(Interrupted) as raised:
        world.deploy("2")

    assert raised.value.outcome == OLD_ONES_STOPPING
    assert world.ran()[-3:] == on("here", config(world), scale(world, 2), stop("shop-web-1"))
    assert world.containers() == {
        "here": [("shop-web-1", "web-1", "1", "exited"), ("shop-web-2", "web-2", "2", "running")]
    }
    assert world.releases()[0] == (2, "deploy test", "interrupted")

    ran = ran_by(world, lambda: world.deploy("2"))

    # The old container, stopped, is removed before anything starts; none is made.
    assert world.shown[-1].changes == (rolled((), 1, ("shop-web-1",)),)
    assert ran == on("here", config(world), remove("shop-web-1"), scale(world, 1))
    assert world.containers() == {"here": [("shop-web-2", "web-2", "2", "running")]}
    assert world.releases()[0] == (3, "deploy test", "success")
    assert in_sync(world)


def test_a_new_container_left_created_by_ctrl_c_is_discarded_and_the_update_stays_start_first(
    tmp_path: Path,
) -> None:
    """Compose creates the new containers, then starts them: a Ctrl-C in between leaves one
    created, never started. It is an old container that does not run, for the next deploy."""
    world = one_engine(tmp_path)
    world.interrupt_next_change()
    with pytest.raises(Interrupted):
        world.deploy("2")
    left = world.compose.containers.named("shop-web-2")
    assert left is not None
    left.update(State="created", Status="Created")

    ran = ran_by(world, lambda: world.deploy("2"))

    assert ran == on(
        "here",
        config(world),
        remove("shop-web-2"),
        scale(world, 2),
        stop("shop-web-1"),
        remove("shop-web-1"),
    )
    assert world.containers() == {"here": [("shop-web-2", "web-3", "2", "running")]}


def test_several_hosts_ctrl_c_lets_the_host_under_way_finish_its_roll_and_starts_no_other(
    tmp_path: Path,
) -> None:
    """A Ctrl-C (in the main thread, as a terminal's) while host 2 starts its new containers:
    host 2's update is not cut short, host 3 is left on its old release; the next deploy
    updates host 3 alone."""
    world = several_hosts(tmp_path)
    second = world.hosts.composes[H2]
    second.signal_ups = frozenset({second.ups + 1})

    with pytest.raises(Interrupted) as raised:
        world.deploy("2")

    assert raised.value.outcome == (
        f"no further host started: {H1} success, {H2} success, {H3} not started"
    )
    assert world.containers() == {
        H1: [("shop-web-2", "web-2", "2", "running")],
        H2: [("shop-web-2", "web-2", "2", "running")],
        H3: [("shop-web-1", "web-1", "1", "running")],
    }
    assert world.releases()[0] == (2, "deploy test", "interrupted")

    ran = ran_by(world, lambda: world.deploy("2"))

    assert ran == [
        (H1, config(world)),
        *on(H3, scale(world, 2), stop("shop-web-1"), remove("shop-web-1")),
    ]
    assert world.containers() == on_each(HOSTS, ("shop-web-2", "web-2", "2", "running"))
    assert in_sync(world)


def test_several_hosts_a_host_whose_new_containers_fail_stops_the_rollout_and_the_earlier_is_rolled_back(
    tmp_path: Path,
) -> None:
    """Host 1 is updated start-first, host 2's new container exits: it is removed there, host 3
    never starts, and host 1 is put back on version 1, start-first too."""
    world = several_hosts(tmp_path)
    world.hosts.composes[H2].behaviour = lambda config: (
        "exits" if version_of(config["image"]) == "2" else "healthy"
    )

    before = len(world.ran())

    with pytest.raises(RolloutFailedError) as raised:
        world.deploy("2")

    failure = (
        "service web did not become healthy within 5s (last state: Exited (1) 1 second ago); "
        "its new containers were removed, the old ones never stopped"
    )
    assert raised.value.lines() == [
        f"deploy of test failed on {H2}: {failure}; rolled back: {H1}, {H2}",
        f"  {H1}  rolled back",
        f"  {H2}  rolled back: {failure}",
        f"  {H3}  not started",
        "last log lines of web:",
        "  web-2: bye",
    ]
    ran = world.ran()[before:]
    assert ran[:6] == [
        (H1, config(world)),
        *on(H1, scale(world, 2), stop("shop-web-1"), remove("shop-web-1")),
        *on(H2, scale(world, 2), remove("shop-web-2")),
    ]
    # The rollback, on both hosts at once: host 1's new container retired beside version 1
    # started again; on host 2 nothing left to do.
    rollback = ran[6:]
    assert [command for host, command in rollback if host == H1] == [
        restoring(world),
        scale(world, 2),
        stop("shop-web-2"),
        remove("shop-web-2"),
    ]
    assert [command for host, command in rollback if host == H2] == []
    assert len(rollback) == 4
    assert world.containers() == {
        H1: [("shop-web-3", "web-3", "1", "running")],
        H2: [("shop-web-1", "web-1", "1", "running")],
        H3: [("shop-web-1", "web-1", "1", "running")],
    }
    newest = world.history()[0]
    assert (newest.result, [(h.host, h.result) for h in newest.hosts]) == (
        "rolled back",
        [(H1, "rolled back"), (H2, "rolled back"), (H3, "not started")],
    )


def test_a_failed_roll_names_only_its_service_rolled_back_and_leaves_the_others_untouched(
    tmp_path: Path,
) -> None:
    """Rolls go first: a stop-first service of the same deploy was not changed when the roll
    failed, and is not said to be rolled back."""
    world = OneEngine(tmp_path, web=start_first())
    world.deploy("1", services=worker("1"))
    world.wait_timeout = 0.2
    world.unhealthy.add("2")
    old = world.containers()

    with pytest.raises(RolledBackError) as raised:
        world.deploy("2", services=worker("2"))

    assert raised.value.message == (
        "service web did not become healthy within 0.2s (last state: Up 1 second (unhealthy)); "
        "its new containers were removed, the old ones never stopped; rolled back: web"
    )
    assert world.ran()[-3:] == on("here", config(world), scale(world, 2), remove("shop-web-2"))
    assert world.containers() == old
    assert world.releases()[0] == (2, "deploy test", "rolled back")
