"""The swarm target's observed stack (from the engine's answers), its plan and its status."""

from __future__ import annotations

from typing import Any

from deployer.cli.render.plans import plan_text
from deployer.cli.render.status import swarm_status_document, swarm_status_text
from deployer.core.observed import ObservedService, ObservedTask
from deployer.core.plan import Change, Plan
from deployer.core.status import SwarmStatus
from deployer.targets.swarm.observe import stack_from
from deployer.targets.swarm.plan import plan
from deployer.targets.swarm.stack import convert

NODES = [
    {"ID": "n4", "Description": {"Hostname": "dh4"}},
    {"ID": "n5", "Description": {"Hostname": "dh5"}},
    {"ID": "n6", "Description": {"Hostname": "dh6"}},
]
MODEL: dict[str, Any] = {
    "services": {
        "web": {"image": "reg/web:1", "environment": {"LEVEL": "info"}, "scale": 2},
        "worker": {"image": "reg/worker:1"},
    }
}
DIGEST = "sha256:" + "ab" * 32


def deployed(
    model: dict[str, Any], name: str, project: str = "shop", **status: Any
) -> dict[str, Any]:
    """The service as `docker stack deploy` of `model`'s stack file leaves it on the swarm."""
    service = convert(model).document["services"][name]
    labels = {
        **service["deploy"]["labels"],
        "com.docker.stack.namespace": project,
        "com.docker.stack.image": service["image"],
    }
    replicas = service["deploy"].get("replicas", 1)
    return {
        "ID": f"id-{name}",
        "Version": {"Index": 10},
        "Spec": {
            "Name": f"{project}_{name}",
            "Labels": labels,
            "TaskTemplate": {"ContainerSpec": {"Image": f"{service['image']}@{DIGEST}"}},
            "Mode": {"Replicated": {"Replicas": replicas}},
        },
        "ServiceStatus": {"RunningTasks": replicas, "DesiredTasks": replicas, **status},
    }


def task(service: str, slot: int, node: str, state: str = "running", **more: Any) -> dict[str, Any]:
    return {
        "ServiceID": f"id-{service}",
        "Slot": slot,
        "NodeID": node,
        "DesiredState": more.pop("desired", "running"),
        "Status": {"State": state, "Timestamp": f"2026-11-28T17:0{slot}:00.123456Z", **more},
    }


def planned(services: list[dict[str, Any]], tasks: list[dict[str, Any]] | None = None) -> Plan:
    return plan("production", convert(MODEL), stack_from("shop", services, tasks or [], NODES))


def in_sync_services() -> list[dict[str, Any]]:
    return [deployed(MODEL, "web"), deployed(MODEL, "worker")]


def test_the_engine_answers_become_the_observed_stack() -> None:
    web = deployed(MODEL, "web")
    web["UpdateStatus"] = {"State": "paused", "Message": "update paused due to failure"}
    web["Spec"]["TaskTemplate"]["ContainerSpec"]["Healthcheck"] = {"Test": ["CMD", "true"]}
    tasks = [
        task("web", 1, "n4"),
        task("web", 2, "n6", "starting"),
        task("web", 2, "n5", "failed", desired="shutdown", Err="task: non-zero exit (1)"),
    ]
    stack = stack_from("shop", [web], tasks, NODES)
    assert list(stack.services) == ["web"]
    observed = stack.services["web"]
    assert observed == ObservedService(
        name="web",
        id="id-web",
        version=10,
        labels=web["Spec"]["Labels"],
        image=f"reg/web:1@{DIGEST}",
        replicas=2,
        running=2,
        desired_tasks=2,
        update_state="paused",
        update_message="update paused due to failure",
        tasks=(
            ObservedTask(
                1, "dh4", "running", "running", "healthy", "2026-11-28T17:01:00.123456Z", ""
            ),
            ObservedTask(
                2, "dh6", "running", "starting", "starting", "2026-11-28T17:02:00.123456Z", ""
            ),
        ),
        last_error="task: non-zero exit (1)",
    )
    assert (observed.requested_image, observed.digest) == ("reg/web:1", DIGEST)


def test_a_stack_as_declared_is_in_sync() -> None:
    assert planned(in_sync_services()) == Plan("production", "shop", ())


def test_each_change_carries_its_cause() -> None:
    old: dict[str, Any] = {
        "services": {
            "web": {"image": "reg/web:1", "environment": {"LEVEL": "debug"}, "scale": 3},
            "cron": {"image": "reg/cron:1"},
        }
    }
    worker = deployed(MODEL, "worker")
    worker["Spec"]["Labels"]["com.docker.stack.image"] = "reg/worker:0.9"
    services = [deployed(old, "web"), deployed(old, "cron"), worker]
    assert planned(services) == Plan(
        "production",
        "shop",
        (
            Change("cron", "remove", ("not in the spec: --prune removes it",)),
            Change("web", "update", ("environment changed", "replicas 3 -> 2")),
            Change("worker", "update", ("image reg/worker:0.9 -> 1",)),
        ),
    )


def test_a_missing_service_is_created_and_an_unknown_one_has_its_cause() -> None:
    web = deployed(MODEL, "web")
    del web["Spec"]["Labels"]["io.deployer.fingerprint"]
    other = deployed(MODEL, "web")
    other["Spec"]["Labels"]["io.deployer.fingerprint"] = "0" * 64
    del other["Spec"]["Labels"]["io.deployer.fingerprint.keys"]
    assert planned([web]).changes == (
        Change("web", "update", ("not deployed by deployer (no fingerprint label)",)),
        Change("worker", "create", ("not on the swarm",)),
    )
    assert planned([other, deployed(MODEL, "worker")]).changes == (
        Change("web", "update", ("configuration changed",)),
    )


def test_tasks_not_running_and_an_update_left_paused_are_changes() -> None:
    web, worker = in_sync_services()
    web["ServiceStatus"]["RunningTasks"] = 1
    worker["UpdateStatus"] = {"State": "rollback_paused", "Message": "rollback paused"}
    tasks = [
        task("web", 1, "n4"),
        task("web", 2, "n6", "rejected", desired="shutdown", Err="No such image: reg/web:1"),
    ]
    the_plan = planned([web, worker], tasks)
    assert the_plan.changes == (
        Change(
            "web", "converge", ("1/2 tasks running", "last task error: No such image: reg/web:1")
        ),
        Change("worker", "converge", ("update rollback_paused: rollback paused",)),
    )
    assert plan_text(the_plan) == (
        "production (project shop): 2 changes\n"
        "SERVICE  ACTION    CAUSE\n"
        "web      converge  1/2 tasks running\n"
        "                   last task error: No such image: reg/web:1\n"
        "worker   converge  update rollback_paused: rollback paused"
    )


def test_a_service_swarm_rolled_back_is_in_sync_where_the_spec_declares_its_previous_spec() -> None:
    rolled_back = {"State": "rollback_completed", "Message": "rollback completed"}
    web, worker = in_sync_services()
    web["UpdateStatus"] = rolled_back
    assert planned([web, worker]) == Plan("production", "shop", ())
    newer: dict[str, Any] = {
        "services": {**MODEL["services"], "web": {**MODEL["services"]["web"], "image": "reg/web:2"}}
    }
    the_plan = plan("production", convert(newer), stack_from("shop", [web, worker], [], NODES))
    assert the_plan.changes == (
        Change(
            "web",
            "update",
            ("image reg/web:1 -> 2", "its last update was rolled back (rollback completed)"),
        ),
    )


def test_status_per_service_and_per_task() -> None:
    web, worker = in_sync_services()
    web["ServiceStatus"]["RunningTasks"] = 1
    tasks = [task("web", 1, "n4"), task("web", 2, "n5", "preparing"), task("worker", 1, "n6")]
    stack = stack_from("shop", [web, worker], tasks, NODES)
    status = SwarmStatus("production", stack, plan("production", convert(MODEL), stack))
    assert status.healthy is False
    assert swarm_status_text(status) == (
        "production (stack shop): NOT healthy, NOT in sync (see `deploy diff`)\n"
        "SERVICE  RUNNING  IMAGE         DIGEST        UPDATE  NODE  STATE      HEALTH  SINCE\n"
        "web      1/2      reg/web:1     abababababab  -       dh4   running    -       2026-11-28T17:01:00Z\n"
        "                                                      dh5   preparing  -       2026-11-28T17:02:00Z\n"
        "worker   1/1      reg/worker:1  abababababab  -       dh6   running    -       2026-11-28T17:01:00Z\n"
        "converge: web (1/2 tasks running)"
    )
    document = swarm_status_document(status)
    assert document["services"][1] == {
        "service": "worker",
        "image": "reg/worker:1",
        "digest": DIGEST,
        "replicas": {"running": 1, "desired": 1},
        "update": {"state": None, "message": ""},
        "tasks": [
            {
                "slot": 1,
                "node": "dh6",
                "desired_state": "running",
                "state": "running",
                "health": None,
                "since": "2026-11-28T17:01:00.123456Z",
                "error": "",
                "current": True,
            }
        ],
    }
    assert (document["in_sync"], document["healthy"]) == (False, False)
