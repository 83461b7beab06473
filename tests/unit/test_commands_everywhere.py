"""Every command through the CLI, on every target (tests/unit/worlds.py: one engine, three
hosts, a swarm), the CLI not knowing which: exit codes and what it prints. What a target cannot
do is refused by its capabilities in one line, exit 1, before any engine is reached."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployer import cli
from tests.unit.test_cli import run
from tests.unit.worlds import DIGESTS, HOSTS, WORLDS, OneEngine, OnSwarm, SeveralHosts, World, model

SWARM_NODE_UNLISTED = (
    "error: cannot prune test: node dh4 of the swarm has no engine in engine.nodes (prune "
    "removes images on every node, through each node's engine): nothing removed\n"
)


@pytest.fixture(params=sorted(WORLDS))
def world(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """A world whose web runs version 1, as deployed by deployer; the CLI loads its target."""
    made = WORLDS[request.param](tmp_path)
    made.deploy("1")

    def load(folder: Path, name: str, redact: Any, hosts: list[str]) -> Any:
        assert name == "test"
        made.selected = tuple(hosts)
        return made.target

    monkeypatch.setattr(cli, "load", load)
    monkeypatch.chdir(tmp_path)
    yield made


def test_diff_in_sync_then_with_a_change_pending(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "diff", "test")[0] == 0
    world.set_model(model("2"))

    code, out, _ = run(capsys, "diff", "test", "--json")

    document = json.loads(out)
    assert (code, document["in_sync"]) == (2, False)
    # A recreate on plain Compose says in which order (Swarm orders its updates itself).
    change: dict[str, Any] = (
        {"service": "web", "action": "update", "causes": ["image reg/web:1 -> 2"]}
        if isinstance(world, OnSwarm)
        else {
            "service": "web",
            "action": "recreate",
            "causes": ["image reg/web:1 -> 2"],
            "order": "stop-first",
            "order_reason": "default order",
        }
    )
    if isinstance(world, SeveralHosts):
        assert document["changes"] == [{"host": host, **change} for host in HOSTS]
    else:
        assert document["changes"] == [change]
    assert ("hosts" in document) is not isinstance(world, OnSwarm)  # a swarm is one place


def test_deploy_status_history_audit_and_rollback(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.set_model(model("2"))

    assert run(capsys, "test", "--yes", "--json")[0] == 0
    assert world.running() == world.everywhere("2")
    code, out, _ = run(capsys, "status", "test", "--json")
    assert (code, json.loads(out)["healthy"]) == (0, True)
    code, out, _ = run(capsys, "history", "test", "--json")
    assert (code, [r["number"] for r in json.loads(out)]) == (0, [2, 1])
    assert run(capsys, "rollback", "test", "--yes")[0] == 0
    assert world.running() == world.everywhere("1")
    code, out, _ = run(capsys, "audit", "test")
    assert code == 0
    assert [line.split()[2:5] for line in out.splitlines()[1:]] == [
        ["deploy", "test", "success"],
        ["deploy", "test", "success"],
        ["rollback", "to", "release"],
    ]


def test_the_lock_acquired_shown_and_released(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "lock", "acquire", "test", "--reason", "maintenance")[0] == 0
    code, out, _ = run(capsys, "lock", "status", "test", "--json")
    assert (code, json.loads(out)["locked"]) == (0, True)
    world.set_model(model("2"))

    code, _, err = run(capsys, "test", "--yes")

    assert code == 1
    assert err.splitlines()[-1].startswith("error: test is locked: held by alice on host-a")
    assert world.running() == world.everywhere("1")
    code, out, _ = run(capsys, "lock", "release", "test")
    # Several hosts: the lock as found on the first host (every host holds it).
    where = f", on engine {HOSTS[0]}" if isinstance(world, SeveralHosts) else ""
    assert (code, out) == (
        0,
        f"released the lock of test held by alice on host-a (pid 4242){where}\n",
    )


RESTARTED = {
    OneEngine: ["restarted shop-web-1: Up 1 second (healthy)"],
    SeveralHosts: [
        line
        for host in HOSTS
        for line in (f"{host}:", "  restarted shop-web-1: Up 1 second (healthy)")
    ],
}
DOWN = {
    OneEngine: "test is down\n",
    SeveralHosts: "".join(f"{host}:\n  test is down\n" for host in HOSTS),
    OnSwarm: "test is down: stack shop removed (web)\n",
}


def test_restart_and_down(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "restart", "test", "web", "--yes")

    assert code == 0
    if isinstance(world, OnSwarm):
        assert out.startswith("restarted test (stack shop) in "), out
        assert out.splitlines()[1:] == [
            "  restart   web",
            f"  web: 1/1 tasks running, reg/web:1 ({DIGESTS['1'][7:19]})",
        ]
    else:
        assert out.splitlines() == RESTARTED[type(world)]

    code, out, _ = run(capsys, "down", "test", "--yes")

    assert (code, out) == (0, DOWN[type(world)])


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_prune_of_a_swarm_refuses_a_node_it_cannot_visit_before_anything_is_removed(
    dry_run: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    swarm = OnSwarm(tmp_path)
    swarm.deploy("1")
    ran = list(swarm.swarm.ran)
    monkeypatch.setattr(cli, "load", lambda *args, **kwargs: swarm.target)

    assert run(capsys, "prune", "test", "--yes", *dry_run) == (1, "", SWARM_NODE_UNLISTED)
    assert swarm.swarm.ran == ran  # no command run
    assert not swarm.locked()
