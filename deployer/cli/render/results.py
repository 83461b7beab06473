"""What state-changing commands did: deploys, rollouts, restarts, downs, prunes, builds,
promotions; and log lines by host."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar
from urllib.parse import urlsplit

from deployer.cli.render.model import masked
from deployer.cli.render.plans import plan_document
from deployer.cli.render.table import per_host, table
from deployer.core.errors import shown_path
from deployer.core.observed import ObservedContainer
from deployer.core.plan import Plan
from deployer.core.reference import short_id
from deployer.core.results import (
    Applied,
    Built,
    HostOutcome,
    Promotion,
    Pruned,
    Restarted,
    Rollout,
    SwarmApplied,
    TakenDown,
)
from deployer.core.variables import Redactor

T = TypeVar("T")


def build_text(built: Sequence[Built]) -> str:
    lines = []
    for image in built:
        if image.already_there:
            lines.append(
                f"{image.service}: {image.image} is in the registry already ({image.pushed})"
            )
        elif image.pushed:
            lines.append(f"{image.service}: pushed {image.image} ({image.pushed})")
        else:
            lines.append(f"{image.service}: built {image.image} ({image.image_id})")
    return "\n".join(lines)


def _applied_lines(done: str, plan: Plan, target: str, seconds: float) -> list[str]:
    """What an applied plan did: `deployed ENV (project P) in Ns`, then each change."""
    lines = [f"{done} {plan.environment} ({target} {plan.project}) in {seconds:.1f}s"]
    return lines + [f"  {change.action:<9} {change.service}" for change in plan.changes]


def applied_text(applied: Applied) -> str:
    lines = _applied_lines("deployed", applied.plan, "project", applied.seconds)
    for container in applied.containers:
        lines.append(f"  {container.name}: {container.status}")
    return "\n".join(lines)


def swarm_applied_text(applied: SwarmApplied) -> str:
    lines = _applied_lines(applied.done, applied.plan, "stack", applied.seconds)
    for s in applied.services:
        digest = short_id(s.digest or "-")
        lines.append(
            f"  {s.name}: {s.running}/{s.desired_tasks} tasks running, {s.requested_image} ({digest})"
        )
    return "\n".join(lines)


def swarm_applied_document(applied: SwarmApplied) -> dict[str, Any]:
    return {
        **plan_document(applied.plan),
        "seconds": round(applied.seconds, 3),
        "services": [
            {
                "service": s.name,
                "image": s.requested_image,
                "digest": s.digest,
                "version": s.version,
                "replicas": {"running": s.running, "desired": s.desired_tasks},
            }
            for s in applied.services
        ],
        "unavailable_nodes": list(applied.unavailable),
    }


def applied_document(applied: Applied) -> dict[str, Any]:
    return {
        **plan_document(applied.plan),
        "seconds": round(applied.seconds, 3),
        "containers": [
            {
                "service": c.service,
                "name": c.name,
                "id": c.id,
                "image": c.image,
                "image_id": c.image_id,
                "status": c.status,
            }
            for c in applied.containers
        ],
    }


def rollout_text(rollout: Rollout) -> str:
    """Per host: what the deploy did there, how long it took, and what changed."""
    if rollout.in_sync:
        return f"{rollout.environment}: every host in sync, nothing to change"
    rows = [("HOST", "RESULT", "TIME", "CHANGED")]
    for host in rollout.hosts:
        changed = ", ".join(change.split(":", 1)[0] for change in host.changes) or "-"
        time = f"{host.seconds:.1f}s" if host.seconds else "-"
        rows.append((host.host, host.result, time, changed))
    return f"{rollout.environment}: {len(rollout.hosts)} hosts\n" + table(rows)


def rollout_document(rollout: Rollout) -> dict[str, Any]:
    return {
        "environment": rollout.environment,
        "in_sync": rollout.in_sync,
        "hosts": [
            {
                "host": h.host,
                "result": h.result,
                "seconds": h.seconds,
                "changes": list(h.changes),
                "error": h.error,
            }
            for h in rollout.hosts
        ],
    }


def prunes_document(outcomes: Sequence[HostOutcome[Pruned]], redact: Redactor) -> dict[str, Any]:
    """Today's fields (several hosts: every image with its host, bytes and records summed) and
    `hosts`: each host's own, with its error where it failed."""
    unknown = ("dry_run", "images", "freed_bytes", "records_removed")
    hosts = per_host(outcomes, prune_document, unknown, redact)
    done = [(o.host, o.value) for o in outcomes if o.value is not None]
    if len(outcomes) == 1 and done:
        return {**prune_document(done[0][1]), "hosts": hosts}
    return {
        "dry_run": all(p.dry_run for _, p in done),
        "images": [{"host": host, **asdict(c)} for host, p in done for c in p.candidates],
        "freed_bytes": sum(p.freed for _, p in done),
        "records_removed": {
            "releases": sum(p.trimmed.releases for _, p in done),
            "audit": sum(p.trimmed.audit for _, p in done),
        },
        "hosts": hosts,
    }


def host_by_host_text(
    hosts: Sequence[str],
    outcomes: Sequence[HostOutcome[T]],
    render: Callable[[T], str],
    redact: Redactor,
) -> str:
    """The result of an operation done host by host: one host's as ever; with several, each
    host's under its name, and the hosts it never reached after a failure."""
    if len(hosts) == 1 and outcomes and outcomes[0].value is not None:
        return render(outcomes[0].value)
    by_host = {o.host: o for o in outcomes}
    stopped = next((o.host for o in outcomes if o.error is not None), "")
    lines = []
    for host in hosts:
        outcome = by_host.get(host)
        lines.append(f"{host}:")
        if outcome is None:
            body = [f"not done: stopped after the failure on {stopped}"]
        elif outcome.error is not None:
            body = [f"error: {redact(line)}" for line in outcome.error.lines()]
        else:
            body = render(outcome.value).splitlines() if outcome.value is not None else []
        lines += [f"  {line}" for line in body]
    return "\n".join(lines)


def restarted_text(containers: Sequence[ObservedContainer]) -> str:
    return "\n".join(f"restarted {c.name}: {c.status}" for c in containers)


def label(url: str) -> str:
    """A host as a prefix of its lines shows it: its address (ssh://, tcp://), else its URL."""
    return urlsplit(url).hostname or url


def line_prefixes(hosts: Sequence[str]) -> dict[str, str]:
    """What starts each log line of a host: nothing with one host; with several, the host's
    label, aligned."""
    if len(hosts) == 1:
        return {hosts[0]: ""}
    labels = {host: label(host) for host in hosts}
    width = max(len(shown) for shown in labels.values())
    return {host: f"{shown.ljust(width)} | " for host, shown in labels.items()}


def prune_document(pruned: Pruned) -> dict[str, Any]:
    """On one engine as ever; a swarm's images each with its `node`, and `nodes`: each node
    read, with the images it had to remove and the bytes it freed."""
    document = {
        "dry_run": pruned.dry_run,
        "images": [
            {k: v for k, v in asdict(c).items() if k != "node" or pruned.nodes}
            for c in pruned.candidates
        ],
        "freed_bytes": pruned.freed,
        "records_removed": asdict(pruned.trimmed),
    }
    if pruned.nodes:
        document["nodes"] = [
            {
                "node": node,
                "images": sum(1 for c in pruned.candidates if c.node == node),
                "freed_bytes": freed,
            }
            for node, freed in pruned.nodes
        ]
    return document


def prune_text(pruned: Pruned) -> str:
    """The images removed (or that would be), and the space freed; a swarm's node by node,
    then in total."""
    if not pruned.nodes:
        return _prune_lines(pruned)
    lines = list(pruned.trimmed.lines())
    for node, freed in pruned.nodes:
        on_node = tuple(c for c in pruned.candidates if c.node == node)
        done = Pruned(on_node, pruned.dry_run, freed)
        lines += [f"{node}:", *(f"  {line}" for line in _prune_lines(done).splitlines())]
    if pruned.candidates:
        total = Pruned(pruned.candidates, pruned.dry_run, pruned.freed)
        summary = _prune_lines(total).splitlines()[-1]
        lines.append(f"in total on {len(pruned.nodes)} nodes: {summary}")
    return "\n".join(lines)


def _prune_lines(pruned: Pruned) -> str:
    if not pruned.candidates:
        return "\n".join(pruned.trimmed.lines()) or "nothing to remove"
    verb = "would remove" if pruned.dry_run else "removed"
    lines = [
        f"{verb} {short_id(c.image_id)} {' '.join(c.references) or '<none>'} ({_megabytes(c.size)}, {c.why})"
        for c in pruned.candidates
    ]
    if pruned.dry_run:
        total = sum(c.size for c in pruned.candidates)
        lines.append(
            f"{len(pruned.candidates)} image(s), up to {_megabytes(total)} (layers shared with kept images stay)"
        )
    else:
        lines.append(f"{len(pruned.candidates)} image(s) removed, {_megabytes(pruned.freed)} freed")
    return "\n".join([*pruned.trimmed.lines(), *lines])


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def promotion_document(promotion: Promotion) -> dict[str, Any]:
    return {
        "source": promotion.source,
        "target": promotion.target,
        "source_release": promotion.source_release,
        "spec": str(promotion.spec),
        "written": promotion.changes,
        "services": [asdict(p) for p in promotion.services],
    }


def promotion_text(promotion: Promotion) -> str:
    """What promote pins in TARGET's spec: per service, the image it had and the exact one."""
    source = promotion.source
    if promotion.source_release is not None:
        source += f" #{promotion.source_release}"
    spec = shown_path(str(promotion.spec))
    if not promotion.changes:
        return f"{spec} already pins what {source} runs: nothing to write"
    lines = [f"promote {source} -> {promotion.target}: {spec} would pin"]
    lines += [f"  {p.service}: {p.before} -> {p.pinned}" for p in promotion.services]
    return "\n".join(lines)


def promoted_text(promotion: Promotion) -> str:
    name = promotion.target
    return (
        f"wrote {shown_path(str(promotion.spec))}: review and commit it; "
        f"`deploy diff {name}` shows the change, `deploy {name}` deploys it"
    )


# What `deploy ENV` and `deploy rollback ENV` come to, by target.
Deployed = Applied | SwarmApplied | Rollout | Plan


def deployed_text(result: Deployed) -> str | None:
    """What a deploy did, for a person; None where the plan shown already said it all."""
    if isinstance(result, SwarmApplied):
        return swarm_applied_text(result)
    if isinstance(result, Rollout):
        return None if result.in_sync else rollout_text(result)
    if isinstance(result, Plan):
        return None
    return applied_text(result)


def deployed_document(result: Deployed, redact: Redactor) -> dict[str, Any]:
    if isinstance(result, SwarmApplied):
        return swarm_applied_document(result)
    if isinstance(result, Rollout):
        document: dict[str, Any] = masked(rollout_document(result), redact)
        return document
    if isinstance(result, Plan):
        return plan_document(result)
    return applied_document(result)


def restart_text(restarted: Restarted | SwarmApplied) -> str:
    if isinstance(restarted, SwarmApplied):
        return swarm_applied_text(restarted)
    return restarted_text(restarted.containers)


def down_text(down: TakenDown) -> str:
    if down.stack is not None:
        listed = ", ".join(down.services) or "no services"
        return f"{down.environment} is down: stack {down.stack} removed ({listed})"
    if down.volumes is None:
        return f"{down.environment} is down"
    return f"{down.environment} is down; volumes removed: {', '.join(down.volumes) or 'none'}"
