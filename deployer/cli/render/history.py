"""`deploy history` and `deploy audit`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deployer.cli.render.table import table
from deployer.core.reference import short_id
from deployer.core.results import Divergence
from deployer.state.audit import AuditEntry
from deployer.state.releases import Release


def history_document(
    releases: Sequence[Release], divergences: Sequence[Divergence]
) -> list[dict[str, Any]]:
    """The releases as recorded; the release a diverged host should run says how it differs."""
    documents = [release.record() for release in releases]
    by_number = {document["number"]: document for document in documents}
    for divergence in divergences:
        document = by_number.get(divergence.release or 0)
        for host in document["hosts"] if document else []:
            if host["host"] == divergence.host:
                host["diverged"] = list(divergence.differences)
    return documents


def history_text(
    environment: str, releases: Sequence[Release], divergences: Sequence[Divergence] = ()
) -> str:
    flags = [
        f"{d.host} DIVERGES from "
        + (f"release #{d.release}" if d.release else "its releases")
        + f": {'; '.join(d.differences)}"
        for d in divergences
    ]
    if not releases:
        return "\n".join([f"{environment}: no releases yet", *flags])
    lines = [
        f"{environment}: {len(releases)} release{'s' if len(releases) != 1 else ''}, newest first"
    ]
    for release in releases:
        lines.append(
            f"#{release.number}  {release.time}  {release.performer}@{release.host}  "
            f"{release.result}  ({release.command})"
        )
        if release.promoted_from:
            source = release.promoted_from
            number = f" #{source['release']}" if source.get("release") else ""
            lines.append(f"    promoted from {source['environment']}{number}")
        if release.hosts:
            for host in release.hosts:
                lines.append(f"    {host.host}: {host.result}")
                lines.extend(_services_lines(host.services, "      "))
        else:
            lines.extend(_services_lines(release.services, "    "))
        lines.extend(f"    changed: {change}" for change in release.changes)
    return "\n".join([*lines, *flags])


def _services_lines(services: Mapping[str, Any], indent: str) -> list[str]:
    return [
        f"{indent}{name}: {service.image} ({short_id(service.image_id)})"
        for name, service in sorted(services.items())
    ]


def audit_text(environment: str, entries: Sequence[AuditEntry]) -> str:
    if not entries:
        return f"{environment}: no audit entries yet"
    rows = [("TIME", "WHO", "COMMAND", "RESULT", "DETAIL")]
    for entry in entries:
        detail = entry.error or "; ".join(entry.changes)
        rows.append(
            (entry.time, f"{entry.performer}@{entry.host}", entry.command, entry.result, detail)
        )
    return table(rows)
