"""Registries, asked through an engine: the digest a tag points to now (the engine reads the
manifest without pulling), and the credentials handed to the engine with each request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from deployer.core.errors import RegistryError
from deployer.core.reference import ImageReference
from deployer.infra.engine import EngineClient

PARALLEL_LOOKUPS = 4


@dataclass(frozen=True)
class Login:
    """Credentials for one registry, handed to the engine with each pull from it."""

    server: str
    username: str
    password: str = field(repr=False)

    def auth_for(self, image: str) -> dict[str, str] | None:
        if registry_of(image) != self.server:
            return None
        return {"username": self.username, "password": self.password, "serveraddress": self.server}


def registry_of(image: str) -> str:
    """The registry host of an image reference, as Docker reads it."""
    return ImageReference.parse(image).registry


@dataclass(frozen=True)
class RegistryDigests:
    """What the registries answered: per image (as the spec names it) the digest its tag points
    to (None: no such tag), and the images whose registry could not be asked, with why."""

    digests: Mapping[str, str | None] = field(default_factory=dict)
    failures: Mapping[str, RegistryError] = field(default_factory=dict)


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
