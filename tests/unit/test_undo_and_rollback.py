"""What an undo and a rollback put back, on every target: the five defects of issue 17, each
failing on the code before it (operations.py, one copy of each flow per target)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.core.errors import DeployerError, PullError, RolledBackError, RolloutFailedError
from deployer.targets.swarm import apply as swarm_apply
from tests.unit.worlds import GOOD, HOSTS, OneEngine, OnSwarm, SeveralHosts, World

H1, H2, H3 = HOSTS
EXITS = ["sh", "-c", "exit 3"]


@pytest.mark.parametrize("kind", [OneEngine, SeveralHosts])
def test_1_a_deploy_that_changed_nothing_leaves_the_undo_the_configuration_that_runs(
    kind: type[World], tmp_path: Path
) -> None:
    """A deploy that fails before it replaces a container (a tag typo) records what runs with
    the configuration it runs; the next deploy that fails puts back that configuration, not
    its own (which exits: the service would be left down)."""
    world = kind(tmp_path)
    world.deploy("1")
    with pytest.raises((PullError, RolloutFailedError)):
        world.deploy("9")  # no such tag

    with pytest.raises((RolledBackError, RolloutFailedError)) as raised:
        world.deploy("2", command=EXITS)

    assert world.running() == world.everywhere("1")
    assert world.releases() == [
        (3, "deploy test", "rolled back"),
        (2, "deploy test", "failed"),
        (1, "deploy test", "success"),
    ]
    failed = world.history()[1]
    config = failed.services["web"].config
    assert config is not None and config["command"] == GOOD
    assert "the rollback failed" not in raised.value.message


def test_2_a_plain_rollback_after_a_canary_and_its_follow_up_puts_every_host_back(
    tmp_path: Path,
) -> None:
    """R1 every host on 1, R2 a canary of 2 on host 1, R3 hosts 2 and 3 follow: version 2 is
    bad, and `deploy rollback` goes back to before it on every host (release 1), not to the
    canary's release."""
    world = SeveralHosts(tmp_path)
    world.deploy("1")
    world.selected = (H1,)
    world.deploy("2")
    world.selected = ()
    world.deploy("2")
    assert world.running() == world.everywhere("2")

    world.rollback()

    assert world.running() == world.everywhere("1")
    newest = world.history()[0]
    assert (newest.command, newest.result) == ("rollback to release 1", "success")
    assert [(h.host, h.result) for h in newest.hosts] == [(h, "success") for h in HOSTS]


def test_3_a_host_the_release_does_not_list_is_left_as_it_is(tmp_path: Path) -> None:
    """Release 2 was deployed to host 1 only: rolling host 2 back to it changes nothing there
    (the current spec is never deployed in its name), and says so."""
    world = SeveralHosts(tmp_path)
    world.deploy("1")
    world.selected = (H1,)
    world.deploy("2")
    world.set_model({"name": "shop", "services": {"web": {"image": "reg/web:3"}}})
    world.selected = (H2,)

    with pytest.raises(DeployerError) as raised:
        world.rollback(to=2)

    assert raised.value.message == (
        f"release 2 lists none of {H2} (it lists {H1}): nothing to roll back; nothing changed"
    )
    assert world.running() == {H1: ("2", "running"), H2: ("1", "running"), H3: ("1", "running")}
    assert [number for number, _, _ in world.releases()] == [2, 1]


@pytest.mark.parametrize(
    ("swarm_state", "undone"),
    [
        ("rollback_started", "api, web"),  # Swarm is at it when the deploy gives up waiting
        ("rollback_paused", "web"),  # Swarm's own rollback stopped: left as Swarm left it
    ],
)
def test_4_the_swarm_undo_goes_past_a_service_swarm_is_rolling_back_itself(
    swarm_state: str, undone: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """api's update fails and Swarm rolls it back by itself, keeping no previous spec
    (`docker service rollback` would refuse it); web, updated by the same deploy, is still put
    back."""
    monkeypatch.setattr(swarm_apply, "POLL_SECONDS", 0.0)
    world = OnSwarm(tmp_path, wait_timeout=0.05)
    world.swarm.outcome = lambda image: swarm_state if image == "reg/web:3" else "completed"
    api = {"api": {"image": "reg/web:1"}}
    world.deploy("1", services=api)

    with pytest.raises(RolledBackError) as raised:
        world.deploy("2", services={"api": {"image": "reg/web:3"}})

    assert raised.value.message.endswith(f"; rolled back: {undone}")
    assert (world.swarm.image_of("api"), world.swarm.image_of("web")) == ("reg/web:1", "reg/web:1")
    assert world.releases()[0] == (2, "deploy test", "rolled back")


@pytest.mark.parametrize("kind", [OneEngine, SeveralHosts])
def test_5_a_failing_new_service_is_removed_by_the_undo(kind: type[World], tmp_path: Path) -> None:
    """The only service that fails is new: the undo removes its containers, as the deploy found
    things, and only then is the deploy `rolled back`."""
    world = kind(tmp_path)
    world.deploy("1")

    with pytest.raises((RolledBackError, RolloutFailedError)) as raised:
        world.deploy("1", services={"api": {"image": "reg/web:1", "command": EXITS}})

    undone = H1 if kind is SeveralHosts else "api"
    assert raised.value.message.endswith(f"rolled back: {undone}")
    assert world.services() == {place: ["web"] for place in world.places}
    assert world.running() == world.everywhere("1")
    assert world.releases()[0] == (2, "deploy test", "rolled back")
