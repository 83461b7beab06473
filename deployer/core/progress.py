"""Where a command reports what it is doing while it does it; the CLI decides how it looks."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Where apply reports what it is doing; the report stage decides how it looks."""

    def update(self, subject: str, text: str) -> None: ...
    def done(self, subject: str, text: str) -> None: ...
