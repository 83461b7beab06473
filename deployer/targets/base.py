"""The one interface every target offers, and what all of them share.

A target is where an environment runs: one engine driven with the Compose CLI
(deployer/targets/host), several such engines rolled out in batches (deployer/targets/fleet,
a composite of one-engine targets), or a Docker Swarm through a manager
(deployer/targets/swarm). The commands (deployer/commands) are written once against `Target`:
each target observes, plans, applies and undoes its own way, keeps its records and lock in its
own store, and says by its capabilities what it cannot do.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any, Generic, Protocol, TypeVar

from deployer.compose.project import docker_login
from deployer.compose.resolve import resolve, secret_values
from deployer.core.command import Runner
from deployer.core.desired import DesiredState
from deployer.core.errors import (
    ConfigIssue,
    DeployerError,
    RolledBackError,
    TagMovedError,
    UnsupportedError,
)
from deployer.core.plan import BUILT, Plan
from deployer.core.progress import Progress
from deployer.core.results import (
    Applied,
    Candidate,
    Diff,
    Divergence,
    HostOutcome,
    Prunable,
    Rendering,
    Restarted,
    Rollout,
    Statuses,
    SwarmApplied,
    TakenDown,
)
from deployer.core.spec import Spec
from deployer.core.status import SwarmStatus
from deployer.core.variables import Redactor, Variables
from deployer.infra import runner
from deployer.infra.engine import Engine, EngineClient
from deployer.infra.registry import Login, registry_of
from deployer.state.engine_store import StateStore
from deployer.state.releases import HostRelease, Release, Secrets, ServiceRelease, rollback_target
from deployer.state.store import Actor, Store
from deployer.state.swarm_store import SwarmStore

# What a state-changing command comes to on one target or another.
Result = Applied | SwarmApplied | Rollout | Plan


@dataclass(frozen=True)
class Outside:
    """Where targets and commands reach beyond this process: processes, engines, the records,
    who acts. The unit tests give fakes (tests/unit/fakes.py)."""

    run: Runner = runner.run
    connect: Callable[[Engine], EngineClient] = EngineClient
    store: Callable[[EngineClient, str], Store] = StateStore  # on one engine
    swarm_store: Callable[[EngineClient, str], Store] = SwarmStore  # in a swarm
    actor: Callable[[], Actor] = Actor.current


@dataclass(frozen=True)
class Environment:
    """One environment as declared: its spec, its variables, and how to reach outside."""

    spec: Spec
    variables: Variables
    outside: Outside = field(default_factory=Outside)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def project(self) -> str:
        return self.spec.project

    @cached_property
    def secrets(self) -> Secrets:
        return Secrets.of(self.spec, self.variables)

    @cached_property
    def mask(self) -> Redactor:
        """Hides the secret values of the variables in what deployer builds from the resolved
        model's values (a path interpolated from a secret variable)."""
        mask = Redactor()
        mask.add(self.variables.secret_values())
        return mask

    def login(self, images: Sequence[str], redact: Redactor) -> Login | None:
        """The spec's registry credentials, when one of `images` needs them; None when no
        registry is set up."""
        registry = self.spec.registry
        if registry is None:
            return None
        password = self.variables.values().get(registry.password_env) or os.environ.get(
            registry.password_env
        )
        if not password:
            if not any(registry_of(image) == registry.server for image in images):
                return None
            raise DeployerError(
                f"registry {registry.server}: set the variable {registry.password_env} "
                f"(in the environment or an env file) to the password of {registry.username}"
            )
        redact.add([password])
        return Login(registry.server, registry.username, password)


# What a target may be unable to do; every other command works on every target.
PRUNE, PROMOTE, REMOVE_VOLUMES = "prune", "promote", "down --volumes"


@dataclass(frozen=True)
class Capabilities:
    """What a target cannot do, each with the one line that says so."""

    missing: Mapping[str, str] = field(default_factory=dict)

    def require(self, capability: str) -> None:
        """Refuse, before any engine is reached, what the target cannot do."""
        if capability in self.missing:
            raise self.refusal(capability)

    def refusal(self, capability: str) -> UnsupportedError:
        return UnsupportedError(capability, self.missing[capability])


def refuse_moved_tags(env: Environment, the_plan: Plan) -> None:
    """A tag that moved in its registry is an error where the environment's tags are immutable
    (`deploy.immutable_tags`)."""
    if env.spec.immutable_tags and the_plan.moved:
        moved = the_plan.moved[0]
        raise TagMovedError(
            moved.image,
            moved.tag,
            moved.old,
            moved.new,
            f"{env.name} has immutable tags (deploy.immutable_tags): nothing changed; "
            "deploy a new tag, or pin the digest to run (image: repo:tag@sha256:...)",
            moved.kind == BUILT,
        )


class Check(Enum):
    """How a plan asks the registries about the tags that run: not at all (a rollback names
    exact images), with a failure a warning (diff), or a failure an error (deploy)."""

    SKIP = "skip"
    WARN = "warn"
    STRICT = "strict"


class Planned(Protocol):
    """A target's plan together with what it was made from."""

    @property
    def changes_anything(self) -> bool:
        """Whether applying it changes anything."""
        ...

    @property
    def plans(self) -> list[tuple[str, Plan]]:
        """The plan as shown, by host (one where the target is one host or a swarm)."""
        ...

    @property
    def states(self) -> list[DesiredState]:
        """The desired states it deploys: what a release matches configurations against."""
        ...

    def lines(self) -> list[str]:
        """Its changes, each with its causes, as the records keep them."""
        ...


@dataclass(frozen=True)
class PlacePlan:
    """The plan of one place (an engine, a swarm), with the desired state it was made from."""

    host: str
    plan: Plan
    desired: DesiredState

    @property
    def plans(self) -> list[tuple[str, Plan]]:
        return [(self.host, self.plan)]

    @property
    def states(self) -> list[DesiredState]:
        return [self.desired]

    def lines(self) -> list[str]:
        return self.plan.lines()


class Failed(Exception):
    """A target's apply that failed: why (`error`), and whether it left the environment changed
    (`changed`: asked only where a rollback is wanted, for it may read the engine)."""

    def __init__(
        self, error: DeployerError, changed: Callable[[], bool], put_back: Sequence[str] = ()
    ) -> None:
        """`put_back`: services the apply itself put back as they were (a start-first update
        whose new containers failed), rolled back as those its undo puts back are."""
        super().__init__(error.message)
        self.error, self.changed, self.put_back = error, changed, put_back

    def reported(self, undone: Sequence[str] | None) -> DeployerError:
        """The error the command ends with, given what was put back: None where nothing was to
        be (`deploy.on_failure: stop`), [] where nothing had changed."""
        return RolledBackError(self.error, undone) if undone else self.error


@dataclass(frozen=True)
class Undone:
    """What an undo put back (services, or hosts), and the desired states it deployed."""

    names: list[str]
    states: list[DesiredState] = field(default_factory=list)


@dataclass(frozen=True)
class Teardown:
    """What `deploy down` removes, read under the lock: the question it asks, what the audit
    lists, and the volumes it deletes (None: it keeps them), which are always asked about."""

    question: str
    removed: list[str]
    volumes: list[str] | None = None
    services: list[str] = field(default_factory=list)  # a swarm's, removed with its stack


DesiredT = TypeVar("DesiredT")
PlannedT = TypeVar("PlannedT", bound=Planned)


class Target(ABC, Generic[DesiredT, PlannedT]):
    """Where an environment runs. `DesiredT` is what it deploys (the spec's desired state, or a
    release's), `PlannedT` its plan together with what it was made from."""

    def __init__(self, env: Environment, engine: Engine) -> None:
        self.env = env
        self.engine = engine  # where Compose resolves and builds: the host, the first, a manager
        self._client: EngineClient | None = None

    @property
    def host(self) -> str:
        return self.engine.host

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities()  # every command

    @property
    def client(self) -> EngineClient:
        """The connection to `engine`, made on first use. Not a cached_property: before Python
        3.12 its lock is shared by every instance, and the hosts of several connect at once."""
        if self._client is None:
            self._client = self.env.outside.connect(self.engine)
        return self._client

    @abstractmethod
    def parts(self) -> Sequence[Place[Any]]:
        """What commands done host after host act on: the target itself, or each of its hosts."""

    @property
    def hosts(self) -> list[str]:
        """The hosts a command acts on, by URL."""
        return [part.host for part in self.parts()]

    @abstractmethod
    def store(self, reading: bool = False) -> Store:
        """Where the environment's records and lock live. Reading needs one place that answers;
        the lock needs them all."""

    def resolve(self, redact: Redactor) -> DesiredState:
        """The spec's desired state as Compose resolves it (the same on every host); the secret
        values that reach containers from elsewhere (`env_file:`) are taught to `redact`."""
        spec = self.env.spec
        desired = resolve(spec, self.env.variables, self.engine, self.env.outside.run)
        redact.add(secret_values(desired, spec.is_secret))
        return desired

    @contextmanager
    def resolving(self, redact: Redactor) -> Iterator[Callable[[], DesiredState]]:
        """The spec's desired state, resolved by Compose in its own process while this one goes
        on (reading the engine): what the block gets asks for it, waiting if need be."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            yield pool.submit(self.resolve, redact).result

    # A state-changing command: plan, apply, and undo what a failure changed
    @abstractmethod
    def plan(self, desired: Callable[[], DesiredT], redact: Redactor, check: Check) -> PlannedT:
        """What deploying `desired()` changes. The engine is read before `desired` is asked for,
        so that Compose resolves it meanwhile; a problem in the spec is reported first."""

    @abstractmethod
    def replan(self, planned: PlannedT, redact: Redactor) -> PlannedT:
        """The same plan made again against what runs now (under the lock)."""

    @abstractmethod
    def unchanged(self, planned: PlannedT) -> Result:
        """What a deploy with nothing to change returns."""

    @abstractmethod
    def prepare(self, planned: PlannedT, redact: Redactor) -> Login | None:
        """What must hold before anything changes; the registry login the changes need."""

    def question(self, planned: PlannedT) -> str:
        count = sum(len(plan.changes) for _, plan in planned.plans)
        return f"Apply {count} change(s) to {self.env.name}?"

    @abstractmethod
    def apply(self, planned: PlannedT, progress: Progress, login: Login | None) -> Result:
        """Carry out the plan; a failure is raised as Failed."""

    @abstractmethod
    def undo(self, planned: PlannedT, progress: Progress, releases: Sequence[Release]) -> Undone:
        """Put back what a failed apply of `planned` changed, as it ran before."""

    @abstractmethod
    def snapshot(
        self,
        planned: PlannedT,
        states: Sequence[DesiredState],
        releases: Sequence[Release],
        redact: Redactor,
    ) -> tuple[dict[str, ServiceRelease], list[HostRelease]]:
        """What runs now, as a release records it: per service (of the first host), and per
        host where there are several."""

    def rollback_target(self, releases: Sequence[Release], number: int | None) -> Release:
        """Release `number`, or the one a plain `deploy rollback` goes back to."""
        return rollback_target(releases, number)

    @abstractmethod
    def release_state(self, release: Release, redact: Redactor) -> DesiredT:
        """The desired state of `release` here: its exact images, with the configuration it
        recorded."""

    def save_login(self, login: Login) -> None:
        """Keep the registry login in the docker CLI's configuration (`--save-login`)."""
        for part in self.parts():
            command = docker_login(part.engine, login.server, login.username, login.password)
            self.env.outside.run(command)

    # Reading
    @abstractmethod
    def diff(self, redact: Redactor) -> Diff:
        """What `deploy` would change, and why; a registry that cannot be asked is a warning."""

    @abstractmethod
    def status(self, redact: Redactor) -> Statuses | SwarmStatus:
        """What runs, against what is declared."""

    @abstractmethod
    def running(self, redact: Redactor) -> Statuses:
        """What runs on each host against what is declared, each container (or task) with the
        exact image it runs (`pinned`) and the release that put it there: what `deploy
        promote` takes from its source."""

    def divergences(self, releases: Sequence[Release]) -> list[Divergence]:
        """The hosts whose running services are not those their newest release recorded."""
        return []

    @abstractmethod
    def logs(
        self,
        services: Sequence[str],
        follow: bool,
        since: str | None,
        tail: int | None,
        redact: Redactor,
    ) -> Iterator[HostOutcome[str]]:
        """The services' log lines (all services when none named) as they come, by host."""

    @abstractmethod
    def render(self, desired: DesiredState) -> Rendering:
        """The exact invocation that deploys `desired`, and what it is given."""

    def validate(self, desired: DesiredState) -> tuple[list[ConfigIssue], list[ConfigIssue]]:
        """What this target cannot honour of `desired` (refused, and only warned about)."""
        return [], []


class Place(Target[DesiredState, PlannedT]):
    """A target that is one place: one engine, or one swarm. Commands done host after host
    (restart, down, prune) act on each place of a target (`Target.parts`)."""

    @abstractmethod
    def restart(
        self, desired: DesiredState, services: Sequence[str], progress: Progress
    ) -> Restarted | SwarmApplied:
        """Restart the services and wait until they are ready again."""

    @abstractmethod
    def teardown(self, volumes: bool, several: bool) -> Teardown:
        """What `down` removes, read under the lock (`several`: this is one of several hosts)."""

    @abstractmethod
    def take_down(self, teardown: Teardown) -> TakenDown:
        """Remove it, and wait until it is gone."""

    # Image hygiene: a place that keeps no images of its own refuses it, by its capabilities.
    def prunable(self, desired: DesiredState, aggressive: bool) -> Prunable:
        """The images that may go: dangling ones; with `aggressive`, this environment's unused
        ones too."""
        raise self.capabilities.refusal(PRUNE)

    def remove_images(self, candidates: Sequence[Candidate], stopped: str) -> dict[str, int]:
        """Remove the images; returns the bytes of layers each engine no longer holds, by the
        node of the candidates ("" for one engine)."""
        raise self.capabilities.refusal(PRUNE)

    def running_images(self) -> dict[str, str]:
        """Per service, the ID of the image it runs."""
        raise self.capabilities.refusal(PRUNE)
