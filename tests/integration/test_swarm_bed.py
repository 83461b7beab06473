"""The bed's swarm itself (scripts/test-hosts swarm, the `swarm` fixture)."""

from __future__ import annotations

import pytest

from tests.integration.bed import Swarm, checked

pytestmark = pytest.mark.integration


def nodes(swarm: Swarm, k: int) -> list[tuple[str, str, str]]:
    """The nodes as manager k lists them: hostname, state, role."""
    return sorted(
        (n.attrs["Description"]["Hostname"], n.attrs["Status"]["State"], n.attrs["Spec"]["Role"])
        for n in swarm.client(k).nodes.list()
    )


def test_the_swarm_has_three_ready_nodes_two_of_them_managers(swarm: Swarm) -> None:
    expected = [
        ("dh4", "ready", "manager"),
        ("dh5", "ready", "manager"),
        ("dh6", "ready", "worker"),
    ]
    assert [nodes(swarm, k) for k in swarm.managers] == [expected, expected]
    assert swarm.node_names == ["dh4", "dh5", "dh6"]
    assert swarm.manager_urls == ["unix:///run/dh4/docker.sock", "unix:///run/dh5/docker.sock"]


def test_swarm_up_again_changes_nothing(swarm: Swarm) -> None:
    before = {n.id for n in swarm.client(4).nodes.list()}
    assert (
        checked("swarm").splitlines()[-1] == "test-hosts: swarm: dh4:manager dh5:manager dh6:worker"
    )
    assert {n.id for n in swarm.client(4).nodes.list()} == before


def test_the_worker_is_not_a_manager(swarm: Swarm) -> None:
    info = swarm.client(6).info()["Swarm"]
    assert (info["LocalNodeState"], info["ControlAvailable"]) == ("active", False)


def test_a_node_that_left_is_joined_again(swarm: Swarm) -> None:
    """`swarm` repairs what it finds: the worker out of the swarm joins again, its stale entry
    (Down, under the old node ID) removed."""
    old = {n.attrs["Description"]["Hostname"]: n.id for n in swarm.client(4).nodes.list()}
    swarm.client(6).swarm.leave(force=True)
    assert checked("swarm").splitlines()[-2:] == [
        "test-hosts: swarm: dh6 joined as a worker",
        "test-hosts: swarm: dh4:manager dh5:manager dh6:worker",
    ]
    again = {n.attrs["Description"]["Hostname"]: n.id for n in swarm.client(4).nodes.list()}
    assert sorted(again) == ["dh4", "dh5", "dh6"]
    assert (again["dh4"], again["dh5"]) == (old["dh4"], old["dh5"])
    assert again["dh6"] != old["dh6"]


def test_a_manager_that_left_is_joined_again_and_the_quorum_restored(swarm: Swarm) -> None:
    """With two managers, one leaving takes the quorum: `swarm` forces a new cluster on dh4."""
    swarm.client(5).swarm.leave(force=True)
    said = checked("swarm").splitlines()
    # The worker may be seen Down while the new cluster elects itself: it then joins again too.
    assert [line for line in said if "dh6" not in line or "dh4:manager" in line][-3:] == [
        "test-hosts: swarm: dh4 had lost the quorum: forced a new cluster of one manager",
        "test-hosts: swarm: dh5 joined as a manager",
        "test-hosts: swarm: dh4:manager dh5:manager dh6:worker",
    ]
    expected = [
        ("dh4", "ready", "manager"),
        ("dh5", "ready", "manager"),
        ("dh6", "ready", "worker"),
    ]
    assert [nodes(swarm, k) for k in swarm.managers] == [expected, expected]
