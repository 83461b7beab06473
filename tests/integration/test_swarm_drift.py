"""`deploy diff` and `deploy status` of a swarm environment, on the bed's real swarm (dh4, dh5
managers, dh6 worker). The stack is deployed with the invocation `deploy render` shows
(operations.render_stack), run as is; `deploy ENV` on a swarm is not built yet."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer import operations, runner
from deployer.compose import Command
from deployer.variables import Redactor
from tests.integration.bed import Swarm
from tests.integration.conftest import REGISTRY, Result, Workspace

pytestmark = pytest.mark.integration

COMPOSE = """\
services:
  web:
    image: ${REGISTRY}/testapp:${WEB_TAG}
    environment:
      LOG_LEVEL: ${LOG_LEVEL}
    deploy:
      replicas: 2
  worker:
    image: ${REGISTRY}/testapp:1.0.0
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""
CONVERGE_SECONDS = 120  # pulls on three nodes of a 2-core machine


class SwarmSpace(Workspace):
    """A workspace whose environment `test` is a stack on the bed's swarm, through manager dh4."""

    swarm: Swarm

    def stack_deploy(self) -> None:
        """The stack deploy `deploy render test` shows, run as is; then waits until every
        service of the stack has all its tasks running."""
        environ = {**os.environ, **self.env}
        loaded = operations.load(self.environments, "test", Redactor(), environ, swarm_ready=True)
        command, _, _ = operations.render_stack(loaded, Redactor())
        done = runner.run(command, check=False)
        assert done.returncode == 0, done.stderr
        manager = self.swarm.client(4)
        deadline = time.monotonic() + CONVERGE_SECONDS
        while time.monotonic() < deadline:
            services = manager.api.services(
                filters={"label": f"com.docker.stack.namespace={self.project}"}, status=True
            )
            counts = [
                (s["ServiceStatus"]["RunningTasks"], s["ServiceStatus"]["DesiredTasks"])
                for s in services
            ]
            if services and all(running == desired for running, desired in counts):
                return
            time.sleep(0.5)
        raise AssertionError(f"the stack {self.project} did not converge: {counts}")

    def remove_stack(self) -> None:
        """`docker stack rm`, then waits until its services and networks are gone."""
        manager = self.swarm.client(4)
        runner.run(runner_command(self.swarm, ["stack", "rm", self.project]), check=False)
        label = {"label": f"com.docker.stack.namespace={self.project}"}
        for _ in range(240):
            if not manager.api.services(filters=label) and not manager.api.networks(filters=label):
                return
            time.sleep(0.25)


def runner_command(swarm: Swarm, args: list[str]) -> Command:
    return Command(("docker", *args), {"DOCKER_HOST": swarm.manager_urls[0]})


@pytest.fixture
def stack(tmp_path: Path, swarm: Swarm, images: list[str]) -> Iterator[SwarmSpace]:
    project = f"dt-{uuid.uuid4().hex[:10]}"
    space = SwarmSpace(
        tmp_path,
        project,
        swarm.client(4),
        {"DEPLOYER_ENVIRONMENTS": str(tmp_path / "environments")},
    )
    space.swarm = swarm
    space.write("app/compose.yml", COMPOSE)
    space.write(
        "app/.env", f"REGISTRY={swarm.node_image(REGISTRY)}\nWEB_TAG=1.0.0\nLOG_LEVEL=info\n"
    )
    space.write(
        "test.yml",
        f"project: {project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        f"engine: {{host: '{swarm.manager_urls[0]}', orchestrator: swarm}}\n",
    )
    try:
        yield space
    finally:
        space.remove_stack()


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
        "app/compose.yml", COMPOSE.split("  worker:")[0].replace("replicas: 2", "replicas: 3")
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
