"""Image hygiene: which images may go. Pure; the engine is read before and written after."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deployer.reference import ImageReference


@dataclass(frozen=True)
class Candidate:
    image_id: str
    references: tuple[str, ...]  # its tags (none for a dangling image)
    size: int  # bytes, as the engine reports the image (layers shared with others included)
    why: str


@dataclass(frozen=True)
class Pruned:
    candidates: tuple[Candidate, ...]
    dry_run: bool
    freed: int  # bytes of image layers the engine no longer holds (0 for a dry run)


def repository_of(reference: str) -> str:
    return ImageReference.parse(reference).repository


def prunable(
    images: Sequence[Mapping[str, Any]],
    in_use: Collection[str],
    keep: Collection[str],
    repositories: Collection[str],
    aggressive: bool,
) -> list[Candidate]:
    """Images to remove: dangling ones; with `aggressive`, also the environment's own images
    (by repository) except those to `keep`. Never an image a container uses."""
    found = []
    for image in images:
        image_id = image["Id"]
        if image_id in in_use:
            continue
        tags = tuple(t for t in image.get("RepoTags") or () if not t.startswith("<none>"))
        size = int(image.get("Size") or 0)
        if not tags:
            found.append(Candidate(image_id, (), size, "dangling"))
        elif (
            aggressive
            and image_id not in keep
            and any(repository_of(t) in repositories for t in tags)
        ):
            found.append(Candidate(image_id, tags, size, "unused image of this environment"))
    return sorted(found, key=lambda c: (c.why, c.references, c.image_id))
