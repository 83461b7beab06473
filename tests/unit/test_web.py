"""`deploy serve`'s HTTP side (deployer.cli.web) through Starlette's in-process TestClient, over
an agent that has made its rounds in an in-memory world: the pages, the API's documents (the
very ones of `deploy diff|status|history|audit --json`), the metrics, /healthz, the bearer
token, the signed webhook, and no secret anywhere; and how --listen is read."""

from __future__ import annotations

import hashlib
import hmac
import json
import warnings
from dataclasses import asdict, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from deployer.cli.render import history as records
from deployer.cli.render import plans
from deployer.cli.render import status as statuses
from deployer.cli.web import MAX_HOOK_BODY, Listen, app_of, listen_address
from deployer.commands.deploy import deploy
from deployer.commands.locks import lock_acquire
from deployer.core.command import Command, Completed
from deployer.core.errors import CommandFailedError, ServeOptionError
from deployer.core.spec import Watch
from deployer.core.variables import Redactor, Variable, Variables
from deployer.core.watch import AUTO
from deployer.infra.engine import DEFAULT_ENGINE_HOST
from deployer.state.lock import MANUAL_TTL
from deployer.targets.base import Environment
from deployer.targets.choose import target_of
from tests.unit.test_serve_agent import CHANGE, Watching, watching
from tests.unit.worlds import OneEngine, model

with warnings.catch_warnings():  # starlette 1.x asks for httpx2; the test extra installs httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TOKEN = "t0ken-for-the-view"
HOOK_SECRET = b"hook-s3cret"
BODY = b'{"ref": "refs/heads/main"}'
PAGES = ("/", "/environments/test", "/api/environments", "/api/environments/test", "/metrics")


@pytest.fixture
def watched(tmp_path: Path) -> Watching:
    """An agent that has made one round of `test`: web runs version 1, 2 is declared."""
    world = OneEngine(tmp_path)
    world.deploy("1")
    world.set_model(model("2"))
    made = watching(world)
    made.agent.round()
    return made


def client_of(
    watched: Watching,
    token: str | None = None,
    secret: bytes | None = None,
    failed: int = 0,
) -> TestClient:
    return TestClient(app_of(watched.agent, token, secret, lambda: failed))


class States(HTMLParser):
    """A page's state badges: the class and text of each <span class="state ...">."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._open: str | None = None
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = dict(attrs).get("class") or ""
        if tag == "span" and "state" in classes.split():
            self._open, self._text = classes, ""

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "span" and self._open is not None:
            self.found.append((self._open, self._text.strip()))
            self._open = None


def states(page: str) -> list[tuple[str, str]]:
    parser = States()
    parser.feed(page)
    return parser.found


def as_json(document: Any) -> Any:
    """A document as the API's client reads it."""
    return json.loads(json.dumps(document))


def samples(text: str) -> list[str]:
    """The metrics' samples, but the process' (CPU, memory: they change)."""
    return [
        line
        for line in text.splitlines()
        if line and not line.startswith(("#", "deployer_process_"))
    ]


# The pages.


def test_the_index_shows_sync_and_health_as_two_separate_states(watched: Watching) -> None:
    answer = client_of(watched).get("/")

    assert (answer.status_code, answer.headers["content-type"]) == (
        200,
        "text/html; charset=utf-8",
    )
    assert states(answer.text) == [
        ("state sync out-of-sync", "out-of-sync"),
        ("state health healthy", "healthy"),
    ]
    assert '<a href="/environments/test">test</a>' in answer.text


def test_the_environment_page_shows_its_states_plan_status_history_and_audit(
    watched: Watching,
) -> None:
    answer = client_of(watched).get("/environments/test")

    view, redact = watched.view, watched.agent.redact
    assert view.diff is not None and view.status is not None
    assert answer.status_code == 200
    assert states(answer.text) == [
        ("state sync out-of-sync", "out-of-sync"),
        ("state health healthy", "healthy"),
        ("state success", "success"),  # release 1
        ("state success", "success"),  # its audit entry
    ]
    assert str(escape(plans.diff_text(view.diff, redact))) in answer.text
    assert str(escape(statuses.status_text_of(view.status, redact))) in answer.text


def test_a_result_of_two_words_is_shown_with_a_class_of_one(tmp_path: Path) -> None:
    """A deploy rolled back: the agent's deploy, the release and the audit entry are shown as
    "rolled back", each with the class `rolled-back` (styled as a failure), not the classes
    `rolled` and `back`."""
    world = OneEngine(tmp_path)
    world.deploy("1")
    world.set_model(model("2"))
    world.broken = {"2"}
    made = watching(world, Watch(apply=AUTO))
    made.agent.round()
    client = client_of(made)

    index, page = client.get("/").text, client.get("/environments/test").text

    assert states(index) == [
        ("state sync out-of-sync", "out-of-sync"),
        ("state health healthy", "healthy"),
        ("state rolled-back", "rolled back"),
    ]
    assert states(page) == [
        ("state sync out-of-sync", "out-of-sync"),
        ("state health healthy", "healthy"),
        ("state rolled-back", "rolled back"),  # the agent's deploy
        ("state rolled-back", "rolled back"),  # release 2
        ("state success", "success"),  # release 1
        ("state rolled-back", "rolled back"),  # the audit entries
        ("state success", "success"),
    ]
    [failures] = [line for line in index.splitlines() if line.startswith(".unhealthy")]
    assert failures.split("{")[0].replace(",", " ").split() == [
        ".unhealthy",
        ".invalid",
        ".failed",
        ".rolled-back",
    ]


def test_a_deploy_skipped_for_the_lock_is_shown_as_skipped(tmp_path: Path) -> None:
    world = OneEngine(tmp_path)
    world.deploy("1")
    world.set_model(model("2"))
    lock_acquire(world.target, "maintenance", MANUAL_TTL, Redactor())
    made = watching(world, Watch(apply=AUTO))
    made.agent.round()
    client = client_of(made)

    index = client.get("/").text
    document = client.get("/api/environments/test").json()

    assert states(index) == [
        ("state sync out-of-sync", "out-of-sync"),
        ("state health healthy", "healthy"),
        ("state skipped", "skipped"),
    ]
    assert document["deploy"] == {
        "time": "1970-01-01T00:16:40Z",
        "result": "skipped",
        "text": "locked by alice on host-a (pid 4242) (maintenance)",
    }


def test_an_environment_not_watched_is_not_found(watched: Watching) -> None:
    client = client_of(watched)

    page, document = client.get("/environments/nope"), client.get("/api/environments/nope")

    assert (page.status_code, page.text) == (404, "no such environment")
    assert (document.status_code, document.json()) == (404, {"error": "no such environment"})


def test_the_index_before_any_round(tmp_path: Path) -> None:
    world = OneEngine(tmp_path)
    answer = client_of(watching(world)).get("/")

    assert (answer.status_code, states(answer.text)) == (200, [])
    assert "No round has ended yet." in answer.text


# The API.


def test_the_api_gives_the_reading_and_the_documents_of_the_cli(watched: Watching) -> None:
    client = client_of(watched)

    document = client.get("/api/environments/test").json()

    view, redact = watched.view, watched.agent.redact
    assert view.diff is not None and view.status is not None
    assert client.get("/api/environments").json() == [document]
    documents = ("diff", "status", "history", "audit")
    assert {k: v for k, v in document.items() if k not in documents} == {
        "environment": "test",
        "apply": "notify",
        "sync": "out-of-sync",
        "health": "healthy",
        "problem": "",
        "changes": [CHANGE],
        "hosts": [
            {"host": DEFAULT_ENGINE_HOST, "sync": "out-of-sync", "health": "healthy", "error": ""}
        ],
        "round": {"time": "1970-01-01T00:16:40Z", "seconds": 0.0},
        "rounds": 1,
        "errors": 0,
        "commit": "",
        "deploy": None,
    }
    assert document["diff"] == as_json(plans.diff_document(view.diff, redact))
    assert document["diff"]["changes"] == [
        {
            "service": "web",
            "action": "recreate",
            "causes": ["image reg/web:1 -> 2"],
            "order": "stop-first",
            "order_reason": "default order",
        }
    ]
    assert document["status"] == as_json(statuses.status_document_of(view.status, redact))
    assert document["history"] == as_json(records.history_document(view.releases, view.divergences))
    assert [r["number"] for r in document["history"]] == [1]
    assert document["audit"] == as_json([asdict(e) for e in view.audit])


def test_the_api_after_the_agent_deployed(tmp_path: Path) -> None:
    world = OneEngine(tmp_path)
    world.deploy("1")
    world.set_model(model("2"))
    made = watching(world, Watch(apply=AUTO))
    made.agent.round()

    document = client_of(made).get("/api/environments/test").json()

    assert (document["apply"], document["sync"], document["changes"], document["deploy"]) == (
        "auto",
        "in-sync",
        [],
        {"time": "1970-01-01T00:16:40Z", "result": "success", "text": "deploy test"},
    )
    assert [(r["number"], r["command"]) for r in document["history"]] == [
        (2, "deploy test"),
        (1, "deploy test"),
    ]


# The metrics.


def test_the_metrics_tell_the_last_round(watched: Watching) -> None:
    answer = client_of(watched, failed=2).get("/metrics")

    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    here = f'environment="test",host="{DEFAULT_ENGINE_HOST}"'
    assert samples(answer.text) == [
        'deployer_in_sync{environment="test"} 0.0',
        'deployer_readable{environment="test"} 1.0',
        'deployer_healthy{environment="test"} 1.0',
        'deployer_pending_changes{environment="test"} 1.0',
        'deployer_last_reconcile_timestamp_seconds{environment="test"} 1000.0',
        'deployer_last_reconcile_duration_seconds{environment="test"} 0.0',
        f"deployer_host_in_sync{{{here}}} 0.0",
        f"deployer_host_healthy{{{here}}} 1.0",
        f'deployer_service_healthy{{{here},service="web"}} 1.0',
        'deployer_rounds_total{environment="test"} 1.0',
        'deployer_errors_total{environment="test"} 0.0',
        "deployer_notifications_failed_total 2.0",
    ]


def test_every_metric_name_starts_with_deployer(watched: Watching) -> None:
    text = client_of(watched).get("/metrics").text

    names = {
        line.split()[2] if line.startswith("#") else line.split("{")[0].split()[0]
        for line in text.splitlines()
        if line
    }

    assert "deployer_process_cpu_seconds_total" in names
    assert sorted(n for n in names if not n.startswith("deployer_")) == []


def test_the_metrics_of_a_deploy_and_of_an_unreadable_environment(tmp_path: Path) -> None:
    world = OneEngine(tmp_path)
    world.deploy("1")
    world.set_model(model("2"))
    made = watching(world, Watch(apply=AUTO))
    made.agent.round()
    world.compose.dead = True
    made.agent.wake()
    made.agent.round()

    text = client_of(made).get("/metrics").text

    assert samples(text) == [
        'deployer_in_sync{environment="test"} 0.0',
        'deployer_readable{environment="test"} 0.0',
        'deployer_healthy{environment="test"} 0.0',
        'deployer_pending_changes{environment="test"} 0.0',
        'deployer_last_reconcile_timestamp_seconds{environment="test"} 1000.0',
        'deployer_last_reconcile_duration_seconds{environment="test"} 0.0',
        'deployer_last_deploy_timestamp_seconds{environment="test"} 1000.0',
        'deployer_last_deploy_success{environment="test"} 1.0',
        'deployer_rounds_total{environment="test"} 2.0',
        'deployer_errors_total{environment="test"} 1.0',
        "deployer_notifications_failed_total 0.0",
    ]


# /healthz and the token.


def test_healthz_answers_until_the_agent_stops(watched: Watching) -> None:
    client = client_of(watched)
    first = client.get("/healthz")

    watched.agent.stop()
    stopping = client.get("/healthz")

    assert [(first.status_code, first.text), (stopping.status_code, stopping.text)] == [
        (200, "ok"),
        (503, "stopping"),
    ]


def test_with_a_token_every_page_needs_it(watched: Watching) -> None:
    client = client_of(watched, token=TOKEN)
    right = {"Authorization": f"Bearer {TOKEN}"}

    answers = [
        (
            client.get(path).status_code,
            client.get(path, headers={"Authorization": "Bearer wrong"}).status_code,
            client.get(path, headers={"Authorization": TOKEN}).status_code,
            client.get(path, headers=right).status_code,
        )
        for path in PAGES
    ]

    assert answers == [(401, 401, 401, 200)] * len(PAGES)
    refused = client.get("/")
    assert (refused.headers["www-authenticate"], refused.text) == (
        "Bearer",
        "a bearer token is needed\n",
    )


def test_the_token_scheme_is_read_in_any_case_the_token_only_exactly(watched: Watching) -> None:
    """`bearer`, `BEARER`: the scheme's name is case-insensitive (RFC 9110); the token is not,
    nor may it be cut short, lengthened or sent under another scheme."""
    client = client_of(watched, token=TOKEN)
    given = [
        f"Bearer {TOKEN}",
        f"bearer {TOKEN}",
        f"BEARER {TOKEN}",
        f"Bearer {TOKEN.upper()}",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",
        f"Bearer{TOKEN}",
        "Bearer",
        "",
    ]

    answers = [client.get("/", headers={"Authorization": text}).status_code for text in given]

    assert answers == [200, 200, 200, 401, 401, 401, 401, 401, 401, 401]


def test_with_a_token_healthz_and_the_signed_webhook_stay_open(watched: Watching) -> None:
    client = client_of(watched, token=TOKEN, secret=HOOK_SECRET)

    health = client.get("/healthz")
    hook = client.post("/hooks/git", content=BODY, headers={"X-Gitlab-Token": "hook-s3cret"})

    assert (health.status_code, hook.status_code) == (200, 202)


# The webhook.


def github(body: bytes, secret: bytes = HOOK_SECRET) -> dict[str, str]:
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": "push"}


def gitea(body: bytes, secret: bytes = HOOK_SECRET) -> dict[str, str]:
    return {"X-Gitea-Signature": hmac.new(secret, body, hashlib.sha256).hexdigest()}


def gitlab(body: bytes, secret: bytes = HOOK_SECRET) -> dict[str, str]:
    return {"X-Gitlab-Token": secret.decode()}


def rounds_after(watched: Watching) -> int:
    """The rounds made once the agent is asked for one at a time it is not due: woken, one
    more."""
    watched.agent.round()
    return watched.view.rounds


@pytest.mark.parametrize("signature", [github, gitea, gitlab], ids=["github", "gitea", "gitlab"])
def test_a_signed_webhook_wakes_the_agent(watched: Watching, signature: Any) -> None:
    answer = client_of(watched, secret=HOOK_SECRET).post(
        "/hooks/git", content=BODY, headers=signature(BODY)
    )

    assert (answer.status_code, answer.json()) == (202, {"reconciling": True})
    assert rounds_after(watched) == 2


def test_a_flood_of_webhooks_makes_one_round(watched: Watching) -> None:
    """Fifty pushes before the agent gets to them: one round, then nothing more is due."""
    client = client_of(watched, secret=HOOK_SECRET)
    for _ in range(50):
        assert client.post("/hooks/git", content=BODY, headers=github(BODY)).status_code == 202

    assert rounds_after(watched) == 2
    assert rounds_after(watched) == 2


@pytest.mark.parametrize(
    ("secret", "headers"),
    [
        (None, github(BODY)),
        (HOOK_SECRET, {}),
        (HOOK_SECRET, github(BODY, b"other")),
        (HOOK_SECRET, github(BODY + b" ")),
        (HOOK_SECRET, gitea(BODY, b"other")),
        (HOOK_SECRET, gitlab(BODY, b"other")),
    ],
    ids=["no-secret-configured", "unsigned", "github-bad", "github-other-body", "gitea", "gitlab"],
)
def test_a_webhook_not_signed_by_the_secret_is_refused_and_wakes_nothing(
    watched: Watching, secret: bytes | None, headers: dict[str, str]
) -> None:
    answer = client_of(watched, secret=secret).post("/hooks/git", content=BODY, headers=headers)

    assert (answer.status_code, answer.json()) == (401, {"error": "invalid or missing signature"})
    assert rounds_after(watched) == 1


def test_a_webhook_body_too_large_is_refused(watched: Watching) -> None:
    body = b"x" * (MAX_HOOK_BODY + 1)

    answer = client_of(watched, secret=HOOK_SECRET).post(
        "/hooks/git", content=body, headers=github(body)
    )

    assert (answer.status_code, answer.json()) == (413, {"error": "body too large"})
    assert rounds_after(watched) == 1


def test_the_webhook_takes_only_post(watched: Watching) -> None:
    assert client_of(watched, secret=HOOK_SECRET).get("/hooks/git").status_code == 405


# Secrets.


def test_no_secret_value_is_shown_in_any_page_document_or_metric(tmp_path: Path) -> None:
    """A secret changed since the deploy: its drift is shown by name; then an engine error that
    quotes the secret is shown masked. Neither value is ever shown, nor sent."""
    old, new = "old-hunter-2222", "new-hunter-3333"
    world = OneEngine(tmp_path)
    web = model("1")
    web["services"]["web"]["environment"]["DB_PASSWORD"] = "${DB_PASSWORD}"
    world.set_model(web)

    def secret(value: str) -> Variables:
        return Variables({"DB_PASSWORD": Variable("DB_PASSWORD", value, ".env:1", True)})

    deployed = target_of(Environment(world.spec(), secret(old), world.outside()), {}, ())
    deploy(deployed, world.ui, "deploy test")
    failing = False

    def run(command: Command, check: bool = True) -> Completed:
        if failing and "config" in command.argv:
            raise CommandFailedError(command.argv, 1, f"invalid interpolation: {new}")
        return world.compose(command, check)

    made = watching(
        world, outside=replace(world.outside(), run=run), variables=secret(new), teach=(new,)
    )
    client = client_of(made)
    made.agent.round()
    drifted = [client.get(path).text for path in PAGES]
    failing = True
    made.agent.wake()
    made.agent.round()
    unread = [client.get(path).text for path in PAGES]

    assert made.view.reading.problem.endswith("invalid interpolation: ***")
    assert [m.title for m in made.sent] == ["test: out of sync", "test: not reachable"]
    assert made.sent[0].body == "web recreate: secret DB_PASSWORD changed"
    shown = [*drifted, *unread, *(m.body for m in made.sent), *made.log]
    assert [text for text in shown if old in text or new in text] == []


# --listen.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8787", Listen("127.0.0.1", 8787)),
        ("localhost:80", Listen("localhost", 80)),
        ("0.0.0.0:65535", Listen("0.0.0.0", 65535)),
        ("[::1]:8787", Listen("::1", 8787)),
        ("[::]:1", Listen("::", 1)),
        ("deploy.example.com:443", Listen("deploy.example.com", 443)),
    ],
)
def test_listen_address(text: str, expected: Listen) -> None:
    assert listen_address(text) == expected


@pytest.mark.parametrize(
    "text", ["8787", ":8787", "localhost:", "localhost:0", "localhost:65536", "host:http", "[::1]"]
)
def test_a_bad_listen_address(text: str) -> None:
    with pytest.raises(ServeOptionError) as caught:
        listen_address(text)
    assert caught.value.message == f"--listen: expected HOST:PORT, got {text!r}"


def test_which_addresses_are_loopback_and_their_urls() -> None:
    listens = [
        Listen("localhost", 8787),
        Listen("127.0.0.1", 8787),
        Listen("127.8.9.10", 8787),
        Listen("::1", 8787),
        Listen("0.0.0.0", 8787),
        Listen("::", 8787),
        Listen("192.168.1.20", 8787),
        Listen("deploy.example.com", 8787),
    ]

    assert [(listen.loopback, listen.url) for listen in listens] == [
        (True, "http://localhost:8787"),
        (True, "http://127.0.0.1:8787"),
        (True, "http://127.8.9.10:8787"),
        (True, "http://[::1]:8787"),
        (False, "http://0.0.0.0:8787"),
        (False, "http://[::]:8787"),
        (False, "http://192.168.1.20:8787"),
        (False, "http://deploy.example.com:8787"),
    ]
