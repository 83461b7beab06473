"""What `deploy status` tells, for every target: per service and container (or task) what runs,
against what is declared and which release put it there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deployer.core.observed import ObservedStack, is_completed, is_ready
from deployer.core.plan import Plan


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    image: str
    image_id: str
    pinned: str  # repo@sha256:... where known, else the image ID
    state: str
    health: str | None
    status: str  # the engine's words, with since when: "Up 5 minutes (healthy)"
    release: int | None  # the newest release that ran this image for this service
    exit_code: int | None = None  # of an exited container


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    desired_image: str
    desired_replicas: int
    containers: tuple[ContainerStatus, ...]
    restart: str = "no"  # the restart policy: under "no" a container that exited 0 is done

    @property
    def ready(self) -> int:
        return sum(
            1
            for c in self.containers
            if is_ready(c.state, c.health) or is_completed(c.state, c.exit_code, self.restart)
        )

    @property
    def healthy(self) -> bool:
        return self.ready == self.desired_replicas == len(self.containers)


@dataclass(frozen=True)
class EnvironmentStatus:
    environment: str
    project: str
    in_sync: bool
    services: tuple[ServiceStatus, ...]
    orphans: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return all(s.healthy for s in self.services)


@dataclass(frozen=True)
class RunningImage:
    """An image a service runs on some hosts of an environment."""

    image: str  # "" for the hosts that run no container of the service
    image_id: str
    hosts: tuple[str, ...]


def images_by_service(
    statuses: Sequence[tuple[str, EnvironmentStatus]],
) -> dict[str, tuple[RunningImage, ...]]:
    """Per service, which hosts run which image (by ID: a tag moved on one host is another
    image), in the order of the hosts: more than one is a fleet on mixed versions."""
    found: dict[str, dict[tuple[str, str], list[str]]] = {}
    for host, environment in statuses:
        for service in environment.services:
            running = sorted({(c.image, c.image_id) for c in service.containers}) or [("", "")]
            for image in running:
                found.setdefault(service.service, {}).setdefault(image, []).append(host)
    return {
        name: tuple(
            RunningImage(image, image_id, tuple(hosts))
            for (image, image_id), hosts in images.items()
        )
        for name, images in sorted(found.items())
    }


@dataclass(frozen=True)
class SwarmStatus:
    environment: str
    stack: ObservedStack
    plan: Plan  # what `deploy diff` says: in sync or not

    @property
    def healthy(self) -> bool:
        """Every declared service on the swarm with all its tasks running, no update pending."""
        return not any(c.action in ("create", "converge") for c in self.plan.changes)
