"""Issue 18, 8: two machines with one host name. The other machine is a deploy in namespaces of
its own (UTS, mount, PID; another /etc/machine-id, the same host name), on the same engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import REGISTRY, Workspace
from tests.integration.test_releases import lock_state, wait_until_locked

pytestmark = pytest.mark.integration

# A service that stays `starting` for a minute: its deploy holds the lock, waiting on its health,
# with no process of its own running meanwhile.
SLOW_HEALTH_COMPOSE = """\
services:
  web:
    image: ${REGISTRY}/testapp:1.0.0
    healthcheck:
      test: ["CMD", "false"]
      interval: 1s
      start_period: 120s
"""
UNSHARE = ["unshare", "--uts", "--mount", "--pid", "--fork", "--mount-proc"]
OTHER_PID = 32000  # the next PID in the other machine's namespace: none here


def other_machine_deploy(space: Workspace, tmp: Path) -> subprocess.Popen[bytes]:
    machine_id = tmp / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    script = (
        f"mount --bind {machine_id} /etc/machine-id && echo {OTHER_PID - 1} > "
        f'/proc/sys/kernel/ns_last_pid && {{ "$@" & wait; }}'
    )
    return subprocess.Popen(
        [*UNSHARE, "sh", "-c", script, "sh", sys.executable, "-m", "deployer", "test", "--yes"],
        cwd=space.root,
        env={**os.environ, **space.env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_a_live_deploy_of_another_machine_with_the_same_host_name_is_not_stale(
    workspace: Workspace, tmp_path: Path
) -> None:
    space = workspace
    space.environment(SLOW_HEALTH_COMPOSE, f"REGISTRY={REGISTRY}\n", wait_timeout=120)
    assert not Path(f"/proc/{OTHER_PID}").exists()
    other = other_machine_deploy(space, tmp_path)
    try:
        wait_until_locked(space, other)  # type: ignore[arg-type]
        deadline = time.monotonic() + 60
        while not [c for c in space.containers("web") if c.status == "running"]:
            assert time.monotonic() < deadline and other.poll() is None
            time.sleep(0.2)
        time.sleep(1)  # `docker compose up` has ended: the deploy waits on web's health

        status = lock_state(space)
        lock = status["lock"]
        assert isinstance(lock, dict)
        assert (status["stale"], lock["pid"], lock["host"]) == (
            None,
            OTHER_PID,
            os.uname().nodename,
        )
        refused = space.deploy("lock", "release", "test")
        assert refused.returncode == 1
        assert "(its deploy is running); break it with" in refused.stderr
        assert other.poll() is None
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.wait()
