"""The `deploy` command line: parse, call deployer.operations, render. Nothing else lives here."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer
from typer.core import TyperGroup

from deployer import __version__
from deployer.cli import report
from deployer.commands import operations
from deployer.core.errors import ConfirmationRefusedError, DeployerError, Interrupted
from deployer.core.spec import SWARM, environments_folder
from deployer.core.variables import Redactor
from deployer.state.lock import MANUAL_TTL
from deployer.targets.compose.apply import Applied
from deployer.targets.compose.plan import Plan
from deployer.targets.fleet import hosts as fleet
from deployer.targets.fleet.hosts import HostOutcome
from deployer.targets.swarm.apply import SwarmApplied

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
console = report.Console()

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


def _load(
    folder: Path | None, name: str, hosts: list[str] | None = None, swarm_ready: bool = False
) -> operations.Loaded:
    folder_path = environments_folder(_str(folder))
    return operations.load(
        folder_path, name, console.redact, hosts=_listed(hosts), swarm_ready=swarm_ready
    )


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
    checked = operations.validate(
        environments_folder(_str(environments)), names or [], console.redact
    )
    for warning in checked.warnings:
        console.notice(f"warning: {warning}")
    console.emit(f"ok: {', '.join(checked.names)}" if checked.names else "no environments found")


@app.command()
def render(name: Name, environments: Folder = None, json: Json = False) -> None:
    """Print the exact `docker compose` (or `docker stack deploy`) invocation and the resolved
    compose model (or the stack file)."""
    loaded = _load(environments, name, swarm_ready=True)
    if loaded.spec.orchestrator == SWARM:
        _render_stack(loaded, json)
        return
    command, desired = operations.render(loaded, console.redact)
    model = report.masked_model(desired.model, loaded.spec.is_secret, console.redact)
    if json:
        console.json(report.render_document(command, model, console.redact))
    else:
        console.emit(report.render_text(command, model, console.redact))


def _render_stack(loaded: operations.Loaded, json: bool) -> None:
    command, stack, warnings = operations.render_stack(loaded, console.redact)
    for warning in warnings:
        console.notice(f"warning: {warning}")
    document = report.masked_model(stack.document, loaded.spec.is_secret, console.redact)
    if json:
        console.json(report.stack_render_document(command, document, console.redact))
    else:
        console.emit(report.stack_render_text(command, document, console.redact))


@app.command()
def env(name: Name, environments: Folder = None, json: Json = False) -> None:
    """Each variable with its value (secrets masked) and where it came from."""
    loaded = _load(environments, name, swarm_ready=True)
    if json:
        console.json(report.variables_rows(loaded.variables, console.redact))
    else:
        console.emit(report.variables_text(loaded.variables, console.redact))


@app.command()
def diff(
    name: Name, environments: Folder = None, hosts: HostsOption = None, json: Json = False
) -> None:
    """What `deploy ENV` would change and why, on each host. Exit 0 in sync (every host), 2
    changes pending, 1 error (a host that could not be read too)."""
    loaded = _load(environments, name, hosts, swarm_ready=True)
    if loaded.spec.orchestrator == SWARM:
        swarm_plan = operations.swarm_diff(loaded, console.redact)
        _show(swarm_plan, json)
        raise typer.Exit(EXIT_OK if swarm_plan.in_sync else EXIT_PENDING)
    outcomes = operations.diff_hosts(loaded, console.redact)
    several = len(outcomes) > 1
    for outcome in outcomes:
        for unchecked in outcome.value.unchecked if outcome.value else ():
            where = f"on {outcome.host}: " if several else ""
            console.error(f"warning: {where}{unchecked}; its tag may have moved")
    _show_hosts(loaded, outcomes, report.plans_document if json else report.plans_text)
    in_sync = all(o.value is not None and o.value.in_sync for o in outcomes)
    raise typer.Exit(EXIT_OK if in_sync else EXIT_PENDING)


def _show_hosts(
    loaded: operations.Loaded,
    outcomes: list[HostOutcome[T]],
    render: Callable[[str, str, Sequence[HostOutcome[T]], Redactor], str | dict[str, Any]],
) -> None:
    """What each host gave, as text or a JSON document; exit 1 if some hosts could not be read."""
    shown = render(loaded.spec.name, loaded.spec.project, outcomes, console.redact)
    if isinstance(shown, str):
        console.emit(shown)
    else:
        console.json(shown)
    _exit_unless_read(loaded.spec.name, outcomes)


def _exit_unless_read(name: str, outcomes: Sequence[HostOutcome[Any]]) -> None:
    """Exit 1, naming them, when some hosts could not be read or failed."""
    failed = fleet.failed(outcomes)
    if failed:
        console.error(f"error: {name}: failed on {', '.join(failed)}")
        raise typer.Exit(EXIT_ERROR)


Yes = Annotated[bool, typer.Option("--yes", "-y", help="Answer yes to confirmation.")]
LockWait = Annotated[
    float,
    typer.Option("--lock-wait", metavar="SECONDS", help="Wait this long for a held lock."),
]


def _interaction(name: str, yes: bool, json: bool) -> operations.Interaction:
    def confirm(question: str) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise ConfirmationRefusedError(
                f"{name} asks for confirmation and there is no terminal to ask on: pass --yes"
            )
        return typer.confirm(question, default=False)

    def show_plan(plan: Plan) -> None:
        if not json:
            _show(plan, False)

    def show_plans(plans: Sequence[tuple[str, Plan]]) -> None:
        if not json:
            # As `deploy diff` shows them: one block per host, then how many are in sync.
            first = plans[0][1]
            outcomes = [HostOutcome(host, plan) for host, plan in plans]
            console.emit(
                report.plans_text(first.environment, first.project, outcomes, console.redact)
            )

    return operations.Interaction(console, confirm, show_plan, console.redact, show_plans)


def _show_result(result: Applied | SwarmApplied | Plan | operations.Rollout, json: bool) -> None:
    if isinstance(result, SwarmApplied):
        if json:
            console.json(report.swarm_applied_document(result))
        else:
            console.emit(report.swarm_applied_text(result))
    elif isinstance(result, operations.Rollout):
        if json:
            console.json(report.masked(report.rollout_document(result), console.redact))
        elif not result.in_sync:
            console.emit(report.rollout_text(result))
    elif isinstance(result, Plan):
        if json:
            _show(result, True)
    elif json:
        console.json(report.applied_document(result))
    else:
        console.emit(report.applied_text(result))


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
    loaded = _load(environments, name, hosts, swarm_ready=True)
    ui = _interaction(name, yes, json)
    command = f"deploy {name}"
    if loaded.spec.orchestrator == SWARM:
        _show_result(operations.swarm_deploy(loaded, ui, command, lock_wait), json)
    else:
        _show_result(operations.deploy(loaded, ui, command, lock_wait, save_login), json)


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
    loaded = _load(environments, name, hosts, swarm_ready=True)
    ui = _interaction(name, yes, json)
    if loaded.spec.orchestrator == SWARM:
        _show_result(operations.swarm_rollback(loaded, ui, to, lock_wait), json)
    else:
        _show_result(operations.rollback(loaded, ui, to, lock_wait), json)


@app.command()
def history(
    name: Name, environments: Folder = None, hosts: HostsOption = None, json: Json = False
) -> None:
    """The releases of ENV, newest first, with what changed in each."""
    loaded = _load(environments, name, hosts, swarm_ready=True)
    releases = operations.history_of(loaded)
    diverged = operations.divergences(loaded, releases)
    if json:
        console.json(report.history_document(releases, diverged))
    else:
        console.emit(report.history_text(name, releases, diverged))


@app.command()
def audit(
    name: Name, environments: Folder = None, hosts: HostsOption = None, json: Json = False
) -> None:
    """Every state-changing command run on ENV: who, when, what, with what result."""
    entries = operations.audit_of(_load(environments, name, hosts, swarm_ready=True))
    if json:
        console.json([asdict(e) for e in entries])
    else:
        console.emit(report.audit_text(name, entries))


@app.command()
def status(
    name: Name, environments: Folder = None, hosts: HostsOption = None, json: Json = False
) -> None:
    """Per host, per service: images, state, health, replicas, release. Exit 0 when all is
    running and healthy on every host."""
    loaded = _load(environments, name, hosts, swarm_ready=True)
    if loaded.spec.orchestrator == SWARM:
        on_swarm = operations.swarm_status(loaded, console.redact)
        if json:
            console.json(report.swarm_status_document(on_swarm))
        else:
            console.emit(report.swarm_status_text(on_swarm))
        raise typer.Exit(EXIT_OK if on_swarm.healthy else EXIT_ERROR)
    outcomes = operations.status_hosts(loaded, console.redact)
    _show_hosts(loaded, outcomes, report.statuses_document if json else report.statuses_text)
    healthy = all(o.value is not None and o.value.healthy for o in outcomes)
    raise typer.Exit(EXIT_OK if healthy else EXIT_ERROR)


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
    promotion = operations.promotion(
        _load(environments, source), _load(environments, target), names, console.redact
    )
    if not json:
        console.emit(report.promotion_text(promotion))
    operations.promote(promotion, _interaction(target, yes, json))
    if json:
        console.json(report.promotion_document(promotion))
    elif promotion.changes:
        console.emit(report.promoted_text(promotion))


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
    loaded = _load(environments, name, hosts, swarm_ready=True)
    if loaded.spec.orchestrator == SWARM:
        for text in operations.swarm_logs(
            loaded, services or [], follow, since, tail, console.redact
        ):
            console.print(text)
        return
    prefixes = report.line_prefixes([host.host for host in loaded.hosts])
    failed = []
    for line in operations.logs(loaded, services or [], follow, since, tail):
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
    loaded = _load(environments, name, hosts, swarm_ready=True)
    if loaded.spec.orchestrator == SWARM:
        ui = _interaction(name, yes, False)
        console.emit(
            report.swarm_applied_text(
                operations.swarm_restart(loaded, ui, services or [], lock_wait)
            )
        )
        return
    outcomes = operations.restart_hosts(
        loaded, _interaction(name, yes, False), services or [], lock_wait
    )
    _show_host_by_host(loaded, outcomes, report.restarted_text)
    _exit_unless_read(name, outcomes)


def _show_host_by_host(
    loaded: operations.Loaded, outcomes: Sequence[HostOutcome[T]], render: Callable[[T], str]
) -> None:
    hosts = [host.host for host in loaded.hosts]
    console.emit(report.host_by_host_text(hosts, outcomes, render, console.redact))


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
    loaded = _load(environments, name, swarm_ready=True)
    built = operations.build(loaded, _interaction(name, yes, json), services or [], push)
    if json:
        console.json([asdict(b) for b in built])
    else:
        console.emit(report.build_text(built))


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
    loaded = _load(environments, name, hosts, swarm_ready=True)
    if loaded.spec.orchestrator == SWARM:
        ui = _interaction(name, yes, False)
        services = operations.swarm_down(loaded, ui, volumes, lock_wait)
        listed = ", ".join(services) or "no services"
        console.emit(f"{name} is down: stack {loaded.spec.project} removed ({listed})")
        return
    outcomes = operations.down_hosts(loaded, _interaction(name, yes, False), volumes, lock_wait)

    def removed(volumes_removed: list[str]) -> str:
        listed = ", ".join(volumes_removed) or "none"
        return f"{name} is down" + (f"; volumes removed: {listed}" if volumes else "")

    _show_host_by_host(loaded, outcomes, removed)
    _exit_unless_read(name, outcomes)


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
    loaded = _load(environments, name, hosts)
    ui = _interaction(name, yes, json)
    outcomes = operations.prune_hosts(loaded, ui, aggressive, dry_run, lock_wait)
    if json:
        console.json(report.prunes_document(outcomes, console.redact))
    else:
        _show_host_by_host(loaded, outcomes, report.prune_text)
    _exit_unless_read(name, outcomes)


lock_app = typer.Typer(
    help="The environment lock: one deploy at a time, across machines.", no_args_is_help=True
)
app.add_typer(lock_app, name="lock")


@lock_app.command("status")
def lock_status(
    name: Name, environments: Folder = None, hosts: HostsOption = None, json: Json = False
) -> None:
    """Who holds the lock of ENV, since when and why; whether it is stale; on each host."""
    outcomes = operations.lock_status_hosts(_load(environments, name, hosts, swarm_ready=True))
    if json:
        console.json(report.locks_document(name, outcomes, console.redact))
    else:
        console.emit(report.locks_text(name, outcomes, console.redact))
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
    loaded = _load(environments, name, hosts, swarm_ready=True)
    held = operations.lock_acquire(loaded, reason, ttl, console.redact)
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
    held = operations.lock_release(
        _load(environments, name, hosts, swarm_ready=True), force, console.redact
    )
    console.print(
        f"released the lock of {name} held by {held.describe()}"
        if held
        else f"{name} was not locked"
    )


@app.command()
def version() -> None:
    """Print deployer's version."""
    console.emit(f"deployer {__version__}")


def _show(plan: Plan, json: bool) -> None:
    if json:
        console.json(report.plan_document(plan))
    else:
        console.emit(report.plan_text(plan))


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
