"""`deploy prune` of a swarm environment, on the bed's real swarm (dh4, dh5 managers, dh6
worker): images live on each node, so prune visits each node's engine (`engine.nodes`)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator

import docker
import pytest

from tests.integration.conftest import SwarmSpace, ok

pytestmark = pytest.mark.integration


def with_nodes(stack: SwarmSpace, numbers: tuple[int, ...]) -> None:
    """The spec's `engine.nodes`: the engine of each of those nodes, by hostname."""
    nodes = {stack.swarm.name(k): stack.swarm.bed.unix(k) for k in numbers}
    spec = stack.environments / "test.yml"
    spec.write_text(
        spec.read_text().replace(
            "orchestrator: swarm}", f"orchestrator: swarm, nodes: {json.dumps(nodes)}}}"
        )
    )


def dangling(client: docker.DockerClient, project: str, base: str) -> str:
    """A dangling image of 1 MB of its own on that node's engine (built there); its ID."""
    dockerfile = f"FROM {base}\nRUN head -c 1000000 /dev/urandom > /blob-{project}\n"
    image, _ = client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), labels={"dt.project": project}, rm=True
    )
    assert not image.tags
    return str(image.id)


@pytest.fixture
def on_nodes(stack: SwarmSpace) -> Iterator[dict[str, str]]:
    """The stack deployed (release 1); then a dangling image built on every node, by node
    hostname. The images are removed afterwards, also where prune did not."""
    ok(stack.deploy("test", "--yes"))
    built = {}
    try:
        for k in stack.swarm.numbers:
            service_image = stack.services()["worker"]["Spec"]["TaskTemplate"]["ContainerSpec"]
            client = stack.swarm.client(k)
            client.images.pull(service_image["Image"])
            built[stack.swarm.name(k)] = dangling(client, stack.project, service_image["Image"])
        yield built
    finally:
        for k in stack.swarm.numbers:
            image = built.get(stack.swarm.name(k))
            if image is not None:
                with contextlib.suppress(docker.errors.ImageNotFound):
                    stack.swarm.client(k).images.remove(image, force=True)


def images_on(stack: SwarmSpace, k: int) -> set[str]:
    return {i["Id"] for i in stack.swarm.client(k).api.images(all=True)}


def in_use_on(stack: SwarmSpace, k: int) -> set[str]:
    """The IDs of the images the containers on node k use."""
    client = stack.swarm.client(k)
    return {c["ImageID"] for c in client.api.containers(all=True)}


def test_prune_visits_every_node_and_never_removes_an_image_a_task_uses(
    stack: SwarmSpace, on_nodes: dict[str, str]
) -> None:
    with_nodes(stack, stack.swarm.numbers)
    names = stack.swarm.node_names

    planned = ok(stack.deploy("prune", "test", "--dry-run", "--json")).json()

    assert isinstance(planned, dict)
    assert [n["node"] for n in planned["nodes"]] == names
    assert all(n["freed_bytes"] == 0 for n in planned["nodes"])
    for k, name in zip(stack.swarm.numbers, names, strict=True):
        listed = {c["image_id"]: c for c in planned["images"] if c["node"] == name}
        assert listed[on_nodes[name]]["why"] == "dangling"
        assert not set(listed) & in_use_on(stack, k)
        assert on_nodes[name] in images_on(stack, k)  # a dry run removes nothing
    text = ok(stack.deploy("prune", "test", "--dry-run")).stdout
    for name in names:
        assert f"{name}:\n" in text
        assert f"  would remove {on_nodes[name][7:19]} <none> (" in text

    pruned = ok(stack.deploy("prune", "test", "--yes", "--json")).json()

    assert isinstance(pruned, dict)
    assert [n["node"] for n in pruned["nodes"]] == names
    for k, name in zip(stack.swarm.numbers, names, strict=True):
        assert on_nodes[name] not in images_on(stack, k)
        [node] = [n for n in pruned["nodes"] if n["node"] == name]
        assert node["freed_bytes"] >= 1_000_000  # its own 1 MB layer at least
    assert pruned["freed_bytes"] == sum(n["freed_bytes"] for n in pruned["nodes"])
    # The stack runs on, every task of it.
    assert {name: len(stack.running_tasks(name)) for name in ("web", "worker")} == {
        "web": 2,
        "worker": 1,
    }
    audit = ok(stack.deploy("audit", "test", "--json")).json()
    assert isinstance(audit, list)
    assert audit[-1]["command"] == "prune"
    assert {f"{name}: {on_nodes[name][7:19]} (dangling)" for name in names} <= set(
        audit[-1]["changes"]
    )


def test_prune_of_a_swarm_whose_nodes_are_not_all_listed_is_refused(
    stack: SwarmSpace, on_nodes: dict[str, str]
) -> None:
    with_nodes(stack, (4, 5))

    refused = stack.deploy("prune", "test", "--yes")

    assert refused.returncode == 1
    assert refused.stderr == (
        "error: cannot prune test: node dh6 of the swarm has no engine in engine.nodes "
        "(prune removes images on every node, through each node's engine): nothing removed\n"
    )
    for k in stack.swarm.numbers:
        assert on_nodes[stack.swarm.name(k)] in images_on(stack, k)
