"""What prune and the records' retention keep: pure choices over release and audit records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer.core.errors import ConfigError
from deployer.core.results import Candidate, Trimmed
from deployer.core.spec import load_spec
from deployer.state.retention import expired_audit, expired_releases
from deployer.targets.prune import kept_by_releases, prunable


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


def test_releases_beyond_keep_history_expire_except_the_one_running() -> None:
    records = [
        release(4, web="w4", worker="k1"),
        release(1, web="w1", worker="k1"),
        {"number": "damaged"},
        release(5, web="w5", worker="k1"),
        release(2, web="w2", worker="k1"),
        release(3, web="w3", worker="k1"),
    ]

    # Positions: 4 at 0, 1 at 1, 5 at 3, 2 at 4, 3 at 5. Newest two: 5 and 4.
    assert expired_releases(records, 2, {}) == {1, 4, 5}
    # web runs w2 again (a rollback by hand): release 2 stays, so does 5 for the worker's k1.
    assert expired_releases(records, 2, {"web": "w2", "worker": "k1"}) == {1, 5}
    assert expired_releases(records, 10, {}) == set()


def test_audit_keeps_the_newest_entries_by_time() -> None:
    records = [{"at": 30.0}, {"at": 10.0}, {"at": "bad"}, {"at": 20.0}, {}]

    assert expired_audit(records, 2) == {1, 2, 4}
    assert expired_audit(records) == set()
    assert Trimmed(2, 0).lines() == ["removed 2 release record(s) beyond keep_history"]
    assert Trimmed().lines() == []


def spec_with(folder: Path, deploy: str) -> Path:
    (folder / "compose.yml").write_text("services:\n  web:\n    image: web:1\n")
    path = folder / "staging.yml"
    path.write_text(f"project: shop\ncompose_files: [compose.yml]\ndeploy: {deploy}\n")
    return path


def test_keep_history_defaults_to_10_and_never_below_keep_releases(tmp_path: Path) -> None:
    assert load_spec(spec_with(tmp_path, "{}")).keep_history == 10
    assert load_spec(spec_with(tmp_path, "{keep_releases: 12}")).keep_history == 12
    assert load_spec(spec_with(tmp_path, "{keep_history: 2, keep_releases: 2}")).keep_history == 2
    path = spec_with(tmp_path, "{keep_history: 2, keep_releases: 3}")

    with pytest.raises(ConfigError) as caught:
        load_spec(path)

    assert caught.value.lines() == [
        f"{path}:3: deploy.keep_history: keep_history (2) must be at least keep_releases (3):"
        " prune keeps the images of that many releases for rollback"
    ]
