"""The one place deployer starts processes. Never through a shell."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import IO, Any

from deployer.core.command import Command, Completed, descriptor_path
from deployer.core.errors import (
    CommandFailedError,
    ComposeUnavailableError,
    DeployerError,
    Interrupted,
    ProgramNotFoundError,
)
from deployer.infra.ssh import SshConnections

# What the docker CLI and its plugins need from the process environment to run, find their
# plugins and configuration, and reach an engine. Every other variable reaches a process only
# through its Command, so Compose interpolates with exactly the variables deployer shows and hashes.
TOOL_VARIABLES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SSH_AUTH_SOCK"}
    | {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"}
    | {"no_proxy", "all_proxy"}
)
# DEPLOYER_: deployer's own, such as the lock token that marks every process started under a
# lock (lock.LOCK_ENV), by which a lock's staleness check finds them.
TOOL_PREFIXES = ("DOCKER_", "BUILDKIT_", "LC_", "XDG_", "DEPLOYER_")


def tool_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of `environ` every process started here inherits."""
    return {
        name: value
        for name, value in environ.items()
        if name in TOOL_VARIABLES or name.startswith(TOOL_PREFIXES)
    }


def child_environment(
    command: Command, environ: Mapping[str, str], ssh: SshConnections | None = None
) -> dict[str, str]:
    """The whole environment of `command`'s process: what it inherits, what it adds, and for a
    docker CLI that dials an ssh:// engine, the `ssh` that shares this process's connection."""
    env = {**tool_environment(environ), **command.env}
    engine = command.env.get("DOCKER_HOST", "")  # the engine it is given, not the shell's
    if engine.startswith("ssh://"):
        env["PATH"] = (ssh or SSH).cli_path(engine, env.get("PATH", os.defpath))
    return env


def _start(command: Command, **options: Any) -> subprocess.Popen[Any]:
    """Start `command` in its whole environment, with its files (each on a descriptor of its own,
    named in its argv); a program that is not there is an error."""
    with ExitStack() as opened:
        paths = {
            path: opened.enter_context(_in_memory(file.content))
            for path, file in command.files.items()
        }
        argv = [_descriptor(paths[a]) if a in paths else a for a in command.argv]
        while True:
            try:
                proc = subprocess.Popen(
                    argv,
                    env=child_environment(command, os.environ),
                    pass_fds=tuple(f.fileno() for f in paths.values()),
                    **options,
                )
            except FileNotFoundError as e:
                raise ProgramNotFoundError(command.argv[0]) from e
            if not options.get("start_new_session") or not _died_before_running(
                proc, command.argv[0]
            ):
                return proc
            # A Ctrl-C to deployer's process group struck it in the instant between its fork
            # and its own session: it died before its program ran, so it starts again (an
            # interrupt lets every command finish, it never skips one).
            proc.wait()


# Linux's limit on a process's name (TASK_COMM_LEN less its terminating NUL).
_NAME_LENGTH = 15
# How long a process that got its session may take to show its program's name or its end.
_EXEC_SECONDS = 1.0


def _died_before_running(proc: subprocess.Popen[Any], program: str) -> bool:
    """Whether `proc`, started in a session of its own, died before `program` ran. Popen returns
    once the program runs or once the process has died; not yet waited for, a dead process
    still shows its session and its name (deployer's until the program runs). A signal that
    struck before its session may end it only as it gets there, so its session alone does not
    say: its name does, where the system shows it (/proc)."""
    try:
        if os.getsid(proc.pid) != proc.pid:
            return True
    except OSError:  # a system that forgets the session of a process that has ended
        return False
    name = os.path.basename(program)[:_NAME_LENGTH]
    deadline = time.monotonic() + _EXEC_SECONDS
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/stat", encoding="utf-8", errors="replace") as stat:
                shown, fields = stat.read().split(" (", 1)[1].rsplit(") ", 1)
        except OSError:  # a system without /proc
            return False
        if shown == name:
            return False
        if fields.startswith(("Z", "X")):  # ended, with deployer's name
            return True
        time.sleep(0.001)  # its program is being loaded, or it is ending
    return False


def _descriptor(file: IO[bytes]) -> str:
    return descriptor_path(file.fileno())


def run(command: Command, check: bool = True) -> Completed:
    """Run `command` to its end. An interrupt (Ctrl-C, SIGTERM, SIGHUP) does not cut it short: the
    process runs in its own session, out of reach of the terminal's Ctrl-C, and is waited for,
    so that `docker compose up` never stops halfway between two releases. The interrupt is
    raised once it has finished.

    Nothing the process needs depends on deployer staying alive, so that even a `kill -9` of
    deployer lets it finish: its stdin and files are written whole to memory before it starts,
    and its output goes to files, not to pipes that would break with deployer gone."""
    with ExitStack() as opened:
        stdout, stderr = (opened.enter_context(_output_file()) for _ in range(2))
        stdin = (
            subprocess.DEVNULL
            if command.stdin is None
            else opened.enter_context(_in_memory(command.stdin))
        )
        held: list[int] = []
        with _signals_held(held):
            proc = _start(
                command, stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True
            )
        interrupted: KeyboardInterrupt | None = None
        while True:
            try:
                if held:  # an interrupt that came while the process started strikes now
                    number = held[0]
                    held.clear()
                    signal.raise_signal(number)
                proc.wait()
                break
            except KeyboardInterrupt as e:
                interrupted = e
        if interrupted is not None:
            raise interrupted
        result = Completed(proc.returncode, _read(stdout), _read(stderr))
    if check and result.returncode != 0:
        raise _failure(command, result.returncode, result.stderr or result.stdout)
    return result


def _output_file() -> IO[bytes]:
    """A file without a name, in memory where the system allows: a process's output such as
    `docker compose config`'s, or its input, holds secret values, which must not reach a disk."""
    if hasattr(os, "memfd_create"):
        return os.fdopen(os.memfd_create("deployer"), "w+b")
    return tempfile.TemporaryFile()


def _in_memory(text: str) -> IO[bytes]:
    """`text` whole in such a file, read from its start."""
    file = _output_file()
    file.write(text.encode("utf-8"))
    file.flush()
    file.seek(0)
    return file


_INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def interrupts_held() -> Iterator[None]:
    """An interrupt that comes within the block strikes once it has ended (for example once
    the threads it starts have all started, and can all be waited for)."""
    held: list[int] = []
    with _signals_held(held):
        yield
    if held:
        signal.raise_signal(held[0])


@contextmanager
def _signals_held(held: list[int]) -> Iterator[None]:
    """Note interrupts in `held` rather than act on them while a process starts: one acted on
    inside subprocess.Popen would leave a started process unwaited for."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers run in the main thread only
        return
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in _INTERRUPTS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)


def _read(output: IO[bytes]) -> str:
    output.seek(0)
    return output.read().decode("utf-8", errors="replace")


def stream(command: Command) -> Iterator[str]:
    """Run `command`, yielding its output lines (stdout and stderr) as they come.

    Unlike run(), an interrupt stops the process too: it only reads (`logs --follow`)."""
    for _, line in streams([command]):
        if isinstance(line, DeployerError):
            raise line
        yield line


def streams(commands: Sequence[Command]) -> Iterator[tuple[int, str | DeployerError]]:
    """Run the commands at once, yielding each output line (stdout and stderr) as it comes with
    the index of its command; a command that fails yields its error once its output has ended,
    and the others go on. An interrupt, or closing the iterator, stops every one of them."""
    procs: list[subprocess.Popen[bytes]] = []
    selector = selectors.DefaultSelector()
    try:
        for index, command in enumerate(commands):
            proc = _start(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            procs.append(proc)
            assert proc.stdout is not None
            selector.register(proc.stdout, selectors.EVENT_READ, index)
        pending = {index: b"" for index in range(len(commands))}
        last: dict[int, list[str]] = {index: [] for index in pending}
        while selector.get_map():
            for key, _ in selector.select():
                index = key.data
                chunk = os.read(key.fd, 65536)
                *lines, pending[index] = (pending[index] + chunk).split(b"\n")
                if not chunk:  # its output ended
                    selector.unregister(key.fileobj)
                    lines += [pending[index]] if pending[index] else []
                for raw in lines:
                    line = raw.decode("utf-8", errors="replace").removesuffix("\r")
                    last[index] = [*last[index][-4:], line + "\n"]
                    yield index, line
                if not chunk:
                    returncode = procs[index].wait()
                    if returncode in _INTERRUPTED:  # Ctrl-C reached it before this process
                        raise Interrupted()
                    if returncode != 0:
                        yield index, _failure(commands[index], returncode, "".join(last[index]))
    finally:
        selector.close()
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()


# How a child ended by Ctrl-C exits: killed by SIGINT, or exiting 128 + SIGINT as Compose does.
_INTERRUPTED = (-signal.SIGINT, 128 + signal.SIGINT)

# What the docker CLI says when it has no compose plugin: `docker compose --project-name ...`
# reads as an unknown flag of `docker` itself, `docker compose up` as an unknown command.
_NO_COMPOSE = ("'compose' is not a docker command", "unknown command", "unknown flag")


def _failure(command: Command, returncode: int, output: str) -> DeployerError:
    """The error for a failed command; Compose's absence is confirmed by asking its version."""
    if (
        command.argv[:2] == ("docker", "compose")
        and any(sign in output for sign in _NO_COMPOSE)
        and run(
            Command(("docker", "compose", "version", "--short"), command.env), check=False
        ).returncode
        != 0
    ):
        client = run(Command(("docker", "--version")), check=False).stdout.strip()
        return ComposeUnavailableError(f"{client or 'a docker CLI'} without the compose plugin")
    return CommandFailedError(command.argv, returncode, output)


class Held:
    """A process left running until close(), which ends its stdin and waits for it."""

    def __init__(self, proc: subprocess.Popen[Any]) -> None:
        self._proc = proc

    def close(self) -> None:
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def hold(command: Command) -> Held:
    """Start `command` and leave it running, its stdin a pipe that only this process holds: it
    ends when close() is called or when this process is gone, even by kill -9. Its own session,
    as run()'s: Ctrl-C reaches deployer, which ends it when done."""
    proc = _start(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return Held(proc)


# This process's SSH connections (one master per ssh:// host), ended when it exits.
SSH = SshConnections(run=lambda command: run(command, check=False), hold=hold)
