"""Plans: `deploy diff`, and the plan a deploy shows before it applies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deployer.cli.render.table import counted, heading, per_host, table, unknown_text
from deployer.core.desired import START_FIRST, STOP_FIRST
from deployer.core.plan import Change, Plan
from deployer.core.results import Diff, HostOutcome
from deployer.core.variables import Redactor


def plan_document(plan: Plan) -> dict[str, Any]:
    return {"environment": plan.environment, "project": plan.project, **_plan_fields(plan)}


def _plan_fields(plan: Plan) -> dict[str, Any]:
    return {
        "in_sync": plan.in_sync,
        "changes": [_change_fields(c) for c in plan.changes],
        "notes": list(plan.notes),
    }


def _change_fields(change: Change) -> dict[str, Any]:
    """A change; one that replaces containers says in which order, and why stop-first."""
    fields: dict[str, Any] = {
        "service": change.service,
        "action": change.action,
        "causes": list(change.causes),
    }
    if change.order is not None:
        order = change.order
        fields["order"] = START_FIRST if order.start_first else STOP_FIRST
        fields["order_reason"] = order.reason or None
    return fields


def plan_text(plan: Plan, host: str | None = None) -> str:
    """The plan's table of changes, then what reading the files said (a note per line)."""
    notes = "".join(f"\nnote: {note}" for note in plan.notes)
    return _changes_text(plan, host) + notes


def _changes_text(plan: Plan, host: str | None) -> str:
    header = heading(plan.environment, plan.project, host)
    if not plan.changes:
        return f"{header}: in sync, nothing to change"
    # An ORDER column where a change replaces containers: start-first, or stop-first and why.
    ordered = any(c.order is not None for c in plan.changes)
    rows: list[tuple[str, ...]] = [("SERVICE", "ACTION", *(["ORDER"] if ordered else []), "CAUSE")]
    for change in plan.changes:
        order = [str(change.order or "")] if ordered else []
        for index, cause in enumerate(change.causes or ("",)):
            first = (change.service, change.action, *order)
            rows.append((*first, cause) if index == 0 else (*[""] * len(first), cause))
    if plan.in_sync:
        return f"{header}: in sync, nothing to change; Swarm has not converged\n" + table(rows)
    count = len(plan.changes)
    return f"{header}: {count} change{'s' if count != 1 else ''}\n" + table(rows)


def plans_text(
    environment: str, project: str, outcomes: Sequence[HostOutcome[Plan]], redact: Redactor
) -> str:
    """Each host's plan (one host: as ever), then how many hosts are in sync."""
    if len(outcomes) == 1 and outcomes[0].value is not None:
        return plan_text(outcomes[0].value)
    blocks = [
        plan_text(o.value, o.host)
        if o.value is not None
        else unknown_text(environment, project, o, redact)
        for o in outcomes
    ]
    plans = [o.value for o in outcomes if o.value is not None]
    in_sync = sum(1 for p in plans if p.in_sync)
    counts = [
        f"{in_sync} in sync",
        f"{len(plans) - in_sync} with changes",
        f"{len(outcomes) - len(plans)} unknown",
    ]
    summary = f"{heading(environment, project)}: {counted(len(outcomes), 'host')}: " + ", ".join(
        c for c in counts if not c.startswith("0 ")
    )
    return "\n\n".join([*blocks, summary])


def plans_document(
    environment: str, project: str, outcomes: Sequence[HostOutcome[Plan]], redact: Redactor
) -> dict[str, Any]:
    """Today's fields (one host: its plan; several: all hosts in sync, and every change with
    its host) and `hosts`: each host's own, with its error (in_sync and changes null) where it
    could not be read."""
    hosts = per_host(outcomes, _plan_fields, ("in_sync", "changes", "notes"), redact)
    if len(outcomes) == 1 and outcomes[0].value is not None:
        return {**plan_document(outcomes[0].value), "hosts": hosts}
    plans = [(o.host, o.value) for o in outcomes if o.value is not None]
    return {
        "environment": environment,
        "project": project,
        "in_sync": len(plans) == len(outcomes) and all(p.in_sync for _, p in plans),
        "changes": [
            {"host": host, **change} for host, p in plans for change in _plan_fields(p)["changes"]
        ],
        "hosts": hosts,
    }


def diff_text(diff: Diff, redact: Redactor) -> str:
    if not diff.by_host:
        return plan_text(_one(diff))
    return plans_text(diff.environment, diff.project, diff.outcomes, redact)


def diff_document(diff: Diff, redact: Redactor) -> dict[str, Any]:
    if not diff.by_host:
        return plan_document(_one(diff))
    return plans_document(diff.environment, diff.project, diff.outcomes, redact)


def _one(diff: Diff) -> Plan:
    """The plan of a target that is one place."""
    [outcome] = diff.outcomes
    assert outcome.value is not None  # one place: its error is the command's
    return outcome.value
