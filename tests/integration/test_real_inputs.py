"""Compose and env files written elsewhere: dev-default secrets, flags named like secrets, values
with quotes and backslashes, layered env files, variables from the shell."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import ENGINE_HOST, REGISTRY, Workspace, ok

pytestmark = pytest.mark.integration

# A secret with a quote, a double quote, a backslash and a dollar: each output escapes it its own way.
CANARY = "ca'n\"a\\ry$x-zq"
# How the canary would look if it leaked: as is, JSON-escaped, YAML single-quoted, `$` doubled.
CANARY_FORMS = [
    CANARY,
    json.dumps(CANARY)[1:-1],
    CANARY.replace("'", "''"),
    CANARY.replace("$", "$$"),
]


def dev_defaults(workspace: Workspace) -> None:
    """A compose file as found in many repositories: the password equals the service's name."""
    workspace.write(
        "app/compose.yml",
        f"services:\n  testapp:\n    image: {REGISTRY}/testapp:1.0.0\n"
        "    environment:\n      MYSQL_PASSWORD: ${MYSQL_PASSWORD}\n"
        "      KEYCLOAK_ENABLED: ${KEYCLOAK_ENABLED}\n",
    )
    workspace.write("app/.env", "MYSQL_PASSWORD=testapp\nKEYCLOAK_ENABLED=true\n")
    workspace.write(
        "test.yml",
        f"project: {workspace.project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        "deploy: {wait_timeout: 30}\n",
    )


def test_a_secret_equal_to_a_service_name_masks_values_not_names(workspace: Workspace) -> None:
    dev_defaults(workspace)

    validated = workspace.deploy("validate", "test")
    ok(workspace.deploy("test", "--yes"))
    diff = workspace.deploy("diff", "test", "--json")
    status = workspace.deploy("status", "test", "--json")
    status_text = workspace.deploy("status", "test")
    env = workspace.deploy("env", "test", "--json")

    assert (validated.returncode, validated.stdout) == (0, "ok: test\n")
    assert validated.stderr == (
        "warning: environments/app/.env:1: MYSQL_PASSWORD: weak secret: its value is also a "
        "name in this environment (service, image, project, network, volume or host)\n"
    )
    assert diff.returncode == 0
    assert json.loads(diff.stdout) == {
        "environment": "test",
        "project": workspace.project,
        "in_sync": True,
        "changes": [],
        "notes": [],
        "hosts": [
            {"host": ENGINE_HOST, "in_sync": True, "changes": [], "notes": [], "error": None}
        ],
    }
    assert status.returncode == 0, status.stderr
    [service] = json.loads(status.stdout)["services"]
    assert (service["service"], service["desired_image"]) == (
        "testapp",
        f"{REGISTRY}/testapp:1.0.0",
    )
    assert service["containers"][0]["name"] == f"{workspace.project}-testapp-1"
    assert f"{REGISTRY}/testapp:1.0.0" in status_text.stdout
    assert "***" not in status_text.stdout
    rows = {row["name"]: row for row in json.loads(env.stdout)}
    # A flag whose name merely contains KEY is not a secret.
    assert rows["KEYCLOAK_ENABLED"] == {
        "name": "KEYCLOAK_ENABLED",
        "value": "true",
        "source": f"{workspace.environments / 'app/.env'}:2",
        "secret": False,
    }
    assert rows["MYSQL_PASSWORD"]["value"] == "***"


def test_every_json_output_is_valid_json_and_holds_no_secret(workspace: Workspace) -> None:
    workspace.write(
        "app/compose.yml",
        f"services:\n  web:\n    image: {REGISTRY}/testapp:1.0.0\n"
        '    command: ["httpd", "-f", "-p", "8080", "-h", "/www", "-r", "${DB_PASSWORD}"]\n'
        "    environment:\n      DB_PASSWORD: ${DB_PASSWORD}\n      DSN: db://app:${DB_PASSWORD}@db\n"
        "      FLAG: ${FLAG}\n",
    )
    # A declared secret whose value is `true`: masking it as text used to break the JSON.
    # Single quotes: Compose reads the canary as is (`\'` is a quote, nothing is interpolated).
    quoted = "'" + CANARY.replace("'", "\\'") + "'"
    workspace.write("app/.env", f"DB_PASSWORD={quoted}\nFLAG=true\n")
    workspace.write(
        "test.yml",
        f"project: {workspace.project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        "secrets: [FLAG]\ndeploy: {wait_timeout: 30}\n",
    )

    outputs = {"deploy": ok(workspace.deploy("test", "--yes", "--json"))}
    for command in (
        ["diff", "test"],
        ["render", "test"],
        ["env", "test"],
        ["status", "test"],
        ["history", "test"],
        ["audit", "test"],
        ["lock", "status", "test"],
        ["prune", "test", "--dry-run"],
    ):
        outputs[" ".join(command)] = workspace.deploy(*command, "--json")
    outputs["render text"] = workspace.deploy("render", "test")

    documents = {}
    for name, result in outputs.items():
        assert result.returncode in (0, 2), (name, result.stderr)
        if name != "render text":
            documents[name] = json.loads(result.stdout)
        for form in CANARY_FORMS:
            assert form not in result.stdout + result.stderr, (name, form)
    assert documents["diff test"]["in_sync"] is True
    rendered = documents["render test"]["model"]["services"]["web"]
    assert rendered["command"][-1] == "***"
    assert rendered["environment"] == {
        "DB_PASSWORD": "***",
        "DSN": "db://app:***@db",
        "FLAG": "***",
    }
    [web] = workspace.containers("web")
    assert web.attrs["Config"]["Cmd"][-1] == CANARY  # the container itself got the real value


def test_layered_env_files_and_shell_variables_as_compose_sees_them(workspace: Workspace) -> None:
    workspace.write(
        "app/compose.yml",
        "services:\n  web:\n    image: ${REGISTRY}/testapp:${TAG:-1.0.0}\n"
        "    environment:\n      CHAIN: ${CHAIN}\n    env_file: [web.env]\n",
    )
    workspace.write("app/web.env", "FROM_ENV_FILE=${UNREFERENCED:-not seen}\n")
    workspace.write("app/.env", f"REGISTRY={REGISTRY}\n")
    workspace.write("app/.env.staging", "CHAIN=${REGISTRY}/web\n")
    workspace.write(
        "test.yml",
        f"project: {workspace.project}\ncompose_files: [app/compose.yml]\n"
        "env_files: [app/.env, app/.env.staging]\ndeploy: {wait_timeout: 30}\n",
    )
    shell = {"TAG": "1.1.0", "UNREFERENCED": "leaked"}

    env = json.loads(ok(workspace.deploy("env", "test", "--json", env=shell)).stdout)
    ok(workspace.deploy("test", "--yes", env=shell))
    ok(workspace.deploy("test", "--yes", env={"TAG": "2.0.0"}))
    history = json.loads(ok(workspace.deploy("history", "test", "--json")).stdout)

    assert [(row["name"], row["value"], row["source"]) for row in env] == [
        ("CHAIN", f"{REGISTRY}/web", f"{workspace.environments / 'app/.env.staging'}:1"),
        ("REGISTRY", REGISTRY, f"{workspace.environments / 'app/.env'}:1"),
        ("TAG", "1.1.0", "process environment"),
    ]
    [web] = workspace.containers("web")
    environment = dict(entry.split("=", 1) for entry in web.attrs["Config"]["Env"])
    assert web.attrs["Config"]["Image"] == f"{REGISTRY}/testapp:2.0.0"
    assert environment["CHAIN"] == f"{REGISTRY}/web"
    # Compose sees only the variables deployer shows: a shell variable no file names stays out.
    assert environment["FROM_ENV_FILE"] == "not seen"
    # The shell's TAG is part of what a release records.
    assert history[0]["variables_hash"] != history[1]["variables_hash"]


def test_validate_refuses_an_env_file_compose_refuses(workspace: Workspace) -> None:
    workspace.write("app/compose.yml", f"services:\n  web:\n    image: {REGISTRY}/testapp:1.0.0\n")
    workspace.write("app/.env", "X=1\nF='${X}'\nAPI_TOKEN=${UNSET:?set it}\n")
    workspace.write(
        "test.yml", "project: a\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
    )

    result = workspace.deploy("validate", "test")

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "error: environments/app/.env:3: required variable UNSET is missing a value: set it\n"
    )


def test_a_required_variable_of_a_spec_override_names_the_spec_line(workspace: Workspace) -> None:
    workspace.write("app/compose.yml", f"services:\n  web:\n    image: {REGISTRY}/testapp:1.0.0\n")
    workspace.write(
        "test.yml",
        "project: a\ncompose_files: [app/compose.yml]\nservices:\n  web:\n    environment:\n"
        "      NEED: '${NOT_SET:?must be set}'\n",
    )

    result = workspace.deploy("validate", "test")

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "error: environments/test.yml:6: services.web.environment.NEED: compose: required "
        "variable NOT_SET is missing a value: must be set\n"
    )
