"""An engine restarted in the middle of a deploy (`systemctl restart docker`, a reboot): a bed
engine (dh3) killed (as by a power loss) while Compose has created a container it has not
started yet, and stopped while deployer waits for health; each time the next deploy converges."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from tests.integration.bed import Bed
from tests.integration.conftest import REGISTRY, Workspace, ok, remove_project, untag
from tests.integration.test_faults import ended, start, wait_for

pytestmark = pytest.mark.integration

HOST = 3  # a bed engine: the test engine other sessions use is never restarted
# Two services whose stop takes its whole grace period (their shell ignores SIGTERM), healthy once
# READY_AFTER seconds have passed since they started. web starts once worker is healthy: for those
# seconds Compose has created web's new container and not started it.
COMPOSE = """\
services:
  worker: &app
    image: ${REGISTRY}/testapp:${TAG}
    command: ["sh", "-c", "trap '' TERM; sleep ${READY_AFTER}; touch /tmp/ready; exec httpd -f -p 8080 -h /www"]
    stop_grace_period: 3s
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      start_period: 30s
  web:
    <<: *app
    depends_on:
      worker: {condition: service_healthy}
"""
SERVICES = ("web", "worker")


@pytest.fixture
def on_bed(workspace: Workspace, bed: Bed) -> Iterator[Workspace]:
    """Environment `test` on bed engine dh3, deployed at 1.0.0 and then changed to 1.1.0."""
    references = [bed.node_image(f"{REGISTRY}/testapp:{tag}") for tag in ("1.0.0", "1.1.0")]
    workspace.write("app/compose.yml", COMPOSE)
    workspace.write("app/.env", f"REGISTRY={bed.node_image(REGISTRY)}\nTAG=1.0.0\nREADY_AFTER=5\n")
    workspace.write(
        "test.yml",
        f"project: {workspace.project}\ncompose_files: [app/compose.yml]\n"
        f"env_files: [app/.env]\nengine: {{host: '{bed.unix(HOST)}'}}\n"
        "deploy: {wait_timeout: 60}\n",
    )
    try:
        ok(workspace.deploy("test", "--yes"))
        env_file = workspace.environments / "app/.env"
        env_file.write_text(env_file.read_text().replace("TAG=1.0.0", "TAG=1.1.0"))
        yield workspace
    finally:
        bed.heal()
        remove_project(bed.client(HOST), workspace.project)
        for reference in references:
            untag(bed.client(HOST), reference)


def containers(bed: Bed, space: Workspace) -> list[docker.models.containers.Container]:
    filters = {"label": f"com.docker.compose.project={space.project}"}
    found = bed.client(HOST).containers.list(all=True, filters=filters, ignore_removed=True)
    return sorted(found, key=lambda c: c.name)


def web_created(bed: Bed, space: Workspace) -> bool:
    return any(
        c.labels["com.docker.compose.service"] == "web" and c.status == "created" and is_new(c)
        for c in containers(bed, space)
    )


def deploy_cut_by_a_restart(bed: Bed, space: Workspace, moment: str) -> None:
    """`deploy test --yes`, with dh3 restarted at `moment`; the deploy fails naming the engine."""
    deploying = start(space, "test", "--yes")
    if moment == "created":
        # web's container of the new release is created, not started: a power loss now.
        wait_for(
            "web's new container, created",
            lambda: deploying.poll() is not None or web_created(bed, space),
            seconds=60,
        )
        assert deploying.poll() is None, ended(deploying)
        bed.kill_engine(HOST)
    else:
        # `up` has returned: only the new release's containers, up and starting.
        wait_for("up done", lambda: new_release_up(bed, space), seconds=60)
        bed.stop_engine(HOST)
    code, rest = ended(deploying)  # the engine is back only after (a reboot takes a while)
    bed.start_engine(HOST)
    assert code == 1, rest
    assert f"Docker engine at {bed.unix(HOST)} is unreachable" in rest.splitlines()[-1], rest


def new_release_up(bed: Bed, space: Workspace) -> bool:
    found = containers(bed, space)
    return len(found) == len(SERVICES) and all(c.status == "running" and is_new(c) for c in found)


def is_new(container: docker.models.containers.Container) -> bool:
    return str(container.image.labels["org.opencontainers.image.ref.name"]).endswith(":1.1.0")


def converges(bed: Bed, space: Workspace) -> None:
    """The next deploy changes what the restart left, and then nothing is left to change."""
    # The deploy could not release its lock on the engine it lost: the lock is left, stale.
    locked = space.deploy("test", "--yes")
    assert locked.returncode == 1
    assert locked.stderr.startswith("error: the lock of test is stale: process "), locked.stderr
    ok(space.deploy("lock", "release", "test", "--force"))
    ok(space.deploy("test", "--yes"))
    assert space.deploy("diff", "test").returncode == 0
    found = containers(bed, space)
    assert [(c.name, c.status, is_new(c)) for c in found] == [
        (f"{space.project}-{service}-1", "running", True) for service in SERVICES
    ]
    assert all(c.attrs["State"]["Health"]["Status"] == "healthy" for c in found)


def test_containers_an_engine_restart_left_created_are_replaced_and_the_deploy_converges(
    on_bed: Workspace, bed: Bed
) -> None:
    space = on_bed
    deploy_cut_by_a_restart(bed, space, "created")

    left = {c.labels["com.docker.compose.service"]: c for c in containers(bed, space)}
    created = sorted(s for s, c in left.items() if c.status == "created")
    assert created, [(c.name, c.status) for c in left.values()]
    diff = space.deploy("diff", "test")
    assert diff.returncode == 2, diff.stderr
    rows = [line.split(None, 2) for line in diff.stdout.splitlines()]
    for service in created:
        cause = f"{left[service].name} created, never started (a deploy cut short or failed)"
        assert [service, "replace", cause] in rows, diff.stdout
    converges(bed, space)
    # Replaced: new containers, not the leftovers started.
    assert not {left[s].id for s in created} & {c.id for c in containers(bed, space)}


def test_an_engine_restarted_while_the_deploy_waits_for_health_the_next_deploy_converges(
    on_bed: Workspace, bed: Bed
) -> None:
    space = on_bed
    deploy_cut_by_a_restart(bed, space, "waiting")

    # The engine stopped them with itself: exited, started by the next deploy.
    assert {c.status for c in containers(bed, space)} == {"exited"}
    converges(bed, space)
