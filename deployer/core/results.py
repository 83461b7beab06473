"""What commands return, for every target: the values the CLI renders (deployer/cli/render)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from deployer.core.command import Command
from deployer.core.errors import ConfigIssue, DeployerError
from deployer.core.observed import ObservedContainer, ObservedService
from deployer.core.plan import Plan
from deployer.core.status import EnvironmentStatus

T = TypeVar("T")

# What a state-changing command came to, as its records keep it.
SUCCESS, FAILED, ROLLED_BACK, INTERRUPTED = "success", "failed", "rolled back", "interrupted"
# What a command did to one host of several, besides the results above.
UNCHANGED = "unchanged"  # in sync already: not touched
NOT_STARTED = "not started"  # its batch never started (an earlier batch failed, or an interrupt)
UNKNOWN = "unknown"  # its engine stopped answering: what runs there cannot be known


@dataclass(frozen=True)
class HostOutcome(Generic[T]):
    """What an operation gave on one host: its value, or the error that ended it there."""

    host: str
    value: T | None = None
    error: DeployerError | None = None


def failed_hosts(outcomes: Sequence[HostOutcome[Any]]) -> list[str]:
    """The hosts whose outcome is an error."""
    return [o.host for o in outcomes if o.error is not None]


@dataclass(frozen=True)
class Applied:
    plan: Plan
    seconds: float
    containers: tuple[ObservedContainer, ...]  # the changed services' containers afterwards


@dataclass(frozen=True)
class SwarmApplied:
    plan: Plan
    seconds: float
    services: tuple[ObservedService, ...]  # the created and updated services afterwards
    unavailable: tuple[str, ...] = ()  # nodes that took no task: "dh6 (drain)"
    done: str = "deployed"  # what the command did, in a word


@dataclass(frozen=True)
class HostResult:
    """What a command did on one host of several, and how long it took there."""

    host: str
    result: str
    changes: tuple[str, ...] = ()
    seconds: float = 0.0
    error: str = ""


@dataclass(frozen=True)
class Rollout:
    """What a deploy over several hosts did on each (services left out: see the release)."""

    environment: str
    hosts: tuple[HostResult, ...]

    @property
    def in_sync(self) -> bool:
        return all(h.result == UNCHANGED for h in self.hosts)


# The newest audit entries kept per environment: a bound on engine objects that still covers
# years of deploys at a few a day.
AUDIT_KEEP = 1000


@dataclass(frozen=True)
class Trimmed:
    releases: int = 0  # release records removed
    audit: int = 0  # audit entries removed

    def lines(self) -> list[str]:
        """What was removed, for the audit entry; nothing when nothing was."""
        lines = []
        if self.releases:
            lines.append(f"removed {self.releases} release record(s) beyond keep_history")
        if self.audit:
            lines.append(f"removed {self.audit} audit entries beyond the newest {AUDIT_KEEP}")
        return lines


@dataclass(frozen=True)
class Candidate:
    image_id: str
    references: tuple[str, ...]  # its tags (none for a dangling image)
    size: int  # bytes, as the engine reports the image (layers shared with others included)
    why: str
    node: str = ""  # the swarm node whose engine holds it ("" on one engine)


@dataclass(frozen=True)
class Prunable:
    """The images that may go, and the nodes read for them (a swarm's: images are per node)."""

    candidates: tuple[Candidate, ...]
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pruned:
    candidates: tuple[Candidate, ...]
    dry_run: bool
    freed: int  # bytes of image layers the engine no longer holds (0 for a dry run)
    # Records removed beyond retention (none in a dry run).
    trimmed: Trimmed = field(default_factory=Trimmed)
    # A swarm's nodes, each with the bytes it freed (0 in a dry run); none on one engine.
    nodes: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Built:
    service: str
    image: str  # the tag built, as the spec resolves it
    image_id: str
    pushed: str | None = None  # the digest in the registry, once pushed (or found there)
    already_there: bool = False  # the registry held this very image under the tag: no push
    before: str | None = None  # the image the tag named here before the build (None: none)


@dataclass(frozen=True)
class PinnedService:
    service: str
    before: str  # the image TARGET's spec resolves to now
    pinned: str  # `repository:tag@sha256:...`: the exact image SOURCE runs
    source_release: int | None  # the newest release of SOURCE that ran it


@dataclass(frozen=True)
class Promotion:
    """What `deploy promote` writes into TARGET's spec, and the texts before and after."""

    source: str
    target: str
    spec: Path  # TARGET's spec file
    source_release: int | None
    services: tuple[PinnedService, ...]
    original: str
    edited: str

    @property
    def changes(self) -> bool:
        return self.edited != self.original


@dataclass(frozen=True)
class Divergence:
    """A host whose running services are not those its newest release recorded for it."""

    host: str
    release: int | None  # the newest release listing the host (None: none does)
    differences: tuple[str, ...]


@dataclass(frozen=True)
class Diff:
    """What `deploy` would change on each host, and why."""

    environment: str
    project: str
    outcomes: tuple[HostOutcome[Plan], ...]
    by_host: bool = True  # its document lists each host's plan (a swarm is one place: not)

    @property
    def in_sync(self) -> bool:
        return all(o.value is not None and o.value.in_sync for o in self.outcomes)


@dataclass(frozen=True)
class Statuses:
    """What runs on each host, against what is declared."""

    environment: str
    project: str
    outcomes: tuple[HostOutcome[EnvironmentStatus], ...]

    @property
    def healthy(self) -> bool:
        return all(o.value is not None and o.value.healthy for o in self.outcomes)


@dataclass(frozen=True)
class ByHost(Generic[T]):
    """What a command done host after host gave on each host it reached (the first that failed
    stops it): `hosts` are all it was to act on."""

    hosts: tuple[str, ...]
    outcomes: tuple[HostOutcome[T], ...]


@dataclass(frozen=True)
class Restarted:
    """The restarted services' containers, running again."""

    containers: tuple[ObservedContainer, ...]


@dataclass(frozen=True)
class TakenDown:
    """What `deploy down` removed: the project's containers and networks, and the `volumes`
    asked for; or a swarm's whole `stack` with its `services`."""

    environment: str
    volumes: tuple[str, ...] | None = None  # None: volumes kept
    stack: str | None = None
    services: tuple[str, ...] = ()


@dataclass(frozen=True)
class ComposeRendering:
    """The `docker compose` invocation that deploys an environment, and the resolved model."""

    command: Command
    model: Mapping[str, Any]
    is_secret: Callable[[str], bool]


@dataclass(frozen=True)
class StackRendering:
    """The `docker stack deploy` invocation, the stack file it is given, and the conversion's
    warnings."""

    command: Command
    stack: Mapping[str, Any]
    is_secret: Callable[[str], bool]
    warnings: tuple[ConfigIssue, ...]


Rendering = ComposeRendering | StackRendering


@dataclass(frozen=True)
class Validated:
    names: list[str]  # the environments checked
    # What works but is risky: weak secrets, settings a target only warns about.
    warnings: list[ConfigIssue]
