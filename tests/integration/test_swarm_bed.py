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
