"""Plans with the files services read, containers made by plain Compose (adopted), services that
reload on a signal, and what deployer remembers of such containers."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml

from deployer.cli.render.plans import plan_document, plan_text
from deployer.core.desired import (
    ENVIRONMENT_LABEL,
    FINGERPRINT_LABEL,
    DesiredService,
    DesiredState,
    UpdateOrder,
    with_file_digests,
)
from deployer.core.inputs import BIND, SECRET, FileInput, ServiceInputs, missing, not_content
from deployer.core.observed import ObservedContainer, ObservedState
from deployer.core.plan import Change, Plan
from deployer.state.containers import forget, remember, remembered
from deployer.targets.host.plan import as_deployed, plan
from tests.unit.fakes import FakeStore
from tests.unit.test_plan import IMAGES, IN_SYNC, REG, WEB_PRINT, WORKER_PRINT, container, desired

# Compose's config hashes (sha256 hex, as `com.docker.compose.config-hash` carries them).
DECLARED = "0123456789abcdef" * 4
OTHER = "fedcba9876543210" * 4
# Digests of a file's content, before and after.
OLD, NEW = "a1" * 32, "b2" * 32

PROXY = f"{REG}/proxy:2.0"
PROXY_PRINT = {"image": "i-p", "command": "c-p", "file:conf/nginx.conf": NEW, "file:static": NEW}
PROXY_IMAGES = {**IMAGES, PROXY: "sha256:proxy-id"}


def _proxy(
    image: str = PROXY, replicas: int = 1, fingerprint: dict[str, str] | None = None
) -> DesiredService:
    """A service that reloads on SIGHUP."""
    return DesiredService(
        "proxy",
        image,
        replicas,
        PROXY_PRINT if fingerprint is None else fingerprint,
        frozenset(),
        "always",
        reload_signal="SIGHUP",
    )


def _hashed(wanted: DesiredState, **hashes: str) -> DesiredState:
    return replace(wanted, compose_hashes=hashes)


def _override(deployed: DesiredState) -> object:
    return yaml.safe_load(deployed.override)


def _label(fingerprint: dict[str, str]) -> str:
    return json.dumps(fingerprint, sort_keys=True, separators=(",", ":"))


def test_a_container_made_by_plain_compose_as_declared_is_adopted() -> None:
    wanted = _hashed(desired(), worker=DECLARED)
    observed = ObservedState(
        "shop", (*IN_SYNC[:2], container("worker", 1, None, config_hash=DECLARED)), IMAGES
    )

    the_plan = plan(wanted, observed)

    assert plan_text(the_plan) == (
        "staging (project shop): 1 change\n"
        "SERVICE  ACTION  CAUSE\n"
        "worker   adopt   made without deployer, runs as declared (Compose's config hash "
        "0123456789ab)"
    )
    assert the_plan.services_to_remember == ["worker"]
    assert the_plan.services_to_up == []
    assert not the_plan.in_sync


def test_containers_made_by_plain_compose_otherwise_are_recreated() -> None:
    # web: another configuration; worker: as declared, on an image its tag no longer names;
    # api: no config hash to compare (made by some other tool).
    wanted = _hashed(
        desired(api=DesiredService("api", f"{REG}/worker:2.0", 1, WORKER_PRINT, frozenset())),
        web=DECLARED,
        worker=DECLARED,
        api=DECLARED,
    )
    observed = ObservedState(
        "shop",
        (
            container("api", 1, None, image=f"{REG}/worker:2.0", image_id="sha256:worker-id"),
            container("web", 1, None, config_hash=OTHER),
            container("web", 2, None, config_hash=OTHER),
            container("worker", 1, None, config_hash=DECLARED, image_id="sha256:9876543210fedcba"),
        ),
        IMAGES,
    )

    the_plan = plan(wanted, observed)

    assert plan_text(the_plan) == (
        "staging (project shop): 3 changes\n"
        "SERVICE  ACTION    ORDER                       CAUSE\n"
        "api      recreate  stop-first (default order)  not deployed by deployer (no fingerprint "
        "label)\n"
        "web      recreate  stop-first (default order)  made without deployer, not as declared "
        "(Compose's config hash fedcba987654, declared 0123456789ab)\n"
        "worker   recreate  stop-first (default order)  made without deployer, runs image "
        f"9876543210fe, {REG}/worker:2.0 is worker-id"
    )
    assert the_plan.services_to_remember == []
    assert the_plan.services_to_up == ["api", "web", "worker"]


def test_without_compose_hashes_nothing_is_adopted() -> None:
    # The hashes are asked only when the engine has containers without a fingerprint.
    observed = ObservedState(
        "shop", (*IN_SYNC[:2], container("worker", 1, None, config_hash=DECLARED)), IMAGES
    )

    assert plan(desired(), observed).changes == (
        Change(
            "worker",
            "recreate",
            ("not deployed by deployer (no fingerprint label)",),
            order=UpdateOrder(False, "default order"),
        ),
    )


def _mixed() -> tuple[DesiredState, ObservedState]:
    """web: a file changed, one added, one gone; worker: its secret's file changed; proxy
    (reloads on SIGHUP): a file changed, a folder added."""
    web_print = {**WEB_PRINT, "file:conf/app.conf": NEW, "file:conf/extra.conf": NEW}
    old_web = {**WEB_PRINT, "file:conf/app.conf": OLD, "file:conf/old.conf": OLD}
    worker_print = {**WORKER_PRINT, "file:secrets/db_password.txt": NEW}
    old_worker = {**WORKER_PRINT, "file:secrets/db_password.txt": OLD}
    old_proxy = {"image": "i-p", "command": "c-p", "file:conf/nginx.conf": OLD}
    wanted = desired(
        web=DesiredService(
            "web", f"{REG}/web:1.4.2", 2, web_print, frozenset({"environment.DB_PASSWORD"})
        ),
        worker=DesiredService(
            "worker",
            f"{REG}/worker:2.0",
            1,
            worker_print,
            frozenset({"file:secrets/db_password.txt"}),
        ),
        proxy=_proxy(),
    )
    observed = ObservedState(
        "shop",
        (
            container("proxy", 1, old_proxy),
            container("web", 1, old_web),
            container("web", 2, old_web),
            container("worker", 1, old_worker),
        ),
        PROXY_IMAGES,
    )
    return wanted, observed


def test_files_changed_are_causes_and_a_service_that_reloads_gets_a_signal() -> None:
    wanted, observed = _mixed()

    the_plan = plan(wanted, observed)

    assert plan_text(the_plan) == (
        "staging (project shop): 3 changes\n"
        "SERVICE  ACTION    ORDER                       CAUSE\n"
        "proxy    signal                                file conf/nginx.conf changed: sha256 "
        "a1a1a1a1a1a1 -> b2b2b2b2b2b2\n"
        "                                               file static added\n"
        "                                               reloads on SIGHUP "
        "(dev.deployer.reload-signal): not restarted\n"
        "web      recreate  stop-first (default order)  file conf/app.conf changed: sha256 "
        "a1a1a1a1a1a1 -> b2b2b2b2b2b2\n"
        "                                               file conf/extra.conf added\n"
        "                                               file conf/old.conf removed\n"
        "worker   recreate  stop-first (default order)  secret file secrets/db_password.txt "
        "changed"
    )
    assert the_plan.signals == [("proxy", "SIGHUP")]
    assert the_plan.changes[0] == Change(
        "proxy",
        "signal",
        (
            "file conf/nginx.conf changed: sha256 a1a1a1a1a1a1 -> b2b2b2b2b2b2",
            "file static added",
            "reloads on SIGHUP (dev.deployer.reload-signal): not restarted",
        ),
        signal="SIGHUP",
    )
    assert the_plan.services_to_up == ["web", "worker"]
    assert the_plan.services_to_remember == ["proxy"]


NGINX_CHANGED = "file conf/nginx.conf changed: sha256 a1a1a1a1a1a1 -> b2b2b2b2b2b2"


@pytest.mark.parametrize(
    ("service", "proxy", "images", "causes"),
    [
        pytest.param(
            _proxy(image=f"{REG}/proxy:2.1", fingerprint={**PROXY_PRINT, "image": "i-p21"}),
            container("proxy", 1, {**PROXY_PRINT, "file:conf/nginx.conf": OLD}),
            {**PROXY_IMAGES, f"{REG}/proxy:2.1": "sha256:proxy-21"},
            (NGINX_CHANGED, f"image {REG}/proxy:2.0 -> 2.1"),
            id="its image changed too",
        ),
        pytest.param(
            _proxy(fingerprint={**PROXY_PRINT, "command": "c-p2"}),
            container("proxy", 1, {**PROXY_PRINT, "file:conf/nginx.conf": OLD}),
            PROXY_IMAGES,
            ("command changed", NGINX_CHANGED),
            id="its command changed too",
        ),
        pytest.param(
            _proxy(),
            container("proxy", 1, {**PROXY_PRINT, "file:conf/nginx.conf": OLD}),
            {**PROXY_IMAGES, PROXY: "sha256:proxy-new"},
            (NGINX_CHANGED,),
            id="its tag names another image here",
        ),
        pytest.param(
            _proxy(),
            container(
                "proxy",
                1,
                {**PROXY_PRINT, "file:conf/nginx.conf": OLD},
                state="exited",
                status="Exited (0) 1 minute ago",
            ),
            PROXY_IMAGES,
            (NGINX_CHANGED,),
            id="it does not run",
        ),
        pytest.param(
            _proxy(replicas=2),
            container("proxy", 1, {**PROXY_PRINT, "file:conf/nginx.conf": OLD}),
            PROXY_IMAGES,
            (NGINX_CHANGED, "replicas 1 -> 2"),
            id="it is scaled",
        ),
    ],
)
def test_a_service_that_reloads_is_recreated_when_more_than_its_files_changed(
    service: DesiredService,
    proxy: ObservedContainer,
    images: dict[str, str],
    causes: tuple[str, ...],
) -> None:
    observed = ObservedState("shop", (proxy, *IN_SYNC), images)

    the_plan = plan(desired(proxy=service), observed)

    assert the_plan == Plan(
        "staging",
        "shop",
        (Change("proxy", "recreate", causes, order=UpdateOrder(False, "default order")),),
    )
    assert the_plan.signals == []


def test_notes_of_the_files_read_follow_the_plan() -> None:
    inputs = ServiceInputs(
        {
            "web": (
                FileInput("/srv/shop/conf/app.conf", "conf/app.conf", BIND),
                FileInput("/srv/shop/secrets/db.txt", "secrets/db.txt", SECRET),
                FileInput("/var/run/docker.sock", "/var/run/docker.sock", BIND),
            ),
            "worker": (FileInput("/srv/shop/cache", "cache", BIND),),
        }
    )
    digests = {
        "/srv/shop/conf/app.conf": replace(
            missing(FileInput("/srv/shop/conf/app.conf", "conf/app.conf", BIND)),
            value=NEW,
            note=None,
        ),
        "/srv/shop/secrets/db.txt": replace(
            missing(FileInput("/srv/shop/secrets/db.txt", "secrets/db.txt", BIND)),
            value=OLD,
            note=None,
        ),
        "/var/run/docker.sock": not_content("/var/run/docker.sock", "socket"),
        "/srv/shop/cache": missing(FileInput("/srv/shop/cache", "cache", BIND)),
    }

    wanted = with_file_digests(desired(), inputs, digests)

    web_print = {**WEB_PRINT, "file:conf/app.conf": NEW, "file:secrets/db.txt": OLD}
    worker_print = {
        **WORKER_PRINT,
        "file:cache": missing(FileInput("/srv/shop/cache", "cache", BIND)).value or "",
    }
    assert wanted == replace(
        desired(),
        services={
            "web": DesiredService(
                "web",
                f"{REG}/web:1.4.2",
                2,
                web_print,
                frozenset({"environment.DB_PASSWORD", "file:secrets/db.txt"}),
            ),
            "worker": DesiredService("worker", f"{REG}/worker:2.0", 1, worker_print, frozenset()),
        },
        notes=(
            "web: bind mount /var/run/docker.sock is a socket: not content, not compared",
            "worker: bind mount cache does not exist: Compose will create an empty folder there",
        ),
    )

    in_sync = ObservedState(
        "shop",
        (
            container("web", 1, web_print),
            container("web", 2, web_print),
            container("worker", 1, worker_print),
        ),
        IMAGES,
    )
    assert plan_text(plan(wanted, in_sync)) == (
        "staging (project shop): in sync, nothing to change\n"
        "note: web: bind mount /var/run/docker.sock is a socket: not content, not compared\n"
        "note: worker: bind mount cache does not exist: Compose will create an empty folder there"
    )

    old_web = {**web_print, "file:conf/app.conf": OLD}
    changed = replace(
        in_sync,
        containers=(container("web", 1, old_web), *in_sync.containers[1:]),
    )
    the_plan = plan(wanted, changed)
    assert plan_text(the_plan) == (
        "staging (project shop): 1 change\n"
        "SERVICE  ACTION    ORDER                       CAUSE\n"
        "web      recreate  stop-first (default order)  file conf/app.conf changed: sha256 "
        "a1a1a1a1a1a1 -> b2b2b2b2b2b2\n"
        "note: web: bind mount /var/run/docker.sock is a socket: not content, not compared\n"
        "note: worker: bind mount cache does not exist: Compose will create an empty folder there"
    )
    assert plan_document(the_plan) == {
        "environment": "staging",
        "project": "shop",
        "in_sync": False,
        "changes": [
            {
                "service": "web",
                "action": "recreate",
                "causes": ["file conf/app.conf changed: sha256 a1a1a1a1a1a1 -> b2b2b2b2b2b2"],
                "order": "stop-first",
                "order_reason": "default order",
            }
        ],
        "notes": [
            "web: bind mount /var/run/docker.sock is a socket: not content, not compared",
            "worker: bind mount cache does not exist: Compose will create an empty folder there",
        ],
    }


def test_up_gets_an_adopted_service_without_labels() -> None:
    wanted = _hashed(desired(), worker=DECLARED)
    plain = container("worker", 1, None, config_hash=DECLARED)
    observed = ObservedState("shop", (*IN_SYNC[:2], plain), IMAGES)

    deployed = as_deployed(wanted, observed, plan(wanted, observed))

    assert deployed == replace(wanted, unlabelled=frozenset({"worker"}))
    assert _override(deployed) == {
        "services": {
            "web": {"labels": {FINGERPRINT_LABEL: _label(WEB_PRINT), ENVIRONMENT_LABEL: "staging"}}
        }
    }

    # Once adopted, the store remembers what it runs: in sync, and still without labels.
    adopted = observed.remembering({"worker1": WORKER_PRINT})
    the_plan = plan(wanted, adopted)
    assert the_plan == Plan("staging", "shop", ())
    assert as_deployed(wanted, adopted, the_plan).unlabelled == frozenset({"worker"})


def test_up_gets_a_recreated_plain_compose_service_with_its_labels() -> None:
    wanted = _hashed(desired(), worker=DECLARED)
    observed = ObservedState(
        "shop", (*IN_SYNC[:2], container("worker", 1, None, config_hash=OTHER)), IMAGES
    )

    deployed = as_deployed(wanted, observed, plan(wanted, observed))

    assert deployed == wanted
    assert _override(deployed) == {
        "services": {
            "web": {"labels": {FINGERPRINT_LABEL: _label(WEB_PRINT), ENVIRONMENT_LABEL: "staging"}},
            "worker": {
                "labels": {FINGERPRINT_LABEL: _label(WORKER_PRINT), ENVIRONMENT_LABEL: "staging"}
            },
        }
    }


def test_up_gets_a_signalled_service_with_the_fingerprint_on_its_label() -> None:
    wanted, observed = _mixed()
    old_proxy = {"image": "i-p", "command": "c-p", "file:conf/nginx.conf": OLD}

    deployed = as_deployed(wanted, observed, plan(wanted, observed))

    assert deployed.services == {
        **wanted.services,
        "proxy": replace(wanted.services["proxy"], fingerprint=old_proxy),
    }
    assert deployed.unlabelled == frozenset()
    assert _override(deployed) == {
        "services": {
            "proxy": {
                "image": PROXY,
                "labels": {FINGERPRINT_LABEL: _label(old_proxy), ENVIRONMENT_LABEL: "staging"},
            },
            "web": {
                "labels": {
                    FINGERPRINT_LABEL: _label(dict(wanted.services["web"].fingerprint)),
                    ENVIRONMENT_LABEL: "staging",
                }
            },
            "worker": {
                "labels": {
                    FINGERPRINT_LABEL: _label(dict(wanted.services["worker"].fingerprint)),
                    ENVIRONMENT_LABEL: "staging",
                }
            },
        }
    }

    # Signalled, the store remembers the new files: in sync, and `up` keeps the label as made.
    signalled = observed.remembering({"proxy1": PROXY_PRINT})
    assert [(c.service, c.action) for c in plan(wanted, signalled).changes] == [
        ("web", "recreate"),
        ("worker", "recreate"),
    ]
    assert as_deployed(wanted, signalled, plan(wanted, signalled)).services["proxy"] == (
        replace(wanted.services["proxy"], fingerprint=old_proxy)
    )


def test_the_store_remembers_the_newest_fingerprint_of_each_container() -> None:
    store = FakeStore()
    first = {"image": "i-1", "file:conf/app.conf": OLD}
    second = {"image": "i-1", "file:conf/app.conf": NEW}

    remember(store, {"web1": first, "web2": first, "worker1": WORKER_PRINT}, 100.0)
    remember(store, {"web1": second, "web2": second}, 200.0)
    store.add("container", "damaged-1", {"container": 7, "fingerprint": {}, "time": 300.0})
    store.add("container", "damaged-2", {"container": "web1", "fingerprint": "x", "time": 50.0})

    assert remembered(store) == {"web1": second, "web2": second, "worker1": WORKER_PRINT}

    # web2 and worker1 are gone: their records go, and web1's older one (and the damaged).
    assert forget(store, {"web1", "web3"}) == 6
    assert store.records("container") == [
        {"container": "web1", "fingerprint": second, "time": 200.0}
    ]
    assert remembered(store) == {"web1": second}
    assert forget(store, {"web1"}) == 0


def test_observed_containers_take_the_fingerprints_remembered() -> None:
    observed = ObservedState(
        "shop",
        (container("web", 1, WEB_PRINT), container("worker", 1, None, config_hash=DECLARED)),
        IMAGES,
    )

    assert observed.remembering({"worker1": WORKER_PRINT, "gone1": {"image": "x"}}) == replace(
        observed,
        containers=(
            container("web", 1, WEB_PRINT),
            replace(container("worker", 1, None, config_hash=DECLARED), fingerprint=WORKER_PRINT),
        ),
    )


def test_an_adopted_service_still_gets_what_else_it_needs() -> None:
    # Compose's hash leaves out replicas: a service adopted as declared may still be short of
    # containers, stopped, or have one never started.
    wanted = _hashed(
        desired(web=replace(desired().services["web"], replicas=3)), web=DECLARED, worker=DECLARED
    )
    observed = ObservedState(
        "shop",
        (
            container("web", 1, None, config_hash=DECLARED),
            container("web", 2, None, config_hash=DECLARED, state="created", status="Created"),
            container(
                "worker",
                1,
                None,
                config_hash=DECLARED,
                state="exited",
                status="Exited (1) 1 hour ago",
            ),
        ),
        IMAGES,
    )

    the_plan = plan(wanted, observed)

    adopted = "made without deployer, runs as declared (Compose's config hash 0123456789ab)"
    assert plan_text(the_plan) == (
        "staging (project shop): 4 changes\n"
        "SERVICE  ACTION   CAUSE\n"
        f"web      adopt    {adopted}\n"
        "web      replace  shop-web-2 created, never started (a deploy cut short or failed)\n"
        "                  replicas 2 -> 3\n"
        f"worker   adopt    {adopted}\n"
        "worker   start    no running container: shop-worker-1 exited (1) 1 hour ago"
    )
    assert the_plan.services_to_up == ["web", "worker"]
    deployed = as_deployed(wanted, observed, the_plan)
    assert deployed.unlabelled == frozenset({"worker"})  # web is made again, with its labels


def test_a_damaged_newest_record_does_not_hide_the_one_before() -> None:
    store = FakeStore()
    remember(store, {"web1": WEB_PRINT}, 100.0)
    store.add("container", "damaged", {"container": "web1", "fingerprint": None, "time": 200.0})
    store.add("container", "odd-time", {"container": "web1", "fingerprint": {}, "time": "soon"})

    assert remembered(store) == {"web1": WEB_PRINT}
    assert forget(store, {"web1"}) == 2
    assert remembered(store) == {"web1": WEB_PRINT}


def test_containers_made_before_files_were_compared_are_not_restarted_for_them() -> None:
    files = {"file:conf/app.conf": NEW}
    wanted = desired(web=replace(desired().services["web"], fingerprint={**WEB_PRINT, **files}))
    observed = ObservedState("shop", IN_SYNC, IMAGES)

    the_plan = plan(wanted, observed)

    assert plan_text(the_plan) == (
        "staging (project shop): 1 change\n"
        "SERVICE  ACTION  CAUSE\n"
        "web      adopt   made before deployer compared the files services read: what they read "
        "is taken as it is"
    )
    deployed = as_deployed(wanted, observed, the_plan)
    assert deployed.services["web"].fingerprint == WEB_PRINT  # `up` gets the label it has
    remembered_now = observed.remembering(
        {c.id: {**WEB_PRINT, **files} for c in IN_SYNC if c.service == "web"}
    )
    assert plan(wanted, remembered_now).in_sync
    # A file added with a new mount is no upgrade: `volumes` changes too.
    mounted = {**WEB_PRINT, **files, "volumes": "v2"}
    assert [
        c.action
        for c in plan(
            desired(web=replace(desired().services["web"], fingerprint=mounted)), observed
        ).changes
    ] == ["recreate"]
