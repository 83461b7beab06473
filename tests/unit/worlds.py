"""Every target over in-memory fakes (tests/unit/fakes.py) behind one test interface: an
environment `test` of one service, web, whose image comes in versions 1, 2 and 3, on one engine,
on three hosts, or on a swarm. The commands run on them exactly as the CLI runs them, each
command on a target loaded anew, so that the deploy / fail / undo / rollback / interrupt matrix
of every target takes milliseconds."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deployer.commands.deploy import deploy, rollback
from deployer.commands.session import Interaction
from deployer.core.plan import Plan
from deployer.core.spec import SWARM, Spec
from deployer.core.variables import Redactor, Variables
from deployer.state import audit
from deployer.state.releases import Release, history
from deployer.targets.base import Environment, Outside, Target
from deployer.targets.choose import target_of
from tests.unit.fakes import ACTOR, FakeCompose, FakeEngine, FakeHosts, FakeStore, FakeSwarm

GOOD = ["httpd", "-f"]
VERSIONS = ("1", "2", "3")
IMAGE_IDS = {v: "sha256:" + f"e{v}" * 32 for v in VERSIONS}
DIGESTS = {v: "sha256:" + f"d{v}" * 32 for v in VERSIONS}
IMAGES = [
    {"Id": IMAGE_IDS[v], "RepoTags": [f"reg/web:{v}"], "RepoDigests": [f"reg/web@{DIGESTS[v]}"]}
    for v in VERSIONS
]
HOSTS = tuple(f"unix:///run/dh{n}/docker.sock" for n in (1, 2, 3))


def model(
    version: str,
    command: list[str] = GOOD,
    services: Mapping[str, Any] | None = None,
    web: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The project as Compose resolves it: web on `version`, with the fields of `web` besides
    (e.g. its deploy: section), and `services` besides."""
    entry = {
        "image": f"reg/web:{version}",
        "command": command,
        "environment": {"LOG_LEVEL": "info"},
    }
    return {"name": "shop", "services": {"web": {**entry, **(web or {})}, **(services or {})}}


def version_of(reference: str) -> str:
    """The version of web an image reference (by tag, digest or ID) names."""
    for version in VERSIONS:
        if reference.endswith((f":{version}", DIGESTS[version], IMAGE_IDS[version])):
            return version
    raise AssertionError(f"not an image of web: {reference}")


class Steps:
    """Progress as the user would see it: the lines of finished steps."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def update(self, subject: str, text: str) -> None:
        pass

    def done(self, subject: str, text: str) -> None:
        self.lines.append(text)


@dataclass
class World(ABC):
    """One target's fakes, and what a test asks of them."""

    places = ("here",)  # where web runs: the hosts, by URL, where there are several
    up = "running"  # web's state where it runs as deployed

    tmp_path: Path
    on_failure: str = "rollback"
    wait_timeout: float = 5.0
    selected: tuple[str, ...] = ()  # `--hosts`
    broken: set[str] = field(default_factory=set)  # versions (or commands) that never run
    unhealthy: set[str] = field(default_factory=set)  # versions that run, never healthy
    web: dict[str, Any] = field(default_factory=dict)  # web's fields besides, in every deploy
    shown: list[Plan] = field(default_factory=list)
    steps: Steps = field(default_factory=Steps)

    def __post_init__(self) -> None:
        self.make()

    @abstractmethod
    def make(self) -> None:
        """Make the fakes, web on version 1 (deployed by no one yet)."""

    @property
    def ui(self) -> Interaction:
        def show(plans: Any) -> None:
            self.shown.extend(plan for _, plan in plans)

        return Interaction(self.steps, lambda question: True, show, Redactor())

    @property
    def target(self) -> Target[Any, Any]:
        """The environment's target, as each command loads it anew."""
        return target_of(Environment(self.spec(), Variables({}), self.outside()), {}, self.selected)

    def spec(self, **fields: Any) -> Spec:
        path = self.tmp_path / "test.yml"
        path.write_text("project: shop\n")
        spec = Spec(
            "test", path, "shop", (self.tmp_path / "compose.yml",), (), frozenset(), {}, False,
            self.wait_timeout, None, self.on_failure,
        )  # fmt: skip
        return replace(spec, **fields)

    def behaviour(self, config: Mapping[str, Any]) -> str:
        """What a container made from `config` does: it fails where its version is broken."""
        version = version_of(str(config["image"]))
        if version in self.broken or config.get("command") != GOOD:
            return "exits"
        return "unhealthy" if version in self.unhealthy else "healthy"

    def deploy(
        self, version: str, command: list[str] = GOOD, services: Mapping[str, Any] | None = None
    ) -> Any:
        self.set_model(model(version, command, services, self.web))
        return deploy(self.target, self.ui, "deploy test")

    def rollback(self, to: int | None = None) -> Any:
        return rollback(self.target, self.ui, to)

    def releases(self) -> list[tuple[int, str, str]]:
        return [(r.number, r.command, r.result) for r in self.history()]

    def history(self) -> list[Release]:
        return history(self.store())

    def audit(self) -> list[tuple[str, str]]:
        return [(e.command, e.result) for e in audit.entries(self.store())]

    @abstractmethod
    def outside(self) -> Outside: ...

    @abstractmethod
    def set_model(self, model: dict[str, Any]) -> None: ...

    @abstractmethod
    def store(self) -> FakeStore:
        """Where the records are (the first host's, of several)."""

    @abstractmethod
    def running(self) -> dict[str, tuple[str, str]]:
        """Per place, the version web runs and its state."""

    @abstractmethod
    def services(self) -> dict[str, list[str]]:
        """Per place, the services that have a container (a swarm: that it has)."""

    def everywhere(self, version: str, state: str | None = None) -> dict[str, tuple[str, str]]:
        """web on `version` in every place, in `state` (default: up)."""
        return dict.fromkeys(self.places, (version, state or self.up))

    def containers(self) -> dict[str, list[tuple[str, str, str, str]]]:
        """Per place, every container: its name, ID, version of web and state."""
        return {
            place: [
                (c["Names"][0][1:], c["Id"], version_of(c["ImageID"]), c["State"])
                for c in compose.containers.all()
            ]
            for place, compose in self.composes().items()
        }

    def composes(self) -> dict[str, FakeCompose]:
        """Per place, its engine's containers and `docker compose` (not on a swarm)."""
        raise NotImplementedError(type(self).__name__)

    def ran(self) -> list[tuple[str, tuple[str, ...]]]:
        """Every docker command run so far, in order, with the place it ran (not on a swarm)."""
        raise NotImplementedError(type(self).__name__)

    @abstractmethod
    def locked(self) -> bool: ...

    @abstractmethod
    def interrupt_next_change(self) -> None:
        """Ctrl-C as the next change is handed to the engine (Compose, Swarm) returns."""


class OneEngine(World):
    def make(self) -> None:
        self.compose = FakeCompose(model("1"), self.behaviour, images=IMAGES)
        self.records = FakeStore("shop")

    def outside(self) -> Outside:
        return Outside(
            run=self.compose,
            connect=lambda engine: FakeEngine(self.compose),  # type: ignore[arg-type,return-value]
            store=lambda client, project: self.records,
            actor=lambda: ACTOR,
        )

    def set_model(self, model: dict[str, Any]) -> None:
        self.compose.model = model

    def store(self) -> FakeStore:
        return self.records

    def running(self) -> dict[str, tuple[str, str]]:
        return {"here": _container(self.compose)}

    def services(self) -> dict[str, list[str]]:
        return {"here": sorted(self.compose.containers)}

    def composes(self) -> dict[str, FakeCompose]:
        return {"here": self.compose}

    def ran(self) -> list[tuple[str, tuple[str, ...]]]:
        return [("here", argv) for argv in self.compose.ran]

    def locked(self) -> bool:
        return self.records.current is not None

    def interrupt_next_change(self) -> None:
        self.compose.interrupt_ups = frozenset({self.compose.ups + 1})


class SeveralHosts(World):
    places = HOSTS

    def make(self) -> None:
        self.hosts = FakeHosts.of(list(HOSTS), model("1"), IMAGES)
        for compose in self.hosts.composes.values():
            compose.behaviour = self.behaviour

    def spec(self, **fields: Any) -> Spec:
        return super().spec(engine_hosts=HOSTS, batch=1, **fields)

    def outside(self) -> Outside:
        return Outside(
            run=self.hosts,
            connect=self.hosts.connect,  # type: ignore[arg-type]
            store=lambda client, project: client.store,  # type: ignore[attr-defined]
            actor=lambda: ACTOR,
        )

    def set_model(self, model: dict[str, Any]) -> None:
        for compose in self.hosts.composes.values():
            compose.model = copy.deepcopy(model)

    def store(self) -> FakeStore:
        return self.hosts.stores[HOSTS[0]]

    def running(self) -> dict[str, tuple[str, str]]:
        return {host: _container(compose) for host, compose in self.hosts.composes.items()}

    def services(self) -> dict[str, list[str]]:
        return {host: sorted(c.containers) for host, c in self.hosts.composes.items()}

    def composes(self) -> dict[str, FakeCompose]:
        return dict(self.hosts.composes)

    def ran(self) -> list[tuple[str, tuple[str, ...]]]:
        return list(self.hosts.ran)

    def locked(self) -> bool:
        return any(store.current is not None for store in self.hosts.stores.values())

    def interrupt_next_change(self) -> None:
        first = self.hosts.composes[HOSTS[0]]
        first.interrupt_ups = frozenset({first.ups + 1})


class OnSwarm(World):
    up = "converged"

    def make(self) -> None:
        digests = {f"reg/web:{v}": DIGESTS[v] for v in VERSIONS}
        self.swarm = FakeSwarm(FakeCompose(model("1")), digests, self.outcome)
        self.records = FakeStore("shop")

    def outcome(self, image: str) -> str:
        """Swarm rolls back an update that never becomes healthy, by itself."""
        return "rollback_completed" if version_of(image) in self.broken else "completed"

    def spec(self, **fields: Any) -> Spec:
        return super().spec(engine_host=self.swarm.engine.host, orchestrator=SWARM, **fields)

    def outside(self) -> Outside:
        return Outside(
            run=self.swarm,
            connect=lambda engine: self.swarm,  # type: ignore[arg-type,return-value]
            swarm_store=lambda client, project: self.records,
            actor=lambda: ACTOR,
        )

    def set_model(self, model: dict[str, Any]) -> None:
        self.swarm.compose.model = model

    def store(self) -> FakeStore:
        return self.records

    def running(self) -> dict[str, tuple[str, str]]:
        web = self.swarm.services["web"]
        image = web.spec["TaskTemplate"]["ContainerSpec"]["Image"]
        settled = "converged" if web.state in (None, "completed") else web.state
        return {"here": (version_of(image), settled)}

    def services(self) -> dict[str, list[str]]:
        return {"here": sorted(self.swarm.services)}

    def locked(self) -> bool:
        return self.records.current is not None

    def interrupt_next_change(self) -> None:
        self.swarm.interrupt_deploys = frozenset({self.swarm.deploys + 1})


def _container(compose: FakeCompose) -> tuple[str, str]:
    web = compose.containers["web"]
    return version_of(web["ImageID"]), web["State"]


WORLDS: dict[str, Callable[..., World]] = {
    "one engine": OneEngine,
    "several hosts": SeveralHosts,
    "swarm": OnSwarm,
}
