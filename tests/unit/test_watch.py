"""What `deploy serve` makes of its rounds, as values (core.watch): how an environment reads from
its hosts, what is told (a drift or a problem once, however many rounds see it; its end once
too), the memory of it kept across restarts, when the agent deploys, when the next round is due,
and which webhooks are signed."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import replace

import pytest

from deployer.core.watch import (
    AUTO,
    BACK_IN_SYNC,
    DEPLOY_FAILED,
    DEPLOY_STARTED,
    DEPLOY_SUCCEEDED,
    DRIFT,
    HEALTHY,
    IN_SYNC,
    INVALID,
    NOTIFY,
    OFF,
    OUT_OF_SYNC,
    PROBLEM,
    RECOVERED,
    ROLLED_BACK,
    UNHEALTHY,
    UNKNOWN,
    HostReading,
    Memory,
    Notice,
    Reading,
    deploys,
    host_reading,
    next_due,
    reading,
    retry_after,
    signed,
    told,
    unreadable,
)
from deployer.state import agent as agent_memory
from tests.unit.fakes import FakeStore

TO_2 = "web recreate: image reg/web:1 -> 2"
TO_3 = "web recreate: image reg/web:1 -> 3"
HERE = "unix:///var/run/docker.sock"
DOWN = "Docker engine at fake is unreachable: Cannot connect to the Docker daemon"
BAD_SPEC = "test.yml:3: watch.apply: 'sometimes' is not one of ['notify', 'auto', 'off']"


def out_of_sync(change: str) -> Reading:
    """`test` on one host, web to be recreated as `change` says."""
    host = host_reading(HERE, False, True, "")
    return reading("test", [host], [change], [f"{HERE} web recreate {change}"])


IN = reading("test", [host_reading(HERE, True, True, "")], [], [])
A, B = out_of_sync(TO_2), out_of_sync(TO_3)


NOTHING_TOLD = Memory()


def rounds(
    readings: Sequence[Reading], memory: Memory = NOTHING_TOLD
) -> tuple[list[list[Notice]], Memory]:
    """What is told at each of the rounds (at times 1, 2, 3 ...) that read `readings`, and what
    is remembered after the last."""
    said = []
    for time, now in enumerate(readings, 1):
        notices, memory = told(memory, now, float(time))
        said.append(notices)
    return said, memory


def drift(body: str) -> Notice:
    return Notice(DRIFT, "test", "test: out of sync", body)


def problem(what: str, body: str) -> Notice:
    return Notice(PROBLEM, "test", f"test: {what}", body)


def recovered(sync: str) -> Notice:
    return Notice(RECOVERED, "test", "test: recovered", f"read again: {sync}")


BACK = Notice(BACK_IN_SYNC, "test", "test: in sync again")


# How an environment reads from its hosts.


def test_a_host_reads_unknown_where_it_could_not_be_read() -> None:
    """None (not read) is unknown; a plan's in_sync and a status' healthy are told apart."""
    assert [
        host_reading("h", None, None, "down"),
        host_reading("h", True, False, ""),
        host_reading("h", False, True, ""),
    ] == [
        HostReading("h", UNKNOWN, UNKNOWN, "down"),
        HostReading("h", IN_SYNC, UNHEALTHY),
        HostReading("h", OUT_OF_SYNC, HEALTHY),
    ]


def test_one_host_in_sync_reads_in_sync_and_healthy_with_no_drift() -> None:
    """In sync: no changes, no problem, and no drift to tell one from another."""
    assert reading("test", [host_reading(HERE, True, True, "")], [], []) == Reading(
        "test", IN_SYNC, HEALTHY, (), "", (HostReading(HERE, IN_SYNC, HEALTHY),), ""
    )


def test_an_unknown_host_makes_the_environment_unknown_and_names_itself_in_the_problem() -> None:
    """Unknown wins over out of sync, and over unhealthy; of several hosts, each error is told
    with its host; an environment not read whole has no drift (nothing is told or deployed of
    a part)."""
    hosts = [
        host_reading("h1", False, True, ""),
        host_reading("h2", None, None, "down"),
        host_reading("h3", True, False, ""),
    ]

    now = reading("test", hosts, ["h1: " + TO_2], ["h1 web recreate reg/web:2"])

    assert now == Reading(
        "test", UNKNOWN, UNKNOWN, ("h1: " + TO_2,), "h2: down", tuple(hosts), drift=""
    )


def test_one_host_out_of_sync_makes_the_environment_out_of_sync_and_unhealthy_wins() -> None:
    """Out of sync wins over in sync, unhealthy over healthy; the drift is a digest of what
    names it."""
    hosts = [host_reading("h1", False, True, ""), host_reading("h2", True, False, "")]

    now = reading("test", hosts, ["h1: " + TO_2], ["h1 web recreate reg/web:2"])

    assert replace(now, drift="") == Reading(
        "test", OUT_OF_SYNC, UNHEALTHY, ("h1: " + TO_2,), "", tuple(hosts)
    )
    assert len(now.drift) == 16 and int(now.drift, 16) >= 0


def test_the_error_of_a_single_host_is_the_problem_as_it_is() -> None:
    """One host: no host name before its error."""
    now = reading("test", [host_reading(HERE, None, None, DOWN)], [], [])
    assert (now.sync, now.health, now.problem) == (UNKNOWN, UNKNOWN, DOWN)


def test_the_drift_is_named_by_what_is_declared_not_by_the_causes_shown() -> None:
    """Causes shown to people may change from round to round ("exited 5 seconds ago"): the
    drift is the same while what names it is; it differs when that differs."""
    host = [host_reading(HERE, False, True, "")]
    first = reading("test", host, ["web recreate: exited 5 seconds ago"], ["web reg/web:2"])
    later = reading("test", host, ["web recreate: exited 9 seconds ago"], ["web reg/web:2"])
    other = reading("test", host, ["web recreate: exited 5 seconds ago"], ["web reg/web:3"])

    assert (first.drift == later.drift, first.drift == other.drift) == (True, False)
    assert rounds([first, later]) == (
        [[drift("web recreate: exited 5 seconds ago")], []],
        Memory(drift=first.drift, time=1.0),
    )


def test_an_unreadable_environment_has_its_problem_and_nothing_else() -> None:
    assert [unreadable("test", INVALID, BAD_SPEC), unreadable("test", UNKNOWN, DOWN)] == [
        Reading("test", INVALID, UNKNOWN, problem=BAD_SPEC),
        Reading("test", UNKNOWN, UNKNOWN, problem=DOWN),
    ]


# What is told.


def test_a_drift_is_told_once_again_when_it_differs_and_its_end_once() -> None:
    """The same drift over many rounds is told once; another drift is told; in sync again is
    told once; the memory's time is the round that last changed it."""
    said, memory = rounds([A, A, A, B, B, IN, IN])

    assert said == [[drift(TO_2)], [], [], [drift(TO_3)], [], [BACK], []]
    assert memory == Memory(time=6.0)


def test_in_sync_from_the_start_tells_nothing_and_remembers_nothing() -> None:
    assert rounds([IN, IN]) == ([[], []], Memory())


def test_in_sync_again_forgets_the_drift_whose_deploy_failed() -> None:
    """A drift whose deploy failed (twice) and that ended (fixed by hand) is deployed again at
    once if it comes back: its failures and their time are forgotten with it."""
    memory = Memory(drift=A.drift, failed=A.drift, failures=2, failed_at=0.5, time=0.5)

    assert rounds([IN], memory) == ([[BACK]], Memory(time=1.0))
    assert deploys(AUTO, A, Memory(time=1.0), 1.0, 60.0) is True


def test_a_drift_whose_deploy_failed_is_told_without_forgetting_the_failure() -> None:
    """The drift read after a failed deploy is told; what failed, how often and when is kept
    for the back-off; a problem meanwhile keeps it too."""
    memory = Memory(failed=A.drift, failures=1, failed_at=1.0, time=1.0)

    said, after = rounds([A, unreadable("test", UNKNOWN, DOWN), A], memory)

    assert said == [[drift(TO_2)], [problem("not reachable", DOWN)], [recovered(OUT_OF_SYNC)]]
    assert after == Memory(drift=A.drift, failed=A.drift, failures=1, failed_at=1.0, time=3.0)


def test_an_unreachable_environment_is_told_once_then_its_recovery_once() -> None:
    said, memory = rounds([unreadable("test", UNKNOWN, DOWN)] * 3 + [IN, IN])

    assert said == [[problem("not reachable", DOWN)], [], [], [recovered(IN_SYNC)], []]
    assert memory == Memory(time=4.0)


def test_an_invalid_spec_is_told_once_another_problem_again_then_the_recovery() -> None:
    """INVALID is told as "spec invalid", UNKNOWN as "not reachable"; a different problem is a
    new one; reading again out of sync tells the recovery and the drift."""
    said, memory = rounds(
        [
            unreadable("test", INVALID, BAD_SPEC),
            unreadable("test", INVALID, BAD_SPEC),
            unreadable("test", UNKNOWN, DOWN),
            unreadable("test", UNKNOWN, DOWN),
            A,
            A,
        ]
    )

    assert said == [
        [problem("spec invalid", BAD_SPEC)],
        [],
        [problem("not reachable", DOWN)],
        [],
        [recovered(OUT_OF_SYNC), drift(TO_2)],
        [],
    ]
    assert memory == Memory(drift=A.drift, time=5.0)


def test_a_drift_told_before_a_problem_is_not_told_again_after_it() -> None:
    said, memory = rounds([A, unreadable("test", UNKNOWN, DOWN), A, IN])

    assert said == [
        [drift(TO_2)],
        [problem("not reachable", DOWN)],
        [recovered(OUT_OF_SYNC)],
        [BACK],
    ]
    assert memory == Memory(time=4.0)


def test_which_notices_tell_of_something_wrong() -> None:
    """Notifiers show a drift, a problem, a failed or rolled back deploy as failures."""
    kinds = [DRIFT, PROBLEM, RECOVERED, BACK_IN_SYNC, DEPLOY_STARTED, DEPLOY_SUCCEEDED]
    kinds += [DEPLOY_FAILED, ROLLED_BACK]

    assert [Notice(kind, "test", "t").failing for kind in kinds] == [
        True,
        True,
        False,
        False,
        False,
        False,
        True,
        True,
    ]


# The memory kept across restarts.


def test_a_memory_is_kept_as_a_record_and_read_back_whole() -> None:
    """Through JSON too, as stores keep it: what was told, and the failed deploys' back-off."""
    memory = Memory(
        drift="d1", problem="engine down", failed="d0", failures=3, failed_at=1200.25, time=1234.5
    )

    record = memory.record()

    assert record == {
        "drift": "d1",
        "problem": "engine down",
        "failed": "d0",
        "failures": 3,
        "failed_at": 1200.25,
        "time": 1234.5,
    }
    assert Memory.of(record) == memory
    assert Memory.of(json.loads(json.dumps(record))) == memory


def test_a_damaged_record_reads_as_what_can_be_read_of_it() -> None:
    """A field missing or of the wrong type reads as nothing told (no failure); an integer time
    is a time; failures are a count: not negative, not a fraction."""
    assert [
        Memory.of({}),
        Memory.of({"drift": 3, "problem": None, "failed": ["d"], "time": "soon"}),
        Memory.of({"drift": "d1", "time": 7, "x": "ignored"}),
        Memory.of({"failed": "d0", "failures": -1, "failed_at": "later"}),
        Memory.of({"failed": "d0", "failures": 2.0, "failed_at": None}),
        Memory.of({"failed": "d0", "failures": "2", "failed_at": [5.0]}),
        Memory.of({"failed": "d0", "failures": 2, "failed_at": 5}),
    ] == [
        Memory(),
        Memory(),
        Memory(drift="d1", time=7.0),
        Memory(failed="d0"),
        Memory(failed="d0"),
        Memory(failed="d0"),
        Memory(failed="d0", failures=2, failed_at=5.0),
    ]


def test_a_memory_written_before_failures_were_kept_reads_with_none() -> None:
    """A record of an older agent (no `failures`, no `failed_at`) reads as no failure counted,
    at no time: its failed drift is deployed again at once."""
    old = Memory.of({"drift": "d1", "problem": "", "failed": "d1", "time": 1_700_000_000.0})

    assert old == Memory(drift="d1", failed="d1", time=1_700_000_000.0)
    assert deploys(AUTO, replace(A, drift="d1"), old, 1_700_000_060.0, 60.0) is True


def test_a_failed_deploy_counts_the_failures_of_the_same_drift_in_a_row() -> None:
    """The same drift failing again counts on, at the time of its last failure; another drift
    starts again at one; what was told is left as it is."""
    told_ = Memory(drift="d1", problem="", time=3.0)

    first = told_.deploy_failed("d1", 10.0)
    second = first.deploy_failed("d1", 70.0)
    other = second.deploy_failed("d2", 200.0)

    assert [first, second, other] == [
        Memory(drift="d1", failed="d1", failures=1, failed_at=10.0, time=3.0),
        Memory(drift="d1", failed="d1", failures=2, failed_at=70.0, time=3.0),
        Memory(drift="d1", failed="d2", failures=1, failed_at=200.0, time=3.0),
    ]


def test_a_deploy_that_succeeds_forgets_the_failures_not_what_was_told() -> None:
    memory = Memory(drift="d1", problem="p", failed="d1", failures=4, failed_at=50.0, time=3.0)

    assert [memory.deployed(), Memory().deployed()] == [
        Memory(drift="d1", problem="p", time=3.0),
        Memory(),
    ]


def test_the_newest_memory_is_recalled_and_keeping_one_leaves_only_it() -> None:
    """A store with none recalls an empty memory; of several, the newest by time; a damaged
    record (not JSON) is passed over; keeping a memory removes the others."""
    store = FakeStore()
    assert agent_memory.recalled(store) == Memory()
    store.add("agent", "a", Memory(drift="old", time=5.0).record())
    store.add("agent", "b", Memory(drift="new", time=9.0).record())
    store.add("agent", "c", Memory(drift="older", time=1.0).record())
    store.kept[("agent", "d")] = "{damaged"
    assert agent_memory.recalled(store) == Memory(drift="new", time=9.0)

    agent_memory.keep(store, Memory(problem="down", time=12.0))

    assert store.records("agent") == [
        {
            "drift": "",
            "problem": "down",
            "failed": "",
            "failures": 0,
            "failed_at": 0.0,
            "time": 12.0,
        }
    ]
    assert agent_memory.recalled(store) == Memory(problem="down", time=12.0)


# When the agent deploys, and when the next round is.


def test_only_auto_deploys_a_difference_read_whole() -> None:
    """Not with notify or off; not in sync; not what could not be read (nor an invalid spec)."""
    down = unreadable("test", UNKNOWN, DOWN)
    invalid = unreadable("test", INVALID, BAD_SPEC)

    assert [
        deploys(AUTO, A, Memory(), 0.0, 60.0),
        deploys(NOTIFY, A, Memory(), 0.0, 60.0),
        deploys(OFF, A, Memory(), 0.0, 60.0),
        deploys(AUTO, IN, Memory(), 0.0, 60.0),
        deploys(AUTO, down, Memory(), 0.0, 60.0),
        deploys(AUTO, invalid, Memory(), 0.0, 60.0),
    ] == [True, False, False, False, False, False]


def test_the_drift_whose_deploy_failed_is_deployed_again_only_after_its_back_off() -> None:
    """Failed once at 100 with an interval of 60: not before 160, from 160 on; another drift at
    once. Failed three times in a row: 4 intervals (240 s) after the last failure."""
    once = Memory(drift=A.drift, failed=A.drift, failures=1, failed_at=100.0)
    thrice = replace(once, failures=3)

    assert [
        deploys(AUTO, A, once, 100.0, 60.0),
        deploys(AUTO, A, once, 159.9, 60.0),
        deploys(AUTO, A, once, 160.0, 60.0),
        deploys(AUTO, A, once, 1000.0, 60.0),
        deploys(AUTO, B, once, 100.0, 60.0),  # another drift
        deploys(NOTIFY, A, once, 1000.0, 60.0),  # notify never deploys
        deploys(AUTO, A, thrice, 339.9, 60.0),
        deploys(AUTO, A, thrice, 340.0, 60.0),
    ] == [False, False, True, True, True, False, False, True]


def test_the_back_off_of_a_failed_deploy_follows_the_environments_interval() -> None:
    """An interval of 10 s: retried 10 s after a first failure; of 2 h: an hour at most."""
    once = Memory(failed=A.drift, failures=1, failed_at=100.0)

    assert [
        deploys(AUTO, A, once, 109.9, 10.0),
        deploys(AUTO, A, once, 110.0, 10.0),
        deploys(AUTO, A, once, 3699.9, 7200.0),
        deploys(AUTO, A, once, 3700.0, 7200.0),
    ] == [False, True, False, True]


def test_a_failed_deploy_is_retried_after_an_interval_then_twice_as_long_up_to_an_hour() -> None:
    assert [retry_after(60.0, failures) for failures in range(1, 9)] == [
        60.0,
        120.0,
        240.0,
        480.0,
        960.0,
        1920.0,
        3600.0,
        3600.0,
    ]


def test_an_unreadable_environment_is_read_again_after_5_10_20_seconds_up_to_its_interval() -> None:
    down = unreadable("test", UNKNOWN, DOWN)

    assert [next_due(100.0, 60.0, down, failures) - 100.0 for failures in range(1, 7)] == [
        5.0,
        10.0,
        20.0,
        40.0,
        60.0,
        60.0,
    ]
    assert next_due(100.0, 2.0, down, 1) == 102.0  # never later than the interval


def test_a_readable_or_invalid_environment_is_read_again_after_its_interval() -> None:
    """Back-off is for what could not be reached: an invalid spec waits its interval, as does
    an environment read (whatever `failures` says)."""
    invalid = unreadable("test", INVALID, BAD_SPEC)

    assert [
        next_due(100.0, 60.0, IN, 0),
        next_due(100.0, 60.0, A, 3),
        next_due(100.0, 60.0, invalid, 3),
        next_due(100.0, 60.0, unreadable("test", UNKNOWN, DOWN), 0),
    ] == [160.0, 160.0, 160.0, 160.0]


# Webhook signatures.

SECRET = b"hook-s3cret"
BODY = b'{"ref": "refs/heads/main", "after": "abcdef"}'


def hmac_of(body: bytes, secret: bytes = SECRET) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"x-hub-signature-256": f"sha256={hmac_of(BODY)}"}, BODY, True),
        ({"x-gitea-signature": hmac_of(BODY)}, BODY, True),
        ({"x-gitlab-token": SECRET.decode()}, BODY, True),
        # signed with another secret
        ({"x-hub-signature-256": f"sha256={hmac_of(BODY, b'other')}"}, BODY, False),
        ({"x-gitea-signature": hmac_of(BODY, b"other")}, BODY, False),
        ({"x-gitlab-token": "other"}, BODY, False),
        # the body altered after it was signed
        ({"x-hub-signature-256": f"sha256={hmac_of(BODY)}"}, BODY + b" ", False),
        ({"x-gitea-signature": hmac_of(BODY)}, BODY + b" ", False),
        # GitLab sends the secret itself: its body is not signed
        ({"x-gitlab-token": SECRET.decode()}, BODY + b" ", True),
        # no signature
        ({}, BODY, False),
        ({"content-type": "application/json", "x-github-event": "push"}, BODY, False),
        # GitHub's without its `sha256=`; Gitea's with it
        ({"x-hub-signature-256": hmac_of(BODY)}, BODY, False),
        ({"x-gitea-signature": f"sha256={hmac_of(BODY)}"}, BODY, False),
        ({"x-hub-signature-256": ""}, BODY, False),
    ],
    ids=[
        "github",
        "gitea",
        "gitlab",
        "github-wrong-secret",
        "gitea-wrong-secret",
        "gitlab-wrong-secret",
        "github-altered-body",
        "gitea-altered-body",
        "gitlab-altered-body",
        "no-header",
        "unrelated-headers",
        "github-without-prefix",
        "gitea-with-prefix",
        "github-empty",
    ],
)
def test_webhook_signatures(headers: dict[str, str], body: bytes, expected: bool) -> None:
    assert signed(headers, body, SECRET) is expected
