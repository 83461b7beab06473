"""What deployer remembers of containers whose labels do not say what they run: those it adopted
(made by plain Compose, running as declared) and those it sent a signal to reread changed files.
A container's labels cannot change without recreating it, so the fingerprint each one runs is a
record in the environment's store, by container ID; records of containers gone are forgotten."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from deployer.state.store import Store, add_under_unique_key

KIND = "container"


def _read(record: Mapping[str, Any]) -> tuple[str, float, dict[str, str]] | None:
    """A record's container, time and fingerprint; None where it is not one (damaged)."""
    container, fingerprint, time = (record.get(k) for k in ("container", "fingerprint", "time"))
    if not isinstance(container, str) or not isinstance(fingerprint, Mapping):
        return None
    if not isinstance(time, int | float):
        return None
    return container, float(time), {str(k): str(v) for k, v in fingerprint.items()}


def _newest(records: list[dict[str, Any]]) -> dict[str, tuple[float, int]]:
    """Per container, the time and position of the newest readable record."""
    newest: dict[str, tuple[float, int]] = {}
    for index, record in enumerate(records):
        read = _read(record)
        if read is not None and (read[0] not in newest or newest[read[0]][0] <= read[1]):
            newest[read[0]] = (read[1], index)
    return newest


def remembered(store: Store) -> dict[str, dict[str, str]]:
    """Per container ID, the fingerprint remembered last for it."""
    records = store.records(KIND)
    found = {}
    for container, (_, index) in _newest(records).items():
        read = _read(records[index])
        assert read is not None  # _newest keeps readable records only
        found[container] = read[2]
    return found


def remember(store: Store, fingerprints: Mapping[str, Mapping[str, str]], time: float) -> None:
    """Keep each container's fingerprint (by container ID)."""
    for container, fingerprint in sorted(fingerprints.items()):
        record = {"container": container, "fingerprint": dict(fingerprint), "time": time}
        add_under_unique_key(store, KIND, record)


def forget(store: Store, existing: Collection[str]) -> int:
    """Forget the containers not in `existing`, what was remembered before the newest record of
    each, and damaged records; returns how many records went."""

    def expired(records: list[dict[str, Any]]) -> list[int]:
        kept = {
            index for container, (_, index) in _newest(records).items() if container in existing
        }
        return [index for index in range(len(records)) if index not in kept]

    return store.remove_records(KIND, expired)
