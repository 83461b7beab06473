"""Image hygiene, on every target that keeps images: which images may go (pure; the engine is
read before), and their removal from one engine."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from deployer.core.errors import Interrupted
from deployer.core.reference import ImageReference
from deployer.core.results import Candidate
from deployer.infra.engine import EngineClient
from deployer.state.releases import newest_first


def repository_of(reference: str) -> str:
    return ImageReference.parse(reference).repository


def kept_by_releases(
    records_by_project: Mapping[str, Iterable[Mapping[str, Any]]], keep_releases: int
) -> set[str]:
    """IDs of the images of the newest `keep_releases` releases of every project on the engine:
    environments that share an engine share images, and each may roll back to its own."""
    return {
        service.image_id
        for records in records_by_project.values()
        for release in newest_first(records)[:keep_releases]
        for service in release.services.values()
    }


def prunable(
    images: Sequence[Mapping[str, Any]],
    in_use: Collection[str],
    keep: Collection[str],
    repositories: Collection[str],
    aggressive: bool,
) -> list[Candidate]:
    """Images to remove: dangling ones; with `aggressive`, also the environment's own images
    (by repository). Never an image a container uses, nor one to `keep` (a release may be
    pinned to an image that has no tag left)."""
    found = []
    for image in images:
        image_id = image["Id"]
        if image_id in in_use or image_id in keep:
            continue
        tags = tuple(t for t in image.get("RepoTags") or () if not t.startswith("<none>"))
        size = int(image.get("Size") or 0)
        if not tags:
            found.append(Candidate(image_id, (), size, "dangling"))
        elif aggressive and any(repository_of(t) in repositories for t in tags):
            found.append(Candidate(image_id, tags, size, "unused image of this environment"))
    return sorted(found, key=lambda c: (c.why, c.references, c.image_id))


def remove_images(client: EngineClient, candidates: Iterable[Candidate], stopped: str) -> int:
    """Remove the images from the engine; returns the bytes of layers it no longer holds."""
    before = client.layers_size()
    with Interrupted.leaving(stopped):
        for candidate in candidates:
            client.remove_image(candidate.image_id)
    return max(0, before - client.layers_size())
