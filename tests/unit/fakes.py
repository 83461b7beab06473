"""In-memory stand-ins for what operations reach outside the process (operations.Outside): the
state store, the engine's observations and a `docker compose` that keeps containers in a dict."""

from __future__ import annotations

import _thread
import copy
import json
import re
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from deployer.compose import Command
from deployer.desired import FINGERPRINT_LABEL
from deployer.engine import Engine
from deployer.errors import CommandFailedError, DeployerError, EngineUnreachableError
from deployer.observed import NUMBER_LABEL, SERVICE_LABEL
from deployer.runner import Completed
from deployer.state import Actor, StoredLock

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

# What a container made from a service's configuration does: "healthy", "exits" (at once) or
# "fails" (`up` fails once it has created it, as with a port taken already).
Behaviour = Callable[[Mapping[str, Any]], str]


@dataclass
class FakeCompose:
    """`docker compose config` and `up` over a model the test sets, and the engine they change.

    `config` returns the model with the overrides on stdin applied (`!override` replaces a
    service) and `${NAME}` interpolated; `up` replaces each named service's container."""

    model: dict[str, Any]
    behaviour: Behaviour = lambda config: "healthy"
    images: list[dict[str, Any]] = field(default_factory=list)
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)  # by service
    interrupt_ups: frozenset[int] = frozenset()  # after these `up` calls (1, 2, ...), Ctrl-C
    ups: int = 0
    raise_on_up: BaseException | None = None
    # Several hosts: Ctrl-C (in the main thread, as a terminal's) after these `up` calls; the
    # engine stops answering at these `up` calls; when each `up` came, by a shared counter.
    signal_ups: frozenset[int] = frozenset()
    dies_at_ups: frozenset[int] = frozenset()
    dead: bool = False
    up_order: list[tuple[int, list[str]]] = field(default_factory=list)

    def __call__(self, command: Command, check: bool = True) -> Completed:
        args = list(command.argv[command.argv.index("--env-file") + 2 :])
        while args[0] == "--file":
            args = args[2:]
        if args[0] == "config":
            return Completed(0, json.dumps(self.resolve(command)), "")
        assert args[0] == "up", command.argv
        self.ups += 1
        if self.raise_on_up is not None:
            raise self.raise_on_up
        services = [a for a in args[1:] if not a.startswith("--") and a != "never"]
        self.up_order.append((next(_UPS), services))
        if self.ups in self.dies_at_ups:
            self.dead = True
            raise CommandFailedError(command.argv, 1, "Cannot connect to the Docker daemon")
        model = self.resolve(command)["services"]
        for service in services:
            if self.behaviour(model[service]) == "fails":
                self.containers[service] = self._container(service, model[service], "created")
                raise CommandFailedError(command.argv, 1, "Error: port is already allocated")
            self.containers[service] = self._container(service, model[service], "")
        if self.ups in self.interrupt_ups:
            raise KeyboardInterrupt
        if self.ups in self.signal_ups:
            _thread.interrupt_main()
        return Completed(0, "", "")

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
        text = _REFERENCE.sub(lambda m: command.env.get(m.group(1), ""), json.dumps(model))
        return dict(json.loads(text))

    def _container(self, service: str, config: Mapping[str, Any], state: str) -> dict[str, Any]:
        if not state:
            state = "running" if self.behaviour(config) == "healthy" else "exited"
        status = {"running": "Up 1 second (healthy)", "exited": "Exited (1) 1 second ago"}
        labels = {SERVICE_LABEL: service, NUMBER_LABEL: "1"}
        if FINGERPRINT_LABEL in (config.get("labels") or {}):
            labels[FINGERPRINT_LABEL] = config["labels"][FINGERPRINT_LABEL]
        image = str(config["image"])
        return {
            "Id": f"{service}-{self.ups}",
            "Names": [f"/shop-{service}-1"],
            "Labels": labels,
            "State": state,
            "Status": status.get(state, "Created"),
            "Command": " ".join(config.get("command") or []),
            "Image": image,
            "ImageID": next(
                i["Id"]
                for i in self.images
                if image in [i["Id"], *i.get("RepoTags", []), *i.get("RepoDigests", [])]
            ),
        }


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
        return list(self.compose.containers.values())

    def images(self) -> list[dict[str, Any]]:
        if self.compose.dead:
            raise EngineUnreachableError("fake", "Cannot connect to the Docker daemon")
        return self.compose.images

    def pull(self, image: str, auth: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        raise AssertionError(f"no pull expected: {image}")

    def logs(self, container_id: str, tail: int) -> list[str]:
        return [f"{container_id}: bye"]


@dataclass
class FakeHosts:
    """Several engines, each with its FakeCompose and FakeStore, by URL; `docker compose` runs
    on the one its DOCKER_HOST names. A host in `unreachable` cannot be connected to."""

    composes: dict[str, FakeCompose]
    stores: dict[str, FakeStore]
    unreachable: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, urls: list[str], model: dict[str, Any], images: list[dict[str, Any]]) -> FakeHosts:
        composes = {url: FakeCompose(copy.deepcopy(model), images=images) for url in urls}
        stores = {
            url: FakeStore("shop", alive=lambda c=compose: not c.dead)  # type: ignore[misc]
            for url, compose in composes.items()
        }
        return cls(composes, stores)

    def __call__(self, command: Command, check: bool = True) -> Completed:
        return self.composes[command.env["DOCKER_HOST"]](command, check)

    def connect(self, engine: Engine) -> FakeEngine:
        if engine.host in self.unreachable or self.composes[engine.host].dead:
            raise EngineUnreachableError(engine.host, "Cannot connect to the Docker daemon")
        return FakeEngine(self.composes[engine.host], self.stores[engine.host])
