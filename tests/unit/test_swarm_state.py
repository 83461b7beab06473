"""The state of a swarm environment as swarm configs (deployer/swarm_state.py): config names within
swarmkit's limit, records read from config data, the lock and its renewals, over the swarm's
config calls kept in memory."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from deployer.core.spec import SWARM, Spec
from deployer.core.variables import Variables
from deployer.infra.engine import SwarmConfig
from deployer.state.store import lock_record, read_record
from deployer.state.swarm_store import NAME_LIMIT, SwarmStore, config_name
from deployer.targets.base import Environment, Outside
from deployer.targets.choose import target_of
from tests.unit.fakes import FakeStore

# swarmkit's rule for a config's name (manager/controlapi, validateConfigOrSecretAnnotations).
SWARMKIT_NAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$")
LONG = "payments-reconciliation-service-production"


class Configs:
    """The swarm's config calls as SwarmStore makes them: a name is created once (a taken one
    answers None, the 409 of the swarm), configs are listed by labels and inspected by name,
    removed by ID; times on a clock the test sets."""

    def __init__(self) -> None:
        self.kept: dict[str, SwarmConfig] = {}  # by ID
        self.now = 1000.0
        self.count = 0

    def swarm_manager(self) -> None:
        pass

    def clock(self) -> float:
        return self.now

    def create_config(self, name: str, labels: dict[str, str], data: bytes) -> str | None:
        assert len(name) <= NAME_LIMIT and SWARMKIT_NAME.match(name), name
        if any(config.name == name for config in self.kept.values()):
            return None
        self.count += 1
        config_id = f"id{self.count}"
        self.kept[config_id] = SwarmConfig(config_id, name, self.now, labels, data)
        return config_id

    def configs(self, labels: list[str]) -> list[SwarmConfig]:
        wanted = dict(label.split("=", 1) for label in labels)
        return [
            config
            for config in self.kept.values()
            if all(config.labels.get(key) == value for key, value in wanted.items())
        ]

    def config(self, name: str) -> SwarmConfig | None:
        return next((c for c in self.kept.values() if c.name == name), None)

    def remove_config(self, config_id: str) -> None:
        self.kept.pop(config_id, None)

    def names(self) -> list[str]:
        return sorted(config.name for config in self.kept.values())


def test_a_config_name_is_the_project_kind_and_key() -> None:
    assert config_name("shop", "release", "000001") == "deployer_shop_release_000001"
    assert config_name("shop", "lock") == "deployer_shop_lock"


def test_a_name_past_swarmkits_limit_keeps_its_beginning_and_ends_with_a_digest_of_the_whole() -> (
    None
):
    first = config_name(LONG, "audit", "20261128T195506_abcdef12")
    second = config_name(LONG, "audit", "20261128T195506_abcdef13")
    assert (first, second) == (
        "deployer_payments-reconciliation-service-produc_765162158865dbd4",
        "deployer_payments-reconciliation-service-produc_472df5580a4b8ea0",
    )
    assert config_name(LONG, "audit", "20261128T195506_abcdef12") == first  # deterministic
    assert config_name(LONG, "lock") == "deployer_payments-reconciliation-service-production_lock"
    assert config_name("x" * 50, "lock") == f"deployer_{'x' * 50}_lock"  # 64 characters
    assert config_name("x" * 51, "lock") == f"deployer_{'x' * 38}_5e38ef65bf7634aa"  # not 65


def test_a_record_is_the_json_object_a_config_holds_a_damaged_one_is_none() -> None:
    assert read_record(b'{"number":1}') == {"number": 1}
    assert [read_record(data) for data in (b"{", b"[1]", b"\xff", None)] == [None] * 4
    assert lock_record(b"not json") == {"holder": "unknown (unreadable lock)"}


def test_records_are_configs_with_labels_a_taken_key_refuses_and_damaged_ones_are_passed_over() -> (
    None
):
    swarm = Configs()
    store = SwarmStore(swarm, "shop")  # type: ignore[arg-type]

    assert store.add("release", "000001", {"number": 1, "by": "alice"}) is True
    assert store.add("release", "000001", {"number": 1, "by": "bob"}) is False
    swarm.create_config(
        "deployer_shop_release_000002",
        {"dev.deployer.state": "release", "dev.deployer.project": "shop"},
        b"{damaged",
    )
    store.add_unique("audit", {"command": "lock acquire"})
    SwarmStore(swarm, "other").add(  # type: ignore[arg-type]
        "release", "000001", {"number": 1, "by": "carol"}
    )

    assert store.records("release") == [{"number": 1, "by": "alice"}]
    assert store.records("audit") == [{"command": "lock acquire"}]
    assert swarm.kept["id1"] == SwarmConfig(
        "id1",
        "deployer_shop_release_000001",
        1000.0,
        {"dev.deployer.state": "release", "dev.deployer.project": "shop"},
        b'{"by":"alice","number":1}',
    )
    assert store.remove_records("release", lambda records: {0}) == 1
    assert store.records("release") == []
    assert swarm.names()[-1] == "deployer_shop_release_000002"  # a damaged record stays


def test_the_lock_is_one_config_renewed_by_configs_of_its_own_and_removed_by_id() -> None:
    swarm = Configs()
    store = SwarmStore(swarm, "shop")  # type: ignore[arg-type]
    assert store.lock() is None

    assert store.claim_lock({"holder": "alice", "token": "t1"}) is True
    assert store.claim_lock({"holder": "bob", "token": "t2"}) is False
    swarm.now = 1060.0
    store.renew_lock("t1", 1)
    swarm.now = 1120.0
    store.renew_lock("t1", 2)
    held = store.lock()
    assert held is not None
    assert (held.record, held.id, held.since, held.renewed) == (
        {"holder": "alice", "token": "t1"},
        "id1",
        1000.0,
        1120.0,
    )
    assert swarm.names() == ["deployer_shop_lock", "deployer_shop_lock_t1_renewed_2"]

    store.remove_lock(held.id, "t1")
    assert store.claim_lock({"holder": "bob", "token": "t2"}) is True
    store.remove_lock(held.id, "t1")  # the lock inspected earlier is gone: bob's stays
    assert swarm.names() == ["deployer_shop_lock"]
    assert store.lock().record == {"holder": "bob", "token": "t2"}  # type: ignore[union-attr]


def test_a_swarm_environment_keeps_its_state_in_the_swarm_store(tmp_path: Path) -> None:
    spec = Spec(
        "prod", tmp_path / "prod.yml", "shop", (), (), frozenset(), {}, False, 5.0, "unix:///m"
    )  # fmt: skip
    on_host, on_swarm = FakeStore("host"), FakeStore("swarm")
    outside = Outside(
        connect=lambda engine: None,  # type: ignore[arg-type,return-value]
        store=lambda client, project: on_host,
        swarm_store=lambda c, p: on_swarm,
    )
    env = Environment(spec, Variables({}), outside)
    swarm = replace(env, spec=replace(spec, orchestrator=SWARM))

    assert (target_of(env, {}).store(), target_of(swarm, {}).store()) == (on_host, on_swarm)
