"""`deploy ENV` and `deploy rollback ENV`: make a target run a desired state, the spec's or a
release's, through the one flow of a state-changing command (session.change)."""

from __future__ import annotations

from typing import Any

from deployer.commands.session import Held, Interaction, Operation, change
from deployer.infra.registry import Login
from deployer.state.releases import history
from deployer.targets.base import Check, Planned, Result, Target


class Deploy(Operation[Planned, Result]):
    """Deploy the spec's desired state. The first plan is made without the lock, so that a
    deploy with nothing to do stays cheap and takes nothing."""

    verb = "deploy"

    def __init__(
        self, target: Target[Any, Any], ui: Interaction, command: str, save_login: bool = False
    ) -> None:
        super().__init__(target, ui)
        self.name, self.save_login = command, save_login
        self.login: Login | None = None

    def probe(self) -> Planned | None:
        with self.target.resolving(self.ui.redact) as desired:
            planned: Planned = self.target.plan(desired, self.ui.redact, Check.STRICT)
        return planned

    def plan(self, held: Held, first: Planned | None) -> Planned:
        assert first is not None  # probe() always plans
        planned: Planned = self.target.replan(first, self.ui.redact)
        return planned

    def show(self, planned: Planned) -> None:
        self.ui.show_plans(planned.plans)

    def in_sync(self, planned: Planned) -> bool:
        return not planned.changes_anything

    def unchanged(self, planned: Planned) -> Result:
        return self.target.unchanged(planned)

    def prepare(self, planned: Planned) -> None:
        self.login = self.target.prepare(planned, self.ui.redact)

    def question(self, planned: Planned) -> str:
        return self.target.question(planned)

    def command(self, planned: Planned) -> str:
        return self.name

    def released(self, planned: Planned) -> Planned:
        return planned

    def apply(self, planned: Planned) -> Result:
        return self.target.apply(planned, self.ui.progress, self.login)

    def after(self, done: Result) -> None:
        if self.save_login and self.login is not None:
            self.target.save_login(self.login)


class Rollback(Deploy):
    """Deploy a release's desired state: its exact images with the configuration it recorded,
    on each host as it recorded them. The release is chosen under the lock."""

    verb = "rollback"

    def __init__(self, target: Target[Any, Any], ui: Interaction, to: int | None) -> None:
        super().__init__(target, ui, "")
        self.to = to

    def probe(self) -> None:
        return None

    def plan(self, held: Held, first: Planned | None) -> Planned:
        release = self.target.rollback_target(history(held.store), self.to)
        self.name = f"rollback to release {release.number}"
        desired = self.target.release_state(release, self.ui.redact)
        planned: Planned = self.target.plan(lambda: desired, self.ui.redact, Check.SKIP)
        return planned


def deploy(
    target: Target[Any, Any],
    ui: Interaction,
    command: str,
    lock_wait: float = 0.0,
    save_login: bool = False,
) -> Result:
    """Plan, confirm where the spec asks, apply under the environment's lock, wait until what
    changed is ready, record the release; a failure that changed something is undone."""
    return change(Deploy(target, ui, command, save_login), lock_wait)


def rollback(
    target: Target[Any, Any], ui: Interaction, to: int | None, lock_wait: float = 0.0
) -> Result:
    """Redeploy release `to` (default: the last good one before the current)."""
    return change(Rollback(target, ui, to), lock_wait)
