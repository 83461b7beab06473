"""The state of an environment of several hosts: one `Store` over each host's own.

Records are written to every host that answers and read from every host that answers, merged
(a record is the same JSON on each host: it is shown once), so that any operator reads the whole
history however many hosts are up. The lock is claimed on every host of the environment in one
fixed order (sorted by URL): two deploys meet on the first host, so neither can hold a part that
the other waits for. A refusal anywhere gives back what was claimed. See docs/hosts.md.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from deployer.core.errors import DeployerError
from deployer.state.store import Store, StoredLock

T = TypeVar("T")


class FleetStore:
    """The Store protocol over the stores of several hosts, by host URL."""

    def __init__(self, stores: Mapping[str, Store]) -> None:
        self.stores = dict(sorted(stores.items()))
        self.project = next(iter(self.stores.values())).project
        self.holding: str | None = None  # the token of the lock this process holds, if any
        # Hosts that did not answer a write or a read, and why (the engine stopped meanwhile).
        self.unreachable: dict[str, DeployerError] = {}

    def _answers(self, action: Callable[[Store], T]) -> dict[str, T]:
        """`action` on every host in parallel; the hosts that do not answer are set aside, and
        when none answers, the first one's error is raised."""

        def attempt(store: Store) -> tuple[T | None, DeployerError | None]:
            try:
                return action(store), None
            except DeployerError as e:
                return None, e

        with ThreadPoolExecutor(max_workers=len(self.stores)) as pool:
            outcomes = dict(zip(self.stores, pool.map(attempt, self.stores.values()), strict=True))
        answers = {}
        for host, (value, error) in outcomes.items():
            if error is None:
                answers[host] = value
            else:
                self.unreachable[host] = error
        if not answers:
            raise next(iter(self.unreachable.values()))
        return answers  # type: ignore[return-value]

    def records(self, kind: str) -> list[dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for found in self._answers(lambda store: store.records(kind)).values():
            for record in found:
                merged.setdefault(json.dumps(record, sort_keys=True), record)
        return list(merged.values())

    def add(self, kind: str, key: str, record: Mapping[str, Any]) -> bool:
        """False when a host that answers has a record of that key already."""
        return all(self._answers(lambda store: store.add(kind, key, record)).values())

    def add_unique(self, kind: str, record: Mapping[str, Any]) -> None:
        self._answers(lambda store: store.add_unique(kind, record))

    def remove_records(
        self, kind: str, expired: Callable[[list[dict[str, Any]]], Collection[int]]
    ) -> int:
        return max(self._answers(lambda store: store.remove_records(kind, expired)).values())

    def clock(self) -> float:
        return next(iter(self._answers(lambda store: store.clock()).values()))

    def claim_lock(self, record: Mapping[str, Any]) -> bool:
        """Claim the lock on each host in order; a host that refuses (or does not answer) gives
        back the claims made before it. Every host must answer: one that cannot be reached
        cannot be shown unlocked."""
        claimed: list[Store] = []
        try:
            for store in self.stores.values():
                if not store.claim_lock(record):
                    return False
                claimed.append(store)
        finally:
            if len(claimed) < len(self.stores):
                for store in claimed:
                    with contextlib.suppress(DeployerError):
                        _remove_token(store, str(record["token"]))
        return True

    def lock(self) -> StoredLock | None:
        """A lock that is not this process's, on the first host (in order) where one is found;
        else this process's own; None when no host that answers holds one."""
        locks = [
            replace(stored, engine=host)
            for host, stored in self._answers(lambda store: store.lock()).items()
            if stored is not None
        ]
        foreign = [lock for lock in locks if lock.record.get("token") != self.holding]
        return next(iter(foreign or locks), None)

    def renew_lock(self, token: str, count: int) -> None:
        self._answers(lambda store: store.renew_lock(token, count))

    def remove_lock(self, lock_id: str, token: str) -> None:
        """Remove the lock `token` (its container ID differs per host) wherever it is held."""
        self._answers(lambda store: _remove_token(store, token))


def _remove_token(store: Store, token: str) -> None:
    held = store.lock()
    if held is not None and held.record.get("token") == token:
        store.remove_lock(held.id, token)


def of(stores: Sequence[tuple[str, Store]]) -> Store:
    """The store of an environment's hosts: the host's own where there is one."""
    if len(stores) == 1:
        return stores[0][1]
    return FleetStore(dict(stores))
