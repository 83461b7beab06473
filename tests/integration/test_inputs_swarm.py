"""Adoption and drift in the files a service reads, on the bed's swarm (dh4, dh5 managers, dh6
worker): a stack started by a plain `docker stack deploy` keeps its tasks; files bind-mounted
are read on every node through its engine (engine.nodes), configs and secrets are named by their
content, a service labelled dev.deployer.reload-signal gets the signal on every task."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from tests.integration.conftest import CONVERGE_SECONDS, REGISTRY, SwarmSpace, ok
from tests.integration.test_inputs_drift import COMPOSE, FILES, INCLUDED
from tests.integration.test_swarm_prune import with_nodes

pytestmark = pytest.mark.integration

# A plain `docker stack deploy` reads no .env: the values come from the shell. web's are not
# the declared ones (LOG_LEVEL debug).
PLAIN_VALUES = {"WEB_TAG": "1.0.0", "LOG_LEVEL": "debug"}


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
    registry = stack.swarm.node_image(REGISTRY)
    subprocess.run(
        ["docker", "stack", "deploy", "-c", "compose.yml", stack.project],
        cwd=stack.environments / "app",
        env={
            **os.environ,
            **PLAIN_VALUES,
            "DOCKER_HOST": stack.swarm.manager_urls[0],
            "REGISTRY": registry,
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
    # The services and files of test_inputs_drift: web and api (in an included file)
    # bind-mount theirs, worker reads a config's, db a secret's; proxy reloads on SIGHUP.
    stack.write("app/compose.yml", COMPOSE)
    stack.write("app/sub/compose.yml", INCLUDED)
    for path, text in FILES.items():
        stack.write(path, text)
    stack.append("app/.env", "WEB_LEVEL=info\n")
    with_nodes(stack, stack.swarm.numbers)
    ok(stack.deploy("test", "--yes"))
    before = converged(stack)

    stack.write("app/conf/app.conf", "listen 9090\n")
    stack.write("app/sub/api.conf", "timeout 9\n")
    found = changes(stack)

    assert {n: (a, [c.split(":")[0] for c in cs]) for n, (a, cs) in found.items()} == {
        "api": ("restart", ["file sub/api.conf changed"]),
        "web": ("restart", ["file conf/app.conf changed"]),
    }
    ok(stack.deploy("test", "--yes"))
    middle = converged(stack)
    assert sorted(n for n in middle if middle[n] != before[n]) == ["api", "web"]
    assert changes(stack) == {}

    stack.write("app/conf/settings.txt", "workers=4\n")
    stack.write("app/conf/db_password.txt", "rotated-file-canary-6262\n")
    stack.write("app/conf/proxy.conf", "upstream web2\n")
    shown = stack.deploy("diff", "test")
    found = changes(stack)
    assert {n: a for n, (a, _) in found.items()} == {
        "db": "update",
        "proxy": "signal",
        "worker": "update",
    }
    assert found["proxy"][1][-1] == "reloads on SIGHUP (dev.deployer.reload-signal): not restarted"
    assert "rotated-file-canary" not in shown.stdout + shown.stderr
    ok(stack.deploy("test", "--yes"))
    after = converged(stack)
    assert sorted(n for n in after if after[n] != middle[n]) == ["db", "worker"]
    hostnames = stack.swarm.hostnames()
    for task in stack.running_tasks("proxy"):
        node = stack.swarm.client(stack.swarm.number(hostnames[task["NodeID"]]))
        container = node.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        deadline = time.monotonic() + 10
        while container.exec_run(["cat", "/tmp/signals"]).output != b"hup\n":
            assert time.monotonic() < deadline, "a task of proxy got no SIGHUP"
            time.sleep(0.2)
    assert changes(stack) == {}
