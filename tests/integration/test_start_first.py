"""Start-first updates behind a real reverse proxy (Caddy, built in the session): a client loop
through the proxy during a deploy of a new image sees no failed request; the same update
stop-first fails some; a new image that never becomes healthy costs nothing; a deploy killed
mid-update leaves the service answering and the next one finishes it; several hosts, batch by
batch."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import REGISTRY, Fleet, Workspace, ok, remove_project, untag
from tests.integration.test_faults import compose_running, ended, start, wait_for
from tests.integration.test_rollout import set_deploy, set_web_tag
from tests.integration.traffic import ROLLING_COMPOSE, Traffic, caddyfile

pytestmark = pytest.mark.integration


# How long Caddy retries a request whose connection fails, during start-first updates. With 1 s,
# about 1 run in 9 saw one request fail, `dial tcp ...:8080: i/o timeout` after 1.1 s of retries
# (on one engine as on the bed's): an address Caddy had from the DNS was silent for over a second
# as old containers went, on this loaded 2-core machine. docs/zero-downtime.md recommends 5 s.
START_FIRST_RETRY = "3s"


def rolling(space: Workspace, registry: str, proxy_image: str, publish: str) -> None:
    """Environment `test`: Caddy in front of web (start-first, 2 replicas) at 1.0.0."""
    space.write("app/compose.yml", ROLLING_COMPOSE)
    space.write("app/Caddyfile", caddyfile(START_FIRST_RETRY))
    space.write(
        "app/.env",
        f"REGISTRY={registry}\nWEB_TAG=1.0.0\nPROXY_IMAGE={proxy_image}\nPROXY_PUBLISH={publish}\n",
    )
    text = (
        f"project: {space.project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        "deploy: {wait_timeout: 30}\n"
    )
    space.write("test.yml", text)


def proxy_url(container: object, address: str) -> str:
    container.reload()  # type: ignore[attr-defined]
    ports = container.attrs["NetworkSettings"]["Ports"]["80/tcp"]  # type: ignore[attr-defined]
    return f"http://{address}:{ports[0]['HostPort']}/version"


@pytest.fixture
def behind_proxy(workspace: Workspace, proxy_image: str) -> Iterator[tuple[Workspace, str]]:
    """`test` deployed at 1.0.0 on the engine, with the URL of web's /version through Caddy.
    The proxy's image is untagged afterwards, as the workspace's are."""
    rolling(workspace, REGISTRY, proxy_image, "127.0.0.1::80")
    try:
        ok(workspace.deploy("test", "--yes"))
        yield workspace, proxy_url(workspace.containers("proxy")[0], "127.0.0.1")
    finally:
        remove_project(workspace.engine, workspace.project)
        untag(workspace.engine, proxy_image)


def proxy_errors(proxies: list[object]) -> list[list[str]]:
    """Each proxy's error lines (Caddy's log): why a request failed, for a failed assertion."""
    return [
        [line for line in p.logs().decode().splitlines() if '"error"' in line]  # type: ignore[attr-defined]
        for p in proxies
    ]


def web_containers(space: Workspace) -> list[tuple[str, str, str]]:
    """web's containers: name, state, image tag."""
    return [
        (
            c.name.removeprefix(f"{space.project}-"),
            c.status,
            c.attrs["Config"]["Image"].rsplit(":")[-1],
        )
        for c in space.containers("web")
    ]


def set_spec(space: Workspace, services: str, wait_timeout: int = 30) -> None:
    spec = space.environments / "test.yml"
    lines = [
        line
        for line in spec.read_text().splitlines()
        if not line.startswith(("deploy:", "services:"))
    ]
    spec.write_text(
        "\n".join(
            [*lines, f"deploy: {{wait_timeout: {wait_timeout}}}", f"services: {services}", ""]
        )
    )


def test_start_first_drops_no_request_and_stop_first_drops_some(
    behind_proxy: tuple[Workspace, str],
) -> None:
    space, url = behind_proxy
    image = f"{REGISTRY}/testapp"
    set_web_tag(space, "1.1.0")  # type: ignore[arg-type]
    diff = space.deploy("diff", "test")
    assert diff.returncode == 2
    assert diff.stdout == (
        f"test (project {space.project}): 2 changes\n"
        "SERVICE  ACTION    ORDER        CAUSE\n"
        f"web      pull                   image {image}:1.1.0 not present locally\n"
        f"web      recreate  start-first  image {image}:1.0.0 -> 1.1.0\n"
    )
    with Traffic(url) as start_first:
        deployed = ok(space.deploy("test", "--yes"))
    print(f"start-first: {start_first.summary()}")
    assert start_first.failures == [], proxy_errors(space.containers("proxy"))
    assert set(start_first.answers) == {"1.0.0", "1.1.0"}
    # New containers beside the old (numbers 3, 4), the old ones stopped and removed.
    assert web_containers(space) == [("web-3", "running", "1.1.0"), ("web-4", "running", "1.1.0")]
    assert "web: starting new containers beside " in deployed.stderr

    # The same update stop-first: Compose stops the old containers before the new ones start.
    # Caddy retries for 1 s here, so that each second without a container costs a request (with
    # 3 s, requests would mostly wait out the outage of about 3 s).
    space.write("app/Caddyfile", caddyfile("1s"))
    ok(space.deploy("test", "--yes"))  # the proxy, whose Caddyfile changed, is recreated
    url = proxy_url(space.containers("proxy")[0], "127.0.0.1")
    set_spec(space, "{web: {order: stop-first}}")
    set_web_tag(space, "2.0.0")  # type: ignore[arg-type]
    changes = json.loads(space.deploy("diff", "test", "--json").stdout)["changes"]
    assert [(c["action"], c.get("order"), c.get("order_reason")) for c in changes] == [
        ("pull", None, None),
        ("recreate", "stop-first", "order: stop-first"),
    ]
    with Traffic(url) as stop_first:
        ok(space.deploy("test", "--yes"))
    print(f"stop-first: {stop_first.summary()}")
    assert stop_first.failures, stop_first.summary()
    assert stop_first.answers["2.0.0"] > 0


def test_a_new_image_never_healthy_costs_no_request_and_the_old_containers_serve_on(
    behind_proxy: tuple[Workspace, str],
) -> None:
    space, url = behind_proxy
    old = {c.name: c.id for c in space.containers("web")}
    set_spec(space, f"{{web: {{image: {REGISTRY}/testapp-unhealthy:1.0.0}}}}", wait_timeout=8)
    with Traffic(url) as traffic:
        failed = space.deploy("test", "--yes")
    print(f"never healthy: {traffic.summary()}")
    assert failed.returncode == 1
    assert traffic.failures == [], proxy_errors(space.containers("proxy"))
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith("error: service web did not become healthy within 8s (last state: ")
    assert errors[0].endswith(
        "; its new containers were removed, the old ones never stopped; rolled back: web"
    )
    assert {c.name: c.id for c in space.containers("web")} == old
    assert web_containers(space) == [("web-1", "running", "1.0.0"), ("web-2", "running", "1.0.0")]
    newest = ok(space.deploy("history", "test", "--json")).json()[0]  # type: ignore[index]
    assert newest["result"] == "rolled back"
    audit = ok(space.deploy("audit", "test", "--json")).json()[-1]  # type: ignore[index]
    failure = errors[0].removeprefix("error: ").removesuffix("; rolled back: web")
    assert (audit["result"], audit["error"]) == ("rolled back", failure)
    with Traffic(url) as after:
        time.sleep(1)
    assert set(after.answers) == {"1.0.0"} and after.failures == [], proxy_errors(
        space.containers("proxy")
    )


@pytest.mark.parametrize(
    "signal_number", [signal.SIGKILL, signal.SIGTERM], ids=["kill -9", "SIGTERM"]
)
def test_a_deploy_killed_mid_update_leaves_the_service_answering_and_the_next_one_finishes_it(
    behind_proxy: tuple[Workspace, str], signal_number: int
) -> None:
    space, url = behind_proxy
    set_web_tag(space, "1.1.0")  # type: ignore[arg-type]
    with Traffic(url) as traffic:
        deploying = start(space, "test", "--yes")
        wait_for("new web containers beside the old", lambda: len(space.containers("web")) == 4)
        deploying.send_signal(signal_number)
        code, stderr = ended(deploying)
        wait_for("Compose ends", lambda: not compose_running(space, "up"))
        time.sleep(3)  # the old and new containers serve side by side meanwhile
        left = web_containers(space)
        new = sorted(c.id for c in space.containers("web") if c.name.endswith(("-3", "-4")))
        if signal_number == signal.SIGKILL:  # its lock is left, stale once Compose has ended
            ok(space.deploy("lock", "release", "test", "--force"))
        ok(space.deploy("test", "--yes"))
    print(f"{signal.Signals(signal_number).name}: {traffic.summary()}")
    if signal_number == signal.SIGTERM:
        assert code == 130
        assert stderr.splitlines()[-1] == (
            "interrupted: web: its old containers still serve, new ones were starting "
            "beside them; `deploy diff test` shows what is left to do"
        )
    assert [(name, tag) for name, _, tag in left] == [
        ("web-1", "1.0.0"),
        ("web-2", "1.0.0"),
        ("web-3", "1.1.0"),
        ("web-4", "1.1.0"),
    ]
    assert traffic.failures == [], proxy_errors(space.containers("proxy"))
    # The update is finished with the containers it had started: the old ones retired.
    assert sorted(c.id for c in space.containers("web")) == new
    assert web_containers(space) == [("web-3", "running", "1.1.0"), ("web-4", "running", "1.1.0")]
    assert ok(space.deploy("diff", "test")).stdout.endswith("in sync, nothing to change\n")


def test_several_hosts_each_updated_start_first_batch_by_batch(
    fleet: Fleet, proxy_image: str
) -> None:
    bed = fleet.bed
    try:
        several_hosts_batch_by_batch(fleet, bed.node_image(proxy_image))
    finally:
        for k in bed.numbers:
            remove_project(bed.client(k), fleet.project)
            untag(bed.client(k), bed.node_image(proxy_image))


def several_hosts_batch_by_batch(fleet: Fleet, proxy_image: str) -> None:
    bed = fleet.bed
    rolling(fleet, bed.node_image(REGISTRY), proxy_image, "80")
    fleet.append("test.yml", f"engine: {{hosts: {json.dumps(fleet.urls)}}}\n")
    set_deploy(fleet, "batch: 3")
    ok(fleet.deploy("test", "--yes"))
    set_deploy(fleet, "batch: 1")
    set_web_tag(fleet, "1.1.0")
    urls = [proxy_url(fleet.containers_on(k, "proxy")[0], bed.address(k)) for k in bed.numbers]
    loops = [Traffic(u) for u in urls]
    for loop in loops:
        loop.__enter__()
    try:
        deployed = ok(fleet.deploy("test", "--yes"))
    finally:
        for loop in loops:
            loop.__exit__(None, None, None)
    for k, loop in zip(bed.numbers, loops, strict=True):
        print(f"host {k}: {loop.summary()}")
    assert [loop.failures for loop in loops] == [[], [], []], proxy_errors(
        [fleet.containers_on(k, "proxy")[0] for k in bed.numbers]
    )
    assert [set(loop.answers) for loop in loops] == [{"1.0.0", "1.1.0"}] * 3
    batches = [line for line in deployed.stderr.splitlines() if line.startswith("batch ")]
    assert batches == [f"batch {k}: {url}" for k, url in zip(bed.numbers, fleet.urls, strict=True)]
    for k in bed.numbers:
        tags = [c.attrs["Config"]["Image"].rsplit(":")[-1] for c in fleet.containers_on(k, "web")]
        assert tags == ["1.1.0", "1.1.0"]
