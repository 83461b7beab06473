"""The images of a swarm (deployer/targets/swarm/images.py): what promote reads from a stack, and
which images of a node prune may remove."""

from __future__ import annotations

from typing import Any

from deployer.core.observed import ObservedService, ObservedStack, ObservedTask
from deployer.core.plan import Change, Plan
from deployer.core.results import Candidate
from deployer.core.status import ContainerStatus, EnvironmentStatus, ServiceStatus, SwarmStatus
from deployer.state.releases import Release, ServiceRelease
from deployer.targets.swarm.images import node_candidates, running_status

PINNED = "reg/web:2@sha256:ab"


def task(slot: int, node: str, current: bool = True, desired: str = "running") -> ObservedTask:
    return ObservedTask(slot, node, desired, "running", None, "2026-11-28T17:00:00Z", "", current)


def web(*tasks: ObservedTask) -> ObservedService:
    return ObservedService(
        "web", "id-web", 12, {"com.docker.stack.image": "reg/web:2"}, PINNED, 2, 2, 2, None, "",
        tasks, "",
    )  # fmt: skip


def release(number: int, digest: str) -> Release:
    return Release(
        number, "t", "me", "m", "deploy prod", "h", "v", "success",
        {"web": ServiceRelease("reg/web:2", digest, f"reg/web@{digest}")},
    )  # fmt: skip


def test_promote_reads_each_current_task_as_running_the_digest_its_service_pins() -> None:
    stack = ObservedStack(
        "shop",
        {"web": web(task(1, "dh4"), task(2, "dh5"), task(2, "dh6", current=False))},
    )
    found = SwarmStatus("prod", stack, Plan("prod", "shop", ()))
    releases = [release(3, "sha256:cd"), release(2, "sha256:ab"), release(1, "sha256:ab")]

    assert running_status(found, releases) == EnvironmentStatus(
        "prod",
        "shop",
        True,
        (
            ServiceStatus(
                "web",
                "reg/web:2",
                2,
                tuple(
                    ContainerStatus(
                        f"web.{slot}",
                        "reg/web:2",
                        "sha256:ab",
                        PINNED,
                        "running",
                        None,
                        f"running on {node} since 2026-11-28T17:00:00Z",
                        2,
                    )
                    for slot, node in ((1, "dh4"), (2, "dh5"))
                ),
            ),
        ),
        (),
    )


def test_a_stack_that_differs_from_its_spec_is_not_in_sync_and_one_converging_not_healthy() -> None:
    stack = ObservedStack("shop", {"web": web(task(1, "dh4"), task(2, "dh5", current=False))})
    converging = Plan("prod", "shop", (Change("web", "converge", ("1/2 tasks running",)),))
    updating = Plan("prod", "shop", (Change("web", "update", ("image reg/web:2 -> 3",)),))

    pending = running_status(SwarmStatus("prod", stack, converging), [])
    assert (pending.in_sync, pending.healthy) == (True, False)
    assert running_status(SwarmStatus("prod", stack, updating), []).in_sync is False


def image(image_id: str, tags: list[str], digests: list[str], size: int = 10) -> dict[str, Any]:
    return {"Id": image_id, "RepoTags": tags, "RepoDigests": digests, "Size": size}


def test_a_node_keeps_what_any_node_uses_and_what_the_swarm_pins_by_digest() -> None:
    images = [
        image("sha256:dangling", [], []),
        image("sha256:used-on-dh5", [], []),
        image("sha256:pinned", ["reg/web:2"], ["reg/web@sha256:ab"]),
        image("sha256:released", ["reg/web:1"], ["reg/web@sha256:r1"]),
        image("sha256:old", ["reg/web:0"], ["reg/web@sha256:00"], 7),
        image("sha256:kept-on-engine", ["reg/web:9"], []),
        image("sha256:other", ["other/app:1"], ["other/app@sha256:ff"]),
    ]

    found = node_candidates(
        "dh4",
        images,
        in_use={"sha256:used-on-dh5"},
        keep_ids={"sha256:kept-on-engine"},
        keep_digests={"sha256:ab", "sha256:r1"},
        repositories={"reg/web"},
        aggressive=True,
    )

    assert found == [
        Candidate("sha256:dangling", (), 10, "dangling", "dh4"),
        Candidate("sha256:old", ("reg/web:0",), 7, "unused image of this environment", "dh4"),
    ]
    gentle = node_candidates("dh6", images, set(), set(), set(), {"reg/web"}, aggressive=False)
    assert [(c.image_id, c.node) for c in gentle] == [
        ("sha256:dangling", "dh6"),
        ("sha256:used-on-dh5", "dh6"),
    ]
