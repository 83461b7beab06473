"""The environment lock: one deploy (or maintenance window) at a time, across machines."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from deployer.errors import LockedError
from deployer.state import Actor, Store, iso, now

# A deploy's lock outlives a deploy by far; past this it is stale even if its process lives on.
DEPLOY_TTL = 3600.0
MANUAL_TTL = 24 * 3600.0
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Lock:
    holder: str
    host: str
    pid: int
    since: float
    expires: float
    reason: str
    kind: str  # "process": held by a running deploy; "manual": by `deploy lock acquire`
    token: str

    @classmethod
    def new(cls, actor: Actor, reason: str, kind: str, ttl: float) -> Lock:
        started = now()
        return cls(
            actor.performer,
            actor.host,
            actor.pid,
            started,
            started + ttl,
            reason,
            kind,
            secrets.token_hex(8),
        )

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Lock:
        return cls(
            holder=str(record.get("holder", "unknown")),
            host=str(record.get("host", "unknown")),
            pid=int(record.get("pid", 0)),
            since=float(record.get("since", 0)),
            expires=float(record.get("expires", 0)),
            reason=str(record.get("reason", "")),
            kind=str(record.get("kind", "manual")),
            token=str(record.get("token", "")),
        )

    def record(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.holder} on {self.host} (pid {self.pid})"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_reason(
    lock: Lock, at: float, host: str, alive: Callable[[int], bool] = pid_alive
) -> str | None:
    """Why a lock no longer protects anything, or None while it does."""
    if at > lock.expires:
        return f"older than its time to live (expired {iso(lock.expires)})"
    if lock.kind == "process" and lock.host == host and not alive(lock.pid):
        return f"process {lock.pid} on {host} is gone"
    return None


def status(store: Store) -> tuple[Lock | None, str | None]:
    """The lock, if held, and why it is stale, if it is."""
    record = store.lock()
    if record is None:
        return None, None
    lock = Lock.from_record(record)
    return lock, stale_reason(lock, now(), socket.gethostname())


def acquire(store: Store, environment: str, lock: Lock, wait: float) -> None:
    """Take the lock, waiting up to `wait` seconds for a live holder; never through a stale one."""
    deadline = time.monotonic() + wait
    while not store.claim_lock(lock.record()):
        held, stale = status(store)
        if held is None:
            continue  # released between our claim and our look: claim again
        if stale or time.monotonic() >= deadline:
            raise LockedError(environment, held.describe(), iso(held.since), held.reason, stale)
        time.sleep(POLL_SECONDS)


def release(store: Store, lock: Lock) -> None:
    """Give the lock back, if it is still ours."""
    held = store.lock()
    if held is not None and held.get("token") == lock.token:
        store.remove_lock()


@contextmanager
def holding(store: Store, environment: str, lock: Lock, wait: float) -> Iterator[Lock]:
    acquire(store, environment, lock, wait)
    try:
        yield lock
    finally:
        release(store, lock)
