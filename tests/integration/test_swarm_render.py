"""`deploy validate` and `deploy render` of a swarm environment: the real Compose CLI resolves
the model, and the stack file converted from it is read by the real `docker stack deploy` of
docker CLI 20.10. No swarm is needed: the CLI reads the file before it asks for the daemon, and
DOCKER_HOST points at no daemon, so nothing is deployed anywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployer.targets.swarm.stack import without_fingerprint

pytestmark = pytest.mark.integration

NO_DAEMON = "unix:///nonexistent/deployer-test/manager.sock"
COMPOSE = """\
services:
  web:
    image: 127.0.0.1:5000/shop/web:${WEB_TAG}
    build: ./web
    environment:
      DB_HOST: db
      DB_PASSWORD: ${DB_PASSWORD}
      API_TOKEN: ${API_TOKEN}
      GREETING: ${GREETING}
    ports:
      - target: 8080
        published: 18091
        mode: host
    depends_on: [db]
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/health"]
      interval: 2s
      retries: 5
    volumes:
      - ./www:/www:ro
  db:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: ${DB_PASSWORD}
    volumes: [pgdata:/var/lib/postgresql/data]
    restart: unless-stopped
  report:
    image: 127.0.0.1:5000/shop/report:${WEB_TAG}
    profiles: [jobs]
    restart: "no"
  agent:
    image: 127.0.0.1:5000/shop/agent:${WEB_TAG}
    cap_add: [NET_ADMIN]
    init: true
    sysctls: {net.core.somaxconn: 1024}
    ulimits: {nofile: {soft: 1024, hard: 2048}}
    logging: {driver: local, options: {max-size: 10m}}
    secrets: [{source: api_key, target: api_key, mode: 0400}]
    configs: [{source: settings, target: /etc/agent.conf}]
    volumes: [{type: tmpfs, target: /cache, tmpfs: {size: 65536}}]
    tmpfs: /run
    networks: [hostnet]
    healthcheck: {test: "true", interval: 1m, timeout: 10s, start_period: 30s}
    deploy:
      mode: global
      placement: {constraints: [node.role == worker], preferences: [{spread: node.id}]}
      restart_policy: {condition: on-failure, delay: 5s, window: 2m}
      resources: {limits: {cpus: "0.25", memory: 32M}}
volumes:
  pgdata: {}
secrets:
  api_key: {file: ./api_key.txt}
configs:
  settings: {file: ./agent.conf}
networks:
  hostnet: {external: true, name: host}
"""
# Quotes, `$`, `#`, spaces, unicode and backslashes, as an operator writes them in a .env file.
GREETING = '"quoted" $HOME $$ #not a comment  two  spaces Grüße 🚀 back\\slash'
ENV = f"""\
WEB_TAG=1.4.2
DB_PASSWORD=db
API_TOKEN=tok-canary-swarm-123
COMPOSE_PROFILES=jobs
GREETING='{GREETING}'
"""


def deploy(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployer", *args],
        cwd=root,
        env={**os.environ, "DEPLOYER_ENVIRONMENTS": str(root / "environments")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def docker_cli(args: list[str], stdin: str, answer: str) -> str:
    """The first docker client here (Debian's docker.io, then the one on PATH) whose output of
    `docker ARGS...` starts with `answer`; no daemon is asked."""
    for candidate in ("/usr/bin/docker", shutil.which("docker") or "docker"):
        tried = subprocess.run(
            [candidate, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_HOST": NO_DAEMON},
        )
        if tried.stdout.startswith(answer):  # `docker version` exits 1 without a daemon
            return candidate
    raise AssertionError(f"no docker CLI here answers `docker {' '.join(args)}` with {answer!r}")


# docker CLI 20.10: scripts/test-engine installs Debian's docker.io.
VERSION = ["version", "--format", "{{.Client.Version}}"]
# `docker stack config` prints the file as stack deploy reads and interpolates it (after 20.10).
STACK_CONFIG = ["stack", "config", "--compose-file", "-"]
EMPTY_STACK = "version: '3.8'\nservices: {}\n"


def test_a_swarm_environment_validates_and_renders_for_stack_deploy(tmp_path: Path) -> None:
    environments = tmp_path / "environments"
    (environments / "shop/www").mkdir(parents=True)
    (environments / "shop/compose.yml").write_text(COMPOSE, encoding="utf-8")
    (environments / "shop/.env").write_text(ENV, encoding="utf-8")
    (environments / "shop/api_key.txt").write_text("key\n", encoding="utf-8")
    (environments / "shop/agent.conf").write_text("level = 1\n", encoding="utf-8")
    (environments / "cluster.yml").write_text(
        "project: shop-swarm\ncompose_files: [shop/compose.yml]\nenv_files: [shop/.env]\n"
        f"engine: {{host: '{NO_DAEMON}', orchestrator: swarm}}\n"
        "registry: {server: '127.0.0.1:5001', username: deployer, password_env: REGISTRY_PASSWORD}\n",
        encoding="utf-8",
    )
    compose_file = "environments/shop/compose.yml"
    shown = [
        f"warning: {compose_file}:4: services.web.build: Swarm pulls the image, it does not build: build and push it first (`deploy build ENV --push`)",
        f"warning: {compose_file}:14: services.web.depends_on.db: Swarm starts services in no order: tasks must wait for their dependencies themselves",
        f"warning: {compose_file}:19: services.web.volumes.0.source: Swarm does not create a bind mount's source: {environments / 'shop/www'} must exist on every node a task may run on",
        f"warning: {compose_file}:26: services.db.restart: Swarm has no unless-stopped: tasks restart after any exit (restart_policy any)",
        f"warning: {compose_file}:29: services.report.profiles: Compose has applied the profiles (jobs active): the stack file has none",
        # A one-minute health check: its task healthy after 60s, then a 3 x 60s monitor.
        f"warning: {compose_file}:44: services.agent.deploy: Swarm needs about 240s to update every task (health check interval and delay per batch, then the monitor), more than deploy.wait_timeout (120s): raise deploy.wait_timeout or shorten the health check",
    ]  # fmt: skip
    weak = "warning: environments/shop/.env:2: DB_PASSWORD: weak secret: its value is also a name in this environment (service, image, project, network, volume or host)"

    validated = deploy(tmp_path, "validate", "cluster")
    assert (validated.returncode, validated.stdout) == (0, "ok: cluster\n")
    assert sorted(validated.stderr.splitlines()) == sorted([*shown, weak])

    rendered = deploy(tmp_path, "render", "cluster", "--json")
    assert rendered.returncode == 0, rendered.stderr
    assert sorted(rendered.stderr.splitlines()) == sorted(shown)
    document = json.loads(rendered.stdout)
    assert document["argv"] == [
        "docker", "stack", "deploy", "--compose-file", "-", "--prune", "--with-registry-auth", "shop-swarm",
    ]  # fmt: skip
    assert document["env"] == {
        "DOCKER_HOST": NO_DAEMON,
        "DOCKER_TLS_VERIFY": "",
        "DOCKER_CERT_PATH": "",
    }
    stack: dict[str, Any] = document["stack"]
    assert yaml.safe_load(document["stdin"]) == stack
    assert "tok-canary" not in rendered.stdout
    web, db, report = (stack["services"][name] for name in ("web", "db", "report"))
    # Dev passwords equal to a service's name are masked as values; the service keeps its name.
    assert web["environment"] == {
        "API_TOKEN": "***",
        "DB_HOST": "db",
        "DB_PASSWORD": "***",
        "GREETING": GREETING.replace("$", "$$"),
    }
    assert db["environment"] == {"POSTGRES_PASSWORD": "***"}
    assert without_fingerprint(web)["deploy"] == {
        "update_config": {"failure_action": "rollback", "order": "stop-first", "monitor": "10s"},
        "rollback_config": {"failure_action": "pause", "order": "stop-first", "monitor": "10s"},
    }
    assert db["deploy"]["restart_policy"] == {"condition": "any"}
    assert report["deploy"]["restart_policy"] == {"condition": "none"}
    agent = stack["services"]["agent"]
    assert (agent["secrets"], agent["volumes"]) == (
        [{"source": "api_key", "target": "api_key", "mode": 0o400}],
        [{"type": "tmpfs", "target": "/cache", "tmpfs": {"size": 65536}}, {"type": "tmpfs", "target": "/run"}],
    )  # fmt: skip

    # docker CLI 20.10 reads the file with no complaint and no option ignored: its next step is
    # the daemon, which is not there.
    stack_deploy = subprocess.run(
        [docker_cli(VERSION, "", "20.10."), *document["argv"][1:]],
        input=document["stdin"],
        env={**os.environ, **document["env"]},
        capture_output=True,
        text=True,
    )
    assert (stack_deploy.returncode, stack_deploy.stderr) == (
        1,
        f"Cannot connect to the Docker daemon at {NO_DAEMON}. Is the docker daemon running?\n",
    )

    # Stack deploy's own interpolation turns the file's values back into the .env's, byte for byte.
    interpolated = subprocess.run(
        [docker_cli(STACK_CONFIG, EMPTY_STACK, "version:"), *STACK_CONFIG],
        input=document["stdin"],
        env={**os.environ, **document["env"], "HOME": "/should-not-appear", "X": "nor-this"},
        capture_output=True,
        text=True,
        check=True,
    )
    config = yaml.safe_load(interpolated.stdout)
    assert config["services"]["web"]["environment"]["GREETING"] == GREETING


def test_what_swarm_cannot_honour_fails_validate_and_render_with_its_place(
    tmp_path: Path,
) -> None:
    environments = tmp_path / "environments"
    (environments / "app").mkdir(parents=True)
    (environments / "app/compose.yml").write_text(
        "services:\n"
        "  web:\n"
        "    image: web:1\n"
        "    container_name: web\n"
        "    depends_on:\n"
        "      db:\n"
        "        condition: service_healthy\n"
        "  db:\n"
        "    image: postgres:16\n"
        "    network_mode: host\n",
        encoding="utf-8",
    )
    (environments / "cluster.yml").write_text(
        "project: app\ncompose_files: [app/compose.yml]\n"
        f"engine: {{host: '{NO_DAEMON}', orchestrator: swarm}}\n",
        encoding="utf-8",
    )
    errors = [
        "error: environments/app/compose.yml:10: services.db.network_mode: a swarm service joins networks, it has no network_mode (for the host's network, attach the service to the external network `host`)",
        "error: environments/app/compose.yml:4: services.web.container_name: Swarm names the tasks itself; remove container_name",
        "error: environments/app/compose.yml:7: services.web.depends_on.db.condition: Swarm cannot wait for db (service_healthy)",
    ]  # fmt: skip
    for command in ("validate", "render"):
        result = deploy(tmp_path, command, "cluster")
        assert (result.returncode, result.stdout, result.stderr.splitlines()) == (1, "", errors)
