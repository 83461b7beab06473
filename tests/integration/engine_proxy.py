"""Stand-ins for engines set up otherwise than the test one, as proxies in front of it.

EngineProxy, a newer Docker engine: a proxy on a unix socket in front of the real one.

It answers `/_ping` and `/version` as a newer engine (API 1.47, minimum 1.44), refuses requests
for API versions below 1.44 as Docker Engine 29 does, and forwards the others to the real
engine at the API version it speaks. Each request goes over a connection of its own
(`Connection: close`), so the proxy reads one request head per connection and then relays bytes.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import socketserver
import ssl
import threading
from pathlib import Path
from typing import Self

API_VERSION, MIN_API_VERSION = "1.47", "1.44"
_VERSIONED = re.compile(rb"^/v(\d+)\.(\d+)(/.*)$")


class _Proxy:
    """A server that hands each connection to `_handle` in a thread of its own while in use."""

    def __init__(
        self, server: type[socketserver.BaseServer], address: str | tuple[str, int]
    ) -> None:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        self._server = server(address, Handler)
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handle(self, client: socket.socket) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class EngineProxy(_Proxy):
    def __init__(self, socket_path: Path, engine_socket: str, engine_api: str = "1.41") -> None:
        self.socket_path, self.engine_socket, self.engine_api = (
            socket_path,
            engine_socket,
            engine_api,
        )
        self.requests: list[str] = []  # request lines as received, for the test to read
        super().__init__(socketserver.ThreadingUnixStreamServer, str(socket_path))

    @property
    def host(self) -> str:
        return f"unix://{self.socket_path}"

    def _handle(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                return
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        request_line, *headers = head.split(b"\r\n")
        method, target, protocol = request_line.split(b" ", 2)
        self.requests.append(request_line.decode())
        path, _, query = target.partition(b"?")
        versioned = _VERSIONED.match(path)
        if versioned:
            asked = f"{int(versioned[1])}.{int(versioned[2])}"
            if (int(versioned[1]), int(versioned[2])) < (1, 44):
                message = (
                    f"client version {asked} is too old. Minimum supported API version is "
                    f"{MIN_API_VERSION}, please upgrade your client to a newer version"
                )
                self._answer(client, 400, "Bad Request", {"message": message})
                return
            path = versioned[3]
        if path == b"/_ping":
            self._answer(client, 200, "OK", None, b"" if method == b"HEAD" else b"OK")
            return
        if path == b"/version":
            self._answer(client, 200, "OK", self._version())
            return
        target = f"/v{self.engine_api}".encode() + path + (b"?" + query if query else b"")
        headers = [h for h in headers if not h.lower().startswith(b"connection:")]
        upgrade = any(h.lower().startswith(b"upgrade:") for h in headers)
        headers.append(b"Connection: Upgrade" if upgrade else b"Connection: close")
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        engine.connect(self.engine_socket)
        engine.sendall(
            b"\r\n".join([b" ".join([method, target, protocol]), *headers]) + b"\r\n\r\n" + rest
        )
        _relay(client, engine)

    def _version(self) -> dict[str, object]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as engine:
            engine.connect(self.engine_socket)
            engine.sendall(
                f"GET /v{self.engine_api}/version HTTP/1.0\r\nHost: docker\r\n\r\n".encode()
            )
            response = b""
            while chunk := engine.recv(65536):
                response += chunk
        body = json.loads(response.partition(b"\r\n\r\n")[2])
        return {**body, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION}

    def _answer(
        self,
        client: socket.socket,
        status: int,
        reason: str,
        document: object,
        body: bytes | None = None,
    ) -> None:
        content_type = b"text/plain; charset=utf-8"
        if body is None:
            body, content_type = json.dumps(document).encode(), b"application/json"
        head = [
            f"HTTP/1.1 {status} {reason}".encode(),
            b"Api-Version: " + API_VERSION.encode(),
            b"Content-Type: " + content_type,
            b"Content-Length: " + str(len(body)).encode(),
            b"Ostype: linux",
            b"Connection: close",
        ]
        client.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)


class TLSEngineProxy(_Proxy):
    """The engine's unix socket served on 127.0.0.1 over TLS, as `dockerd --tlsverify` does:
    the client must show a certificate signed by `ca_cert`."""

    def __init__(
        self, engine_socket: str, server_cert: Path, server_key: Path, ca_cert: Path
    ) -> None:
        self.engine_socket = engine_socket
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(server_cert, server_key)
        self.context.load_verify_locations(ca_cert)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.clients: list[str] = []  # the common name of each client certificate shown
        super().__init__(socketserver.ThreadingTCPServer, ("127.0.0.1", 0))

    @property
    def host(self) -> str:
        return f"tcp://127.0.0.1:{self._server.server_address[1]}"  # type: ignore[index]

    def _handle(self, client: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            return  # no or a wrong client certificate: refused, as dockerd does
        subject = (tls.getpeercert() or {}).get("subject", ())
        self.clients += [value for part in subject for key, value in part if key == "commonName"]  # type: ignore[str-unpack]
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as engine:
            engine.connect(self.engine_socket)
            _relay(tls, engine)


def _relay(client: socket.socket, engine: socket.socket) -> None:
    """Copy bytes both ways until the engine is done, in one thread (an SSL socket is not to be
    read and written at once); data an SSL socket has decrypted already is read first."""
    sources: list[socket.socket] = [client, engine]
    with contextlib.suppress(OSError):  # a client gone midway: nothing left to relay
        _copy(client, engine, sources)


def _copy(client: socket.socket, engine: socket.socket, sources: list[socket.socket]) -> None:
    while True:
        pending = isinstance(client, ssl.SSLSocket) and client.pending()
        readable = [client] if pending else select.select(sources, [], [])[0]
        if client in readable:
            data = client.recv(65536)
            if not data:
                engine.shutdown(socket.SHUT_WR)
                sources.remove(client)
            else:
                engine.sendall(data)
        if engine in readable:
            data = engine.recv(65536)
            if not data:
                return
            client.sendall(data)
