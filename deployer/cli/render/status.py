"""`deploy status`: per host (or per swarm task), what runs against what is declared."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from deployer.cli.render.table import counted, heading, per_host, table, unknown_text
from deployer.core.reference import short_id
from deployer.core.results import HostOutcome, Statuses
from deployer.core.status import EnvironmentStatus, RunningImage, SwarmStatus, images_by_service
from deployer.core.variables import Redactor


def status_document(status: EnvironmentStatus) -> dict[str, Any]:
    return {"environment": status.environment, "project": status.project, **_status_fields(status)}


def _status_fields(status: EnvironmentStatus) -> dict[str, Any]:
    return {
        "in_sync": status.in_sync,
        "healthy": status.healthy,
        "services": [
            {
                "service": s.service,
                "desired_image": s.desired_image,
                "replicas": {"ready": s.ready, "desired": s.desired_replicas},
                "healthy": s.healthy,
                "containers": [asdict(c) for c in s.containers],
            }
            for s in status.services
        ],
        "orphans": list(status.orphans),
    }


def statuses_document(
    environment: str,
    project: str,
    outcomes: Sequence[HostOutcome[EnvironmentStatus]],
    redact: Redactor,
) -> dict[str, Any]:
    """Today's fields (one host: its status; several: in sync and healthy only when every host
    is, replicas summed, every container with its host, and per service `images`: which hosts
    run which image) and `hosts`: each host's own, with its error where it could not be read."""
    unknown = ("in_sync", "healthy", "services", "orphans")
    hosts = per_host(outcomes, _status_fields, unknown, redact)
    if len(outcomes) == 1 and outcomes[0].value is not None:
        return {**status_document(outcomes[0].value), "hosts": hosts}
    known = [(o.host, o.value) for o in outcomes if o.value is not None]
    images = images_by_service(known)
    services = []
    for name in images:
        each = [(host, s) for host, status in known for s in status.services if s.service == name]
        services.append(
            {
                "service": name,
                "desired_image": each[0][1].desired_image,
                "replicas": {
                    "ready": sum(s.ready for _, s in each),
                    "desired": sum(s.desired_replicas for _, s in each),
                },
                "healthy": len(known) == len(outcomes) and all(s.healthy for _, s in each),
                "containers": [{"host": h, **asdict(c)} for h, s in each for c in s.containers],
                "images": [asdict(i) for i in images[name]],
            }
        )
    return {
        "environment": environment,
        "project": project,
        "in_sync": all(h["in_sync"] for h in hosts),
        "healthy": all(h["healthy"] for h in hosts),
        "services": services,
        "orphans": sorted({o for _, status in known for o in status.orphans}),
        "hosts": hosts,
    }


def statuses_text(
    environment: str,
    project: str,
    outcomes: Sequence[HostOutcome[EnvironmentStatus]],
    redact: Redactor,
) -> str:
    """One host: as ever. Several: the whole (healthy and in sync only when every host is),
    per service which hosts run which image (MIXED where they differ), then each host's."""
    if len(outcomes) == 1 and outcomes[0].value is not None:
        return status_text(outcomes[0].value)
    known = [(o.host, o.value) for o in outcomes if o.value is not None]
    unknown = [o.host for o in outcomes if o.value is None]
    healthy = not unknown and all(status.healthy for _, status in known)
    in_sync = not unknown and all(status.in_sync for _, status in known)
    header = (
        f"{heading(environment, project)}: {counted(len(outcomes), 'host')}: "
        f"{_health_and_sync(healthy, in_sync)}"
    )
    if unknown:
        header += f"; state unknown on {', '.join(unknown)}"
    lines = [header]
    for service, images in images_by_service(known).items():
        shown = [
            f"{_running(i)} on "
            + ("every host" if len(i.hosts) == len(outcomes) else ", ".join(i.hosts))
            for i in images
        ]
        if len(shown) == 1:
            lines.append(f"  {service}: {shown[0]}")
        else:
            lines.append(f"  {service}: MIXED versions")
            lines += [f"    {line}" for line in shown]
    blocks = [
        status_text(o.value, o.host)
        if o.value is not None
        else unknown_text(environment, project, o, redact)
        for o in outcomes
    ]
    return "\n\n".join(["\n".join(lines), *blocks])


def _running(image: RunningImage) -> str:
    return f"{image.image} ({short_id(image.image_id)})" if image.image else "no container"


def _health_and_sync(healthy: bool, in_sync: bool) -> str:
    sync = "in sync" if in_sync else "NOT in sync (see `deploy diff`)"
    return f"{'healthy' if healthy else 'NOT healthy'}, {sync}"


def status_text(status: EnvironmentStatus, host: str | None = None) -> str:
    rows = [("SERVICE", "READY", "CONTAINER", "IMAGE", "ID", "RELEASE", "STATUS")]
    for service in status.services:
        ready = f"{service.ready}/{service.desired_replicas}"
        if not service.containers:
            rows.append(
                (service.service, ready, "-", service.desired_image, "-", "-", "no container")
            )
        for index, c in enumerate(service.containers):
            first = index == 0
            release = f"#{c.release}" if c.release else "-"
            rows.append(
                (
                    service.service if first else "",
                    ready if first else "",
                    c.name,
                    c.image,
                    short_id(c.image_id),
                    release,
                    c.status,
                )
            )
    header = heading(status.environment, status.project, host)
    lines = [f"{header}: {_health_and_sync(status.healthy, status.in_sync)}", table(rows)]
    lines.extend(
        f"orphan: {name} (not in the spec; `deploy {status.environment}` removes it)"
        for name in status.orphans
    )
    return "\n".join(lines)


def swarm_status_document(status: SwarmStatus) -> dict[str, Any]:
    return {
        "environment": status.environment,
        "project": status.stack.project,
        "in_sync": status.plan.in_sync,
        "healthy": status.healthy,
        "services": [
            {
                "service": s.name,
                "image": s.requested_image,
                "digest": s.digest,
                "replicas": {"running": s.running, "desired": s.desired_tasks},
                "update": {"state": s.update_state, "message": s.update_message},
                "tasks": [asdict(t) for t in s.tasks],
            }
            for s in status.stack.services.values()
        ],
    }


def swarm_status_text(status: SwarmStatus) -> str:
    sync = "in sync" if status.plan.in_sync else "NOT in sync (see `deploy diff`)"
    health = "healthy" if status.healthy else "NOT healthy"
    rows: list[tuple[str, ...]] = [
        ("SERVICE", "RUNNING", "IMAGE", "DIGEST", "UPDATE", "NODE", "STATE", "HEALTH", "SINCE")
    ]
    for s in status.stack.services.values():
        digest = short_id(s.digest or "-")
        head = (
            s.name,
            f"{s.running}/{s.desired_tasks}",
            s.requested_image,
            digest,
            s.update_state or "-",
        )
        for index, t in enumerate(s.tasks or [None]):
            first = head if index == 0 else ("",) * len(head)
            task = (
                (t.node or "?", t.state, t.health or "-", t.since[:19] + "Z") if t else ("-",) * 4
            )
            rows.append((*first, *task))
    lines = [f"{status.environment} (stack {status.stack.project}): {health}, {sync}", table(rows)]
    lines.extend(
        f"{c.action}: {c.service} ({'; '.join(c.causes)})"
        for c in status.plan.changes
        if c.action in ("create", "converge", "remove")
    )
    return "\n".join(lines)


def status_text_of(found: Statuses | SwarmStatus, redact: Redactor) -> str:
    if isinstance(found, SwarmStatus):
        return swarm_status_text(found)
    return statuses_text(found.environment, found.project, found.outcomes, redact)


def status_document_of(found: Statuses | SwarmStatus, redact: Redactor) -> dict[str, Any]:
    if isinstance(found, SwarmStatus):
        return swarm_status_document(found)
    return statuses_document(found.environment, found.project, found.outcomes, redact)
