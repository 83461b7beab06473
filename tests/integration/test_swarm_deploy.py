"""`deploy ENV`, `deploy rollback` and `deploy restart` on the bed's real swarm (dh4, dh5 managers,
dh6 worker): only the changed services change, nothing at all when nothing changed, and the bad
inputs and faults of a swarm deploy caused for real (a missing tag, an image that never becomes
healthy, a drained node, two deploys at once from two managers)."""

from __future__ import annotations

import re
import shutil
from typing import Any

import pytest

from tests.integration.conftest import REGISTRY, ROOT, SWARM_COMPOSE, SwarmSpace, ok
from tests.integration.test_faults import ended, start, wait_for
from tests.integration.test_swarm_render import GREETING

pytestmark = pytest.mark.integration

DRAINED = "note: node dh6 (drain) is unavailable: Swarm places no task there"
DOWN = "note: node dh6 (down) is unavailable: Swarm places no task there"

# A third service, and a value with quotes, `$`, `#`, spaces, unicode and backslashes from .env.
THREE_SERVICES = (
    SWARM_COMPOSE.replace(
        "      LOG_LEVEL: ${LOG_LEVEL}\n",
        "      LOG_LEVEL: ${LOG_LEVEL}\n      GREETING: ${GREETING}\n",
    )
    + "  queue:\n    image: ${REGISTRY}/testapp:1.0.0\n"
)


def write_env(space: SwarmSpace, web_tag: str = "1.0.0", log_level: str = "info") -> None:
    space.write(
        "app/.env",
        f"REGISTRY={space.swarm.node_image(REGISTRY)}\nWEB_TAG={web_tag}\nLOG_LEVEL={log_level}\n"
        f"GREETING='{GREETING}'\n",
    )


def image_of(service: dict[str, Any]) -> str:
    """The image a service's spec runs: `repo:tag@sha256:...` as stack deploy pins it."""
    return str(service["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])


def pinned(image: str) -> str:
    """`repo@sha256:...` of an image reference pinned to a digest (its tag, if any, left out)."""
    name, _, digest = image.partition("@")
    assert digest.startswith("sha256:"), image
    repository, _, last = name.rpartition("/")
    return f"{repository}/{last.partition(':')[0]}@{digest}"


def releases(space: SwarmSpace) -> list[dict[str, Any]]:
    found = ok(space.deploy("history", "test", "--json")).json()
    assert isinstance(found, list)
    return found


def running_images(space: SwarmSpace, service: str) -> list[str]:
    return [t["Spec"]["ContainerSpec"]["Image"] for t in space.running_tasks(service)]


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_deploy_changes_only_what_changed_and_nothing_at_all_when_in_sync(
    stack: SwarmSpace,
) -> None:
    stack.write("app/compose.yml", THREE_SERVICES)
    write_env(stack)
    created = stack.deploy("test", "--yes")
    assert created.returncode == 0, created.stderr
    tasks = stack.task_ids()
    assert {name: len(ids) for name, ids in tasks.items()} == {"web": 2, "worker": 1, "queue": 1}
    # Byte for byte from the .env file, which `docker stack deploy` alone would ignore.
    assert [env["GREETING"] for env in stack.task_environments("web")] == [GREETING] * 2

    versions = stack.versions()
    in_sync = stack.deploy("test", "--yes")
    assert (in_sync.returncode, in_sync.stdout, in_sync.stderr) == (
        0,
        f"test (project {stack.project}): in sync, nothing to change\n",
        "",
    )
    assert (stack.versions(), stack.task_ids()) == (versions, tasks)

    node_registry = stack.swarm.node_image(REGISTRY)
    write_env(stack, web_tag="0.0.0-missing")
    missing = stack.deploy("test", "--yes")
    assert missing.returncode == 1
    assert missing.stderr == (
        f"error: not in the registry: {node_registry}/testapp:0.0.0-missing (push it there "
        "first); nothing changed\n"
    )
    assert (stack.versions(), stack.task_ids()) == (versions, tasks)

    write_env(stack, web_tag="1.1.0")
    stack.write("app/compose.yml", THREE_SERVICES.split("  queue:")[0])
    changed = stack.deploy("test", "--yes")
    assert changed.returncode == 0, changed.stderr
    now = stack.versions()
    assert sorted(now) == ["web", "worker"]
    assert (now["worker"], stack.task_ids()["worker"]) == (versions["worker"], tasks["worker"])
    assert now["web"] != versions["web"]
    web = image_of(stack.services()["web"])
    assert web.startswith(f"{node_registry}/testapp:1.1.0@sha256:"), web
    assert running_images(stack, "web") == [web, web]

    newest, first = releases(stack)
    assert (first["number"], first["result"], sorted(first["services"])) == (
        1,
        "success",
        ["queue", "web", "worker"],
    )
    assert (newest["number"], newest["result"], sorted(newest["services"])) == (
        2,
        "success",
        ["web", "worker"],
    )
    assert (newest["services"]["web"]["image"], newest["services"]["web"]["pinned"]) == (
        f"{node_registry}/testapp:1.1.0",
        pinned(web),
    )
    assert newest["services"]["worker"] == first["services"]["worker"]
    assert newest["services"]["web"]["config"]["environment"]["LOG_LEVEL"] == "info"


def test_rollback_puts_back_the_images_of_a_release_by_digest_and_restart_replaces_every_task(
    stack: SwarmSpace,
) -> None:
    stack.write("app/compose.yml", THREE_SERVICES.split("  queue:")[0])
    write_env(stack)
    ok(stack.deploy("test", "--yes"))
    first_images = {name: image_of(s) for name, s in stack.services().items()}
    write_env(stack, web_tag="1.1.0", log_level="debug")
    ok(stack.deploy("test", "--yes"))
    worker = (stack.versions()["worker"], stack.task_ids()["worker"])

    ok(stack.deploy("rollback", "test", "--to", "1", "--yes"))

    # The worker has run release 1's image (its tag unmoved) and configuration all along.
    assert (stack.versions()["worker"], stack.task_ids()["worker"]) == worker
    services = stack.services()
    assert {name: pinned(image_of(s)) for name, s in services.items()} == {
        name: pinned(image) for name, image in first_images.items()
    }
    assert [pinned(image) for image in running_images(stack, "web")] == [
        pinned(first_images["web"])
    ] * 2
    # The configuration release 1 recorded, values with `$` and the like byte for byte.
    assert [(env["LOG_LEVEL"], env["GREETING"]) for env in stack.task_environments("web")] == [
        ("info", GREETING)
    ] * 2
    newest, _, first = releases(stack)
    assert (newest["number"], newest["command"], newest["result"]) == (
        3,
        "rollback to release 1",
        "success",
    )
    assert {name: s["pinned"] for name, s in newest["services"].items()} == {
        name: s["pinned"] for name, s in first["services"].items()
    }

    before = stack.task_ids()
    ok(stack.deploy("restart", "test", "--yes"))
    after = stack.task_ids()
    assert {name: len(ids) for name, ids in after.items()} == {"web": 2, "worker": 1}
    assert {name: set(ids) & set(before[name]) for name, ids in after.items()} == {
        "web": set(),
        "worker": set(),
    }


def test_an_image_that_never_becomes_healthy_is_rolled_back_by_swarm_and_reported(
    stack: SwarmSpace,
) -> None:
    ok(stack.deploy("test", "--yes"))
    before, versions = stack.services(), stack.versions()
    # The image's own health check fails after 1 s + 2 retries of 1 s: within the 5 s monitor.
    stack.write(
        "app/compose.yml",
        SWARM_COMPOSE.replace("testapp:${WEB_TAG}", "testapp-unhealthy:${WEB_TAG}"),
    )

    failed = stack.deploy("test", "--yes")

    assert failed.returncode == 1, failed.stderr
    reason, *tasks_and_logs = errors(failed.stderr)
    assert re.fullmatch(
        r"error: service web: update rolled back \(update rolled back due to failure or "
        r"early termination of task \w+\); rolled back: web",
        reason,
    ), failed.stderr
    split = tasks_and_logs.index("error: last log lines of web:")
    assert tasks_and_logs[0] == "error: task errors of web:", failed.stderr
    unhealthy = "error:   task: non-zero exit (137): dockerexec: unhealthy container"
    assert unhealthy in tasks_and_logs[1:split], failed.stderr
    assert "error:   app 1.0.0 starting: httpd -f -p 8080 -h /www" in tasks_and_logs[split:]
    web = image_of(stack.services()["web"])
    assert web == image_of(before["web"])
    assert running_images(stack, "web") == [web, web]
    assert stack.versions()["worker"] == versions["worker"]
    assert [(r["number"], r["result"]) for r in releases(stack)] == [
        (2, "rolled back"),
        (1, "success"),
    ]


def test_a_drained_node_is_named_and_a_placement_only_it_could_meet_fails_within_the_timeout(
    stack: SwarmSpace,
) -> None:
    stack.append("test.yml", "deploy: {wait_timeout: 20}\n")
    with stack.swarm.drained(6):
        created = stack.deploy("test", "--yes")
        assert created.returncode == 0, created.stderr
        assert DRAINED in created.stderr.splitlines(), created.stderr
        nodes = {*stack.task_nodes("web"), *stack.task_nodes("worker")}
        assert len(stack.task_nodes("web")) == 2 and nodes <= {"dh4", "dh5"}, nodes
        versions = stack.versions()

        stack.write(
            "app/compose.yml",
            SWARM_COMPOSE + "    deploy:\n      placement: {constraints: [node.hostname == dh6]}\n",
        )
        placed = stack.deploy("test", "--yes")

    assert placed.returncode == 1, placed.stderr
    assert DRAINED in placed.stderr.splitlines(), placed.stderr
    assert errors(placed.stderr)[:3] == [
        "error: service worker: not converged within 20s: updating: update in progress; "
        "0/1 tasks running; rolled back: worker",
        "error: task errors of worker:",
        "error:   no suitable node (scheduling constraints not satisfied on 2 nodes; "
        "1 node not available for new tasks)",
    ], placed.stderr
    assert stack.versions()["web"] == versions["web"]
    # Back to the spec it had, running.
    placement = stack.services()["worker"]["Spec"]["TaskTemplate"].get("Placement", {})
    assert (placement.get("Constraints"), len(stack.running_tasks("worker"))) == (None, 1)
    assert [(r["number"], r["result"]) for r in releases(stack)] == [
        (2, "rolled back"),
        (1, "success"),
    ]


def test_a_node_whose_engine_is_down_is_named_and_the_deploy_converges_on_the_others(
    stack: SwarmSpace,
) -> None:
    with stack.swarm.down(6):
        created = stack.deploy("test", "--yes")
        nodes = {*stack.task_nodes("web"), *stack.task_nodes("worker")}

    assert created.returncode == 0, created.stderr
    assert DOWN in created.stderr.splitlines(), created.stderr
    assert len(stack.running_tasks("web")) == 2 and nodes <= {"dh4", "dh5"}, nodes


# Swarm declares web's update complete 15 s after its last task runs: the first deploy holds the
# lock that long after its stack deploy.
SLOW_UPDATE = SWARM_COMPOSE.replace(
    "      replicas: 2\n", "      replicas: 2\n      update_config: {monitor: 15s}\n"
)


def test_of_two_deploys_at_once_from_two_managers_one_proceeds_the_other_names_the_holder(
    stack: SwarmSpace,
) -> None:
    stack.write("app/compose.yml", SLOW_UPDATE)
    ok(stack.deploy("test", "--yes"))
    # The same environment, through the other manager, with a change of its own.
    through_dh5 = stack.root / "through-dh5"
    shutil.copytree(stack.environments, through_dh5)
    spec = through_dh5 / "test.yml"
    manager4, manager5 = stack.swarm.manager_urls
    spec.write_text(spec.read_text().replace(manager4, manager5))
    env_file = through_dh5 / "app/.env"
    env_file.write_text(env_file.read_text().replace("LOG_LEVEL=info", "LOG_LEVEL=debug"))
    write_env(stack, web_tag="1.1.0")
    # Releases live in the swarm: any manager shows them.
    seen = stack.deploy(
        "history", "test", "--json", env={"DEPLOYER_ENVIRONMENTS": str(through_dh5)}
    )
    assert [r["number"] for r in ok(seen).json()] == [1]  # type: ignore[union-attr]

    first = start(stack, "test", "--yes")
    wait_for(
        "the first deploy runs its stack deploy",
        lambda: image_of(stack.services()["web"]).startswith(
            f"{stack.swarm.node_image(REGISTRY)}/testapp:1.1.0@"
        ),
    )
    second = stack.deploy("test", "--yes", env={"DEPLOYER_ENVIRONMENTS": str(through_dh5)})
    code, rest = ended(first)

    assert second.returncode == 1
    assert second.stderr.splitlines()[-1].startswith("error: test is locked: held by "), (
        second.stderr
    )
    assert code == 0, rest
    assert [env["LOG_LEVEL"] for env in stack.task_environments("web")] == ["info"] * 2
    assert [r["result"] for r in releases(stack)] == ["success", "success"]


def test_an_image_built_and_pushed_through_the_manager_is_what_the_swarm_then_runs(
    stack: SwarmSpace,
) -> None:
    # The test image's own recipe (FROM scratch: nothing to pull while building).
    for name in ("Dockerfile", "start.sh"):
        shutil.copy(ROOT / "images/app" / name, stack.environments / "app" / name)
    shutil.copy("/bin/busybox", stack.environments / "app/busybox")
    repository = f"built-{stack.project}"
    stack.write(
        "app/compose.yml",
        "services:\n  web:\n"
        f"    image: ${{REGISTRY}}/{repository}:1.0.0\n"
        "    build: {context: ., args: {VERSION: built}}\n",
    )
    write_env(stack)
    image = f"{stack.swarm.node_image(REGISTRY)}/{repository}:1.0.0"

    missing = stack.deploy("test", "--yes")
    assert (missing.returncode, errors(missing.stderr)) == (
        1,
        [f"error: not in the registry: {image} (push it there first); nothing changed"],
    )
    ok(stack.deploy("build", "test", "--push", "--yes"))
    ok(stack.deploy("test", "--yes"))

    assert image_of(stack.services()["web"]).startswith(f"{image}@sha256:")
    assert list(stack.task_ids()) == ["web"]


# api's own rollback (Swarm's, on failure) watches its task for a minute before it completes.
API_AND_WEB = """\
services:
  api:
    image: ${REGISTRY}/${API_IMAGE}
    deploy:
      rollback_config: {monitor: 60s}
  web:
    image: ${REGISTRY}/testapp:${WEB_TAG}
"""


def test_the_undo_goes_past_a_service_swarm_is_rolling_back_itself(stack: SwarmSpace) -> None:
    """Issue 17, 4: api never becomes healthy and Swarm starts rolling it back by itself (its
    previous spec is gone then: `docker service rollback` would refuse it); the deploy gives up
    while Swarm is at it, and web, updated by the same deploy, is still put back."""
    registry = stack.swarm.node_image(REGISTRY)
    stack.write("app/compose.yml", API_AND_WEB)
    stack.write("app/.env", f"REGISTRY={registry}\nAPI_IMAGE=testapp:1.0.0\nWEB_TAG=1.0.0\n")
    stack.append("test.yml", "deploy: {wait_timeout: 30}\n")
    ok(stack.deploy("test", "--yes"))
    before = stack.services()
    stack.write(
        "app/.env", f"REGISTRY={registry}\nAPI_IMAGE=testapp-unhealthy:1.0.0\nWEB_TAG=1.1.0\n"
    )

    failed = stack.deploy("test", "--yes")

    assert failed.returncode == 1, failed.stderr
    reason = errors(failed.stderr)[0]
    assert reason.startswith("error: service api: not converged within 30s: rollback started"), (
        failed.stderr
    )
    assert reason.endswith("; rolled back: api, web"), failed.stderr
    after = stack.services()
    assert {name: image_of(after[name]) for name in after} == {
        name: image_of(before[name]) for name in before
    }
    assert [r["result"] for r in releases(stack)] == ["rolled back", "success"]
