"""How many records deployer keeps on the engine: releases by `deploy.keep_history`, audit
entries by count. Applied after each recorded release and by `deploy prune`. See docs/state.md."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deployer.core.results import AUDIT_KEEP, Trimmed
from deployer.state.releases import Release
from deployer.state.store import Store


def expired_releases(
    records: Sequence[Mapping[str, Any]], keep: int, running: Mapping[str, str]
) -> set[int]:
    """Positions of the releases beyond the newest `keep`, except, for each running service
    (name -> image ID), the newest release that ran its image: the release running now."""
    readable = []
    for index, record in enumerate(records):
        try:
            readable.append((index, Release.from_record(record)))
        except (KeyError, TypeError, ValueError):
            continue  # a damaged record is left alone, not guessed at
    newest = sorted(readable, key=lambda found: found[1].number, reverse=True)
    kept = {index for index, _ in newest[:keep]}
    for service, image_id in running.items():
        for index, release in newest:
            ran = release.services.get(service)
            if ran is not None and ran.image_id == image_id:
                kept.add(index)
                break
    return {index for index, _ in readable} - kept


def expired_audit(records: Sequence[Mapping[str, Any]], keep: int = AUDIT_KEEP) -> set[int]:
    """Positions of the audit entries beyond the newest `keep`."""
    newest = sorted(range(len(records)), key=lambda index: _moment(records[index]), reverse=True)
    return set(newest[keep:])


def _moment(record: Mapping[str, Any]) -> float:
    try:
        return float(record.get("at") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def trim(store: Store, keep_history: int, running: Mapping[str, str]) -> Trimmed:
    """Remove the records beyond retention. Callers hold the environment's lock."""
    releases = store.remove_records(
        "release", lambda records: expired_releases(records, keep_history, running)
    )
    return Trimmed(releases, store.remove_records("audit", expired_audit))
