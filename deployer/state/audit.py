"""The audit trail: one record per state-changing command, kept on the engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from deployer.state.store import Actor, Store, iso, now


@dataclass(frozen=True)
class AuditEntry:
    time: str
    performer: str
    host: str
    environment: str
    command: str
    result: str
    changes: Sequence[str] = field(default_factory=list)
    error: str = ""
    at: float = 0.0  # seconds since the epoch: orders entries made within the same second

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> AuditEntry:
        known = {k: record[k] for k in cls.__dataclass_fields__ if k in record}
        return cls(**known)


def write(
    store: Store,
    actor: Actor,
    environment: str,
    command: str,
    result: str,
    redact: Callable[[str], str],
    changes: Sequence[str] = (),
    error: str = "",
) -> AuditEntry:
    """Append an entry; every text in it passes through `redact`, so no secret is stored."""
    moment = now()
    entry = AuditEntry(
        time=iso(moment),
        performer=actor.performer,
        host=actor.host,
        environment=environment,
        command=redact(command),
        result=result,
        changes=[redact(c) for c in changes],
        error=redact(error),
        at=moment,
    )
    store.add_unique("audit", asdict(entry))
    return entry


def entries(store: Store) -> list[AuditEntry]:
    """Every entry, oldest first."""
    found = []
    for record in store.records("audit"):
        try:
            found.append(AuditEntry.from_record(record))
        except TypeError:
            continue
    return sorted(found, key=lambda e: e.at)
