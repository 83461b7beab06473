"""From build to production on the real engine and the local registry: tags checked in the
registry (a moved tag reported, or refused where tags are immutable), `deploy build --push`."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.integration.conftest import (
    AUTH_PASSWORD,
    AUTH_REGISTRY,
    AUTH_USER,
    REGISTRY,
    TEST_REGISTRY,
    Workspace,
    ok,
    untag,
)

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


def remove_repository(engine: docker.DockerClient, repository: str) -> None:
    """Remove every local reference (tag or digest) into `repository`: the images go with the
    last of theirs, the shared test images stay under their own names."""
    # The listing itself (no inspect per image): other tests may remove images meanwhile.
    for image in engine.api.images(all=True):
        references = [*(image.get("RepoTags") or []), *(image.get("RepoDigests") or [])]
        for reference in references:
            if reference.startswith((f"{repository}:", f"{repository}@")):
                untag(engine, reference)


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
        remove_repository(engine, repository)
        for reference in pulled:
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
        "SERVICE  ACTION    ORDER                       CAUSE",
        f"web      pull                                  {cause}",
        f"web      recreate  stop-first (default order)  {cause}",
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


@pytest.fixture
def buildable(workspace: Workspace) -> Iterator[tuple[Workspace, str]]:
    """An environment `test` whose service `tool` is built from a Dockerfile (FROM scratch, one
    file copied) as REPO:1.0 (the spec's tag), REPO in a repository of this test's own; and a
    service `web` that has no `build:`."""
    repository = f"{TEST_REGISTRY}/build-{uuid.uuid4().hex[:8]}/tool"
    workspace.write("app/Dockerfile", "FROM scratch\nCOPY hello.txt /hello.txt\n")
    workspace.write("app/hello.txt", "one\n")
    workspace.write(
        "app/compose.yml",
        f"services:\n  tool:\n    build: .\n    image: {repository}:${{TOOL_TAG}}\n"
        f"  web:\n    image: {REGISTRY}/testapp:1.0.0\n",
    )
    workspace.write(
        "test.yml",
        f"project: {workspace.project}\ncompose_files: [app/compose.yml]\n"
        "services:\n  tool: {tag: '1.0'}\n",
    )
    workspace.env["TOOL_TAG"] = "latest"
    try:
        yield workspace, repository
    finally:
        for built in (repository, f"{repository}-bad", private_of(repository)):
            remove_repository(workspace.engine, built)


def private_of(repository: str) -> str:
    """`repository` in the registry that needs a login."""
    return repository.replace(TEST_REGISTRY.split("/")[0], AUTH_REGISTRY, 1)


def registry_digest(engine: docker.DockerClient, image: str) -> str | None:
    try:
        return str(engine.api.inspect_distribution(image)["Descriptor"]["digest"])
    except docker.errors.NotFound:
        return None


def test_build_push_of_the_same_content_is_a_no_op_and_of_other_content_refused(
    buildable: tuple[Workspace, str],
) -> None:
    space, repository = buildable
    image = f"{repository}:1.0"

    first = space.deploy("build", "test", "--push")
    pushed = registry_digest(space.engine, image)
    again = space.deploy("build", "test", "tool", "--push")
    first_id = space.engine.images.get(image).id
    space.write("app/hello.txt", "two\n")
    other = space.deploy("build", "test", "--push")
    other_id = space.engine.images.get(image).id

    assert first.returncode == 0, first.stderr
    assert pushed is not None
    assert first.stdout == f"tool: pushed {image} ({pushed})\n"
    assert first.stderr.splitlines()[0] == f"tool: building {image}"
    assert f"tool: built {image} ({first_id[7:19]})" in first.stderr.splitlines()
    assert (again.returncode, again.stdout) == (
        0,
        f"tool: {image} is in the registry already ({pushed})\n",
    )
    assert (other.returncode, other.stdout) == (1, "")
    built_id = space.engine.images.get(built_short_id(other.stderr, image)).id
    assert other.stderr.splitlines()[-1] == (
        f"error: tag 1.0 of {image} exists in the registry as {pushed}, and the image built is "
        f"another one ({built_id}): not pushed; build under a new tag; the local tag is left "
        f"on {first_id}"
    )
    assert built_id != first_id
    # The refused push leaves the local tag where it was: on the registry's image.
    assert other_id == first_id
    assert registry_digest(space.engine, image) == pushed


def built_short_id(stderr: str, image: str) -> str:
    """The short ID `deploy build` reported for the image it built as `image`."""
    (line,) = [line for line in stderr.splitlines() if line.startswith(f"tool: built {image} (")]
    return line.rsplit("(", 1)[1].rstrip(")")


def test_build_without_push_only_tags_the_image_locally(buildable: tuple[Workspace, str]) -> None:
    space, repository = buildable

    result = space.deploy("build", "test")

    image_id = space.engine.images.get(f"{repository}:1.0").id
    assert (result.returncode, result.stdout) == (0, f"tool: built {repository}:1.0 ({image_id})\n")
    assert registry_digest(space.engine, f"{repository}:1.0") is None


def test_bad_build_input_is_one_clear_line_each(buildable: tuple[Workspace, str]) -> None:
    space, repository = buildable
    # A failing build whose output holds a secret: the file to copy is named by a token.
    space.write(
        "app/bad.yml",
        "services:\n  bad:\n    build: {context: ., dockerfile: Dockerfile.bad, "
        "args: {TOKEN: '${API_TOKEN}'}}\n"
        f"    image: {repository}-bad:1\n",
    )
    space.write("app/Dockerfile.bad", "FROM scratch\nARG TOKEN\nCOPY ${TOKEN} /token\n")
    space.write("bad.yml", f"project: {space.project}\ncompose_files: [app/bad.yml]\n")
    secret = "tok-canary-5150"

    no_build = space.deploy("build", "test", "web")
    unknown = space.deploy("build", "test", "nosuch")
    failed = space.deploy("build", "bad", env={"API_TOKEN": secret})

    assert (no_build.returncode, no_build.stdout, no_build.stderr) == (
        1,
        "",
        "error: web in test: no `build:` section in the compose files, nothing to build "
        "(services with one: tool)\n",
    )
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "error: no service nosuch in test (services: tool, web)\n",
    )
    assert failed.returncode == 1
    lines = failed.stderr.splitlines()
    assert lines[:3] == [
        f"bad: building {repository}-bad:1",
        f"error: the build of bad ({repository}-bad:1) failed",
        "error: last lines of the build of bad:",
    ]
    assert '"/***" not found' in lines[-1]
    assert secret not in failed.stderr + failed.stdout


def test_push_to_a_registry_that_needs_a_login(buildable: tuple[Workspace, str]) -> None:
    space, repository = buildable
    private = private_of(repository)
    space.write(
        "app/compose.yml",
        f"services:\n  tool:\n    build: .\n    image: {private}:1.0\n",
    )
    space.write("test.yml", f"project: {space.project}\ncompose_files: [app/compose.yml]\n")

    refused = space.deploy("build", "test", "--push")
    space.append(
        "test.yml",
        f"registry: {{server: '{AUTH_REGISTRY}', username: {AUTH_USER}, password_env: PUSH_PASSWORD}}\n",
    )
    pushed = space.deploy("build", "test", "--push", env={"PUSH_PASSWORD": AUTH_PASSWORD})

    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        f"error: cannot check {private}:1.0 in registry {AUTH_REGISTRY}: Head "
        f'"http://{AUTH_REGISTRY}/v2/{private.split("/", 1)[1]}/manifests/1.0": '
        "no basic auth credentials"
    )
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith(f"tool: pushed {private}:1.0 (sha256:")
    assert AUTH_PASSWORD not in pushed.stdout + pushed.stderr


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A registry of this test's own on a free loopback port (docker-registry, as
    scripts/test-engine runs the shared ones), that the test may stop."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'registry'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(40):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            time.sleep(0.25)
        yield f"127.0.0.1:{port}", process
    finally:
        process.kill()
        process.wait()


def test_an_unreachable_registry_is_a_warning_for_diff_and_an_error_for_deploy(
    workspace: Workspace, own_registry: tuple[str, subprocess.Popen[bytes]]
) -> None:
    registry, process = own_registry
    repository = f"{registry}/shop/testapp"
    source = f"{REGISTRY}/testapp:1.0.0"
    workspace.engine.images.pull(source)
    try:
        push(workspace.engine, source, f"{repository}:1.0.0")
        workspace.write(
            "app/compose.yml",
            f"services:\n  web:\n    image: {repository}:1.0.0\n    ports: ['127.0.0.1::8080']\n",
        )
        write_spec(workspace, "{wait_timeout: 30}")
        assert workspace.deploy("test", "--yes").returncode == 0
        process.kill()
        process.wait()

        warned = workspace.deploy("diff", "test")
        refused = workspace.deploy("test", "--yes")
    finally:
        workspace.deploy("down", "test", "--yes")
        remove_repository(workspace.engine, repository)
        untag(workspace.engine, source)

    reason = f'Get "http://{registry}/v2/": dial tcp {registry}: connect: connection refused'
    line = f"cannot check {repository}:1.0.0 in registry {registry}: {reason}"
    assert (warned.returncode, warned.stderr) == (0, f"warning: {line}; its tag may have moved\n")
    assert warned.stdout.endswith(": in sync, nothing to change\n")
    assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", f"error: {line}\n")


@pytest.fixture
def served(workspace: Workspace) -> Iterator[tuple[Workspace, str]]:
    """An environment `test` whose one service `site` is built FROM the test app with a file of
    its own (/www/hello.txt, served on 8080) as REPO:1.0, REPO in a repository of this test's
    own; the spec's tags are immutable where the variable IMMUTABLE says so."""
    repository = f"{TEST_REGISTRY}/served-{uuid.uuid4().hex[:8]}/site"
    base = f"{REGISTRY}/testapp:1.0.0"
    workspace.write("app/Dockerfile", f"FROM {base}\nCOPY hello.txt /www/hello.txt\n")
    workspace.write(
        "app/compose.yml",
        f"services:\n  site:\n    build: .\n    image: {repository}:1.0\n"
        "    ports: ['127.0.0.1::8080']\n",
    )
    try:
        yield workspace, repository
    finally:
        workspace.deploy("down", "test", "--yes")
        remove_repository(workspace.engine, repository)
        untag(workspace.engine, base)


def test_a_refused_push_then_a_deploy_runs_the_registry_image_or_is_refused_naming_both(
    served: tuple[Workspace, str],
) -> None:
    space, repository = served
    image = f"{repository}:1.0"
    write_spec(space, "{wait_timeout: 30}")
    space.write("app/hello.txt", "registry\n")
    ok(space.deploy("build", "test", "--push"))
    pushed = registry_digest(space.engine, image)
    # Another machine pushed that tag: here there is no image under it.
    remove_repository(space.engine, repository)
    space.write("app/hello.txt", "local\n")

    refused = space.deploy("build", "test", "--push")
    local_id = space.engine.images.get(image).id
    write_spec(space, "{wait_timeout: 30, immutable_tags: true}")
    immutable = space.deploy("test", "--yes")
    created = space.ids()
    write_spec(space, "{wait_timeout: 30}")
    mutable = space.deploy("test", "--yes")

    assert refused.returncode == 1
    assert refused.stderr.splitlines()[-1] == (
        f"error: tag 1.0 of {image} exists in the registry as {pushed}, and the image built is "
        f"another one ({local_id}): not pushed; build under a new tag; the local tag 1.0 now "
        "names the image built, not the registry's"
    )
    assert (immutable.returncode, immutable.stdout, immutable.stderr) == (
        1,
        "",
        f"error: the image under tag 1.0 of {image} here ({local_id}) is not the registry's "
        f"({pushed}); test has immutable tags (deploy.immutable_tags): nothing changed; deploy "
        "a new tag, or pin the digest to run (image: repo:tag@sha256:...)\n",
    )
    assert created == {}
    assert mutable.returncode == 0, mutable.stderr
    assert space.http("site", "/hello.txt") == "registry"
    assert f"{repository}@{pushed}" in space.containers("site")[0].image.attrs["RepoDigests"]
