"""Engines behind SSH (`ssh://user@host[:port]`): one OpenSSH connection per host and deployer
process, shared by every docker CLI (Compose) dial and every Docker SDK request to that host.

Without this, the docker CLI runs a new `ssh ... docker system dial-stdio` per connection and the
SDK (use_ssh_client) one per request: 3 to 5 SSH logins for one `deploy diff`, about 25 for one
`deploy` (docs/hosts.md, "SSH"). Here, on the first need of a host, deployer starts an OpenSSH
master connection (ControlMaster) in a private folder, which:
- carries the docker CLI's dials: deployer's children find a `ssh` wrapper first on their PATH
  that adds the ControlPath options to the user's own `ssh` (their ~/.ssh/config still applies);
- forwards a local unix socket to the engine socket the remote docker CLI itself uses (asked of
  it, so DOCKER_HOST or a context on the remote are honoured): the SDK speaks plain unix:// to it,
  so it needs neither paramiko nor an `ssh` process per request.
The command builders here are data; SshConnections runs them through the runner it is given."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from deployer.core.command import Command
from deployer.core.errors import DeployerError, ProgramNotFoundError, SshConnectError

# Seconds a master outlives its last user. deployer ends its masters when it ends (`ssh -O
# exit`); this bounds what a killed deployer leaves: a `docker compose up` it started keeps the
# connection while it runs, and the master goes this long after it.
CONTROL_PERSIST = 30
CONNECT_TIMEOUT = 30  # seconds, as the docker CLI's own dials
# What the remote docker CLI answers before anything else: that it is there, that its engine
# answers, and where that engine's socket is (DOCKER_HOST, context or the default).
REMOTE_CHECK = (
    "docker version --format '{{.Server.Version}}' >/dev/null"
    " && docker context inspect --format '{{.Endpoints.docker.Host}}'"
)
# Keeps the master in use while deployer lives: its stdin is deployer's pipe, closed at exit.
REMOTE_HOLD = "cat >/dev/null"
_SSH_FAILED = 255  # ssh's exit code for its own failures; others are the remote command's
_COMMAND_NOT_FOUND = 127
_HOST_KEY_FAILED = "Host key verification failed."
_SOCKET_PATH_MAX = 107  # bytes of a unix socket's path
_CONTROL_NAME = 40 + 17  # %C (a SHA-1 in hex), and the suffix ssh adds to it while it binds


@dataclass(frozen=True)
class SshTarget:
    """An ssh:// engine URL as `ssh` takes it: the same arguments the docker CLI passes."""

    url: str
    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, url: str) -> SshTarget:
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname:
            raise DeployerError(f"not an ssh://[user@]host[:port] URL: {url}")
        return cls(url, parts.hostname, parts.username, parts.port)

    def destination(self) -> list[str]:
        user = ["-l", self.user] if self.user else []
        port = ["-p", str(self.port)] if self.port else []
        return [*user, *port, "--", self.host]


@dataclass(frozen=True)
class Multiplexing:
    """The ssh options that make every connection to a host share one master, kept in `folder`
    (private to this deployer process), and the `ssh` program they are added to."""

    folder: str
    ssh: str  # the `ssh` the user's PATH gives, absolute

    @property
    def bin(self) -> str:
        """The folder with the `ssh` wrapper, put first on the PATH of the docker CLI."""
        return os.path.join(self.folder, "bin")

    def options(self) -> list[str]:
        # BatchMode: never a prompt (deployer's children have no terminal); an unknown host key
        # or a refused key is an error, as StrictHostKeyChecking says: nothing here weakens it.
        return [
            *("-o", "ControlMaster=auto"),
            *("-o", f"ControlPath={self.folder}/%C"),
            *("-o", f"ControlPersist={CONTROL_PERSIST}"),
            *("-o", "BatchMode=yes"),
        ]

    def wrapper(self) -> str:
        """The `ssh` the docker CLI runs: the user's own, with the sharing options first."""
        argv = " ".join(shlex.quote(a) for a in [self.ssh, *self.options()])
        return f'#!/bin/sh\nexec {argv} "$@"\n'

    def path(self, inherited: str) -> str:
        """A child's PATH: the wrapper first, then what it had."""
        return f"{self.bin}:{inherited}" if inherited else self.bin

    def open(self, target: SshTarget) -> Command:
        """Connect (the master) and ask the remote docker CLI where its engine is."""
        timeout = ["-o", f"ConnectTimeout={CONNECT_TIMEOUT}"]
        argv = [self.ssh, *self.options(), *timeout, *target.destination(), REMOTE_CHECK]
        return Command(tuple(argv))

    def forward(self, target: SshTarget, local: str, remote: str) -> Command:
        """Through the master: the local socket `local` to the remote socket `remote`."""
        control = ["-o", f"ControlPath={self.folder}/%C"]
        forward = ["-O", "forward", "-L", f"{local}:{remote}"]
        return Command((self.ssh, *control, *forward, *target.destination()))

    def hold(self, target: SshTarget) -> Command:
        return Command((self.ssh, *self.options(), *target.destination(), REMOTE_HOLD))

    def exit(self, target: SshTarget) -> Command:
        control = ["-o", f"ControlPath={self.folder}/%C"]
        return Command((self.ssh, *control, "-O", "exit", *target.destination()))


def runtime_folder(environ: Mapping[str, str]) -> str:
    """Where the private folder goes: XDG_RUNTIME_DIR, unless too long for the control socket's
    path (108 bytes with ssh's temporary suffix: macOS's TMPDIR alone takes 50), else /tmp."""
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    room = _SOCKET_PATH_MAX - len("/deployer-ssh-12345678/") - _CONTROL_NAME
    return runtime if runtime and len(runtime) <= room else "/tmp"


class Completed(Protocol):
    """A finished process (runner.Completed)."""

    @property
    def returncode(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


def remote_socket(target: SshTarget, opened: Completed) -> str:
    """The remote engine's socket path from the answer to Multiplexing.open, or the error that
    says why the host cannot be used, with the reason ssh or the remote docker CLI gave."""
    if opened.returncode == 0:
        endpoint = (opened.stdout.strip().splitlines() or [""])[-1]
        if endpoint.startswith("unix://"):
            return endpoint.removeprefix("unix://")
        reason = f"the docker CLI there reaches its engine at {endpoint or '?'}, not a unix socket"
        raise SshConnectError(target.url, reason, ssh_failed=False)
    said = _said(opened.stderr) or f"exit {opened.returncode}"
    if opened.returncode == _COMMAND_NOT_FOUND:
        said = f"no docker CLI on the remote host ({said})"
    elif said == _HOST_KEY_FAILED:  # nothing said of why (BatchMode with StrictHostKeyChecking ask)
        login = " ".join(a for a in target.destination() if a != "--")
        said += f" (its key is not in known_hosts, or another one is: check with `ssh {login}`)"
    raise SshConnectError(target.url, said, ssh_failed=opened.returncode == _SSH_FAILED)


def _said(stderr: str) -> str:
    """ssh's (or the remote's) message on one line, without ssh's notes about known_hosts."""
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines()]
    return " ".join(line for line in lines if line and not line.startswith("Warning: "))


class Held(Protocol):
    """A process left running, ended by closing its stdin."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Opened:
    socket: str
    holder: Held


class SshConnections:
    """This process's SSH masters, one per host, opened on first need and ended at exit."""

    def __init__(
        self,
        run: Callable[[Command], Completed],
        hold: Callable[[Command], Held],
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self._run, self._hold, self._environ = run, hold, environ
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}
        self._multiplexing: Multiplexing | None = None
        self._targets: dict[str, SshTarget] = {}  # every host dialed: ended at exit
        self._opened: dict[str, _Opened] = {}

    def multiplexing(self) -> Multiplexing:
        """The private folder with the `ssh` wrapper, made on first use (0700)."""
        with self._lock:
            if self._multiplexing is None:
                program = shutil.which("ssh", path=self._environ.get("PATH", os.defpath))
                if program is None:
                    raise ProgramNotFoundError("ssh")
                folder = tempfile.mkdtemp(prefix="deployer-ssh-", dir=runtime_folder(self._environ))
                atexit.register(self.close)
                made = Multiplexing(folder, os.path.abspath(program))
                os.mkdir(made.bin, 0o700)
                wrapper = os.path.join(made.bin, "ssh")
                with open(wrapper, "w", encoding="utf-8") as file:
                    file.write(made.wrapper())
                os.chmod(wrapper, stat.S_IRWXU)
                self._multiplexing = made
            return self._multiplexing

    def cli_path(self, url: str, inherited: str) -> str:
        """The PATH of a docker CLI process that dials `url`: the wrapper first."""
        target = SshTarget.parse(url)
        with self._lock:
            self._targets.setdefault(url, target)
        return self.multiplexing().path(inherited)

    def tunnel(self, url: str) -> str:
        """The local socket path that reaches the engine of `url` through its master."""
        target = SshTarget.parse(url)
        with self._lock:
            self._targets.setdefault(url, target)
            host_lock = self._host_locks.setdefault(url, threading.Lock())
        with host_lock:
            if url not in self._opened:
                self._opened[url] = self._open(target)
            return self._opened[url].socket

    def _open(self, target: SshTarget) -> _Opened:
        mux = self.multiplexing()
        remote = remote_socket(target, self._run(mux.open(target)))
        name = hashlib.sha256(target.url.encode()).hexdigest()[:16]
        local = os.path.join(mux.folder, f"engine-{name}.sock")
        forwarded = self._run(mux.forward(target, local, remote))
        if forwarded.returncode != 0:
            said = _said(forwarded.stderr) or f"the forward to {remote} failed"
            raise SshConnectError(target.url, said, ssh_failed=True)
        return _Opened(local, self._hold(mux.hold(target)))

    def close(self) -> None:
        """End every master (the dials and forwards over it with it), then remove the folder."""
        with self._lock:
            mux, self._multiplexing = self._multiplexing, None
            targets, self._targets = list(self._targets.values()), {}
            opened, self._opened = list(self._opened.values()), {}
        if mux is None:
            return
        for target in targets:
            with contextlib.suppress(DeployerError, OSError, subprocess.SubprocessError):
                self._run(mux.exit(target))
        for each in opened:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                each.holder.close()
        shutil.rmtree(mux.folder, ignore_errors=True)
