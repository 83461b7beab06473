"""The swarm target's logs and down as commands (data): whole argv and environment."""

from __future__ import annotations

from deployer.core.command import Command
from deployer.infra.engine import Engine
from deployer.targets.swarm.commands import log_line, service_logs, stack_rm

MANAGER = Engine("ssh://deploy@manager1")
MANAGER_ENV = {
    "DOCKER_HOST": "ssh://deploy@manager1",
    "DOCKER_TLS_VERIFY": "",
    "DOCKER_CERT_PATH": "",
}


def test_service_logs_of_one_service_of_the_stack() -> None:
    assert service_logs(MANAGER, "shop", "web", False, None, None) == Command(
        ("docker", "service", "logs", "--no-task-ids", "shop_web"), MANAGER_ENV
    )


def test_service_logs_follow_since_and_tail() -> None:
    assert service_logs(MANAGER, "shop", "web", True, "10m", 0) == Command(
        (
            "docker", "service", "logs", "--no-task-ids", "--follow", "--since", "10m",
            "--tail", "0", "shop_web",
        ),
        MANAGER_ENV,
    )  # fmt: skip


def test_a_log_line_leaves_the_stack_name_out() -> None:
    assert log_line("shop", "shop_web.2@dh5    | hello shop_x") == "web.2@dh5    | hello shop_x"
    assert log_line("shop", "error from daemon in stream") == "error from daemon in stream"


def test_stack_rm() -> None:
    assert stack_rm(MANAGER, "shop") == Command(("docker", "stack", "rm", "shop"), MANAGER_ENV)
