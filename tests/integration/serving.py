"""What the tests of `deploy serve` run against it: the real agent as a process of its own, and a
local HTTP sink that its notifications (Apprise's json://) reach."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def waited(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """The first truthy value of `check` within `timeout` seconds; an AssertionError naming
    `what` when there is none."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g}s: {what}")
        time.sleep(0.1)


class Sink:
    """An HTTP server on loopback that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        received = self.messages

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def titles(self) -> list[str]:
        return [m["title"] for m in self.messages]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def sink() -> Iterator[Sink]:
    made = Sink()
    try:
        yield made
    finally:
        made.close()


class Agent:
    """`deploy serve` run as a person runs it, its log in a file."""

    def __init__(self, root: Path, args: list[str], env: dict[str, str]) -> None:
        self.root, self.args, self.env = root, args, env
        self.port = free_port()
        self.listen = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.listen}"
        self.log = root / f"agent-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Agent:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deployer", "serve", *self.args, "--listen", self.listen],
                cwd=self.root,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:
            waited(lambda: self.answers("/healthz"), 30, "the agent answers")
        except AssertionError as e:
            raise AssertionError(f"{e}; its log:\n{self.text()}") from None
        return self

    def answers(self, path: str) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, f"the agent exited: {self.text()}"
        try:
            return self.get(path)[0] == 200
        except OSError:
            return False

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        return self.request("GET", path, None, headers or {})

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        return self.request("POST", path, body, headers)

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def document(self, environment: str) -> dict[str, Any]:
        """The API's document of `environment` ({} until its first round has ended)."""
        status, text = self.get(f"/api/environments/{environment}")
        assert status in (200, 404), text
        found: dict[str, Any] = json.loads(text) if status == 200 else {}
        return found

    def metric(self, name: str, environment: str) -> float | None:
        """A metric's value for `environment` (None: not exposed)."""
        text = self.get("/metrics")[1]
        pattern = rf'^{name}{{environment="{re.escape(environment)}"}} (\S+)$'
        found = re.search(pattern, text, re.MULTILINE)
        return float(found.group(1)) if found else None

    def rounds(self, environment: str) -> int:
        return int(self.metric("deployer_rounds_total", environment) or 0)

    def wait_rounds(self, environment: str, count: int, timeout: float) -> int:
        """Wait until `count` more rounds of `environment` have ended; the rounds then."""
        target = self.rounds(environment) + count
        return waited(
            lambda: (r := self.rounds(environment)) >= target and r,
            timeout,
            f"{count} more rounds of {environment}; log: {self.text()}",
        )

    def signal(self, number: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(number)

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def kill(self) -> None:
        """kill -9: no chance to tidy anything up."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextlib.contextmanager
def agent(root: Path, args: list[str], env: dict[str, str]) -> Iterator[Agent]:
    """A started agent, killed afterwards whatever happens."""
    running = Agent(root, args, env)
    try:
        yield running.start()
    finally:
        running.close()


def github_signature(secret: bytes, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}
