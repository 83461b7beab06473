"""The swarm target's stack file: Compose's resolved model converted for `docker stack deploy`
(docker CLI 20.10, format 3.8), findings, rolling-update defaults, the invocation as data."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployer.cli.render.model import masked_model, stack_render_document, stack_render_text
from deployer.core.command import Command
from deployer.core.observed import FINGERPRINT_LABEL, KEY_FINGERPRINTS_LABEL, parse_key_fingerprints
from deployer.core.spec import load_spec
from deployer.core.variables import Redactor, SecretPolicy
from deployer.infra.engine import Engine
from deployer.targets.swarm.stack import (
    Finding,
    StackFile,
    convert,
    format_duration,
    located_issues,
    parse_duration,
    slow_updates,
    stack_deploy,
    update_seconds,
    with_rolling_defaults,
    without_fingerprint,
)

# `docker compose config --format json` (Compose 2.40.3) of a shop: a web with a build, a dev
# password equal to a service name, a health check, an ingress and a host-mode port, a short
# depends_on, a read-only bind and a named volume; a database with one replica on a volume; a
# worker behind an active profile with a secret. `scale` is the spec's `replicas: 2`.
SHOP: dict[str, Any] = {
    "name": "shop",
    "networks": {
        "back": {"name": "shop_back", "ipam": {}},
        "front": {"name": "shop_front", "ipam": {}},
    },
    "secrets": {"api_key": {"name": "shop_api_key", "file": "/srv/shop/api_key.txt"}},
    "services": {
        "db": {
            "command": None,
            "entrypoint": None,
            "environment": {"POSTGRES_PASSWORD": "db"},
            "expose": ["5432"],
            "healthcheck": {"test": ["CMD-SHELL", "pg_isready -U postgres"]},
            "image": "postgres:16",
            "networks": {"back": None},
            "restart": "unless-stopped",
            "volumes": [
                {
                    "type": "volume",
                    "source": "pgdata",
                    "target": "/var/lib/postgresql/data",
                    "volume": {},
                }
            ],
        },
        "web": {
            "build": {"context": "/srv/shop/web", "dockerfile": "Dockerfile"},
            "command": ["httpd", "-f", "-p", "8080", "-h", "/www"],
            "depends_on": {"db": {"condition": "service_started", "required": True}},
            "entrypoint": None,
            "environment": {
                "DB_HOST": "db",
                "DB_PASSWORD": "db",
                "GREETING": 'Grüße, "$$HOME" #1 \\o/',
            },
            "healthcheck": {
                "test": ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/health"],
                "timeout": "2s",
                "interval": "5s",
                "retries": 3,
            },
            "image": "127.0.0.1:5000/shop/web:1.4.2",
            "networks": {"back": None, "front": None},
            "ports": [
                {"mode": "ingress", "target": 8080, "published": "18080", "protocol": "tcp"},
                {"mode": "host", "target": 9090, "published": "19090", "protocol": "tcp"},
            ],
            "restart": "always",
            "scale": 2,
            "volumes": [
                {
                    "type": "bind",
                    "source": "/srv/shop/www",
                    "target": "/www",
                    "read_only": True,
                    "bind": {"create_host_path": True},
                },
                {"type": "volume", "source": "static", "target": "/static", "volume": {}},
            ],
        },
        "worker": {
            "profiles": ["jobs"],
            "command": None,
            "deploy": {
                "replicas": 2,
                "resources": {"limits": {"cpus": 0.5, "memory": "67108864"}},
                "placement": {},
            },
            "entrypoint": None,
            "image": "127.0.0.1:5000/shop/worker:1.4.2",
            "networks": {"back": None},
            "restart": "on-failure:3",
            "secrets": [{"source": "api_key", "target": "/run/secrets/api_key"}],
        },
    },
    "volumes": {"pgdata": {"name": "shop_pgdata"}, "static": {"name": "shop_static"}},
}

SHOP_STACK = """\
version: '3.8'
services:
  db:
    environment:
      POSTGRES_PASSWORD: db
    healthcheck:
      test:
      - CMD-SHELL
      - pg_isready -U postgres
    image: postgres:16
    networks:
      back: null
    volumes:
    - type: volume
      source: pgdata
      target: /var/lib/postgresql/data
    deploy:
      restart_policy:
        condition: any
      update_config:
        failure_action: rollback
        order: stop-first
        monitor: 90s
      rollback_config:
        failure_action: pause
        order: stop-first
        monitor: 90s
      labels:
        io.deployer.fingerprint: 26bc9b194c430b64942d508e9e182239a1bc51993e5eba486b49fd1df4deafa0
        io.deployer.fingerprint.keys: deploy=4840830baa36,environment=14e80e16cf06,healthcheck=46b8d1315ee1,image=f51b8edb3cc5,networks=8e944959032c,volumes=8ee5c1b39627
  web:
    command:
    - httpd
    - -f
    - -p
    - '8080'
    - -h
    - /www
    environment:
      DB_HOST: db
      DB_PASSWORD: db
      GREETING: 'Grüße, "$$HOME" #1 \\o/'
    healthcheck:
      test:
      - CMD
      - wget
      - -q
      - -O-
      - http://127.0.0.1:8080/health
      timeout: 2s
      interval: 5s
      retries: 3
    image: 127.0.0.1:5000/shop/web:1.4.2
    networks:
      back: null
      front: null
    ports:
    - mode: ingress
      target: 8080
      published: 18080
      protocol: tcp
    - mode: host
      target: 9090
      published: 19090
      protocol: tcp
    volumes:
    - type: bind
      source: /srv/shop/www
      target: /www
      read_only: true
    - type: volume
      source: static
      target: /static
    deploy:
      replicas: 2
      restart_policy:
        condition: any
      update_config:
        failure_action: rollback
        order: stop-first
        monitor: 15s
      rollback_config:
        failure_action: pause
        order: stop-first
        monitor: 15s
      labels:
        io.deployer.fingerprint: e452d09334dd3a30c9064677411831414710978c8e91529debd4f06401def6fb
        io.deployer.fingerprint.keys: command=91cb96cfb567,deploy=9c4fcc82f91f,environment=0ab1d07bb7cb,healthcheck=a7be8beb6ae6,image=76167b451609,networks=f12755ba8337,ports=8ca5a94906df,volumes=40add35664fb
  worker:
    image: 127.0.0.1:5000/shop/worker:1.4.2
    networks:
      back: null
    secrets:
    - source: api_key
      target: api_key
    deploy:
      replicas: 2
      resources:
        limits:
          cpus: '0.5'
          memory: '67108864'
      restart_policy:
        condition: on-failure
        max_attempts: 3
      update_config:
        failure_action: rollback
        order: start-first
        monitor: 5s
      rollback_config:
        failure_action: pause
        order: start-first
        monitor: 5s
      labels:
        io.deployer.fingerprint: 15480c69dc5ed50adf2c17d984feef3506b32596d48b6d2277033cc0403ad85b
        io.deployer.fingerprint.keys: deploy=cca32ae73834,image=c895989e783a,networks=8e944959032c,secrets=366f2ac56d30
networks:
  back:
    name: shop_back
  front:
    name: shop_front
volumes:
  pgdata:
    name: shop_pgdata
  static:
    name: shop_static
secrets:
  api_key:
    file: /srv/shop/api_key.txt
    name: shop_api_key
"""


def test_a_shop_converts_whole_with_its_warnings() -> None:
    stack = convert(SHOP)
    assert stack.text() == SHOP_STACK
    assert stack.errors == ()
    assert stack.warnings == (
        Finding("services.db.expose", "Swarm ignores expose: services on a network reach each other on every port", False),
        Finding("services.db.restart", "Swarm has no unless-stopped: tasks restart after any exit (restart_policy any)", False),
        Finding("services.web.build", "Swarm pulls the image, it does not build: build and push it first (`deploy build ENV --push`)", False),
        Finding("services.web.depends_on.db", "Swarm starts services in no order: tasks must wait for their dependencies themselves", False),
        Finding("services.web.volumes.0.source", "Swarm does not create a bind mount's source: /srv/shop/www must exist on every node a task may run on", False),
        Finding("services.worker.profiles", "Compose has applied the profiles (jobs active): the stack file has none", False),
    )  # fmt: skip


def test_the_model_is_left_as_it_was() -> None:
    model = copy.deepcopy(SHOP)
    convert(model)
    assert model == SHOP


# Values as Compose prints them: every `$` doubled, which stack deploy's interpolation undoes.
TRICKY = {
    "QUOTES": 'it\'s "quoted"',
    "DOLLARS": "a$$b $${NOT} $$$$",
    "HASH": "x #not a comment",
    "SPACES": "  lead and trail  ",
    "UNICODE": "Grüße 日本 🚀",
    "BACKSLASHES": "C:\\path\\n\\t\\\\",
    "NEWLINE": "line1\nline2",
    "YAMLISH": "- [a, b]: {c}",
    "EMPTY": "",
    "TRUE": "true",
    "NUMBER": "0123",
    "y": "Y",  # go-yaml v2 (docker CLI 20.10) reads a plain y or Y as a boolean
    "UNSET": None,
}


def test_values_are_kept_byte_for_byte() -> None:
    model = {
        "services": {
            "app": {"image": "app:1", "environment": TRICKY, "command": ["sh", "-c", "echo $$HOME"]}
        }
    }
    text = convert(model).text()
    parsed = yaml.safe_load(text)["services"]["app"]
    assert parsed["environment"] == TRICKY
    assert parsed["command"] == ["sh", "-c", "echo $$HOME"]
    environment = text.split("    environment:\n")[1].split("    image:")[0]
    assert environment == (
        '      QUOTES: it\'s "quoted"\n'
        "      DOLLARS: a$$b $${NOT} $$$$\n"
        "      HASH: 'x #not a comment'\n"
        "      SPACES: '  lead and trail  '\n"
        # PyYAML escapes characters beyond the BMP; YAML reads the escape back as the same.
        '      UNICODE: "Grüße 日本 \\U0001F680"\n'
        "      BACKSLASHES: C:\\path\\n\\t\\\\\n"
        "      NEWLINE: 'line1\n"
        "\n"
        "        line2'\n"
        "      YAMLISH: '- [a, b]: {c}'\n"
        "      EMPTY: ''\n"
        "      'TRUE': 'true'\n"
        "      NUMBER: '0123'\n"
        "      'y': 'Y'\n"
        "      UNSET: null\n"
    )


def test_features_swarm_cannot_honour_are_refused_each_with_its_path() -> None:
    model = {
        "services": {
            "cache": {
                "image": "redis:7",
                "container_name": "cache",
                "network_mode": "host",
                "privileged": True,
                "mem_limit": "67108864",
                "links": ["db:database", "web"],
                "tmpfs": ["/run", "/cache:size=64k"],
            },
            "builder": {"build": {"context": "/srv/app"}},
            "web": {
                "image": "web:1",
                "depends_on": {
                    "db": {"condition": "service_healthy", "required": True},
                    "migrate": {"condition": "service_completed_successfully", "required": True},
                },
                "ports": [
                    {
                        "mode": "ingress",
                        "host_ip": "127.0.0.1",
                        "target": 80,
                        "published": "8080",
                        "protocol": "tcp",
                    }
                ],
                "healthcheck": {"test": ["CMD", "true"], "start_interval": "1s"},
                "deploy": {"mode": "replicated-job", "resources": {"limits": {"pids": 10}}},
                "volumes": [
                    {
                        "type": "volume",
                        "source": "data",
                        "target": "/data",
                        "volume": {"subpath": "x"},
                    }
                ],
            },
        },
        "networks": {"default": {"name": "p_default", "driver": "bridge", "enable_ipv6": True}},
        "configs": {"settings": {"name": "p_settings", "content": "a=1"}},
    }
    stack = convert(model)
    assert [(f.path, f.message) for f in stack.errors] == [
        ("configs.settings.content", "a 3.8 stack file has no content: Swarm would not honour it"),
        ("networks.default.driver", "a bridge network is local to one node: Swarm services need an overlay network"),
        ("networks.default.enable_ipv6", "a 3.8 stack file has no enable_ipv6: Swarm would not honour it"),
        ("services.builder.build", "Swarm cannot build: give the service an image"),
        ("services.cache.container_name", "Swarm names the tasks itself; remove container_name"),
        ("services.cache.links.0", "Swarm has no links: the alias database would not resolve"),
        ("services.cache.mem_limit", "Swarm takes resource limits from deploy.resources only"),
        ("services.cache.network_mode", "a swarm service joins networks, it has no network_mode (for the host's network, attach the service to the external network `host`)"),
        ("services.cache.privileged", "Swarm services cannot run privileged"),
        ("services.cache.tmpfs.1", "tmpfs options (/cache:size=64k): use a volumes entry of type tmpfs (tmpfs.size)"),
        ("services.web.depends_on.db.condition", "Swarm cannot wait for db (service_healthy)"),
        ("services.web.depends_on.migrate.condition", "Swarm cannot wait for migrate (service_completed_successfully)"),
        ("services.web.deploy.mode", "docker CLI 20.10 deploys replicated and global services, not replicated-job"),
        ("services.web.deploy.resources.limits.pids", "a 3.8 stack file has no pids: Swarm would not honour it"),
        ("services.web.ports.0.host_ip", "Swarm publishes on every address of a node, not on 127.0.0.1 only"),
        ("services.web.volumes.0.volume.subpath", "a 3.8 stack file has no subpath: Swarm would not honour it"),
    ]  # fmt: skip
    assert [(f.path, f.message) for f in stack.warnings] == [
        ("services.cache.links.1", "Swarm has no links: web resolves by its service name"),
        ("services.web.healthcheck.start_interval", "Swarm (engine API 1.41) has no start_interval: checks run every interval from the start"),
    ]  # fmt: skip
    # A tmpfs without options becomes a tmpfs mount: Swarm ignores a service's `tmpfs:`.
    assert stack.document["services"]["cache"]["volumes"] == [{"type": "tmpfs", "target": "/run"}]


def rolled(service: dict[str, Any]) -> dict[str, Any]:
    converted = convert({"services": {"s": {"image": "s:1", **service}}})
    deploy: dict[str, Any] = without_fingerprint(converted.document["services"]["s"])["deploy"]
    return deploy


def defaults(order: str, monitor: str) -> dict[str, Any]:
    return {
        "update_config": {"failure_action": "rollback", "order": order, "monitor": monitor},
        "rollback_config": {"failure_action": "pause", "order": order, "monitor": monitor},
    }


VOLUME = {"type": "volume", "source": "data", "target": "/data"}


@pytest.mark.parametrize(
    ("service", "deploy"),
    [
        ({}, defaults("start-first", "5s")),
        # A host-mode port is taken on the node: the old task must stop first.
        (
            {"ports": [{"mode": "host", "target": 80, "published": "8080", "protocol": "tcp"}]},
            defaults("stop-first", "5s"),
        ),
        # Host mode without a published port gets a free port: no conflict.
        (
            {"ports": [{"mode": "host", "target": 80, "protocol": "tcp"}]},
            defaults("start-first", "5s"),
        ),
        (
            {"ports": [{"mode": "ingress", "target": 80, "published": "8080"}]},
            defaults("start-first", "5s"),
        ),
        # One replica writing a volume: never two writers at once.
        ({"volumes": [VOLUME]}, defaults("stop-first", "5s")),
        ({"volumes": [{**VOLUME, "type": "bind", "source": "/srv"}]}, defaults("stop-first", "5s")),
        ({"volumes": [{**VOLUME, "read_only": True}]}, defaults("start-first", "5s")),
        ({"volumes": [VOLUME], "scale": 2}, {"replicas": 2, **defaults("start-first", "5s")}),
        (
            {"volumes": [VOLUME], "deploy": {"mode": "global"}},
            {"mode": "global", **defaults("start-first", "5s")},
        ),
        # The monitor covers the health check's interval times its retries.
        (
            {"healthcheck": {"test": ["CMD", "true"], "interval": "10s", "retries": 5}},
            defaults("start-first", "50s"),
        ),
        (
            {"healthcheck": {"test": ["CMD", "true"], "interval": "1m30s"}},
            defaults("start-first", "270s"),
        ),
        (
            {"healthcheck": {"test": ["CMD", "true"], "interval": "500ms", "retries": 3}},
            defaults("start-first", "5s"),
        ),
        (
            {"healthcheck": {"test": ["CMD", "true"], "interval": "2500ms", "retries": 3}},
            defaults("start-first", "7500ms"),
        ),
        ({"healthcheck": {"test": ["CMD", "true"]}}, defaults("start-first", "90s")),
        ({"healthcheck": {"disable": True}}, defaults("start-first", "5s")),
        ({"healthcheck": {"test": ["NONE"]}}, defaults("start-first", "5s")),
    ],
)
def test_rolling_update_defaults(service: dict[str, Any], deploy: dict[str, Any]) -> None:
    assert rolled(service) == deploy


def test_what_the_compose_file_says_wins_key_by_key() -> None:
    given = {
        "update_config": {"order": "stop-first", "parallelism": 2, "delay": "10s"},
        "rollback_config": {"failure_action": "continue"},
    }
    service = {"healthcheck": {"test": ["CMD", "true"], "interval": "2s", "retries": 4}}
    assert with_rolling_defaults(given, service) == {
        "update_config": {
            "failure_action": "rollback",
            "order": "stop-first",
            "monitor": "8s",
            "parallelism": 2,
            "delay": "10s",
        },
        "rollback_config": {"failure_action": "continue", "order": "start-first", "monitor": "8s"},
    }


def test_durations_as_compose_writes_them() -> None:
    assert [parse_duration(t) for t in ("5s", "1m30s", "1h0m0s", "500ms", "1.5s", "250us")] == [
        5.0, 90.0, 3600.0, 0.5, 1.5, 0.00025,
    ]  # fmt: skip
    assert [format_duration(s) for s in (5.0, 90.0, 7.5, 0.25)] == ["5s", "90s", "7500ms", "250ms"]
    with pytest.raises(ValueError, match="not a duration: '5 s'"):
        parse_duration("5 s")


def test_the_invocation_is_data() -> None:
    stack = convert(SHOP)
    engine = Engine("ssh://deploy@manager1", None)
    assert stack_deploy("shop", engine, stack, registry_auth=False) == Command(
        ("docker", "stack", "deploy", "--compose-file", "-", "--prune", "shop"),
        {"DOCKER_HOST": "ssh://deploy@manager1", "DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": ""},
        SHOP_STACK,
    )
    with_auth = stack_deploy("shop", engine, stack, registry_auth=True)
    assert with_auth.argv == (
        "docker", "stack", "deploy", "--compose-file", "-", "--prune", "--with-registry-auth", "shop",
    )  # fmt: skip


def test_findings_are_placed_in_the_compose_file_that_declares_them(tmp_path: Path) -> None:
    (tmp_path / "compose.yml").write_text(
        "services:\n"
        "  web:\n"
        "    image: web:1\n"
        "    ports:\n"
        "      - 127.0.0.1:8080:80\n"
        "  cache:\n"
        "    image: redis:7\n"
        "    container_name: cache\n"
    )
    (tmp_path / "compose.prod.yml").write_text(
        "services:\n  web:\n    depends_on:\n      db:\n        condition: service_healthy\n"
        "    network_mode: host\n"
    )
    spec_file = tmp_path / "prod.yml"
    spec_file.write_text(
        "project: shop\ncompose_files: [compose.yml, compose.prod.yml]\n"
        "engine: {host: 'unix:///run/manager.sock', orchestrator: swarm}\n"
    )
    spec = load_spec(spec_file)
    stack = convert(
        {
            "services": {
                "web": {
                    "image": "web:1",
                    "depends_on": {"db": {"condition": "service_healthy"}},
                    "network_mode": "host",
                    "ports": [{"host_ip": "127.0.0.1", "target": 80, "published": "8080"}],
                },
                "cache": {"image": "redis:7", "container_name": "cache", "expose": ["6379"]},
                "extra": {"image": "x:1", "privileged": True},
            }
        }
    )
    errors, warnings = located_issues(stack, spec)
    base, prod = tmp_path / "compose.yml", tmp_path / "compose.prod.yml"
    assert [str(e) for e in errors] == [
        f"{base}:8: services.cache.container_name: Swarm names the tasks itself; remove container_name",
        f"{spec_file}: services.extra.privileged: Swarm services cannot run privileged",
        f"{prod}:5: services.web.depends_on.db.condition: Swarm cannot wait for db (service_healthy)",
        f"{prod}:6: services.web.network_mode: a swarm service joins networks, it has no network_mode (for the host's network, attach the service to the external network `host`)",
        f"{base}:4: services.web.ports.0.host_ip: Swarm publishes on every address of a node, not on 127.0.0.1 only",
    ]  # fmt: skip
    # Declared by no file: the service's own line.
    assert [str(w) for w in warnings] == [
        f"{base}:6: services.cache.expose: Swarm ignores expose: services on a network reach each other on every port",
    ]  # fmt: skip


def test_render_shows_the_invocation_with_the_stack_file_masked() -> None:
    model = {
        "services": {
            "db": {"image": "postgres:16", "environment": {"POSTGRES_PASSWORD": "db"}},
            "web": {
                "image": "web:1",
                "environment": {
                    "DB_HOST": "db",
                    "API_TOKEN": "tok-canary-42",
                    "NOTE": "see tok-canary-42",
                },
            },
        }
    }
    stack = convert(model)
    command = stack_deploy("shop", Engine("unix:///run/manager.sock", None), stack, True)
    redact = Redactor()
    redact.add(["tok-canary-42", "db"])
    masked = masked_model(stack.document, SecretPolicy(frozenset()), redact)
    rolling = (
        "    deploy:\n"
        "      update_config:\n"
        "        failure_action: rollback\n"
        "        order: start-first\n"
        "        monitor: 5s\n"
        "      rollback_config:\n"
        "        failure_action: pause\n"
        "        order: start-first\n"
        "        monitor: 5s\n"
        "      labels:\n"
    )
    assert stack_render_text(command, masked, redact) == (
        "# invocation\n"
        "DOCKER_HOST=unix:///run/manager.sock DOCKER_TLS_VERIFY='' DOCKER_CERT_PATH='' "
        "docker stack deploy --compose-file - --prune --with-registry-auth shop <<'STACK'\n"
        "version: '3.8'\n"
        "services:\n"
        "  db:\n"
        "    environment:\n"
        "      POSTGRES_PASSWORD: '***'\n"
        "    image: postgres:16\n"
        f"{rolling}"
        "        io.deployer.fingerprint: 25b44633361a064305126a270d896639e38bb7ef115457c4e6e22de8e31fd5d1\n"
        "        io.deployer.fingerprint.keys: deploy=9951d73d4e8c,environment=14e80e16cf06,image=f51b8edb3cc5\n"
        "  web:\n"
        "    environment:\n"
        "      DB_HOST: db\n"
        "      API_TOKEN: '***'\n"
        "      NOTE: see ***\n"
        "    image: web:1\n"
        f"{rolling}"
        "        io.deployer.fingerprint: 10cc38cb58e0c5365451185dc3f99386d0bdece019a58048b97c8bbcf1d90e8e\n"
        "        io.deployer.fingerprint.keys: deploy=9951d73d4e8c,environment=9690055a9afd,image=530f969e426a\n"
        "STACK"
    )
    assert "tok-canary" in command.stdin  # what stack deploy reads is the real file
    document = stack_render_document(command, masked, redact)
    assert document["stack"] == masked
    assert yaml.safe_load(document["stdin"]) == masked
    assert document["argv"] == list(command.argv)


def test_numbers_compose_writes_as_text_are_numbers_in_the_stack_file() -> None:
    # As Compose 2.40.3 prints them: a file mode in octal text, a tmpfs size in bytes as text.
    model = {
        "services": {
            "agent": {
                "image": "agent:1",
                "secrets": [{"source": "key", "target": "/run/secrets/key", "mode": "0400"}],
                "configs": [{"source": "conf", "target": "/etc/agent.conf", "mode": "0444"}],
                "volumes": [{"type": "tmpfs", "target": "/cache", "tmpfs": {"size": "65536"}}],
                "extra_hosts": ["gateway=10.0.0.1", "v6=::1"],
            },
            "bad": {"image": "bad:1", "secrets": [{"source": "key", "mode": "rw"}]},
        }
    }
    stack = convert(model)
    agent = stack.document["services"]["agent"]
    assert {key: agent[key] for key in ("secrets", "configs", "volumes", "extra_hosts")} == {
        "secrets": [{"source": "key", "target": "key", "mode": 0o400}],
        "configs": [{"source": "conf", "target": "/etc/agent.conf", "mode": 0o444}],
        "volumes": [{"type": "tmpfs", "target": "/cache", "tmpfs": {"size": 65536}}],
        "extra_hosts": ["gateway:10.0.0.1", "v6:::1"],
    }
    assert stack.findings == (
        Finding("services.bad.secrets.0.mode", "expected a number, not 'rw'", True),
    )


def test_the_fingerprint_follows_the_converted_spec_and_not_itself() -> None:
    """Each service carries its spec's digest and each top-level key's in its service labels;
    the labels themselves (and deploy.labels given as a list) do not change them."""
    base = {"image": "web:1", "environment": {"A": "1"}}
    labels = convert({"services": {"s": base}}).document["services"]["s"]["deploy"]["labels"]
    again = convert({"services": {"s": {**base, "deploy": {"labels": labels}}}})
    changed = convert({"services": {"s": {**base, "environment": {"A": "2"}}}})
    listed = convert({"services": {"s": {**base, "deploy": {"labels": ["x=1"]}}}})
    mapped = convert({"services": {"s": {**base, "deploy": {"labels": {"x": "1"}}}}})

    def fingerprint(stack: StackFile) -> tuple[str, dict[str, str]]:
        found = stack.document["services"]["s"]["deploy"]["labels"]
        return found[FINGERPRINT_LABEL], parse_key_fingerprints(found[KEY_FINGERPRINTS_LABEL])

    whole, keys = fingerprint(convert({"services": {"s": base}}))
    assert fingerprint(again) == (whole, keys)
    changed_whole, changed_keys = fingerprint(changed)
    assert changed_whole != whole
    assert sorted(k for k in keys if keys[k] != changed_keys[k]) == ["environment"]
    assert fingerprint(listed) == fingerprint(mapped)
    assert mapped.document["services"]["s"]["deploy"]["labels"]["x"] == "1"


def test_a_key_fingerprints_label_that_is_not_ours_means_nothing() -> None:
    assert parse_key_fingerprints("image=ab12,deploy=cd34") == {"image": "ab12", "deploy": "cd34"}
    assert parse_key_fingerprints("written by hand") == {}
    assert parse_key_fingerprints("") == {}


def test_how_long_swarm_takes_to_update_every_task_of_a_service() -> None:
    checked = {"test": ["CMD", "true"], "interval": "10s", "retries": 3}
    services: dict[str, Any] = {
        "plain": {"image": "reg/a:1"},
        "checked": {"image": "reg/a:1", "healthcheck": checked, "scale": 3},
        "batched": {
            "image": "reg/a:1",
            "healthcheck": checked,
            "scale": 4,
            "deploy": {"update_config": {"parallelism": 2, "delay": "5s"}},
        },
    }
    stack = convert({"services": services})
    assert {n: update_seconds(s) for n, s in stack.document["services"].items()} == {
        "batched": 2 * (10 + 5) + 30,
        "checked": 3 * 10 + 30,
        "plain": 5,
    }
    slow = slow_updates(stack, wait_timeout=50)
    assert [f for f in slow.findings if f not in stack.findings] == [
        Finding(
            "services.batched.deploy",
            "Swarm needs about 60s to update every task (health check interval and delay per "
            "batch, then the monitor), more than deploy.wait_timeout (50s): raise "
            "deploy.wait_timeout or shorten the health check",
            False,
        ),
        Finding(
            "services.checked.deploy",
            "Swarm needs about 60s to update every task (health check interval and delay per "
            "batch, then the monitor), more than deploy.wait_timeout (50s): raise "
            "deploy.wait_timeout or shorten the health check",
            False,
        ),
    ]
