"""Stage 5's value, the same for every target: a plan is a list of changes, each with its causes
(shown to the user, never used to decide)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deployer.core.desired import UpdateOrder
from deployer.core.reference import ImageReference, is_image_id, short_id

# The order actions are listed (and carried out) in, for one service.
ACTIONS = ("pull", "adopt", "create", "recreate", "replace", "signal", "start", "scale", "remove")
UP_ACTIONS = frozenset({"create", "recreate", "replace", "start", "scale"})
# Recreated even where Compose sees nothing to change (`up --force-recreate`): a container that
# cannot be started, such as one an engine restart left created and never started.
REPLACE = "replace"
# Containers that run as declared but whose fingerprint deployer has not written on them: made by
# plain Compose (adopted as they are), or sent a signal to reread changed files. What they run is
# remembered in the store, since a container's labels cannot change without recreating it.
ADOPT, SIGNAL = "adopt", "signal"
REMEMBERED = frozenset({ADOPT, SIGNAL})
# Not a change to make: a swarm service still on its way to the spec it was given (Swarm's to
# finish, or the next deploy's), shown with the plan.
CONVERGE = "converge"


@dataclass(frozen=True)
class Roll:
    """A start-first update of one service: its new containers are started beside the old ones,
    and the old ones are stopped (within their stop_grace_period) and removed once the new ones
    are ready. What an update cut short left (new containers running, old ones stopped) counts."""

    scale: int  # its containers while old and new run side by side (`up --scale`)
    retire: tuple[str, ...]  # the old containers that run: retired once the new ones are ready
    discard: tuple[str, ...]  # old containers that do not run: removed before any is started


@dataclass(frozen=True)
class Change:
    service: str
    action: str
    causes: tuple[str, ...]
    image: str | None = None  # the image to pull, for "pull"
    signal: str | None = None  # the signal to send, for "signal"
    order: UpdateOrder | None = None  # how a recreate replaces the containers (shown)
    roll: Roll | None = None  # how it is carried out start-first, for a recreate that is


@dataclass(frozen=True)
class Plan:
    environment: str
    project: str
    changes: tuple[Change, ...]
    moved: tuple[MovedTag, ...] = ()  # tags that point to another digest in the registry now
    # Images whose tag could not be checked in their registry, with why (a warning, not a change).
    unchecked: tuple[str, ...] = ()
    # What reading the files the services read said: a path missing, a socket, a large folder.
    notes: tuple[str, ...] = ()

    @property
    def in_sync(self) -> bool:
        """Nothing to change: `deploy diff` exits 0, `deploy` changes nothing (a service still
        converging is not a change to make)."""
        return all(c.action == CONVERGE for c in self.changes)

    @property
    def pulls(self) -> list[str]:
        return [c.image for c in self.changes if c.action == "pull" and c.image]

    @property
    def services_to_up(self) -> list[str]:
        return sorted({c.service for c in self.changes if c.action in UP_ACTIONS})

    @property
    def rolls(self) -> list[tuple[str, Roll]]:
        """The services updated start-first, each with how."""
        return [(c.service, c.roll) for c in self.changes if c.roll is not None]

    @property
    def services_to_replace(self) -> list[str]:
        return sorted({c.service for c in self.changes if c.action == REPLACE})

    @property
    def signals(self) -> list[tuple[str, str]]:
        return [(c.service, c.signal) for c in self.changes if c.action == SIGNAL and c.signal]

    @property
    def services_to_remember(self) -> list[str]:
        return sorted({c.service for c in self.changes if c.action in REMEMBERED})

    @property
    def removes_orphans(self) -> bool:
        return any(c.action == "remove" for c in self.changes)

    def lines(self) -> list[str]:
        """Each change with its causes, as records keep them."""
        return [f"{c.service} {c.action}: {'; '.join(c.causes)}" for c in self.changes]


@dataclass(frozen=True)
class MovedTag:
    service: str
    image: str  # as the spec names it
    old: str  # the digest the image here came by (its ID where it came by none: BUILT)
    new: str  # the digest the tag points to in the registry now
    # Where `old` is: a running container's image (RUNNING), the image under the tag here that
    # came by the registry (PULLED) or that was built or tagged here (BUILT).
    kind: str = "running"

    @property
    def tag(self) -> str:
        return ImageReference.parse(self.image).tag or "latest"

    @property
    def cause(self) -> str:
        if self.kind == BUILT:
            return (
                f"the image under tag {self.tag} here ({short_id(self.old)}) is not the "
                f"registry's ({short_digest(self.new)})"
            )
        return f"tag {self.tag} moved: {short_digest(self.old)} -> {short_digest(self.new)}"


RUNNING, PULLED, BUILT = "running", "pulled", "built"


def differing(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The keys whose values differ (added, removed or changed), sorted: the parts of two
    fingerprints, the files of two labels."""
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


def short_digest(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    return f"{algorithm}:{value[:12]}"


def image_change(old: str, new: str) -> str:
    """`web:1 -> 2` within a repository, else both references whole."""
    if is_image_id(old) or is_image_id(new):
        return f"{old} -> {new}"
    before, after = ImageReference.parse(old), ImageReference.parse(new)
    if before.repository == after.repository and after.tag and not after.digest:
        return f"{old} -> {after.tag}"
    return f"{old} -> {new}"
