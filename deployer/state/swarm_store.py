"""deployer's own state on a swarm: kept in the swarm itself, so that an operator talking to any
manager sees the same history and the same lock.

Records (releases, audit entries) and the lock are swarm configs: the managers replicate them
(Raft), and the swarm claims a config's name atomically: of two managers creating the same name at
once, exactly one succeeds. That is how the lock is taken and a release number claimed. A config
holds the record as its data, and deployer's labels (never the stack's: `docker stack rm` leaves
them). The lock's times are the swarm's: its config's CreatedAt, and a manager's SystemTime for
now. See docs/swarm.md, "State on the swarm".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

from deployer.infra.engine import EngineClient, SwarmConfig
from deployer.state.store import (
    KIND_LABEL,
    PROJECT_LABEL,
    RENEWAL,
    TOKEN_LABEL,
    StoredLock,
    add_under_unique_key,
    lock_record,
    read_record,
    record_text,
)

NAME_LIMIT = 64  # swarmkit's longest config name
_DIGEST_LENGTH = 16  # hex digits of SHA-256 that stand for the part of a long name cut off


def config_name(project: str, *parts: str) -> str:
    """`deployer_<project>_<part>_...`; a name past swarmkit's limit keeps its beginning and ends
    with a digest of the whole, so that each (project, kind, key) still has one name of its own."""
    name = "_".join(("deployer", project, *parts))
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_DIGEST_LENGTH]
    return f"{name[: NAME_LIMIT - _DIGEST_LENGTH - 1]}_{digest}"


class SwarmStore:
    """The records and the lock of one stack, as configs of the swarm a manager answers for."""

    def __init__(self, client: EngineClient, project: str) -> None:
        client.swarm_manager()  # a worker or a lone engine has no configs: say so at once
        self.client, self.project = client, project
        self.holding: str | None = None  # the token of the lock this process holds, if any

    def _labels(self, kind: str) -> dict[str, str]:
        return {KIND_LABEL: kind, PROJECT_LABEL: self.project}

    def _configs(self, kind: str) -> list[SwarmConfig]:
        return self.client.configs([f"{KIND_LABEL}={kind}", f"{PROJECT_LABEL}={self.project}"])

    def records(self, kind: str) -> list[dict[str, Any]]:
        """The readable records of `kind`: a damaged one is shown nowhere rather than failing."""
        return [record for _, record in self._readable(kind)]

    def _readable(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """The readable records of `kind` with their config IDs, in the swarm's order."""
        return [
            (config.id, record)
            for config in self._configs(kind)
            if (record := read_record(config.data)) is not None
        ]

    def add(self, kind: str, key: str, record: Mapping[str, Any]) -> bool:
        name = config_name(self.project, kind, key)
        return (
            self.client.create_config(name, self._labels(kind), record_text(record).encode())
            is not None
        )

    def add_unique(self, kind: str, record: Mapping[str, Any]) -> None:
        add_under_unique_key(self, kind, record)

    def remove_records(
        self, kind: str, expired: Callable[[list[dict[str, Any]]], Collection[int]]
    ) -> int:
        """Remove the records of `kind` at the positions `expired` picks among the readable
        ones; returns how many went."""
        readable = self._readable(kind)
        doomed = sorted(expired([record for _, record in readable]))
        for index in doomed:
            self.client.remove_config(readable[index][0])
        return len(doomed)

    @property
    def lock_name(self) -> str:
        return config_name(self.project, "lock")

    def clock(self) -> float:
        """Now, by the manager's clock: the swarm's, not an operator's."""
        return self.client.clock()

    def claim_lock(self, record: Mapping[str, Any]) -> bool:
        data = record_text(record).encode()
        return self.client.create_config(self.lock_name, self._labels("lock"), data) is not None

    def lock(self) -> StoredLock | None:
        config = self.client.config(self.lock_name)
        if config is None:
            return None
        record = lock_record(config.data)
        renewals = [renewal.created for renewal in self._renewals(str(record.get("token", "")))]
        return StoredLock(record, config.id, config.created, max([config.created, *renewals]))

    def renew_lock(self, token: str, count: int) -> None:
        """Mark the lock `token` renewed now: a config cannot change, so each renewal is a config
        of its own (created by the swarm, on its clock); the older ones go."""
        older = self._renewals(token)
        labels = {**self._labels(RENEWAL), TOKEN_LABEL: token}
        data = record_text({"token": token, "renewal": count}).encode()
        self.client.create_config(
            config_name(self.project, "lock", token, "renewed", str(count)), labels, data
        )
        for config in older:
            self.client.remove_config(config.id)

    def remove_lock(self, lock_id: str, token: str) -> None:
        """Remove exactly the lock `lock_id` (the one inspected, not whatever now has its name)
        and its renewals."""
        self.client.remove_config(lock_id)
        for config in self._renewals(token):
            self.client.remove_config(config.id)

    def _renewals(self, token: str) -> list[SwarmConfig]:
        if not token:
            return []
        return self.client.configs(
            [f"{KIND_LABEL}={RENEWAL}", f"{PROJECT_LABEL}={self.project}", f"{TOKEN_LABEL}={token}"]
        )


def records_of_every_project(client: EngineClient, kind: str) -> dict[str, list[dict[str, Any]]]:
    """The readable records of `kind` of every project on the swarm, by project."""
    found: dict[str, list[dict[str, Any]]] = {}
    for config in client.configs([f"{KIND_LABEL}={kind}"]):
        record = read_record(config.data)
        if record is not None:
            found.setdefault(config.labels.get(PROJECT_LABEL, ""), []).append(record)
    return found
