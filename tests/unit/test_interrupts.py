"""An interrupt during pulls cancels the pulls not yet started (a fake registry, a real SIGINT)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from deployer.infra.engine import EngineClient
from deployer.targets.host.apply import PARALLEL_PULLS, pull_all
from deployer.targets.hosts import together


class SlowRegistry(EngineClient):
    """Pulls that take a while; the first one meets a Ctrl-C in the main thread."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def pull(self, image: str, auth: Any = None) -> Iterator[dict[str, Any]]:
        self.started.append(image)
        if image == "img-0":
            time.sleep(0.2)  # the main thread waits for the pulls by now, as when Ctrl-C comes
            main = threading.main_thread().ident
            assert main is not None
            signal.pthread_kill(main, signal.SIGINT)
        for step in range(100):
            time.sleep(0.01)
            yield {"id": "layer", "progressDetail": {"current": step, "total": 100}}


class Progress:
    def __init__(self) -> None:
        self.finished: list[str] = []

    def update(self, subject: str, text: str) -> None:
        pass

    def done(self, subject: str, text: str) -> None:
        self.finished.append(subject)


def test_ctrl_c_during_pulls_cancels_the_queued_ones_and_stops_those_under_way() -> None:
    registry, progress = SlowRegistry(), Progress()
    images = [f"img-{n}" for n in range(2 * PARALLEL_PULLS)]

    with pytest.raises(KeyboardInterrupt):
        pull_all(registry, images, progress)

    assert sorted(registry.started) == images[:PARALLEL_PULLS]
    assert progress.finished == []


def test_threads_started_together_all_start_and_are_all_waited_for_despite_a_ctrl_c() -> None:
    finished: list[int] = []

    def work(number: int) -> None:
        if number == 0:
            signal.raise_signal(signal.SIGINT)  # a Ctrl-C while the others are being started
        time.sleep(0.2)
        finished.append(number)

    with pytest.raises(KeyboardInterrupt):
        together(range(6), work)

    assert sorted(finished) == [0, 1, 2, 3, 4, 5]
