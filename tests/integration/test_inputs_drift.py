"""Drift in the files a service reads, and adoption of a project plain Compose started, on the
real engine (one engine here; a fleet over ssh in test_inputs_fleet.py)."""

from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ENGINE_HOST, REGISTRY, ROOT, Result, Workspace, ok

pytestmark = pytest.mark.integration

# Each service reads files of its own: web a bind-mounted file, worker a config's file, db a
# secret's file, api (in an included compose file) a file next to that file; proxy reloads on
# SIGHUP (its PID 1, a shell, notes each one) instead of being recreated.
COMPOSE = """\
include:
  - sub/compose.yml
services:
  web:
    image: ${REGISTRY}/testapp:1.0.0
    environment:
      LOG_LEVEL: ${WEB_LEVEL}
    volumes:
      - ./conf/app.conf:/etc/app.conf:ro
      - /var/run/docker.sock:/var/run/docker.sock
  worker:
    image: ${REGISTRY}/testapp:1.0.0
    configs:
      - source: settings
        target: /etc/settings.txt
  db:
    image: ${REGISTRY}/testapp:1.0.0
    secrets: [db_password]
  proxy:
    image: ${REGISTRY}/testapp:1.0.0
    command: ["sh", "-c", "trap 'echo hup >> /tmp/signals' HUP; while :; do sleep 0.2; done"]
    healthcheck: {test: ["CMD", "true"], interval: 1s}
    volumes:
      - ./conf/proxy.conf:/etc/proxy.conf:ro
    labels:
      dev.deployer.reload-signal: SIGHUP
configs:
  settings:
    file: ./conf/settings.txt
secrets:
  db_password:
    file: ./conf/db_password.txt
"""
INCLUDED = """\
services:
  api:
    image: ${REGISTRY}/testapp:1.0.0
    volumes:
      - ./api.conf:/etc/api.conf:ro
"""
FILES = {
    "app/conf/app.conf": "listen 8080\n",
    "app/conf/settings.txt": "workers=2\n",
    "app/conf/db_password.txt": "s3cret-file-canary-5150\n",
    "app/conf/proxy.conf": "upstream web\n",
    "app/sub/api.conf": "timeout 5\n",
}
SERVICES = ("api", "db", "proxy", "web", "worker")


@pytest.fixture
def readers(workspace: Workspace) -> Workspace:
    workspace.write("app/compose.yml", COMPOSE)
    workspace.write("app/sub/compose.yml", INCLUDED)
    for path, text in FILES.items():
        workspace.write(path, text)
    workspace.write("app/.env", f"REGISTRY={REGISTRY}\nWEB_LEVEL=info\n")
    workspace.write(
        "test.yml",
        f"project: {workspace.project}\ncompose_files: [app/compose.yml]\n"
        "env_files: [app/.env]\ndeploy: {wait_timeout: 30}\n",
    )
    return workspace


def plain_compose_up(space: Workspace, env_file: str) -> None:
    """What the team did before deployer: `docker compose up -d` by hand."""
    app = space.environments / "app"
    compose = ["docker", "compose", "-p", space.project, "--env-file", env_file]
    subprocess.run(
        [*compose, "-f", "compose.yml", "up", "-d", "--wait"],
        cwd=app,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "DOCKER_HOST": ENGINE_HOST},
        check=True,
        capture_output=True,
    )


def ids(space: Workspace) -> dict[str, str]:
    return {c.labels["com.docker.compose.service"]: c.id for c in space.containers()}


def changes(result: Result) -> dict[str, tuple[str, list[str]]]:
    document = result.json()
    assert isinstance(document, dict)
    return {c["service"]: (c["action"], c["causes"]) for c in document["changes"]}


def test_a_project_started_by_plain_compose_is_adopted_without_a_restart(
    readers: Workspace,
) -> None:
    plain_compose_up(readers, ".env")
    before = ids(readers)
    assert sorted(before) == list(SERVICES)

    pending = readers.deploy("diff", "test", "--json")

    assert pending.returncode == 2, pending.stderr
    found = changes(pending)
    assert {name: action for name, (action, _) in found.items()} == dict.fromkeys(SERVICES, "adopt")
    assert all(
        causes[0].startswith("made without deployer, runs as declared (Compose's config hash ")
        for _, causes in found.values()
    )
    ok(readers.deploy("test", "--yes"))
    assert ids(readers) == before
    again = ok(readers.deploy("diff", "test"))
    assert again.stdout == (
        f"test (project {readers.project}): in sync, nothing to change\n"
        "note: web: bind mount /var/run/docker.sock is a socket: not content, not compared\n"
    )
    [release] = ok(readers.deploy("history", "test", "--json")).json()  # type: ignore[misc]
    assert release["result"] == "success"
    assert sorted(release["services"]) == list(SERVICES)
    assert [line.split(":")[0] for line in release["changes"]] == [f"{s} adopt" for s in SERVICES]
    # What was adopted stays adopted: a deploy of another change leaves these containers be.
    readers.write("app/conf/app.conf", "listen 9090\n")
    ok(readers.deploy("test", "--yes"))
    after = ids(readers)
    assert after["web"] != before["web"]
    assert {s: i for s, i in after.items() if s != "web"} == {
        s: i for s, i in before.items() if s != "web"
    }


def test_adopting_a_project_that_differs_in_one_service_recreates_only_that_one(
    readers: Workspace,
) -> None:
    readers.write("app/by-hand.env", f"REGISTRY={REGISTRY}\nWEB_LEVEL=debug\n")
    plain_compose_up(readers, "by-hand.env")
    before = ids(readers)

    found = changes(readers.deploy("diff", "test", "--json"))

    action, causes = found["web"]
    assert action == "recreate"
    assert len(causes) == 1
    assert causes[0].startswith("made without deployer, not as declared (Compose's config hash ")
    assert {n: a for n, (a, _) in found.items() if n != "web"} == dict.fromkeys(
        ("api", "db", "proxy", "worker"), "adopt"
    )
    ok(readers.deploy("test", "--yes"))
    after = ids(readers)
    assert after["web"] != before["web"]
    assert {s: i for s, i in after.items() if s != "web"} == {
        s: i for s, i in before.items() if s != "web"
    }
    web = readers.containers("web")[0]
    assert "LOG_LEVEL=info" in web.attrs["Config"]["Env"]


def test_each_changed_file_recreates_exactly_the_services_that_read_it(
    readers: Workspace,
) -> None:
    ok(readers.deploy("test", "--yes"))
    before = ids(readers)
    old_app, new_app = _sha256(FILES["app/conf/app.conf"]), _sha256("listen 9090\n")
    readers.write("app/conf/app.conf", "listen 9090\n")
    readers.write("app/conf/db_password.txt", "rotated-file-canary-6262\n")

    first = readers.deploy("diff", "test")
    found = changes(readers.deploy("diff", "test", "--json"))

    assert first.returncode == 2
    assert first.stdout == (
        f"test (project {readers.project}): 2 changes\n"
        "SERVICE  ACTION    ORDER                       CAUSE\n"
        "db       recreate  stop-first (default order)  secret file conf/db_password.txt changed\n"
        "web      recreate  stop-first (default order)  "
        f"file conf/app.conf changed: sha256 {old_app[:12]} -> {new_app[:12]}\n"
        "note: web: bind mount /var/run/docker.sock is a socket: not content, not compared\n"
    )
    assert found == {
        "db": ("recreate", ["secret file conf/db_password.txt changed"]),
        "web": (
            "recreate",
            [f"file conf/app.conf changed: sha256 {old_app[:12]} -> {new_app[:12]}"],
        ),
    }
    assert "rotated-file-canary" not in first.stdout + first.stderr
    ok(readers.deploy("test", "--yes"))
    middle = ids(readers)
    assert sorted(s for s in SERVICES if middle[s] != before[s]) == ["db", "web"]

    readers.write("app/conf/settings.txt", "workers=4\n")
    readers.write("app/sub/api.conf", "timeout 9\n")
    found = changes(readers.deploy("diff", "test", "--json"))
    assert {n: (a, [c.split(":")[0] for c in cs]) for n, (a, cs) in found.items()} == {
        "api": ("recreate", ["file sub/api.conf changed"]),
        "worker": ("recreate", ["file conf/settings.txt changed"]),
    }
    ok(readers.deploy("test", "--yes"))
    after = ids(readers)
    assert sorted(s for s in SERVICES if after[s] != middle[s]) == ["api", "worker"]
    worker = readers.containers("worker")[0]
    assert worker.exec_run(["cat", "/etc/settings.txt"]).output == b"workers=4\n"
    assert ok(readers.deploy("diff", "test")).returncode == 0

    # The included compose file itself: its services are what changed.
    readers.write("app/sub/compose.yml", INCLUDED + "    environment: {API_MODE: fast}\n")
    assert changes(readers.deploy("diff", "test", "--json")) == {
        "api": ("recreate", ["environment API_MODE added"])
    }
    ok(readers.deploy("test", "--yes"))
    last = ids(readers)
    assert sorted(s for s in SERVICES if last[s] != after[s]) == ["api"]


def test_a_service_that_reloads_on_a_signal_is_signalled_not_recreated(
    readers: Workspace,
) -> None:
    ok(readers.deploy("test", "--yes"))
    before = ids(readers)
    readers.write("app/conf/proxy.conf", "upstream web2\n")
    old, new = _sha256(FILES["app/conf/proxy.conf"]), _sha256("upstream web2\n")

    found = changes(readers.deploy("diff", "test", "--json"))
    assert found == {
        "proxy": (
            "signal",
            [
                f"file conf/proxy.conf changed: sha256 {old[:12]} -> {new[:12]}",
                "reloads on SIGHUP (dev.deployer.reload-signal): not restarted",
            ],
        )
    }
    ok(readers.deploy("test", "--yes"))

    assert ids(readers) == before
    proxy = readers.containers("proxy")[0]
    deadline = time.monotonic() + 10
    while proxy.exec_run(["cat", "/tmp/signals"]).output != b"hup\n":
        assert time.monotonic() < deadline, "PID 1 of proxy got no SIGHUP"
        time.sleep(0.2)
    assert proxy.exec_run(["cat", "/etc/proxy.conf"]).output == b"upstream web2\n"
    assert ok(readers.deploy("diff", "test")).returncode == 0
    # Another service's change leaves proxy (made with the older label) as it is.
    readers.write("app/conf/app.conf", "listen 9090\n")
    ok(readers.deploy("test", "--yes"))
    assert ids(readers)["proxy"] == before["proxy"]


def test_a_missing_bind_mounted_path_is_said_and_what_compose_creates_is_in_sync(
    readers: Workspace,
) -> None:
    # Its name holds a secret: masked wherever it is shown.
    compose = COMPOSE.replace(
        "      - /var/run/docker.sock:/var/run/docker.sock\n",
        "      - ./not-yet-${DB_PASSWORD}:/var/lib/app\n",
    )
    readers.write("app/compose.yml", compose)
    readers.append("app/.env", "DB_PASSWORD=s3cret-canary-4711\n")

    pending = readers.deploy("diff", "test")
    document = readers.deploy("diff", "test", "--json")

    assert pending.returncode == 2
    note = "web: bind mount not-yet-*** does not exist: Compose will create an empty folder there"
    assert pending.stdout.splitlines()[-1] == f"note: {note}"
    assert document.json()["notes"] == [note]  # type: ignore[index]
    assert "s3cret-canary-4711" not in pending.stdout + document.stdout
    ok(readers.deploy("test", "--yes"))
    assert (readers.environments / "app" / "not-yet-s3cret-canary-4711").is_dir()
    assert readers.deploy("diff", "test").stdout == (
        f"test (project {readers.project}): in sync, nothing to change\n"
    )


def test_a_file_written_all_the_time_is_one_line_and_nothing_is_changed(
    readers: Workspace,
) -> None:
    ok(readers.deploy("test", "--yes"))
    before = ids(readers)
    log = readers.environments / "app" / "conf" / "app.conf"
    log.write_bytes(b"x" * 50_000_000)  # long enough to read that every read sees writes
    writing = threading.Event()
    stop = threading.Event()

    def append() -> None:
        with log.open("ab") as file:
            while not stop.is_set():
                file.write(b"line\n")
                file.flush()
                writing.set()

    writer = threading.Thread(target=append)
    writer.start()
    try:
        writing.wait(5)
        result = readers.deploy("test", "--yes")
    finally:
        stop.set()
        writer.join()

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: bind mount conf/app.conf: cannot be read ({log} changed while it was read "
        "(3 times)); nothing changed"
    )
    assert ids(readers) == before


def test_a_folder_of_100000_files_is_said_and_one_changed_file_recreates_its_reader(
    readers: Workspace,
) -> None:
    site = readers.environments / "app" / "site"
    for folder in range(1000):
        (site / f"{folder:03d}").mkdir(parents=True)
        for index in range(100):
            (site / f"{folder:03d}" / f"{index:02d}.html").write_text(f"{folder}/{index}\n")
    compose = COMPOSE.replace(
        "      - /var/run/docker.sock:/var/run/docker.sock\n", "      - ./site:/www/site:ro\n"
    )
    readers.write("app/compose.yml", compose)
    ok(readers.deploy("test", "--yes"))
    before = ids(readers)
    note = (
        "note: web: bind mount site holds 100000 files: comparing it reads each one "
        "(docs/performance.md)"
    )
    assert ok(readers.deploy("diff", "test")).stdout == (
        f"test (project {readers.project}): in sync, nothing to change\n{note}\n"
    )

    (site / "500" / "50.html").write_text("changed\n")
    found = changes(readers.deploy("diff", "test", "--json"))

    assert [(n, a, [c.split(":")[0] for c in cs]) for n, (a, cs) in found.items()] == [
        ("web", "recreate", ["file site changed"])
    ]
    ok(readers.deploy("test", "--yes"))
    after = ids(readers)
    assert sorted(s for s in SERVICES if after[s] != before[s]) == ["web"]
    [web] = readers.containers("web")
    assert web.exec_run(["cat", "/www/site/500/50.html"]).output == b"changed\n"


# The last deployer that did not compare the files services read (issue 18's).
BEFORE_FILES = "988c24a"


def test_what_an_older_deployer_deployed_is_not_restarted_by_comparing_files(
    readers: Workspace, tmp_path: Path
) -> None:
    older = tmp_path / "older"
    older.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", BEFORE_FILES, "deployer"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(older)], input=archive, check=True)
    proxy = COMPOSE.index("  proxy:\n")
    readers.write("app/compose.yml", COMPOSE[:proxy] + COMPOSE[COMPOSE.index("\nconfigs:\n") + 1 :])
    ok(readers.deploy("test", "--yes", env={"PYTHONPATH": str(older)}))
    before = ids(readers)
    assert sorted(before) == ["api", "db", "web", "worker"]

    found = changes(readers.deploy("diff", "test", "--json"))

    taken = (
        "made before deployer compared the files services read: what they read is taken as it is"
    )
    assert found == dict.fromkeys(("api", "db", "web", "worker"), ("adopt", [taken]))
    ok(readers.deploy("test", "--yes"))
    assert ids(readers) == before
    assert ok(readers.deploy("diff", "test")).returncode == 0
    readers.write("app/conf/app.conf", "listen 9090\n")
    ok(readers.deploy("test", "--yes"))
    after = ids(readers)
    assert sorted(s for s in after if after[s] != before[s]) == ["web"]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
