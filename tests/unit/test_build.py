"""The build stage's decisions: which services are built, and what a push would do to a tag."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.compose.build import buildable, check_tag, push
from deployer.core.desired import ComposeFiles, DesiredService, DesiredState
from deployer.core.errors import DeployerError, TagTakenError
from deployer.core.results import Built
from tests.unit.test_operations import Silent

IMAGE = "ghcr.io/acme/tool:1.0"
PUSHED = "sha256:" + "a" * 64
IMAGE_ID = "sha256:" + "c" * 64


def desired(model: dict[str, dict[str, object]]) -> DesiredState:
    services = {
        name: DesiredService(name, str(service["image"]), 1, {}, frozenset())
        for name, service in model.items()
    }
    files = ComposeFiles("shop", (Path("compose.yml"),), {})
    return DesiredState("staging", files, {}, services, {"services": model}, 120.0)


STAGING = desired(
    {
        "tool": {"image": IMAGE, "build": {"context": "."}},
        "api": {"image": "ghcr.io/acme/api:2", "build": {"context": "api"}},
        "web": {"image": "ghcr.io/acme/web:3"},
    }
)


def test_all_services_with_a_build_section_are_built_when_none_is_named() -> None:
    assert buildable(STAGING, []) == ["api", "tool"]
    assert buildable(STAGING, ["tool"]) == ["tool"]


@pytest.mark.parametrize(
    ("state", "names", "message"),
    [
        (
            STAGING,
            ["web"],
            "web in staging: no `build:` section in the compose files, nothing to build "
            "(services with one: api, tool)",
        ),
        (STAGING, ["nosuch"], "no service nosuch in staging (services: api, tool, web)"),
        (
            desired({"web": {"image": "ghcr.io/acme/web:3"}}),
            [],
            "no service of staging has a `build:` section",
        ),
    ],
)
def test_a_service_that_cannot_be_built_is_one_clear_error(
    state: DesiredState, names: list[str], message: str
) -> None:
    with pytest.raises(DeployerError) as raised:
        buildable(state, names)

    assert raised.value.message == message


BUILT = Built("tool", IMAGE, IMAGE_ID)


def test_a_tag_the_registry_does_not_hold_is_pushed() -> None:
    assert check_tag(BUILT, {"Id": IMAGE_ID, "RepoDigests": []}, None) == BUILT


def test_the_same_image_under_the_tag_again_is_no_push() -> None:
    found = {"Id": IMAGE_ID, "RepoDigests": [f"ghcr.io/acme/tool@{PUSHED}"]}

    assert check_tag(BUILT, found, PUSHED) == Built("tool", IMAGE, IMAGE_ID, PUSHED, True)


def test_another_image_under_a_tag_the_registry_holds_is_refused() -> None:
    # Known in another repository under the registry's digest: not this repository's tag.
    found = {"Id": IMAGE_ID, "RepoDigests": [f"ghcr.io/acme/other@{PUSHED}"]}

    with pytest.raises(TagTakenError) as raised:
        check_tag(BUILT, found, PUSHED)

    assert raised.value.message == (
        f"tag 1.0 of {IMAGE} exists in the registry as {PUSHED}, and the image built is another "
        f"one ({IMAGE_ID}): not pushed; build under a new tag"
    )


class _Engine:
    """The engine calls `push` makes: local images by tag, the registry's digests, tags moved."""

    def __init__(self, local: dict[str, str], registry: dict[str, str]) -> None:
        self.local, self.registry = local, registry
        self.pushed: list[str] = []

    def local_image(self, image: str) -> dict[str, object] | None:
        return {"Id": self.local[image], "RepoDigests": []} if image in self.local else None

    def registry_digest(self, image: str, auth: object = None) -> str | None:
        return self.registry.get(image)

    def tag(self, image_id: str, image: str) -> None:
        self.local[image] = image_id

    def push(self, image: str, auth: object = None) -> list[dict[str, object]]:
        self.pushed.append(image)
        return []


BEFORE = "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("before", "left", "tag_after"),
    [
        (BEFORE, f"the local tag is left on {BEFORE}", BEFORE),
        (None, "the local tag 1.0 now names the image built, not the registry's", IMAGE_ID),
    ],
)
def test_a_refused_push_puts_the_local_tag_back_or_says_it_moved(
    before: str | None, left: str, tag_after: str
) -> None:
    engine = _Engine({IMAGE: IMAGE_ID}, {IMAGE: PUSHED})
    api = "ghcr.io/acme/api:2"
    built = [Built("api", api, "sha256:" + "d" * 64), Built("tool", IMAGE, IMAGE_ID, before=before)]

    with pytest.raises(TagTakenError) as raised:
        push(built, engine, None, Silent())  # type: ignore[arg-type]

    assert raised.value.message == (
        f"tag 1.0 of {IMAGE} exists in the registry as {PUSHED}, and the image built is another "
        f"one ({IMAGE_ID}): not pushed; build under a new tag; {left}"
    )
    assert (engine.local[IMAGE], engine.pushed) == (tag_after, [])
