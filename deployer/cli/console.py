"""The single way out for text: every line deployer prints leaves through a Console."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, TextIO

from deployer.core.variables import Redactor


class Console:
    """The single way out for text: stdout for results, stderr for progress and errors."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out, self._err = out, err
        self.redact = Redactor()
        self._live: str | None = None  # the progress line shown on a terminal, if any
        self._started: set[str] = set()
        self._lock = threading.Lock()

    # Looked up when used, so that a stream replaced after start-up (tests, wrappers) is honoured.
    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err or sys.stderr

    def print(self, text: str = "") -> None:
        """Free text to stdout: every secret value in it is masked."""
        self.emit(self.redact(text))

    def error(self, text: str) -> None:
        """Free text to stderr: every secret value in it is masked."""
        self.notice(self.redact(text))

    def emit(self, text: str) -> None:
        """Text rendered from data that was masked at its source: printed as it is."""
        self._end_live()
        print(text, file=self.out, flush=True)

    def notice(self, text: str) -> None:
        """Like emit, to stderr (warnings)."""
        self._end_live()
        print(text, file=self.err, flush=True)

    def json(self, document: Any) -> None:
        """A document built from masked data: always valid JSON."""
        self.emit(json.dumps(document, indent=2, ensure_ascii=False))

    @property
    def live(self) -> bool:
        return self.err.isatty()

    # Progress, as apply reports it: one rewritten line on a terminal; plain lines otherwise,
    # one when a step starts and one when it ends, so that logs stay short.
    # Parallel pulls report from several threads. Progress is built from identifiers and the
    # engine's states, never from values, so it is not redacted (a weak secret equal to an image
    # name would hide the image).
    def update(self, subject: str, text: str) -> None:
        with self._lock:
            if self.live:
                self._live = text[:120]
                self.err.write(f"\r\033[K{self._live}")
                self.err.flush()
            elif subject not in self._started:
                self._started.add(subject)
                print(text, file=self.err, flush=True)

    def done(self, subject: str, text: str) -> None:
        with self._lock:
            self._end_live()
            print(text, file=self.err, flush=True)

    def _end_live(self) -> None:
        if self._live is not None:
            self.err.write("\r\033[K")
            self.err.flush()
            self._live = None
