"""`deploy lock status`: the lock as each host holds it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deployer.cli.render.table import counted, per_host
from deployer.core.results import HostOutcome
from deployer.core.variables import Redactor
from deployer.state.lock import Lock, held_note
from deployer.state.store import iso, this_machine


def lock_document(environment: str, lock: Lock | None, stale: str | None) -> dict[str, Any]:
    return {"environment": environment, **_lock_fields(lock, stale)}


def _lock_fields(lock: Lock | None, stale: str | None) -> dict[str, Any]:
    return {
        "locked": lock is not None,
        "stale": stale,
        "lock": None
        if lock is None
        else {**lock.record(), "since": iso(lock.since), "expires": iso(lock.expires)},
    }


def locks_document(
    environment: str,
    outcomes: Sequence[HostOutcome[tuple[Lock | None, str | None]]],
    redact: Redactor,
) -> dict[str, Any]:
    """Today's fields, of the first host holding the lock (none: not locked), and `hosts`: the
    lock as each host's records hold it, with its error where it could not be read."""
    hosts = per_host(
        outcomes, lambda held: _lock_fields(*held), ("locked", "stale", "lock"), redact
    )
    held = next((o.value for o in outcomes if o.value is not None and o.value[0]), (None, None))
    return {**lock_document(environment, *held), "hosts": hosts}


def locks_text(
    environment: str,
    outcomes: Sequence[HostOutcome[tuple[Lock | None, str | None]]],
    redact: Redactor,
) -> str:
    """The lock on each host (one host: as ever)."""
    if len(outcomes) == 1 and outcomes[0].value is not None:
        return lock_text(environment, *outcomes[0].value)
    lines = []
    for outcome in outcomes:
        if outcome.value is None:
            assert outcome.error is not None
            lines.append(f"{environment} on {outcome.host}: unknown")
            lines += [f"  error: {redact(line)}" for line in outcome.error.lines()]
        else:
            lines.append(lock_text(environment, *outcome.value, host=outcome.host))
    held = sum(1 for o in outcomes if o.value is not None and o.value[0])
    lines.append(f"{environment}: locked on {held} of {counted(len(outcomes), 'host')}")
    return "\n".join(lines)


def lock_text(
    environment: str,
    lock: Lock | None,
    stale: str | None,
    here: str | None = None,
    host: str | None = None,
) -> str:
    where = f"{environment} on {host}" if host else environment
    if lock is None:
        return f"{where}: not locked"
    state = (
        f"STALE ({stale}); break it with `deploy lock release {environment} --force`"
        if stale
        else held_note(lock, here or this_machine())
    )
    return (
        f"{where}: locked by {lock.describe()} since {iso(lock.since)}: {lock.reason}\n"
        f"  kind {lock.kind}, expires {iso(lock.expires)}; {state}"
    )
