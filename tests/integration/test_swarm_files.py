"""Configs and secrets made from files, on the bed's real swarm (dh4, dh5 managers, dh6 worker):
named by their content, so a changed file is a new config or secret the services mounting it are
updated to, `deploy diff` names the file, and the old ones go once no service uses them."""

from __future__ import annotations

import pytest

from tests.integration.conftest import SWARM_COMPOSE, SwarmSpace, ok
from tests.integration.test_swarm_drift import plan_of

pytestmark = pytest.mark.integration

FILES_COMPOSE = (
    SWARM_COMPOSE.replace(
        "    deploy:\n      replicas: 2\n",
        "    configs: [{source: app_conf, target: /etc/app.conf}]\n"
        "    secrets: [api_key]\n"
        "    deploy:\n      replicas: 2\n",
    )
    + "configs:\n  app_conf: {file: ./conf/app.conf}\n"
    + "secrets:\n  api_key: {file: ./conf/api_key.txt}\n"
)


def write_files(stack: SwarmSpace, version: int) -> None:
    stack.write("app/conf/app.conf", f"greeting = hello {version}\n")
    stack.write("app/conf/api_key.txt", f"key-{version}-canary\n")


def task_file(stack: SwarmSpace, service: str, path: str) -> list[str]:
    """What each running task of the service reads at `path`, in its container on its node."""
    hostnames = stack.swarm.hostnames()
    found = []
    for task in stack.running_tasks(service):
        node = stack.swarm.client(stack.swarm.number(hostnames[task["NodeID"]]))
        container = node.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
        code, output = container.exec_run(["cat", path])
        assert code == 0, output
        found.append(output.decode())
    return found


def stack_files(stack: SwarmSpace) -> list[str]:
    """The names of the stack's configs and secrets on the swarm."""
    manager = stack.swarm.client(4)
    label = {"label": f"com.docker.stack.namespace={stack.project}"}
    configs = [c.name for c in manager.configs.list(filters=label)]
    secrets = [s.name for s in manager.secrets.list(filters=label)]
    return sorted(configs + secrets)


def test_a_changed_file_is_a_new_config_the_service_is_updated_to_and_old_ones_go_once_unused(
    stack: SwarmSpace,
) -> None:
    stack.write("app/compose.yml", FILES_COMPOSE)
    write_files(stack, 1)
    ok(stack.deploy("test", "--yes"))
    assert task_file(stack, "web", "/etc/app.conf") == ["greeting = hello 1\n"] * 2
    assert task_file(stack, "web", "/run/secrets/api_key") == ["key-1-canary\n"] * 2
    first = stack_files(stack)
    assert len(first) == 2
    assert all(
        name.startswith((f"{stack.project}_app_conf_", f"{stack.project}_api_key_"))
        for name in first
    ), first
    worker = (stack.versions()["worker"], stack.task_ids()["worker"])

    write_files(stack, 2)
    diff = stack.deploy("diff", "test", "--json")
    assert (diff.returncode, diff.stderr, plan_of(diff)) == (
        2,
        "",
        [
            (
                "web",
                "update",
                [
                    "config app_conf: file conf/app.conf changed",
                    "secret api_key: file conf/api_key.txt changed",
                ],
            )
        ],
    )
    text = stack.deploy("diff", "test")
    assert "config app_conf: file conf/app.conf changed" in text.stdout

    ok(stack.deploy("test", "--yes"))
    assert task_file(stack, "web", "/etc/app.conf") == ["greeting = hello 2\n"] * 2
    assert task_file(stack, "web", "/run/secrets/api_key") == ["key-2-canary\n"] * 2
    # The worker mounts neither: not touched.
    assert (stack.versions()["worker"], stack.task_ids()["worker"]) == worker
    second = stack_files(stack)
    # Release 1's are web's rollback target (its previous spec): they stay for Swarm's rollback.
    assert len(second) == 4 and set(first) < set(second), second
    in_sync = stack.deploy("diff", "test")
    assert in_sync.returncode == 0, in_sync.stdout

    write_files(stack, 3)
    ok(stack.deploy("test", "--yes"))
    third = stack_files(stack)
    # Release 1's are used by no spec any more: removed; release 2's are web's previous spec.
    assert (
        len(third) == 4 and not set(first) & set(third) and set(second) - set(first) < set(third)
    ), third
    assert task_file(stack, "web", "/etc/app.conf") == ["greeting = hello 3\n"] * 2

    # A rollback mounts the files as they are now (releases record no file content).
    rolled = stack.deploy("rollback", "test", "--to", "1", "--yes")
    assert rolled.returncode == 0, rolled.stderr
    assert task_file(stack, "web", "/etc/app.conf") == ["greeting = hello 3\n"] * 2
    assert stack.deploy("diff", "test").returncode == 0
