"""Stage 4: what is running, read once from the engine through the Docker SDK."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deployer.core.desired import FINGERPRINT_LABEL
from deployer.core.reference import lookup_key
from deployer.infra.engine import EngineClient

SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)")
_EXIT_CODE = re.compile(r"^Exited \((-?\d+)\)")
# Restart policies under which the engine leaves a container that exited 0 stopped: a one-shot
# job (a migration) that has done its work, as Compose's `service_completed_successfully` reads it.
ONE_SHOT_POLICIES = frozenset({"no", "on-failure"})


def is_ready(state: str, health: str | None) -> bool:
    """Running and, where the container has a health check, healthy."""
    return state == "running" and health in (None, "healthy")


def is_steady(started_at: float, engine_now: float, window: float) -> bool:
    """Up since at least `window` seconds, both times by the engine's clock."""
    return engine_now - started_at >= window


def is_completed(state: str, exit_code: int | None, restart: str) -> bool:
    """A one-shot container that finished its work: exited 0 under a policy that leaves it so."""
    return state == "exited" and exit_code == 0 and restart.split(":")[0] in ONE_SHOT_POLICIES


@dataclass(frozen=True)
class ObservedContainer:
    id: str
    name: str
    service: str
    number: int
    state: str  # the engine's: created, running, restarting, exited, paused, dead
    status: str  # the engine's words, e.g. "Exited (1) 3 minutes ago"
    health: str | None  # healthy, unhealthy, starting, or None without a health check
    image: str  # the reference it was created from
    image_id: str
    fingerprint: Mapping[str, str] | None  # None: not created by deployer
    exit_code: int | None = None  # of an exited container, from the engine's status words

    @property
    def ready(self) -> bool:
        return is_ready(self.state, self.health)

    def done(self, restart: str) -> bool:
        """Ready, or a one-shot container of a service with restart policy `restart` that completed."""
        return self.ready or is_completed(self.state, self.exit_code, restart)


@dataclass(frozen=True)
class ObservedState:
    project: str
    containers: tuple[ObservedContainer, ...]  # sorted by service, then number
    image_ids: Mapping[str, str]  # reference.lookup_key of a reference or ID -> local image ID
    digests: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # ID -> repo@sha256:...

    def of_service(self, service: str) -> list[ObservedContainer]:
        return [c for c in self.containers if c.service == service]

    def image_id(self, reference: str) -> str | None:
        return self.image_ids.get(lookup_key(reference))


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
    images = client.images()
    return ObservedState(
        project, observe_containers(client, project), image_ids(images), image_digests(images)
    )
