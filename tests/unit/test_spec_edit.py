"""The spec editor: whole text in, whole text out; every byte it need not change is kept."""

from __future__ import annotations

import pytest

from deployer.core.errors import SpecEditError
from deployer.core.spec_edit import pin_images

WEB = "127.0.0.1:5000/shop-web:1.1.0@sha256:" + "a" * 64
WORKER = "127.0.0.1:5000/shop-worker:1.0.0@sha256:" + "b" * 64
HEAD = "project: shop\ncompose_files: [compose.yml]\n"


def test_replaces_a_tag_line_keeping_comments_and_quotes() -> None:
    text = (
        "# the shop in production\n"
        f"{HEAD}"
        "services:\n"
        "  # the front\n"
        "  web:\n"
        '    tag: "1.0.0"   # bumped by promote\n'
        "    replicas: 1\n"
        "\n"
        "deploy:\n"
        "  confirm: true  # always ask\n"
    )
    assert pin_images(text, "p.yml", {"web": WEB}) == (
        "# the shop in production\n"
        f"{HEAD}"
        "services:\n"
        "  # the front\n"
        "  web:\n"
        f'    image: "{WEB}"   # bumped by promote\n'
        "    replicas: 1\n"
        "\n"
        "deploy:\n"
        "  confirm: true  # always ask\n"
    )


def test_replaces_an_image_line_in_its_quoting() -> None:
    text = f"{HEAD}services:\n    web:\n        image: 'acme/web:1'\n        replicas: 2\n"
    assert pin_images(text, "p.yml", {"web": WEB}) == (
        f"{HEAD}services:\n    web:\n        image: '{WEB}'\n        replicas: 2\n"
    )


def test_adds_an_image_to_a_service_with_only_replicas() -> None:
    text = f"{HEAD}services:\n  web:\n    replicas: 3 # busy\n# the end\n"
    assert pin_images(text, "p.yml", {"web": WEB}) == (
        f"{HEAD}services:\n  web:\n    replicas: 3 # busy\n    image: {WEB}\n# the end\n"
    )


def test_adds_a_service_and_the_promotion_record() -> None:
    text = f"{HEAD}services:\n  web:\n    tag: 1.0.0\ndeploy:\n  wait_timeout: 30\n"
    promoted = {"environment": "staging", "release": 7}
    assert pin_images(text, "p.yml", {"web": WEB, "worker": WORKER}, promoted) == (
        f"{HEAD}services:\n"
        f"  web:\n    image: {WEB}\n"
        f"  worker:\n    image: {WORKER}\n"
        "deploy:\n  wait_timeout: 30\n"
        "x-promoted-from:\n  environment: staging\n  release: 7\n"
    )


def test_replaces_an_earlier_promotion_record() -> None:
    text = (
        f"{HEAD}services:\n  web:\n    image: {WORKER}\n"
        "x-promoted-from:\n  environment: staging  # by promote\n  release: 6\n"
    )
    promoted = {"environment": "staging", "release": 7}
    assert pin_images(text, "p.yml", {"web": WEB}, promoted) == (
        f"{HEAD}services:\n  web:\n    image: {WEB}\n"
        "x-promoted-from:\n  environment: staging  # by promote\n  release: 7\n"
    )


def test_adds_services_to_a_spec_without_them() -> None:
    text = f"{HEAD}deploy:\n    confirm: true"  # no newline at the end
    assert pin_images(text, "p.yml", {"web": WEB}) == (
        f"{HEAD}deploy:\n    confirm: true\nservices:\n    web:\n        image: {WEB}\n"
    )


def test_nothing_to_change_is_the_same_text() -> None:
    text = f"{HEAD}services:\n  web:\n    image: {WEB}  # pinned\n"
    assert pin_images(text, "p.yml", {"web": WEB}) == text


HAND_LINES = [
    "p.yml: cannot be edited safely ({reason}); nothing written. Add these lines by hand, "
    "in place of the services' `image:` or `tag:`:",
    "  services:",
    "    web:",
    f"      image: {WEB}",
]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"{HEAD}services: {{web: {{tag: 1.0.0}}}}\n", "services is a flow-style mapping ({...})"),
        (f"{HEAD}services:\n  web: {{tag: 1.0.0}}\n", "services.web is a flow-style mapping ({...})"),
        (f"{HEAD}x-web: &web\n  tag: 1.0.0\nservices:\n  web: *web\n", "services.web uses an anchor or an alias"),
        (f"{HEAD}services:\n  web:\n    tag: &t 1.0.0\n", "services.web.tag uses an anchor or an alias"),
        (f"{HEAD}services:\n  web:\n    image: >-\n      acme/web:1\n", "services.web.image is not a value on one line"),
        (f"{HEAD}services:\n  web:\n\t  tag: 1.0.0\n", "the file indents with tabs"),
        (f"{HEAD}services:\n  web:\n    tag: 1.0.0\n    image: acme/web:1\n", "the edited text would not read as intended"),
        (f"{HEAD}services:\n", "services is not a mapping"),
    ],
)  # fmt: skip
def test_refuses_what_it_cannot_edit_safely_with_the_lines_to_add(text: str, reason: str) -> None:
    with pytest.raises(SpecEditError) as caught:
        pin_images(text, "p.yml", {"web": WEB})
    expected = [HAND_LINES[0].format(reason=reason), *HAND_LINES[1:]]
    assert caught.value.lines() == expected
