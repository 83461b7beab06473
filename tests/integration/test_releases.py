"""Releases, rollback, automatic rollback, the lock and the audit, on the real engine."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import REGISTRY, Result, Workspace, ok, operator_home

pytestmark = pytest.mark.integration


def start(space: Workspace, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "deployer", *args],
        cwd=space.root,
        env={**os.environ, **space.env, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lock_state(space: Workspace) -> dict[str, object]:
    document = ok(space.deploy("lock", "status", "test", "--json")).json()
    assert isinstance(document, dict)
    return document


def test_failed_health_check_rolls_back_by_itself(app: Workspace) -> None:
    ok(app.deploy("test", "--yes"))
    [old_web] = app.containers("web")
    app.append("test.yml", f"services:\n  web: {{image: '{REGISTRY}/testapp-unhealthy:1.0.0'}}\n")
    spec = app.environments / "test.yml"
    spec.write_text(spec.read_text().replace("wait_timeout: 30", "wait_timeout: 6"))

    result = app.deploy("test", "--yes")

    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[-3:] == [
        next(
            line
            for line in lines
            if line.startswith("error: service web did not become healthy within 6s")
        ),
        "error: last log lines of web:",
        "error:   app 1.0.0 starting: httpd -f -p 8080 -h /www",
    ]
    assert lines[-3].endswith("; rolled back: web")
    [web] = app.containers("web")
    assert web.image.id == old_web.image.id
    assert app.http("web", "/version") == "1.0.0"
    [newest, first] = ok(app.deploy("history", "test", "--json")).json()  # type: ignore[misc]
    assert (first["number"], first["result"]) == (1, "success")
    assert (newest["number"], newest["result"]) == (2, "rolled back")


def test_rollback_without_number_restores_the_previous_release_by_its_exact_image(
    app: Workspace,
) -> None:
    ok(app.deploy("test", "--yes"))
    first_image = app.containers("web")[0].image.id
    app.append("test.yml", "services:\n  web: {tag: '1.1.0'}\n")
    ok(app.deploy("test", "--yes"))
    assert app.http("web", "/version") == "1.1.0"

    result = ok(app.deploy("rollback", "test", "--yes"))

    assert "web      recreate" in result.stdout
    [web] = app.containers("web")
    assert web.image.id == first_image
    assert web.attrs["Config"]["Image"].startswith(f"{REGISTRY}/testapp@sha256:")
    assert app.http("web", "/version") == "1.0.0"
    releases = ok(app.deploy("history", "test", "--json")).json()
    assert isinstance(releases, list)
    assert [(r["number"], r["command"], r["result"]) for r in releases] == [
        (3, "rollback to release 1", "success"),
        (2, "deploy test", "success"),
        (1, "deploy test", "success"),
    ]
    assert releases[0]["services"]["web"]["image_id"] == first_image
    history_text = ok(app.deploy("history", "test")).stdout
    assert history_text.splitlines()[0] == "test: 3 releases, newest first"
    assert f"changed: web recreate: image {REGISTRY}/testapp:1.0.0 -> 1.1.0" in history_text


def test_two_deploys_at_once_one_proceeds_one_is_refused(app: Workspace) -> None:
    first, second = start(app, "test", "--yes"), start(app, "test", "--yes")
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in (first, second)]
    for p in (first, second):
        p.stdout and p.stdout.close()
        p.stderr and p.stderr.close()

    assert sorted(code for code, _ in results) == [0, 1]
    refused = next(err for code, err in results if code == 1)
    assert refused.splitlines()[-1].startswith("error: test is locked: held by ")
    assert refused.splitlines()[-1].endswith("(deploy test). Wait with --lock-wait SECONDS")
    assert lock_state(app)["locked"] is False


def wait_until_locked(app: Workspace, deploying: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while lock_state(app)["locked"] is False:
        assert time.monotonic() < deadline and deploying.poll() is None, (
            "the deploy never took the lock"
        )
        time.sleep(0.05)


def test_lock_wait_waits_for_the_holder(app: Workspace) -> None:
    first = start(app, "test", "--yes")
    wait_until_locked(app, first)
    waited = app.deploy("test", "--yes", "--lock-wait", "120")
    assert first.wait(timeout=120) == 0
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.endswith("in sync, nothing to change\n")


def test_lock_of_a_killed_deploy_is_stale_and_can_be_broken(app: Workspace) -> None:
    deploying = start(app, "test", "--yes")
    wait_until_locked(app, deploying)
    deploying.send_signal(signal.SIGKILL)
    deploying.wait()

    # The lock stays live while a process the deploy started (Compose) still works; then it is stale.
    deadline = time.monotonic() + 60
    while (status := lock_state(app))["stale"] is None:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["stale"] == f"process {deploying.pid} on {os.uname().nodename} is gone"
    env_file = app.environments / "app/.env"
    env_file.write_text(env_file.read_text().replace("LOG_LEVEL=info", "LOG_LEVEL=debug"))
    refused = app.deploy("test", "--yes")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1].startswith(
        f"error: the lock of test is stale: process {deploying.pid} on {os.uname().nodename} is gone; held by "
    )
    assert refused.stderr.splitlines()[-1].endswith(
        "Break it with `deploy lock release test --force`"
    )
    assert app.deploy("lock", "release", "test").returncode == 1
    broken = ok(app.deploy("lock", "release", "test", "--force"))
    assert broken.stdout.startswith("released the lock of test held by ")
    assert lock_state(app)["locked"] is False
    ok(app.deploy("test", "--yes"))
    audit = ok(app.deploy("audit", "test", "--json")).json()
    assert isinstance(audit, list)
    assert [e["command"] for e in audit][-2:] == ["lock release --force", "deploy test"]


def test_history_and_lock_are_seen_by_a_second_operator(app: Workspace, tmp_path: Path) -> None:
    ok(app.deploy("test", "--yes"))
    other = tmp_path / "other-operator"
    shutil.copytree(app.environments, other / "environments")
    env = {
        "DEPLOYER_ENVIRONMENTS": str(other / "environments"),
        **operator_home(other / "home"),
        "XDG_CACHE_HOME": str(other / "cache"),
    }

    seen = app.deploy("history", "test", "--json", env=env)
    assert [r["number"] for r in seen.json()] == [1]  # type: ignore[union-attr]
    ok(app.deploy("lock", "acquire", "test", "--reason", "db migration", env=env))
    app.append("test.yml", "services:\n  web: {tag: '1.1.0'}\n")

    refused = app.deploy("test", "--yes")

    assert refused.returncode == 1
    assert "test is locked: held by" in refused.stderr and "(db migration)" in refused.stderr
    status = lock_state(app)
    assert status["lock"]["reason"] == "db migration"  # type: ignore[index]
    ok(app.deploy("lock", "release", "test"))
    ok(app.deploy("test", "--yes"))
    assert [r["number"] for r in app.deploy("history", "test", "--json", env=env).json()] == [2, 1]  # type: ignore[union-attr]


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_deploy_leaves_every_service_running(
    app: Workspace, signal_number: int
) -> None:
    ok(app.deploy("test", "--yes"))
    env_file = app.environments / "app/.env"
    env_file.write_text(
        env_file.read_text()
        .replace("WEB_TAG=1.0.0", "WEB_TAG=1.1.0")
        .replace("WORKER_TAG=1.0.0", "WORKER_TAG=1.1.0")
    )
    deploying = start(app, "test", "--yes")
    assert deploying.stderr is not None
    for line in deploying.stderr:
        if line.startswith("docker compose up"):
            deploying.send_signal(signal_number)
            break
    rest = deploying.stderr.read()
    assert deploying.wait(timeout=120) == 130, rest
    assert rest.splitlines()[-1] == (
        "interrupted: `docker compose up` was not cut short: every service runs its old or its "
        "new release; `deploy diff test` shows what is left to do"
    )

    containers = app.containers()
    assert [c.name for c in containers] == [f"{app.project}-web-1", f"{app.project}-worker-1"]
    assert all(c.status == "running" for c in containers)
    assert app.http("web", "/version") in ("1.0.0", "1.1.0")
    assert lock_state(app)["locked"] is False
    audit = app.deploy("audit", "test", "--json").json()
    assert [e["result"] for e in audit] == ["success", "interrupted"]  # type: ignore[union-attr]
    assert app.deploy("diff", "test").returncode in (0, 2)
    ok(app.deploy("test", "--yes"))
    assert app.deploy("diff", "test").returncode == 0


def test_canary_secret_never_appears(app: Workspace) -> None:
    canary = "s3cret-canary-4711"
    outputs = []

    def run(*args: str) -> Result:
        result = app.deploy(*args)
        outputs.extend([result.stdout, result.stderr])
        return result

    ok(run("test", "--yes"))
    env_file = app.environments / "app/.env"
    env_file.write_text(env_file.read_text().replace(canary, canary + "-2"))
    assert "secret DB_PASSWORD changed" in run("diff", "test").stdout
    run("diff", "test", "--json")
    ok(run("test", "--yes"))
    app.append(
        "test.yml",
        f"services:\n  web: {{image: '{REGISTRY}/testapp-unhealthy:1.0.0', environment: {{ECHO: '${{DB_PASSWORD}}'}}}}\n",
    )
    spec = app.environments / "test.yml"
    spec.write_text(spec.read_text().replace("wait_timeout: 30", "wait_timeout: 5"))
    assert run("test", "--yes").returncode == 1
    for args in (
        ("history", "test", "--json"),
        ("history", "test"),
        ("audit", "test", "--json"),
        ("audit", "test"),
        ("render", "test"),
        ("render", "test", "--json"),
        ("env", "test"),
        ("lock", "status", "test", "--json"),
    ):
        run(*args)
    (app.environments / "app/compose.yml").write_text(
        "services:\n  web:\n    image: ${DB_PASSWORD}\n"
    )
    assert run("test", "--yes").returncode == 1

    assert outputs and all(canary not in text for text in outputs)
    labels = [
        v.attrs["Labels"]
        for v in app.engine.volumes.list(filters={"label": f"dev.deployer.project={app.project}"})
    ]
    assert labels and canary not in json.dumps(labels)
