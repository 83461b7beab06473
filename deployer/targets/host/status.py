"""`deploy status` on one engine: what runs, against what is declared and which release put it
there. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from deployer.core.desired import DesiredState
from deployer.core.observed import ObservedContainer, ObservedState
from deployer.core.reference import pinned_reference
from deployer.core.status import ContainerStatus, EnvironmentStatus, ServiceStatus
from deployer.state.releases import Release, release_of
from deployer.targets.host.plan import plan


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
