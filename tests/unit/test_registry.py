"""Tags checked against their registry: which tags are looked up, and a moved tag in the plan."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from deployer.cli.render.plans import plan_text
from deployer.commands.deploy import deploy
from deployer.commands.read import diff
from deployer.core.command import Command, Completed
from deployer.core.desired import DesiredService
from deployer.core.errors import RegistryError, TagMovedError
from deployer.core.observed import ObservedState
from deployer.core.plan import Change, MovedTag, Plan
from deployer.core.reference import digest_in
from deployer.core.results import Applied
from deployer.core.variables import Redactor
from deployer.infra.registry import RegistryDigests
from deployer.targets.host.plan import plan
from deployer.targets.host.registry import from_registry, moved_tags, tags_to_check
from tests.unit.fakes import FakeEngine
from tests.unit.test_operations import DIGEST, GOOD, World, make_world, model
from tests.unit.test_plan import DEFAULT, IMAGES, IN_SYNC, REG, WEB_PRINT, desired

OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64
# The web image was pulled from its registry (it carries a digest there); worker's was built here.
PULLED = {"sha256:web-id": (f"{REG}/web@{OLD}",), "sha256:worker-id": ()}


def observed(digests: dict[str, tuple[str, ...]] = PULLED) -> ObservedState:
    return ObservedState("shop", IN_SYNC, IMAGES, digests)


def test_tags_a_running_container_came_by_or_that_name_an_image_here_are_looked_up() -> None:
    # worker's image was built here: the registry may hold its tag with other content.
    assert tags_to_check(desired(), observed()) == [f"{REG}/web:1.4.2", f"{REG}/worker:2.0"]
    assert from_registry(desired(), observed()) == {f"{REG}/web:1.4.2"}


def test_an_image_pinned_by_digest_needs_no_lookup() -> None:
    pinned = f"{REG}/web:1.4.2@{OLD}"
    web = DesiredService("web", pinned, 2, WEB_PRINT, frozenset())

    assert tags_to_check(desired(web=web), observed()) == [f"{REG}/worker:2.0"]


def test_an_image_that_carries_another_tag_of_the_repository_is_no_moved_tag() -> None:
    # Its digest may have come by that other tag (pulled as 2.0, tagged 1.4.2 here): the tag is
    # checked as one that names an image here, not as the running container's.
    retagged = ObservedState("shop", IN_SYNC, {**IMAGES, f"{REG}/web:2.0": "sha256:web-id"}, PULLED)
    registry = RegistryDigests({f"{REG}/web:1.4.2": NEW})

    assert moved_tags(desired(), retagged, registry) == []
    assert plan_text(plan(desired(), retagged, registry)) == (
        "staging (project shop): 2 changes\n"
        "SERVICE  ACTION    ORDER                       CAUSE\n"
        "web      pull                                  tag 1.4.2 moved: sha256:aaaaaaaaaaaa -> "
        "sha256:bbbbbbbbbbbb\n"
        "web      recreate  stop-first (default order)  tag 1.4.2 moved: sha256:aaaaaaaaaaaa -> "
        "sha256:bbbbbbbbbbbb"
    )


def test_a_service_whose_image_changes_anyway_needs_no_lookup() -> None:
    web = DesiredService("web", f"{REG}/web:1.5.0", 2, {**WEB_PRINT, "image": "i-150"}, frozenset())

    assert tags_to_check(desired(web=web), observed()) == [f"{REG}/worker:2.0"]


def test_a_tag_at_the_same_digest_changes_nothing() -> None:
    registry = RegistryDigests({f"{REG}/web:1.4.2": OLD})

    assert plan(desired(), observed(), registry) == Plan("staging", "shop", ())


def test_a_moved_tag_is_pulled_and_the_containers_recreated_with_the_cause() -> None:
    registry = RegistryDigests({f"{REG}/web:1.4.2": NEW})

    the_plan = plan(desired(), observed(), registry)

    cause = "tag 1.4.2 moved: sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb"
    assert the_plan == Plan(
        "staging",
        "shop",
        (
            Change("web", "pull", (cause,), f"{REG}/web:1.4.2"),
            Change("web", "recreate", (cause,), order=DEFAULT),
        ),
        (MovedTag("web", f"{REG}/web:1.4.2", OLD, NEW),),
    )
    assert plan_text(the_plan) == (
        "staging (project shop): 2 changes\n"
        "SERVICE  ACTION    ORDER                       CAUSE\n"
        f"web      pull                                  {cause}\n"
        f"web      recreate  stop-first (default order)  {cause}"
    )


def test_a_moved_tag_already_pulled_is_not_pulled_again() -> None:
    new_local = {**IMAGES, f"{REG}/web:1.4.2": "sha256:web-new"}
    digests = {**PULLED, "sha256:web-new": (f"{REG}/web@{NEW}",)}
    state = ObservedState("shop", IN_SYNC, new_local, digests)

    the_plan = plan(desired(), state, RegistryDigests({f"{REG}/web:1.4.2": NEW}))

    assert the_plan.changes == (
        Change(
            "web",
            "recreate",
            (
                "image ghcr.io/acme/web:1.4.2 now points to web-new (container runs web-id)",
                "tag 1.4.2 moved: sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb",
            ),
            order=DEFAULT,
        ),
    )


def test_a_registry_that_could_not_be_asked_is_a_warning_in_the_plan() -> None:
    failure = RegistryError("ghcr.io", f"{REG}/web:1.4.2", "connection refused")

    the_plan = plan(desired(), observed(), RegistryDigests({}, {f"{REG}/web:1.4.2": failure}))

    assert the_plan == Plan(
        "staging",
        "shop",
        (),
        (),
        ("cannot check ghcr.io/acme/web:1.4.2 in registry ghcr.io: connection refused",),
    )


def test_a_tag_the_registry_no_longer_has_is_not_a_move() -> None:
    registry = RegistryDigests({f"{REG}/web:1.4.2": None})

    assert moved_tags(desired(), observed(), registry) == []


# Through the commands, over the fakes: the policy for a moved tag, and a registry that is down.
MOVED = "sha256:" + "f2" * 32


def _world_with_registry(tmp_path: Path, immutable: bool) -> tuple[World, FakeEngine]:
    world = make_world(tmp_path, "rollback")
    engine = FakeEngine(world.compose)
    spec = replace(world.env.spec, immutable_tags=immutable)
    outside = replace(world.env.outside, connect=lambda _: engine)
    world.env = replace(world.env, spec=spec, outside=outside)
    world.deploy(GOOD)
    return world, engine


def test_a_moved_tag_is_refused_where_tags_are_immutable_and_nothing_changes(
    tmp_path: Path,
) -> None:
    world, engine = _world_with_registry(tmp_path, immutable=True)
    engine.registry["reg/web:1.0"] = MOVED
    engine.lookups.clear()
    ups, running = world.compose.ups, world.running()

    with pytest.raises(TagMovedError) as raised:
        world.deploy(GOOD)

    assert raised.value.message == (
        f"tag 1.0 of reg/web:1.0 moved: {DIGEST} -> {MOVED}; test has immutable tags "
        "(deploy.immutable_tags): nothing changed; deploy a new tag, or pin the digest to run "
        "(image: repo:tag@sha256:...)"
    )
    assert (world.compose.ups, world.running()) == (ups, running)
    assert engine.lookups == ["reg/web:1.0"]


def test_a_moved_tag_is_a_change_with_its_cause_where_tags_may_move(tmp_path: Path) -> None:
    world, engine = _world_with_registry(tmp_path, immutable=False)
    engine.registry["reg/web:1.0"] = MOVED

    [found] = diff(world.target, Redactor()).outcomes
    the_plan = found.value
    assert the_plan is not None

    cause = "tag 1.0 moved: sha256:d1d1d1d1d1d1 -> sha256:f2f2f2f2f2f2"
    assert the_plan.changes == (
        Change("web", "pull", (cause,), "reg/web:1.0"),
        Change("web", "recreate", (cause,), order=DEFAULT),
    )


def test_an_unreachable_registry_warns_in_diff_and_stops_a_deploy(tmp_path: Path) -> None:
    world, engine = _world_with_registry(tmp_path, immutable=False)
    down = RegistryError("reg", "reg/web:1.0", "connection refused")
    engine.registry["reg/web:1.0"] = down
    ups = world.compose.ups

    [found] = diff(world.target, Redactor()).outcomes
    the_plan = found.value
    assert the_plan is not None
    with pytest.raises(RegistryError) as raised:
        world.deploy(GOOD)

    assert (the_plan.changes, the_plan.unchecked) == ((), (down.message,))
    assert raised.value is down
    assert world.compose.ups == ups


def test_the_running_tags_are_looked_up_while_compose_resolves_and_only_once(
    tmp_path: Path,
) -> None:
    world, engine = _world_with_registry(tmp_path, immutable=False)
    engine.registry["reg/web:1.0"] = DIGEST
    engine.lookups.clear()
    asked = threading.Event()
    lookup = engine.registry_digest

    def registry_digest(image: str, auth: object = None) -> str | None:
        asked.set()
        return lookup(image)

    run = world.env.outside.run
    overlapped = []

    def resolving(command: Command, check: bool = True) -> Completed:
        if "config" in command.argv:  # Compose still at work: has the registry been asked?
            overlapped.append(asked.wait(timeout=5))
        return run(command, check)

    engine.registry_digest = registry_digest  # type: ignore[assignment]
    world.env = replace(world.env, outside=replace(world.env.outside, run=resolving))

    [found] = diff(world.target, Redactor()).outcomes

    assert found.value is not None
    assert (overlapped, found.value.changes, found.value.unchecked) == ([True], (), ())
    assert engine.lookups == ["reg/web:1.0"]


def test_a_running_tag_the_spec_no_longer_names_is_no_concern_of_the_plan(
    tmp_path: Path,
) -> None:
    # Looked up early (as the tag that runs), its registry's failure is no warning nor error.
    world, engine = _world_with_registry(tmp_path, immutable=False)
    engine.registry["reg/web:1.0"] = RegistryError("reg", "reg/web:1.0", "connection refused")
    pinned = "reg/web@sha256:" + "e5" * 32  # another image than the one that runs, here too
    world.compose.images = [
        *world.compose.images,
        {"Id": "sha256:" + "e6" * 32, "RepoTags": [], "RepoDigests": [pinned]},
    ]
    world.compose.model = {
        **model(GOOD),
        "services": {"web": {**model(GOOD)["services"]["web"], "image": pinned}},
    }

    [found] = diff(world.target, Redactor()).outcomes
    deployed = deploy(world.target, world.ui, "deploy test")

    assert found.value is not None
    assert [(c.service, c.action) for c in found.value.changes] == [("web", "recreate")]
    assert found.value.unchecked == ()
    assert isinstance(deployed, Applied)
    assert deployed.plan.changes == found.value.changes
    assert world.running()["web"][2] == pinned


def test_an_image_that_lost_its_tags_lists_none_as_its_repository_and_is_skipped() -> None:
    pinned = ["<none>@sha256:" + "a" * 64, "127.0.0.1:5000/web@sha256:" + "b" * 64]
    assert digest_in(pinned, "127.0.0.1:5000/web") == "sha256:" + "b" * 64
    assert digest_in(pinned[:1], "127.0.0.1:5000/web") is None


def test_a_tag_built_here_that_the_registry_holds_with_other_content_is_pulled_over() -> None:
    # worker's image was built here, never pushed; the registry holds worker:2.0 as NEW.
    registry = RegistryDigests({f"{REG}/web:1.4.2": OLD, f"{REG}/worker:2.0": NEW})
    cause = "the image under tag 2.0 here (worker-id) is not the registry's (sha256:bbbbbbbbbbbb)"

    the_plan = plan(desired(), observed(), registry)

    assert the_plan.moved == (
        MovedTag("worker", f"{REG}/worker:2.0", "sha256:worker-id", NEW, "built"),
    )
    assert plan_text(the_plan) == (
        "staging (project shop): 2 changes\n"
        "SERVICE  ACTION    ORDER                       CAUSE\n"
        f"worker   pull                                  {cause}\n"
        f"worker   recreate  stop-first (default order)  {cause}"
    )


def test_a_local_tag_moved_off_the_registry_image_that_runs_is_pulled_back_only() -> None:
    # web runs the registry's image (web-id, at OLD); a build here moved the tag to web-built.
    images = {**IMAGES, f"{REG}/web:1.4.2": "sha256:web-built", f"{REG}/web@{OLD}": "sha256:web-id"}
    here = ObservedState("shop", IN_SYNC, images, {**PULLED, "sha256:web-built": ()})
    registry = RegistryDigests({f"{REG}/web:1.4.2": OLD})

    assert tags_to_check(desired(), here) == [f"{REG}/web:1.4.2", f"{REG}/worker:2.0"]
    assert plan_text(plan(desired(), here, registry)) == (
        "staging (project shop): 1 change\n"
        "SERVICE  ACTION  CAUSE\n"
        "web      pull    the image under tag 1.4.2 here (web-built) is not the registry's "
        "(sha256:aaaaaaaaaaaa)"
    )


def test_a_registry_that_cannot_be_asked_about_a_tag_built_here_is_a_warning_only() -> None:
    down = RegistryError("ghcr.io", f"{REG}/worker:2.0", "connection refused")
    registry = RegistryDigests({f"{REG}/web:1.4.2": OLD}, {f"{REG}/worker:2.0": down})

    the_plan = plan(desired(), observed(), registry)

    assert (the_plan.changes, the_plan.unchecked) == ((), (down.message,))
    assert f"{REG}/worker:2.0" not in from_registry(desired(), observed())
