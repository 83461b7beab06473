"""The CLI in-process: command names, exit codes, one-line errors, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer import cli
from deployer.core.spec import COMMAND_NAMES


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        cli.main(list(args))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_reserved_names_are_exactly_the_commands() -> None:
    commands = {
        c.name or (c.callback.__name__ if c.callback else "") for c in cli.app.registered_commands
    }
    groups = {g.name for g in cli.app.registered_groups}
    assert commands | groups == COMMAND_NAMES


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    listed = [line.split()[0] for line in out.split("Commands:")[1].strip().splitlines()]
    assert listed == [
        "validate", "render", "env", "diff", "up", "rollback", "history", "audit",
        "status", "promote", "logs", "restart", "build", "down", "prune", "serve", "version", "lock",
    ]  # fmt: skip


def test_no_command_shows_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert (code, err) == (0, "")
    assert out.startswith("Usage: deploy [OPTIONS] COMMAND [ARGS]...\n")
    code, out, err = run(capsys, "lock")
    assert (code, err) == (0, "")
    assert out.startswith("Usage: deploy lock [OPTIONS] COMMAND [ARGS]...\n")


@pytest.fixture
def environments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "environments"
    (folder / "app").mkdir(parents=True)
    (folder / "app/compose.yml").write_text("services:\n  web:\n    image: web:1\n")
    (folder / "app/.env").write_text("A=1\nAPI_TOKEN=tok-canary-123\n")
    (folder / "good.yml").write_text(
        "project: good\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
    )
    monkeypatch.chdir(tmp_path)
    return folder


BAD_INPUTS = {
    "malformed YAML": (
        "project: [\n",
        ":2: invalid YAML: expected the node content, but found '<stream end>'",
    ),
    "not a mapping": (
        "just text\n",
        ":1: expected a mapping with project and compose_files, got a string",
    ),
    "empty file": ("", ": empty file: expected a mapping with project and compose_files"),
    "unknown key": (
        "project: p\ncompose_files: [app/compose.yml]\nfoo: 1\n",
        ":3: foo: unknown key",
    ),
    "wrong type": (
        "project: p\ncompose_files: [app/compose.yml]\ndeploy: {confirm: maybe}\n",
        ":3: deploy.confirm: expected a boolean, got a string",
    ),
    "missing compose file": (
        "project: p\ncompose_files: [app/nope.yml]\n",
        ":2: compose_files.0: file not found: {folder}/app/nope.yml",
    ),
    "missing env file": (
        "project: p\ncompose_files: [app/compose.yml]\nenv_files: [app/.env.nope]\n",
        ":3: env_files.0: file not found: {folder}/app/.env.nope",
    ),
    "invalid project name": (
        "project: -shop\ncompose_files: [app/compose.yml]\n",
        ":1: project: invalid project name '-shop': use lowercase letters, digits, '_' and '-', starting with a letter or digit",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_spec_one_clear_line_exit_1(
    case: str, environments: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, suffix = BAD_INPUTS[case]
    (environments / "bad.yml").write_text(text)
    before = sorted(p.name for p in environments.parent.rglob("*"))

    code, out, err = run(capsys, "env", "bad")

    assert (code, out) == (1, "")
    assert err == f"error: environments/bad.yml{suffix.format(folder='environments')}\n"
    assert sorted(p.name for p in environments.parent.rglob("*")) == before


def test_env_file_not_utf8(environments: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (environments / "app/.env").write_bytes(b"A=1\nB=\xff\n")
    code, out, err = run(capsys, "env", "good")
    assert (code, out, err) == (
        1,
        "",
        "error: environments/app/.env:2: env file is not valid UTF-8 text\n",
    )


def test_unknown_environment(environments: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "diff", "stagign")
    assert (code, err) == (
        1,
        "error: unknown environment 'stagign' in environments (known: good)\n",
    )


def test_usage_errors_exit_1_not_2(environments: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "diff", "good", "--bogus")
    assert code == 1
    assert err.splitlines()[0] == "error: No such option '--bogus'."


def test_debug_shows_the_traceback(environments: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--debug", "env", "nope")
    assert code == 1
    assert err.startswith("Traceback (most recent call last):")
    assert err.endswith("error: unknown environment 'nope' in environments (known: good)\n")


def test_env_lists_values_masks_secrets_and_names_sources(
    environments: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("A", "from the shell")
    code, out, err = run(capsys, "env", "good")
    env_file = (environments / "app/.env").resolve()
    assert (code, err) == (0, "")
    assert out == (
        "NAME       VALUE           SOURCE\n"
        "A          from the shell  process environment\n"
        f"API_TOKEN  ***             {env_file}:2\n"
    )
    code, out, _ = run(capsys, "env", "good", "--json")
    assert "tok-canary" not in out


def test_engine_nodes_outside_a_swarm_is_refused_where_it_is_written(
    environments: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (environments / "cluster.yml").write_text(
        "project: cluster\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        "engine:\n  host: 'unix:///nonexistent/engine.sock'\n"
        "  nodes: {dh4: 'unix:///run/dh4/docker.sock'}\n"
    )

    code, out, err = run(capsys, "prune", "cluster")

    assert (code, out, err) == (
        1,
        "",
        "error: environments/cluster.yml:6: engine.nodes: only a swarm has nodes "
        "(engine.orchestrator: swarm)\n",
    )


def test_down_volumes_on_a_swarm_is_refused_before_any_engine_is_reached(
    environments: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (environments / "cluster.yml").write_text(
        "project: cluster\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        "engine: {host: 'unix:///nonexistent/manager.sock', orchestrator: swarm}\n"
    )

    code, out, err = run(capsys, "down", "cluster", "--volumes", "--yes")

    assert (code, out, err) == (
        1,
        "",
        "error: cluster is a swarm stack: its volumes are on each node that ran its tasks, "
        "out of reach of `deploy down --volumes`; nothing changed (`deploy down cluster`, "
        "then `docker volume rm` on each node)\n",
    )
