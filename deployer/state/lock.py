"""The environment lock: one deploy (or maintenance window) at a time, across machines."""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer.core.errors import DeployerError, LockBusyError, LockedError, LockLostError
from deployer.state.store import Actor, Store, StoredLock, iso, this_machine

# A deploy renews its lock every RENEW_SECONDS (by the engine's clock); a lock not renewed within
# its time to live is stale, even where its holder's processes cannot be seen (another host).
DEPLOY_TTL = 600.0
RENEW_SECONDS = 60.0
MANUAL_TTL = 24 * 3600.0
POLL_SECONDS = 0.5
# How long a lock refused to a claim may stay out of sight (taken and released by others, or
# still being made) before the claim gives up, and how often it claims again meanwhile.
SETTLE_SECONDS, SETTLE_POLL_SECONDS = 1.0, 0.05
# Every process started while a lock is held carries its token in this variable, so that the
# processes still at work for a lock can be found on its host after the holder itself is gone.
LOCK_ENV = "DEPLOYER_LOCK"


@dataclass(frozen=True)
class Lock:
    holder: str
    host: str
    pid: int
    reason: str
    kind: str  # "process": held by a running deploy; "manual": by `deploy lock acquire`
    token: str
    ttl: float
    # Known once taken, from the engine (its clock): when, when last renewed, which container.
    since: float = 0.0
    renewed: float = 0.0
    id: str = ""
    engine: str = ""  # where an environment has several hosts: the engine it was found on
    # The machine it was taken on (store.this_machine); "" in a lock taken before it was kept,
    # whose processes are then never looked for: a host name does not tell machines apart.
    machine: str = ""

    @classmethod
    def new(cls, actor: Actor, reason: str, kind: str, ttl: float) -> Lock:
        token = secrets.token_hex(8)
        return cls(
            actor.performer, actor.host, actor.pid, reason, kind, token, ttl, machine=actor.machine
        )

    @classmethod
    def from_stored(cls, stored: StoredLock) -> Lock:
        record: Mapping[str, Any] = stored.record
        # Locks taken before renewals kept `expires` instead of `ttl`.
        ttl = record.get("ttl", float(record.get("expires", 0)) - float(record.get("since", 0)))
        return cls(
            holder=str(record.get("holder", "unknown")),
            host=str(record.get("host", "unknown")),
            pid=int(record.get("pid", 0)),
            reason=str(record.get("reason", "")),
            kind=str(record.get("kind", "manual")),
            token=str(record.get("token", "")),
            ttl=float(ttl),
            since=stored.since,
            renewed=stored.renewed,
            id=stored.id,
            engine=stored.engine,
            machine=str(record.get("machine", "")),
        )

    @property
    def expires(self) -> float:
        return self.renewed + self.ttl

    def record(self) -> dict[str, Any]:
        """What the lock's container carries; times come from the engine."""
        keys = ("holder", "host", "pid", "reason", "kind", "token", "ttl", "machine")
        return {key: getattr(self, key) for key in keys}

    def describe(self) -> str:
        held = f"{self.holder} on {self.host} (pid {self.pid})"
        return f"{held}, on engine {self.engine}" if self.engine else held


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def started_under(token: str) -> list[tuple[int, str]]:
    """The processes on this host that carry the lock `token` (pid, command line): those its
    holder started, such as a `docker compose up` that outlives a killed deploy."""
    needle = f"{LOCK_ENV}={token}".encode()
    found = []
    with contextlib.suppress(FileNotFoundError):  # no /proc: nothing can be seen
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                environ = Path(entry.path, "environ").read_bytes().split(b"\0")
                command = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue  # gone meanwhile, or another user's
            if needle in environ:
                words = command.decode("utf-8", errors="replace").split("\0")
                found.append((int(entry.name), " ".join(w for w in words if w)))
    return sorted(found)


def working(
    lock: Lock,
    machine: str,
    alive: Callable[[int], bool] = pid_alive,
    started: Callable[[str], list[tuple[int, str]]] = started_under,
) -> list[str] | None:
    """The processes of the lock's holder still at work on this machine (`machine`, its
    identity), described; None when the lock was taken on another machine (or one not known),
    where that cannot be known."""
    if not lock.machine or lock.machine != machine:
        return None
    running = (
        [f"process {lock.pid} (the holder)"] if lock.kind == "process" and alive(lock.pid) else []
    )
    running += [f"process {pid} ({command})" for pid, command in started(lock.token)]
    return running


def stale_reason(lock: Lock, at: float, running: Sequence[str] | None) -> str | None:
    """Why a lock no longer protects anything, or None while it does. `at` is the engine's time;
    `running` what of its holder still runs on this host (None: another host, unknowable)."""
    if running:
        return None  # something its holder started still changes the environment
    if running is not None and lock.kind == "process":
        return f"process {lock.pid} on {lock.host} is gone"
    if at > lock.expires:
        return f"past its time to live (expired {iso(lock.expires)})"
    return None


def held_note(lock: Lock, machine: str) -> str:
    """What this machine (`machine`, its identity) can know of a lock that is not stale."""
    if (lock.machine and lock.machine == machine) or lock.kind != "process":
        return "held"
    return (
        f"held; taken on {lock.host}, whose processes cannot be seen from here: "
        f"stale if not renewed by {iso(lock.expires)}"
    )


def status(store: Store) -> tuple[Lock | None, str | None]:
    """The lock, if held, and why it is stale, if it is."""
    stored = store.lock()
    if stored is None:
        return None, None
    lock = Lock.from_stored(stored)
    return lock, stale_reason(lock, store.clock(), working(lock, this_machine()))


def acquire(
    store: Store,
    environment: str,
    lock: Lock,
    wait: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Take the lock, waiting up to `wait` seconds for a live holder; never through a stale one."""
    deadline = clock() + wait
    unseen: float | None = None  # since when a refused claim found no lock to look at
    while not store.claim_lock(lock.record()):
        held, stale = status(store)
        if held is None:
            # Released between our claim and our look: claim again at once. Or not to be seen
            # yet: an engine refuses a marker's name a moment before it shows the marker.
            if unseen is None:
                unseen = clock()
                continue
            if clock() - unseen < SETTLE_SECONDS:
                sleep(SETTLE_POLL_SECONDS)
                continue
        else:
            unseen = None
        if held is not None and stale:
            raise LockedError(environment, held.describe(), iso(held.since), held.reason, stale)
        left = deadline - clock()
        if left <= 0:
            if held is None:
                raise LockedError(
                    environment, "others", "now", "taken and released meanwhile", None
                )
            raise LockedError(environment, held.describe(), iso(held.since), held.reason, None)
        sleep(min(POLL_SECONDS, left))
    store.holding = lock.token


def verify_held(store: Store) -> None:
    """Raise LockLostError unless this process still holds the lock of `store`: nothing may be
    recorded in the name of a lock that was broken or taken over meanwhile."""
    stored = store.lock()
    if store.holding is None or stored is None or stored.record.get("token") != store.holding:
        raise LockLostError(store.project, Lock.from_stored(stored).describe() if stored else None)


def release(store: Store, lock: Lock) -> None:
    """Give the lock back, if it is still ours."""
    store.holding = None
    held = store.lock()
    if held is not None and held.record.get("token") == lock.token:
        store.remove_lock(held.id, lock.token)


def break_lock(store: Store, environment: str, held: Lock) -> None:
    """Remove exactly the lock `held` (the one inspected), unless its holder's processes still
    change the environment on this host."""
    running = working(held, this_machine())
    if running:
        raise LockBusyError(environment, held.describe(), running)
    store.remove_lock(held.id, held.token)


class Renewal:
    """Renews a held lock every `every` seconds, in a thread of its own, until stopped."""

    def __init__(self, store: Store, token: str, every: float) -> None:
        self.store, self.token, self.every = store, token, every
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lock-renewal", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        count = 0
        while not self._stopped.wait(self.every):
            count += 1
            with contextlib.suppress(DeployerError):  # the engine did not answer: next round
                self.store.renew_lock(self.token, count)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


@contextmanager
def holding(
    store: Store, environment: str, lock: Lock, wait: float, renew_every: float = RENEW_SECONDS
) -> Iterator[Lock]:
    acquire(store, environment, lock, wait)
    renewal = Renewal(store, lock.token, renew_every)
    os.environ[LOCK_ENV] = lock.token  # inherited by every process started meanwhile
    ended: BaseException | None = None
    try:
        yield lock
    except BaseException as e:
        ended = e
        raise
    finally:
        os.environ.pop(LOCK_ENV, None)
        renewal.stop()
        try:
            release(store, lock)
        except DeployerError as e:
            # An engine that stopped answering meanwhile: what ended the command comes first.
            if ended is None:
                raise
            ended.add_note(f"the lock could not be released: {e.message}")
