"""Failures that must leave nothing behind: one-shot jobs, crash loops, shared images, data
volumes and the records' retention, on the real engine."""

from __future__ import annotations

import pytest

from tests.integration.conftest import REGISTRY, Workspace, ok

pytestmark = pytest.mark.integration


def write_environment(space: Workspace, compose: str, deploy: str = "{wait_timeout: 30}") -> None:
    space.write("app/compose.yml", compose)
    space.write("app/.env", f"REGISTRY={REGISTRY}\n")
    space.write(
        "test.yml",
        f"project: {space.project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        f"deploy: {deploy}\n",
    )


MIGRATION = """\
services:
  migrate:
    image: ${REGISTRY}/testapp:1.0.0
    command: ["MIGRATION_COMMAND"]
    restart: "no"
  web:
    image: ${REGISTRY}/testapp:1.0.0
    restart: always
    depends_on:
      migrate: {condition: service_completed_successfully}
"""


def test_a_migration_that_exits_0_is_a_success(workspace: Workspace) -> None:
    write_environment(workspace, MIGRATION.replace("MIGRATION_COMMAND", "true"))

    first = workspace.deploy("test", "--yes")

    assert first.returncode == 0, first.stderr
    [migrate] = workspace.containers("migrate")
    assert (migrate.status, migrate.attrs["State"]["ExitCode"]) == ("exited", 0)
    assert workspace.containers("web")[0].status == "running"
    diff = workspace.deploy("diff", "test")
    assert (diff.returncode, diff.stdout) == (
        0,
        f"test (project {workspace.project}): in sync, nothing to change\n",
    )
    status = workspace.deploy("status", "test", "--json")
    assert status.returncode == 0, status.stdout
    document = status.json()
    assert isinstance(document, dict)
    assert [(s["service"], s["replicas"]) for s in document["services"]] == [
        ("migrate", {"ready": 1, "desired": 1}),
        ("web", {"ready": 1, "desired": 1}),
    ]
    [release] = ok(workspace.deploy("history", "test", "--json")).json()  # type: ignore[misc]
    assert release["result"] == "success"


def test_a_one_shot_that_exits_non_zero_fails_the_deploy(workspace: Workspace) -> None:
    one_shot = MIGRATION.split("  web:")[0].replace("MIGRATION_COMMAND", "false")
    write_environment(workspace, one_shot)

    result = workspace.deploy("test", "--yes")

    assert result.returncode == 1
    assert "error: service migrate did not become healthy within 30s (last state: Exited (1)" in (
        result.stderr
    )
    assert workspace.deploy("diff", "test").returncode == 2


# Release 1.0.0 serves; 1.1.0 crash-loops: up half a second, exit 1, restarted by the engine.
CRASH_LOOP = """\
services:
  web:
    image: ${REGISTRY}/testapp:1.0.0
    command:
      - sh
      - -c
      - 'if [ "$$(cat /www/version)" = 1.1.0 ]; then sleep 0.5; exit 1; fi; exec httpd -f -p 8080 -h /www'
    restart: always
    healthcheck: {disable: true}
"""


def test_a_crash_loop_without_health_check_is_not_ready(workspace: Workspace) -> None:
    write_environment(workspace, CRASH_LOOP, "{wait_timeout: 8}")
    ok(workspace.deploy("test", "--yes"))
    workspace.append("test.yml", 'services: {web: {tag: "1.1.0"}}\n')

    result = workspace.deploy("test", "--yes")

    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "did not become healthy" in line]
    assert len(errors) == 1 and errors[0].endswith("; rolled back: web"), result.stderr
    assert errors[0].startswith("error: service web did not become healthy within 8s")
    [web] = workspace.containers("web")
    release_1 = workspace.engine.images.get(f"{REGISTRY}/testapp:1.0.0")
    assert (web.status, web.image.id) == ("running", release_1.id)
    history = ok(workspace.deploy("history", "test", "--json")).json()
    assert [r["result"] for r in history] == ["rolled back", "success"]  # type: ignore[union-attr]


def test_down_with_volumes_asks_and_names_them(workspace: Workspace) -> None:
    write_environment(
        workspace,
        "services:\n  web:\n    image: ${REGISTRY}/testapp:1.0.0\n    volumes: [data:/data]\n"
        "volumes:\n  data: {}\n",
    )
    ok(workspace.deploy("test", "--yes"))
    volume = f"{workspace.project}_data"
    [web] = workspace.containers("web")

    refused = workspace.deploy("down", "test", "--volumes")

    assert (refused.returncode, refused.stderr.splitlines()) == (
        1,
        [
            "error: test asks for confirmation and there is no terminal to ask on: pass --yes"
            f" (volumes: {volume})"
        ],
    )
    assert workspace.engine.volumes.get(volume).name == volume
    assert [c.id for c in workspace.containers()] == [web.id]

    removed = ok(workspace.deploy("down", "test", "--volumes", "--yes"))

    assert removed.stdout == f"test is down; volumes removed: {volume}\n"
    assert workspace.containers() == []
    assert workspace.engine.volumes.list(filters={"name": volume}) == []
    entry = ok(workspace.deploy("audit", "test", "--json")).json()[-1]  # type: ignore[index]
    assert (entry["command"], entry["changes"]) == ("down --volumes", [f"volume {volume} removed"])


def test_prune_keeps_the_images_other_environments_may_roll_back_to(example: Workspace) -> None:
    production = example.environments / "production.yml"
    ok(example.deploy("production", "--yes"))
    production.write_text(production.read_text().replace('tag: "1.0.0"', 'tag: "1.1.0"'))
    ok(example.deploy("production", "--yes"))  # production's release 1 ran web 1.0.0
    ok(example.deploy("staging", "--yes"))  # staging runs web 1.1.0 from the same repository
    rollback_image = example.engine.images.get(f"{REGISTRY}/shop-web:1.0.0").id

    planned = ok(example.deploy("prune", "staging", "--aggressive", "--dry-run", "--json")).json()
    ok(example.deploy("prune", "staging", "--aggressive", "--yes"))

    assert isinstance(planned, dict)
    assert rollback_image not in [c["image_id"] for c in planned["images"]]
    assert example.engine.images.get(rollback_image).id == rollback_image
    result = example.deploy("rollback", "production", "--to", "1", "--yes")
    assert result.returncode == 0, result.stderr
    assert "pulling" not in result.stdout  # the image was still there
    assert example.http("web", "/version") == "1.1.0"  # staging untouched


def test_history_keeps_keep_history_releases(app: Workspace) -> None:
    spec = app.environments / "test.yml"
    settings = "deploy: {wait_timeout: 30, keep_history: KEEP, keep_releases: 1}"
    spec.write_text(
        spec.read_text().replace("deploy: {wait_timeout: 30}", settings.replace("KEEP", "2"))
    )
    env_file = app.environments / "app/.env"
    for level in ("info", "debug", "warn"):
        text = env_file.read_text()
        env_file.write_text(text.replace("LOG_LEVEL=info", f"LOG_LEVEL={level}"))
        ok(app.deploy("test", "--yes"))
        env_file.write_text(text)

    history = ok(app.deploy("history", "test", "--json")).json()
    assert [r["number"] for r in history] == [3, 2]  # type: ignore[union-attr]

    spec.write_text(spec.read_text().replace("keep_history: 2", "keep_history: 1"))
    pruned = ok(app.deploy("prune", "test", "--yes"))

    assert pruned.stdout == "removed 1 release record(s) beyond keep_history\n"
    assert [r["number"] for r in ok(app.deploy("history", "test", "--json")).json()] == [3]  # type: ignore[union-attr]
    records = app.engine.volumes.list(
        filters={"label": ["dev.deployer.state=release", f"dev.deployer.project={app.project}"]}
    )
    assert [v.name for v in records] == [f"deployer_{app.project}_release_000003"]
    entry = ok(app.deploy("audit", "test", "--json")).json()[-1]  # type: ignore[index]
    assert (entry["command"], entry["changes"]) == (
        "prune",
        ["removed 1 release record(s) beyond keep_history"],
    )
