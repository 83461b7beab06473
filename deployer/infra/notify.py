"""Notifications through Apprise URLs (json://, Slack, mail, ntfy, ...): the edge where they
leave. Sending happens on a thread of its own, so a notifier that is slow or down (retried, then
logged) never holds the reconcile loop up."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from deployer.core.errors import ServeOptionError

RETRIES = (1.0, 2.0, 4.0)  # seconds before each retry of a notification that failed


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    failing: bool  # shown as a failure by notifiers that tell one from an information


def scheme(url: str) -> str:
    """What a URL may show of itself in a message: its scheme (the rest may hold a token)."""
    return url.partition("://")[0] + "://..." if "://" in url else "(no scheme)"


class Notifier:
    """Sends each message to every URL, in the order given, retrying each that fails."""

    def __init__(
        self,
        urls: Sequence[str],
        log: Callable[[str], None],
        retries: Sequence[float] = RETRIES,
    ) -> None:
        import apprise  # about 0.2 s to import: only `deploy serve` pays it

        self._apprise = apprise
        self._targets = []
        for position, url in enumerate(urls, 1):
            target = apprise.Apprise()
            if not target.add(url):
                raise ServeOptionError(
                    f"--notify #{position} ({scheme(url)})", "not a notification URL Apprise knows"
                )
            self._targets.append((scheme(url), target))
        self._log, self._retries = log, tuple(retries)
        self._queue: queue.Queue[Message | None] = queue.Queue()
        self._sender = threading.Thread(target=self._send_all, name="notify", daemon=True)
        self.failures = 0  # notifications given up on, after every retry
        if self._targets:
            self._sender.start()

    def send(self, message: Message) -> None:
        if self._targets:
            self._queue.put(message)

    def close(self, timeout: float) -> None:
        """Send what is queued (for at most `timeout` seconds), then stop."""
        if self._targets:
            self._queue.put(None)
            self._sender.join(timeout)

    def _send_all(self) -> None:
        while (message := self._queue.get()) is not None:
            for shown, target in self._targets:
                self._send(shown, target, message)

    def _send(self, shown: str, target: Any, message: Message) -> None:
        kind = (
            self._apprise.NotifyType.FAILURE if message.failing else self._apprise.NotifyType.INFO
        )
        for attempt, pause in enumerate((*self._retries, None), 1):
            try:
                if target.notify(
                    body=message.body or message.title, title=message.title, notify_type=kind
                ):
                    return
                problem = "not accepted"
            except Exception as e:  # a notifier's plug-in may raise anything: logged, never fatal
                problem = f"{type(e).__name__}: {e}"
            if pause is None:
                break
            self._log(f"notify {shown}: attempt {attempt} failed ({problem}); again in {pause:g}s")
            time.sleep(pause)
        self.failures += 1
        self._log(f"notify {shown}: gave up on {message.title!r} after {attempt} attempts")
