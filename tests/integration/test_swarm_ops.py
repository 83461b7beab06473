"""`deploy logs` and `deploy down` of a swarm environment, on the bed's real swarm (dh4, dh5
managers, dh6 worker). The stack is deployed with the invocation `deploy render` shows
(SwarmSpace.stack_deploy), or with `deploy test` where a release is wanted."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys

import pytest

from deployer.core.results import SUCCESS
from tests.integration.conftest import SwarmSpace, ok
from tests.integration.test_faults import ended, start

pytestmark = pytest.mark.integration

CANARY = "canary-pw-7d1e"
# web's two tasks on two nodes, each printing the secret; worker prints only its start.
LOGGING_COMPOSE = """\
services:
  web:
    image: ${REGISTRY}/testapp:1.0.0
    environment:
      DB_PASSWORD: ${DB_PASSWORD}
    command: ["sh", "-c", "echo password is $$DB_PASSWORD; exec httpd -f -p 8080 -h /www"]
    deploy:
      replicas: 2
      placement: {max_replicas_per_node: 1}
  worker:
    image: ${REGISTRY}/testapp:1.0.0
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""
WEB_START = "app 1.0.0 starting: sh -c echo password is $DB_PASSWORD; exec httpd -f -p 8080 -h /www"


def task_nodes(stack: SwarmSpace, service: str) -> dict[int, str]:
    """The node (hostname) of each running task of a service of the stack, by slot."""
    api = stack.swarm.client(4).api
    hostnames = {n["ID"]: n["Description"]["Hostname"] for n in api.nodes()}
    tasks = api.tasks(filters={"service": f"{stack.project}_{service}", "desired-state": "running"})
    return {t["Slot"]: hostnames[t["NodeID"]] for t in tasks}


def leftovers(stack: SwarmSpace) -> tuple[list[str], list[str]]:
    """The stack's services and networks on the swarm, by name."""
    api = stack.swarm.client(4).api
    label = {"label": f"com.docker.stack.namespace={stack.project}"}
    services = sorted(s["Spec"]["Name"] for s in api.services(filters=label))
    return services, sorted(n["Name"] for n in api.networks(filters=label))


def test_logs_of_every_task_on_every_node_with_the_secret_masked(stack: SwarmSpace) -> None:
    stack.write("app/compose.yml", LOGGING_COMPOSE)
    stack.append("app/.env", f"DB_PASSWORD={CANARY}\n")
    stack.stack_deploy()
    web, [worker] = task_nodes(stack, "web"), task_nodes(stack, "worker").values()
    assert len(set(web.values())) == 2  # one task per node

    every = ok(stack.deploy("logs", "test"))

    assert sorted(every.stdout.splitlines()) == sorted(
        [f"web.{slot}@{node}    | {WEB_START}" for slot, node in web.items()]
        + [f"web.{slot}@{node}    | password is ***" for slot, node in web.items()]
        + [f"worker.1@{worker}    | app 1.0.0 starting: httpd -f -p 8080 -h /www"]
    )
    assert every.stderr == ""
    last = ok(stack.deploy("logs", "test", "web", "worker", "--tail", "1"))
    assert sorted(last.stdout.splitlines()) == sorted(
        [f"web.{slot}@{node}    | password is ***" for slot, node in web.items()]
        + [f"worker.1@{worker}    | app 1.0.0 starting: httpd -f -p 8080 -h /www"]
    )

    # --follow until a terminal's Ctrl-C (the whole process group): an interrupt, exit 130.
    following = start(
        stack, "logs", "test", "web", "--follow", "--tail", "1", new_group=True,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert following.stdout is not None
    assert following.stdout.readline().endswith("| password is ***\n")
    os.killpg(following.pid, signal.SIGINT)
    code, rest = ended(following)
    following.stdout.close()
    assert (code, rest) == (130, "interrupted\n")


def test_logs_of_a_service_not_declared_or_not_on_the_swarm_is_one_line(
    stack: SwarmSpace,
) -> None:
    undeclared = stack.deploy("logs", "test", "web", "nope")
    absent = stack.deploy("logs", "test", "web")

    assert (undeclared.returncode, undeclared.stdout, undeclared.stderr) == (
        1,
        "",
        "error: no service nope in test (services: web, worker)\n",
    )
    assert (absent.returncode, absent.stdout, absent.stderr) == (
        1,
        "",
        "error: test has no web on the swarm yet (`deploy test` creates it)\n",
    )


def test_logs_and_down_through_a_swarm_worker_are_one_line(stack: SwarmSpace) -> None:
    worker = stack.swarm.bed.unix(6)
    stack.write(
        "test.yml",
        f"project: {stack.project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        f"engine: {{host: '{worker}', orchestrator: swarm}}\n",
    )
    for command in (["logs", "test"], ["down", "test", "--yes"]):
        result = stack.deploy(*command)
        assert (result.returncode, result.stdout, result.stderr) == (
            1,
            "",
            f"error: {worker} is not a swarm manager, it is a swarm worker: name a manager in "
            "engine.host (or make this engine one: docker swarm init)\n",
        ), command


def test_down_removes_the_stack_and_keeps_history_and_audit(stack: SwarmSpace) -> None:
    ok(stack.deploy("test", "--yes"))
    history = ok(stack.deploy("history", "test", "--json")).json()
    assert isinstance(history, list)
    assert [r["command"] for r in history] == ["deploy test"]
    assert leftovers(stack) == (
        [f"{stack.project}_web", f"{stack.project}_worker"],
        [f"{stack.project}_default"],
    )

    result = ok(stack.deploy("down", "test", "--yes"))

    assert result.stdout == f"test is down: stack {stack.project} removed (web, worker)\n"
    assert leftovers(stack) == ([], [])  # networks too: down waited for them
    assert ok(stack.deploy("history", "test", "--json")).json() == history
    audit = ok(stack.deploy("audit", "test", "--json")).json()
    assert isinstance(audit, list)
    assert [(e["command"], e["result"]) for e in audit] == [
        ("deploy test", SUCCESS),
        ("down", SUCCESS),
    ]
    assert audit[-1]["changes"] == ["service web removed", "service worker removed"]
    refused = stack.deploy("down", "test", "--volumes", "--yes")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.startswith("error: test is a swarm stack: its volumes are on each node")


def down_on_a_terminal(stack: SwarmSpace, answer: str) -> tuple[int, str, str]:
    """`deploy down test` with its stdin a terminal, answering `answer` to its question."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deployer", "down", "test"],
            cwd=stack.root,
            env={**os.environ, **stack.env},
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(controller, f"{answer}\n".encode())
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(controller)
        os.close(terminal)
    return proc.returncode, out, err


def test_down_asks_where_the_spec_says_so_and_a_no_changes_nothing(stack: SwarmSpace) -> None:
    stack.append("test.yml", "deploy: {confirm: true}\n")
    stack.stack_deploy()
    before = leftovers(stack)

    no_terminal = stack.deploy("down", "test")
    no = down_on_a_terminal(stack, "n")

    assert (no_terminal.returncode, no_terminal.stdout, no_terminal.stderr) == (
        1,
        "",
        "error: test asks for confirmation and there is no terminal to ask on: pass --yes\n",
    )
    question = f"Remove the stack {stack.project} of test, its services and networks? [y/N]: "
    assert no == (1, question, "error: test: not confirmed; nothing changed\n")
    assert leftovers(stack) == before
    assert ok(stack.deploy("audit", "test", "--json")).json() == []

    yes = down_on_a_terminal(stack, "y")
    assert yes == (0, f"{question}test is down: stack {stack.project} removed (web, worker)\n", "")
    assert leftovers(stack) == ([], [])
