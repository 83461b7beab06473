"""The swarm target's observed stack (from the engine's answers), its plan and its status."""

from __future__ import annotations

import hashlib
from typing import Any

from deployer.cli.render.plans import plan_text
from deployer.cli.render.status import swarm_status_document, swarm_status_text
from deployer.core.observed import ObservedService, ObservedTask
from deployer.core.plan import Change, MovedTag, Plan
from deployer.core.status import SwarmStatus
from deployer.core.variables import Redactor
from deployer.infra.registry import RegistryDigests
from deployer.targets.swarm.apply import deployed_services, unused_files
from deployer.targets.swarm.observe import stack_from
from deployer.targets.swarm.plan import plan, tags_to_check
from deployer.targets.swarm.stack import (
    Finding,
    StackFile,
    convert,
    named_by_content,
    with_bind_digests,
)

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


def test_a_missing_service_is_created_one_made_without_deployer_adopted_and_an_unknown_one_has_its_cause() -> (
    None
):
    web = deployed(MODEL, "web")
    del web["Spec"]["Labels"]["io.deployer.fingerprint"]
    other = deployed(MODEL, "web")
    other["Spec"]["Labels"]["io.deployer.fingerprint"] = "0" * 64
    del other["Spec"]["Labels"]["io.deployer.fingerprint.keys"]
    assert planned([web]).changes == (
        Change(
            "web",
            "adopt",
            (
                "made without deployer: deployer's labels are written, which replaces no task "
                "(Swarm replaces a task only where its spec differs from the stack file's)",
            ),
        ),
        Change("worker", "create", ("not on the swarm",)),
    )
    assert planned([other, deployed(MODEL, "worker")]).changes == (
        Change("web", "update", ("configuration changed",)),
    )


def test_tasks_not_running_and_an_update_left_paused_are_shown_but_no_change_to_make() -> None:
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
    assert the_plan.in_sync is True
    assert plan_text(the_plan) == (
        "production (project shop): in sync, nothing to change; Swarm has not converged\n"
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
        "production (stack shop): NOT healthy, in sync\n"
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
    assert (document["in_sync"], document["healthy"]) == (True, False)


# Configs and secrets made from files, named by their content.
FILES_MODEL: dict[str, Any] = {
    "name": "shop",
    "services": {
        "web": {
            "image": "reg/web:1",
            "configs": [{"source": "app_conf", "target": "/etc/app.conf"}],
            "secrets": [{"source": "key", "target": "/run/secrets/key"}],
        },
        "worker": {"image": "reg/worker:1"},
    },
    "configs": {"app_conf": {"name": "shop_app_conf", "file": "/srv/shop/conf/app.conf"}},
    "secrets": {
        "key": {"file": "/srv/shop/key.txt"},
        "outside": {"name": "shared_key", "external": True},
    },
}
V1 = {"/srv/shop/conf/app.conf": b"a = 1\n", "/srv/shop/key.txt": b"k1"}


def files_stack(contents: dict[str, bytes]) -> StackFile:
    def read(path: str) -> bytes:
        if path not in contents:
            raise FileNotFoundError(2, "No such file or directory")
        return contents[path]

    return named_by_content(
        convert(FILES_MODEL), "shop", read, lambda path: path.removeprefix("/srv/shop/")
    )


def mounting(stack: StackFile) -> list[dict[str, Any]]:
    """web and worker as stack deploy of `stack` leaves them: web mounts its config and secret."""
    web, worker = deployed(FILES_MODEL, "web"), deployed(FILES_MODEL, "worker")
    container = web["Spec"]["TaskTemplate"]["ContainerSpec"]
    container["Configs"] = [{"ConfigName": stack.document["configs"]["app_conf"]["name"]}]
    container["Secrets"] = [{"SecretName": stack.document["secrets"]["key"]["name"]}]
    return [web, worker]


def test_configs_and_secrets_from_files_are_named_by_their_content() -> None:
    stack = files_stack(V1)
    config, key = hashlib.sha256(b"a = 1\n").hexdigest(), hashlib.sha256(b"k1").hexdigest()
    assert stack.document["configs"] == {
        "app_conf": {"name": f"shop_app_conf_{config[:10]}", "file": "/srv/shop/conf/app.conf"}
    }
    assert stack.document["secrets"] == {
        "key": {"name": f"shop_key_{key[:10]}", "file": "/srv/shop/key.txt"},
        "outside": {"name": "shared_key", "external": True},
    }
    assert stack.files == {"configs.app_conf": "conf/app.conf", "secrets.key": "key.txt"}
    assert stack.findings == ()
    # A file that cannot be read, and a name too long for Swarm with its digest, are refused.
    long_name: dict[str, Any] = {**FILES_MODEL, "configs": {"app_conf": {"name": "n" * 60, "file": "/srv/shop/conf/app.conf"}}}  # fmt: skip
    refused = named_by_content(convert(long_name), "shop", lambda path: b"", str)
    assert refused.findings == (
        Finding(
            "configs.app_conf.name",
            f"{'n' * 60}_{hashlib.sha256(b'').hexdigest()[:10]} is longer than the 64 characters "
            "Swarm allows a config's name (with the digest of its content): give it a shorter name",
            True,
        ),
    )
    assert files_stack({}).findings == (
        Finding(
            "configs.app_conf.file",
            "cannot read /srv/shop/conf/app.conf: No such file or directory",
            True,
        ),
        Finding("secrets.key.file", "cannot read /srv/shop/key.txt: No such file or directory", True),
    )  # fmt: skip


def test_a_changed_file_updates_the_services_that_mount_it_naming_the_file() -> None:
    before = files_stack(V1)
    on_swarm = stack_from("shop", mounting(before), [], NODES)
    assert plan("production", before, on_swarm).changes == ()
    after = files_stack({**V1, "/srv/shop/conf/app.conf": b"a = 2\n"})
    the_plan = plan("production", after, on_swarm)
    assert the_plan.changes == (
        Change("web", "update", ("config app_conf: file conf/app.conf changed",)),
    )
    assert deployed_services(the_plan) == ["web"]
    # Deployed before names said the content: the same name without its digest.
    older = mounting(before)
    older[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Configs"] = [{"ConfigName": "shop_app_conf"}]
    assert plan("production", before, stack_from("shop", older, [], NODES)).changes == (
        Change(
            "web",
            "update",
            ("config app_conf: file conf/app.conf mounted by its content's name now",),
        ),
    )


def test_unused_configs_and_secrets_are_those_no_spec_nor_previous_spec_mounts() -> None:
    stack = files_stack({**V1, "/srv/shop/conf/app.conf": b"a = 3\n"})
    current = stack.document["configs"]["app_conf"]["name"]
    web, worker = mounting(files_stack({**V1, "/srv/shop/conf/app.conf": b"a = 2\n"}))
    web["PreviousSpec"] = mounting(files_stack(V1))[0]["Spec"]
    second, first = (
        mounted["Spec"]["TaskTemplate"]["ContainerSpec"]["Configs"][0]["ConfigName"]
        for mounted in (web, {"Spec": web["PreviousSpec"]})
    )
    listed = [
        ("configs", name) for name in ("shop_app_conf_0000000000", first, second, current)
    ] + [("secrets", stack.document["secrets"]["key"]["name"]), ("secrets", "shop_old")]
    assert unused_files(listed, [web, worker], stack) == {
        "configs": ["shop_app_conf_0000000000"],
        "secrets": ["shop_old"],
    }


def test_a_tag_that_moved_in_the_registry_updates_the_services_pinned_to_its_old_digest() -> None:
    on_swarm = stack_from("shop", in_sync_services(), [], NODES)
    stack = convert(MODEL)
    assert tags_to_check(stack, on_swarm) == ["reg/web:1", "reg/worker:1"]
    new = "sha256:" + "cd" * 32
    registry = RegistryDigests({"reg/web:1": new, "reg/worker:1": DIGEST})
    the_plan = plan("production", stack, on_swarm, registry)
    cause = "tag 1 moved: sha256:abababababab -> sha256:cdcdcdcdcdcd"
    assert the_plan.changes == (Change("web", "update", (cause,)),)
    assert the_plan.moved == (MovedTag("web", "reg/web:1", DIGEST, new),)
    # A service pinned by digest in the compose file has no tag to move.
    pinned: dict[str, Any] = {"services": {"web": {"image": f"reg/web:1@{DIGEST}"}}}
    assert tags_to_check(convert(pinned), stack_from("shop", [deployed(pinned, "web")], [], NODES)) == []  # fmt: skip


def test_swarm_words_are_masked_at_their_source() -> None:
    web, worker = in_sync_services()
    web["ServiceStatus"]["RunningTasks"] = 1
    web["UpdateStatus"] = {"State": "paused", "Message": "paused: s3cret-canary in the way"}
    tasks = [task("web", 1, "n4", "rejected", Err="bind source /srv/s3cret-canary missing")]
    redact = Redactor()
    redact.add(["s3cret-canary"])
    observed = stack_from("shop", [web, worker], tasks, NODES, redact)
    service = observed.services["web"]
    assert (service.update_message, service.last_error, service.tasks[0].error) == (
        "paused: *** in the way",
        "bind source /srv/*** missing",
        "bind source /srv/*** missing",
    )


def _with_files(
    files: dict[str, dict[str, str]], reload: str | None = None
) -> tuple[StackFile, dict[str, Any]]:
    """MODEL's stack file with the digests of files web bind-mounts (and a reload label)."""
    model = {
        "services": {
            **MODEL["services"],
            "web": {**MODEL["services"]["web"], **({"labels": {RELOAD: reload}} if reload else {})},
        }
    }
    return with_bind_digests(convert(model), files), model


RELOAD = "dev.deployer.reload-signal"
OLD, NEW = "a" * 64, "b" * 64


def _running(stack: StackFile, model: dict[str, Any], label: str | None) -> list[dict[str, Any]]:
    web = deployed(model, "web")
    web["Spec"]["Labels"].pop("io.deployer.files", None)
    if label is not None:
        web["Spec"]["Labels"]["io.deployer.files"] = label
    return [web, deployed(model, "worker")]


def test_a_changed_bind_mounted_file_restarts_the_service_or_signals_it() -> None:
    tasks = [task("web", 1, "n4"), task("web", 2, "n5"), task("worker", 1, "n6")]
    old_label = '{"conf/app.conf":"' + OLD + '"}'
    for reload, change in (
        (
            None,
            Change(
                "web", "restart", (f"file conf/app.conf changed: sha256 {'a' * 12} -> {'b' * 12}",)
            ),
        ),
        (
            "SIGHUP",
            Change(
                "web",
                "signal",
                (
                    f"file conf/app.conf changed: sha256 {'a' * 12} -> {'b' * 12}",
                    "reloads on SIGHUP (dev.deployer.reload-signal): not restarted",
                ),
                signal="SIGHUP",
            ),
        ),
    ):
        stack, model = _with_files({"web": {"conf/app.conf": NEW}}, reload)
        observed = stack_from("shop", _running(stack, model, old_label), tasks, NODES)

        the_plan = plan("production", stack, observed)

        assert the_plan.changes == (change,)
        assert deployed_services(the_plan) == ["web"]


def test_files_first_read_on_a_swarm_are_taken_as_they_are() -> None:
    stack, model = _with_files({"web": {"conf/app.conf": NEW}})
    tasks = [task("web", 1, "n4"), task("web", 2, "n5"), task("worker", 1, "n6")]
    observed = stack_from("shop", _running(stack, model, None), tasks, NODES)

    assert plan("production", stack, observed).changes == (
        Change(
            "web",
            "adopt",
            (
                "the files it bind-mounts are compared from now on: their digests written in its "
                "label, which replaces no task",
            ),
        ),
    )
    in_sync = stack_from(
        "shop", _running(stack, model, '{"conf/app.conf":"' + NEW + '"}'), tasks, NODES
    )
    assert plan("production", stack, in_sync).changes == ()
