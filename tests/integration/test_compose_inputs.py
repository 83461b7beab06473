"""What Compose is given: the variables for interpolation only, never as the docker CLI's own
environment; the override whole, whatever happens to deployer while Compose starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import REGISTRY, Workspace

pytestmark = pytest.mark.integration


def test_env_file_variables_do_not_configure_the_docker_cli(workspace: Workspace) -> None:
    """DOCKER_CONFIG and HTTPS_PROXY in an env file are values for the containers. As the docker
    CLI's own settings, DOCKER_CONFIG is where it looks for credentials and plugins: the app's
    folder here holds another `docker-compose`, which the CLI would run instead of Compose. For
    interpolation only, the deploy goes through and the containers get the values."""
    elsewhere = workspace.root / "elsewhere"
    (elsewhere / "cli-plugins").mkdir(parents=True)
    plugin = elsewhere / "cli-plugins" / "docker-compose"
    plugin.write_text(NOT_COMPOSE, encoding="utf-8")
    plugin.chmod(0o755)
    workspace.write(
        "app/compose.yml",
        f"services:\n  web:\n    image: {REGISTRY}/testapp:1.0.0\n    environment:\n"
        "      APP_CONFIG_DIR: ${DOCKER_CONFIG}\n      APP_PROXY: ${HTTPS_PROXY}\n",
    )
    workspace.write(
        "app/.env", f"DOCKER_CONFIG={elsewhere}\nHTTPS_PROXY=http://proxy.invalid:3128\n"
    )
    workspace.write(
        "test.yml",
        f"project: {workspace.project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n",
    )
    shell = {name: value for name, value in os.environ.items() if name not in _CLI_SETTINGS}

    result = workspace.deploy("test", "--yes", env=shell)

    assert result.returncode == 0, result.stderr
    [web] = workspace.containers("web")
    environment = dict(entry.split("=", 1) for entry in web.attrs["Config"]["Env"])
    assert (environment["APP_CONFIG_DIR"], environment["APP_PROXY"]) == (
        str(elsewhere),
        "http://proxy.invalid:3128",
    )
    assert workspace.deploy("diff", "test", env=shell).returncode == 0


_CLI_SETTINGS = ("DOCKER_CONFIG", "HTTPS_PROXY", "https_proxy")
NOT_COMPOSE = """#!/bin/sh
if [ "$1" = docker-cli-plugin-metadata ]; then
  echo '{"SchemaVersion": "0.1.0", "Vendor": "the app", "Version": "v0.0.1"}'
  exit 0
fi
echo "the app's docker-compose, not Compose" >&2
exit 3
"""

# A docker CLI that starts slowly when asked for `compose ... up`: it says so (the file
# STARTED), waits, then keeps what it was given on stdin (the file STDIN) and hands it on to the
# real CLI. A deployer interrupted meanwhile must still have given it the whole override.
SLOW_DOCKER = """#!/bin/sh
case " $* " in
  *" compose "*" up "*)
    touch {slow}/STARTED
    sleep 2
    cat > {slow}/STDIN
    exec {docker} "$@" < {slow}/STDIN ;;
esac
exec {docker} "$@"
"""


def test_an_interrupt_while_compose_starts_leaves_it_the_whole_override(
    workspace: Workspace,
) -> None:
    """Over 64 KiB of override (a pipe's buffer), written while Compose had not read yet: Ctrl-C
    then used to close its stdin early, and Compose ran on half a document."""
    big = "x" * 100_000  # a long certificate or key list in the spec's environment, say
    workspace.write(
        "app/compose.yml",
        f"services:\n  web:\n    image: {REGISTRY}/testapp:1.0.0\n"
        f"  worker:\n    image: {REGISTRY}/testapp:1.0.0\n",
    )
    workspace.write(
        "test.yml",
        f"project: {workspace.project}\ncompose_files: [app/compose.yml]\n"
        f"services:\n  web:\n    environment:\n      BIG: {big}\n",
    )
    slow = workspace.root / "slow"
    slow.mkdir()
    docker = subprocess.run(["which", "docker"], capture_output=True, text=True, check=True)
    wrapper = slow / "docker"
    wrapper.write_text(
        SLOW_DOCKER.format(docker=docker.stdout.strip(), slow=slow), encoding="utf-8"
    )
    wrapper.chmod(0o755)
    env = {
        **os.environ,
        **workspace.env,
        "PATH": f"{slow}:{os.environ['PATH']}",
    }

    deploy = subprocess.Popen(
        [sys.executable, "-m", "deployer", "test", "--yes"],
        cwd=workspace.root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(slow / "STARTED", deploy)
        deploy.send_signal(signal.SIGINT)  # what Ctrl-C sends
        _, stderr = deploy.communicate(timeout=120)
    finally:
        if deploy.poll() is None:
            deploy.kill()

    override = yaml.safe_load((slow / "STDIN").read_text(encoding="utf-8"))
    assert sorted(override["services"]) == ["web", "worker"], stderr
    assert override["services"]["web"]["environment"]["BIG"] == big
    assert deploy.returncode == 130, stderr
    assert "`docker compose up` was not cut short" in stderr
    assert workspace.deploy("diff", "test").returncode == 0
    [web] = workspace.containers("web")
    assert f"BIG={big}" in web.attrs["Config"]["Env"]


def _wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)
