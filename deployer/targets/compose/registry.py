"""Tags checked against their registry: the digest a tag points to now, asked of the engine
(which reads the manifest without pulling), and the tags that moved under a running container.

Only tags worth a request are looked up: a service's tag whose running container came from that
registry (its image carries a digest of the repository, i.e. it was pulled or pushed). A reference
pinned by digest, an image ID, or an image only ever built or loaded here needs no request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deployer.core.desired import DesiredService, DesiredState
from deployer.core.errors import RegistryError
from deployer.core.reference import ImageReference, is_image_id
from deployer.targets.compose.observe import ObservedState

if TYPE_CHECKING:
    from deployer.infra.engine import EngineClient
    from deployer.targets.compose.apply import Login

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


def digest_in(pinned: Iterable[str], repository: str) -> str | None:
    """The digest of `repository` among an image's `repository@digest` references (RepoDigests)."""
    for reference in pinned:
        name, _, digest = reference.partition("@")
        # An image whose tags are all gone lists `<none>@sha256:...`: no repository of its own.
        if name != "<none>" and ImageReference.parse(name).repository == repository:
            return digest
    return None


def repository_digest(observed: ObservedState, image_id: str | None, repository: str) -> str | None:
    """The digest under which the local image `image_id` is known in `repository`, if any."""
    return digest_in(observed.digests.get(image_id or "", ()), repository)


def _tag_digest(observed: ObservedState, image_id: str, reference: ImageReference) -> str | None:
    """The digest the image came by under this tag. RepoDigests do not say which tag a digest
    came by: an image that carries another tag of the repository too may have it from that one."""
    other_tags = [
        key
        for key, found in observed.image_ids.items()
        if found == image_id
        and key.startswith(f"{reference.repository}:")
        and key != reference.normalized
    ]
    return None if other_tags else repository_digest(observed, image_id, reference.repository)


def _running_digests(name: str, service: DesiredService, observed: ObservedState) -> set[str]:
    """The digests, in the registry, of what the service's containers run from its tag now."""
    if is_image_id(service.image):
        return set()
    reference = ImageReference.parse(service.image)
    if reference.digest:
        return set()
    return {
        digest
        for container in observed.of_service(name)
        if (container.fingerprint or {}).get("image") == service.fingerprint.get("image")
        and (digest := _tag_digest(observed, container.image_id, reference))
    }


def tags_to_check(desired: DesiredState, observed: ObservedState) -> list[str]:
    """The images whose tag a running container came by through its registry, sorted."""
    return sorted(
        {s.image for name, s in desired.services.items() if _running_digests(name, s, observed)}
    )


def moved_tags(
    desired: DesiredState, observed: ObservedState, registry: RegistryDigests
) -> list[MovedTag]:
    """The services whose running container's tag points to another digest in the registry."""
    moved = []
    for name, service in sorted(desired.services.items()):
        new = registry.digests.get(service.image)
        olds = sorted(_running_digests(name, service, observed) - {new or ""})
        if new is not None and olds:
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
