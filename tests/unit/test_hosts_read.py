"""Reading several hosts: each host's plan, status and lock, what a host that cannot be read
shows, and the whole outputs (text and JSON) of the commands that read them."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from deployer.cli.render.locks import lock_document, lock_text, locks_document, locks_text
from deployer.cli.render.plans import plan_text, plans_document, plans_text
from deployer.cli.render.results import host_by_host_text, line_prefixes
from deployer.cli.render.status import status_document, statuses_document, statuses_text
from deployer.commands.read import diff, status
from deployer.core.command import Command, Completed
from deployer.core.desired import FINGERPRINT_LABEL, UpdateOrder
from deployer.core.errors import ConfigError, EngineUnreachableError
from deployer.core.plan import Change, Plan
from deployer.core.results import HostOutcome
from deployer.core.status import ContainerStatus, EnvironmentStatus, ServiceStatus, SwarmStatus
from deployer.core.variables import Redactor
from deployer.infra.engine import Engine
from deployer.state.lock import Lock
from deployer.targets.choose import target_of
from deployer.targets.fleet.target import FleetTarget
from tests.unit.fakes import FakeCompose, FakeEngine, FakeStore
from tests.unit.test_operations import GOOD, World, make_world

A, B = "ssh://root@10.0.0.1", "ssh://root@10.0.0.2"
DOWN = EngineUnreachableError(B, "connection refused (hunter22)")
REDACT = Redactor()
REDACT.add(["hunter22"])

IN_SYNC = Plan("staging", "shop", ())
PENDING = Plan("staging", "shop", (Change("web", "recreate", ("image web:1 -> 2",)),))


def test_the_plan_of_one_host_reads_as_ever_and_its_json_adds_the_host() -> None:
    outcomes = [HostOutcome(A, PENDING)]

    assert plans_text("staging", "shop", outcomes, REDACT) == plan_text(PENDING)
    assert plans_document("staging", "shop", outcomes, REDACT) == {
        "environment": "staging",
        "project": "shop",
        "in_sync": False,
        "changes": [{"service": "web", "action": "recreate", "causes": ["image web:1 -> 2"]}],
        "notes": [],
        "hosts": [
            {
                "host": A,
                "in_sync": False,
                "changes": [
                    {"service": "web", "action": "recreate", "causes": ["image web:1 -> 2"]}
                ],
                "notes": [],
                "error": None,
            }
        ],
    }


def test_two_hosts_in_sync() -> None:
    outcomes = [HostOutcome(A, IN_SYNC), HostOutcome(B, IN_SYNC)]

    assert plans_text("staging", "shop", outcomes, REDACT) == (
        f"staging (project shop) on {A}: in sync, nothing to change\n\n"
        f"staging (project shop) on {B}: in sync, nothing to change\n\n"
        "staging (project shop): 2 hosts: 2 in sync"
    )
    assert plans_document("staging", "shop", outcomes, REDACT) == {
        "environment": "staging",
        "project": "shop",
        "in_sync": True,
        "changes": [],
        "hosts": [
            {"host": A, "in_sync": True, "changes": [], "notes": [], "error": None},
            {"host": B, "in_sync": True, "changes": [], "notes": [], "error": None},
        ],
    }


def test_two_hosts_one_with_changes_pending() -> None:
    outcomes = [HostOutcome(A, IN_SYNC), HostOutcome(B, PENDING)]

    assert plans_text("staging", "shop", outcomes, REDACT) == (
        f"staging (project shop) on {A}: in sync, nothing to change\n\n"
        f"staging (project shop) on {B}: 1 change\n"
        "SERVICE  ACTION    CAUSE\n"
        "web      recreate  image web:1 -> 2\n\n"
        "staging (project shop): 2 hosts: 1 in sync, 1 with changes"
    )
    change = {"service": "web", "action": "recreate", "causes": ["image web:1 -> 2"]}
    assert plans_document("staging", "shop", outcomes, REDACT) == {
        "environment": "staging",
        "project": "shop",
        "in_sync": False,
        "changes": [{"host": B, **change}],
        "hosts": [
            {"host": A, "in_sync": True, "changes": [], "notes": [], "error": None},
            {"host": B, "in_sync": False, "changes": [change], "notes": [], "error": None},
        ],
    }


def test_a_host_that_cannot_be_read_is_shown_unknown_with_its_error_masked() -> None:
    outcomes = [HostOutcome(A, IN_SYNC), HostOutcome(B, error=DOWN)]

    assert plans_text("staging", "shop", outcomes, REDACT) == (
        f"staging (project shop) on {A}: in sync, nothing to change\n\n"
        f"staging (project shop) on {B}: state unknown\n"
        f"  error: Docker engine at {B} is unreachable: connection refused (***)\n\n"
        "staging (project shop): 2 hosts: 1 in sync, 1 unknown"
    )
    assert plans_document("staging", "shop", outcomes, REDACT) == {
        "environment": "staging",
        "project": "shop",
        "in_sync": False,
        "changes": [],
        "hosts": [
            {"host": A, "in_sync": True, "changes": [], "notes": [], "error": None},
            {
                "host": B,
                "in_sync": None,
                "changes": None,
                "notes": None,
                "error": f"Docker engine at {B} is unreachable: connection refused (***)",
            },
        ],
    }


WEB1, WEB2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


def environment(image: str, image_id: str, release: int | None = 3) -> EnvironmentStatus:
    container = ContainerStatus(
        "shop-web-1", image, image_id, f"reg/web@{image_id}", "running", "healthy",
        "Up 2 minutes (healthy)", release,
    )  # fmt: skip
    web = ServiceStatus("web", "reg/web:2", 1, (container,))
    return EnvironmentStatus("staging", "shop", image == "reg/web:2", (web,), ())


def test_status_of_two_hosts_on_mixed_versions() -> None:
    outcomes = [
        HostOutcome(A, environment("reg/web:2", WEB2)),
        HostOutcome(B, environment("reg/web:1", WEB1, None)),
    ]

    assert statuses_text("staging", "shop", outcomes, REDACT) == (
        "staging (project shop): 2 hosts: healthy, NOT in sync (see `deploy diff`)\n"
        "  web: MIXED versions\n"
        f"    reg/web:2 (222222222222) on {A}\n"
        f"    reg/web:1 (111111111111) on {B}\n\n"
        f"staging (project shop) on {A}: healthy, in sync\n"
        "SERVICE  READY  CONTAINER   IMAGE      ID            RELEASE  STATUS\n"
        "web      1/1    shop-web-1  reg/web:2  222222222222  #3       Up 2 minutes (healthy)\n\n"
        f"staging (project shop) on {B}: healthy, NOT in sync (see `deploy diff`)\n"
        "SERVICE  READY  CONTAINER   IMAGE      ID            RELEASE  STATUS\n"
        "web      1/1    shop-web-1  reg/web:1  111111111111  -        Up 2 minutes (healthy)"
    )
    document = statuses_document("staging", "shop", outcomes, REDACT)
    per_host = [status_document(o.value) for o in outcomes if o.value is not None]
    container = per_host[0]["services"][0]["containers"][0]
    old = per_host[1]["services"][0]["containers"][0]
    assert document == {
        "environment": "staging",
        "project": "shop",
        "in_sync": False,
        "healthy": True,
        "services": [
            {
                "service": "web",
                "desired_image": "reg/web:2",
                "replicas": {"ready": 2, "desired": 2},
                "healthy": True,
                "containers": [{"host": A, **container}, {"host": B, **old}],
                "images": [
                    {"image": "reg/web:2", "image_id": WEB2, "hosts": (A,)},
                    {"image": "reg/web:1", "image_id": WEB1, "hosts": (B,)},
                ],
            }
        ],
        "orphans": [],
        "hosts": [
            {"host": A, **_fields(per_host[0]), "error": None},
            {"host": B, **_fields(per_host[1]), "error": None},
        ],
    }
    assert container == {
        "name": "shop-web-1", "image": "reg/web:2", "image_id": WEB2, "pinned": f"reg/web@{WEB2}",
        "state": "running", "health": "healthy", "status": "Up 2 minutes (healthy)",
        "release": 3, "exit_code": None,
    }  # fmt: skip


def _fields(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k not in ("environment", "project")}


def test_status_of_two_hosts_one_unknown_is_not_healthy() -> None:
    outcomes = [HostOutcome(A, environment("reg/web:2", WEB2)), HostOutcome(B, error=DOWN)]

    assert statuses_text("staging", "shop", outcomes, REDACT) == (
        "staging (project shop): 2 hosts: NOT healthy, NOT in sync (see `deploy diff`); "
        f"state unknown on {B}\n"
        f"  web: reg/web:2 (222222222222) on {A}\n\n"
        f"staging (project shop) on {A}: healthy, in sync\n"
        "SERVICE  READY  CONTAINER   IMAGE      ID            RELEASE  STATUS\n"
        "web      1/1    shop-web-1  reg/web:2  222222222222  #3       Up 2 minutes (healthy)\n\n"
        f"staging (project shop) on {B}: state unknown\n"
        f"  error: Docker engine at {B} is unreachable: connection refused (***)"
    )
    document = statuses_document("staging", "shop", outcomes, REDACT)
    assert (document["in_sync"], document["healthy"], document["services"][0]["healthy"]) == (
        False,
        False,
        False,
    )
    assert document["hosts"][1] == {
        "host": B,
        "in_sync": None,
        "healthy": None,
        "services": None,
        "orphans": None,
        "error": f"Docker engine at {B} is unreachable: connection refused (***)",
    }


def test_status_of_two_hosts_on_one_version() -> None:
    outcomes = [
        HostOutcome(A, environment("reg/web:2", WEB2)),
        HostOutcome(B, environment("reg/web:2", WEB2)),
    ]

    text = statuses_text("staging", "shop", outcomes, REDACT)

    assert text.splitlines()[:2] == [
        "staging (project shop): 2 hosts: healthy, in sync",
        "  web: reg/web:2 (222222222222) on every host",
    ]
    assert statuses_document("staging", "shop", outcomes, REDACT)["healthy"] is True


LOCK = Lock("alice", "host-a", 4242, "deploy staging", "process", "t1", 600.0, 1000.0, 1060.0)


def test_the_lock_as_each_host_holds_it() -> None:
    outcomes: list[HostOutcome[tuple[Lock | None, str | None]]] = [
        HostOutcome(A, (LOCK, None)),
        HostOutcome(B, (None, None)),
        HostOutcome("unix:///run/dh3/docker.sock", error=DOWN),
    ]

    assert locks_text("staging", outcomes, REDACT) == (
        f"{lock_text('staging', LOCK, None, host=A)}\n"
        f"staging on {B}: not locked\n"
        "staging on unix:///run/dh3/docker.sock: unknown\n"
        f"  error: Docker engine at {B} is unreachable: connection refused (***)\n"
        "staging: locked on 1 of 3 hosts"
    )
    assert lock_text("staging", LOCK, None, here="host-a", host=A).splitlines()[0] == (
        f"staging on {A}: locked by alice on host-a (pid 4242) since 1970-01-01T00:16:40Z: "
        "deploy staging"
    )
    one = lock_document("staging", LOCK, None)
    assert locks_document("staging", outcomes, REDACT) == {
        **one,
        "hosts": [
            {"host": A, **_without_environment(one), "error": None},
            {"host": B, "locked": False, "stale": None, "lock": None, "error": None},
            {
                "host": "unix:///run/dh3/docker.sock",
                "locked": None,
                "stale": None,
                "lock": None,
                "error": f"Docker engine at {B} is unreachable: connection refused (***)",
            },
        ],
    }


def _without_environment(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "environment"}


def test_host_by_host_results_name_each_host_and_those_never_reached() -> None:
    c = "unix:///run/dh3/docker.sock"
    outcomes = [HostOutcome(A, "restarted web-1"), HostOutcome(B, error=DOWN)]

    assert host_by_host_text([A, B, c], outcomes, str, REDACT) == (
        f"{A}:\n"
        "  restarted web-1\n"
        f"{B}:\n"
        f"  error: Docker engine at {B} is unreachable: connection refused (***)\n"
        f"{c}:\n"
        f"  not done: stopped after the failure on {B}"
    )
    assert host_by_host_text([A], outcomes[:1], str, REDACT) == "restarted web-1"


def test_log_lines_of_several_hosts_start_with_the_host_aligned() -> None:
    c = "unix:///run/dh3/docker.sock"
    assert line_prefixes([A, c]) == {A: "10.0.0.1                    | ", c: f"{c} | "}
    assert line_prefixes([A]) == {A: ""}


# Through the commands, over the fleet target on fakes: each host its own engine, containers and
# records.
C = "ssh://root@10.0.0.3"


@pytest.fixture
def deployed(tmp_path: Path) -> World:
    """The web service deployed on one fake engine, to be copied onto the hosts."""
    world = make_world(tmp_path, "rollback")
    world.deploy(GOOD)
    return world


def fleet(
    world: World, down: tuple[str, ...] = (), selected: tuple[str, ...] = ()
) -> tuple[FleetTarget, dict[str, FakeCompose]]:
    """Hosts A, B and C, each running a copy of what `world` runs, those in `down` unreachable;
    Compose commands go to the host their DOCKER_HOST names."""
    hosts = {host: copy.deepcopy(world.compose) for host in (A, B, C)}
    engines = {host: FakeEngine(compose) for host, compose in hosts.items() if host not in down}
    stores = {id(engine): FakeStore("shop") for engine in engines.values()}

    def run(command: Command, check: bool = True) -> Completed:
        return hosts[command.env["DOCKER_HOST"]](command, check)

    def connect(engine: Engine) -> FakeEngine:
        if engine.host not in engines:
            raise EngineUnreachableError(engine.host, "connection refused")
        return engines[engine.host]

    outside = replace(
        world.env.outside,
        run=run,
        connect=connect,  # type: ignore[arg-type]
        store=lambda client, project: stores[id(client)],
    )
    spec = replace(world.env.spec, engine_hosts=tuple(hosts))
    target = target_of(replace(world.env, spec=spec, outside=outside), {}, selected)
    assert isinstance(target, FleetTarget)
    return target, hosts


def test_diff_reads_every_host_and_keeps_a_drifted_one_and_an_unreachable_one_apart(
    deployed: World,
) -> None:
    target, hosts = fleet(deployed, down=(C,))
    del hosts[B].containers["web"]["Labels"][FINGERPRINT_LABEL]  # changed by hand on B

    outcomes = diff(target, Redactor()).outcomes

    drift = Change(
        "web",
        "recreate",
        ("not deployed by deployer (no fingerprint label)",),
        order=UpdateOrder(False, "default order"),
    )
    assert [(o.host, o.value, o.error and o.error.message) for o in outcomes] == [
        (A, Plan("test", "shop", ()), None),
        (B, Plan("test", "shop", (drift,)), None),
        (C, None, f"Docker engine at {C} is unreachable: connection refused"),
    ]


def test_status_reads_each_host_with_its_own_records(deployed: World) -> None:
    target, hosts = fleet(deployed)
    hosts[C].containers["web"]["State"] = "exited"

    found = status(target, Redactor())
    assert not isinstance(found, SwarmStatus)
    outcomes = found.outcomes

    assert [(o.host, o.value and (o.value.healthy, o.value.in_sync)) for o in outcomes] == [
        (A, (True, True)),
        (B, (True, True)),
        (C, (False, False)),
    ]


def test_a_problem_in_the_spec_is_the_commands_error_before_any_hosts(deployed: World) -> None:
    target, _ = fleet(deployed, down=(B,))
    broken = ConfigError([])

    def failing(command: Command, check: bool = True) -> Completed:
        raise broken

    env = replace(target.env, outside=replace(target.env.outside, run=failing))
    with pytest.raises(ConfigError) as raised:
        diff(target_of(env, {}), Redactor())
    assert raised.value is broken


def test_one_host_that_cannot_be_read_fails_the_command_as_ever(deployed: World) -> None:
    target, _ = fleet(deployed, down=(B,), selected=(B,))

    with pytest.raises(EngineUnreachableError) as raised:
        diff(target, Redactor())
    assert raised.value.host == B
