"""Engines over ssh:// on the bed's host 1: a deploy works; each command opens exactly one SSH
connection and closes it; a host that cannot be reached is one line naming it and what ssh said,
exit 1, nothing changed.

Connections are counted in the log of an sshd of the test's own, in host 1's namespace on a port
of its own (LogLevel VERBOSE, sshd's default MaxSessions): the bed's sshd is shared by every test
that runs at the same time, and stopping it would fail theirs."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import REGISTRY, Fleet, Result, ok
from tests.integration.test_faults import ended, start, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("fleet", ["ssh"], indirect=True),
]

ACCEPTED = re.compile(r"^Accepted publickey for root from \S+ port (\d+) ", re.MULTILINE)
CLOSED = re.compile(r"^Disconnected from user root \S+ port (\d+)$", re.MULTILINE)


@dataclass
class Sshd:
    """An sshd in host 1's namespace, and an `ssh` for the tests that trusts its host key."""

    folder: Path
    address: str
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ssh://root@{self.address}:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "sshd.log"

    def ssh(self, known_hosts: Path) -> dict[str, str]:
        """PATH with an `ssh` first that reads a configuration of its own (ssh ignores $HOME)."""
        config = self.folder / f"ssh_config-{known_hosts.name}"
        config.write_text(
            f"Host {self.address}\n  User root\n  IdentityFile {self.folder}/id_ed25519\n"
            f"  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n"
            "  StrictHostKeyChecking yes\n"
        )
        program = self.folder / f"bin-{known_hosts.name}" / "ssh"
        program.parent.mkdir(exist_ok=True)
        program.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {config} "$@"\n')
        program.chmod(0o755)
        return {"PATH": f"{program.parent}:{os.environ.get('PATH', os.defpath)}"}

    def start(self, setenv: str = "DOCKER_HOST=unix:///run/dh1/docker.sock") -> None:
        """Start it, with `setenv` (sshd's SetEnv) for the sessions; wait until it listens."""
        config = self.folder / "sshd_config"
        config.write_text(
            f"ListenAddress {self.address}:{self.port}\nHostKey {self.folder}/host_key\n"
            f"PidFile {self.folder}/sshd.pid\nAuthorizedKeysFile {self.folder}/authorized_keys\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nLogLevel VERBOSE\n"
            f"SetEnv {setenv}\n"
        )
        listening = self.log.read_text().count("Server listening") if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                ["nsenter", "--net=/run/netns/dh1", "/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        for _ in range(100):  # 0.1 s each, 10 s at most
            if self.log.read_text().count("Server listening") > listening:
                return
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


@pytest.fixture
def sshd(fleet: Fleet, tmp_path: Path) -> Iterator[Sshd]:
    """The fleet's environment `test` on host 1 only, over ssh:// to this test's own sshd; the
    folder deployer keeps its connection in (XDG_RUNTIME_DIR) is the test's own too."""
    folder = tmp_path / "sshd"
    folder.mkdir()
    for key in ("host_key", "id_ed25519"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True
        )
    shutil.copy(folder / "id_ed25519.pub", folder / "authorized_keys")
    daemon = Sshd(folder, fleet.bed.address(1), 22000 + os.getpid() % 1000)
    host_key = (folder / "host_key.pub").read_text().split()[:2]
    known = f"[{daemon.address}]:{daemon.port} {' '.join(host_key)}\n"
    (folder / "known_hosts").write_text(known)
    Path("/run/sshd").mkdir(exist_ok=True)
    runtime = Path(tempfile.mkdtemp(prefix="dt-", dir="/tmp"))  # short: it holds sockets
    try:
        daemon.start()
        spec = fleet.environments / "test.yml"
        single = f"engine: {{host: {daemon.url}}}"
        spec.write_text(re.sub(r"engine: \{hosts: \[.*\]\}", single, spec.read_text()))
        fleet.env.update({**daemon.ssh(folder / "known_hosts"), "XDG_RUNTIME_DIR": str(runtime)})
        yield daemon
        assert list(runtime.iterdir()) == []  # deployer's folder for the connection is gone
    finally:
        daemon.stop()
        shutil.rmtree(runtime)


def counted(fleet: Fleet, sshd: Sshd, *args: str) -> tuple[int, int, int]:
    """`deploy ARGS`: its exit code, the SSH connections it opened and how many of them are
    closed once it has ended."""
    before = len(sshd.log.read_text())
    result = fleet.deploy(*args)
    assert result.returncode in (0, 2), result.stderr
    text = sshd.log.read_text()[before:]
    opened = ACCEPTED.findall(text)
    return result.returncode, len(opened), len(set(opened) & set(CLOSED.findall(text)))


def test_deploy_over_ssh_opens_one_connection_per_command(fleet: Fleet, sshd: Sshd) -> None:
    counts = [counted(fleet, sshd, "test", "--yes"), counted(fleet, sshd, "diff", "test")]
    fleet.append("app/.env", "WEB_TAG=1.1.0\n")
    counts += [counted(fleet, sshd, "diff", "test"), counted(fleet, sshd, "test", "--yes")]
    counts += [counted(fleet, sshd, "status", "test"), counted(fleet, sshd, "logs", "test")]
    # (exit code, connections opened, of them closed) of: deploy, diff in sync, diff with one
    # change pending, deploy of that change, status, logs (the docker CLI alone)
    assert counts == [(0, 1, 1), (0, 1, 1), (2, 1, 1), (0, 1, 1), (0, 1, 1), (0, 1, 1)]
    images = {
        c.labels["com.docker.compose.service"]: c.attrs["Config"]["Image"]
        for c in fleet.containers_on(1)
    }
    node_registry = fleet.bed.node_image(REGISTRY)
    assert images == {
        "web": f"{node_registry}/testapp:1.1.0",
        "worker": f"{node_registry}/testapp:1.0.0",
    }


def refused(fleet: Fleet, sshd: Sshd, result: Result, reason: str, how: str = "over") -> None:
    """One line naming the host and the reason ssh or the remote gave, exit 1, nothing
    deployed on host 1."""
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"error: Docker engine at {sshd.url} is unreachable {how} SSH: {reason}\n",
    )
    assert fleet.containers_on(1) == []


def test_unknown_host_key_is_one_line_naming_the_host(
    fleet: Fleet, sshd: Sshd, tmp_path: Path
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    result = fleet.deploy("test", "--yes", env=sshd.ssh(empty))
    refused(
        fleet,
        sshd,
        result,
        f"No ED25519 host key is known for [{sshd.address}]:{sshd.port} and you have "
        "requested strict checking. Host key verification failed.",
    )


def test_ssh_refused_is_one_line_naming_the_host(fleet: Fleet, sshd: Sshd) -> None:
    sshd.stop()
    result = fleet.deploy("test", "--yes")
    refused(
        fleet,
        sshd,
        result,
        f"ssh: connect to host {sshd.address} port {sshd.port}: Connection refused",
    )


@pytest.mark.parametrize(
    ("setenv", "reason"),
    [
        ("PATH={tools}", "no docker CLI on the remote host (bash: line 1: docker: command not found)"),
        (
            "DOCKER_HOST=unix:///run/dh1/none.sock",
            "Cannot connect to the Docker daemon at unix:///run/dh1/none.sock. Is the docker daemon running?",
        ),
    ],
    ids=["no-docker-cli", "no-engine"],
)  # fmt: skip
def test_remote_without_docker_is_one_line_naming_the_host(
    fleet: Fleet, sshd: Sshd, setenv: str, reason: str, tmp_path: Path
) -> None:
    tools = tmp_path / "tools"  # a PATH for the remote shell with all it needs but docker
    tools.mkdir()
    for tool in ("bash", "sh", "env", "cat"):
        (tools / tool).symlink_to(str(shutil.which(tool)))
    sshd.stop()
    sshd.start(setenv.format(tools=tools))
    before = len(sshd.log.read_text())
    result = fleet.deploy("test", "--yes")
    refused(fleet, sshd, result, reason, how="through")
    text = sshd.log.read_text()[before:]
    assert set(CLOSED.findall(text)) == set(ACCEPTED.findall(text))  # the master ended too


def test_ctrl_c_ends_the_connection(fleet: Fleet, sshd: Sshd) -> None:
    """Ctrl-C while a deploy waits for the lock: exit 130, the connection closed (and its
    folder removed: the fixture checks)."""
    ok(fleet.deploy("lock", "acquire", "test", "--reason", "maintenance"))
    before = len(sshd.log.read_text())
    waiting = start(fleet, "test", "--yes", "--lock-wait", "300", new_group=True)
    try:
        held = "its master holds (the second session)"
        wait_for(held, lambda: sshd.log.read_text()[before:].count("Starting session") >= 2)
        time.sleep(1)  # into the wait for the lock
        os.killpg(waiting.pid, signal.SIGINT)
        code, stderr = ended(waiting)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert (code, stderr.splitlines()[-1:]) == (130, ["interrupted"])
    text = sshd.log.read_text()[before:]
    opened = ACCEPTED.findall(text)
    assert (len(opened), set(CLOSED.findall(text)) == set(opened)) == (1, True)
