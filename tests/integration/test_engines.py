"""Real inputs from elsewhere: image references as promotion writes them, engines and machines
set up differently from the test one."""

from __future__ import annotations

import pytest

from tests.integration.conftest import REGISTRY, Workspace, ok, untag

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
