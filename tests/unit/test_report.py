"""What leaves the program: masked, and progress short when not on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

from deployer.cli.console import Console
from deployer.cli.render.history import history_text
from deployer.cli.render.model import masked_model, render_text
from deployer.cli.render.results import promotion_document, promotion_text
from deployer.compose.project import ComposeProject, up
from deployer.core.desired import ComposeFiles
from deployer.core.results import PinnedService, Promotion
from deployer.core.spec import Spec
from deployer.core.variables import Redactor, SecretPolicy
from deployer.infra.engine import Engine
from deployer.state.releases import Release, ServiceRelease


def test_console_masks_free_text_and_prints_data_as_it_is() -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err)
    console.redact.add(["hunter22", "true"])

    console.print("password is hunter22")
    console.error("error: login with hunter22 failed")
    # Documents are masked as data before they reach the console: booleans and names stay.
    console.json({"in_sync": True, "service": "true"})
    console.emit("web  true")

    assert out.getvalue() == (
        'password is ***\n{\n  "in_sync": true,\n  "service": "true"\n}\nweb  true\n'
    )
    assert err.getvalue() == "error: login with *** failed\n"


def test_data_masking_keeps_identifiers_booleans_and_numbers() -> None:
    redact = Redactor()
    redact.add(["postgres", 'pa"ss'])
    model = {
        "name": "postgres",
        "services": {
            "postgres": {
                "image": "postgres:16",
                "container_name": "postgres",
                "command": ["postgres", "-c", 'password=pa"ss'],
                "environment": {
                    "POSTGRES_PASSWORD": "postgres",
                    "POSTGRES_USER": "postgres",
                    "URL": 'postgres://u:pa"ss@db',
                    "image": "postgres",
                },
                "healthcheck": {"test": ["CMD", "pg_isready"], "retries": 5, "disable": False},
                "volumes": [
                    {"type": "volume", "source": "postgres", "target": "/var/lib/postgres"}
                ],
            }
        },
    }

    masked = masked_model(model, SecretPolicy(), redact)

    assert masked == {
        "name": "postgres",
        "services": {
            "postgres": {
                "image": "postgres:16",
                "container_name": "postgres",
                "command": ["***", "-c", "password=***"],
                "environment": {
                    "POSTGRES_PASSWORD": "***",
                    "POSTGRES_USER": "***",
                    "URL": "***://u:***@db",
                    "image": "***",
                },
                "healthcheck": {"test": ["CMD", "pg_isready"], "retries": 5, "disable": False},
                "volumes": [
                    {"type": "volume", "source": "postgres", "target": "/var/lib/postgres"}
                ],
            }
        },
    }


def test_progress_without_a_terminal_is_one_line_per_step_start_and_end() -> None:
    err = io.StringIO()
    console = Console(io.StringIO(), err)

    console.update("web", "waiting for web: starting")
    console.update("worker", "waiting for worker: starting")
    console.update("web", "waiting for web: still starting")
    console.done("web", "web: healthy")
    console.done("worker", "worker: healthy")

    assert err.getvalue() == (
        "waiting for web: starting\nwaiting for worker: starting\nweb: healthy\nworker: healthy\n"
    )


def test_render_text_shows_the_invocation_and_the_masked_model() -> None:
    project = ComposeProject(
        ComposeFiles("shop", (Path("/srv/compose.yml"),), {"DB_PASSWORD": "hunter22"}, frozenset({"DB_PASSWORD"})),
        Engine("unix:///var/run/docker.sock"), "services:\n  web:\n    scale: 2\n",
    )  # fmt: skip
    model = {
        "name": "shop",
        "services": {
            "web": {"image": "web:1", "environment": {"DB_PASSWORD": "hunter22", "A": "1"}}
        },
    }

    redact = Redactor()
    redact.add(["hunter22"])
    masked = masked_model(model, SecretPolicy(frozenset({"DB_PASSWORD"})), redact)

    text = render_text(up(project, [], True), masked, redact)

    assert text == (
        "# invocation\n"
        "DOCKER_HOST=unix:///var/run/docker.sock DOCKER_TLS_VERIFY='' DOCKER_CERT_PATH='' "
        "docker compose --project-name shop "
        "--env-file /dev/fd/3 --file /srv/compose.yml --file - up --detach --pull never --remove-orphans"
        " 3<<'EOF' <<'OVERRIDE'\nDB_PASSWORD=***\nEOF\nservices:\n  web:\n    scale: 2\nOVERRIDE\n"
        "\n# resolved compose model\n"
        "name: shop\nservices:\n  web:\n    image: web:1\n    environment:\n      DB_PASSWORD: '***'\n      A: '1'\n"
    )


def _promotion(edited: str) -> Promotion:
    spec = Spec(
        name="production",
        path=Path("/nowhere/environments/production.yml"),
        project="shop-production",
        compose_files=(),
        env_files=(),
        secrets=frozenset(),
        services={},
        confirm=True,
        wait_timeout=120.0,
        engine_host=None,
    )
    pinned = (
        PinnedService("web", "acme/web:1.0.0", f"acme/web:1.1.0@{DIGEST}", 7),
        PinnedService("worker", "acme/worker:1.0.0", f"acme/worker:1.0.0@{DIGEST}", 5),
    )
    return Promotion("staging", spec.name, spec.path, 7, pinned, "old text", edited)


DIGEST = "sha256:" + "a" * 64


def test_promotion_text_and_document_show_each_service_before_and_pinned() -> None:
    promotion = _promotion("new text")
    assert promotion_text(promotion) == (
        "promote staging #7 -> production: /nowhere/environments/production.yml would pin\n"
        f"  web: acme/web:1.0.0 -> acme/web:1.1.0@{DIGEST}\n"
        f"  worker: acme/worker:1.0.0 -> acme/worker:1.0.0@{DIGEST}"
    )
    assert promotion_document(promotion) == {
        "source": "staging",
        "target": "production",
        "source_release": 7,
        "spec": "/nowhere/environments/production.yml",
        "written": True,
        "services": [
            {"service": "web", "before": "acme/web:1.0.0", "pinned": f"acme/web:1.1.0@{DIGEST}", "source_release": 7},
            {"service": "worker", "before": "acme/worker:1.0.0", "pinned": f"acme/worker:1.0.0@{DIGEST}", "source_release": 5},
        ],
    }  # fmt: skip
    assert promotion_text(_promotion("old text")) == (
        "/nowhere/environments/production.yml already pins what staging #7 runs: nothing to write"
    )


def test_history_says_which_release_of_which_environment_a_release_was_promoted_from() -> None:
    release = Release(
        number=3,
        time="2026-11-28T10:00:00Z",
        performer="alice",
        host="host-a",
        command="deploy production",
        spec_hash="",
        variables_hash="",
        result="success",
        services={"web": ServiceRelease(f"acme/web:1.1.0@{DIGEST}", "sha256:" + "b" * 64, "x")},
        promoted_from={"environment": "staging", "release": 7},
    )
    assert history_text("production", [release]) == (
        "production: 1 release, newest first\n"
        "#3  2026-11-28T10:00:00Z  alice@host-a  success  (deploy production)\n"
        "    promoted from staging #7\n"
        f"    web: acme/web:1.1.0@{DIGEST} (bbbbbbbbbbbb)"
    )
    assert Release.from_record(release.record()) == release
