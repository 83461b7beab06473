"""Real inputs from elsewhere: image references as promotion writes them, engines and machines
set up differently from the test one."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import REGISTRY, Workspace, ok, untag
from tests.integration.engine_proxy import EngineProxy

pytestmark = pytest.mark.integration


def test_tag_plus_digest_is_in_sync_after_a_deploy(workspace: Workspace) -> None:
    tagged = f"{REGISTRY}/testapp:1.0.0"
    workspace.engine.images.pull(tagged)
    digest = workspace.engine.images.get(tagged).attrs["RepoDigests"][0].split("@")[1]
    untag(workspace.engine, tagged)
    pinned = f"{tagged}@{digest}"
    workspace.write("app/compose.yml", f"services:\n  web:\n    image: {pinned}\n")
    workspace.write("test.yml", f"project: {workspace.project}\ncompose_files: [app/compose.yml]\n")
    try:
        ok(workspace.deploy("test", "--yes"))
        before = workspace.ids()

        diff = workspace.deploy("diff", "test")
        again = ok(workspace.deploy("test", "--yes"))

        assert (diff.returncode, diff.stdout) == (
            0,
            f"test (project {workspace.project}): in sync, nothing to change\n",
        )
        assert "pulling" not in again.stderr
        assert workspace.ids() == before
    finally:
        untag(workspace.engine, f"{REGISTRY}/testapp@{digest}")


def bin_folder(tmp_path: Path, *programs: str) -> str:
    """A PATH of one folder holding only `programs` (links to the machine's own)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for program in programs:
        found = shutil.which(program)
        assert found, f"{program} is needed for this test"
        (folder / program).symlink_to(found)
    return str(folder)


def test_deploy_without_git_on_path(app: Workspace, tmp_path: Path) -> None:
    result = app.deploy("test", "--yes", env={"PATH": bin_folder(tmp_path, "docker")})

    assert result.returncode == 0, result.stderr
    assert len(app.containers()) == 2


def test_deploy_without_docker_on_path_names_docker(app: Workspace, tmp_path: Path) -> None:
    result = app.deploy("test", "--yes", env={"PATH": bin_folder(tmp_path)})

    assert (result.returncode, result.stderr) == (
        1,
        "error: `docker` is not installed (not found on PATH)\n",
    )


@pytest.fixture
def newer_engine() -> Iterator[EngineProxy]:
    """The test engine behind a proxy that answers as an engine refusing API versions below 1.44."""
    folder = Path(tempfile.mkdtemp(prefix="dt-engine-"))  # short: a socket path has 107 bytes
    try:
        with EngineProxy(folder / "docker.sock", "/var/run/docker.sock") as proxy:
            yield proxy
    finally:
        shutil.rmtree(folder)


def test_commands_negotiate_the_api_version_with_a_newer_engine(
    app: Workspace, newer_engine: EngineProxy
) -> None:
    through_proxy = {"DOCKER_HOST": newer_engine.host}

    pending = app.deploy("diff", "test", env=through_proxy)
    ok(app.deploy("test", "--yes", env=through_proxy))
    status = app.deploy("status", "test", env=through_proxy)
    in_sync = app.deploy("diff", "test", env=through_proxy)

    assert (pending.returncode, status.returncode, in_sync.returncode) == (2, 0, 0), (
        pending.stderr + status.stderr + in_sync.stderr
    )
    assert len(app.containers()) == 2
    versions = {re.sub(r"^\S+ /(v[0-9.]+)?.*$", r"\1", line) for line in newer_engine.requests}
    assert versions == {"", "v1.45", "v1.47"}  # /_ping, the SDK's newest, the CLI's choice
    # the SDK asks each engine its version once per command: four commands, four questions
    assert sum(line.startswith("GET /version ") for line in newer_engine.requests) == 4
