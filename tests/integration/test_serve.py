"""`deploy serve` on the real engine: the agent as its own process, its notifications reaching a
local HTTP sink, its metrics, API and pages read over HTTP, faults caused for real (a container
stopped by hand, kill -9 of the agent, an engine killed under it, SIGTERM during a deploy)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.integration.bed import Bed
from tests.integration.conftest import (
    REGISTRY,
    Workspace,
    ok,
    project_containers,
    remove_project,
    untag,
)
from tests.integration.serving import agent, github_signature, sink, waited

pytestmark = pytest.mark.integration

SECRET = "s3cret-canary-4711"
COMPOSE = """\
services:
  web:
    image: ${REGISTRY}/testapp:${WEB_TAG}
    environment:
      DB_PASSWORD: ${DB_PASSWORD}
"""
INTERVAL = 2.0
WAIT = 30  # the specs' deploy.wait_timeout


def spec(project: str, watch: str, engine: str = "") -> str:
    return (
        f"project: {project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        f"deploy: {{wait_timeout: {WAIT}}}\nwatch: {watch}\n{engine}"
    )


def app_files(space: Workspace, registry: str = REGISTRY, tag: str = "1.0.0") -> None:
    space.write("app/compose.yml", COMPOSE)
    space.write("app/.env", f"REGISTRY={registry}\nWEB_TAG={tag}\nDB_PASSWORD={SECRET}\n")


def everything_shown(running: object, messages: list[dict[str, object]]) -> str:
    """Every page, API document, metric and notification the agent gave, and its log."""
    from tests.integration.serving import Agent

    assert isinstance(running, Agent)
    names = [d["environment"] for d in json.loads(running.get("/api/environments")[1])]
    paths = ["/", "/api/environments", "/metrics"]
    for name in names:
        paths += [f"/environments/{name}", f"/api/environments/{name}"]
    return "\n".join([*(running.get(p)[1] for p in paths), json.dumps(messages), running.text()])


def test_notify_tells_a_stopped_container_once_across_rounds_and_a_kill(
    workspace: Workspace,
) -> None:
    """apply: notify: a container stopped by hand turns the metrics out of sync and sends exactly
    one notification within one interval; three rounds later, and after kill -9 and a restart of
    the agent, still one. No secret value anywhere."""
    app_files(workspace)
    workspace.write("watched.yml", spec(workspace.project, f"{{interval: {INTERVAL}}}"))
    ok(workspace.deploy("watched", "--yes"))
    with sink() as notes, agent(workspace.root, ["--notify", notes.url], workspace.env) as a:
        a.wait_rounds("watched", 1, 30)
        assert (a.metric("deployer_in_sync", "watched"), notes.messages) == (1.0, [])
        workspace.containers("web")[0].stop()
        stopped = time.monotonic()
        waited(lambda: a.metric("deployer_in_sync", "watched") == 0.0, 30, "out of sync")
        waited(lambda: notes.messages, 30, "a notification")
        # One interval, and the round and the sending that follow it.
        assert time.monotonic() - stopped < INTERVAL + 3
        assert a.metric("deployer_healthy", "watched") == 0.0
        assert a.metric("deployer_pending_changes", "watched") == 1.0
        a.wait_rounds("watched", 3, 30)
        [message] = notes.messages
        assert (message["title"], message["type"]) == ("watched: out of sync", "failure")
        assert message["message"].startswith("web start: ")
        document = a.document("watched")
        assert (document["sync"], document["health"]) == ("out-of-sync", "unhealthy")
        assert document["diff"]["changes"][0]["action"] == "start"
        shown = everything_shown(a, notes.messages)
        assert SECRET not in shown

        a.kill()
        a.start()
        a.wait_rounds("watched", 3, 30)
        assert notes.titles() == ["watched: out of sync"]
        assert a.stop() == 0
    assert "stopped" in a.text().splitlines()[-1]


def test_auto_repairs_drift_and_an_engine_restarted_under_it(
    tmp_path: Path, bed: Bed, images: list[str]
) -> None:
    """apply: auto on an engine of the bed: the agent deploys what is declared, with a release and
    an audit entry that name it; a container stopped by hand is back within one interval plus
    the wait; after the engine is killed (as a power loss) and started again, its service is back
    within one interval after the engine answers."""
    project = f"dt-serve-{tmp_path.name[-6:]}"
    space = Workspace(tmp_path, project, bed.client(1), {**bed.env})
    space.env["DEPLOYER_ENVIRONMENTS"] = str(space.environments)
    app_files(space, bed.node_image(REGISTRY))
    engine = f"engine: {{host: {bed.unix(1)}}}\n"
    space.write("auto.yml", spec(project, f"{{interval: {INTERVAL}, apply: auto}}", engine))

    def running() -> list[docker.models.containers.Container]:
        found = project_containers(bed.client(1), project, "web")
        return [c for c in found if c.status == "running"]

    try:
        with sink() as notes, agent(space.root, ["--notify", notes.url], space.env) as a:
            waited(running, WAIT + 10, f"deployed by the agent; log: {a.text()}")
            waited(lambda: a.document("auto").get("history"), 30, "the release shown")
            [release] = a.document("auto")["history"]
            assert release["performer"].startswith("deploy serve (agent of ")
            assert (release["command"], release["result"]) == ("deploy auto", "success")
            [entry] = a.document("auto")["audit"]
            assert (entry["performer"], entry["command"]) == (release["performer"], "deploy auto")

            running()[0].stop()
            stopped = time.monotonic()
            waited(running, INTERVAL + WAIT, "started again by the agent")
            assert time.monotonic() - stopped < INTERVAL + WAIT
            waited(lambda: len(a.document("auto")["history"]) == 2, 30, "two releases")

            bed.kill_engine(1)
            waited(lambda: a.document("auto")["sync"] == "unknown", 30, "unknown")
            assert a.metric("deployer_readable", "auto") == 0.0
            bed.start_engine(1)
            answered = time.monotonic()
            waited(running, INTERVAL + WAIT, "back after the engine restarted")
            assert time.monotonic() - answered < INTERVAL + WAIT
            waited(lambda: a.document("auto")["sync"] == "in-sync", 30, "in sync")
            waited(lambda: len(a.document("auto")["history"]) == 3, 30, "three releases")
            titles = notes.titles()
            assert titles.count("auto: deployed") == 3, titles
            assert "auto: not reachable" in titles and "auto: recovered" in titles
            assert SECRET not in everything_shown(a, notes.messages)
    finally:
        bed.heal()
        remove_project(bed.client(1), project)
        for reference in images:
            untag(bed.client(1), bed.node_image(reference))


@pytest.fixture
def checkout(workspace: Workspace) -> Iterator[tuple[Path, Path]]:
    """environments/ as a clone of a bare origin, and a second clone to commit from."""
    origin, author = workspace.root / "origin.git", workspace.root / "author"

    def git(*args: str, cwd: Path = workspace.root) -> None:
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)

    git("init", "-q", "--bare", "-b", "main", str(origin))
    git("clone", "-q", str(origin), str(author))
    for folder in (author,):
        git("config", "user.email", "ops@example.com", cwd=folder)
        git("config", "user.name", "ops", cwd=folder)
    yield origin, author


def commit(author: Path, files: dict[str, str], message: str) -> str:
    for relative, text in files.items():
        (author / relative).parent.mkdir(parents=True, exist_ok=True)
        (author / relative).write_text(text)
    for args in (["add", "-A"], ["commit", "-q", "-m", message], ["push", "-q", "origin", "HEAD"]):
        subprocess.run(["git", *args], cwd=author, check=True, capture_output=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=author, capture_output=True, text=True)
    return head.stdout.strip()


def test_webhook_and_git_deploy_or_notify_a_commit(
    workspace: Workspace, checkout: tuple[Path, Path]
) -> None:
    """--git: a bad webhook signature is 401 and runs nothing; a good one (GitLab's token,
    GitHub's HMAC) runs a round at once, as SIGHUP does, which pulls the commit that changed a tag: `automatic`
    deploys it (the commit in its release), `notified` tells it. SIGTERM during the deploy ends
    the agent once the deploy is done: exit 0, release successful."""
    origin, author = checkout
    automatic, notified = workspace.project, f"{workspace.project}-n"
    workspace.other_projects.append(notified)
    env = f"REGISTRY={REGISTRY}\nWEB_TAG=1.0.0\nDB_PASSWORD={SECRET}\n"
    files = {
        "app/compose.yml": COMPOSE,
        "app/.env": env,
        "automatic.yml": spec(automatic, "{apply: auto}"),
        "notified.yml": spec(notified, "{apply: notify}"),
    }
    commit(author, files, "two environments")
    subprocess.run(["git", "clone", "-q", str(origin), str(workspace.environments)], check=True)
    for name in ("automatic", "notified"):
        ok(workspace.deploy(name, "--yes"))
    secret = b"hook-secret-0123456789"
    (workspace.root / "hook").write_bytes(secret + b"\n")
    args = ["--git", "--interval", "3600", "--webhook-secret-file", "hook"]
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    with sink() as notes, agent(workspace.root, [*args, "--notify", notes.url], workspace.env) as a:
        rounds = a.wait_rounds("notified", 1, 30)
        for headers in (
            {},
            {"X-Hub-Signature-256": "sha256=" + "0" * 64},
            github_signature(b"another secret", body),
            {"X-Gitlab-Token": "guess"},
        ):
            assert a.post("/hooks/git", body, headers)[0] == 401
        time.sleep(1.5)
        assert a.rounds("notified") == rounds

        assert a.post("/hooks/git", body, {"X-Gitlab-Token": secret.decode()})[0] == 202
        rounds = a.wait_rounds("notified", 1, 10)
        a.signal(signal.SIGHUP)  # as `systemctl reload`: a round now
        rounds = a.wait_rounds("notified", 1, 10)

        head = commit(author, {"app/.env": env.replace("1.0.0", "1.1.0")}, "web 1.1.0")
        assert a.post("/hooks/git", body, github_signature(secret, body))[0] == 202
        waited(lambda: "automatic: deploying" in a.text(), 30, f"deploying; log: {a.text()}")
        assert a.stop() == 0

    assert "notify: notified:" not in a.text()  # the round ended after the deploy under way
    [web] = project_containers(workspace.engine, automatic, "web")
    assert web.attrs["Config"]["Image"].endswith("testapp:1.1.0")
    newest = ok(workspace.deploy("history", "automatic", "--json")).json()[0]  # type: ignore[index]
    assert (newest["command"], newest["result"]) == (
        f"deploy automatic (git {head[:12]})",
        "success",
    )

    with sink() as notes, agent(workspace.root, [*args, "--notify", notes.url], workspace.env) as a:
        waited(lambda: notes.messages, 30, "a notification")
        [message] = notes.messages
        assert message["title"] == "notified: out of sync"
        assert "1.0.0" in message["message"] and "1.1.0" in message["message"]
        assert a.document("automatic")["sync"] == "in-sync"
        assert a.document("notified")["commit"] == head
        assert SECRET not in everything_shown(a, notes.messages)
    [web] = project_containers(workspace.engine, notified, "web")
    assert web.attrs["Config"]["Image"].endswith("testapp:1.0.0")


def test_bad_options_are_refused_before_anything_starts(workspace: Workspace) -> None:
    """A notification URL Apprise does not know, a non-loopback address without a token, an
    unknown environment: one line each, exit 1."""
    app_files(workspace)
    workspace.write("watched.yml", spec(workspace.project, "{}"))
    cases = {
        (
            "--notify",
            "nope://hook-token-123",
        ): "error: --notify #1 (nope://...): not a notification URL Apprise knows",
        (
            "--listen",
            "0.0.0.0:18999",
        ): "error: --listen: 0.0.0.0:18999 is not loopback: give --token-file",
        ("--listen", "nowhere"): "error: --listen: expected HOST:PORT, got 'nowhere'",
        ("nope",): "error: unknown environment 'nope'",
    }
    for args, line in cases.items():
        result = workspace.deploy("serve", *args)
        assert result.returncode == 1, result
        [shown] = result.stderr.splitlines()
        assert shown.startswith(line), shown
        assert "hook-token-123" not in shown
