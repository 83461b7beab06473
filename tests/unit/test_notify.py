"""Notifications (infra.notify.Notifier): URLs Apprise does not know are refused before anything
starts, without showing what follows their scheme (it may hold a token); each message goes to
every URL in order, on a thread of its own, retried where it fails, then given up and counted.
No network: the test's targets stand in for Apprise's."""

from __future__ import annotations

from typing import Any

import apprise
import pytest

from deployer.core.errors import ServeOptionError
from deployer.infra.notify import Message, Notifier, scheme

URL = "json://127.0.0.1:1/"


class Target:
    """An Apprise target that answers as told: True (sent), False (not accepted) or raises."""

    def __init__(self, *answers: bool | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def notify(self, **fields: Any) -> bool:
        self.calls.append(fields)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def notifier(
    monkeypatch: pytest.MonkeyPatch, log: list[str], *targets: tuple[str, Target]
) -> Notifier:
    """A Notifier of one URL (so that its sender starts) whose targets are then the test's."""
    made = Notifier([URL], log.append, retries=(0, 0))
    monkeypatch.setattr(made, "_targets", list(targets))
    return made


def test_a_url_apprise_does_not_know_is_refused_without_its_token() -> None:
    log: list[str] = []
    with pytest.raises(ServeOptionError) as caught:
        Notifier([URL, "nope://s3cret-token@example.com/x"], log.append)

    assert caught.value.message == "--notify #2 (nope://...): not a notification URL Apprise knows"
    assert "s3cret-token" not in caught.value.message
    assert log == []


def test_what_a_url_shows_of_itself_is_its_scheme() -> None:
    assert [scheme("slack://T0/B0/s3cret"), scheme("no-scheme-here")] == [
        "slack://...",
        "(no scheme)",
    ]


def test_without_urls_nothing_is_sent_and_closing_returns_at_once() -> None:
    made = Notifier([], print)
    made.send(Message("test: out of sync", "web recreate", True))
    made.close(0.1)
    assert made.failures == 0


def test_a_message_goes_to_every_url_in_order_as_a_failure_or_an_information(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message without a body is sent with its title as the body."""
    log: list[str] = []
    first, second = Target(True, True), Target(True, True)
    made = notifier(monkeypatch, log, ("json://...", first), ("slack://...", second))

    made.send(Message("test: out of sync", "web recreate: image reg/web:1 -> 2", True))
    made.send(Message("test: in sync again", "", False))
    made.close(5)

    sent = [
        {
            "body": "web recreate: image reg/web:1 -> 2",
            "title": "test: out of sync",
            "notify_type": apprise.NotifyType.FAILURE,
        },
        {
            "body": "test: in sync again",
            "title": "test: in sync again",
            "notify_type": apprise.NotifyType.INFO,
        },
    ]
    assert (first.calls, second.calls, made.failures, log) == (sent, sent, 0, [])


def test_a_notification_that_fails_is_retried_until_it_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []
    target = Target(False, OSError("connection refused"), True)
    made = notifier(monkeypatch, log, ("json://...", target))

    made.send(Message("test: deployed", "", False))
    made.close(5)

    assert (len(target.calls), made.failures) == (3, 0)
    assert log == [
        "notify json://...: attempt 1 failed (not accepted); again in 0s",
        "notify json://...: attempt 2 failed (OSError: connection refused); again in 0s",
    ]


def test_a_notification_that_always_fails_is_given_up_counted_and_the_next_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log: list[str] = []
    target = Target(False, False, RuntimeError("boom"), True)
    made = notifier(monkeypatch, log, ("json://...", target))

    made.send(Message("test: out of sync", "web recreate", True))
    made.send(Message("test: in sync again", "", False))
    made.close(5)

    assert (len(target.calls), made.failures) == (4, 1)
    assert log == [
        "notify json://...: attempt 1 failed (not accepted); again in 0s",
        "notify json://...: attempt 2 failed (not accepted); again in 0s",
        "notify json://...: gave up on 'test: out of sync' after 3 attempts",
    ]
