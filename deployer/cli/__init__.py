"""The `deploy` command line: parse, call deployer.commands, render (deployer.cli.render). It
does not know which target it talks to. Nothing else lives here."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer
from typer.core import TyperGroup

from deployer import __version__
from deployer.cli.console import Console
from deployer.cli.render import history as records
from deployer.cli.render import locks, model, plans, results
from deployer.cli.render import status as statuses
from deployer.commands import build as building
from deployer.commands import deploy, read, spec
from deployer.commands import down as taking_down
from deployer.commands import locks as locking
from deployer.commands import logs as reading_logs
from deployer.commands import promote as promoting
from deployer.commands import prune as pruning
from deployer.commands import restart as restarting
from deployer.commands.load import load
from deployer.commands.session import Interaction
from deployer.core.errors import (
    ConfirmationRefusedError,
    DeployerError,
    Interrupted,
    ServeOptionError,
)
from deployer.core.plan import Plan
from deployer.core.results import ByHost, HostOutcome, StackRendering, Statuses, failed_hosts
from deployer.core.spec import environments_folder
from deployer.core.watch import DEFAULT_INTERVAL, DEFAULT_LISTEN
from deployer.state.lock import MANUAL_TTL
from deployer.targets.base import Target

EXIT_OK, EXIT_ERROR, EXIT_PENDING, EXIT_INTERRUPTED = 0, 1, 2, 130
T = TypeVar("T")


class _Group(TyperGroup):
    """`deploy ENV` is `deploy up ENV`: any first word that is not a command names an environment."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["up", *args]
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        # typer turns an interrupt into a bare exit 130: main() is to say what it left behind.
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            raise _Stopped(e.outcome if isinstance(e, Interrupted) else "") from e


class _Stopped(Exception):
    """An interrupted command, and what the interrupt left behind ("" when unknown)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help=(
        "Declarative environment deployer for Docker hosts.\n\n"
        "`deploy ENV` (e.g. `deploy staging`) makes what runs match environments/ENV.yml."
    ),
)
console = Console()

Folder = Annotated[
    Path | None,
    typer.Option(
        "--environments",
        envvar="DEPLOYER_ENVIRONMENTS",
        help="Folder of environment specs (default ./environments).",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Name = Annotated[
    str, typer.Argument(metavar="ENV", help="Environment name (the spec file's stem).")
]


HostsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--hosts",
        metavar="HOST[,HOST]",
        help="Only these of ENV's hosts (engine.hosts): URL, address or user@address.",
    ),
]


def _load(folder: Path | None, name: str, hosts: list[str] | None = None) -> Target[Any, Any]:
    return load(environments_folder(_str(folder)), name, console.redact, hosts=_listed(hosts))


def _listed(options: list[str] | None) -> list[str]:
    """A repeatable option's values, each of which may be a comma-separated list."""
    return [value for option in options or [] for value in option.split(",") if value]


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="DEPLOYER_DEBUG", help="Show tracebacks on errors.")
    ] = False,
) -> None:
    """Options for every command. `--debug` is read by main(), which reports the errors."""


@app.command()
def validate(
    names: Annotated[list[str] | None, typer.Argument(help="Environments (default: all).")] = None,
    environments: Folder = None,
) -> None:
    """Check specs, env files and compose files; every problem at once as FILE:LINE: path: message."""
    checked = spec.validate(environments_folder(_str(environments)), names or [], console.redact)
    for warning in checked.warnings:
        console.notice(f"warning: {warning}")
    console.emit(f"ok: {', '.join(checked.names)}" if checked.names else "no environments found")


@app.command()
def render(name: Name, environments: Folder = None, json: Json = False) -> None:
    """Print the exact `docker compose` (or `docker stack deploy`) invocation and the resolved
    compose model (or the stack file)."""
    rendering = spec.render(_load(environments, name), console.redact)
    if isinstance(rendering, StackRendering):
        for warning in rendering.warnings:
            console.notice(f"warning: {warning}")
    if json:
        console.json(model.rendering_document(rendering, console.redact))
    else:
        console.emit(model.rendering_text(rendering, console.redact))


@app.command()
def env(name: Name, environments: Folder = None, json: Json = False) -> None:
    """Each variable with its value (secrets masked) and where it came from."""
    variables = _load(environments, name).env.variables
    if json:
        console.json(model.variables_rows(variables, console.redact))
    else:
        console.emit(model.variables_text(variables, console.redact))


@app.command()
def diff(
    name: Name, environments: Folder = None, hosts: HostsOption = None, json: Json = False
) -> None:
    """What `deploy ENV` would change and why, on each host. Exit 0 in sync (every host), 2
    changes pending, 1 error (a host that could not be read too)."""
    found = read.diff(_load(environments, name, hosts), console.redact)
    several = len(found.outcomes) > 1
    for outcome in found.outcomes:
        for unchecked in outcome.value.unchecked if outcome.value else ():
            where = f"on {outcome.host}: " if several else ""
            console.error(f"warning: {where}{unchecked}; its tag may have moved")
    if json:
        console.json(plans.diff_document(found, console.redact))
    else:
        console.emit(plans.diff_text(found, console.redact))
    _exit_unless_read(name, found.outcomes)
    raise typer.Exit(EXIT_OK if found.in_sync else EXIT_PENDING)


def _exit_unless_read(name: str, outcomes: Sequence[HostOutcome[Any]]) -> None:
    """Exit 1, naming them, when some hosts could not be read or failed."""
    failed = failed_hosts(outcomes)
    if failed:
        console.error(f"error: {name}: failed on {', '.join(failed)}")
        raise typer.Exit(EXIT_ERROR)


Yes = Annotated[bool, typer.Option("--yes", "-y", help="Answer yes to confirmation.")]
LockWait = Annotated[
    float,
    typer.Option("--lock-wait", metavar="SECONDS", help="Wait this long for a held lock."),
]


def _interaction(name: str, yes: bool, json: bool) -> Interaction:
    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise ConfirmationRefusedError(
                f"{name} asks for confirmation and there is no terminal to ask on: pass --yes"
            )
        return typer.confirm(question, default=False)

    def show_plans(shown: Sequence[tuple[str, Plan]]) -> None:
        if not json:
            # As `deploy diff` shows them: one block per host, then how many are in sync.
            first = shown[0][1]
            outcomes = [HostOutcome(host, plan) for host, plan in shown]
            console.emit(
                plans.plans_text(first.environment, first.project, outcomes, console.redact)
            )

    return Interaction(console, confirm, show_plans, console.redact)


def _show_result(result: results.Deployed, json: bool) -> None:
    if json:
        console.json(results.deployed_document(result, console.redact))
        return
    text = results.deployed_text(result)
    if text is not None:
        console.emit(text)


@app.command("up")
def up(
    name: Name,
    environments: Folder = None,
    hosts: HostsOption = None,
    json: Json = False,
    yes: Yes = False,
    lock_wait: LockWait = 0.0,
    save_login: Annotated[
        bool,
        typer.Option("--save-login", help="Also save the registry login in ~/.docker/config.json."),
    ] = False,
) -> None:
    """Deploy ENV: show the plan, confirm where the spec asks, apply, wait until healthy."""
    target = _load(environments, name, hosts)
    ui = _interaction(name, yes, json)
    _show_result(deploy.deploy(target, ui, f"deploy {name}", lock_wait, save_login), json)


@app.command()
def rollback(
    name: Name,
    to: Annotated[
        int | None,
        typer.Option(
            "--to",
            metavar="N",
            help="Release number (default: the last good one before the current).",
        ),
    ] = None,
    environments: Folder = None,
    hosts: HostsOption = None,
    json: Json = False,
    yes: Yes = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Redeploy an earlier release by the exact images it ran."""
    target = _load(environments, name, hosts)
    _show_result(deploy.rollback(target, _interaction(name, yes, json), to, lock_wait), json)


@app.command()
def history(
    name: Name, environments: Folder = None, hosts: HostsOption = None, json: Json = False
) -> None:
    """The releases of ENV, newest first, with what changed in each."""
    found, diverged = read.releases(_load(environments, name, hosts))
    if json:
        console.json(records.history_document(found, diverged))
    else:
        console.emit(records.history_text(name, found, diverged))


@app.command()
def audit(
    name: Name, environments: Folder = None, hosts: HostsOption = None, json: Json = False
) -> None:
    """Every state-changing command run on ENV: who, when, what, with what result."""
    entries = read.audit(_load(environments, name, hosts))
    if json:
        console.json([asdict(e) for e in entries])
    else:
        console.emit(records.audit_text(name, entries))


@app.command()
def status(
    name: Name, environments: Folder = None, hosts: HostsOption = None, json: Json = False
) -> None:
    """Per host, per service: images, state, health, replicas, release. Exit 0 when all is
    running and healthy on every host."""
    found = read.status(_load(environments, name, hosts), console.redact)
    if json:
        console.json(statuses.status_document_of(found, console.redact))
    else:
        console.emit(statuses.status_text_of(found, console.redact))
    if isinstance(found, Statuses):
        _exit_unless_read(name, found.outcomes)
    raise typer.Exit(EXIT_OK if found.healthy else EXIT_ERROR)


@app.command()
def promote(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Environment to promote from.")],
    target: Annotated[
        str, typer.Argument(metavar="TARGET", help="Environment whose spec is edited.")
    ],
    services: Annotated[
        list[str] | None,
        typer.Option(
            "--services",
            metavar="SERVICE",
            help="Only these services (repeat, or a,b); default: all.",
        ),
    ] = None,
    environments: Folder = None,
    json: Json = False,
    yes: Yes = False,
) -> None:
    """Pin in TARGET's spec the exact images (by digest) SOURCE runs; `deploy TARGET` deploys them."""
    names = _listed(services)
    destination = _load(environments, target)
    promotion = promoting.promotion(_load(environments, source), destination, names, console.redact)
    if not json:
        console.emit(results.promotion_text(promotion))
    promoting.promote(promotion, destination, _interaction(target, yes, json))
    if json:
        console.json(results.promotion_document(promotion))
    elif promotion.changes:
        console.emit(results.promoted_text(promotion))


Services = Annotated[
    list[str] | None, typer.Argument(metavar="[SERVICE]...", help="Services (default: all).")
]


@app.command()
def logs(
    name: Name,
    services: Services = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="DURATION", help="Only lines since, e.g. 10m or 2h."),
    ] = None,
    tail: Annotated[
        int | None,
        typer.Option("--tail", metavar="N", help="Only the last N lines of each container."),
    ] = None,
    environments: Folder = None,
    hosts: HostsOption = None,
) -> None:
    """The services' logs (secret values masked), each line after its host's name when there
    are several."""
    target = _load(environments, name, hosts)
    found = reading_logs.logs(target, services or [], follow, since, tail, console.redact)
    prefixes = results.line_prefixes(found.hosts)
    failed = []
    for line in found.lines:
        if line.error is not None:
            failed.append(line)
            console.error(
                "\n".join(f"error: on {line.host}: {text}" for text in line.error.lines())
            )
        else:
            console.print(f"{prefixes[line.host]}{line.value}")
    _exit_unless_read(name, failed)


@app.command()
def restart(
    name: Name,
    services: Services = None,
    environments: Folder = None,
    hosts: HostsOption = None,
    yes: Yes = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Restart services (default: all) and wait until they are running and healthy again."""
    target = _load(environments, name, hosts)
    done = restarting.restart(target, _interaction(name, yes, False), services or [], lock_wait)
    _show_host_by_host(name, done, results.restart_text)


def _show_host_by_host(name: str, done: ByHost[T], render: Callable[[T], str]) -> None:
    console.emit(results.host_by_host_text(done.hosts, done.outcomes, render, console.redact))
    _exit_unless_read(name, done.outcomes)


@app.command()
def build(
    name: Name,
    services: Services = None,
    push: Annotated[
        bool,
        typer.Option("--push", help="Push the images with the spec's registry credentials."),
    ] = False,
    environments: Folder = None,
    json: Json = False,
    yes: Yes = False,
) -> None:
    """Build services with a `build:` section (default: all), tagged as the spec resolves their
    images; with --push, push them, never moving a tag the registry holds with other content."""
    target = _load(environments, name)
    built = building.build(target, _interaction(name, yes, json), services or [], push)
    if json:
        console.json([asdict(b) for b in built])
    else:
        console.emit(results.build_text(built))


@app.command()
def down(
    name: Name,
    volumes: Annotated[
        bool, typer.Option("--volumes", help="Also remove the project's volumes.")
    ] = False,
    environments: Folder = None,
    hosts: HostsOption = None,
    yes: Yes = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Stop and remove ENV's containers and networks (volumes only with --volumes); on a swarm,
    remove its stack."""
    target = _load(environments, name, hosts)
    done = taking_down.down(target, _interaction(name, yes, False), volumes, lock_wait)
    _show_host_by_host(name, done, results.down_text)


@app.command()
def prune(
    name: Name,
    aggressive: Annotated[
        bool,
        typer.Option(
            "--aggressive", help="Also this environment's unused images, except the last releases'."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only list what would be removed.")
    ] = False,
    environments: Folder = None,
    hosts: HostsOption = None,
    json: Json = False,
    yes: Yes = False,
    lock_wait: LockWait = 0.0,
) -> None:
    """Remove dangling images (and with --aggressive unused ones of ENV); never an image in use."""
    target = _load(environments, name, hosts)
    ui = _interaction(name, yes, json)
    done = pruning.prune(target, ui, aggressive, dry_run, lock_wait)
    if json:
        console.json(results.prunes_document(done.outcomes, console.redact))
        _exit_unless_read(name, done.outcomes)
    else:
        _show_host_by_host(name, done, results.prune_text)


lock_app = typer.Typer(
    help="The environment lock: one deploy at a time, across machines.", no_args_is_help=True
)
app.add_typer(lock_app, name="lock")


@lock_app.command("status")
def lock_status(
    name: Name, environments: Folder = None, hosts: HostsOption = None, json: Json = False
) -> None:
    """Who holds the lock of ENV, since when and why; whether it is stale; on each host."""
    outcomes = locking.lock_status(_load(environments, name, hosts))
    if json:
        console.json(locks.locks_document(name, outcomes, console.redact))
    else:
        console.emit(locks.locks_text(name, outcomes, console.redact))
    _exit_unless_read(name, outcomes)


@lock_app.command("acquire")
def lock_acquire(
    name: Name,
    reason: Annotated[str, typer.Option("--reason", help="Why, shown to whoever finds it locked.")],
    yes: Yes = False,
    ttl: Annotated[
        float, typer.Option("--ttl", metavar="SECONDS", help="After this the lock counts as stale.")
    ] = MANUAL_TTL,
    environments: Folder = None,
    hosts: HostsOption = None,
) -> None:
    """Lock ENV for a maintenance window: deploys and rollbacks are refused until it is released."""
    held = locking.lock_acquire(_load(environments, name, hosts), reason, ttl, console.redact)
    console.print(f"locked {name}: {held.reason} (until released, or stale after {ttl:g}s)")


@lock_app.command("release")
def lock_release(
    name: Name,
    yes: Yes = False,
    force: Annotated[
        bool, typer.Option("--force", help="Also break a deploy's lock, e.g. a stale one.")
    ] = False,
    environments: Folder = None,
    hosts: HostsOption = None,
) -> None:
    """Release the lock of ENV."""
    held = locking.lock_release(_load(environments, name, hosts), force, console.redact)
    console.print(
        f"released the lock of {name} held by {held.describe()}"
        if held
        else f"{name} was not locked"
    )


@app.command()
def serve(
    names: Annotated[
        list[str] | None, typer.Argument(metavar="[ENV]...", help="Environments (default: all).")
    ] = None,
    environments: Folder = None,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            metavar="SECONDS",
            min=0.1,
            help="Seconds between rounds, where a spec's watch.interval does not say.",
        ),
    ] = DEFAULT_INTERVAL,
    git: Annotated[
        bool,
        typer.Option(
            "--git", help="The folder is a git checkout: `git pull --ff-only` each round."
        ),
    ] = False,
    notify: Annotated[
        list[str] | None,
        typer.Option("--notify", metavar="URL", help="An Apprise URL to notify (repeatable)."),
    ] = None,
    listen: Annotated[
        str, typer.Option("--listen", metavar="HOST:PORT", help="Where the web view listens.")
    ] = DEFAULT_LISTEN,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            help="Requests need `Authorization: Bearer` this file's token (required off loopback).",
        ),
    ] = None,
    webhook_secret_file: Annotated[
        Path | None,
        typer.Option(
            "--webhook-secret-file",
            metavar="FILE",
            help="The secret that signs POST /hooks/git (GitHub, GitLab, Gitea).",
        ),
    ] = None,
) -> None:
    """Watch environments: a round every interval (and on a webhook) diffs each, tells what
    differs, deploys where its spec says watch.apply: auto; a read-only web view, its API and
    metrics on --listen. SIGTERM ends after the round under way; SIGHUP starts a round now."""
    # Only the agent pays for its web server, templates, metrics and notifiers.
    from deployer.cli import web
    from deployer.commands import serve as serving

    where = web.listen_address(listen)
    token = _secret_file("--token-file", token_file) if token_file else None
    if token is None and not where.loopback:
        raise ServeOptionError("--listen", f"{listen} is not loopback: give --token-file")
    secret = _secret_file("--webhook-secret-file", webhook_secret_file)
    console.redact.add([s for s in (token, secret) if s])
    folder = environments_folder(_str(environments))
    agent = serving.agent(folder, names or [], interval, git, notify or [], console.redact, _log)
    app_ = web.app_of(
        agent.agent, token, secret.encode() if secret else None, agent.notifications_failed
    )

    def stop(signum: int, frame: object) -> None:
        if agent.agent.stopping:  # asked twice: interrupted as any command is
            raise Interrupted()
        _log("stopping after the environment under way (again to interrupt it)")
        agent.agent.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, lambda signum, frame: agent.agent.wake())
    with web.serving(app_, where):
        _log(f"serving {where.url}; watching {folder}")
        try:
            agent.agent.run()
        finally:
            agent.close()
    _log("stopped")


def _log(text: str) -> None:
    console.error(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {text}")


def _secret_file(option: str, path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ServeOptionError(option, f"cannot read {path}: {e}") from e
    if not text:
        raise ServeOptionError(option, f"{path} is empty")
    return text


@app.command()
def version() -> None:
    """Print deployer's version."""
    console.emit(f"deployer {__version__}")


def _str(path: Path | None) -> str | None:
    return str(path) if path else None


def _on_signal(signum: int, frame: object) -> None:
    raise Interrupted()


def main(argv: list[str] | None = None) -> None:
    # SIGTERM (a stop) and SIGHUP (a dropped SSH session) end a command as Ctrl-C does: records
    # written, lock released.
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    outcome = ""
    command = typer.main.get_command(app)
    debug = "--debug" in (argv or sys.argv[1:]) or os.environ.get("DEPLOYER_DEBUG") == "1"
    try:
        code = command.main(args=argv, prog_name="deploy", standalone_mode=False)
    except DeployerError as e:
        if debug:
            traceback.print_exc()
        for line in e.lines():
            console.error(f"error: {line}")
        code = EXIT_ERROR
    except click.exceptions.NoArgsIsHelpError as e:
        console.print(e.format_message())  # `deploy` or `deploy lock` alone: the help, as asked
        code = EXIT_OK
    except click.ClickException as e:
        # Usage errors exit 1, not 2: 2 means "changes pending" for `deploy diff`.
        console.error(f"error: {e.format_message()}")
        ctx = getattr(e, "ctx", None)
        if isinstance(ctx, click.Context):
            console.error(ctx.get_usage())
        code = EXIT_ERROR
    except _Stopped as e:
        code, outcome = EXIT_INTERRUPTED, e.outcome
    except (click.Abort, KeyboardInterrupt):
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        with contextlib.suppress(OSError):  # after a hangup the terminal may be gone
            console.error(f"interrupted: {outcome}" if outcome else "interrupted")
    sys.exit(code if isinstance(code, int) else EXIT_OK)
