"""The `deploy` command's entry (deployer.__main__): the CLI started with the cyclic garbage
collector out of the way of start-up and exit, and at work for the command itself."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import deployer.cli
from deployer import __main__ as entry


@pytest.fixture
def collector() -> Iterator[None]:
    """The test process's collector as it was, afterwards."""
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


def test_the_command_runs_with_the_collector_on_and_start_up_frozen_out_of_its_reach(
    monkeypatch: pytest.MonkeyPatch, collector: None
) -> None:
    seen: list[tuple[bool, int]] = []

    def command() -> None:
        seen.append((gc.isenabled(), gc.get_freeze_count()))
        raise SystemExit(2)  # as the CLI ends, with a new object (the exception) alive

    monkeypatch.setattr(deployer.cli, "main", command)
    gc.unfreeze()

    with pytest.raises(SystemExit) as ended:
        entry.main()

    [(enabled, frozen_at_start)] = seen
    assert (enabled, frozen_at_start > 0, ended.value.code) == (True, True, 2)
    # What is alive when the command ends is frozen too: no collection goes over it at exit.
    assert gc.get_freeze_count() > frozen_at_start
