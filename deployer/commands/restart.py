"""`deploy restart ENV [SERVICE ...]`: restart services and wait until they are ready again; on
several hosts one after the other, each ready before the next starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from deployer.commands.session import Held, Interaction, Operation, change, host_by_host
from deployer.core.desired import DesiredState, named_services
from deployer.core.results import ByHost, Restarted, SwarmApplied
from deployer.targets.base import Place, Target


@dataclass(frozen=True)
class Restarting:
    desired: DesiredState
    services: list[str]  # those named, or all


class Restart(Operation[Restarting, Restarted | SwarmApplied]):
    verb = "restart"

    def __init__(self, part: Place[Any], ui: Interaction, services: Sequence[str]) -> None:
        super().__init__(part, ui)
        self.part, self.services = part, list(services)

    def probe(self) -> Restarting:
        desired = self.part.resolve(self.ui.redact)
        return Restarting(desired, named_services(desired, self.services))

    def plan(self, held: Held, first: Restarting | None) -> Restarting:
        assert first is not None  # probe() always plans
        return first

    def question(self, planned: Restarting) -> str:
        return f"Restart {', '.join(planned.services)} in {self.part.env.name}?"

    def command(self, planned: Restarting) -> str:
        return f"restart {' '.join(self.services)}".rstrip()

    def changes(self, planned: Restarting) -> Sequence[str]:
        return planned.services

    def apply(self, planned: Restarting) -> Restarted | SwarmApplied:
        return self.part.restart(planned.desired, planned.services, self.ui.progress)


def restart(
    target: Target[Any, Any], ui: Interaction, services: Sequence[str], lock_wait: float = 0.0
) -> ByHost[Restarted | SwarmApplied]:
    """Restart the services (all when none named) on each host in turn; the first host that
    fails stops it."""
    what = ", ".join(services) or "every service"
    question = (
        f"Restart {what} in {target.env.name} on {len(target.hosts)} hosts, one after the other?"
    )
    return host_by_host(
        target, ui, question, lambda part, ui, _: change(Restart(part, ui, services), lock_wait)
    )
