"""What prune and the records' retention keep: pure choices over release and audit records."""

from __future__ import annotations

from typing import Any

from deployer.prune import Candidate, kept_by_releases, prunable


def release(number: int, **images: str) -> dict[str, Any]:
    return {
        "number": number,
        "result": "success",
        "services": {
            name: {"image": f"reg/{name}:{number}", "image_id": image_id, "pinned": image_id}
            for name, image_id in images.items()
        },
    }


def test_kept_images_are_the_newest_releases_of_every_project() -> None:
    records = {
        "shop-staging": [release(1, web="s1"), release(3, web="s3"), release(2, web="s2")],
        "shop-production": [release(1, web="p1", worker="w1"), release(2, web="p2")],
        "damaged": [{"number": "x"}],
    }

    assert kept_by_releases(records, 2) == {"s3", "s2", "p1", "w1", "p2"}
    assert kept_by_releases(records, 1) == {"s3", "p2"}


def test_an_image_kept_for_a_release_is_not_pruned_even_without_a_tag() -> None:
    images = [
        {"Id": "sha256:pinned", "RepoTags": None, "Size": 10},
        {"Id": "sha256:dangling", "RepoTags": None, "Size": 10},
        {"Id": "sha256:other-env", "RepoTags": ["reg/web:1"], "Size": 20},
        {"Id": "sha256:old", "RepoTags": ["reg/web:0"], "Size": 20},
    ]
    keep = {"sha256:pinned", "sha256:other-env"}

    assert prunable(images, set(), keep, {"reg/web"}, aggressive=True) == [
        Candidate("sha256:dangling", (), 10, "dangling"),
        Candidate("sha256:old", ("reg/web:0",), 20, "unused image of this environment"),
    ]
