"""Adoption and drift in the files a service reads, on the bed's swarm (dh4, dh5 managers, dh6
worker): a stack started by a plain `docker stack deploy` keeps its tasks; files bind-mounted
are read on every node through its engine (engine.nodes), configs and secrets are named by their
content, a service labelled dev.deployer.reload-signal gets the signal on every task."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.integration.conftest import CONVERGE_SECONDS, REGISTRY, SwarmSpace, ok

pytestmark = pytest.mark.integration

COMPOSE = """\
include:
  - sub/compose.yml
services:
  web:
    image: ${REGISTRY}/testapp:1.0.0
    environment:
      LOG_LEVEL: ${LOG_LEVEL}
    volumes:
      - ./conf/app.conf:/etc/app.conf:ro
  worker:
    image: ${REGISTRY}/testapp:1.0.0
    configs:
      - source: settings
        target: /etc/settings.txt
    secrets: [token]
  proxy:
    image: ${REGISTRY}/testapp:1.0.0
    command: ["sh", "-c", "trap 'echo hup >> /tmp/signals' HUP; while :; do sleep 0.2; done"]
    healthcheck: {test: ["CMD", "true"], interval: 1s}
    volumes:
      - ./conf/proxy.conf:/etc/proxy.conf:ro
    labels:
      dev.deployer.reload-signal: SIGHUP
configs:
  settings:
    file: ./conf/settings.txt
secrets:
  token:
    file: ./conf/token.txt
"""
INCLUDED = """\
services:
  api:
    image: ${REGISTRY}/testapp:1.0.0
    configs:
      - source: api
        target: /etc/api.conf
configs:
  api:
    file: ./api.conf
"""
# What a team had before deployer: the same services, deployed by hand with `docker stack
# deploy` (which reads no .env: the values come from the shell).
PLAIN = """\
services:
  web:
    image: ${REGISTRY}/testapp:1.0.0
    environment:
      LOG_LEVEL: ${LOG_LEVEL}
    deploy:
      replicas: 2
  worker:
    image: ${REGISTRY}/testapp:1.0.0
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""


def with_nodes(space: SwarmSpace) -> None:
    """The spec's engine.nodes: every node's engine, by hostname."""
    nodes = {space.swarm.name(k): space.swarm.bed.unix(k) for k in space.swarm.numbers}
    spec = space.environments / "test.yml"
    spec.write_text(
        spec.read_text().replace(
            "orchestrator: swarm}", f"orchestrator: swarm, nodes: {json.dumps(nodes)}}}"
        )
    )


def changes(space: SwarmSpace) -> dict[str, tuple[str, list[str]]]:
    result = space.deploy("diff", "test", "--json")
    assert result.returncode in (0, 2), result.stderr
    document = result.json()
    assert isinstance(document, dict)
    return {c["service"]: (c["action"], c["causes"]) for c in document["changes"]}


def converged(space: SwarmSpace) -> dict[str, list[str]]:
    """Each service's running task IDs, once every service runs all its tasks."""
    deadline = time.monotonic() + CONVERGE_SECONDS
    while True:
        services = space.services()
        tasks = space.task_ids()
        if services and all(
            len(tasks[name]) == (s["Spec"]["Mode"].get("Replicated") or {}).get("Replicas", 1)
            for name, s in services.items()
        ):
            return tasks
        assert time.monotonic() < deadline, tasks
        time.sleep(0.5)


def test_a_stack_deployed_by_hand_is_adopted_and_swarm_replaces_only_the_tasks_that_differ(
    stack: SwarmSpace,
) -> None:
    stack.write("app/plain.yml", PLAIN)
    registry = stack.swarm.node_image(REGISTRY)
    subprocess.run(
        ["docker", "stack", "deploy", "-c", "plain.yml", stack.project],
        cwd=stack.environments / "app",
        env={
            **os.environ,
            "DOCKER_HOST": stack.swarm.manager_urls[0],
            "REGISTRY": registry,
            "LOG_LEVEL": "debug",  # declared: info
        },
        check=True,
        capture_output=True,
    )
    before = converged(stack)

    found = changes(stack)

    assert {name: action for name, (action, _) in found.items()} == {
        "web": "adopt",
        "worker": "adopt",
    }
    ok(stack.deploy("test", "--yes"))
    after = converged(stack)
    assert after["worker"] == before["worker"]
    assert after["web"] != before["web"]
    assert [e["LOG_LEVEL"] for e in stack.task_environments("web")] == ["info", "info"]
    assert changes(stack) == {}


def test_each_changed_file_restarts_updates_or_signals_exactly_the_services_that_read_it(
    stack: SwarmSpace,
) -> None:
    stack.write("app/compose.yml", COMPOSE)
    stack.write("app/sub/compose.yml", INCLUDED)
    files = {
        "app/conf/app.conf": "listen 8080\n",
        "app/conf/proxy.conf": "upstream web\n",
        "app/conf/settings.txt": "workers=2\n",
        "app/conf/token.txt": "swarm-token-canary-7373\n",
        "app/sub/api.conf": "timeout 5\n",
    }
    for path, text in files.items():
        stack.write(path, text)
    with_nodes(stack)
    ok(stack.deploy("test", "--yes"))
    before = converged(stack)

    stack.write("app/conf/app.conf", "listen 9090\n")
    stack.write("app/sub/api.conf", "timeout 9\n")
    found = changes(stack)

    assert {
        name: (action, [c.split(":")[0] for c in causes])
        for name, (action, causes) in found.items()
    } == {
        "api": ("update", ["config api"]),
        "web": ("restart", ["file conf/app.conf changed"]),
    }
    ok(stack.deploy("test", "--yes"))
    middle = converged(stack)
    assert sorted(n for n in middle if middle[n] != before[n]) == ["api", "web"]
    assert changes(stack) == {}

    stack.write("app/conf/token.txt", "rotated-token-canary-8484\n")
    stack.write("app/conf/proxy.conf", "upstream web2\n")
    shown = stack.deploy("diff", "test")
    found = changes(stack)
    assert found["worker"][0] == "update"
    assert found["proxy"][0] == "signal"
    assert found["proxy"][1][-1] == "reloads on SIGHUP (dev.deployer.reload-signal): not restarted"
    assert "rotated-token-canary" not in shown.stdout + shown.stderr
    ok(stack.deploy("test", "--yes"))
    after = converged(stack)
    assert sorted(n for n in after if after[n] != middle[n]) == ["worker"]
    hostnames = stack.swarm.hostnames()
    for task in stack.running_tasks("proxy"):
        node = stack.swarm.client(stack.swarm.number(hostnames[task["NodeID"]]))
        container = node.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        deadline = time.monotonic() + 10
        while container.exec_run(["cat", "/tmp/signals"]).output != b"hup\n":
            assert time.monotonic() < deadline, "a task of proxy got no SIGHUP"
            time.sleep(0.2)
    assert changes(stack) == {}
