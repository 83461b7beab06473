"""Requests through a reverse proxy while a deploy runs: what a user of the service sees."""

from __future__ import annotations

import collections
import threading
import time
import urllib.error
import urllib.request
from types import TracebackType

# The test app as a real web app behaves: it takes 2 s to start (the reason start-first matters),
# and on SIGTERM it stops taking new connections and lets those under way end within 1 s.
GRACEFUL_APP = (
    "trap 'kill $$server; sleep 1; exit 0' TERM; sleep 2; "
    "httpd -f -p 8080 -h /www & server=$$!; wait"
)


# Caddy routes to the service by its name on the project network (Docker's DNS gives every
# container of it) and retries a request whose connection fails for `retry`. A container just
# gone does not refuse a connection, it is silent: the short dial timeout gives up on it in time
# to try another (seen here, rarely: a 3 s dial to an address gone, Caddy's default).
def caddyfile(retry: str = "1s") -> str:
    return (
        "{\n\tadmin off\n\tauto_https off\n}\n"
        ":80 {\n"
        "\treverse_proxy web:8080 {\n"
        f"\t\tlb_try_duration {retry}\n"
        "\t\tlb_try_interval 100ms\n"
        "\t\ttransport http {\n\t\t\tdial_timeout 300ms\n\t\t}\n"
        "\t}\n"
        "}\n"
    )


ROLLING_COMPOSE = """\
services:
  proxy:
    image: ${PROXY_IMAGE}
    ports: ["${PROXY_PUBLISH}"]
    volumes: ["./Caddyfile:/etc/caddy/Caddyfile:ro"]
    depends_on: [web]
  web:
    image: ${REGISTRY}/testapp:${WEB_TAG}
    entrypoint: ["sh", "-c", "GRACEFUL_APP"]
    stop_signal: SIGTERM
    stop_grace_period: 5s
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
      interval: 1s
      start_period: 10s
    deploy:
      replicas: 2
      update_config: {order: start-first}
""".replace("GRACEFUL_APP", GRACEFUL_APP)


class Traffic:
    """Requests to `url` one after another (a client loop) from a thread of its own, from the
    `with` until its end: how many got an answer of each body, and each that failed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: collections.Counter[str] = collections.Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:
                    self.answers[response.read().decode().strip()] += 1
            except (OSError, urllib.error.URLError) as e:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {e}")
            time.sleep(0.01)

    @property
    def requests(self) -> int:
        return sum(self.answers.values()) + len(self.failures)

    def summary(self) -> str:
        return (
            f"{self.requests} requests, {len(self.failures)} failed, answers {dict(self.answers)}"
        )
