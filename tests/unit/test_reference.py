"""The one image-reference parser: whole values, as Docker reads references."""

from __future__ import annotations

import pytest

from deployer.core.errors import InvalidReferenceError
from deployer.core.reference import ImageReference, is_image_id, is_reference, lookup_key

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "parsed", "registry", "repository", "normalized"),
    [
        ("busybox", ImageReference(None, "busybox", None, None), "docker.io", "busybox", "busybox:latest"),
        ("docker.io/library/busybox:1.36", ImageReference("docker.io", "library/busybox", "1.36", None), "docker.io", "busybox", "busybox:1.36"),
        ("library/redis:7", ImageReference(None, "library/redis", "7", None), "docker.io", "redis", "redis:7"),
        ("docker.io/acme/web", ImageReference("docker.io", "acme/web", None, None), "docker.io", "acme/web", "acme/web:latest"),
        ("acme/web:1", ImageReference(None, "acme/web", "1", None), "docker.io", "acme/web", "acme/web:1"),
        ("ghcr.io/acme/web:1.4.2", ImageReference("ghcr.io", "acme/web", "1.4.2", None), "ghcr.io", "ghcr.io/acme/web", "ghcr.io/acme/web:1.4.2"),
        ("127.0.0.1:5000/web", ImageReference("127.0.0.1:5000", "web", None, None), "127.0.0.1:5000", "127.0.0.1:5000/web", "127.0.0.1:5000/web:latest"),
        ("localhost/x", ImageReference("localhost", "x", None, None), "localhost", "localhost/x", "localhost/x:latest"),
        (f"web@{DIGEST}", ImageReference(None, "web", None, DIGEST), "docker.io", "web", f"web@{DIGEST}"),
        # tag plus digest: the engine pulls the digest and lists it without the tag
        (f"127.0.0.1:5000/web:1.25@{DIGEST}", ImageReference("127.0.0.1:5000", "web", "1.25", DIGEST), "127.0.0.1:5000", "127.0.0.1:5000/web", f"127.0.0.1:5000/web@{DIGEST}"),
        (f"docker.io/library/nginx:1.25@{DIGEST}", ImageReference("docker.io", "library/nginx", "1.25", DIGEST), "docker.io", "nginx", f"nginx@{DIGEST}"),
    ],
)  # fmt: skip
def test_parse(
    text: str, parsed: ImageReference, registry: str, repository: str, normalized: str
) -> None:
    reference = ImageReference.parse(text)
    assert reference == parsed
    assert (reference.registry, reference.repository, reference.normalized) == (
        registry,
        repository,
        normalized,
    )
    assert str(reference) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Web:1",
        "web:",
        "web:-1",
        "ACME/web",
        "web@sha256:short",
        "a//b",
        "web:1:2",
        "-web",
        "${REG}/web",
    ],
)
def test_invalid_references(text: str) -> None:
    assert not is_reference(text)
    with pytest.raises(InvalidReferenceError) as raised:
        ImageReference.parse(text)
    assert raised.value.message == f"invalid image reference {text!r}"


@pytest.mark.parametrize(
    ("image", "tag", "expected"),
    [
        ("web", "2", "web:2"),
        ("ghcr.io/acme/web:1.4.1", "1.4.2", "ghcr.io/acme/web:1.4.2"),
        ("127.0.0.1:5000/web", "2", "127.0.0.1:5000/web:2"),
        (f"127.0.0.1:5000/web:1@{DIGEST}", "2", "127.0.0.1:5000/web:2"),
    ],
)
def test_with_tag(image: str, tag: str, expected: str) -> None:
    assert str(ImageReference.parse(image).with_tag(tag)) == expected


def test_pull_tag_is_the_digest_where_there_is_one() -> None:
    assert [ImageReference.parse(t).pull_tag for t in ("web", "web:1", f"web:1@{DIGEST}")] == [
        "latest",
        "1",
        DIGEST,
    ]


def test_pinned() -> None:
    assert ImageReference.parse("docker.io/library/redis:7").pinned(DIGEST) == f"redis@{DIGEST}"


def test_lookup_key_keeps_image_ids() -> None:
    image_id = "sha256:" + "b" * 64
    assert is_image_id(image_id)
    assert not is_image_id("sha256:bbb")
    assert [lookup_key(t) for t in (image_id, "web", f"web:1@{DIGEST}", "Not A Ref")] == [
        image_id,
        "web:latest",
        f"web@{DIGEST}",
        "Not A Ref",
    ]
