"""The images of a swarm: what its services run (for `deploy promote`), and which images of a
node may go (for `deploy prune`, node by node: each node's engine holds its own). Pure."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from deployer.core.results import Candidate
from deployer.core.status import ContainerStatus, EnvironmentStatus, ServiceStatus, SwarmStatus
from deployer.state.releases import Release, release_of
from deployer.targets.prune import prunable

# What makes a stack differ from its spec (a `converge` is Swarm's to finish, not a difference).
_DIFFERENT = frozenset({"create", "update", "remove"})


def running_status(found: SwarmStatus, releases: Sequence[Release]) -> EnvironmentStatus:
    """The stack as promote reads an environment: per service, each current task meant to run
    as a container running the image the service's spec pins (`repo:tag@sha256:...`, what every
    node pulled), with the newest release that recorded that digest."""
    stack = found.stack
    services = tuple(
        ServiceStatus(
            name,
            service.requested_image,
            service.desired_tasks,
            tuple(
                ContainerStatus(
                    name=f"{name}.{task.slot if task.slot is not None else task.node}",
                    image=service.requested_image,
                    image_id=service.digest or "",
                    pinned=service.image,
                    state=task.state,
                    health=task.health,
                    status=f"{task.state} on {task.node} since {task.since}",
                    release=release_of(name, service.digest or "", releases),
                )
                for task in service.tasks
                if task.current and task.desired_state == "running"
            ),
        )
        for name, service in sorted(stack.services.items())
    )
    in_sync = not any(c.action in _DIFFERENT for c in found.plan.changes)
    return EnvironmentStatus(found.environment, stack.project, in_sync, services, ())


def digest_of(reference: str) -> str | None:
    """The `sha256:...` a reference (`repo:tag@sha256:...`, `repo@sha256:...`) pins, if any."""
    return reference.partition("@")[2] or None


def node_candidates(
    node: str,
    images: Sequence[Mapping[str, Any]],
    in_use: Collection[str],
    keep_ids: Collection[str],
    keep_digests: Collection[str],
    repositories: Collection[str],
    aggressive: bool,
) -> list[Candidate]:
    """The images of one node that may go, as on one engine (deployer/targets/prune.py). Kept
    besides: every image a container uses on any node (`in_use`, by ID: a task's image is not
    taken from another node's feet), and every image whose registry digest a service of the
    swarm or a kept release pins (`keep_digests`: Swarm records digests, which the nodes list
    in RepoDigests, not image IDs)."""
    pinned = {
        image["Id"]
        for image in images
        if any(digest_of(d) in keep_digests for d in image.get("RepoDigests") or ())
    }
    found = prunable(images, in_use, {*keep_ids, *pinned}, repositories, aggressive)
    return [replace(candidate, node=node) for candidate in found]
