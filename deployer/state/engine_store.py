"""deployer's own state, kept on the engine so that every operator of an environment sees it.

Records (releases, audit entries) are Docker volumes whose labels hold the record as JSON: they
need no image or container, survive `docker container prune`, and are listed by label. The lock is
a container that is created but never started: the engine claims a container name atomically, so
of two deployers only one can hold it. See docs/state.md.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from deployer.infra.engine import EngineClient, Marker
from deployer.state.store import (
    KIND_LABEL,
    PROJECT_LABEL,
    RECORD_LABEL,
    RENEWAL,
    TOKEN_LABEL,
    StoredLock,
    add_under_unique_key,
    lock_record,
    read_record,
    record_text,
)


class StateStore:
    """The records and the lock of one Compose project on one engine."""

    def __init__(self, client: EngineClient, project: str) -> None:
        self.client, self.project = client, project
        self.holding: str | None = None  # the token of the lock this process holds here, if any

    def _labels(self, kind: str, record: Mapping[str, Any]) -> dict[str, str]:
        return {
            KIND_LABEL: kind,
            PROJECT_LABEL: self.project,
            RECORD_LABEL: record_text(record),
        }

    def records(self, kind: str) -> list[dict[str, Any]]:
        """The readable records of `kind`: a damaged one is shown nowhere rather than failing."""
        volumes = self.client.volumes([f"{KIND_LABEL}={kind}", f"{PROJECT_LABEL}={self.project}"])
        return [record for volume in volumes if (record := parse_record(volume)) is not None]

    def add(self, kind: str, key: str, record: Mapping[str, Any]) -> bool:
        # Creating a volume whose name exists returns that volume, labels unchanged: the labels
        # the engine answers with say whose record it holds.
        labels = self._labels(kind, record)
        return self.client.create_volume(f"deployer_{self.project}_{kind}_{key}", labels) == labels

    def add_unique(self, kind: str, record: Mapping[str, Any]) -> None:
        add_under_unique_key(self, kind, record)

    @property
    def lock_name(self) -> str:
        return f"deployer_{self.project}_lock"

    def clock(self) -> float:
        """Now, by the engine's clock: the one clock every operator of the engine shares."""
        return self.client.clock()

    def claim_lock(self, record: Mapping[str, Any]) -> bool:
        return self.client.claim_name(self.lock_name, self._labels("lock", record)) is not None

    def lock(self) -> StoredLock | None:
        marker = self.client.marker(self.lock_name)
        if marker is None:
            return None
        record = lock_record(marker.labels.get(RECORD_LABEL))
        renewals = [m.created for m in self._renewals(str(record.get("token", "")))]
        return StoredLock(record, marker.id, marker.created, max([marker.created, *renewals]))

    def renew_lock(self, token: str, count: int) -> None:
        """Mark the lock `token` renewed now. Container labels cannot change, so each renewal is
        a marker of its own (created by the engine, on its clock); the older ones go."""
        older = self._renewals(token)
        labels = {KIND_LABEL: RENEWAL, PROJECT_LABEL: self.project, TOKEN_LABEL: token}
        self.client.claim_name(f"{self.lock_name}_{token}_renewed_{count}", labels)
        for marker in older:
            self.client.remove_marker(marker.id)

    def remove_lock(self, lock_id: str, token: str) -> None:
        """Remove exactly the lock `lock_id` (the one inspected, not whatever now has its name)
        and its renewals."""
        self.client.remove_marker(lock_id)
        for marker in self._renewals(token):
            self.client.remove_marker(marker.id)

    def _renewals(self, token: str) -> list[Marker]:
        if not token:
            return []
        return self.client.markers(
            [f"{KIND_LABEL}={RENEWAL}", f"{PROJECT_LABEL}={self.project}", f"{TOKEN_LABEL}={token}"]
        )

    def remove_records(
        self, kind: str, expired: Callable[[list[dict[str, Any]]], Collection[int]]
    ) -> int:
        """Remove the records of `kind` at the positions `expired` picks among all of them (the
        readable ones, in the engine's order); returns how many went."""
        readable = [
            (volume["Name"], record)
            for volume in self.client.volumes(
                [f"{KIND_LABEL}={kind}", f"{PROJECT_LABEL}={self.project}"]
            )
            if (record := parse_record(volume)) is not None
        ]
        doomed = sorted(expired([record for _, record in readable]))
        for index in doomed:
            self.client.remove_volume(readable[index][0])
        return len(doomed)


def parse_record(volume: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record a volume's labels hold; None when it is damaged or not one of deployer's."""
    return read_record((volume.get("Labels") or {}).get(RECORD_LABEL))


def records_of_every_project(client: EngineClient, kind: str) -> dict[str, list[dict[str, Any]]]:
    """The records of `kind` of every project on the engine, by project, read in one call."""
    found: dict[str, list[dict[str, Any]]] = {}
    for volume in client.volumes([f"{KIND_LABEL}={kind}"]):
        record = parse_record(volume)
        if record is not None:
            project = (volume.get("Labels") or {}).get(PROJECT_LABEL, "")
            found.setdefault(project, []).append(record)
    return found
