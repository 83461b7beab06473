"""The commands that only read: `deploy diff`, `status`, `history` and `audit`."""

from __future__ import annotations

from typing import Any

from deployer.core.results import Diff, Divergence, Statuses
from deployer.core.status import SwarmStatus
from deployer.core.variables import Redactor
from deployer.state import audit as audit_trail
from deployer.state.audit import AuditEntry
from deployer.state.releases import Release, history
from deployer.targets.base import Target


def diff(target: Target[Any, Any], redact: Redactor) -> Diff:
    """What `deploy` would change on each host, and why; a registry that cannot be asked about
    a tag leaves a warning in the plan (`Plan.unchecked`), not an error."""
    return target.diff(redact)


def status(target: Target[Any, Any], redact: Redactor) -> Statuses | SwarmStatus:
    return target.status(redact)


def releases(target: Target[Any, Any]) -> tuple[list[Release], list[Divergence]]:
    """The releases, newest first (read from every host that answers), and the hosts whose
    running services are not those their newest release recorded."""
    found = history(target.store(reading=True))
    return found, target.divergences(found)


def audit(target: Target[Any, Any]) -> list[AuditEntry]:
    return audit_trail.entries(target.store(reading=True))
