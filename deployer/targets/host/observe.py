"""Stage 4: what is running, read once from the engine through the Docker SDK."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from deployer.core.desired import FINGERPRINT_LABEL, DesiredState
from deployer.core.observed import ObservedContainer, ObservedState
from deployer.core.reference import lookup_key, pinned_reference
from deployer.infra.engine import EngineClient
from deployer.state.releases import NO_SECRETS, Secrets, ServiceRelease, recorded_config

SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"
CONFIG_HASH_LABEL = "com.docker.compose.config-hash"
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")
_EXIT_CODE = re.compile(r"^Exited \((-?\d+)\)")


def container_from_summary(summary: Mapping[str, Any]) -> ObservedContainer | None:
    """One container from the engine's list entry; None for one-off (`compose run`) containers."""
    labels = summary.get("Labels") or {}
    if labels.get(ONEOFF_LABEL) == "True":
        return None
    status = summary.get("Status", "")
    health = _HEALTH.search(status)
    exit_code = _EXIT_CODE.match(status)
    raw_fingerprint = labels.get(FINGERPRINT_LABEL)
    try:
        fingerprint = json.loads(raw_fingerprint) if raw_fingerprint else None
    except ValueError:
        fingerprint = None
    names = summary.get("Names") or [summary["Id"][:12]]
    return ObservedContainer(
        id=summary["Id"],
        name=names[0].lstrip("/"),
        service=labels.get(SERVICE_LABEL, ""),
        number=int(labels.get(NUMBER_LABEL, "0") or 0),
        state=summary.get("State", ""),
        status=status,
        health=health.group(1).replace("health: ", "") if health else None,
        image=summary.get("Image", ""),
        image_id=summary.get("ImageID", ""),
        fingerprint=fingerprint,
        exit_code=int(exit_code.group(1)) if exit_code else None,
        config_hash=labels.get(CONFIG_HASH_LABEL),
        made_with=fingerprint,
    )


def image_ids(images: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    ids = {}
    for image in images:
        ids[image["Id"]] = image["Id"]  # a service may name its image by ID (a pinned rollback)
        for reference in [*(image.get("RepoTags") or []), *(image.get("RepoDigests") or [])]:
            if not reference.startswith("<none>"):
                ids[lookup_key(reference)] = image["Id"]
    return ids


def image_digests(images: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    return {i["Id"]: tuple(i.get("RepoDigests") or ()) for i in images}


def observe_containers(client: EngineClient, project: str) -> tuple[ObservedContainer, ...]:
    found = (container_from_summary(s) for s in client.project_containers(project))
    return tuple(sorted((c for c in found if c), key=lambda c: (c.service, c.number, c.id)))


def observe(client: EngineClient, project: str) -> ObservedState:
    """The project's containers and the engine's images, both lists asked for at once (where
    both fail, the image list's error is the one raised)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        containers = pool.submit(observe_containers, client, project)
        images = client.images()
        return ObservedState(project, containers.result(), image_ids(images), image_digests(images))


def running_services(
    observed: ObservedState, states: Sequence[DesiredState] = (), secrets: Secrets = NO_SECRETS
) -> dict[str, ServiceRelease]:
    """Per service, the image its first container runs, and its configuration: that of the first
    of `states` whose fingerprint the container carries (None when it carries none of them)."""
    services: dict[str, ServiceRelease] = {}
    for container in observed.containers:
        if container.service in services:
            continue
        pinned = pinned_reference(container.image, container.image_id, observed.digests)
        configs = (
            recorded_config(state, container.service, secrets)
            for state in states
            if container.service in state.services
            and state.services[container.service].fingerprint
            in (container.fingerprint, container.made_with)
        )
        services[container.service] = ServiceRelease(
            container.image, container.image_id, pinned, next(configs, None)
        )
    return services
