"""Faults caused for real: kill -9 during a slow recreate, a terminal's Ctrl-C, a dropped session."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from tests.integration.conftest import REGISTRY, Workspace, ok

pytestmark = pytest.mark.integration

# A web service whose stop takes its whole grace period: its shell ignores SIGTERM.
SLOW_STOP_COMPOSE = """\
services:
  web:
    image: ${REGISTRY}/testapp:${WEB_TAG}
    command: ["sh", "-c", "trap '' TERM; exec httpd -f -p 8080 -h /www"]
    ports: ["127.0.0.1::8080"]
    stop_signal: SIGTERM
    stop_grace_period: ${STOP_GRACE}
"""


@pytest.fixture
def slow_stop(workspace: Workspace, request: pytest.FixtureRequest) -> Workspace:
    """An environment `test` whose one service takes 4 s (or the test's parameter) to stop,
    deployed at 1.0.0."""
    grace = getattr(request, "param", "4s")
    workspace.write("slow/compose.yml", SLOW_STOP_COMPOSE)
    workspace.write("slow/.env", f"REGISTRY={REGISTRY}\nWEB_TAG=1.0.0\nSTOP_GRACE={grace}\n")
    workspace.write(
        "test.yml",
        f"project: {workspace.project}\ncompose_files: [slow/compose.yml]\n"
        "env_files: [slow/.env]\ndeploy: {wait_timeout: 30}\n",
    )
    ok(workspace.deploy("test", "--yes"))
    env_file = workspace.environments / "slow/.env"
    env_file.write_text(env_file.read_text().replace("WEB_TAG=1.0.0", "WEB_TAG=1.1.0"))
    return workspace


def start(
    space: Workspace, *args: str, new_group: bool = False, stdout: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "deployer", *args],
        cwd=space.root,
        env={**os.environ, **space.env},
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_group,  # its own process group, as a terminal's foreground job
    )


def ended(process: subprocess.Popen[str]) -> tuple[int, str]:
    """The exit code and the stderr of a started deploy, once it has ended."""
    assert process.stderr is not None
    with process.stderr:
        rest = process.stderr.read()
    return process.wait(), rest


def wait_for(condition: str, check: Callable[[], bool], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"never: {condition}"
        time.sleep(0.2)


def recreating(space: Workspace) -> bool:
    """Compose has made the new web container and is stopping the old one."""
    return len(space.containers("web")) == 2


def running_version(space: Workspace) -> str | None:
    """The image version web runs, once it has exactly one container and that one runs."""
    containers = space.containers("web")
    if len(containers) != 1 or containers[0].status != "running":
        return None
    return str(containers[0].image.labels["org.opencontainers.image.ref.name"]).rsplit(":", 1)[-1]


# Three deploy commands run while the old container stops: room for a loaded machine.
@pytest.mark.parametrize("slow_stop", ["15s"], indirect=True)
def test_kill_9_during_a_recreate_compose_finishes_and_the_lock_is_not_stale_meanwhile(
    slow_stop: Workspace,
) -> None:
    space = slow_stop
    deploying = start(space, "test", "--yes")
    wait_for("Compose recreates web", lambda: recreating(space))
    deploying.send_signal(signal.SIGKILL)
    ended(deploying)

    # At once, while Compose still stops the old container for the killed deploy:
    status = ok(space.deploy("lock", "status", "test", "--json")).json()
    assert isinstance(status, dict)
    assert (status["locked"], status["stale"]) == (True, None)
    refused = space.deploy("lock", "release", "test", "--force")
    assert refused.returncode == 1
    [message] = refused.stderr.splitlines()
    found = re.match(
        r"error: the lock of test is not stale: processes of its holder .* still change the "
        r"environment here: process (\d+) \(docker compose --project-name "
        + re.escape(space.project)
        + r" .* up --detach --pull never web\)",
        message,
    )
    assert found, message
    assert message.endswith("; wait until they end")
    assert os.path.exists(f"/proc/{found.group(1)}")
    locked = space.deploy("test", "--yes")
    assert locked.returncode == 1
    assert locked.stderr.splitlines()[-1].startswith("error: test is locked: held by ")

    # Compose finishes by itself: web runs the new release, nothing is left `Created`.
    wait_for("web runs 1.1.0", lambda: running_version(space) == "1.1.0")
    assert space.http("web", "/version") == "1.1.0"
    # Compose exits a moment after it starts the container: only then is the lock stale.
    wait_for("Compose ends", lambda: not compose_running(space, "up"))
    status = ok(space.deploy("lock", "status", "test", "--json")).json()
    assert status["stale"] == f"process {deploying.pid} on {os.uname().nodename} is gone"  # type: ignore[index]
    ok(space.deploy("lock", "release", "test", "--force"))
    assert ok(space.deploy("test", "--yes")).stdout.endswith("in sync, nothing to change\n")


def compose_running(space: Workspace, verb: str) -> bool:
    """A `docker compose ... VERB` of this workspace's project runs."""
    for entry in os.scandir("/proc"):
        try:
            with open(os.path.join(entry.path, "cmdline"), "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except OSError:
            continue
        if space.project.encode() in argv and verb.encode() in argv:
            return True
    return False


def lock_free_and_last_audit(space: Workspace) -> tuple[object, object]:
    status = ok(space.deploy("lock", "status", "test", "--json")).json()
    audit = ok(space.deploy("audit", "test", "--json")).json()
    assert isinstance(status, dict) and isinstance(audit, list)
    return status["locked"], (audit[-1]["command"], audit[-1]["result"])


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGHUP])
def test_terminal_ctrl_c_or_hangup_during_a_recreate_leaves_no_service_down(
    slow_stop: Workspace, signal_number: int
) -> None:
    """A terminal's Ctrl-C, or a dropped SSH session's hangup, reaches the whole foreground
    process group: deployer and every child of it still in that group."""
    space = slow_stop
    deploying = start(space, "test", "--yes", new_group=True)
    wait_for("Compose recreates web", lambda: recreating(space))
    os.killpg(deploying.pid, signal_number)
    code, rest = ended(deploying)

    assert code == 130, rest
    assert rest.splitlines()[-1] == (
        "interrupted: `docker compose up` was not cut short: every service runs its old or its "
        "new release; `deploy diff test` shows what is left to do"
    )
    assert running_version(space) == "1.1.0"
    assert lock_free_and_last_audit(space) == (False, ("deploy test", "interrupted"))


def test_ctrl_c_during_down_says_what_down_left(slow_stop: Workspace) -> None:
    space = slow_stop
    stopping = start(space, "down", "test", "--yes", new_group=True)
    wait_for("Compose takes test down", lambda: compose_running(space, "down"))
    os.killpg(stopping.pid, signal.SIGINT)
    code, rest = ended(stopping)

    assert code == 130, rest
    assert rest.splitlines()[-1] == (
        "interrupted: `docker compose down` was not cut short: the containers and networks of "
        "test are removed"
    )
    assert space.containers() == []
    assert lock_free_and_last_audit(space) == (False, ("down", "interrupted"))


def test_a_deploy_whose_lock_was_taken_over_records_no_release(slow_stop: Workspace) -> None:
    space = slow_stop
    deploying = start(space, "test", "--yes")
    wait_for("Compose recreates web", lambda: recreating(space))
    # `docker container prune` removes the lock marker (created, never started); then a second
    # operator takes the lock.
    space.engine.containers.get(f"deployer_{space.project}_lock").remove(force=True)
    ok(space.deploy("lock", "acquire", "test", "--reason", "maintenance"))
    code, rest = ended(deploying)

    assert code == 1, rest
    assert rest.splitlines()[-1].startswith(
        f"error: the lock of project {space.project} is no longer this command's (now held by "
    )
    assert rest.splitlines()[-1].endswith("): its outcome is not recorded as a release")
    history = ok(space.deploy("history", "test", "--json")).json()
    assert [r["number"] for r in history] == [1]  # type: ignore[union-attr]
    status = ok(space.deploy("lock", "status", "test", "--json")).json()
    assert status["lock"]["reason"] == "maintenance"  # type: ignore[index]


def test_terminal_ctrl_c_ends_logs_follow_as_an_interrupt(slow_stop: Workspace) -> None:
    """Ctrl-C reaches `docker compose logs` too, which may end before deployer sees the signal:
    still an interrupt (exit 130), not a failed command."""
    space = slow_stop
    following = start(
        space, "logs", "test", "--follow", "--tail", "1", new_group=True, stdout=subprocess.PIPE
    )
    assert following.stdout is not None
    assert following.stdout.readline()  # following
    # The terminal's SIGINT as it lands when the children see it first: theirs only.
    for child in group_members(following.pid):
        if child != following.pid:
            with contextlib.suppress(ProcessLookupError):  # gone meanwhile
                os.kill(child, signal.SIGINT)
    code, rest = ended(following)
    following.stdout.close()
    assert code == 130, rest
    assert "failed" not in rest


def group_members(group: int) -> list[int]:
    """The processes of a process group, from /proc."""
    members = []
    for entry in os.scandir("/proc"):
        try:
            with open(os.path.join(entry.path, "stat")) as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp: the fifth field, the third after the name
            members.append(int(entry.name))
    return members


# Commands run one after the other in a worker thread, as a fleet's hosts run theirs; SIGINT is
# noted and let pass, as while deployer waits for the commands under way. Prints how each ended.
COMMANDS_UNDER_CTRL_C = """\
import collections, signal, threading
from deployer.core.command import Command
from deployer.infra import runner
signal.signal(signal.SIGINT, lambda signum, frame: None)
print("ready", flush=True)
codes = collections.Counter()
def commands():
    for _ in range(1000):
        codes[runner.run(Command(("true",)), check=False).returncode] += 1
worker = threading.Thread(target=commands)
worker.start()
worker.join()
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the interrupts that come until it has ended
print(dict(codes))
"""


def test_a_ctrl_c_as_a_command_starts_does_not_kill_it_before_it_runs() -> None:
    """Between its fork and its own session a child is still in deployer's process group, where
    a terminal's Ctrl-C reaches it (and may strike only as it gets its session): without care 2%
    to 10% of these commands died before running (exit -2), and a fleet's host under way was
    reported failed, its `up` never run."""
    process = subprocess.Popen(
        [sys.executable, "-c", COMMANDS_UNDER_CTRL_C],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    sent = 0
    while process.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.killpg(process.pid, signal.SIGINT)
            sent += 1
        time.sleep(0.002)
    out, err = process.communicate()

    assert (process.returncode, out, err) == (0, "{0: 1000}\n", "")
    assert sent > 200  # the commands ran under a stream of interrupts
