"""From build to production on the real engine and the local registry: tags checked in the
registry (a moved tag reported, or refused where tags are immutable), `deploy build --push`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import docker
import pytest

from tests.integration.conftest import REGISTRY, TEST_REGISTRY, Workspace, untag

pytestmark = pytest.mark.integration


def push(engine: docker.DockerClient, source: str, target: str) -> str:
    """Tag the local image `source` as `target` and push it; the digest the registry stored."""
    repository, tag = target.rsplit(":", 1)
    engine.images.get(source).tag(repository, tag)
    digest = ""
    for event in engine.images.push(repository, tag, stream=True, decode=True):
        assert "error" not in event, event
        digest = (event.get("aux") or {}).get("Digest", digest)
    return digest


def write_spec(space: Workspace, deploy: str) -> None:
    space.write(
        "test.yml",
        f"project: {space.project}\ncompose_files: [app/compose.yml]\ndeploy: {deploy}\n",
    )


@pytest.fixture
def moving(workspace: Workspace) -> Iterator[tuple[Workspace, str]]:
    """An environment `test` running REPO:1.0.0 from a repository of this test's own, pulled."""
    engine = workspace.engine
    repository = f"{TEST_REGISTRY}/moved-{uuid.uuid4().hex[:8]}/testapp"
    pulled = [f"{REGISTRY}/testapp:1.0.0", f"{REGISTRY}/testapp:2.0.0"]
    for reference in pulled:
        engine.images.pull(reference)
    try:
        push(engine, pulled[0], f"{repository}:1.0.0")
        untag(engine, f"{repository}:1.0.0")
        workspace.write(
            "app/compose.yml",
            f"services:\n  web:\n    image: {repository}:1.0.0\n    ports: ['127.0.0.1::8080']\n",
        )
        write_spec(workspace, "{wait_timeout: 30}")
        yield workspace, repository
    finally:
        workspace.deploy("down", "test", "--yes")
        for reference in [*pulled, f"{repository}:1.0.0"]:
            untag(engine, reference)


def test_a_moved_tag_is_reported_by_diff_refused_where_immutable_and_deployed_otherwise(
    moving: tuple[Workspace, str],
) -> None:
    space, repository = moving
    first = space.deploy("test", "--yes")
    assert first.returncode == 0, first.stderr
    running = space.containers("web")[0]
    (old,) = [d.split("@")[1] for d in running.image.attrs["RepoDigests"] if repository in d]
    before = space.ids()
    # Someone pushes other content under the same tag; this host still has the old one.
    new = push(space.engine, f"{REGISTRY}/testapp:2.0.0", f"{repository}:1.0.0")
    space.engine.images.get(running.image.id).tag(repository, "1.0.0")
    cause = f"tag 1.0.0 moved: {old[:19]} -> {new[:19]}"

    moved = space.deploy("diff", "test")
    write_spec(space, "{wait_timeout: 30, immutable_tags: true}")
    refused = space.deploy("test", "--yes")
    after_refusal = space.ids()
    refused_diff = space.deploy("diff", "test")
    write_spec(space, "{wait_timeout: 30}")
    updated = space.deploy("test", "--yes")
    runs = space.containers("web")[0].image.attrs["RepoDigests"]
    in_sync = space.deploy("diff", "test")

    assert (moved.returncode, moved.stderr) == (2, "")
    assert moved.stdout.splitlines()[1:] == [
        "SERVICE  ACTION    CAUSE",
        f"web      pull      {cause}",
        f"web      recreate  {cause}",
    ]
    message = (
        f"error: tag 1.0.0 of {repository}:1.0.0 moved: {old} -> {new}; test has immutable tags "
        "(deploy.immutable_tags): nothing changed; deploy a new tag, or pin the digest to run "
        "(image: repo:tag@sha256:...)\n"
    )
    assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", message)
    assert after_refusal == before
    assert (refused_diff.returncode, refused_diff.stderr) == (1, message)
    assert updated.returncode == 0, updated.stderr
    assert f"{repository}@{new}" in runs
    assert (in_sync.returncode, in_sync.stderr) == (0, "")
