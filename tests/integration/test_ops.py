"""Runbook commands on the real engine: status, logs, restart, down, registry login, prune."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import (
    AUTH_PASSWORD,
    AUTH_REGISTRY,
    AUTH_USER,
    REGISTRY,
    Workspace,
    ok,
    operator_home,
)

pytestmark = pytest.mark.integration


def test_status_of_a_healthy_environment(app: Workspace) -> None:
    ok(app.deploy("test", "--yes"))

    result = ok(app.deploy("status", "test", "--json"))

    document = result.json()
    assert isinstance(document, dict)
    assert (document["healthy"], document["in_sync"], document["orphans"]) == (True, True, [])
    web = document["services"][0]
    assert (web["service"], web["desired_image"], web["replicas"]) == (
        "web",
        f"{REGISTRY}/testapp:1.0.0",
        {"ready": 1, "desired": 1},
    )
    [container] = web["containers"]
    assert (container["name"], container["state"], container["health"], container["release"]) == (
        f"{app.project}-web-1",
        "running",
        "healthy",
        1,
    )
    assert container["pinned"].startswith(f"{REGISTRY}/testapp@sha256:")
    assert container["image_id"] == app.containers("web")[0].image.id
    text = ok(app.deploy("status", "test")).stdout
    assert text.splitlines()[0] == f"test (project {app.project}): healthy, in sync"


def test_status_of_a_broken_environment(app: Workspace) -> None:
    ok(app.deploy("test", "--yes"))
    app.containers("worker")[0].stop(timeout=1)

    result = app.deploy("status", "test", "--json")

    assert result.returncode == 1
    document = result.json()
    assert isinstance(document, dict)
    assert (document["healthy"], document["in_sync"]) == (False, False)
    worker = document["services"][1]
    assert (worker["service"], worker["replicas"], worker["healthy"]) == (
        "worker",
        {"ready": 0, "desired": 1},
        False,
    )
    assert worker["containers"][0]["state"] == "exited"
    assert (
        app.deploy("status", "test").stdout.splitlines()[0]
        == f"test (project {app.project}): NOT healthy, NOT in sync (see `deploy diff`)"
    )


def test_logs_tail_service_selection_and_masking(app: Workspace) -> None:
    compose = app.environments / "app/compose.yml"
    compose.write_text(
        compose.read_text().replace(
            'command: ["httpd", "-f", "-p", "8080", "-h", "/www"]',
            'command: ["sh", "-c", "echo password is $$DB_PASSWORD; exec httpd -f -p 8080 -h /www"]',
        )
    )
    app.append("test.yml", "services:\n  worker: {environment: {DB_PASSWORD: '${DB_PASSWORD}'}}\n")
    ok(app.deploy("test", "--yes"))

    worker = ok(app.deploy("logs", "test", "worker"))
    web = ok(app.deploy("logs", "test", "web", "--tail", "1", "--since", "10m"))

    assert worker.stdout.splitlines() == [
        "worker-1  | app 1.0.0 starting: sh -c echo password is $DB_PASSWORD; exec httpd -f -p 8080 -h /www",
        "worker-1  | password is ***",
    ]
    assert web.stdout == "web-1  | app 1.0.0 starting: httpd -f -p 8080 -h /www\n"
    unknown = app.deploy("logs", "test", "nope")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: ")


def test_logs_follow_stops_on_ctrl_c(app: Workspace) -> None:
    ok(app.deploy("test", "--yes"))
    following = subprocess.Popen(
        [sys.executable, "-m", "deployer", "logs", "test", "web", "--follow"],
        cwd=app.root,
        env={**os.environ, **app.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert following.stdout is not None
    assert following.stdout.readline() == "web-1  | app 1.0.0 starting: httpd -f -p 8080 -h /www\n"
    following.send_signal(signal.SIGINT)
    assert following.wait(timeout=30) == 130
    following.stdout.close()
    following.stderr and following.stderr.close()


def test_restart_keeps_containers_and_waits_until_healthy(app: Workspace) -> None:
    ok(app.deploy("test", "--yes"))
    [web] = app.containers("web")
    started = web.attrs["State"]["StartedAt"]

    result = ok(app.deploy("restart", "test", "web", "--yes"))

    [again] = app.containers("web")
    assert again.id == web.id
    assert again.attrs["State"]["StartedAt"] != started
    assert again.attrs["State"]["Health"]["Status"] == "healthy"
    assert result.stdout.startswith(f"restarted {app.project}-web-1: Up ")
    audit = ok(app.deploy("audit", "test", "--json")).json()
    assert [(e["command"], e["result"], e["changes"]) for e in audit][-1] == (
        "restart web",
        "success",
        ["web"],
    )  # type: ignore[union-attr]


def test_down_removes_containers_and_networks_keeps_history(app: Workspace) -> None:
    ok(app.deploy("test", "--yes"))

    result = ok(app.deploy("down", "test", "--yes"))

    assert result.stdout == "test is down\n"
    assert app.containers() == []
    assert (
        app.engine.networks.list(filters={"label": f"com.docker.compose.project={app.project}"})
        == []
    )
    assert [r["number"] for r in ok(app.deploy("history", "test", "--json")).json()] == [1]  # type: ignore[union-attr]
    assert ok(app.deploy("audit", "test", "--json")).json()[-1]["command"] == "down"  # type: ignore[index]
    assert app.deploy("diff", "test").returncode == 2


def test_commands_that_change_state_refuse_without_yes_or_terminal(app: Workspace) -> None:
    spec = app.environments / "test.yml"
    spec.write_text(
        spec.read_text().replace(
            "deploy: {wait_timeout: 30}", "deploy: {wait_timeout: 30, confirm: true}"
        )
    )
    ok(app.deploy("test", "--yes"))
    env_file = app.environments / "app/.env"
    env_file.write_text(env_file.read_text().replace("WORKER_TAG=1.0.0", "WORKER_TAG=1.1.0"))
    ok(app.deploy("test", "--yes"))  # release 2: going back to 1 is a change
    ids = app.ids()

    for args in (
        ["restart", "test"],
        ["down", "test"],
        ["rollback", "test", "--to", "1"],
    ):
        result = app.deploy(*args)
        assert (result.returncode, result.stderr.splitlines()[-1]) == (
            1,
            "error: test asks for confirmation and there is no terminal to ask on: pass --yes",
        ), args

    env_file.write_text(env_file.read_text().replace("LOG_LEVEL=info", "LOG_LEVEL=debug"))
    refused = app.deploy("test")
    assert refused.returncode == 1
    assert refused.stderr.endswith("there is no terminal to ask on: pass --yes\n")
    assert app.ids() == ids


def private_app(app: Workspace, image: str, password_line: str, registry: bool = True) -> None:
    app.append("test.yml", f"services:\n  web: {{image: '{image}'}}\n")
    if registry:
        app.append(
            "test.yml",
            f"registry: {{server: '{AUTH_REGISTRY}', username: {AUTH_USER}, password_env: REGISTRY_PASSWORD}}\n",
        )
    app.append("app/.env", password_line)


def test_login_with_the_right_credentials_pulls_and_saves_nothing(
    app: Workspace, private_image: str, tmp_path: Path
) -> None:
    private_app(app, private_image, f"REGISTRY_PASSWORD={AUTH_PASSWORD}\n")
    home = tmp_path / "home"

    result = app.deploy("test", "--yes", env=operator_home(home))

    assert result.returncode == 0, result.stderr
    assert f"pulled {private_image}" in result.stderr
    assert app.http("web", "/version") == "1.0.0"
    assert not (home / ".docker" / "config.json").exists()
    assert AUTH_PASSWORD not in result.stdout + result.stderr
    assert (
        ok(app.deploy("env", "test")).stdout.count("***") == 2
    )  # DB_PASSWORD and REGISTRY_PASSWORD


def test_save_login_writes_the_docker_config(
    app: Workspace, private_image: str, tmp_path: Path
) -> None:
    private_app(app, private_image, f"REGISTRY_PASSWORD={AUTH_PASSWORD}\n")
    home = tmp_path / "home"

    result = app.deploy("test", "--yes", "--save-login", env=operator_home(home))

    assert result.returncode == 0, result.stderr
    config = json.loads((home / ".docker" / "config.json").read_text())
    assert AUTH_REGISTRY in config["auths"]


def test_login_with_wrong_credentials_is_one_clear_line(app: Workspace, private_image: str) -> None:
    private_app(app, private_image, "REGISTRY_PASSWORD=wrong-password\n")

    result = app.deploy("test", "--yes")

    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: login to registry {AUTH_REGISTRY} as {AUTH_USER} failed: ")
    assert "wrong-password" not in result.stderr
    assert app.containers() == []


def test_login_with_missing_credentials_names_the_variable(
    app: Workspace, private_image: str
) -> None:
    private_app(app, private_image, "")

    result = app.deploy("test", "--yes")

    assert (result.returncode, result.stderr) == (
        1,
        f"error: registry {AUTH_REGISTRY}: set the variable REGISTRY_PASSWORD (in the environment or an env file) to the password of {AUTH_USER}\n",
    )


def test_pull_needing_a_login_without_registry_settings(app: Workspace, private_image: str) -> None:
    private_app(app, private_image, "", registry=False)

    result = app.deploy("test", "--yes")

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"error: registry {AUTH_REGISTRY} refused the pull without a login ("
    )


def test_prune_keeps_the_last_releases_and_never_an_image_in_use(app: Workspace) -> None:
    spec = app.environments / "test.yml"
    spec.write_text(
        spec.read_text().replace(
            "deploy: {wait_timeout: 30}", "deploy: {wait_timeout: 30, keep_releases: 2}"
        )
    )
    env_file = app.environments / "app/.env"
    for tag in ("1.0.0", "1.1.0", "2.0.0"):
        text = env_file.read_text()
        for name in ("WEB_TAG", "WORKER_TAG"):
            text = (
                "\n".join(
                    f"{name}={tag}" if line.startswith(f"{name}=") else line
                    for line in text.splitlines()
                )
                + "\n"
            )
        env_file.write_text(text)
        ok(app.deploy("test", "--yes"))
    image = {
        tag: app.engine.images.get(f"{REGISTRY}/testapp:{tag}").id
        for tag in ("1.0.0", "1.1.0", "2.0.0")
    }

    planned = ok(app.deploy("prune", "test", "--aggressive", "--dry-run", "--json")).json()
    assert isinstance(planned, dict)
    ours = [c for c in planned["images"] if c["why"] == "unused image of this environment"]
    assert [(c["image_id"], c["references"]) for c in ours] == [
        (image["1.0.0"], [f"{REGISTRY}/testapp:1.0.0"])
    ]
    assert planned["freed_bytes"] == 0
    assert app.engine.images.get(image["1.0.0"])  # a dry run removes nothing

    pruned = ok(app.deploy("prune", "test", "--aggressive", "--yes"))
    assert pruned.stdout.splitlines()[-1].endswith(" MB freed")
    remaining = {i["Id"] for i in app.engine.api.images()}
    assert image["1.0.0"] not in remaining
    assert {image["1.1.0"], image["2.0.0"]} <= remaining  # release 2 kept, release 3 in use

    spec.write_text(spec.read_text().replace("keep_releases: 2", "keep_releases: 1"))
    holder = app.engine.containers.create(
        image["1.1.0"],
        name=f"{app.project}-holder",
        labels={"com.docker.compose.project": app.project},
    )
    ok(app.deploy("prune", "test", "--aggressive", "--yes"))
    assert image["1.1.0"] in {
        i["Id"] for i in app.engine.api.images()
    }  # a stopped container uses it
    holder.remove()
    ok(app.deploy("prune", "test", "--aggressive", "--yes"))
    assert image["1.1.0"] not in {i["Id"] for i in app.engine.api.images()}
    assert all(c.status == "running" for c in app.containers())
    audit = ok(app.deploy("audit", "test", "--json")).json()
    assert isinstance(audit, list)
    # The prune that found nothing to remove (the image was in use) changed nothing: no entry.
    assert [e["command"] for e in audit][-3:] == [
        "deploy test",
        "prune --aggressive",
        "prune --aggressive",
    ]
