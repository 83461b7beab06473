"""What `deploy serve` told about an environment (core.watch.Memory), kept in the environment's
store so that an agent restarted (or killed and started again) does not tell it again. One record
is kept: the newest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deployer.core.watch import Memory
from deployer.state.store import Store, add_under_unique_key

KIND = "agent"


def _time(record: Mapping[str, Any]) -> float:
    time = record.get("time")
    return float(time) if isinstance(time, int | float) else 0.0


def recalled(store: Store) -> Memory:
    """The newest memory kept (an empty one where none is)."""
    records = store.records(KIND)
    return Memory.of(max(records, key=_time)) if records else Memory()


def keep(store: Store, memory: Memory) -> None:
    """Keep `memory` as the newest; the older ones go."""
    record = memory.record()
    add_under_unique_key(store, KIND, record)

    def older(records: list[dict[str, Any]]) -> list[int]:
        kept = next((i for i, r in enumerate(records) if r == record), None)
        return [index for index in range(len(records)) if index != kept]

    store.remove_records(KIND, older)
