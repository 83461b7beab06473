"""What several renderings share: tables, headers, hosts that could not be read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from deployer.core.results import HostOutcome
from deployer.core.variables import Redactor

T = TypeVar("T")


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def heading(environment: str, project: str, host: str | None = None) -> str:
    return f"{environment} (project {project})" + (f" on {host}" if host else "")


def counted(count: int, what: str) -> str:
    return f"{count} {what}{'s' if count != 1 else ''}"


def unknown_text(
    environment: str, project: str, outcome: HostOutcome[Any], redact: Redactor
) -> str:
    """A host that could not be read: its state is unknown, and why."""
    assert outcome.error is not None
    lines = [f"{heading(environment, project, outcome.host)}: state unknown"]
    lines += [f"  error: {redact(line)}" for line in outcome.error.lines()]
    return "\n".join(lines)


def per_host(
    outcomes: Sequence[HostOutcome[T]],
    fields: Callable[[T], dict[str, Any]],
    unknown: Sequence[str],
    redact: Redactor,
) -> list[dict[str, Any]]:
    """The `hosts` of a JSON document: each host's own fields and its error (its text masked);
    null for each `unknown` field of a host that could not be read."""
    return [
        {
            "host": o.host,
            **(dict.fromkeys(unknown) if o.value is None else fields(o.value)),
            "error": None if o.error is None else redact(o.error.message),
        }
        for o in outcomes
    ]
