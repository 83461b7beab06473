"""`deploy promote`'s write: everything it needs is checked before the spec is touched."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from deployer.commands.promote import promote
from deployer.core.errors import DeployerError, EngineUnreachableError
from deployer.core.results import PinnedService, Promotion
from deployer.infra.engine import Engine
from deployer.state.audit import entries
from tests.unit.test_operations import make_world

PINNED = "reg/web:1.0@sha256:" + "a" * 64


def _promotion(path: Path) -> Promotion:
    original = path.read_text()
    pinned = (PinnedService("web", "reg/web:1.0", PINNED, 3),)
    return Promotion("staging", "test", path, 3, pinned, original, original + "# pinned\n")


def test_a_target_engine_that_does_not_answer_leaves_the_spec_as_it_was(tmp_path: Path) -> None:
    world = make_world(tmp_path, "rollback")

    def unreachable(engine: Engine) -> None:
        raise EngineUnreachableError(engine.host, "connection refused")

    world.env = replace(world.env, outside=replace(world.env.outside, connect=unreachable))
    path = world.env.spec.path
    before = path.read_bytes()

    with pytest.raises(DeployerError) as raised:
        promote(_promotion(path), world.target, world.ui)

    assert raised.value.message == (
        "Docker engine at unix:///fake is unreachable: connection refused; nothing written"
    )
    assert path.read_bytes() == before
    assert entries(world.store) == []


def test_the_spec_is_written_then_the_promotion_audited(tmp_path: Path) -> None:
    world = make_world(tmp_path, "rollback")
    path = world.env.spec.path
    promotion = _promotion(path)

    promote(promotion, world.target, world.ui)

    assert path.read_text() == promotion.edited
    assert [(e.command, e.changes) for e in entries(world.store)] == [
        ("promote from staging release 3", [f"web: reg/web:1.0 -> {PINNED}"])
    ]
