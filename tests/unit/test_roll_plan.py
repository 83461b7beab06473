"""Start-first recreates in the plan: which containers a roll keeps, retires and discards, and
how a plan shows the order of each change (ORDER column, JSON fields)."""

from __future__ import annotations

from dataclasses import replace

from deployer.cli.render.plans import plan_document, plan_text
from deployer.core.desired import DesiredService, UpdateOrder
from deployer.core.observed import ObservedContainer, ObservedState
from deployer.core.plan import Change, MovedTag, Plan, Roll
from deployer.infra.registry import RegistryDigests
from deployer.targets.host.plan import plan
from tests.unit.test_plan import DEFAULT, IMAGES, REG, WEB_PRINT, WORKER_PRINT, container, desired

START = UpdateOrder(True, "")
# web 1.4.1 ran before; 1.4.2 (WEB_PRINT, image web-id here) is declared.
OLD_PRINT = {**WEB_PRINT, "image": "i-141"}
IMAGE_CAUSE = f"image {REG}/web:1.4.1 -> 1.4.2"
WORKER = container("worker", 1, WORKER_PRINT)


def _web(replicas: int = 2, order: UpdateOrder = START) -> DesiredService:
    return DesiredService(
        "web",
        f"{REG}/web:1.4.2",
        replicas,
        WEB_PRINT,
        frozenset({"environment.DB_PASSWORD"}),
        order=order,
    )


def _old(number: int, state: str = "running", status: str = "Up 3 hours") -> ObservedContainer:
    """A container of web 1.4.1."""
    return container(
        "web",
        number,
        OLD_PRINT,
        image=f"{REG}/web:1.4.1",
        image_id="sha256:web-141",
        state=state,
        status=status,
    )


def _new(number: int, state: str = "running", status: str = "Up 1 minute") -> ObservedContainer:
    """A container of web 1.4.2, as declared."""
    return container("web", number, WEB_PRINT, state=state, status=status)


def _plan(web: DesiredService, *containers: ObservedContainer) -> Plan:
    return plan(desired(web=web), ObservedState("shop", (*containers, WORKER), IMAGES))


def _recreate(roll: Roll | None, order: UpdateOrder = START, *more: str) -> Plan:
    """The plan of web's recreate for its new image, with `more` causes after that one."""
    causes = (IMAGE_CAUSE, *more)
    return Plan("staging", "shop", (Change("web", "recreate", causes, order=order, roll=roll),))


def test_a_start_first_recreate_starts_as_many_new_containers_beside_the_old() -> None:
    the_plan = _plan(_web(), _old(1), _old(2))

    assert the_plan == _recreate(Roll(4, ("shop-web-1", "shop-web-2"), ()))
    assert the_plan.rolls == [("web", Roll(4, ("shop-web-1", "shop-web-2"), ()))]
    assert the_plan.services_to_up == ["web"]


def test_an_update_cut_short_keeps_its_new_containers_and_discards_old_stopped_ones() -> None:
    # shop-web-3 runs as declared (started beside the old ones); shop-web-2 was stopped.
    stopped = _old(2, state="exited", status="Exited (0) 1 minute ago")

    the_plan = _plan(_web(), _old(1), stopped, _new(3))

    # shop-web-1 and shop-web-3 are left once shop-web-2 is removed: one more makes 3.
    assert the_plan == _recreate(Roll(3, ("shop-web-1",), ("shop-web-2",)))


def test_a_new_container_that_does_not_run_is_discarded_too() -> None:
    failed = _new(3, state="exited", status="Exited (1) 1 minute ago")

    the_plan = _plan(_web(), _old(1), _old(2), failed)

    assert the_plan == _recreate(Roll(4, ("shop-web-1", "shop-web-2"), ("shop-web-3",)))


def test_new_containers_beyond_the_replicas_are_retired_with_the_old() -> None:
    the_plan = _plan(_web(replicas=1), _old(1), _new(2), _new(3))

    # shop-web-2 is kept; nothing new is started (3 already run), two are retired.
    assert the_plan == _recreate(Roll(3, ("shop-web-1", "shop-web-3"), ()))


def test_replicas_changed_with_the_image_are_the_new_containers_started() -> None:
    more = _plan(_web(replicas=3), _old(1), _old(2))
    fewer = _plan(_web(replicas=1), _old(1), _old(2))
    none = _plan(_web(replicas=0), _old(1), _old(2))

    old = ("shop-web-1", "shop-web-2")
    assert more == _recreate(Roll(5, old, ()), START, "replicas 2 -> 3")
    assert fewer == _recreate(Roll(3, old, ()), START, "replicas 2 -> 1")
    assert none == _recreate(Roll(2, old, ()), START, "replicas 2 -> 0")


def test_a_stop_first_service_has_no_roll_and_says_why() -> None:
    blocked = UpdateOrder(False, "publishes 8080")

    the_plan = _plan(_web(order=blocked), _old(1), _old(2))
    default = _plan(_web(order=DEFAULT), _old(1), _old(2))

    assert the_plan == _recreate(None, blocked)
    assert default == _recreate(None, DEFAULT)
    assert (the_plan.rolls, the_plan.services_to_up) == ([], ["web"])


def test_a_moved_tag_makes_every_container_stale() -> None:
    # The containers run as declared, by the digest the tag named before it moved.
    old, new = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    digests = {"sha256:web-id": (f"{REG}/web@{old}",), "sha256:worker-id": ()}
    observed = ObservedState("shop", (_new(1), _new(2), WORKER), IMAGES, digests)
    registry = RegistryDigests({f"{REG}/web:1.4.2": new})

    the_plan = plan(desired(web=_web()), observed, registry)

    cause = "tag 1.4.2 moved: sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb"
    assert the_plan == Plan(
        "staging",
        "shop",
        (
            Change("web", "pull", (cause,), f"{REG}/web:1.4.2"),
            Change(
                "web",
                "recreate",
                (cause,),
                order=START,
                roll=Roll(4, ("shop-web-1", "shop-web-2"), ()),
            ),
        ),
        (MovedTag("web", f"{REG}/web:1.4.2", old, new),),
    )


def test_a_service_without_containers_or_only_signalled_has_no_order() -> None:
    reloads = replace(
        _web(replicas=1),
        fingerprint={**WEB_PRINT, "file:conf/app.conf": "b2"},
        reload_signal="SIGHUP",
        restart="always",
    )

    created = plan(desired(web=_web()), ObservedState("shop", (WORKER,), IMAGES))
    signalled = _plan(reloads, container("web", 1, {**WEB_PRINT, "file:conf/app.conf": "a1"}))

    assert created.changes == (Change("web", "create", ("no container",)),)
    assert [(c.action, c.order, c.roll) for c in signalled.changes] == [("signal", None, None)]


# How a plan shows the order of its changes.


def _mixed() -> Plan:
    """api is new; web (start-first) moves to a tag not here yet; worker (stop-first: it
    publishes a port) runs another command."""
    web = replace(_web(), image=f"{REG}/web:1.5.0", fingerprint={**WEB_PRINT, "image": "i-150"})
    worker = DesiredService(
        "worker",
        f"{REG}/worker:2.0",
        1,
        {**WORKER_PRINT, "command": "c3"},
        frozenset(),
        order=UpdateOrder(False, "publishes 8080"),
    )
    api = DesiredService("api", f"{REG}/worker:2.0", 1, WORKER_PRINT, frozenset())
    observed = ObservedState("shop", (_new(1), _new(2), WORKER), IMAGES)
    return plan(desired(web=web, worker=worker, api=api), observed)


def test_the_plan_of_a_start_first_and_a_stop_first_recreate() -> None:
    assert _mixed() == Plan(
        "staging",
        "shop",
        (
            Change("api", "create", ("no container",)),
            Change(
                "web", "pull", (f"image {REG}/web:1.5.0 not present locally",), f"{REG}/web:1.5.0"
            ),
            Change(
                "web",
                "recreate",
                (f"image {REG}/web:1.4.2 -> 1.5.0",),
                order=START,
                roll=Roll(4, ("shop-web-1", "shop-web-2"), ()),
            ),
            Change(
                "worker",
                "recreate",
                ("command changed",),
                order=UpdateOrder(False, "publishes 8080"),
            ),
        ),
    )


def test_diff_text_has_an_order_column_where_a_change_recreates() -> None:
    assert plan_text(_mixed()) == (
        "staging (project shop): 4 changes\n"
        "SERVICE  ACTION    ORDER                        CAUSE\n"
        "api      create                                 no container\n"
        f"web      pull                                   image {REG}/web:1.5.0 not present locally\n"
        f"web      recreate  start-first                  image {REG}/web:1.4.2 -> 1.5.0\n"
        "worker   recreate  stop-first (publishes 8080)  command changed"
    )


def test_diff_json_has_the_order_of_each_change_that_recreates() -> None:
    assert plan_document(_mixed()) == {
        "environment": "staging",
        "project": "shop",
        "in_sync": False,
        "changes": [
            {"service": "api", "action": "create", "causes": ["no container"]},
            {
                "service": "web",
                "action": "pull",
                "causes": [f"image {REG}/web:1.5.0 not present locally"],
            },
            {
                "service": "web",
                "action": "recreate",
                "causes": [f"image {REG}/web:1.4.2 -> 1.5.0"],
                "order": "start-first",
                "order_reason": None,
            },
            {
                "service": "worker",
                "action": "recreate",
                "causes": ["command changed"],
                "order": "stop-first",
                "order_reason": "publishes 8080",
            },
        ],
        "notes": [],
    }


def test_a_plan_without_a_recreate_has_no_order_column() -> None:
    # api is new (its image not here), web is short of a container, worker has stopped.
    stopped = container(
        "worker", 1, WORKER_PRINT, state="exited", status="Exited (1) 3 minutes ago"
    )
    observed = ObservedState("shop", (_new(1), stopped), IMAGES)
    api = DesiredService("api", f"{REG}/api:1", 1, {"image": "i-a"}, frozenset())

    the_plan = plan(desired(web=_web(), api=api), observed)

    assert plan_text(the_plan) == (
        "staging (project shop): 4 changes\n"
        "SERVICE  ACTION  CAUSE\n"
        f"api      pull    image {REG}/api:1 not present locally\n"
        "api      create  no container\n"
        "web      scale   replicas 1 -> 2\n"
        "worker   start   no running container: shop-worker-1 exited (1) 3 minutes ago"
    )
    assert plan_document(the_plan)["changes"] == [
        {"service": "api", "action": "pull", "causes": [f"image {REG}/api:1 not present locally"]},
        {"service": "api", "action": "create", "causes": ["no container"]},
        {"service": "web", "action": "scale", "causes": ["replicas 1 -> 2"]},
        {
            "service": "worker",
            "action": "start",
            "causes": ["no running container: shop-worker-1 exited (1) 3 minutes ago"],
        },
    ]
