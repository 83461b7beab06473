"""The swarm target's apply stage without a swarm: the commands it builds, where a deployed
service stands, which nodes take no task, the registry login handed to the docker CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from deployer.core.observed import ObservedService, ObservedTask
from deployer.core.plan import Change, Plan
from deployer.infra.engine import Engine
from deployer.infra.registry import Login
from deployer.targets.swarm.apply import (
    CONVERGED,
    PAUSED,
    ROLLED_BACK,
    Convergence,
    convergence,
    deployed_services,
    registry_config,
    removed_services,
    unavailable_nodes,
)
from deployer.targets.swarm.commands import service_remove, service_restart, service_rollback
from deployer.targets.swarm.stack import convert, stack_deploy

ENGINE = Engine("unix:///run/manager.sock")
CLI_ENV = {
    "DOCKER_HOST": "unix:///run/manager.sock",
    "DOCKER_TLS_VERIFY": "",
    "DOCKER_CERT_PATH": "",
}


def task(state: str = "running", current: bool = True, slot: int = 1) -> ObservedTask:
    return ObservedTask(slot, "dh4", "running", state, None, "2026-11-28T17:00:00Z", "", current)


def service(
    tasks: tuple[ObservedTask, ...], desired: int = 2, update: str | None = None, message: str = ""
) -> ObservedService:
    running = sum(t.state == "running" for t in tasks)
    return ObservedService(
        "web", "id-web", 12, {}, "reg/web:2@sha256:ab", desired, running, desired, update,
        message, tasks, "",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        (None, Convergence(None, "not on the swarm yet")),
        (service((task(), task(slot=2))), Convergence(CONVERGED, "2/2 tasks running")),
        (
            service((task(), task(slot=2)), update="completed", message="update completed"),
            Convergence(CONVERGED, "2/2 tasks running"),
        ),
        # The deploy reset UpdateStatus; the old tasks still run until the updater starts.
        (service((task(current=False), task(current=False, slot=2))), Convergence(None, "0/2 tasks running")),
        (
            service((task(), task("starting", slot=2)), update="updating", message="update in progress"),
            Convergence(None, "updating: update in progress; 1/2 tasks running"),
        ),
        (service((task(), task("starting", slot=2))), Convergence(None, "1/2 tasks running")),
        (service((task(),), desired=2), Convergence(None, "1/2 tasks running")),
        (service((), desired=0), Convergence(CONVERGED, "0/0 tasks running")),
        (
            service((task(),), desired=1, update="rollback_started", message="update rolled back due to failure"),
            Convergence(None, "rollback started: update rolled back due to failure; 1/1 tasks running"),
        ),
        (
            service((task(),), desired=1, update="rollback_completed", message="rollback completed"),
            Convergence(ROLLED_BACK, "update rolled back"),
        ),
        (
            service((task(),), desired=1, update="paused", message="update paused due to failure"),
            Convergence(PAUSED, "update paused: update paused due to failure"),
        ),
        (
            service((task(),), desired=1, update="rollback_paused", message="rollback paused"),
            Convergence(PAUSED, "update rollback_paused: rollback paused"),
        ),
    ],
)  # fmt: skip
def test_where_a_deployed_service_stands(
    observed: ObservedService | None, expected: Convergence
) -> None:
    assert convergence(observed) == expected


def test_the_plan_says_which_services_go_to_stack_deploy_and_which_are_removed() -> None:
    plan = Plan(
        "production",
        "shop",
        (
            Change("api", "update", ("image a -> b",)),
            Change("cron", "remove", ("not in the spec: --prune removes it",)),
            Change("db", "converge", ("1/2 tasks running",)),
            Change("web", "create", ("not on the swarm",)),
        ),
    )
    assert (deployed_services(plan), removed_services(plan)) == (["api", "web"], ["cron"])


def test_only_the_changed_services_are_handed_to_stack_deploy_without_prune() -> None:
    model: dict[str, Any] = {
        "services": {"api": {"image": "reg/api:2"}, "web": {"image": "reg/web:1"}},
        "networks": {"default": {}},
    }
    stack = convert(model)
    command = stack_deploy("shop", ENGINE, stack.only(["api"]), True, prune=False)
    assert command.argv == (
        "docker", "stack", "deploy", "--compose-file", "-", "--with-registry-auth", "shop",
    )  # fmt: skip
    assert command.env == CLI_ENV
    sent = stack.only(["api"]).document
    assert sent == {**stack.document, "services": {"api": stack.document["services"]["api"]}}
    assert command.stdin == stack.only(["api"]).text()


def test_service_commands_as_data() -> None:
    assert [
        (c.argv, c.env)
        for c in (
            service_remove(ENGINE, "shop", ["cron", "old"]),
            service_rollback(ENGINE, "shop", "web"),
            service_restart(ENGINE, "shop", "web"),
        )
    ] == [
        (("docker", "service", "rm", "shop_cron", "shop_old"), CLI_ENV),
        (("docker", "service", "rollback", "--detach", "--quiet", "shop_web"), CLI_ENV),
        (("docker", "service", "update", "--force", "--detach", "--quiet", "shop_web"), CLI_ENV),
    ]


def test_nodes_that_take_no_task_are_named_with_why() -> None:
    def node(name: str, availability: str = "active", state: str = "ready") -> dict[str, Any]:
        return {
            "ID": f"id-{name}",
            "Description": {"Hostname": name},
            "Spec": {"Availability": availability},
            "Status": {"State": state},
        }

    nodes = [node("dh4"), node("dh6", availability="drain"), node("dh5", state="down")]
    nodes.append(node("dh7", availability="pause", state="down"))
    assert unavailable_nodes(nodes) == ["dh5 (down)", "dh6 (drain)", "dh7 (pause)"]


def test_the_registry_login_reaches_the_docker_cli_in_a_private_config_removed_afterwards() -> None:
    with registry_config(None) as nothing:
        assert nothing == {}
    with registry_config(Login("reg.example:5000", "ci", "s3cr3t pass")) as env:
        folder = Path(env["DOCKER_CONFIG"])
        config = folder / "config.json"
        assert json.loads(config.read_text()) == {
            "auths": {"reg.example:5000": {"auth": "Y2k6czNjcjN0IHBhc3M="}}
        }
        assert (os.stat(folder).st_mode & 0o777, os.stat(config).st_mode & 0o777) == (0o700, 0o600)
    assert not folder.exists()
