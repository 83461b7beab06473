"""Rollback that really goes back: configuration with the images, after any failure that changed a
container, recorded whatever ends it, under release numbers that never collide."""

from __future__ import annotations

import signal
import socket
from typing import Any

import pytest

from tests.integration.conftest import REGISTRY, Workspace, ok
from tests.integration.test_releases import start

pytestmark = pytest.mark.integration

IMAGE_COMMAND = ["httpd", "-f", "-p", "8080", "-h", "/www"]  # the test app's CMD


def set_web(space: Workspace, old: str, new: str) -> None:
    """Change the web service in the test's compose file."""
    compose = space.environments / "app/compose.yml"
    text = compose.read_text()
    assert old in text
    compose.write_text(text.replace(old, new))


def releases(space: Workspace) -> list[dict[str, Any]]:
    found = ok(space.deploy("history", "test", "--json")).json()
    assert isinstance(found, list)
    return found


def web_config(space: Workspace) -> tuple[list[str], dict[str, str]]:
    """The command and environment the web container runs with."""
    [web] = space.containers("web")
    env = dict(e.split("=", 1) for e in web.attrs["Config"]["Env"])
    return web.attrs["Config"]["Cmd"], {k: env[k] for k in ("LOG_LEVEL", "DB_PASSWORD")}


def test_a_bad_command_with_the_same_image_is_rolled_back_to_the_old_command(
    app: Workspace,
) -> None:
    ok(app.deploy("test", "--yes"))
    set_web(app, "    ports:", '    command: ["false"]\n    ports:')

    result = app.deploy("test", "--yes")

    assert result.returncode == 1, result.stderr
    assert "; rolled back: web" in result.stderr
    [web] = app.containers("web")
    assert web.status == "running"
    assert web_config(app)[0] == IMAGE_COMMAND
    assert app.http("web", "/version") == "1.0.0"
    newest, first = releases(app)
    assert (first["result"], newest["result"]) == ("success", "rolled back")
    assert first["services"]["web"]["config"]["environment"] == {
        "LOG_LEVEL": "info",
        "DB_PASSWORD": "${DB_PASSWORD}",
    }
    assert newest["services"]["web"]["config"]["command"] is None  # the image's
    assert app.deploy("diff", "test").returncode == 2  # the spec still asks for the bad command


def test_rollback_restores_the_recorded_configuration_but_not_an_old_secret(
    app: Workspace,
) -> None:
    ok(app.deploy("test", "--yes"))
    env_file = app.environments / "app/.env"
    env_file.write_text(env_file.read_text().replace("LOG_LEVEL=info", "LOG_LEVEL=debug"))
    ok(app.deploy("test", "--yes"))
    assert web_config(app)[1]["LOG_LEVEL"] == "debug"
    env_file.write_text(env_file.read_text().replace("s3cret-canary-4711", "rotated-4712"))

    ok(app.deploy("rollback", "test", "--yes", "--to", "1"))

    assert web_config(app) == (IMAGE_COMMAND, {"LOG_LEVEL": "info", "DB_PASSWORD": "rotated-4712"})
    assert app.http("web", "/version") == "1.0.0"
    assert [(r["number"], r["result"]) for r in releases(app)] == [
        (3, "success"),
        (2, "success"),
        (1, "success"),
    ]


def test_a_failing_up_is_rolled_back(app: Workspace) -> None:
    ok(app.deploy("test", "--yes"))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        set_web(app, '"127.0.0.1::8080"', f'"127.0.0.1:{port}:8080"')

        result = app.deploy("test", "--yes")

    assert result.returncode == 1, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: `docker compose --project-name "), last
    assert last.endswith("; rolled back: web"), last
    [web] = app.containers("web")
    assert web.status == "running"
    assert web.attrs["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostPort"] == ""
    assert app.http("web", "/version") == "1.0.0"
    assert [r["result"] for r in releases(app)] == ["rolled back", "success"]


def test_an_interrupt_during_the_rollback_is_recorded(app: Workspace) -> None:
    ok(app.deploy("test", "--yes"))
    set_web(app, "    ports:", '    command: ["false"]\n    ports:')
    deploying = start(app, "test", "--yes")
    assert deploying.stderr is not None
    ups = 0
    for line in deploying.stderr:
        ups += line.startswith("docker compose up done")
        if ups == 2:  # the rollback's `up` has run: it is waiting for web to be healthy
            deploying.send_signal(signal.SIGINT)
            break
    rest = deploying.stderr.read()
    assert deploying.wait(timeout=120) == 130, rest
    for stream in (deploying.stdout, deploying.stderr):
        stream and stream.close()

    newest = releases(app)[0]
    assert (newest["number"], newest["result"]) == (2, "interrupted")
    assert newest["services"]["web"]["config"]["command"] is None  # the image's
    entry = ok(app.deploy("audit", "test", "--json")).json()[-1]  # type: ignore[index]
    assert entry["result"] == "interrupted"
    assert entry["error"].startswith("service web did not become healthy")
    assert entry["error"].endswith("; interrupted during the rollback")


def test_a_release_number_taken_already_is_passed_over(app: Workspace) -> None:
    # A release volume whose record is unreadable: history cannot see it, its name is taken.
    app.engine.volumes.create(
        f"deployer_{app.project}_release_000002",
        labels={
            "dev.deployer.state": "release",
            "dev.deployer.project": app.project,
            "dev.deployer.record": "{damaged",
        },
    )
    ok(app.deploy("test", "--yes"))
    app.append("test.yml", "services:\n  web: {tag: '1.1.0'}\n")
    ok(app.deploy("test", "--yes"))

    assert [(r["number"], r["services"]["web"]["image"]) for r in releases(app)] == [
        (3, f"{REGISTRY}/testapp:1.1.0"),
        (1, f"{REGISTRY}/testapp:1.0.0"),
    ]


def first_error(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("error: "))


def set_env(space: Workspace, name: str, value: str) -> None:
    """Set one variable in the test's .env file."""
    env = space.environments / "app/.env"
    lines = [line for line in env.read_text().splitlines() if not line.startswith(f"{name}=")]
    env.write_text("\n".join([*lines, f"{name}={value}", ""]))


def test_a_deploy_that_failed_before_any_change_leaves_a_later_rollback_the_right_configuration(
    app: Workspace,
) -> None:
    """Issue 17, 1: a pull that fails on a tag typo records web's configuration as it runs, so
    that a later failing deploy puts web back with the configuration it ran, not the new one."""
    ok(app.deploy("test", "--yes"))
    set_env(app, "WEB_TAG", "9.9.9")  # not in the registry
    assert app.deploy("test", "--yes").returncode == 1
    set_env(app, "WEB_TAG", "1.1.0")
    set_web(app, "    ports:", '    command: ["sh", "-c", "exit 3"]\n    ports:')

    result = app.deploy("test", "--yes")

    assert result.returncode == 1, result.stderr
    assert first_error(result.stderr).endswith("; rolled back: web"), result.stderr
    [web] = app.containers("web")
    assert (web.status, web_config(app)[0]) == ("running", IMAGE_COMMAND)
    assert app.http("web", "/version") == "1.0.0"
    assert [r["result"] for r in releases(app)] == ["rolled back", "failed", "success"]


NEW_FAILING_SERVICE = """\
  api:
    image: ${REGISTRY}/testapp-exits:1.0.0
"""


def test_a_new_service_that_fails_is_removed_by_the_rollback(app: Workspace) -> None:
    """Issue 17, 5: the rollback of a deploy whose only failing service is new removes it, as
    the deploy found things: then, and only then, the deploy is `rolled back`."""
    ok(app.deploy("test", "--yes"))
    before = app.ids()
    app.append("app/compose.yml", NEW_FAILING_SERVICE)

    result = app.deploy("test", "--yes")

    assert result.returncode == 1, result.stderr
    assert first_error(result.stderr).endswith("; rolled back: api"), result.stderr
    assert app.containers("api") == []
    assert app.ids() == before
    assert [r["result"] for r in releases(app)] == ["rolled back", "success"]
    assert app.deploy("diff", "test").returncode == 2  # api is still to create


WEAK_SECRET_COMPOSE = """\
services:
  db:
    image: ${REGISTRY}/testapp:1.0.0
    environment:
      POSTGRES_USER: postgres
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
      LOG_LEVEL: ${LOG_LEVEL}
    volumes:
      - data:/var/lib/postgresql/data
volumes:
  data:
"""


def test_a_weak_secret_inside_other_values_does_not_move_them_on_a_rollback(
    workspace: Workspace,
) -> None:
    """A secret as weak as `postgres` is only a reference where the compose file refers to it:
    the volume's target and the user stay as written when the password is rotated, and the
    data written before is still there after the rollback."""
    space = workspace
    space.environment(
        WEAK_SECRET_COMPOSE, f"REGISTRY={REGISTRY}\nPOSTGRES_PASSWORD=postgres\nLOG_LEVEL=info\n"
    )
    ok(space.deploy("test", "--yes"))
    [db] = space.containers("db")
    assert db.exec_run(["sh", "-c", "echo kept > /var/lib/postgresql/data/marker"]).exit_code == 0
    set_env(space, "POSTGRES_PASSWORD", "rotated-4712")
    set_env(space, "LOG_LEVEL", "debug")
    ok(space.deploy("test", "--yes"))

    ok(space.deploy("rollback", "test", "--yes", "--to", "1"))

    [db] = space.containers("db")
    env = dict(e.split("=", 1) for e in db.attrs["Config"]["Env"])
    assert {k: env[k] for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "LOG_LEVEL")} == {
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": "rotated-4712",  # a rotated secret is not rolled back
        "LOG_LEVEL": "info",
    }
    assert [m["Destination"] for m in db.attrs["Mounts"]] == ["/var/lib/postgresql/data"]
    marker = db.exec_run(["cat", "/var/lib/postgresql/data/marker"])
    assert (marker.exit_code, marker.output) == (0, b"kept\n")
    first = releases(space)[-1]
    assert first["services"]["db"]["config"]["environment"] == {
        "POSTGRES_USER": "postgres",
        "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD}",
        "LOG_LEVEL": "info",
    }
    assert [v["target"] for v in first["services"]["db"]["config"]["volumes"]] == [
        "/var/lib/postgresql/data"
    ]
