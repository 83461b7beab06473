"""What `deploy serve` makes of one reconcile round of an environment, as values: how it reads
(in sync, healthy, or unknown and why), what it tells (once per distinct drift or problem, kept
across restarts in a `Memory`), and when the environment's next round is due. Pure: the agent
(deployer.commands.serve) observes, deploys and sends."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

IN_SYNC, OUT_OF_SYNC, UNKNOWN, INVALID = "in-sync", "out-of-sync", "unknown", "invalid"
HEALTHY, UNHEALTHY = "healthy", "unhealthy"
NOTIFY, AUTO, OFF = "notify", "auto", "off"
DEFAULT_INTERVAL = 60.0
DEFAULT_LISTEN = "127.0.0.1:8787"  # where the agent's web view listens: loopback only
FIRST_RETRY = 5.0  # an environment that could not be read is tried again this soon, then later


@dataclass(frozen=True)
class HostReading:
    """One host (or, on a swarm, the stack) as a round read it."""

    host: str
    sync: str  # IN_SYNC | OUT_OF_SYNC | UNKNOWN
    health: str  # HEALTHY | UNHEALTHY | UNKNOWN
    error: str = ""


@dataclass(frozen=True)
class Reading:
    """One environment as a round read it. Every text is masked already."""

    environment: str
    sync: str  # IN_SYNC | OUT_OF_SYNC | UNKNOWN (not read) | INVALID (spec, or the checkout)
    health: str
    changes: tuple[str, ...] = ()  # the plan's lines, each change with its causes
    problem: str = ""  # why it is UNKNOWN or INVALID
    hosts: tuple[HostReading, ...] = ()
    # What tells one drift from another (a digest; "" in sync): which changes, to what declared
    # state. Not their causes, which are for people and may say "exited 5 seconds ago".
    drift: str = ""


def host_reading(host: str, in_sync: bool | None, healthy: bool | None, error: str) -> HostReading:
    """A host as read: None where it could not be (then `error` says why)."""
    sync = UNKNOWN if in_sync is None else IN_SYNC if in_sync else OUT_OF_SYNC
    health = UNKNOWN if healthy is None else HEALTHY if healthy else UNHEALTHY
    return HostReading(host, sync, health, error)


def reading(
    environment: str,
    hosts: Sequence[HostReading],
    changes: Sequence[str],
    drift: Sequence[str],
) -> Reading:
    """The environment from its hosts: unknown if any host is, out of sync if any is. `changes`
    are shown; `drift` (the changes' hosts, services and actions, and what is declared) names
    the drift."""
    errors = [f"{h.host}: {h.error}" if len(hosts) > 1 else h.error for h in hosts if h.error]
    syncs = {h.sync for h in hosts}
    sync = UNKNOWN if UNKNOWN in syncs else OUT_OF_SYNC if OUT_OF_SYNC in syncs else IN_SYNC
    healths = {h.health for h in hosts}
    health = UNKNOWN if UNKNOWN in healths else UNHEALTHY if UNHEALTHY in healths else HEALTHY
    key = hashlib.sha256("\n".join(drift).encode()).hexdigest()[:16]
    return Reading(
        environment,
        sync,
        health,
        tuple(changes),
        "; ".join(errors),
        tuple(hosts),
        key if sync == OUT_OF_SYNC else "",
    )


def unreadable(environment: str, sync: str, problem: str) -> Reading:
    """An environment whose spec or checkout is broken (INVALID), or not reached (UNKNOWN)."""
    return Reading(environment, sync, UNKNOWN, problem=problem)


@dataclass(frozen=True)
class Memory:
    """What the agent told about an environment, and how its deploys of the drift failed: kept
    across restarts so that a restart neither tells it again nor deploys a failed drift again
    before its back-off; `time` is the round that changed it."""

    drift: str = ""  # the drift last told (Reading.drift)
    problem: str = ""  # the problem last told
    failed: str = ""  # the drift whose deploy failed last
    failures: int = 0  # how many times in a row it failed
    failed_at: float = 0.0  # when it failed last
    time: float = 0.0

    def record(self) -> dict[str, object]:
        return {
            "drift": self.drift,
            "problem": self.problem,
            "failed": self.failed,
            "failures": self.failures,
            "failed_at": self.failed_at,
            "time": self.time,
        }

    @classmethod
    def of(cls, record: Mapping[str, object]) -> Memory:
        """The memory a record keeps; what is damaged in it reads as not told."""

        def text(key: str) -> str:
            value = record.get(key)
            return value if isinstance(value, str) else ""

        def number(key: str) -> float:
            value = record.get(key)
            return float(value) if isinstance(value, int | float) else 0.0

        failures = record.get("failures")
        return cls(
            text("drift"),
            text("problem"),
            text("failed"),
            failures if isinstance(failures, int) and failures >= 0 else 0,
            number("failed_at"),
            number("time"),
        )

    def deploy_failed(self, drift: str, time: float) -> Memory:
        failures = self.failures + 1 if drift == self.failed else 1
        return replace(self, failed=drift, failures=failures, failed_at=time)

    def deployed(self) -> Memory:
        return replace(self, failed="", failures=0, failed_at=0.0)


# What a notification is about.
DRIFT, PROBLEM, RECOVERED, BACK_IN_SYNC = "drift", "problem", "recovered", "in-sync"
DEPLOY_STARTED, DEPLOY_SUCCEEDED, DEPLOY_FAILED = (
    "deploy-started",
    "deploy-succeeded",
    "deploy-failed",
)
ROLLED_BACK = "deploy-rolled-back"
DEPLOY_SKIPPED = "deploy-skipped"  # the lock was taken by someone else as the deploy started


@dataclass(frozen=True)
class Notice:
    kind: str
    environment: str
    title: str
    body: str = ""

    @property
    def failing(self) -> bool:
        """Whether it tells of something wrong (notifiers show it as a failure)."""
        return self.kind in (DRIFT, PROBLEM, DEPLOY_FAILED, ROLLED_BACK)


def told(memory: Memory, now: Reading, time: float) -> tuple[list[Notice], Memory]:
    """What to tell of a round's reading, given what was told before; and what is then told.
    A drift or a problem is told once, however many rounds see it; its end is told once too."""
    name, notices = now.environment, []
    remembered = memory
    if now.problem and now.sync in (UNKNOWN, INVALID):
        if now.problem != memory.problem:
            what = "spec invalid" if now.sync == INVALID else "not reachable"
            notices.append(Notice(PROBLEM, name, f"{name}: {what}", now.problem))
            remembered = replace(remembered, problem=now.problem)
        return notices, _stamped(memory, remembered, time)
    if memory.problem:
        notices.append(Notice(RECOVERED, name, f"{name}: recovered", f"read again: {now.sync}"))
        remembered = replace(remembered, problem="")
    if now.sync == OUT_OF_SYNC and now.drift != memory.drift:
        body = "\n".join(now.changes)
        notices.append(Notice(DRIFT, name, f"{name}: out of sync", body))
        remembered = replace(remembered, drift=now.drift)
    elif now.sync == IN_SYNC and memory.drift:
        notices.append(Notice(BACK_IN_SYNC, name, f"{name}: in sync again"))
        remembered = replace(remembered.deployed(), drift="")
    return notices, _stamped(memory, remembered, time)


def _stamped(before: Memory, after: Memory, time: float) -> Memory:
    return after if after == before else replace(after, time=time)


def deploys(apply: str, now: Reading, memory: Memory, time: float, interval: float) -> bool:
    """Whether the agent deploys after this reading: `apply: auto` and a difference to make;
    the very drift whose deploy failed last only once its back-off (retry_after) has passed."""
    if apply != AUTO or now.sync != OUT_OF_SYNC:
        return False
    if now.drift != memory.failed:
        return True
    return time >= memory.failed_at + retry_after(interval, memory.failures)


MAX_RETRY = 3600.0


def retry_after(interval: float, failures: int) -> float:
    """How long after its deploy failed (the `failures`-th time in a row) the same drift is
    deployed again: one interval, then twice as long each time, an hour at most. An engine that
    died under a deploy is back soon; an image that never gets healthy is not redeployed (and
    rolled back) every round."""
    return min(MAX_RETRY, interval * 2.0 ** (failures - 1))


def next_due(now: float, interval: float, reading: Reading, failures: int) -> float:
    """When the environment's next round is: after its interval; sooner after it could not be
    read (5 s, then twice as long each time, never later than the interval)."""
    if reading.sync != UNKNOWN or failures == 0:
        return now + interval
    return now + min(interval, FIRST_RETRY * 2.0 ** (failures - 1))


# The webhook's signatures, as each forge sends them.
GITHUB_SIGNATURE, GITLAB_TOKEN, GITEA_SIGNATURE = (
    "x-hub-signature-256",
    "x-gitlab-token",
    "x-gitea-signature",
)


def signed(headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
    """Whether a webhook carries a valid signature of `body` by `secret`: GitHub's
    `X-Hub-Signature-256: sha256=HMAC`, Gitea's `X-Gitea-Signature: HMAC` (HMAC-SHA256 in hex),
    or GitLab's `X-Gitlab-Token: SECRET`. `headers` has lowercase names."""
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if GITHUB_SIGNATURE in headers:
        return hmac.compare_digest(headers[GITHUB_SIGNATURE].encode(), f"sha256={digest}".encode())
    if GITEA_SIGNATURE in headers:
        return hmac.compare_digest(headers[GITEA_SIGNATURE].encode(), digest.encode())
    if GITLAB_TOKEN in headers:
        return hmac.compare_digest(headers[GITLAB_TOKEN].encode(), secret)
    return False
