"""Deploy, restore and interrupt on one engine, end to end through the commands over the compose
target on in-memory fakes: what runs afterwards, the error raised, and the release and audit
entry written whatever ends a command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deployer.commands.deploy import deploy, rollback
from deployer.commands.session import Interaction
from deployer.compose.resolve import restore_state
from deployer.core.errors import CommandFailedError, RolledBackError, UnhealthyServiceError
from deployer.core.plan import Plan
from deployer.core.spec import Spec
from deployer.core.variables import Redactor, Variable, Variables
from deployer.infra.engine import Engine
from deployer.state import audit
from deployer.state.releases import Release, Secrets, ServiceRelease, history
from deployer.targets.base import Environment, Outside
from deployer.targets.host.target import HostTarget
from tests.unit.fakes import ACTOR, FakeCompose, FakeEngine, FakeStore

GOOD, BAD = ["httpd", "-f"], ["false"]
DIGEST = "sha256:" + "d1" * 32
PINNED = f"reg/web@{DIGEST}"
IMAGE_ID = "sha256:" + "e1" * 32
IMAGES = [
    {
        "Id": IMAGE_ID,
        "RepoTags": ["reg/web:1.0"],
        "RepoDigests": [PINNED],
    }
]
UNHEALTHY = "service web did not become healthy within 5s (last state: Exited (1) 1 second ago)"
UP_FAILED = (
    "`docker compose --project-name shop ...` failed (exit 1): Error: port is already allocated"
)


def model(command: list[str], log_level: str = "info") -> dict[str, Any]:
    """The project as written: one service, its secret a reference to the variable."""
    environment = {"LOG_LEVEL": log_level, "DB_PASSWORD": "${DB_PASSWORD}"}
    return {
        "name": "shop",
        "services": {
            "web": {"command": command, "environment": environment, "image": "reg/web:1.0"}
        },
    }


class Silent:
    def update(self, subject: str, text: str) -> None:
        pass

    def done(self, subject: str, text: str) -> None:
        pass


@dataclass
class World:
    compose: FakeCompose
    store: FakeStore
    env: Environment
    ui: Interaction

    @property
    def target(self) -> HostTarget:
        """The environment's target, as each command loads it anew."""
        return HostTarget(self.env, Engine("unix:///fake"))

    def deploy(self, command: list[str], log_level: str = "info") -> Any:
        self.compose.model = model(command, log_level)
        return deploy(self.target, self.ui, "deploy test")

    def running(self) -> dict[str, tuple[str, str, str]]:
        """Per service: its container's state, command and image."""
        return {
            s: (c["State"], c["Command"], c["Image"]) for s, c in self.compose.containers.items()
        }

    def releases(self) -> list[tuple[int, str, str, tuple[Any, ...]]]:
        """Per release: number, command, result, and web's image, command and LOG_LEVEL."""
        return [(r.number, r.command, r.result, _web(r)) for r in history(self.store)]

    def audit(self) -> list[tuple[str, str, str]]:
        return [(e.command, e.result, e.error) for e in audit.entries(self.store)]


def _web(release: Release) -> tuple[Any, ...]:
    web = release.services["web"]
    if web.config is None:
        return (web.pinned, None)
    return (web.pinned, web.config["command"], web.config["environment"]["LOG_LEVEL"])


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path, "rollback")


def make_world(tmp_path: Path, on_failure: str) -> World:
    spec_file = tmp_path / "test.yml"
    spec_file.write_text("project: shop\n")
    spec = Spec(
        "test", spec_file, "shop", (tmp_path / "compose.yml",), (), frozenset(), {}, False, 5.0,
        None, on_failure,
    )  # fmt: skip
    variables = Variables(
        {
            "LOG_LEVEL": Variable("LOG_LEVEL", "info", ".env:1", False),
            "DB_PASSWORD": Variable("DB_PASSWORD", "hunter22", ".env:2", True),
        }
    )
    compose = FakeCompose(model(GOOD), images=IMAGES)
    store = FakeStore("shop")
    outside = Outside(
        run=compose,
        connect=lambda engine: FakeEngine(compose),  # type: ignore[arg-type,return-value]
        store=lambda client, project: store,
        actor=lambda: ACTOR,
    )
    shown: list[Plan] = []
    ui = Interaction(
        Silent(), lambda question: True, lambda plans: shown.extend(p for _, p in plans), Redactor()
    )
    return World(compose, store, Environment(spec, variables, outside), ui)


def exits_with(command: list[str]) -> Any:
    return lambda config: "exits" if config.get("command") == command else "healthy"


def test_a_deploy_records_each_service_configuration_with_secrets_by_reference(
    world: World,
) -> None:
    world.deploy(GOOD)

    [release] = history(world.store)
    assert (release.number, release.result, release.services) == (
        1,
        "success",
        {
            "web": ServiceRelease(
                "reg/web:1.0",
                IMAGE_ID,
                PINNED,
                {
                    "command": GOOD,
                    "environment": {"LOG_LEVEL": "info", "DB_PASSWORD": "${DB_PASSWORD}"},
                    "image": "reg/web:1.0",
                },
            )
        },
    )
    assert world.audit() == [("deploy test", "success", "")]
    assert world.store.current is None


def test_an_unhealthy_service_is_rolled_back_to_its_old_configuration(world: World) -> None:
    world.deploy(GOOD)
    world.compose.behaviour = exits_with(BAD)

    with pytest.raises(RolledBackError) as raised:
        world.deploy(BAD)

    assert raised.value.message == f"{UNHEALTHY}; rolled back: web"
    assert world.running() == {"web": ("running", "httpd -f", PINNED)}
    assert world.releases() == [
        (2, "deploy test", "rolled back", (PINNED, GOOD, "info")),
        (1, "deploy test", "success", (PINNED, GOOD, "info")),
    ]
    assert world.audit() == [
        ("deploy test", "success", ""),
        ("deploy test", "rolled back", UNHEALTHY),
    ]


def test_a_failing_up_after_a_container_was_replaced_is_rolled_back(world: World) -> None:
    world.deploy(GOOD)
    world.compose.behaviour = lambda config: "fails" if config["command"] == BAD else "healthy"

    with pytest.raises(RolledBackError) as raised:
        world.deploy(BAD)

    assert raised.value.message == f"{UP_FAILED}; rolled back: web"
    assert world.running() == {"web": ("running", "httpd -f", PINNED)}
    assert world.releases()[0] == (2, "deploy test", "rolled back", (PINNED, GOOD, "info"))
    assert world.audit()[-1] == ("deploy test", "rolled back", UP_FAILED)


def test_a_failing_up_that_replaced_nothing_is_not_rolled_back(world: World) -> None:
    world.deploy(GOOD)
    world.compose.raise_on_up = CommandFailedError(["docker", "compose"], 1, "no such network")

    with pytest.raises(CommandFailedError):
        world.deploy(BAD)

    assert world.compose.ups == 2
    assert world.running() == {"web": ("running", "httpd -f", "reg/web:1.0")}
    # web still runs release 1's container: its configuration, as release 1 recorded it.
    assert world.releases()[0] == (2, "deploy test", "failed", (PINNED, GOOD, "info"))
    assert world.audit()[-1] == (
        "deploy test",
        "failed",
        "`docker compose ...` failed (exit 1): no such network",
    )


def test_a_failed_rollback_is_recorded_with_both_failures(world: World) -> None:
    world.deploy(GOOD)
    world.compose.behaviour = lambda config: "exits"

    with pytest.raises(UnhealthyServiceError):
        world.deploy(BAD)

    assert world.running() == {"web": ("exited", "httpd -f", PINNED)}
    assert world.releases()[0] == (2, "deploy test", "failed", (PINNED, GOOD, "info"))
    assert world.audit()[-1] == (
        "deploy test",
        "failed",
        f"{UNHEALTHY}; the rollback failed too: {UNHEALTHY}",
    )


def test_without_rollback_a_failure_is_recorded_as_failed(tmp_path: Path) -> None:
    world = make_world(tmp_path, "stop")
    world.deploy(GOOD)
    world.compose.behaviour = exits_with(BAD)

    with pytest.raises(UnhealthyServiceError):
        world.deploy(BAD)

    assert world.running() == {"web": ("exited", "false", "reg/web:1.0")}
    assert world.releases()[0] == (2, "deploy test", "failed", (PINNED, BAD, "info"))
    assert world.audit()[-1] == ("deploy test", "failed", UNHEALTHY)


def test_an_interrupt_during_apply_is_recorded_with_what_runs(world: World) -> None:
    world.deploy(GOOD)
    world.compose.interrupt_ups = frozenset({2})

    with pytest.raises(KeyboardInterrupt):
        world.deploy(GOOD, log_level="debug")

    assert world.releases()[0] == (2, "deploy test", "interrupted", (PINNED, GOOD, "debug"))
    assert world.audit()[-1] == ("deploy test", "interrupted", "")
    assert world.store.current is None


def test_an_interrupt_during_the_rollback_is_recorded(world: World) -> None:
    world.deploy(GOOD)
    world.compose.behaviour = exits_with(BAD)
    world.compose.interrupt_ups = frozenset({3})

    with pytest.raises(KeyboardInterrupt):
        world.deploy(BAD)

    assert world.running() == {"web": ("running", "httpd -f", PINNED)}
    assert world.releases()[0] == (2, "deploy test", "interrupted", (PINNED, GOOD, "info"))
    assert world.audit()[-1] == (
        "deploy test",
        "interrupted",
        f"{UNHEALTHY}; interrupted during the rollback",
    )


def test_an_unexpected_error_is_recorded(world: World) -> None:
    world.deploy(GOOD)
    world.compose.raise_on_up = RuntimeError("boom")

    with pytest.raises(RuntimeError):
        world.deploy(BAD)

    assert world.releases()[0] == (2, "deploy test", "failed", (PINNED, GOOD, "info"))
    assert world.audit()[-1] == ("deploy test", "failed", "unexpected error: RuntimeError: boom")


def test_rollback_restores_the_configuration_of_the_release(world: World) -> None:
    world.deploy(GOOD)
    world.deploy(GOOD, log_level="debug")

    rollback(world.target, world.ui, None)

    assert world.releases() == [
        (3, "rollback to release 1", "success", (PINNED, GOOD, "info")),
        (2, "deploy test", "success", (PINNED, GOOD, "debug")),
        (1, "deploy test", "success", (PINNED, GOOD, "info")),
    ]


def test_a_release_number_taken_already_is_passed_over(world: World) -> None:
    world.store.kept[("release", "000002")] = "{damaged"
    world.deploy(GOOD)
    world.deploy(GOOD, log_level="debug")

    assert [(n, result) for n, _, result, _ in world.releases()] == [
        (3, "success"),
        (1, "success"),
    ]
    assert world.store.kept[("release", "000002")] == "{damaged"


def test_a_restore_resolves_secret_references_and_takes_masked_secrets_as_they_are_now(
    world: World,
) -> None:
    world.compose.model = model(BAD, "debug")
    world.compose.model["services"]["web"]["environment"]["API_KEY"] = "k-2"  # from an env_file
    current = world.target.resolve(Redactor())
    recorded = {
        "command": GOOD,
        "environment": {
            "LOG_LEVEL": "info",
            "DB_PASSWORD": "${DB_PASSWORD}",
            "API_KEY": "***",
            "OLD_TOKEN": "***",
        },
        "image": "reg/web:1.0",
    }
    target = ServiceRelease("reg/web:1.0", IMAGE_ID, PINNED, recorded)

    secrets = Secrets({"DB_PASSWORD": "hunter22"})
    state = restore_state(current, {"web": target}, secrets, Engine("unix:///fake"), world.compose)

    assert state.model["services"] == {
        "web": {
            "command": GOOD,
            "environment": {"LOG_LEVEL": "info", "DB_PASSWORD": "hunter22", "API_KEY": "k-2"},
            "image": PINNED,
        }
    }
    assert sorted(state.services["web"].secret_parts) == [
        "environment.API_KEY",
        "environment.DB_PASSWORD",
    ]
