"""What deployer remembers of containers whose labels do not say what they run: those it adopted
(made by plain Compose, running as declared) and those it sent a signal to reread changed files.
A container's labels cannot change without recreating it, so the fingerprint each one runs is a
record in the environment's store, by container ID; records of containers gone are forgotten."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from deployer.state.store import Store, add_under_unique_key

KIND = "container"


def remembered(store: Store) -> dict[str, dict[str, str]]:
    """Per container ID, the fingerprint remembered last for it."""
    newest: dict[str, tuple[float, dict[str, str]]] = {}
    for record in store.records(KIND):
        container, fingerprint = record.get("container"), record.get("fingerprint")
        if not isinstance(container, str) or not isinstance(fingerprint, Mapping):
            continue
        time = float(record.get("time", 0.0))
        if container not in newest or newest[container][0] <= time:
            newest[container] = (time, {str(k): str(v) for k, v in fingerprint.items()})
    return {container: fingerprint for container, (_, fingerprint) in newest.items()}


def remember(store: Store, fingerprints: Mapping[str, Mapping[str, str]], time: float) -> None:
    """Keep each container's fingerprint (by container ID)."""
    for container, fingerprint in sorted(fingerprints.items()):
        record = {"container": container, "fingerprint": dict(fingerprint), "time": time}
        add_under_unique_key(store, KIND, record)


def forget(store: Store, existing: Collection[str]) -> int:
    """Forget the containers not in `existing`, and what was remembered before the last of
    each; returns how many records went."""

    def expired(records: list[dict[str, Any]]) -> list[int]:
        newest: dict[str, tuple[float, int]] = {}
        doomed = []
        for index, record in enumerate(records):
            container, time = str(record.get("container")), float(record.get("time", 0.0))
            if container not in existing or (container in newest and newest[container][0] > time):
                doomed.append(index)
            else:
                if container in newest:
                    doomed.append(newest[container][1])
                newest[container] = (time, index)
        return doomed

    return store.remove_records(KIND, expired)
