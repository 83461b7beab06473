"""What runs, against what is declared and which release put it there. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deployer.core.desired import DesiredState
from deployer.state.releases import Release, pinned_reference
from deployer.targets.compose.observe import (
    ObservedContainer,
    ObservedState,
    is_completed,
    is_ready,
)
from deployer.targets.compose.plan import plan


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


def release_of(service: str, image_id: str, releases: Sequence[Release]) -> int | None:
    for release in releases:  # newest first
        ran = release.services.get(service)
        if ran is not None and ran.image_id == image_id:
            return release.number
    return None


def _container(
    container: ObservedContainer, observed: ObservedState, releases: Sequence[Release]
) -> ContainerStatus:
    return ContainerStatus(
        name=container.name,
        image=container.image,
        image_id=container.image_id,
        pinned=pinned_reference(container.image, container.image_id, observed.digests),
        state=container.state,
        health=container.health,
        status=container.status,
        release=release_of(container.service, container.image_id, releases),
        exit_code=container.exit_code,
    )


def status(
    desired: DesiredState, observed: ObservedState, releases: Sequence[Release]
) -> EnvironmentStatus:
    services = tuple(
        ServiceStatus(
            name,
            service.image,
            service.replicas,
            tuple(_container(c, observed, releases) for c in observed.of_service(name)),
            service.restart,
        )
        for name, service in sorted(desired.services.items())
    )
    orphans = tuple(sorted({c.service for c in observed.containers} - set(desired.services)))
    return EnvironmentStatus(
        desired.environment, observed.project, plan(desired, observed).in_sync, services, orphans
    )


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
