"""What `deploy diff` and `deploy ENV` of a swarm owe the user as on one host, on the bed's real
swarm (dh4, dh5 managers, dh6 worker): a tag moved in the registry is seen (refused where tags
are immutable); a stack that only waits for Swarm to converge is in sync for both commands;
Swarm's words are masked like every other output; a manager reached over ssh://."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import docker
import pytest

from deployer.commands.load import load
from deployer.commands.spec import render
from deployer.core.variables import Redactor
from deployer.infra import runner
from tests.integration.conftest import REGISTRY, SwarmSpace, ok, untag
from tests.integration.test_build import remove_repository
from tests.integration.test_swarm_drift import plan_of

pytestmark = pytest.mark.integration


@pytest.fixture
def moving(
    stack: SwarmSpace, engine: docker.DockerClient
) -> Iterator[tuple[SwarmSpace, docker.DockerClient, str]]:
    """The stack's web runs REPO:1.0.0, from a repository of this test's own (pushed by the
    test machine's engine)."""
    repository = f"{REGISTRY}/moved-{uuid.uuid4().hex[:8]}/testapp"
    try:
        pushed(engine, f"{REGISTRY}/testapp:1.0.0", f"{repository}:1.0.0")
        node_repository = stack.swarm.node_image(repository)
        stack.write("app/compose.yml", f"services:\n  web:\n    image: {node_repository}:1.0.0\n")
        yield stack, engine, repository
    finally:
        remove_repository(engine, repository)


def pushed(engine: docker.DockerClient, source: str, target: str) -> str:
    """`source` pulled, tagged `target` (by the pulled image: other sessions untag the shared
    test images) and pushed; the digest the registry stored."""
    image = engine.images.pull(source)
    repository, tag = target.rsplit(":", 1)
    image.tag(repository, tag)
    digest = ""
    for event in engine.images.push(repository, tag, stream=True, decode=True):
        assert "error" not in event, event
        digest = (event.get("aux") or {}).get("Digest", digest)
    untag(engine, target)
    return digest


def write_spec(stack: SwarmSpace, deploy: str = "{}", host: str | None = None) -> None:
    stack.write(
        "test.yml",
        f"project: {stack.project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        f"engine: {{host: '{host or stack.swarm.manager_urls[0]}', orchestrator: swarm}}\n"
        f"deploy: {deploy}\n",
    )


def test_a_moved_tag_is_seen_by_diff_refused_where_immutable_and_deployed_otherwise(
    moving: tuple[SwarmSpace, docker.DockerClient, str],
) -> None:
    stack, engine, repository = moving
    ok(stack.deploy("test", "--yes"))
    old = stack.services()["web"]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[1]
    # Someone pushes other content under the same tag.
    new = pushed(engine, f"{REGISTRY}/testapp:2.0.0", f"{repository}:1.0.0")
    cause = f"tag 1.0.0 moved: {old[:19]} -> {new[:19]}"

    moved = stack.deploy("diff", "test", "--json")
    assert (moved.returncode, moved.stderr, plan_of(moved)) == (2, "", [("web", "update", [cause])])
    write_spec(stack, "{immutable_tags: true}")
    refused = stack.deploy("diff", "test")
    image = f"{stack.swarm.node_image(repository)}:1.0.0"
    assert (refused.returncode, refused.stdout, refused.stderr) == (
        1,
        "",
        f"error: tag 1.0.0 of {image} moved: {old} -> {new}; test has immutable tags "
        "(deploy.immutable_tags): nothing changed; deploy a new tag, or pin the digest to run "
        "(image: repo:tag@sha256:...)\n",
    )
    write_spec(stack)
    ok(stack.deploy("test", "--yes"))
    assert stack.services()["web"]["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].endswith(new)
    assert stack.deploy("diff", "test").returncode == 0


SECRET = "s3cret-canary-4711"


def test_a_stack_only_waiting_for_swarm_is_in_sync_for_diff_and_deploy_and_swarm_words_masked(
    stack: SwarmSpace,
) -> None:
    # Its tasks are rejected on every node: the bind mount's source (with a secret in its path)
    # is on none. Handed to Swarm as `deploy render` shows it, without waiting.
    stack.write(
        "app/compose.yml",
        "services:\n  web:\n    image: ${REGISTRY}/testapp:1.0.0\n"
        "    volumes: [{type: bind, source: '/missing/${DB_PASSWORD}', target: /data}]\n",
    )
    stack.append("app/.env", f"DB_PASSWORD={SECRET}\n")
    target = load(stack.environments, "test", Redactor(), {**os.environ, **stack.env})
    done = runner.run(render(target, Redactor()).command, check=False)
    assert done.returncode == 0, done.stderr
    for _ in range(120):  # until Swarm has rejected a task, saying why
        tasks = stack.swarm.client(4).api.tasks(filters={"service": f"{stack.project}_web"})
        if any(t["Status"].get("Err") for t in tasks):
            break
        time.sleep(0.5)

    diff = stack.deploy("diff", "test")
    deploy = stack.deploy("test", "--yes")
    status = stack.deploy("status", "test")
    document = stack.deploy("diff", "test", "--json")

    assert (diff.returncode, deploy.returncode, status.returncode) == (0, 0, 1), (
        diff.stdout + diff.stderr + deploy.stderr
    )
    header = f"test (project {stack.project}): in sync, nothing to change; Swarm has not converged"
    assert diff.stdout.splitlines()[:3] == [
        header,
        "SERVICE  ACTION    CAUSE",
        "web      converge  0/1 tasks running",
    ]
    assert deploy.stdout.splitlines()[0] == header
    assert document.json()["in_sync"] is True  # type: ignore[index]
    for result in (diff, deploy, status, document):
        output = result.stdout + result.stderr
        assert SECRET not in output
    assert "/missing/***" in diff.stdout, diff.stdout


def test_a_manager_reached_over_ssh(stack: SwarmSpace) -> None:
    stack.env.update(stack.swarm.bed.env)
    write_spec(stack, host=stack.swarm.bed.ssh(4))
    pending = stack.deploy("diff", "test")
    assert pending.returncode == 2, pending.stdout + pending.stderr
    ok(stack.deploy("test", "--yes"))
    assert sorted(stack.versions()) == ["web", "worker"]
    assert {name: len(ids) for name, ids in stack.task_ids().items()} == {"web": 2, "worker": 1}
    in_sync = stack.deploy("diff", "test")
    assert (in_sync.returncode, in_sync.stderr) == (0, ""), in_sync.stdout
