"""`deploy diff` and `deploy ENV` on the real engine: every drift case, idempotence, faults."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import ENGINE_HOST, REGISTRY, Workspace

pytestmark = pytest.mark.integration


def deployed(space: Workspace, name: str = "test") -> dict[str, str]:
    result = space.deploy(name, "--yes")
    assert result.returncode == 0, result.stderr
    return space.ids()


def diff(space: Workspace, name: str = "test") -> tuple[int, list[dict[str, object]]]:
    result = space.deploy("diff", name, "--json")
    assert result.returncode in (0, 2), result.stderr
    document = result.json()
    assert isinstance(document, dict)
    return result.returncode, document["changes"]


def assert_redeploy_fixes(space: Workspace, name: str = "test") -> None:
    """A deploy makes the drift go away: the next diff is empty and exits 0."""
    deployed(space, name)
    assert diff(space, name) == (0, [])


def test_example_staging_deploys_from_the_registry_and_is_then_in_sync(example: Workspace) -> None:
    first = example.deploy("staging", "--yes")

    assert first.returncode == 0, first.stderr
    assert "pulled" in first.stderr
    assert example.http("web", "/version") == "1.1.0"
    assert len(example.containers("worker")) == 2
    again = example.deploy("staging", "--yes")
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"staging (project {example.project}): in sync, nothing to change\n"


def test_second_deploy_recreates_nothing(app: Workspace) -> None:
    before = deployed(app)

    result = app.deploy("test", "--yes")

    assert result.returncode == 0
    assert "in sync" in result.stdout
    assert "docker compose up" not in result.stderr
    assert app.ids() == before


def test_diff_json_shape_and_exit_codes(app: Workspace) -> None:
    pending = app.deploy("diff", "test", "--json")
    changes = [
        {
            "service": "web",
            "action": "pull",
            "causes": [f"image {REGISTRY}/testapp:1.0.0 not present locally"],
        },
        {"service": "web", "action": "create", "causes": ["no container"]},
        {"service": "worker", "action": "create", "causes": ["no container"]},
    ]
    assert pending.returncode == 2
    assert pending.json() == {
        "environment": "test",
        "project": app.project,
        "in_sync": False,
        "changes": changes,
        "notes": [],
        "hosts": [
            {"host": ENGINE_HOST, "in_sync": False, "changes": changes, "notes": [], "error": None}
        ],
    }
    deployed(app)
    synced = app.deploy("diff", "test", "--json")
    assert synced.returncode == 0
    assert synced.json() == {
        "environment": "test",
        "project": app.project,
        "in_sync": True,
        "changes": [],
        "notes": [],
        "hosts": [
            {"host": ENGINE_HOST, "in_sync": True, "changes": [], "notes": [], "error": None}
        ],
    }


def test_changed_tag_recreates_only_that_service_and_pulls_the_missing_tag(app: Workspace) -> None:
    before = deployed(app)
    app.append("test.yml", "services:\n  web: {tag: '1.1.0'}\n")

    assert diff(app) == (
        2,
        [
            {
                "service": "web",
                "action": "pull",
                "causes": [f"image {REGISTRY}/testapp:1.1.0 not present locally"],
            },
            {
                "service": "web",
                "action": "recreate",
                "causes": [f"image {REGISTRY}/testapp:1.0.0 -> 1.1.0"],
                "order": "stop-first",
                "order_reason": "default order",
            },
        ],
    )
    deployed(app)
    after = app.ids()
    assert after[f"{app.project}-worker-1"] == before[f"{app.project}-worker-1"]
    assert after[f"{app.project}-web-1"] != before[f"{app.project}-web-1"]
    assert app.http("web", "/version") == "1.1.0"
    assert diff(app) == (0, [])


def test_changed_value_in_env_file_of_the_spec(app: Workspace) -> None:
    deployed(app)
    env = app.environments / "app/.env"
    env.write_text(env.read_text().replace("LOG_LEVEL=info", "LOG_LEVEL=debug"))

    assert diff(app) == (
        2,
        [
            {
                "service": "web",
                "action": "recreate",
                "causes": ["environment LOG_LEVEL changed"],
                "order": "stop-first",
                "order_reason": "default order",
            }
        ],
    )
    assert_redeploy_fixes(app)


def test_changed_secret_is_named_never_shown(app: Workspace) -> None:
    deployed(app)
    env = app.environments / "app/.env"
    env.write_text(env.read_text().replace("s3cret-canary-4711", "n3w-canary-0815"))

    result = app.deploy("diff", "test")

    assert result.returncode == 2
    assert "secret DB_PASSWORD changed" in result.stdout
    assert "canary" not in result.stdout + result.stderr
    assert_redeploy_fixes(app)


def test_changed_value_inside_a_services_env_file(app: Workspace) -> None:
    deployed(app)
    app.write("app/worker.env", "CONCURRENCY=8\n")

    assert diff(app) == (
        2,
        [
            {
                "service": "worker",
                "action": "recreate",
                "causes": ["environment CONCURRENCY changed"],
                "order": "stop-first",
                "order_reason": "default order",
            }
        ],
    )
    assert_redeploy_fixes(app)
    [worker] = app.containers("worker")
    assert "CONCURRENCY=8" in worker.attrs["Config"]["Env"]


def test_changed_command_and_port(app: Workspace) -> None:
    deployed(app)
    compose = app.environments / "app/compose.yml"
    text = compose.read_text()
    text = text.replace('"-h", "/www"]', '"-h", "/www", "-v"]').replace(
        "127.0.0.1::8080", "127.0.0.1::8081"
    )
    compose.write_text(text)

    assert diff(app) == (
        2,
        [
            {
                "service": "web",
                "action": "recreate",
                "causes": ["ports changed"],
                "order": "stop-first",
                "order_reason": "default order",
            },
            {
                "service": "worker",
                "action": "recreate",
                "causes": ["command changed"],
                "order": "stop-first",
                "order_reason": "default order",
            },
        ],
    )
    assert_redeploy_fixes(app)


def test_changed_replica_count_scales(app: Workspace) -> None:
    before = deployed(app)
    app.append("test.yml", "services:\n  worker: {replicas: 3}\n")

    assert diff(app) == (
        2,
        [{"service": "worker", "action": "scale", "causes": ["replicas 1 -> 3"]}],
    )
    assert_redeploy_fixes(app)
    assert len(app.containers("worker")) == 3
    assert app.ids()[f"{app.project}-worker-1"] == before[f"{app.project}-worker-1"]


def test_container_stopped_by_hand_is_started(app: Workspace) -> None:
    before = deployed(app)
    app.containers("worker")[0].stop(timeout=1)

    code, changes = diff(app)

    assert code == 2
    assert [(c["service"], c["action"]) for c in changes] == [("worker", "start")]
    cause = str(changes[0]["causes"][0])  # type: ignore[index]
    assert cause.startswith(f"no running container: {app.project}-worker-1 exited (")
    assert_redeploy_fixes(app)
    assert app.ids() == before


def test_container_removed_by_hand_is_created(app: Workspace) -> None:
    deployed(app)
    app.containers("web")[0].remove(force=True)

    assert diff(app) == (2, [{"service": "web", "action": "create", "causes": ["no container"]}])
    assert_redeploy_fixes(app)


def test_tag_moved_locally_to_another_image_is_pulled_back_from_the_registry(
    app: Workspace,
) -> None:
    # The registry holds 1.0.0: what runs must be the registry's image, not the local retag.
    deployed(app)
    before = app.ids()
    [web] = app.containers("web")
    old_id = web.image.id
    app.engine.images.pull(f"{REGISTRY}/testapp", tag="2.0.0")
    retagged = app.engine.images.get(f"{REGISTRY}/testapp:2.0.0")
    retagged.tag(f"{REGISTRY}/testapp", "1.0.0")
    repository = REGISTRY + "/testapp@"
    (local,) = [d.split("@")[1] for d in retagged.attrs["RepoDigests"] if d.startswith(repository)]
    (pushed,) = [
        d.split("@")[1] for d in web.image.attrs["RepoDigests"] if d.startswith(repository)
    ]

    code, changes = diff(app)

    cause = f"tag 1.0.0 moved: {local[:19]} -> {pushed[:19]}"
    assert (code, changes) == (2, [{"service": "web", "action": "pull", "causes": [cause]}])
    assert_redeploy_fixes(app)
    assert app.ids() == before
    assert app.engine.images.get(f"{REGISTRY}/testapp:1.0.0").id == old_id
    assert app.http("web", "/version") == "1.0.0"


def test_service_removed_from_compose_file_is_an_orphan_and_removed(app: Workspace) -> None:
    deployed(app)
    compose = app.environments / "app/compose.yml"
    compose.write_text(compose.read_text().split("  worker:")[0])

    assert diff(app) == (
        2,
        [{"service": "worker", "action": "remove", "causes": ["orphan: not in the spec"]}],
    )
    assert_redeploy_fixes(app)
    assert [c.name for c in app.containers()] == [f"{app.project}-web-1"]


def test_production_refuses_without_yes_and_without_a_terminal(app: Workspace) -> None:
    app.write("production.yml", (app.environments / "test.yml").read_text())

    result = app.deploy("production")

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "error: production asks for confirmation and there is no terminal to ask on: pass --yes"
    )
    assert app.containers() == []


def test_engine_unreachable_names_the_host(app: Workspace, tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/no-engine.sock"

    result = app.deploy("diff", "test", env={"DOCKER_HOST": host})

    assert result.returncode == 1
    assert result.stderr.startswith(f"error: Docker engine at {host} is unreachable: ")
    assert "Traceback" not in result.stderr


def test_tag_missing_from_registry_fails_before_touching_running_containers(app: Workspace) -> None:
    before = deployed(app)
    app.append("test.yml", "services:\n  web: {tag: '9.9.9'}\n")

    result = app.deploy("test", "--yes")

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"error: cannot pull {REGISTRY}/testapp:9.9.9: "
    )
    assert app.ids() == before
    assert all(c.status == "running" for c in app.containers())


def test_registry_unreachable_fails_before_touching_running_containers(app: Workspace) -> None:
    before = deployed(app)
    app.append("test.yml", "services:\n  web: {image: '127.0.0.1:5999/testapp:1.0.0'}\n")

    result = app.deploy("test", "--yes")

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        "error: cannot pull 127.0.0.1:5999/testapp:1.0.0: "
    )
    assert app.ids() == before


def test_service_that_never_becomes_healthy_is_named_with_its_logs(app: Workspace) -> None:
    app.write(
        "test.yml",
        (app.environments / "test.yml").read_text().replace("wait_timeout: 30", "wait_timeout: 8")
        + f"services:\n  web: {{image: '{REGISTRY}/testapp-unhealthy:1.0.0'}}\n",
    )

    result = app.deploy("test", "--yes")

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(
        line.startswith("error: service web did not become healthy within 8s") for line in lines
    )
    assert "error: last log lines of web:" in lines
    assert "error:   app 1.0.0 starting: httpd -f -p 8080 -h /www" in lines


def test_service_that_exits_at_once_fails_without_waiting_out_the_timeout(app: Workspace) -> None:
    app.write(
        "test.yml",
        (app.environments / "test.yml").read_text()
        + f"services:\n  worker: {{image: '{REGISTRY}/testapp-exits:1.0.0'}}\n",
    )

    result = app.deploy("test", "--yes")

    assert result.returncode == 1
    assert "error: service worker did not become healthy" in result.stderr
    assert "error:   app 1.0.0: exiting at once (MODE=exit)" in result.stderr.splitlines()


def test_compose_cli_missing_is_reported(app: Workspace) -> None:
    # A PATH with the Python interpreter but no docker CLI.
    bin_dir = app.root / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)

    result = app.deploy("render", "test", env={"PATH": str(bin_dir)})

    assert result.returncode == 1
    assert result.stderr == "error: `docker` is not installed (not found on PATH)\n"
    assert os.environ["PATH"]  # the test's own PATH is untouched
