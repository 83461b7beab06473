"""`deploy diff` and `deploy status` of a swarm environment, on the bed's real swarm (dh4, dh5
managers, dh6 worker). The stack is deployed with the invocation `deploy render` shows
(deployer.commands.spec.render), run as is, so that drift is read from a stack deployer did not
deploy itself."""

from __future__ import annotations

import pytest

from tests.integration.conftest import REGISTRY, SWARM_COMPOSE, Result, SwarmSpace

pytestmark = pytest.mark.integration


def plan_of(result: Result) -> list[tuple[str, str, list[str]]]:
    document = result.json()
    assert isinstance(document, dict)
    return [(c["service"], c["action"], c["causes"]) for c in document["changes"]]


def test_diff_on_a_swarm_says_in_sync_then_names_each_change_with_its_cause(
    stack: SwarmSpace,
) -> None:
    stack.stack_deploy()
    in_sync = stack.deploy("diff", "test")
    assert (in_sync.returncode, in_sync.stdout, in_sync.stderr) == (
        0,
        f"test (project {stack.project}): in sync, nothing to change\n",
        "",
    )

    stack.write(
        "app/.env", f"REGISTRY={stack.swarm.node_image(REGISTRY)}\nWEB_TAG=1.1.0\nLOG_LEVEL=debug\n"
    )
    stack.write(
        "app/compose.yml", SWARM_COMPOSE.split("  worker:")[0].replace("replicas: 2", "replicas: 3")
    )
    changed = stack.deploy("diff", "test", "--json")
    web_image = f"{stack.swarm.node_image(REGISTRY)}/testapp:1.0.0"
    assert (changed.returncode, changed.stderr, plan_of(changed)) == (
        2,
        "",
        [
            (
                "web",
                "update",
                [f"image {web_image} -> 1.1.0", "environment changed", "replicas 2 -> 3"],
            ),
            ("worker", "remove", ["not in the spec: --prune removes it"]),
        ],
    )
    assert changed.json()["in_sync"] is False  # type: ignore[index]


def test_status_on_a_swarm_shows_each_task_on_its_node(stack: SwarmSpace) -> None:
    stack.stack_deploy()
    result = stack.deploy("status", "test", "--json")
    assert result.returncode == 0, result.stderr
    document = result.json()
    assert isinstance(document, dict)
    services = {s["service"]: s for s in document["services"]}
    assert sorted(services) == ["web", "worker"]
    web = services["web"]
    assert (web["image"], web["replicas"]) == (
        f"{stack.swarm.node_image(REGISTRY)}/testapp:1.0.0",
        {"running": 2, "desired": 2},
    )
    assert web["digest"].startswith("sha256:")
    tasks = [t for s in services.values() for t in s["tasks"]]
    assert [(t["state"], t["desired_state"]) for t in tasks] == [("running", "running")] * 3
    assert {t["node"] for t in tasks} <= set(stack.swarm.node_names)
    assert all(t["node"] for t in tasks)
    text = stack.deploy("status", "test").stdout.splitlines()
    assert text[:2] == [
        f"test (stack {stack.project}): healthy, in sync",
        "SERVICE  RUNNING  IMAGE" + text[1].partition("IMAGE")[2],
    ]
    assert text[1].split() == [
        "SERVICE",
        "RUNNING",
        "IMAGE",
        "DIGEST",
        "UPDATE",
        "NODE",
        "STATE",
        "HEALTH",
        "SINCE",
    ]
    assert [line.split()[:2] for line in text[2:] if not line.startswith(" ")] == [
        ["web", "2/2"],
        ["worker", "1/1"],
    ]
    assert len(text) == 5  # one line per task


@pytest.mark.parametrize(("k", "what"), [(6, "a swarm worker"), (1, "in no swarm (inactive)")])
def test_an_engine_that_is_not_a_swarm_manager_is_one_line(
    stack: SwarmSpace, k: int, what: str
) -> None:
    url = stack.swarm.bed.unix(k)
    stack.write(
        "test.yml",
        f"project: {stack.project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        f"engine: {{host: '{url}', orchestrator: swarm}}\n",
    )
    for command in ("diff", "status"):
        result = stack.deploy(command, "test")
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            "",
            f"error: {url} is not a swarm manager, it is {what}: name a manager in engine.host "
            "(or make this engine one: docker swarm init)\n",
        )
