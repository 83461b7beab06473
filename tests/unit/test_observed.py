"""Reading the engine's container list entries and image references."""

from __future__ import annotations

from deployer.core.observed import ObservedContainer
from deployer.targets.host.observe import container_from_summary, image_digests, image_ids


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
        },
    }

    observed = container_from_summary(summary)

    assert observed == ObservedContainer(
        "abc123", "shop-web-1", "web", 1, "exited", "Exited (137) 2 minutes ago", None,
        "ghcr.io/acme/web:1.4.2", "sha256:1", {"image": "h"}, 137,
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
