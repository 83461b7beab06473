"""Commands as data: whole argv, environment and shell rendering."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from deployer.compose import project as compose
from deployer.compose.project import ComposeProject
from deployer.core.command import Command, InputFile
from deployer.core.desired import ComposeFiles
from deployer.core.variables import Redactor
from deployer.infra.engine import Engine
from deployer.infra.runner import tool_environment

PROJECT = ComposeProject(
    files=ComposeFiles(
        project="shop-staging",
        paths=(Path("/srv/shop/compose.yml"), Path("/srv/shop/compose.prod.yml")),
        variables={"TAG": "1.4.2", "DB_PASSWORD": "hunter2", "GREETING": "it's me"},
        secret_names=frozenset({"DB_PASSWORD"}),
    ),
    engine=Engine("unix:///var/run/docker.sock"),
    override="services:\n  web:\n    scale: 2\n",
)


# What every command of PROJECT carries besides its argv: the engine, deployer's overrides on
# stdin, the merged variables as its env file (secret values masked as shown).
PROJECT_SETTINGS: dict[str, Any] = {
    "env": {
        "DOCKER_HOST": "unix:///var/run/docker.sock",
        "DOCKER_TLS_VERIFY": "",
        "DOCKER_CERT_PATH": "",
    },
    "stdin": "services:\n  web:\n    scale: 2\n",
    "secret_names": frozenset({"DB_PASSWORD"}),
    "files": {
        "/dev/fd/3": InputFile(
            'TAG="1.4.2"\nDB_PASSWORD="hunter2"\nGREETING="it\'s me"\n',
            'TAG="1.4.2"\nDB_PASSWORD=***\nGREETING="it\'s me"\n',
        )
    },
}


def test_up_argv_env_and_stdin() -> None:
    command = compose.up(PROJECT, ["web", "worker"], remove_orphans=True)

    assert command == Command(
        argv=(
            "docker",
            "compose",
            "--project-name",
            "shop-staging",
            "--env-file",
            "/dev/fd/3",
            "--file",
            "/srv/shop/compose.yml",
            "--file",
            "/srv/shop/compose.prod.yml",
            "--file",
            "-",
            "up",
            "--detach",
            "--pull",
            "never",
            "--remove-orphans",
            "web",
            "worker",
        ),
        **PROJECT_SETTINGS,
    )


def test_variables_reach_compose_as_its_env_file_never_as_its_environment() -> None:
    """HTTPS_PROXY or DOCKER_CONFIG in an env file are for interpolation: as the docker CLI's own
    variables they would change how it runs."""
    variables = {"HTTPS_PROXY": "http://proxy:3128", "DOCKER_CONFIG": "/elsewhere"}
    project = replace(PROJECT, files=replace(PROJECT.files, variables=variables))
    command = compose.config_json(project)
    assert command.env == PROJECT.engine.cli_environment()
    assert command.files["/dev/fd/3"].content == (
        'HTTPS_PROXY="http://proxy:3128"\nDOCKER_CONFIG="/elsewhere"\n'
    )


def test_env_file_escapes_what_compose_would_read_otherwise() -> None:
    values = {"A": 'it\'s "q" $X ${Y} $$ \\n', "B": "line1\nline2\r\n", "C": "", "D": "# x "}
    assert compose.env_file(values, frozenset({"D"})) == InputFile(
        'A="it\'s \\"q\\" $$X $${Y} $$$$ \\\\n"\nB="line1\\nline2\\r\\n"\nC=""\nD="# x "\n',
        'A="it\'s \\"q\\" $$X $${Y} $$$$ \\\\n"\nB="line1\\nline2\\r\\n"\nC=""\nD=***\n',
    )


def test_config_without_override_reads_no_stdin() -> None:
    command = compose.config_json(PROJECT.with_override(None))
    assert command.argv == (
        "docker", "compose", "--project-name", "shop-staging", "--env-file", "/dev/fd/3",
        "--file", "/srv/shop/compose.yml", "--file", "/srv/shop/compose.prod.yml",
        "config", "--format", "json",
    )  # fmt: skip
    assert command.stdin is None


def test_shell_form_is_quoted_and_masks_secrets() -> None:
    variables = {**PROJECT.files.variables, "DSN": "db://u:hunter2@db"}
    project = replace(PROJECT, files=replace(PROJECT.files, variables=variables))
    command = compose.up(project, [], remove_orphans=False)
    redact = Redactor()
    redact.add(["hunter2"])
    assert command.shell(redact) == (
        "DOCKER_HOST=unix:///var/run/docker.sock DOCKER_TLS_VERIFY='' DOCKER_CERT_PATH='' "
        "docker compose --project-name shop-staging --env-file /dev/fd/3 --file /srv/shop/compose.yml "
        "--file /srv/shop/compose.prod.yml --file - up --detach --pull never 3<<'EOF'"
    )
    assert command.here_documents(redact) == (
        'TAG="1.4.2"\nDB_PASSWORD=***\nGREETING="it\'s me"\nDSN="db://u:***@db"\nEOF\n'
    )


def test_engine_choice_spec_then_docker_host_then_default() -> None:
    assert (
        Engine.choose("ssh://deploy@host", {"DOCKER_HOST": "tcp://x:2376"}).host
        == "ssh://deploy@host"
    )
    assert Engine.choose(None, {"DOCKER_HOST": "tcp://x:2376"}).host == "tcp://x:2376"
    assert Engine.choose(None, {}).host == "unix:///var/run/docker.sock"


def test_processes_inherit_only_what_the_docker_cli_needs() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "DOCKER_CONFIG": "/root/.docker",
        "DOCKER_HOST": "unix:///run/docker.sock",
        "LC_ALL": "C.UTF-8",
        "https_proxy": "http://proxy:3128",
        "TAG": "2.0",
        "DB_PASSWORD": "from-the-shell",
        "COMPOSE_PROFILES": "debug",
        "DEPLOYER_LOCK": "0123abcd",
    }
    assert tool_environment(environ) == {
        "PATH": "/usr/bin",
        "HOME": "/root",
        "DOCKER_CONFIG": "/root/.docker",
        "DOCKER_HOST": "unix:///run/docker.sock",
        "LC_ALL": "C.UTF-8",
        "https_proxy": "http://proxy:3128",
        "DEPLOYER_LOCK": "0123abcd",
    }


def test_build_argv_has_the_overrides_on_stdin() -> None:
    command = compose.build(PROJECT, ["tool"])

    assert command.argv == (
        "docker", "compose", "--project-name", "shop-staging", "--env-file", "/dev/fd/3",
        "--file", "/srv/shop/compose.yml", "--file", "/srv/shop/compose.prod.yml", "--file", "-",
        "build", "tool",
    )  # fmt: skip
    assert (command.stdin, command.env) == (PROJECT.override, compose.up(PROJECT, [], False).env)


def test_scale_beside_starts_new_containers_and_recreates_none() -> None:
    command = compose.scale_beside(PROJECT, "web", 4)

    assert command == Command(
        argv=(
            "docker", "compose", "--project-name", "shop-staging", "--env-file", "/dev/fd/3",
            "--file", "/srv/shop/compose.yml", "--file", "/srv/shop/compose.prod.yml",
            "--file", "-",
            "up", "--detach", "--pull", "never", "--no-recreate", "--scale", "web=4", "web",
        ),
        **PROJECT_SETTINGS,
    )  # fmt: skip


def test_containers_are_stopped_and_removed_by_name_on_the_projects_engine() -> None:
    names = ["shop-web-1", "shop-web-2"]
    env = {
        "DOCKER_HOST": "unix:///var/run/docker.sock",
        "DOCKER_TLS_VERIFY": "",
        "DOCKER_CERT_PATH": "",
    }

    assert compose.stop_containers(PROJECT.engine, names) == Command(
        ("docker", "stop", "shop-web-1", "shop-web-2"), env
    )
    assert compose.remove_containers(PROJECT.engine, names) == Command(
        ("docker", "rm", "--force", "--volumes", "shop-web-1", "shop-web-2"), env
    )
    assert compose.remove_containers(Engine("ssh://deploy@web1"), ("shop-web-3",)) == Command(
        ("docker", "rm", "--force", "--volumes", "shop-web-3"),
        {"DOCKER_HOST": "ssh://deploy@web1", "DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": ""},
    )
