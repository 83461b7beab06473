"""The agent's HTTP side (`deploy serve`): the read-only web view, its JSON API, the metrics,
`/healthz` and the webhook that asks for a round now. It renders what the agent saw last with the
same documents as `deploy diff --json`, `status --json` and `history --json`; nothing here
changes an environment but the webhook's "reconcile now"."""

from __future__ import annotations

import hmac
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from deployer.cli.render import history as records
from deployer.cli.render import plans
from deployer.cli.render import status as statuses
from deployer.cli.web.metrics import metrics_registry
from deployer.commands.serve import Agent, View
from deployer.core.errors import ServeOptionError
from deployer.core.variables import Redactor
from deployer.core.watch import signed
from deployer.state.store import iso

OPEN_PATHS = ("/healthz", "/hooks/git")  # answered without the token: the hook is signed
MAX_HOOK_BODY = 5 * 1024 * 1024  # GitHub's push payloads are capped at 25 MB; ours need less
REFRESH_SECONDS = 5


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def listen_address(text: str) -> Listen:
    """`HOST:PORT` (`[::1]:8787` for IPv6), as --listen takes it."""
    host, colon, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServeOptionError("--listen", f"expected HOST:PORT, got {text!r}")
    return Listen(host, int(port))


def environment_document(view: View, redact: Redactor) -> dict[str, Any]:
    """One environment as the API gives it: the agent's reading, and the very documents of
    `deploy diff --json` (`diff`), `status --json` (`status`), `history --json` (`history`) and
    `audit --json` (`audit`) from the agent's last round."""
    now = view.reading
    deployed = view.deployed
    return {
        "environment": view.name,
        "apply": view.apply,
        "sync": now.sync,
        "health": now.health,
        "problem": now.problem,
        "changes": list(now.changes),
        "hosts": [asdict(h) for h in now.hosts],
        "round": {"time": iso(view.started), "seconds": round(view.seconds, 3)},
        "rounds": view.rounds,
        "errors": view.errors,
        "commit": view.commit,
        "deploy": None
        if deployed is None
        else {"time": iso(deployed.time), "result": deployed.result, "text": deployed.text},
        "diff": None if view.diff is None else plans.diff_document(view.diff, redact),
        "status": None if view.status is None else statuses.status_document_of(view.status, redact),
        "history": records.history_document(view.releases, view.divergences),
        "audit": [asdict(e) for e in view.audit],
    }


def app_of(
    agent: Agent,
    token: str | None,
    webhook_secret: bytes | None,
    notifications_failed: Callable[[], int],
) -> Any:
    """The ASGI application. With `token`, every request but /healthz and the (signed) webhook
    needs `Authorization: Bearer TOKEN`."""
    import jinja2
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    pages = jinja2.Environment(
        loader=jinja2.PackageLoader("deployer.cli.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    redact = agent.redact
    registry = metrics_registry(agent, notifications_failed)

    def page(name: str, **values: Any) -> HTMLResponse:
        html = pages.get_template(name).render(refresh=REFRESH_SECONDS, **values)
        return HTMLResponse(redact(html))

    def found(name: str) -> View | None:
        return next((v for v in agent.views() if v.name == name), None)

    async def index(request: Request) -> Response:
        return page("index.html", views=agent.views(), iso=iso, commit=agent.commit)

    async def environment(request: Request) -> Response:
        view = found(request.path_params["name"])
        if view is None:
            return PlainTextResponse("no such environment", status_code=404)
        return page(
            "environment.html",
            view=view,
            iso=iso,
            plan=plans.diff_text(view.diff, redact) if view.diff else "",
            status=statuses.status_text_of(view.status, redact) if view.status else "",
        )

    async def api_environments(request: Request) -> Response:
        return JSONResponse([environment_document(v, redact) for v in agent.views()])

    async def api_environment(request: Request) -> Response:
        view = found(request.path_params["name"])
        if view is None:
            return JSONResponse({"error": "no such environment"}, status_code=404)
        return JSONResponse(environment_document(view, redact))

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        if agent.alive and not agent.stopping:
            return PlainTextResponse("ok")
        return PlainTextResponse("stopping", status_code=503)

    async def hook(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_HOOK_BODY:
                return JSONResponse({"error": "body too large"}, status_code=413)
        headers = {k.lower(): v for k, v in request.headers.items()}
        if webhook_secret is None or not signed(headers, body, webhook_secret):
            return JSONResponse({"error": "invalid or missing signature"}, status_code=401)
        agent.wake()
        return JSONResponse({"reconciling": True}, status_code=202)

    routes = [
        Route("/", index),
        Route("/environments/{name}", environment),
        Route("/api/environments", api_environments),
        Route("/api/environments/{name}", api_environment),
        Route("/metrics", metrics),
        Route("/healthz", healthz),
        Route("/hooks/git", hook, methods=["POST"]),
    ]
    middleware = [Middleware(BearerToken, token=token)] if token else []
    return Starlette(routes=routes, middleware=middleware)


class BearerToken:
    """Every request but OPEN_PATHS carries `Authorization: Bearer TOKEN`, or gets 401."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.expected = app, token.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            scheme, _, given = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
            # The scheme's name is case-insensitive (RFC 9110); the token is compared whole.
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given, self.expected):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"text/plain"),
                            (b"www-authenticate", b"Bearer"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b"a bearer token is needed\n"})
                return
        await self.app(scope, receive, send)


@contextmanager
def serving(app: Any, listen: Listen) -> Iterator[None]:
    """Serve `app` on a thread of its own while the block runs (the agent's loop keeps the main
    thread, and with it the signals)."""
    import uvicorn

    config = uvicorn.Config(
        app, host=listen.host, port=listen.port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="web", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    if not server.started:
        raise ServeOptionError("--listen", f"cannot listen on {listen.host}:{listen.port}")
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)
