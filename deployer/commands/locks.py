"""`deploy lock status|acquire|release ENV`: the environment's lock, on every host."""

from __future__ import annotations

from typing import Any

from deployer.core.errors import DeployerError
from deployer.core.results import SUCCESS, HostOutcome
from deployer.core.variables import Redactor
from deployer.state import audit
from deployer.state import lock as lock_module
from deployer.state.lock import Lock
from deployer.targets.base import Target
from deployer.targets.hosts import alone_raises, each


def lock_status(target: Target[Any, Any]) -> list[HostOutcome[tuple[Lock | None, str | None]]]:
    """The lock as each host's own records hold it, read in parallel; with one host, its error
    is the command's."""
    return alone_raises(each(target.parts(), lambda part: lock_module.status(part.store())))


def lock_acquire(target: Target[Any, Any], reason: str, ttl: float, redact: Redactor) -> Lock:
    """Take the lock for a maintenance window; it stays until released or its TTL passes."""
    name = target.env.name
    store, actor = target.store(), target.env.outside.actor()
    lock = Lock.new(actor, redact(reason), "manual", ttl)
    command = f"lock acquire --reason {reason!r}"
    try:
        lock_module.acquire(store, name, lock, wait=0.0)
    except DeployerError as e:
        audit.write(store, actor, name, command, "refused", redact, error=e.message)
        raise
    audit.write(store, actor, name, command, SUCCESS, redact)
    return lock


def lock_release(target: Target[Any, Any], force: bool, redact: Redactor) -> Lock | None:
    """Release a maintenance lock; a deploy's lock (live or stale) only with `force`."""
    name = target.env.name
    store = target.store()
    held, stale = lock_module.status(store)
    if held is None:
        return None
    if held.kind == "process" and not force:
        state = f"stale: {stale}" if stale else "its deploy is running"
        raise DeployerError(
            f"the lock of {name} is held by a deploy of {held.describe()} ({state}); "
            f"break it with `deploy lock release {name} --force`"
        )
    lock_module.break_lock(store, name, held)
    command = "lock release --force" if force else "lock release"
    actor = target.env.outside.actor()
    released = f"released the lock of {held.describe()}"
    audit.write(store, actor, name, command, SUCCESS, redact, error=released)
    return held
