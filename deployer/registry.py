"""Tags checked against their registry: the digest a tag points to now, asked of the engine
(which reads the manifest without pulling), and the tags that moved under a running container.

Only tags worth a request are looked up: a service's tag whose running container came from that
registry (its image carries a digest of the repository, i.e. it was pulled or pushed). A reference
pinned by digest, an image ID, or an image only ever built or loaded here needs no request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deployer.desired import DesiredState
from deployer.errors import RegistryError
from deployer.observed import ObservedContainer, ObservedState
from deployer.reference import ImageReference, is_image_id

if TYPE_CHECKING:
    from deployer.apply import Login
    from deployer.engine import EngineClient

PARALLEL_LOOKUPS = 4


@dataclass(frozen=True)
class RegistryDigests:
    """What the registries answered: per image (as the spec names it) the digest its tag points
    to (None: no such tag), and the images whose registry could not be asked, with why."""

    digests: Mapping[str, str | None] = field(default_factory=dict)
    failures: Mapping[str, RegistryError] = field(default_factory=dict)


@dataclass(frozen=True)
class MovedTag:
    service: str
    image: str  # as the spec names it
    old: str  # the digest the running container's image came from
    new: str  # the digest the tag points to in the registry now

    @property
    def tag(self) -> str:
        return ImageReference.parse(self.image).tag or "latest"

    @property
    def cause(self) -> str:
        return f"tag {self.tag} moved: {short_digest(self.old)} -> {short_digest(self.new)}"


def short_digest(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    return f"{algorithm}:{value[:12]}"


def repository_digest(observed: ObservedState, image_id: str | None, repository: str) -> str | None:
    """The digest under which the local image `image_id` is known in `repository`, if any."""
    for pinned in observed.digests.get(image_id or "", ()):
        name, _, digest = pinned.partition("@")
        if ImageReference.parse(name).repository == repository:
            return digest
    return None


def _tag_of(image: str) -> ImageReference | None:
    """The reference when `image` names a tag (not a digest, not an image ID)."""
    if is_image_id(image):
        return None
    reference = ImageReference.parse(image)
    return None if reference.digest else reference


def _runs_this_tag(service_fingerprint: Mapping[str, str], container: ObservedContainer) -> bool:
    return (container.fingerprint or {}).get("image") == service_fingerprint.get("image")


def tags_to_check(desired: DesiredState, observed: ObservedState) -> list[str]:
    """The images whose tag a running container came from through its registry, sorted."""
    images = set()
    for name, service in desired.services.items():
        reference = _tag_of(service.image)
        if reference is None:
            continue
        for container in observed.of_service(name):
            if _runs_this_tag(service.fingerprint, container) and repository_digest(
                observed, container.image_id, reference.repository
            ):
                images.add(service.image)
    return sorted(images)


def moved_tags(
    desired: DesiredState, observed: ObservedState, registry: RegistryDigests
) -> list[MovedTag]:
    """The services whose running container's tag points to another digest in the registry."""
    moved = []
    for name, service in sorted(desired.services.items()):
        new = registry.digests.get(service.image)
        reference = _tag_of(service.image)
        if new is None or reference is None:
            continue
        olds = sorted(
            {
                old
                for c in observed.of_service(name)
                if _runs_this_tag(service.fingerprint, c)
                and (old := repository_digest(observed, c.image_id, reference.repository))
                and old != new
            }
        )
        if olds:
            moved.append(MovedTag(name, service.image, olds[0], new))
    return moved


def resolve_digests(
    client: EngineClient, images: Sequence[str], login: Login | None
) -> RegistryDigests:
    """Ask the registries for each image's digest: one request per image, in parallel."""
    digests: dict[str, str | None] = {}
    failures: dict[str, RegistryError] = {}

    def lookup(image: str) -> None:
        try:
            digests[image] = client.registry_digest(image, login.auth_for(image) if login else None)
        except RegistryError as e:
            failures[image] = e

    if images:
        with ThreadPoolExecutor(max_workers=min(PARALLEL_LOOKUPS, len(images))) as pool:
            list(pool.map(lookup, sorted(set(images))))
    return RegistryDigests(digests, failures)
