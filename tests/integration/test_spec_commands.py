"""`deploy validate`, `render` and `env` with the real Compose CLI resolving the model."""

from __future__ import annotations

import json
import shlex

import pytest

from tests.integration.conftest import Workspace

pytestmark = pytest.mark.integration


def test_validate_render_and_env_on_the_shipped_example(example: Workspace) -> None:
    validated = example.deploy("validate")
    assert (validated.returncode, validated.stdout, validated.stderr) == (
        0,
        "ok: production, staging\n",
        "",
    )

    rendered = example.deploy("render", "staging", "--json")
    assert rendered.returncode == 0, rendered.stderr
    document = rendered.json()
    assert isinstance(document, dict)
    compose_file = str(example.environments / "shop/compose.yml")
    assert document["argv"] == [
        "docker", "compose", "--project-name", example.project, "--env-file", "/dev/fd/3",
        "--file", compose_file, "--file", "-", "up", "--detach", "--pull", "never", "--remove-orphans",
    ]  # fmt: skip
    variables = dict(line.split("=", 1) for line in document["files"]["/dev/fd/3"].splitlines())
    assert variables["DB_PASSWORD"] == "***"
    assert variables["LOG_LEVEL"] == '"debug"'
    assert "DB_PASSWORD" not in document["env"]
    web = document["model"]["services"]["web"]
    assert web["image"].endswith("/shop-web:1.1.0")
    assert web["environment"] == {
        "DB_PASSWORD": "***",
        "GREETING": "Hello from the shop (staging)",
        "LOG_LEVEL": "debug",
    }
    assert document["model"]["services"]["worker"]["scale"] == 2
    assert "staging-db-password" not in rendered.stdout

    text = example.deploy("render", "staging").stdout
    invocation = text.split("\n")[1]
    assert shlex.split(invocation)[-1] == "<<OVERRIDE"
    assert "\nDB_PASSWORD=***\n" in text.split("# resolved compose model")[0]
    assert "staging-db-password" not in text

    listed = example.deploy("env", "staging", "--json")
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["DB_PASSWORD"]["value"] == "***"
    assert rows["LOG_LEVEL"] == {
        "name": "LOG_LEVEL",
        "value": "debug",
        "source": f"{example.environments / 'shop/.env.staging'}:2",
        "secret": False,
    }
    assert rows["WEB_PUBLISH"]["source"] == "process environment"


def test_validate_reports_every_problem_of_every_environment_at_once(workspace: Workspace) -> None:
    workspace.write(
        "app/compose.yml", "services:\n  web:\n    image: ${REGISTRY:?set REGISTRY}/web:1\n"
    )
    workspace.write("unset.yml", "project: a\ncompose_files: [app/compose.yml]\n")
    workspace.write(
        "ghost.yml",
        "project: b\ncompose_files: [app/compose.yml]\nservices:\n  api: {tag: '2'}\n",
    )
    workspace.write("broken.yml", "project: c\ncompose_files: [app/missing.yml]\n")

    result = workspace.deploy("validate", env={"REGISTRY": ""})

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: environments/broken.yml:2: compose_files.0: file not found: environments/app/missing.yml",
        "error: environments/app/compose.yml:3: compose: required variable REGISTRY is missing a value: set REGISTRY",
        "error: environments/app/compose.yml:3: compose: required variable REGISTRY is missing a value: set REGISTRY",
    ]

    fixed = workspace.deploy("validate", "ghost", env={"REGISTRY": "127.0.0.1:5000"})
    assert fixed.returncode == 1
    assert fixed.stderr == (
        "error: environments/ghost.yml:4: services.api: no service 'api' in the compose files (services: web)\n"
    )


def test_compose_rejecting_the_model_is_a_config_error(workspace: Workspace) -> None:
    workspace.write("app/compose.yml", "services:\n  web:\n    imag: web:1\n")
    workspace.write("test.yml", "project: a\ncompose_files: [app/compose.yml]\n")

    result = workspace.deploy("validate", "test")

    assert result.returncode == 1
    assert result.stderr == (
        "error: environments/app/compose.yml: compose: validating "
        f"{workspace.environments / 'app/compose.yml'}: services.web additional properties 'imag' not allowed\n"
    )
