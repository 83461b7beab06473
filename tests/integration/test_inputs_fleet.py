"""Adoption and drift in the files a service reads on a fleet reached over ssh://: the bind
mounts name paths on each host, read through that host's engine (never on the operator's
machine; the bed's hosts share this machine's disk, so the content is the same here)."""

from __future__ import annotations

import subprocess

import pytest

from tests.integration.conftest import FLEET_COMPOSE, Fleet, ok

pytestmark = pytest.mark.integration

# web bind-mounts a file and a folder; proxy reloads on SIGHUP (its PID 1 notes each one).
COMPOSE = FLEET_COMPOSE.replace(
    '    ports: ["8080"]\n',
    '    ports: ["8080"]\n    volumes:\n      - ./conf/app.conf:/etc/app.conf:ro\n'
    "      - ./conf/site:/www/site:ro\n",
) + (
    "  proxy:\n"
    "    image: ${REGISTRY}/testapp:1.0.0\n"
    "    command: [sh, -c, \"trap 'echo hup >> /tmp/signals' HUP; while :; do sleep 0.2; done\"]\n"
    "    healthcheck: {test: [CMD, 'true'], interval: 1s}\n"
    "    volumes: [./conf/proxy.conf:/etc/proxy.conf:ro]\n"
    "    labels: {dev.deployer.reload-signal: SIGHUP}\n"
)


def ids(fleet: Fleet, k: int) -> dict[str, str]:
    return {c.labels["com.docker.compose.service"]: c.id for c in fleet.containers_on(k)}


@pytest.mark.parametrize("fleet", ["ssh"], indirect=True)
def test_over_ssh_a_plain_compose_project_is_adopted_and_changed_files_recreate_their_service(
    fleet: Fleet,
) -> None:
    assert COMPOSE != FLEET_COMPOSE
    fleet.write("app/compose.yml", COMPOSE)
    fleet.write("app/conf/app.conf", "listen 8080\n")
    fleet.write("app/conf/site/index.html", "v1\n")
    fleet.write("app/conf/proxy.conf", "upstream web\n")
    app = fleet.environments / "app"
    compose = ["docker", "compose", "-p", fleet.project, "--env-file", ".env", "-f", "compose.yml"]
    for url in fleet.urls:  # what the team did before: `docker compose up` on each host
        subprocess.run(
            [*compose, "up", "-d", "--wait"],
            cwd=app,
            env={**fleet.env, "DOCKER_HOST": url},
            check=True,
            capture_output=True,
        )
    before = {k: ids(fleet, k) for k in fleet.bed.numbers}

    adopting = fleet.deploy("diff", "test", "--json")

    assert adopting.returncode == 2, adopting.stderr
    document = adopting.json()
    assert isinstance(document, dict)
    assert sorted((c["host"], c["service"], c["action"]) for c in document["changes"]) == sorted(
        (url, service, "adopt") for url in fleet.urls for service in ("proxy", "web", "worker")
    )
    ok(fleet.deploy("test", "--yes"))
    assert {k: ids(fleet, k) for k in fleet.bed.numbers} == before

    fleet.write("app/conf/site/index.html", "v2\n")
    fleet.write("app/conf/proxy.conf", "upstream web2\n")
    changed = fleet.deploy("diff", "test", "--json")

    assert changed.returncode == 2, changed.stderr
    document = changed.json()
    assert isinstance(document, dict)
    assert [(c["host"], c["service"], c["action"]) for c in document["changes"]] == [
        (url, service, action)
        for url in fleet.urls
        for service, action in (("proxy", "signal"), ("web", "recreate"))
    ]
    # The same folder on every host (the bed's hosts share this disk): the same causes.
    web = [c["causes"] for c in document["changes"] if c["service"] == "web"]
    assert len({tuple(causes) for causes in web}) == 1
    [cause] = web[0]
    assert cause.startswith("file conf/site changed: sha256 ")
    ok(fleet.deploy("test", "--yes"))
    for k in fleet.bed.numbers:
        after = ids(fleet, k)
        assert after["worker"] == before[k]["worker"]
        assert after["proxy"] == before[k]["proxy"]
        assert after["web"] != before[k]["web"]
        assert fleet.http_on(k, "web", "/site/index.html") == "v2"
        [proxy] = fleet.containers_on(k, "proxy")
        assert proxy.exec_run(["cat", "/tmp/signals"]).output == b"hup\n"
    assert ok(fleet.deploy("diff", "test")).returncode == 0


@pytest.mark.parametrize("fleet", ["ssh"], indirect=True)
def test_over_ssh_a_path_missing_on_the_hosts_is_said_before_deploying(fleet: Fleet) -> None:
    fleet.write("app/compose.yml", COMPOSE)
    fleet.write("app/conf/app.conf", "listen 8080\n")
    fleet.write("app/conf/proxy.conf", "upstream web\n")

    pending = fleet.deploy("diff", "test", "--json")

    document = pending.json()
    assert isinstance(document, dict)
    assert [h["notes"] for h in document["hosts"]] == [
        ["web: bind mount conf/site does not exist: Compose will create an empty folder there"]
    ] * len(fleet.urls)
    ok(fleet.deploy("test", "--yes"))
    assert ok(fleet.deploy("diff", "test")).returncode == 0
