"""`deploy down ENV [--volumes]`: remove what runs (a swarm's whole stack); with `--volumes`, the
project's volumes too, after a question that names them whatever the spec says. deployer's own
records (history, audit) stay."""

from __future__ import annotations

from typing import Any

from deployer.commands.session import Held, Interaction, Operation, change, host_by_host
from deployer.core.errors import ConfirmationRefusedError
from deployer.core.results import ByHost, TakenDown
from deployer.targets.base import REMOVE_VOLUMES, Place, Target, Teardown


class Down(Operation[Teardown, TakenDown]):
    verb = "down"

    def __init__(self, part: Place[Any], ui: Interaction, volumes: bool, several: bool) -> None:
        super().__init__(part, ui)
        self.part, self.volumes, self.several = part, volumes, several

    def plan(self, held: Held, first: Teardown | None) -> Teardown:
        return self.part.teardown(self.volumes, self.several)

    def question(self, planned: Teardown) -> str:
        return planned.question

    def confirm(self, planned: Teardown) -> None:
        """Volumes are asked about whatever the spec says: their data cannot be brought back."""
        if planned.volumes is None:
            super().confirm(planned)
            return
        listed = ", ".join(planned.volumes) or "none found"
        try:
            if not self.ui.confirm(planned.question):
                raise ConfirmationRefusedError(
                    f"{self.part.env.name}: not confirmed; nothing changed"
                )
        except ConfirmationRefusedError as e:
            raise ConfirmationRefusedError(f"{e.message} (volumes: {listed})") from e

    def command(self, planned: Teardown) -> str:
        return "down --volumes" if self.volumes else "down"

    def changes(self, planned: Teardown) -> list[str]:
        return planned.removed

    def apply(self, planned: Teardown) -> TakenDown:
        return self.part.take_down(planned)


def down(
    target: Target[Any, Any], ui: Interaction, volumes: bool, lock_wait: float = 0.0
) -> ByHost[TakenDown]:
    """On one host after the other; with `volumes`, each host asks naming its own."""
    if volumes:
        target.capabilities.require(REMOVE_VOLUMES)
    question = (
        None
        if volumes
        else f"Stop and remove the containers and networks of {target.env.name} "
        f"on {len(target.hosts)} hosts?"
    )
    return host_by_host(
        target,
        ui,
        question,
        lambda part, ui, several: change(Down(part, ui, volumes, several), lock_wait),
    )
