"""In-memory stand-ins for what targets reach outside the process (targets.base.Outside): the
state store, the engine's observations and a `docker compose` that keeps containers in a dict,
several engines, and a swarm manager."""

from __future__ import annotations

import _thread
import copy
import json
import re
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from deployer.core.command import Command, Completed
from deployer.core.desired import FINGERPRINT_LABEL, replicas_of
from deployer.core.errors import (
    CommandFailedError,
    DeployerError,
    EngineUnreachableError,
    PullError,
)
from deployer.infra.engine import Engine
from deployer.state.store import Actor, StoredLock
from deployer.targets.host.observe import NUMBER_LABEL, SERVICE_LABEL

ACTOR = Actor("alice", "host-a", 4242)


class FakeStore:
    """The Store protocol in memory: records by kind and key, as JSON like the engine's labels;
    the lock as one name whose holders get container IDs, on a clock the test sets."""

    def __init__(
        self, project: str = "shop", now: float = 1000.0, alive: Callable[[], bool] = lambda: True
    ) -> None:
        self.project = project
        self.alive = alive  # False: its engine is down, every call fails
        self.kept: dict[tuple[str, str], str] = {}
        self.holding: str | None = None
        self.now = now
        self.current: StoredLock | None = None
        self.count = 0  # locks taken so far, for their IDs
        self.renewals: list[tuple[str, int]] = []
        self.renewed = threading.Event()

    def records(self, kind: str) -> list[dict[str, Any]]:
        self._answer()
        found = []
        for (record_kind, _), text in sorted(self.kept.items()):
            try:
                record = json.loads(text)
            except ValueError:
                continue  # damaged: StateStore passes it over too
            if record_kind == kind:
                found.append(record)
        return found

    def add(self, kind: str, key: str, record: Mapping[str, Any]) -> bool:
        self._answer()
        if (kind, key) in self.kept:
            return False
        self.kept[(kind, key)] = json.dumps(record, sort_keys=True)
        return True

    def add_unique(self, kind: str, record: Mapping[str, Any]) -> None:
        self.add(kind, f"{len(self.kept):06d}", record)

    def clock(self) -> float:
        return self.now

    def _answer(self) -> None:
        if not self.alive():
            raise EngineUnreachableError("fake", "Cannot connect to the Docker daemon")

    def claim_lock(self, record: Mapping[str, Any]) -> bool:
        self._answer()
        if self.current is not None:
            return False
        self.count += 1
        self.current = StoredLock(dict(record), f"id-{self.count}", self.now, self.now)
        return True

    def lock(self) -> StoredLock | None:
        self._answer()
        return self.current

    def renew_lock(self, token: str, count: int) -> None:
        self.renewals.append((token, count))
        if self.current is not None and self.current.record["token"] == token:
            self.current = StoredLock(
                self.current.record, self.current.id, self.current.since, self.now
            )
        self.renewed.set()

    def remove_lock(self, lock_id: str, token: str) -> None:
        self._answer()
        if self.current is not None and self.current.id == lock_id:
            self.current = None

    def remove_records(
        self, kind: str, expired: Callable[[list[dict[str, Any]]], Collection[int]]
    ) -> int:
        readable = []
        for key in sorted(self.kept):
            try:
                readable.append((key, json.loads(self.kept[key])))
            except ValueError:
                continue  # damaged: StateStore passes it over too
        keys = [key for key, _ in readable if key[0] == kind]
        doomed = expired([record for key, record in readable if key[0] == kind])
        for index in doomed:
            del self.kept[keys[index]]
        return len(doomed)


class _Replaced(dict[str, Any]):
    """A service given with `!override`."""


class _OverrideLoader(yaml.SafeLoader):
    pass


_OverrideLoader.add_constructor(
    "!override", lambda loader, node: _Replaced(loader.construct_mapping(node, deep=True))
)
_REFERENCE = re.compile(r"\$\{(\w+)\}")

# What a container made from a service's configuration does: "healthy", "unhealthy" (runs, its
# health check never passes), "exits" (at once) or "fails" (`up` fails once it has created it,
# as with a port taken already).
Behaviour = Callable[[Mapping[str, Any]], str]
_STATUS = {
    "healthy": ("running", "Up 1 second (healthy)"),
    "unhealthy": ("running", "Up 1 second (unhealthy)"),
    "exits": ("exited", "Exited (1) 1 second ago"),
}
STOPPED = "Exited (0) Less than a second ago"  # as `docker stop` leaves a container


def _name(container: Mapping[str, Any]) -> str:
    return str(container["Names"][0]).lstrip("/")


def _service(container: Mapping[str, Any]) -> str:
    return str(container["Labels"][SERVICE_LABEL])


def _number(container: Mapping[str, Any]) -> int:
    return int(container["Labels"][NUMBER_LABEL])


class Containers(MutableMapping[str, dict[str, Any]]):
    """The containers of a project on one engine, as the engine lists them (by name and ID).

    As a mapping it is keyed by service, for a service that has one container: `containers["web"]`
    is web's container (an error where web has several), setting it replaces all of web's,
    deleting it removes them; `of(service)` and `all()` give every container."""

    def __init__(self, containers: Iterable[dict[str, Any]] = ()) -> None:
        self.kept: list[dict[str, Any]] = list(containers)

    def all(self) -> list[dict[str, Any]]:
        """Every container, in the order they were made."""
        return list(self.kept)

    def of(self, service: str) -> list[dict[str, Any]]:
        """A service's containers, by container number."""
        return sorted((c for c in self.kept if _service(c) == service), key=_number)

    def named(self, name: str) -> dict[str, Any] | None:
        """The container with this name or ID, as the docker CLI finds it."""
        return next((c for c in self.kept if name in (_name(c), c["Id"])), None)

    def add(self, container: dict[str, Any]) -> None:
        self.kept.append(container)

    def discard(self, container: Mapping[str, Any]) -> None:
        self.kept = [c for c in self.kept if c is not container]

    def drop(self, service: str) -> None:
        """Remove the service's containers, if any."""
        self.kept = [c for c in self.kept if _service(c) != service]

    def clear(self) -> None:
        self.kept.clear()

    def __getitem__(self, service: str) -> dict[str, Any]:
        found = self.of(service)
        if not found:
            raise KeyError(service)
        assert len(found) == 1, f"{service} has {len(found)} containers: read them with of()"
        return found[0]

    def __setitem__(self, service: str, container: dict[str, Any]) -> None:
        assert _service(container) == service, (service, container)
        self.drop(service)
        self.add(container)

    def __delitem__(self, service: str) -> None:
        if not self.of(service):
            raise KeyError(service)
        self.drop(service)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(_service(c) for c in self.kept))

    def __len__(self) -> int:
        return len({_service(c) for c in self.kept})

    def __repr__(self) -> str:
        return f"Containers({[_name(c) for c in self.kept]})"


_ENV_LINE = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)="(.*)"$', re.MULTILINE)
_ESCAPED = re.compile(r"\\(.)|\$\$")
_UNESCAPED = {"n": "\n", "r": "\r"}


def _env_file_values(command: Command) -> dict[str, str]:
    """The variables of deployer's env file (compose.project.env_file), as Compose reads them."""
    if not command.files:
        return {}
    (file,) = command.files.values()

    def unescaped(match: re.Match[str]) -> str:
        char = match.group(1)
        return "$" if char is None else _UNESCAPED.get(char, char)

    return {name: _ESCAPED.sub(unescaped, value) for name, value in _ENV_LINE.findall(file.content)}


@dataclass
class FakeCompose:
    """`docker compose config`, `up`, `rm`, `down` and `restart` over a model the test sets, and
    the engine they change; `docker stop` and `docker rm --force --volumes` of containers by name.

    `config` returns the model with the overrides on stdin applied (`!override` replaces a
    service) and `${NAME}` interpolated. `up SERVICE...` replaces each named service's containers
    with its replicas (`scale` or deploy.replicas, numbers kept); `up --no-recreate --scale S=N S`
    keeps S's containers as they are (started where they are not running), removes the
    highest-numbered beyond N and makes new ones, numbered on from the highest, up to N. A
    container is `shop-SERVICE-NUMBER`, labelled with the fingerprint of the override it was made
    from, and its ID is `SERVICE-UP` (`SERVICE-UP-NUMBER` for the others made by the same `up`)."""

    model: dict[str, Any]
    behaviour: Behaviour = lambda config: "healthy"
    images: list[dict[str, Any]] = field(default_factory=list)
    containers: Containers = field(default_factory=Containers)
    interrupt_ups: frozenset[int] = frozenset()  # after these `up` calls (1, 2, ...), Ctrl-C
    ups: int = 0
    raise_on_up: BaseException | None = None
    # Several hosts: Ctrl-C (in the main thread, as a terminal's) after these `up` calls; the
    # engine stops answering at these `up` calls; when each `up` came, by a shared counter.
    signal_ups: frozenset[int] = frozenset()
    dies_at_ups: frozenset[int] = frozenset()
    dead: bool = False
    up_order: list[tuple[int, list[str]]] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)  # services `restart` named, in order
    up_args: list[tuple[str, ...]] = field(default_factory=list)  # each `up`'s, after the files
    ran: list[tuple[str, ...]] = field(default_factory=list)  # every command's argv, in order
    # Ctrl-C once the next command whose argv starts so (e.g. ("docker", "stop")) has run.
    interrupt_after: tuple[str, ...] = ()
    made: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # container ID -> config

    def __call__(self, command: Command, check: bool = True) -> Completed:
        self.ran.append(command.argv)
        if command.argv[1] != "compose":
            completed = self._docker(command)
        else:
            completed = self._compose(command)
        prefix = self.interrupt_after
        if prefix and command.argv[: len(prefix)] == prefix:
            self.interrupt_after = ()
            raise KeyboardInterrupt
        return completed

    def _compose(self, command: Command) -> Completed:
        args = list(command.argv[command.argv.index("--env-file") + 2 :])
        while args[0] == "--file":
            args = args[2:]
        if args[0] == "config":
            return Completed(0, json.dumps(self.resolve(command)), "")
        if args[0] == "rm":  # rm --stop --force SERVICE...
            for service in args[3:]:
                self.containers.drop(service)
            return Completed(0, "", "")
        if args[0] == "down":
            self.containers.clear()
            return Completed(0, "", "")
        if args[0] == "restart":
            self.restarted += args[1:]
            return Completed(0, "", "")
        assert args[0] == "up", command.argv
        self.ups += 1
        self.up_args.append(tuple(args))
        if self.raise_on_up is not None:
            raise self.raise_on_up
        flags, scales, services = _up_arguments(args)
        self.up_order.append((next(_UPS), services))
        if self.ups in self.dies_at_ups:
            self.dead = True
            raise CommandFailedError(command.argv, 1, "Cannot connect to the Docker daemon")
        model = self.resolve(command)["services"]
        for service in services:
            if service in scales:
                assert "--no-recreate" in flags, command.argv  # the one use deployer makes of it
                self._scale(service, model[service], scales[service], command)
            else:
                self._replace(service, model[service], command)
        if self.ups in self.interrupt_ups:
            raise KeyboardInterrupt
        if self.ups in self.signal_ups:
            _thread.interrupt_main()
        return Completed(0, "", "")

    def _replace(self, service: str, config: Mapping[str, Any], command: Command) -> None:
        """New containers for all of the service's, its replicas of them: the numbers of those
        replaced are kept (the lowest, where it has fewer replicas now), new ones numbered on."""
        wanted = replicas_of(config)
        numbers = sorted(_number(c) for c in self.containers.of(service))[:wanted]
        numbers += range(max(numbers, default=0) + 1, max(numbers, default=0) + 1 + wanted)
        self.containers.drop(service)
        for number in numbers[:wanted]:
            self._create(service, config, number, command)

    def _scale(self, service: str, config: Mapping[str, Any], scale: int, command: Command) -> None:
        """`up --no-recreate --scale SERVICE=scale SERVICE`, as Compose does it."""
        existing = self.containers.of(service)
        for extra in existing[scale:]:
            self.containers.discard(extra)
        kept = existing[:scale]
        for container in kept:
            if container["State"] != "running":
                self._start(container, command)
        following = max((_number(c) for c in kept), default=0) + 1
        for number in range(following, following + scale - len(kept)):
            self._create(service, config, number, command)

    def _create(
        self, service: str, config: Mapping[str, Any], number: int, command: Command
    ) -> None:
        behaviour = self.behaviour(config)
        state, status = ("created", "Created") if behaviour == "fails" else _STATUS[behaviour]
        container = self._container(service, config, number, state, status)
        self.made[container["Id"]] = config
        self.containers.add(container)
        if behaviour == "fails":
            raise CommandFailedError(command.argv, 1, "Error: port is already allocated")

    def _start(self, container: dict[str, Any], command: Command) -> None:
        """Start a container that is not running, as the configuration it was made from does."""
        behaviour = self.behaviour(self.made.get(container["Id"]) or {"image": container["Image"]})
        if behaviour == "fails":
            raise CommandFailedError(command.argv, 1, "Error: port is already allocated")
        container["State"], container["Status"] = _STATUS[behaviour]

    def _docker(self, command: Command) -> Completed:
        """`docker stop NAME...` and `docker rm --force --volumes NAME...`: each container named
        (by name or ID) is stopped or removed; a name none has fails the command, the others done."""
        argv = command.argv
        if self.dead:
            raise CommandFailedError(argv, 1, "Cannot connect to the Docker daemon")
        if argv[1] == "stop":
            names, stop = argv[2:], True
        elif argv[1:4] == ("rm", "--force", "--volumes"):
            names, stop = argv[4:], False
        else:
            raise AssertionError(f"unexpected command: {argv}")
        missing = []
        for name in names:
            container = self.containers.named(name)
            if container is None:
                missing.append(name)
            elif not stop:
                self.containers.discard(container)
            elif container["State"] in ("running", "restarting", "paused"):
                container["State"], container["Status"] = "exited", STOPPED
        if missing:
            errors = [f"Error response from daemon: No such container: {n}" for n in missing]
            raise CommandFailedError(argv, 1, "\n".join(errors))
        return Completed(0, "".join(f"{name}\n" for name in names), "")

    def resolve(self, command: Command) -> dict[str, Any]:
        model = copy.deepcopy(self.model)
        document = yaml.load(command.stdin, Loader=_OverrideLoader) if command.stdin else {}
        for name, entry in (document or {}).get("services", {}).items():
            service = model["services"][name]
            if isinstance(entry, _Replaced):
                model["services"][name] = dict(entry)
                continue
            for key, value in entry.items():
                if isinstance(value, dict) and isinstance(service.get(key), dict):
                    service[key] = {**service[key], **value}
                else:
                    service[key] = value
        if "--no-interpolate" in command.argv:
            return model
        variables = _env_file_values(command)
        text = _REFERENCE.sub(lambda m: variables.get(m.group(1), ""), json.dumps(model))
        return dict(json.loads(text))

    def _container(
        self, service: str, config: Mapping[str, Any], number: int, state: str, status: str
    ) -> dict[str, Any]:
        labels = {SERVICE_LABEL: service, NUMBER_LABEL: str(number)}
        if FINGERPRINT_LABEL in (config.get("labels") or {}):
            labels[FINGERPRINT_LABEL] = config["labels"][FINGERPRINT_LABEL]
        image = str(config["image"])
        ids = {c["Id"] for c in self.containers.all()}
        first = f"{service}-{self.ups}"
        return {
            "Id": first if first not in ids else f"{first}-{number}",
            "Names": [f"/shop-{service}-{number}"],
            "Labels": labels,
            "State": state,
            "Status": status,
            "Command": " ".join(config.get("command") or []),
            "Image": image,
            "ImageID": next(
                i["Id"]
                for i in self.images
                if image in [i["Id"], *i.get("RepoTags", []), *i.get("RepoDigests", [])]
            ),
        }


def _up_arguments(args: list[str]) -> tuple[set[str], dict[str, int], list[str]]:
    """An `up`'s flags, its `--scale SERVICE=N`s and the services it names."""
    flags: set[str] = set()
    scales: dict[str, int] = {}
    services: list[str] = []
    rest = iter(args[1:])
    for arg in rest:
        if arg == "--pull":
            next(rest)
        elif arg == "--scale":
            service, _, count = next(rest).partition("=")
            scales[service] = int(count)
        elif arg.startswith("--"):
            flags.add(arg)
        else:
            services.append(arg)
    return flags, scales, services


_UPS = iter(range(1, 1_000_000))  # the order of `up` calls across FakeComposes


class FakeEngine:
    """The EngineClient calls a deploy makes, answered from a FakeCompose."""

    def __init__(self, compose: FakeCompose, store: FakeStore | None = None) -> None:
        self.compose = compose
        self.store = store  # the records and lock on this engine, for hosts of several
        # image -> the digest its tag points to in the registry, or the error asking raises
        self.registry: dict[str, str | DeployerError] = {}
        self.lookups: list[str] = []

    def registry_digest(self, image: str, auth: Mapping[str, str] | None = None) -> str | None:
        self.lookups.append(image)
        answer = self.registry.get(image)
        if isinstance(answer, DeployerError):
            raise answer
        return answer

    def project_containers(self, project: str) -> list[dict[str, Any]]:
        if self.compose.dead:
            raise EngineUnreachableError("fake", "Cannot connect to the Docker daemon")
        return self.compose.containers.all()

    def images(self) -> list[dict[str, Any]]:
        if self.compose.dead:
            raise EngineUnreachableError("fake", "Cannot connect to the Docker daemon")
        return self.compose.images

    def pull(self, image: str, auth: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """No tag the test has not made is in the registry: as a typo's would, the pull fails."""
        raise PullError(image, f"manifest for {image} not found: manifest unknown")

    def logs(self, container_id: str, tail: int) -> list[str]:
        return [f"{container_id}: bye"]

    def start_record(self, container_id: str) -> tuple[float, int]:
        """Started at the epoch, never restarted: long up by any clock."""
        return 0.0, 0


@dataclass
class FakeHosts:
    """Several engines, each with its FakeCompose and FakeStore, by URL; `docker compose` runs
    on the one its DOCKER_HOST names. A host in `unreachable` cannot be connected to."""

    composes: dict[str, FakeCompose]
    stores: dict[str, FakeStore]
    unreachable: set[str] = field(default_factory=set)
    ran: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (host, argv), in order

    @classmethod
    def of(cls, urls: list[str], model: dict[str, Any], images: list[dict[str, Any]]) -> FakeHosts:
        composes = {url: FakeCompose(copy.deepcopy(model), images=images) for url in urls}
        stores = {
            url: FakeStore("shop", alive=lambda c=compose: not c.dead)  # type: ignore[misc]
            for url, compose in composes.items()
        }
        return cls(composes, stores)

    def __call__(self, command: Command, check: bool = True) -> Completed:
        host = command.env["DOCKER_HOST"]
        self.ran.append((host, command.argv))
        return self.composes[host](command, check)

    def connect(self, engine: Engine) -> FakeEngine:
        if engine.host in self.unreachable or self.composes[engine.host].dead:
            raise EngineUnreachableError(engine.host, "Cannot connect to the Docker daemon")
        return FakeEngine(self.composes[engine.host], self.stores[engine.host])


STACK_IMAGE_LABEL = "com.docker.stack.image"
STACK_LABEL = "com.docker.stack.namespace"
# What swarmkit answers `docker service rollback` of a service that keeps no previous spec: one
# that was never updated, or whose own automatic rollback has started (it drops the spec then).
NO_PREVIOUS_SPEC = "Error response from daemon: rpc error: code = FailedPrecondition desc = service {} does not have a previous spec"


@dataclass
class SwarmService:
    """One service as a manager keeps it: its spec, the one before its last update, its version
    and the state of its last update."""

    id: str
    spec: dict[str, Any]
    version: int
    previous: dict[str, Any] | None = None
    state: str | None = None  # UpdateStatus.State
    message: str = ""


class FakeSwarm:
    """A swarm manager in memory, and the docker CLI that talks to it.

    `docker stack deploy` (the stack file on stdin) creates and updates services; an update
    settles at once as `outcome(image)` says: "completed", or Swarm's own rollback
    ("rollback_started", "rollback_paused", "rollback_completed": the service is back on its
    previous spec and, as swarmkit does, keeps none), or "paused". A service created on an image
    whose outcome is not "completed" never gets a task running. `docker service rollback` puts
    the previous spec back, refused where none is kept; `docker service rm`, `docker stack rm`
    and `docker service update --force` do what they say. `docker compose config` is answered
    by `compose`."""

    def __init__(
        self,
        compose: FakeCompose,
        digests: Mapping[str, str],
        outcome: Callable[[str], str] = lambda image: "completed",
    ) -> None:
        self.compose = compose
        self.digests = dict(digests)  # image -> the digest its tag has in the registry
        self.outcome = outcome
        self.services: dict[str, SwarmService] = {}  # by name in the stack
        self.engine = Engine("unix:///fake/manager.sock")
        self.ran: list[tuple[str, ...]] = []  # every docker CLI call but `compose config`
        self.interrupt_deploys: frozenset[int] = frozenset()  # Ctrl-C after these stack deploys
        self.deploys = 0
        self._versions = iter(range(10, 1_000_000))

    # The docker CLI
    def __call__(self, command: Command, check: bool = True) -> Completed:
        argv = command.argv
        if argv[1] == "compose":
            return self.compose(command, check)
        self.ran.append(argv)
        if argv[1:3] == ("stack", "deploy"):
            self._stack_deploy(argv[-1], yaml.safe_load(command.stdin or ""))
            self.deploys += 1
            if self.deploys in self.interrupt_deploys:
                raise KeyboardInterrupt
        elif argv[1:3] == ("stack", "rm"):
            self.services.clear()
        elif argv[1:3] == ("service", "rm"):
            for name in argv[3:]:
                del self.services[name.split("_", 1)[1]]
        elif argv[1:3] == ("service", "rollback"):
            self._rollback(argv[-1].split("_", 1)[1], command)
        elif argv[1:3] == ("service", "update"):
            service = self.services[argv[-1].split("_", 1)[1]]
            service.version, service.state = next(self._versions), "completed"
        else:
            raise AssertionError(f"unexpected command: {argv}")
        return Completed(0, "", "")

    def _stack_deploy(self, project: str, stack: Mapping[str, Any]) -> None:
        for name, service in stack["services"].items():
            spec = self._spec(project, name, service)
            image = service["image"]
            known = self.services.get(name)
            if known is None:
                state = None if self.outcome(image) == "completed" else "failing"
                self.services[name] = SwarmService(
                    f"id-{name}", spec, next(self._versions), None, state
                )
                continue
            known.previous, known.spec = known.spec, spec
            known.version = next(self._versions)
            outcome = self.outcome(image)
            known.state = outcome
            known.message = f"update {outcome}"
            if outcome.startswith("rollback_"):
                known.spec, known.previous = known.previous, None
                known.version = next(self._versions)

    def _rollback(self, name: str, command: Command) -> None:
        service = self.services[name]
        if service.previous is None:
            full = f"{command.argv[-1]}"
            raise CommandFailedError(command.argv, 1, NO_PREVIOUS_SPEC.format(full))
        service.spec, service.previous = service.previous, service.spec
        service.version = next(self._versions)
        service.state, service.message = "rollback_completed", "rollback completed"

    def _spec(self, project: str, name: str, service: Mapping[str, Any]) -> dict[str, Any]:
        deploy = service.get("deploy") or {}
        image = str(service["image"])
        pinned = image if "@" in image else f"{image}@{self.digests[image]}"  # as stack deploy pins
        labels = {**(deploy.get("labels") or {}), STACK_IMAGE_LABEL: image, STACK_LABEL: project}
        environment = sorted(f"{k}={v}" for k, v in (service.get("environment") or {}).items())
        return {
            "Name": f"{project}_{name}",
            "Labels": labels,
            "TaskTemplate": {"ContainerSpec": {"Image": pinned, "Env": environment}},
            "Mode": {"Replicated": {"Replicas": int(deploy.get("replicas", 1))}},
        }

    def image_of(self, name: str) -> str:
        """The image a service's spec asks for, as the stack file named it."""
        return str(self.services[name].spec["Labels"][STACK_IMAGE_LABEL])

    # The Docker SDK, as EngineClient offers it
    def swarm_manager(self) -> None:
        pass

    def stack_services(self, project: str) -> list[dict[str, Any]]:
        found = []
        for service in self.services.values():
            replicas = service.spec["Mode"]["Replicated"]["Replicas"]
            running = 0 if service.state in ("failing", "paused") else replicas
            raw: dict[str, Any] = {
                "ID": service.id,
                "Version": {"Index": service.version},
                "Spec": copy.deepcopy(service.spec),
                "ServiceStatus": {"RunningTasks": running, "DesiredTasks": replicas},
            }
            if service.state not in (None, "failing"):
                raw["UpdateStatus"] = {"State": service.state, "Message": service.message}
            found.append(raw)
        return found

    def stack_files(self, project: str) -> list[tuple[str, str]]:
        return []

    def service_tasks(self, service_ids: list[str]) -> list[dict[str, Any]]:
        tasks = []
        for service in self.services.values():
            if service.id not in service_ids:
                continue
            failing = service.state in ("failing", "paused")
            for slot in range(1, service.spec["Mode"]["Replicated"]["Replicas"] + 1):
                tasks.append(
                    {
                        "ServiceID": service.id,
                        "Slot": slot,
                        "NodeID": "node-1",
                        "DesiredState": "running",
                        "Status": {
                            "State": "failed" if failing else "running",
                            "Timestamp": "2026-12-01T10:00:00Z",
                            "Err": "task: non-zero exit (3)" if failing else "",
                        },
                        "Spec": copy.deepcopy(service.spec["TaskTemplate"]),
                    }
                )
        return tasks

    def nodes(self) -> list[dict[str, Any]]:
        return [{"ID": "node-1", "Description": {"Hostname": "dh4"}, "Spec": {}, "Status": {}}]

    def stack_networks(self, project: str) -> list[dict[str, Any]]:
        return []

    def service_logs(self, service_id: str, tail: int) -> list[str]:
        return [f"{service_id}: bye"]

    def registry_digest(self, image: str, auth: Mapping[str, str] | None = None) -> str | None:
        return self.digests.get(image)
