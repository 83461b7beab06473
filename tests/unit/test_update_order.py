"""update_order(service): the order a resolved compose service is updated in, start-first only
where two of its containers can run at once; and the spec's `order:` key that declares it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deployer.core.desired import (
    DesiredService,
    UpdateOrder,
    desired_services,
    fingerprint,
    spec_overrides,
    update_order,
    with_overrides,
)
from deployer.core.errors import ConfigError
from deployer.core.spec import ServiceOverride, load_spec
from deployer.core.variables import SecretPolicy

START_FIRST = {"deploy": {"update_config": {"order": "start-first"}}}


def start_first(**service: Any) -> dict[str, Any]:
    """A resolved service (as `docker compose config --format json` gives it) that declares
    start-first."""
    return {"image": "ghcr.io/acme/web:1", **START_FIRST, **service}


def test_without_an_order_a_service_is_updated_stop_first() -> None:
    for service in (
        {"image": "web:1"},
        {"image": "web:1", "deploy": None},
        {"image": "web:1", "deploy": {"replicas": 2}},
        {"image": "web:1", "deploy": {"update_config": None}},
        {"image": "web:1", "deploy": {"update_config": {"parallelism": 1}}},
    ):
        assert update_order(service) == UpdateOrder(False, "default order")
    assert str(update_order({"image": "web:1"})) == "stop-first (default order)"


def test_an_explicit_stop_first_says_so() -> None:
    order = update_order({"image": "web:1", "deploy": {"update_config": {"order": "stop-first"}}})

    assert order == UpdateOrder(False, "order: stop-first")
    assert str(order) == "stop-first (order: stop-first)"


def test_start_first_where_nothing_stops_two_containers_running_at_once() -> None:
    # Read-only mounts, a tmpfs, container ports only (a random host port each), networks
    # without a fixed address: a new container beside the old one takes nothing it holds.
    service = start_first(
        ports=[
            {"mode": "ingress", "target": 8080, "protocol": "tcp"},
            {"mode": "ingress", "host_ip": "127.0.0.1", "target": 9090, "protocol": "tcp"},
            {"mode": "ingress", "target": 80, "published": "", "protocol": "tcp"},
        ],
        volumes=[
            {"type": "volume", "source": "assets", "target": "/assets", "read_only": True},
            {
                "type": "bind",
                "source": "/srv/shop/conf",
                "target": "/etc/app",
                "read_only": True,
                "bind": {"create_host_path": True},
            },
            {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 1048576}},
        ],
        networks={"default": None, "back": {"aliases": ["api"]}},
        network_mode="bridge",
        hostname="web",
    )

    order = update_order(service)

    assert order == UpdateOrder(True, "")
    assert str(order) == "start-first"


@pytest.mark.parametrize(
    ("service", "reason"),
    [
        pytest.param({"network_mode": "host"}, "host network", id="host network"),
        pytest.param(
            {"network_mode": "service:db"}, "shares the network of service:db", id="service network"
        ),
        pytest.param(
            {"network_mode": "container:vpn"},
            "shares the network of container:vpn",
            id="container network",
        ),
        pytest.param({"container_name": "shop-web"}, "container_name shop-web", id="name"),
        pytest.param(
            {"ports": [{"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"}]},
            "publishes 8080",
            id="published port",
        ),
        pytest.param(
            {
                "ports": [
                    {"mode": "ingress", "target": 8443, "published": "8443", "protocol": "tcp"},
                    {"mode": "ingress", "target": 80, "published": "80", "protocol": "tcp"},
                    {"mode": "ingress", "target": 53, "published": "8443", "protocol": "udp"},
                    {"mode": "ingress", "target": 9000, "protocol": "tcp"},
                    {
                        "mode": "ingress",
                        "host_ip": "127.0.0.1",
                        "target": 443,
                        "published": "443",
                        "protocol": "tcp",
                    },
                ]
            },
            "publishes 80, 443, 8443",
            id="published ports, each once, in numeric order",
        ),
        pytest.param(
            {"networks": {"front": {"ipv4_address": "10.0.0.5"}}},
            "fixed address 10.0.0.5",
            id="fixed ipv4",
        ),
        pytest.param(
            {"networks": {"front": {"ipv6_address": "fd00::5"}}},
            "fixed address fd00::5",
            id="fixed ipv6",
        ),
        pytest.param(
            {"volumes": [{"type": "volume", "source": "data", "target": "/data", "volume": {}}]},
            "mounts volume data read-write",
            id="volume",
        ),
        pytest.param(
            {
                "volumes": [
                    {
                        "type": "bind",
                        "source": "/srv/shop/uploads",
                        "target": "/uploads",
                        "bind": {"create_host_path": True},
                    }
                ]
            },
            "mounts /srv/shop/uploads read-write",
            id="bind mount",
        ),
        pytest.param(
            {"volumes": [{"type": "volume", "target": "/data", "volume": {}}]},
            "mounts an anonymous volume at /data",
            id="anonymous volume",
        ),
        pytest.param(
            {
                "volumes": [
                    {"type": "volume", "source": "data", "target": "/data", "read_only": False}
                ]
            },
            "mounts volume data read-write",
            id="read_only false",
        ),
    ],
)
def test_each_blocker_alone_makes_a_start_first_service_stop_first(
    service: dict[str, Any], reason: str
) -> None:
    order = update_order(start_first(**service))

    assert order == UpdateOrder(False, reason)
    assert str(order) == f"stop-first ({reason})"


def test_several_blockers_are_listed_together_in_one_reason() -> None:
    service = start_first(
        container_name="shop-web",
        ports=[
            {"mode": "ingress", "target": 80, "published": "8080", "protocol": "tcp"},
            {"mode": "ingress", "target": 90, "published": "9090", "protocol": "tcp"},
        ],
        networks={
            "back": {"ipv4_address": "10.0.0.5", "ipv6_address": "fd00::5"},
            "front": None,
        },
        volumes=[
            {"type": "volume", "source": "data", "target": "/data", "volume": {}},
            {"type": "volume", "source": "assets", "target": "/assets", "read_only": True},
            {"type": "bind", "source": "/srv/shop/dir", "target": "/dir"},
            {"type": "tmpfs", "target": "/tmp"},
            {"type": "volume", "target": "/cache"},
        ],
    )

    assert update_order(service) == UpdateOrder(
        False,
        "container_name shop-web, publishes 8080, 9090, fixed address 10.0.0.5, "
        "fixed address fd00::5, mounts volume data read-write, mounts /srv/shop/dir read-write, "
        "mounts an anonymous volume at /cache",
    )
    on_the_host = start_first(
        network_mode="host",
        container_name="shop-web",
        volumes=[{"type": "volume", "source": "data", "target": "/data"}],
    )
    assert str(update_order(on_the_host)) == (
        "stop-first (host network, container_name shop-web, mounts volume data read-write)"
    )


def test_an_explicit_stop_first_lists_no_blockers() -> None:
    service = {
        "image": "web:1",
        "deploy": {"update_config": {"order": "stop-first"}},
        "container_name": "shop-web",
        "network_mode": "host",
    }

    assert update_order(service) == UpdateOrder(False, "order: stop-first")


# The spec's `order:` key.


def _spec(folder: Path, services: str) -> Path:
    (folder / "compose.yml").write_text("services:\n  web:\n    image: web:1\n", encoding="utf-8")
    path = folder / "staging.yml"
    path.write_text(f"project: shop\ncompose_files: [compose.yml]\nservices:\n{services}")
    return path


def test_the_spec_order_becomes_the_compose_update_order(tmp_path: Path) -> None:
    the_spec = load_spec(_spec(tmp_path, "  web:\n    order: start-first\n"))
    model = {"services": {"web": {"image": "web:1"}, "db": {"image": "db:1"}}}

    entries = spec_overrides(the_spec, model)
    resolved = with_overrides(model, entries)
    services = desired_services(resolved, the_spec.is_secret)

    assert the_spec.services == {"web": ServiceOverride(None, None, None, {}, "start-first")}
    assert entries == {"web": {"deploy": {"update_config": {"order": "start-first"}}}}
    web = {"image": "web:1", "deploy": {"update_config": {"order": "start-first"}}}
    assert resolved == {"services": {"web": web, "db": {"image": "db:1"}}}
    parts, secret_parts = fingerprint(web, the_spec.is_secret)
    assert services["web"] == DesiredService(
        "web", "web:1", 1, parts, secret_parts, "no", None, UpdateOrder(True, "")
    )
    assert services["db"].order == UpdateOrder(False, "default order")


def test_the_spec_order_joins_replicas_and_the_update_config_of_the_compose_file(
    tmp_path: Path,
) -> None:
    the_spec = load_spec(
        _spec(
            tmp_path,
            "  web:\n    order: stop-first\n    replicas: 3\n  api:\n    order: start-first\n",
        )
    )
    model: dict[str, Any] = {
        "services": {
            "web": {
                "image": "web:1",
                "deploy": {
                    "replicas": 2,
                    "update_config": {"parallelism": 1, "order": "start-first"},
                },
            },
            "api": {
                "image": "api:1",
                "deploy": None,
                "ports": [{"mode": "ingress", "target": 80, "published": "8080"}],
            },
        }
    }

    entries = spec_overrides(the_spec, model)
    resolved = with_overrides(model, entries)

    assert entries == {
        "api": {"deploy": {"update_config": {"order": "start-first"}}},
        "web": {"deploy": {"replicas": 3, "update_config": {"order": "stop-first"}}},
    }
    assert resolved == {
        "services": {
            "web": {
                "image": "web:1",
                "deploy": {
                    "replicas": 3,
                    "update_config": {"parallelism": 1, "order": "stop-first"},
                },
            },
            "api": {
                "image": "api:1",
                "deploy": {"update_config": {"order": "start-first"}},
                "ports": [{"mode": "ingress", "target": 80, "published": "8080"}],
            },
        }
    }
    services = desired_services(resolved, SecretPolicy())
    assert {name: (s.replicas, s.order) for name, s in services.items()} == {
        "api": (1, UpdateOrder(False, "publishes 8080")),
        "web": (3, UpdateOrder(False, "order: stop-first")),
    }
    assert model["services"]["web"]["deploy"]["update_config"]["order"] == "start-first"


def test_a_bad_order_is_a_config_error_at_its_line(tmp_path: Path) -> None:
    path = _spec(tmp_path, "  web:\n    replicas: 2\n    order: first\n")

    with pytest.raises(ConfigError) as caught:
        load_spec(path)

    assert caught.value.lines() == [
        f"{path}:6: services.web.order: 'first' is not one of ['start-first', 'stop-first']"
    ]
