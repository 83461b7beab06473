"""Batches and host selection for environments of several hosts."""

from __future__ import annotations

import pytest

from deployer.cli.render.results import label
from deployer.core.errors import DeployerError
from deployer.core.results import failed_hosts
from deployer.infra.engine import Engine
from deployer.targets.hosts import batches, each, in_turn, selected

HOSTS = [Engine(f"ssh://root@10.0.0.{n}") for n in range(1, 6)]


def addresses(groups: list[list[Engine]]) -> list[list[str]]:
    return [[e.host.rsplit(".", 1)[1] for e in group] for group in groups]


def test_batches_by_number_and_by_percentage_rounded_up() -> None:
    assert addresses(batches(HOSTS, 1)) == [["1"], ["2"], ["3"], ["4"], ["5"]]
    assert addresses(batches(HOSTS, 2)) == [["1", "2"], ["3", "4"], ["5"]]
    assert addresses(batches(HOSTS, 9)) == [["1", "2", "3", "4", "5"]]
    assert addresses(batches(HOSTS, "40%")) == [["1", "2"], ["3", "4"], ["5"]]
    assert addresses(batches(HOSTS, "50%")) == [["1", "2", "3"], ["4", "5"]]
    assert addresses(batches(HOSTS, "1%")) == [["1"], ["2"], ["3"], ["4"], ["5"]]
    assert addresses(batches(HOSTS, "100%")) == [["1", "2", "3", "4", "5"]]


def test_hosts_are_selected_by_url_address_or_user_at_address_in_the_specs_order() -> None:
    chosen = selected(HOSTS, ["10.0.0.4", "ssh://root@10.0.0.2", "root@10.0.0.5"], "production")
    assert [e.host for e in chosen] == [
        "ssh://root@10.0.0.2",
        "ssh://root@10.0.0.4",
        "ssh://root@10.0.0.5",
    ]
    assert selected(HOSTS, [], "production") == HOSTS


def test_an_unknown_host_is_refused_naming_the_hosts_there_are() -> None:
    with pytest.raises(DeployerError) as raised:
        selected(HOSTS[:2], ["10.0.0.9"], "production")
    assert raised.value.message == (
        "no host 10.0.0.9 in production (hosts: ssh://root@10.0.0.1, ssh://root@10.0.0.2)"
    )


def test_each_keeps_every_outcome_with_its_host_in_order() -> None:
    def action(engine: Engine) -> str:
        if engine.host.endswith(".3"):
            raise DeployerError("cannot connect")
        return engine.host[-1]

    outcomes = each(HOSTS, action)
    assert [(o.host[-1], o.value, o.error and o.error.message) for o in outcomes] == [
        ("1", "1", None),
        ("2", "2", None),
        ("3", None, "cannot connect"),
        ("4", "4", None),
        ("5", "5", None),
    ]


def test_in_turn_stops_at_the_first_host_that_fails() -> None:
    done: list[str] = []

    def action(engine: Engine) -> str:
        done.append(engine.host)
        if engine.host.endswith(".2"):
            raise DeployerError("unhealthy")
        return "ok"

    outcomes = in_turn(HOSTS, action)
    assert [(o.host, o.value, o.error and o.error.message) for o in outcomes] == [
        ("ssh://root@10.0.0.1", "ok", None),
        ("ssh://root@10.0.0.2", None, "unhealthy"),
    ]
    assert done == ["ssh://root@10.0.0.1", "ssh://root@10.0.0.2"]
    assert failed_hosts(outcomes) == ["ssh://root@10.0.0.2"]


def test_a_host_is_labelled_by_its_address_or_else_its_url() -> None:
    assert [label(url) for url in ("ssh://root@10.0.0.1:2222", "tcp://h1:2376")] == [
        "10.0.0.1",
        "h1",
    ]
    assert label("unix:///run/dh1/docker.sock") == "unix:///run/dh1/docker.sock"
