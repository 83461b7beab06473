"""The tags that moved under a running container: what the registries answered (asked through
the engine, deployer.infra.registry) against the digests the running images came by.

Only tags worth a request are looked up: a service's tag whose running container came from that
registry (its image carries a digest of the repository, i.e. it was pulled or pushed). A reference
pinned by digest, an image ID, or an image only ever built or loaded here needs no request.
"""

from __future__ import annotations

from collections.abc import Set

from deployer.core.desired import DesiredService, DesiredState
from deployer.core.errors import InvalidReferenceError
from deployer.core.observed import ObservedState
from deployer.core.plan import BUILT, PULLED, MovedTag
from deployer.core.reference import ImageReference, digest_in, is_image_id
from deployer.infra.registry import RegistryDigests

PARALLEL_LOOKUPS = 4


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


def _is_tag(image: str) -> bool:
    return not is_image_id(image) and ImageReference.parse(image).digest is None


def _local_digests(observed: ObservedState, image: str) -> set[str]:
    """The digests in its repository of the image the tag `image` names here."""
    repository = ImageReference.parse(image).repository
    return {
        digest
        for pinned in observed.digests.get(observed.image_id(image) or "", ())
        if (digest := digest_in([pinned], repository))
    }


def tags_to_check(desired: DesiredState, observed: ObservedState) -> list[str]:
    """The images whose tag a running container came by through its registry, or that name an
    image here (the registry's, or not: a deploy must run the registry's), sorted."""
    return sorted(
        {
            s.image
            for name, s in desired.services.items()
            if _running_digests(name, s, observed)
            or (_is_tag(s.image) and observed.image_id(s.image) is not None)
        }
    )


def from_registry(desired: DesiredState, observed: ObservedState) -> set[str]:
    """The images whose tag came by the registry here (a running container's, or the local
    image's): a registry that cannot be asked about them may hide a moved tag. A tag only built
    or loaded here runs as it is when its registry does not answer."""
    return {
        s.image
        for name, s in desired.services.items()
        if _running_digests(name, s, observed)
        or (_is_tag(s.image) and _local_digests(observed, s.image))
    }


def running_tags(observed: ObservedState) -> list[str]:
    """The tags the containers run from, where they came by them through the registry, sorted:
    known before Compose has resolved the spec, they are those tags_to_check names for every
    service the spec keeps on its tag."""
    tags = set()
    for container in observed.containers:
        if is_image_id(container.image):
            continue
        try:
            reference = ImageReference.parse(container.image)
        except InvalidReferenceError:  # a short image ID, as the engine lists a retagged image
            continue
        if not reference.digest and _tag_digest(observed, container.image_id, reference):
            tags.add(container.image)
    return sorted(tags)


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


def foreign_tags(
    desired: DesiredState, observed: ObservedState, registry: RegistryDigests, skip: Set[str]
) -> list[MovedTag]:
    """The services (but those in `skip`) whose tag names an image here that is not the one
    the registry holds under it: pulled before the tag moved (PULLED), or built or tagged here
    (BUILT, by its ID)."""
    foreign = []
    for name, service in sorted(desired.services.items()):
        new = registry.digests.get(service.image)
        local_id = observed.image_id(service.image)
        if name in skip or new is None or local_id is None:
            continue
        digests = _local_digests(observed, service.image)
        if new not in digests:
            old, kind = (min(digests), PULLED) if digests else (local_id, BUILT)
            foreign.append(MovedTag(name, service.image, old, new, kind))
    return foreign
