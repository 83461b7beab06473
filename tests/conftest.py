"""Shared by all tests: deployer's cache goes to a folder of the test session, not the home
folder; Ctrl-C reaches the deploys the tests start as it reaches a terminal's foreground job."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

# A background job of a non-interactive script (`.ci/run &`) starts with SIGINT ignored, and the
# processes it starts inherit that: the tests that press Ctrl-C on a deploy would then press
# nothing. A handler (not an ignore) is reset to the default in every process started from here.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before
