"""Stage 4's values: what runs, as read from an engine (containers of a Compose project) or from
a swarm manager (the services and tasks of a stack). Pure: the targets read the engines
(deployer/targets/host/observe.py, deployer/targets/swarm/observe.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from deployer.core.reference import lookup_key

# Restart policies under which the engine leaves a container that exited 0 stopped: a one-shot
# job (a migration) that has done its work, as Compose's `service_completed_successfully` reads it.
ONE_SHOT_POLICIES = frozenset({"no", "on-failure"})


def is_ready(state: str, health: str | None) -> bool:
    """Running and, where the container has a health check, healthy."""
    return state == "running" and health in (None, "healthy")


def is_steady(started_at: float, engine_now: float, window: float) -> bool:
    """Up since at least `window` seconds, both times by the engine's clock."""
    return engine_now - started_at >= window


def is_completed(state: str, exit_code: int | None, restart: str) -> bool:
    """A one-shot container that finished its work: exited 0 under a policy that leaves it so."""
    return state == "exited" and exit_code == 0 and restart.split(":")[0] in ONE_SHOT_POLICIES


@dataclass(frozen=True)
class ObservedContainer:
    id: str
    name: str
    service: str
    number: int
    state: str  # the engine's: created, running, restarting, exited, paused, dead
    status: str  # the engine's words, e.g. "Exited (1) 3 minutes ago"
    health: str | None  # healthy, unhealthy, starting, or None without a health check
    image: str  # the reference it was created from
    image_id: str
    # What deployer knows it runs: the fingerprint on its label, or the one the store remembers
    # for it (adopted, or signalled to reread files); None: made by someone else.
    fingerprint: Mapping[str, str] | None
    exit_code: int | None = None  # of an exited container, from the engine's status words
    config_hash: str | None = None  # Compose's hash of the configuration it was made with
    # The fingerprint on its label (what Compose hashed when it made it), None without one.
    made_with: Mapping[str, str] | None = None

    @property
    def ready(self) -> bool:
        return is_ready(self.state, self.health)

    @property
    def never_started(self) -> bool:
        """Created and never started: the engine's state "created" is a zero State.StartedAt."""
        return self.state == "created"

    def done(self, restart: str) -> bool:
        """Ready, or a one-shot container of a service with restart policy `restart` that completed."""
        return self.ready or is_completed(self.state, self.exit_code, restart)


@dataclass(frozen=True)
class ObservedState:
    project: str
    containers: tuple[ObservedContainer, ...]  # sorted by service, then number
    image_ids: Mapping[str, str]  # reference.lookup_key of a reference or ID -> local image ID
    digests: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # ID -> repo@sha256:...

    def remembering(self, remembered: Mapping[str, Mapping[str, str]]) -> ObservedState:
        """The containers with the fingerprints the store remembers for them (by ID)."""
        containers = tuple(
            replace(c, fingerprint=remembered[c.id]) if c.id in remembered else c
            for c in self.containers
        )
        return replace(self, containers=containers)

    def of_service(self, service: str) -> list[ObservedContainer]:
        return [c for c in self.containers if c.service == service]

    def image_id(self, reference: str) -> str | None:
        return self.image_ids.get(lookup_key(reference))


# Service labels (deploy.labels) carrying the converted service's fingerprint: the whole spec's,
# and each top-level key's (`key=digest,...`), so that drift names the keys that changed.
FINGERPRINT_LABEL = "io.deployer.fingerprint"
KEY_FINGERPRINTS_LABEL = "io.deployer.fingerprint.keys"
# The files a service bind-mounts, as read on each node: `{"conf/app.conf": "<sha256>", ...}`.
# A service label, outside the task's spec: writing it replaces no task.
FILES_LABEL = "io.deployer.files"
REQUESTED_IMAGE_LABEL = "com.docker.stack.image"  # the reference the stack file asked for


def parse_key_fingerprints(label: str) -> dict[str, str]:
    """KEY_FINGERPRINTS_LABEL's value as written by with_fingerprint; {} if it is not that."""
    pairs = [entry.partition("=") for entry in label.split(",") if entry]
    if not all(sep and key and digest for key, sep, digest in pairs):
        return {}
    return {key: digest for key, _, digest in pairs}


@dataclass(frozen=True)
class ObservedTask:
    slot: int | None  # None for a global service's task (one per node)
    node: str  # the node's hostname ("" if the node is gone)
    desired_state: str
    state: str
    health: str | None  # "healthy" / "starting" where the service has a health check, else None
    since: str  # when the task entered its state (engine time, RFC 3339)
    error: str  # what Swarm or the container said went wrong, "" if nothing
    current: bool = True  # made from the service's spec as it is now (not an older one)


@dataclass(frozen=True)
class ObservedService:
    name: str  # the stack file's service name (without the PROJECT_ prefix)
    id: str
    version: int  # the swarm's Version.Index of the service: every update raises it
    labels: Mapping[str, str]
    image: str  # as the service runs it: pinned to a digest by stack deploy
    replicas: int | None  # desired; None for a global service
    running: int
    desired_tasks: int
    update_state: str | None  # UpdateStatus.State: updating, paused, completed, rollback_...
    update_message: str
    tasks: tuple[ObservedTask, ...]  # the current ones, by slot and node
    last_error: str  # the newest error of any of its tasks, old ones included
    # The names of the configs and secrets its spec mounts (a file's are named by its content).
    file_names: frozenset[str] = frozenset()

    @property
    def requested_image(self) -> str:
        return self.labels.get(REQUESTED_IMAGE_LABEL) or self.image.partition("@")[0]

    @property
    def digest(self) -> str | None:
        return self.image.partition("@")[2] or None

    @property
    def fingerprint(self) -> str | None:
        return self.labels.get(FINGERPRINT_LABEL)

    @property
    def key_fingerprints(self) -> dict[str, str]:
        return parse_key_fingerprints(self.labels.get(KEY_FINGERPRINTS_LABEL, ""))


@dataclass(frozen=True)
class ObservedStack:
    project: str
    services: Mapping[str, ObservedService]
