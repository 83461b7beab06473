"""plan(desired, observed) is pure: whole plans, as text and as JSON documents."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from deployer.cli.render.plans import plan_document, plan_text
from deployer.core.desired import (
    ComposeFiles,
    DesiredService,
    DesiredState,
    UpdateOrder,
    image_part,
)
from deployer.core.observed import ObservedContainer, ObservedState
from deployer.core.plan import Change, Plan
from deployer.targets.host.plan import as_deployed, plan

REG = "ghcr.io/acme"
# The order of a service whose compose file says none.
DEFAULT = UpdateOrder(False, "default order")
WEB_PRINT = {
    "image": "i-142",
    "command": "c1",
    "environment.LOG_LEVEL": "l-info",
    "environment.DB_PASSWORD": "p1",
}
WORKER_PRINT = {"image": "i-w", "command": "c2"}


def desired(**overrides: DesiredService) -> DesiredState:
    services = {
        "web": DesiredService(
            "web", f"{REG}/web:1.4.2", 2, WEB_PRINT, frozenset({"environment.DB_PASSWORD"})
        ),
        "worker": DesiredService("worker", f"{REG}/worker:2.0", 1, WORKER_PRINT, frozenset()),
        **overrides,
    }
    files = ComposeFiles("shop", (Path("compose.yml"),), {})
    return DesiredState("staging", files, {}, services, {}, 120.0)


def container(
    service: str,
    number: int,
    fingerprint: dict[str, str] | None,
    made_with: dict[str, str] | None = None,
    config_hash: str | None = None,
    **fields: str,
) -> ObservedContainer:
    """`made_with` (the label's fingerprint): `fingerprint` unless said."""
    values = {
        "state": "running",
        "status": "Up 3 hours (healthy)",
        "image": f"{REG}/{service}:1.4.2" if service == "web" else f"{REG}/{service}:2.0",
        "image_id": f"sha256:{service}-id",
        **fields,
    }
    return ObservedContainer(
        id=f"{service}{number}",
        name=f"shop-{service}-{number}",
        service=service,
        number=number,
        state=values["state"],
        status=values["status"],
        health="healthy",
        image=values["image"],
        image_id=values["image_id"],
        fingerprint=fingerprint,
        config_hash=config_hash,
        made_with=fingerprint if made_with is None else made_with,
    )


IMAGES = {f"{REG}/web:1.4.2": "sha256:web-id", f"{REG}/worker:2.0": "sha256:worker-id"}
IN_SYNC = (
    container("web", 1, WEB_PRINT),
    container("web", 2, WEB_PRINT),
    container("worker", 1, WORKER_PRINT),
)


def test_in_sync() -> None:
    the_plan = plan(desired(), ObservedState("shop", IN_SYNC, IMAGES))

    assert the_plan == Plan("staging", "shop", ())
    assert plan_text(the_plan) == "staging (project shop): in sync, nothing to change"


def test_every_kind_of_change_with_its_causes() -> None:
    old_web = {
        **WEB_PRINT,
        "image": "i-141",
        "environment.LOG_LEVEL": "l-debug",
        "environment.DB_PASSWORD": "p0",
    }
    observed = ObservedState(
        "shop",
        (
            container("cron", 1, {"image": "x"}),
            container("web", 1, old_web, image=f"{REG}/web:1.4.1"),
            container("web", 2, old_web, image=f"{REG}/web:1.4.1"),
            container("worker", 1, WORKER_PRINT, state="exited", status="Exited (1) 3 minutes ago"),
        ),
        {f"{REG}/worker:2.0": "sha256:worker-id"},
    )

    the_plan = plan(desired(), observed)

    assert the_plan == Plan(
        "staging",
        "shop",
        (
            Change("cron", "remove", ("orphan: not in the spec",)),
            Change(
                "web", "pull", (f"image {REG}/web:1.4.2 not present locally",), f"{REG}/web:1.4.2"
            ),
            Change(
                "web",
                "recreate",
                (
                    "secret DB_PASSWORD changed",
                    "environment LOG_LEVEL changed",
                    f"image {REG}/web:1.4.1 -> 1.4.2",
                ),
                order=DEFAULT,
            ),
            Change(
                "worker", "start", ("no running container: shop-worker-1 exited (1) 3 minutes ago",)
            ),
        ),
    )
    assert plan_text(the_plan) == (
        "staging (project shop): 4 changes\n"
        "SERVICE  ACTION    ORDER                       CAUSE\n"
        "cron     remove                                orphan: not in the spec\n"
        f"web      pull                                  image {REG}/web:1.4.2 not present locally\n"
        "web      recreate  stop-first (default order)  secret DB_PASSWORD changed\n"
        "                                               environment LOG_LEVEL changed\n"
        f"                                               image {REG}/web:1.4.1 -> 1.4.2\n"
        "worker   start                                 no running container: shop-worker-1 "
        "exited (1) 3 minutes ago"
    )
    assert the_plan.pulls == [f"{REG}/web:1.4.2"]
    assert the_plan.services_to_up == ["web", "worker"]
    assert the_plan.removes_orphans


def test_scale_create_and_parts_added_or_removed() -> None:
    worker_print = {"image": "i-w", "command": "c2", "environment.NEW": "n"}
    observed = ObservedState(
        "shop",
        (
            container("web", 1, WEB_PRINT),
            container("worker", 1, {"image": "i-w", "command": "c2", "ports": "p"}),
        ),
        IMAGES,
    )
    wanted = desired(
        worker=DesiredService("worker", f"{REG}/worker:2.0", 1, worker_print, frozenset()),
        api=DesiredService("api", f"{REG}/worker:2.0", 1, {}, frozenset()),
    )

    assert plan_document(plan(wanted, observed)) == {
        "environment": "staging",
        "project": "shop",
        "in_sync": False,
        "changes": [
            {"service": "api", "action": "create", "causes": ["no container"]},
            {"service": "web", "action": "scale", "causes": ["replicas 1 -> 2"]},
            {
                "service": "worker",
                "action": "recreate",
                "causes": ["environment NEW added", "ports removed"],
                "order": "stop-first",
                "order_reason": "default order",
            },
        ],
        "notes": [],
    }


def test_retagged_image_and_containers_not_made_by_deployer() -> None:
    observed = ObservedState(
        "shop",
        (
            container("web", 1, WEB_PRINT),
            container("web", 2, WEB_PRINT),
            container("worker", 1, None),
        ),
        {**IMAGES, f"{REG}/web:1.4.2": "sha256:0123456789abcdef"},
    )

    assert plan(desired(), observed).changes == (
        Change(
            "web",
            "recreate",
            (f"image {REG}/web:1.4.2 now points to 0123456789ab (container runs web-id)",),
            order=DEFAULT,
        ),
        Change(
            "worker",
            "recreate",
            ("not deployed by deployer (no fingerprint label)",),
            order=DEFAULT,
        ),
    )


def test_one_pull_per_image_shared_by_services() -> None:
    wanted = desired(api=DesiredService("api", f"{REG}/worker:2.0", 1, WORKER_PRINT, frozenset()))
    observed = ObservedState("shop", IN_SYNC, {f"{REG}/web:1.4.2": "sha256:web-id"})

    assert [(c.service, c.action) for c in plan(wanted, observed).changes] == [
        ("api", "pull"),
        ("api", "create"),
        ("worker", "recreate"),
    ]


def test_a_container_created_and_never_started_is_replaced_not_started() -> None:
    # What an engine restarted during a deploy leaves: new containers created, never started; the
    # engine may keep their half-made task, so that starting them fails ("task ... already
    # exists"). Containers it stopped are started again (Exited (255): killed with the engine).
    observed = ObservedState(
        "shop",
        (
            container("cron", 1, {"image": "x"}, state="created", status="Created"),
            container("web", 1, WEB_PRINT),
            container("web", 2, WEB_PRINT, state="created", status="Created"),
            container("worker", 1, WORKER_PRINT, state="created", status="Created"),
        ),
        IMAGES,
    )

    the_plan = plan(desired(), observed)

    assert plan_text(the_plan) == (
        "staging (project shop): 3 changes\n"
        "SERVICE  ACTION   CAUSE\n"
        "cron     remove   orphan: not in the spec\n"
        "web      replace  shop-web-2 created, never started (a deploy cut short or failed)\n"
        "worker   replace  shop-worker-1 created, never started (a deploy cut short or failed)"
    )
    assert the_plan.services_to_replace == ["web", "worker"]
    assert the_plan.services_to_up == ["web", "worker"]

    stopped = (
        container("web", 1, WEB_PRINT, state="exited", status="Exited (255) 2 seconds ago"),
        container("web", 2, WEB_PRINT),
        container("worker", 1, WORKER_PRINT, state="exited", status="Exited (137) 2 seconds ago"),
    )
    the_plan = plan(desired(), ObservedState("shop", stopped, IMAGES))

    assert plan_text(the_plan) == (
        "staging (project shop): 2 changes\n"
        "SERVICE  ACTION  CAUSE\n"
        "web      start   shop-web-1 exited (255) 2 seconds ago\n"
        "worker   start   no running container: shop-worker-1 exited (137) 2 seconds ago"
    )
    assert the_plan.services_to_replace == []


def test_a_replace_also_names_what_changed_and_the_replicas() -> None:
    # The new release's container left created by a recreate cut short, the old one gone.
    new_worker = {**WORKER_PRINT, "command": "c3"}
    wanted = desired(
        worker=DesiredService("worker", f"{REG}/worker:2.0", 2, new_worker, frozenset())
    )
    observed = ObservedState(
        "shop",
        (*IN_SYNC[:2], container("worker", 1, WORKER_PRINT, state="created", status="Created")),
        IMAGES,
    )

    the_plan = plan(wanted, observed)

    assert plan_text(the_plan) == (
        "staging (project shop): 1 change\n"
        "SERVICE  ACTION   CAUSE\n"
        "worker   replace  shop-worker-1 created, never started (a deploy cut short or failed)\n"
        "                  replicas 1 -> 2\n"
        "                  command changed"
    )
    # Its containers are renewed with the spec's reference, as those of a recreate.
    assert as_deployed(wanted, observed, the_plan) == wanted


# The same image under another reference: the spec pins by digest what ran by tag.
PINNED_DIGEST = "sha256:" + "e" * 64
PINNED_WORKER = f"{REG}/worker:2.0@{PINNED_DIGEST}"


def _pinned_world() -> tuple[DesiredState, ObservedState]:
    """worker pinned (its fingerprint's image part changes), web at a new tag."""
    worker = DesiredService(
        "worker",
        PINNED_WORKER,
        1,
        {**WORKER_PRINT, "image": image_part(PINNED_WORKER)},
        frozenset(),
    )
    web = DesiredService("web", f"{REG}/web:1.5.0", 2, {**WEB_PRINT, "image": "i-150"}, frozenset())
    made = {**WORKER_PRINT, "image": image_part(f"{REG}/worker:2.0")}
    containers = (
        container("web", 1, WEB_PRINT),
        container("web", 2, WEB_PRINT),
        container("worker", 1, made),
    )
    images = {
        **IMAGES,
        f"{REG}/web:1.5.0": "sha256:web-150",
        f"{REG}/worker@{PINNED_DIGEST}": "sha256:worker-id",
    }
    return desired(web=web, worker=worker), ObservedState("shop", containers, images)


def test_a_reference_pinned_to_the_image_that_runs_is_no_change() -> None:
    wanted, observed = _pinned_world()

    assert plan_text(plan(wanted, observed)) == (
        "staging (project shop): 1 change\n"
        "SERVICE  ACTION    ORDER                       CAUSE\n"
        f"web      recreate  stop-first (default order)  image {REG}/web:1.4.2 -> 1.5.0"
    )


def test_a_pinned_reference_to_another_image_is_a_recreate() -> None:
    wanted, observed = _pinned_world()
    other = ObservedState(
        "shop",
        observed.containers,
        {**observed.image_ids, f"{REG}/worker@{PINNED_DIGEST}": "sha256:worker-new"},
    )

    assert plan_text(plan(wanted, other)) == (
        "staging (project shop): 2 changes\n"
        "SERVICE  ACTION    ORDER                       CAUSE\n"
        f"web      recreate  stop-first (default order)  image {REG}/web:1.4.2 -> 1.5.0\n"
        "worker   recreate  stop-first (default order)  image "
        f"{REG}/worker:2.0 -> {PINNED_WORKER}"
    )


def test_up_gets_an_unchanged_service_as_its_containers_were_made() -> None:
    # Compose hashes the reference: `up web` must not make it recreate worker (a dependency).
    wanted, observed = _pinned_world()

    deployed = as_deployed(wanted, observed, plan(wanted, observed))

    assert deployed.services["worker"] == replace(
        wanted.services["worker"],
        image=f"{REG}/worker:2.0",
        fingerprint={**WORKER_PRINT, "image": image_part(f"{REG}/worker:2.0")},
    )
    assert deployed.services["web"] == wanted.services["web"]
    assert deployed.overrides == {"worker": {"image": f"{REG}/worker:2.0"}}
    assert plan(deployed, observed) == plan(wanted, observed)
