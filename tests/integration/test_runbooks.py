"""Every runbook in docs/runbooks is run as written, command by command, on the real engine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, Workspace

pytestmark = pytest.mark.integration

RUNBOOKS = ROOT / "docs" / "runbooks"
_BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)
_EXPECTED = re.compile(r"\s+#\s*exit\s+([\d|]+)\s*$")


def commands(runbook: Path) -> list[tuple[str, set[int]]]:
    """The `$ ` lines of the runbook's console blocks, with the exit codes each may end with."""
    found = []
    for block in _BLOCK.findall(runbook.read_text()):
        for line in block.splitlines():
            line = line.strip()
            if not line.startswith("$ "):
                continue
            command = line[2:]
            expected = {0}
            if match := _EXPECTED.search(command):
                expected = {int(code) for code in match.group(1).split("|")}
                command = command[: match.start()]
            found.append((command, expected))
    return found


def deployed(*names: str) -> Callable[[Workspace], None]:
    def setup(space: Workspace) -> None:
        for name in names:
            result = space.deploy(name, "--yes")
            assert result.returncode == 0, result.stderr

    return setup


def production_twice(space: Workspace) -> None:
    deployed("production")(space)
    spec = space.environments / "production.yml"
    spec.write_text(spec.read_text().replace('tag: "1.0.0"', 'tag: "1.1.0"'))
    deployed("production")(space)


def staging_drifted(space: Workspace) -> None:
    deployed("staging")(space)
    space.containers("worker")[0].stop(timeout=1)


def stale_staging_lock(space: Workspace) -> None:
    deployed("staging")(space)
    result = space.deploy(
        "lock", "acquire", "staging", "--reason", "deploy that died", "--ttl", "0.5"
    )
    assert result.returncode == 0, result.stderr
    time.sleep(1)


SETUP: dict[str, Callable[[Workspace], None]] = {
    "deploy-to-staging.md": deployed(),
    "build-and-promote.md": deployed(),
    "promote-staging-to-production.md": deployed("staging", "production"),
    "rollback-production.md": production_twice,
    "investigate-drift.md": staging_drifted,
    "rotate-a-secret.md": deployed("staging"),
    "free-disk-space.md": deployed("staging"),
    "stale-lock.md": stale_staging_lock,
}


def test_every_runbook_is_tested() -> None:
    assert sorted(p.name for p in RUNBOOKS.glob("*.md") if p.name != "README.md") == sorted(SETUP)
    assert all(commands(RUNBOOKS / name) for name in SETUP)


@pytest.mark.parametrize("name", sorted(SETUP))
def test_runbook(name: str, example: Workspace) -> None:
    SETUP[name](example)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, **example.env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    # Runbooks run from the repository root, where ./environments is found by default.
    env.pop("DEPLOYER_ENVIRONMENTS")

    for command, expected in commands(RUNBOOKS / name):
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=example.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode in expected, (
            f"{name}: `{command}` exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
