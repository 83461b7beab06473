"""Image references: the one parser and normaliser, read as Docker reads them.

`[domain/]path[:tag][@digest]`: the first `/`-separated part is a registry domain when it has a
`.` or a `:` or is `localhost`; without one the image is on Docker Hub. The engine lists an image
by its familiar name (`docker.io/` and `library/` dropped): `repository:tag` in RepoTags and
`repository@digest` in RepoDigests. A reference with both a tag and a digest names the digest:
the engine pulls by digest and lists it without the tag.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from deployer.core.errors import InvalidReferenceError

DEFAULT_REGISTRY = "docker.io"
_HUB_DOMAINS = frozenset({"docker.io", "index.docker.io"})
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:localhost|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?::[0-9]+)?"
TAG_PATTERN = re.compile(rf"^{_TAG}$")
_NAME_COMPONENT_PATTERN = re.compile(rf"^{_NAME_COMPONENT}$")
IMAGE_PATTERN = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageReference:
    domain: str | None  # the registry as written; None when the reference names none
    path: str  # as written: `redis`, `library/redis`, `acme/web`
    tag: str | None
    digest: str | None  # `sha256:<hex>`

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        match = IMAGE_PATTERN.match(text)
        if not match:
            raise InvalidReferenceError(text)
        domain, path = match["domain"], match["path"]
        if domain is not None and not _is_domain(domain):
            # `acme/web`: the first part is a path component, not a registry.
            if not _NAME_COMPONENT_PATTERN.match(domain):
                raise InvalidReferenceError(text)
            domain, path = None, f"{domain}/{path}"
        return cls(domain, path, match["tag"], match["digest"])

    @property
    def registry(self) -> str:
        """The registry host, as Docker reads it (and as `docker login` names it)."""
        if self.domain is None or self.domain in _HUB_DOMAINS:
            return DEFAULT_REGISTRY
        return self.domain

    @property
    def repository(self) -> str:
        """The familiar name without tag or digest: `redis`, `acme/web`, `ghcr.io/acme/web`."""
        if self.registry != DEFAULT_REGISTRY:
            return f"{self.domain}/{self.path}"
        return self.path.removeprefix("library/") if self.path.count("/") == 1 else self.path

    @property
    def normalized(self) -> str:
        """As the engine lists the image: `repository@digest` when pinned (its tag is not
        kept), else `repository:tag` with `latest` by default."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or 'latest'}"

    @property
    def pull_tag(self) -> str:
        """What the engine is asked to pull of the repository: the digest when there is one."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> ImageReference:
        """This repository at `tag` (any digest dropped: it pinned the old tag)."""
        return replace(self, tag=tag, digest=None)

    def pinned(self, digest: str) -> str:
        """This repository pinned to `digest`, as the engine lists it in RepoDigests."""
        return f"{self.repository}@{digest}"

    def __str__(self) -> str:
        """The reference as written."""
        text = f"{self.domain}/{self.path}" if self.domain else self.path
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def short_id(image_id: str) -> str:
    """An image ID or digest as people read it: 12 hex digits, without `sha256:`."""
    return image_id.removeprefix("sha256:")[:12]


def is_reference(text: str) -> bool:
    try:
        ImageReference.parse(text)
    except InvalidReferenceError:
        return False
    return True


def is_image_id(text: str) -> bool:
    """`sha256:<64 hex>`: an image's ID, which the engine takes in place of a reference."""
    return bool(_IMAGE_ID.match(text))


def lookup_key(text: str) -> str:
    """The key the engine's image list answers `text` to: an image ID as it is, a reference
    normalized; text that is neither is kept as it is (and matches nothing)."""
    if is_image_id(text):
        return text
    try:
        return ImageReference.parse(text).normalized
    except InvalidReferenceError:
        return text


def _is_domain(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost"


def pinned_reference(image: str, image_id: str, digests: Mapping[str, Sequence[str]]) -> str:
    """The exact image: a digest of the same repository where there is one, else the ID."""
    if is_image_id(image):
        return image_id
    repository = ImageReference.parse(image).repository
    for digest in digests.get(image_id, []):
        if ImageReference.parse(digest).repository == repository:
            return digest
    return image_id


def digest_in(pinned: Iterable[str], repository: str) -> str | None:
    """The digest of `repository` among an image's `repository@digest` references (RepoDigests)."""
    for reference in pinned:
        name, _, digest = reference.partition("@")
        # An image whose tags are all gone lists `<none>@sha256:...`: no repository of its own.
        if name != "<none>" and ImageReference.parse(name).repository == repository:
            return digest
    return None
