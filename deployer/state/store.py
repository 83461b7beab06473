"""deployer's own state: records (releases, audit entries) and the lock of an environment, kept
where every operator of it sees them. `Store` is where they live: on an engine
(engine_store.StateStore), in a swarm (swarm_store.SwarmStore), on several hosts
(fleet_store.FleetStore), in memory in the unit tests. Nothing here knows a target."""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from deployer.core.command import Command
from deployer.core.errors import ProgramNotFoundError
from deployer.infra.runner import run

KIND_LABEL = "dev.deployer.state"  # release | audit | lock | lock-renewal
PROJECT_LABEL = "dev.deployer.project"
RECORD_LABEL = "dev.deployer.record"
TOKEN_LABEL = "dev.deployer.lock"  # on a renewal: the token of the lock it renews
RENEWAL = "lock-renewal"


@dataclass(frozen=True)
class Actor:
    """Who does something, from where."""

    performer: str
    host: str
    pid: int
    machine: str = ""  # which machine, beyond its name: see this_machine

    @classmethod
    def current(cls) -> Actor:
        try:
            name = run(Command(("git", "config", "user.name")), check=False).stdout.strip()
        except ProgramNotFoundError:  # git is a nicety here, not a requirement
            name = ""
        if not name:
            name = os.environ.get("USER") or _login() or "unknown"
        return cls(name, socket.gethostname(), os.getpid(), this_machine())


# What tells this machine's processes from another's: its machine ID, this boot (PIDs mean
# nothing across a reboot) and its PID namespace (containers share a boot).
MACHINE_FILES = ("/etc/machine-id", "/proc/sys/kernel/random/boot_id")


def this_machine() -> str:
    """An identity of the machine whose processes this one can see: a hash of its host name,
    machine ID, boot ID and PID namespace. Two CI runners with one host name differ. Where none
    of the three can be read (not Linux), the host name alone."""
    parts = []
    for path in MACHINE_FILES:
        try:
            parts.append(Path(path).read_text(encoding="ascii").strip())
        except OSError:
            parts.append("")
    try:
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        parts.append("")
    hostname = socket.gethostname()
    if not any(parts):
        return hostname
    return hashlib.sha256("\0".join([hostname, *parts]).encode()).hexdigest()[:16]


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def now() -> float:
    return time.time()


def iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


@dataclass(frozen=True)
class StoredLock:
    """The lock as the engine keeps it: its record, the ID of its container, and (engine clock)
    when it was taken and when it was last renewed."""

    record: dict[str, Any]
    id: str
    since: float
    renewed: float
    engine: str = ""  # the engine it is on, where the lock spans several (fleet_state)


def unique_key() -> str:
    """A record key that sorts by time and that no one else draws."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}_{secrets.token_hex(4)}"


class Store(Protocol):
    """Where the records and the lock of one environment live: StateStore on the engine, an
    in-memory fake in the unit tests."""

    project: str
    holding: str | None  # the token of the lock this process holds here, if any

    def records(self, kind: str) -> list[dict[str, Any]]: ...

    def add(self, kind: str, key: str, record: Mapping[str, Any]) -> bool:
        """Add a record under `key`; False when a record of that key exists already."""
        ...

    def add_unique(self, kind: str, record: Mapping[str, Any]) -> None: ...

    def remove_records(
        self, kind: str, expired: Callable[[list[dict[str, Any]]], Collection[int]]
    ) -> int:
        """Remove the records of `kind` at the positions `expired` picks; returns how many."""
        ...

    def clock(self) -> float:
        """Now, by the clock every operator shares (the engine's)."""
        ...

    def claim_lock(self, record: Mapping[str, Any]) -> bool: ...

    def lock(self) -> StoredLock | None: ...

    def renew_lock(self, token: str, count: int) -> None: ...

    def remove_lock(self, lock_id: str, token: str) -> None:
        """Remove exactly the lock `lock_id` and its renewals."""
        ...


def add_under_unique_key(store: Store, kind: str, record: Mapping[str, Any]) -> None:
    while not store.add(kind, unique_key(), record):
        continue  # a key taken already: the record is not in, try another


def record_text(record: Mapping[str, Any]) -> str:
    """A record as stored: compact JSON with sorted keys."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def read_record(text: str | bytes | None) -> dict[str, Any] | None:
    """The record `text` holds; None when it is missing or damaged."""
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def lock_record(text: str | bytes | None) -> dict[str, Any]:
    """The record of a lock; a lock whose record cannot be read is held all the same."""
    record = read_record(text)
    return {"holder": "unknown (unreadable lock)"} if record is None else record
