"""From Compose's resolved model to desired services; the spec's overrides as a compose file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from deployer.compose.resolve import compose_issue
from deployer.core.desired import (
    check_services_exist,
    desired_services,
    environment_override,
    fingerprint,
    labelled_override,
    spec_overrides,
    with_overrides,
)
from deployer.core.errors import ConfigError, ConfigIssue
from deployer.core.spec import ServiceOverride, Spec
from deployer.core.variables import SecretPolicy


def spec(tmp_path: Path, services: dict[str, ServiceOverride]) -> Spec:
    compose = tmp_path / "compose.yml"
    compose.write_text("services:\n  web:\n    image: ${REGISTRY:?set REGISTRY}/web:1\n")
    return Spec(
        "staging", tmp_path / "staging.yml", "shop", (compose,), (), frozenset(), services, False, 60.0, None,
        lines={"services": 5, "services.api": 6},
    )  # fmt: skip


def test_spec_overrides_and_the_model_they_give(tmp_path: Path) -> None:
    model = {
        "services": {
            "web": {"image": "ghcr.io/acme/web:1.4.1", "environment": {"GREETING": "hi (staging)"}},
            "worker": {"image": "w:1", "deploy": {"replicas": 2, "resources": {}}},
            "db": {"image": "db:1"},
        }
    }
    the_spec = spec(
        tmp_path,
        {
            "web": ServiceOverride(
                tag="1.4.2", replicas=3, environment={"GREETING": "${GREETING} (staging)"}
            ),
            "worker": ServiceOverride(image="w:2", replicas=1),
            "db": ServiceOverride(),
        },
    )

    entries = spec_overrides(the_spec, model)

    assert (
        environment_override(the_spec)
        == "services:\n  web:\n    environment:\n      GREETING: ${GREETING} (staging)\n"
    )
    assert entries == {
        "web": {
            "image": "ghcr.io/acme/web:1.4.2",
            "scale": 3,
            "environment": {"GREETING": "${GREETING} (staging)"},
        },
        "worker": {"image": "w:2", "deploy": {"replicas": 1}},
    }
    assert with_overrides(model, entries) == {
        "services": {
            "web": {
                "image": "ghcr.io/acme/web:1.4.2",
                "environment": {"GREETING": "hi (staging)"},
                "scale": 3,
            },
            "worker": {"image": "w:2", "deploy": {"replicas": 1, "resources": {}}},
            "db": {"image": "db:1"},
        }
    }
    assert model["services"]["worker"]["image"] == "w:1"  # the input is left as it was


def test_override_of_a_service_that_does_not_exist(tmp_path: Path) -> None:
    the_spec = spec(tmp_path, {"api": ServiceOverride(tag="2")})
    with pytest.raises(ConfigError) as caught:
        check_services_exist(the_spec, {"services": {"web": {}, "db": {}}})
    assert caught.value.lines() == [
        f"{tmp_path / 'staging.yml'}:6: services.api: no service 'api' in the compose files (services: db, web)"
    ]


def test_fingerprint_leaves_out_what_compose_does_not_hash() -> None:
    service = {
        "image": "w:1",
        "command": ["run"],
        "environment": {"A": "1", "DB_PASSWORD": "x"},
        "labels": {"team": "shop", "dev.deployer.fingerprint": "{}"},
        "deploy": {"replicas": 3, "resources": {}},
        "scale": 3,
        "depends_on": {"db": {}},
        "build": {"context": "."},
        "x-note": "ignored",
    }

    parts, secret_parts = fingerprint(service, SecretPolicy())

    assert sorted(parts) == [
        "command",
        "deploy",
        "environment.A",
        "environment.DB_PASSWORD",
        "image",
        "labels",
    ]
    assert secret_parts == frozenset({"environment.DB_PASSWORD"})
    assert (
        fingerprint(
            {**service, "scale": 1, "deploy": {"replicas": 1, "resources": {}}}, SecretPolicy()
        )[0]
        == parts
    )
    assert (
        fingerprint({**service, "labels": {"team": "ops"}}, SecretPolicy())[0]["labels"]
        != parts["labels"]
    )


def test_desired_services_and_labels() -> None:
    model = {
        "services": {
            "web": {"image": "web:1", "scale": 2},
            "db": {"image": "db:1", "deploy": {"replicas": 1}},
        }
    }

    services = desired_services(model, SecretPolicy())

    assert [(s.name, s.image, s.replicas) for s in services.values()] == [
        ("db", "db:1", 1),
        ("web", "web:1", 2),
    ]
    web_print = '{"image":"' + services["web"].fingerprint["image"] + '"}'
    assert labelled_override({"web": {"scale": 2}}, "staging", {"web": services["web"]}) == (
        "services:\n"
        "  web:\n"
        "    labels:\n"
        "      dev.deployer.environment: staging\n"
        f"      dev.deployer.fingerprint: '{web_print}'\n"
        "    scale: 2\n"
    )


def test_compose_errors_are_placed_in_the_compose_file(tmp_path: Path) -> None:
    the_spec = spec(tmp_path, {})
    compose = the_spec.compose_files[0]

    required = compose_issue(
        the_spec,
        "error while interpolating services.web.image: required variable REGISTRY is missing a value: set REGISTRY\n",
    )
    invalid = compose_issue(
        the_spec, f"validating {compose}: services.web additional properties 'imag' not allowed\n"
    )

    assert required == ConfigIssue(
        str(compose), 3, "", "compose: required variable REGISTRY is missing a value: set REGISTRY"
    )
    assert (
        str(invalid)
        == f"{compose}: compose: validating {compose}: services.web additional properties 'imag' not allowed"
    )


def test_a_required_variable_of_the_specs_override_is_placed_in_the_spec(tmp_path: Path) -> None:
    the_spec = replace(
        spec(tmp_path, {"web": ServiceOverride(environment={"NEED": "${NOT_SET:?must be set}"})}),
        lines={"services": 5, "services.web": 6, "services.web.environment.NEED": 8},
    )

    issue = compose_issue(
        the_spec,
        "error while interpolating services.web.environment.NEED: required variable NOT_SET is "
        "missing a value: must be set\n",
    )

    assert str(issue) == (
        f"{the_spec.path}:8: services.web.environment.NEED: compose: required variable NOT_SET "
        "is missing a value: must be set"
    )
