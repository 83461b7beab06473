"""SSH hosts: one master connection per host and process, as commands (whole argv) and the
errors drawn from what ssh or the remote docker CLI answered."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deployer.core.command import Command, Completed
from deployer.core.errors import ProgramNotFoundError, SshConnectError
from deployer.infra.runner import child_environment
from deployer.infra.ssh import (
    Multiplexing,
    SshConnections,
    SshTarget,
    remote_socket,
    runtime_folder,
)

MUX = Multiplexing("/tmp/deployer-ssh-ab12", "/usr/bin/ssh")
SHARED = [
    *("-o", "ControlMaster=auto"),
    *("-o", "ControlPath=/tmp/deployer-ssh-ab12/%C"),
    *("-o", "ControlPersist=30"),
    *("-o", "BatchMode=yes"),
]
CHECK = (
    "docker version --format '{{.Server.Version}}' >/dev/null"
    " && docker context inspect --format '{{.Endpoints.docker.Host}}'"
)


@pytest.mark.parametrize(
    ("url", "target", "destination"),
    [
        ("ssh://prod-1", SshTarget("ssh://prod-1", "prod-1"), ["--", "prod-1"]),
        (
            "ssh://deploy@10.0.0.5:2222",
            SshTarget("ssh://deploy@10.0.0.5:2222", "10.0.0.5", "deploy", 2222),
            ["-l", "deploy", "-p", "2222", "--", "10.0.0.5"],
        ),
    ],
)
def test_target_passes_user_and_port_as_the_docker_cli_does(
    url: str, target: SshTarget, destination: list[str]
) -> None:
    assert SshTarget.parse(url) == target
    assert target.destination() == destination


def test_multiplexing_commands() -> None:
    target = SshTarget.parse("ssh://deploy@prod-1:2222")
    login = ["-l", "deploy", "-p", "2222", "--", "prod-1"]
    control = ["-o", "ControlPath=/tmp/deployer-ssh-ab12/%C"]
    assert MUX.open(target) == Command(
        ("/usr/bin/ssh", *SHARED, "-o", "ConnectTimeout=30", *login, CHECK)
    )
    assert MUX.forward(target, "/tmp/deployer-ssh-ab12/e.sock", "/var/run/docker.sock") == Command(
        (
            "/usr/bin/ssh",
            *control,
            *("-O", "forward", "-L", "/tmp/deployer-ssh-ab12/e.sock:/var/run/docker.sock"),
            *login,
        )
    )
    assert MUX.hold(target) == Command(("/usr/bin/ssh", *SHARED, *login, "cat >/dev/null"))
    assert MUX.exit(target) == Command(("/usr/bin/ssh", *control, "-O", "exit", *login))


def test_wrapper_runs_the_users_ssh_with_the_sharing_options_first() -> None:
    assert Multiplexing("/tmp/deployer ssh", "/opt/my ssh/ssh").wrapper() == (
        "#!/bin/sh\n"
        "exec '/opt/my ssh/ssh' -o ControlMaster=auto -o 'ControlPath=/tmp/deployer ssh/%C' "
        '-o ControlPersist=30 -o BatchMode=yes "$@"\n'
    )


@dataclass
class Answer:
    returncode: int
    stdout: str = ""
    stderr: str = ""


TARGET = SshTarget.parse("ssh://root@10.213.0.11")


def test_remote_socket_is_where_the_remote_docker_cli_reaches_its_engine() -> None:
    assert (
        remote_socket(TARGET, Answer(0, "unix:///run/dh1/docker.sock\n")) == "/run/dh1/docker.sock"
    )


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            Answer(255, stderr="ssh: connect to host 10.213.0.11 port 22: Connection refused\r\n"),
            "Docker engine at ssh://root@10.213.0.11 is unreachable over SSH: "
            "ssh: connect to host 10.213.0.11 port 22: Connection refused",
        ),
        (
            Answer(255, stderr="Host key verification failed.\r\n"),
            "Docker engine at ssh://root@10.213.0.11 is unreachable over SSH: "
            "Host key verification failed. (its key is not in known_hosts, or another one is: "
            "check with `ssh -l root 10.213.0.11`)",
        ),
        (
            Answer(
                255,
                stderr="Warning: Permanently added '10.213.0.11' (ED25519) to the list of known hosts.\r\n"
                "root@10.213.0.11: Permission denied (publickey).\r\n",
            ),
            "Docker engine at ssh://root@10.213.0.11 is unreachable over SSH: "
            "root@10.213.0.11: Permission denied (publickey).",
        ),
        (
            Answer(127, stderr="bash: line 1: docker: command not found\n"),
            "Docker engine at ssh://root@10.213.0.11 is unreachable through SSH: "
            "no docker CLI on the remote host (bash: line 1: docker: command not found)",
        ),
        (
            Answer(
                1,
                stderr="Cannot connect to the Docker daemon at unix:///run/dh1/docker.sock. "
                "Is the docker daemon running?\n",
            ),
            "Docker engine at ssh://root@10.213.0.11 is unreachable through SSH: "
            "Cannot connect to the Docker daemon at unix:///run/dh1/docker.sock. "
            "Is the docker daemon running?",
        ),
        (
            Answer(0, "tcp://10.0.0.9:2375\n"),
            "Docker engine at ssh://root@10.213.0.11 is unreachable through SSH: "
            "the docker CLI there reaches its engine at tcp://10.0.0.9:2375, not a unix socket",
        ),
    ],
)
def test_unusable_host_is_one_line_with_what_ssh_said(answer: Answer, message: str) -> None:
    with pytest.raises(SshConnectError) as raised:
        remote_socket(TARGET, answer)
    assert (raised.value.host, raised.value.lines()) == ("ssh://root@10.213.0.11", [message])
    assert raised.value.ssh_failed == (answer.returncode == 255)


@dataclass
class FakeHeld:
    closed: list[str]
    name: str

    def close(self) -> None:
        self.closed.append(self.name)


@dataclass
class FakeSsh:
    """Records the commands SshConnections runs; the remote engine is at /run/dock.sock."""

    ran: list[tuple[str, ...]] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def run(self, command: Command) -> Completed:
        self.ran.append(command.argv)
        opening = command.argv[-1].startswith("docker version")
        return Completed(0, "unix:///run/dock.sock\n" if opening else "", "")

    def hold(self, command: Command) -> FakeHeld:
        self.ran.append(command.argv)
        return FakeHeld(self.closed, command.argv[-2])


@pytest.fixture
def user_ssh(tmp_path: Path) -> str:
    """An `ssh` first on PATH: the user's own (say a wrapper that adds -F)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    program = folder / "ssh"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return str(program)


@pytest.fixture
def runtime() -> Iterator[str]:
    """A short XDG_RUNTIME_DIR (a control socket's path has at most 107 bytes)."""
    folder = tempfile.mkdtemp(prefix="dt-", dir="/tmp")
    yield folder
    shutil.rmtree(folder)


def test_runtime_folder_is_short_enough_for_control_sockets() -> None:
    assert runtime_folder({"XDG_RUNTIME_DIR": "/run/user/1000"}) == "/run/user/1000"
    assert runtime_folder({"XDG_RUNTIME_DIR": "/var/folders/xy/" + 20 * "a"}) == "/tmp"
    assert runtime_folder({"TMPDIR": "/home/ops/tmp"}) == "/tmp"


def test_one_master_per_host_reused_and_ended(user_ssh: str, runtime: str) -> None:
    fake = FakeSsh()
    connections = SshConnections(
        fake.run,
        fake.hold,
        {"PATH": f"{Path(user_ssh).parent}:/usr/bin", "XDG_RUNTIME_DIR": runtime},
    )
    first = connections.tunnel("ssh://root@h1")
    assert connections.tunnel("ssh://root@h1") == first  # reused: nothing more is run
    second = connections.tunnel("ssh://h2:2222")
    [folder] = [str(p) for p in Path(runtime).glob("deployer-ssh-*")]
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert (first, second) == (
        f"{folder}/engine-{_name('ssh://root@h1')}.sock",
        f"{folder}/engine-{_name('ssh://h2:2222')}.sock",
    )
    shared = ["-o", "ControlMaster=auto", "-o", f"ControlPath={folder}/%C"]
    shared += ["-o", "ControlPersist=30", "-o", "BatchMode=yes"]
    control = ["-o", f"ControlPath={folder}/%C"]
    opened = [
        (user_ssh, *shared, "-o", "ConnectTimeout=30", "-l", "root", "--", "h1", CHECK),
        (user_ssh, *control, "-O", "forward", "-L", f"{first}:/run/dock.sock", "-l", "root", "--", "h1"),
        (user_ssh, *shared, "-l", "root", "--", "h1", "cat >/dev/null"),
        (user_ssh, *shared, "-o", "ConnectTimeout=30", "-p", "2222", "--", "h2", CHECK),
        (user_ssh, *control, "-O", "forward", "-L", f"{second}:/run/dock.sock", "-p", "2222", "--", "h2"),
        (user_ssh, *shared, "-p", "2222", "--", "h2", "cat >/dev/null"),
    ]  # fmt: skip
    assert fake.ran == opened
    with open(f"{folder}/bin/ssh", encoding="utf-8") as wrapper:
        assert wrapper.read() == Multiplexing(folder, user_ssh).wrapper()

    connections.close()
    assert fake.ran[len(opened) :] == [
        (user_ssh, *control, "-O", "exit", "-l", "root", "--", "h1"),
        (user_ssh, *control, "-O", "exit", "-p", "2222", "--", "h2"),
    ]
    assert (fake.closed, list(Path(runtime).glob("deployer-ssh-*"))) == (["h1", "h2"], [])


def _name(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def test_a_docker_cli_dialing_ssh_finds_the_sharing_ssh_first(user_ssh: str, runtime: str) -> None:
    fake = FakeSsh()
    connections = SshConnections(
        fake.run, fake.hold, {"PATH": str(Path(user_ssh).parent), "XDG_RUNTIME_DIR": runtime}
    )
    engine = {"DOCKER_HOST": "ssh://root@h1", "DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": ""}
    process = {"PATH": "/usr/bin:/bin", "HOME": "/home/ops", "SECRET": "x", "DOCKER_CONFIG": "/d"}
    env = child_environment(
        Command(("docker", "compose", "up"), {**engine, "TAG": "1"}), process, connections
    )
    [folder] = [str(p) for p in Path(runtime).glob("deployer-ssh-*")]
    assert env == {
        "PATH": f"{folder}/bin:/usr/bin:/bin",
        "HOME": "/home/ops",
        "DOCKER_CONFIG": "/d",
        **engine,
        "TAG": "1",
    }
    assert fake.ran == []  # the CLI dials (through the wrapper) only if it needs the engine
    connections.close()  # the host it may have dialed is ended too
    assert fake.ran == [
        (user_ssh, "-o", f"ControlPath={folder}/%C", "-O", "exit", "-l", "root", "--", "h1")
    ]


def test_other_engines_keep_the_path_they_had() -> None:
    fake = FakeSsh()
    connections = SshConnections(fake.run, fake.hold, {"PATH": "/nowhere"})
    command = Command(("docker", "compose", "up"), {"DOCKER_HOST": "unix:///var/run/docker.sock"})
    # nor does a command given no engine, whatever DOCKER_HOST the shell has (ssh itself)
    other = Command(("/usr/bin/ssh", "-O", "exit", "--", "h1"))
    shell = {"PATH": "/usr/bin", "HOME": "/h", "DOCKER_HOST": "ssh://h1"}
    assert [child_environment(c, shell, connections) for c in (command, other)] == [
        {"PATH": "/usr/bin", "HOME": "/h", "DOCKER_HOST": "unix:///var/run/docker.sock"},
        shell,
    ]
    # (and no wrapper was made: there is no `ssh` on /nowhere to wrap)


def test_no_ssh_program_is_one_line() -> None:
    fake = FakeSsh()
    connections = SshConnections(fake.run, fake.hold, {"PATH": "/nowhere"})
    command = Command(("docker", "compose", "up"), {"DOCKER_HOST": "ssh://h1"})
    with pytest.raises(ProgramNotFoundError) as raised:
        child_environment(command, {"PATH": "/nowhere"}, connections)
    assert raised.value.lines() == ["`ssh` is not installed (not found on PATH)"]
