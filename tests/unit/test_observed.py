"""Reading the engine's container list entries and image references."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from deployer.core.errors import EngineUnreachableError
from deployer.core.observed import ObservedContainer
from deployer.targets.host.observe import container_from_summary, image_digests, image_ids, observe


def test_image_ids_by_tag_and_digest() -> None:
    listed = [
        {"Id": "sha256:1", "RepoTags": ["busybox:latest"], "RepoDigests": ["busybox@sha256:d1"]},
        {"Id": "sha256:2", "RepoTags": ["<none>:<none>"], "RepoDigests": None},
    ]
    assert image_ids(listed) == {
        "sha256:1": "sha256:1",
        "busybox:latest": "sha256:1",
        "busybox@sha256:d1": "sha256:1",
        "sha256:2": "sha256:2",
    }
    assert image_digests(listed) == {"sha256:1": ("busybox@sha256:d1",), "sha256:2": ()}


def test_container_from_summary() -> None:
    summary = {
        "Id": "abc123",
        "Names": ["/shop-web-1"],
        "Image": "ghcr.io/acme/web:1.4.2",
        "ImageID": "sha256:1",
        "State": "exited",
        "Status": "Exited (137) 2 minutes ago",
        "Labels": {
            "com.docker.compose.service": "web",
            "com.docker.compose.container-number": "1",
            "com.docker.compose.oneoff": "False",
            "dev.deployer.fingerprint": '{"image":"h"}',
            "com.docker.compose.config-hash": "c0ffee",
        },
    }

    observed = container_from_summary(summary)

    assert observed == ObservedContainer(
        "abc123", "shop-web-1", "web", 1, "exited", "Exited (137) 2 minutes ago", None,
        "ghcr.io/acme/web:1.4.2", "sha256:1", {"image": "h"}, 137, "c0ffee", {"image": "h"},
    )  # fmt: skip
    assert observed is not None and not observed.ready


def test_health_from_status_and_one_off_containers_left_out() -> None:
    base = {"Id": "x", "State": "running", "Labels": {"com.docker.compose.service": "web"}}
    healthy = container_from_summary({**base, "Status": "Up 5 seconds (healthy)"})
    starting = container_from_summary({**base, "Status": "Up 1 second (health: starting)"})
    assert (
        healthy is not None
        and healthy.health == "healthy"
        and healthy.ready
        and healthy.fingerprint is None
    )
    assert starting is not None and starting.health == "starting" and not starting.ready
    assert container_from_summary({**base, "Labels": {"com.docker.compose.oneoff": "True"}}) is None


class _Engine:
    """An engine whose image list answers only once the container list has been asked for too
    (or after 5 s): the two are read at once, not one after the other."""

    def __init__(self, failing: str = "") -> None:
        self.containers_asked = threading.Event()
        self.overlapped: list[bool] = []
        self.failing = failing

    def images(self) -> list[dict[str, Any]]:
        self.overlapped.append(self.containers_asked.wait(timeout=5))
        if self.failing == "images":
            raise EngineUnreachableError("fake", "images")
        return [{"Id": "sha256:1", "RepoTags": ["web:1"], "RepoDigests": ["reg/web@sha256:d1"]}]

    def project_containers(self, project: str) -> list[dict[str, Any]]:
        self.containers_asked.set()
        if self.failing:
            raise EngineUnreachableError("fake", "containers")
        summary = {"Id": "c1", "Names": ["/shop-web-1"], "Image": "web:1", "ImageID": "sha256:1"}
        return [{**summary, "State": "running", "Status": "Up 1 second", "Labels": {}}]


def test_the_containers_and_the_images_are_read_at_once() -> None:
    engine = _Engine()

    observed = observe(engine, "shop")  # type: ignore[arg-type]

    assert engine.overlapped == [True]
    assert ([c.id for c in observed.containers], dict(observed.image_ids)) == (
        ["c1"],
        {"sha256:1": "sha256:1", "web:1": "sha256:1", "reg/web@sha256:d1": "sha256:1"},
    )


def test_an_engine_that_fails_both_reads_raises_the_image_lists_error() -> None:
    with pytest.raises(EngineUnreachableError) as raised:
        observe(_Engine(failing="images"), "shop")  # type: ignore[arg-type]

    assert raised.value.message.endswith("images")
