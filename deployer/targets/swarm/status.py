"""`deploy status` for the swarm target: the stack as observed, and whether it is as declared."""

from __future__ import annotations

from dataclasses import dataclass

from deployer.targets.compose.plan import Plan
from deployer.targets.swarm.observe import ObservedStack


@dataclass(frozen=True)
class SwarmStatus:
    environment: str
    stack: ObservedStack
    plan: Plan  # what `deploy diff` says: in sync or not

    @property
    def healthy(self) -> bool:
        """Every declared service on the swarm with all its tasks running, no update pending."""
        return not any(c.action in ("create", "converge") for c in self.plan.changes)
