"""`deploy down` of a swarm environment through the command, over the swarm target on an
in-memory manager: the one
command it runs, the wait for the stack's networks, its bound, and the audit entry either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer.commands.down import down
from deployer.commands.session import Interaction
from deployer.core.command import Command, Completed
from deployer.core.errors import DeployerError
from deployer.core.results import TakenDown
from deployer.core.spec import SWARM, Spec
from deployer.core.variables import Redactor, Variables
from deployer.infra.engine import Engine
from deployer.state import audit
from deployer.targets.base import Environment, Outside
from deployer.targets.swarm.commands import stack_rm
from deployer.targets.swarm.target import SwarmTarget
from tests.unit.fakes import ACTOR, FakeStore
from tests.unit.test_operations import Silent

MANAGER = Engine("unix:///fake/manager.sock")


class FakeManager:
    """A swarm manager with the stack `shop`: `docker stack rm` removes its services at once,
    its network only after `network_looks` more looks (once its tasks have stopped)."""

    def __init__(self, network_looks: int) -> None:
        self.services = [{"ID": f"id-{n}", "Spec": {"Name": f"shop_{n}"}} for n in ("web", "db")]
        self.networks = [{"Name": "shop_default"}]
        self.network_looks = network_looks
        self.ran: list[Command] = []

    def run(self, command: Command, check: bool = True) -> Completed:
        self.ran.append(command)
        self.services = []
        return Completed(0, "Removing service shop_web\n", "")

    def swarm_manager(self) -> None:
        pass

    def stack_services(self, project: str) -> list[dict[str, Any]]:
        return list(self.services)

    def service_tasks(self, service_ids: list[str]) -> list[dict[str, Any]]:
        return []

    def nodes(self) -> list[dict[str, Any]]:
        return []

    def stack_networks(self, project: str) -> list[dict[str, Any]]:
        if self.ran:
            self.network_looks -= 1
            if self.network_looks < 0:
                self.networks = []
        return list(self.networks)


def target(tmp_path: Path, manager: FakeManager, store: FakeStore, wait: float) -> SwarmTarget:
    spec = Spec(
        "prod", tmp_path / "prod.yml", "shop", (), (), frozenset(), {}, False, wait,
        MANAGER.host, orchestrator=SWARM,
    )  # fmt: skip
    outside = Outside(
        run=manager.run,
        connect=lambda engine: manager,  # type: ignore[arg-type,return-value]
        swarm_store=lambda client, project: store,
        actor=lambda: ACTOR,
    )
    return SwarmTarget(Environment(spec, Variables({}), outside), MANAGER)


def ui() -> Interaction:
    return Interaction(Silent(), lambda question: True, lambda plans: None, Redactor())


def test_down_removes_the_stack_and_waits_for_its_network(tmp_path: Path) -> None:
    manager, store = FakeManager(network_looks=2), FakeStore("shop")

    done = down(target(tmp_path, manager, store, 30.0), ui(), volumes=False)

    [outcome] = done.outcomes
    assert outcome.value == TakenDown("prod", stack="shop", services=("db", "web"))
    assert manager.ran == [stack_rm(MANAGER, "shop")]
    assert manager.networks == []
    [entry] = audit.entries(store)
    assert (entry.command, entry.result, entry.changes, entry.error) == (
        "down",
        "success",
        ["service db removed", "service web removed"],
        "",
    )
    assert store.current is None  # the lock is released


def test_a_network_that_stays_fails_down_once_the_wait_is_over(tmp_path: Path) -> None:
    manager, store = FakeManager(network_looks=10**9), FakeStore("shop")

    with pytest.raises(DeployerError) as failed:
        down(target(tmp_path, manager, store, 0.3), ui(), volumes=False)

    message = "the stack shop was removed, but after 0.3s the swarm still has network shop_default"
    assert failed.value.message == message
    [entry] = audit.entries(store)
    assert (entry.command, entry.result, entry.error) == ("down", "failed", message)
