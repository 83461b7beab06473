"""The `deploy` command line: parse, call deployer.operations, render. Nothing else lives here."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from deployer import __version__, operations, report
from deployer.errors import ConfirmationRefusedError, DeployerError
from deployer.plan import Plan
from deployer.spec import environments_folder

EXIT_OK, EXIT_ERROR, EXIT_PENDING = 0, 1, 2


class _Group(TyperGroup):
    """`deploy ENV` is `deploy up ENV`: any first word that is not a command names an environment."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["up", *args]
        return super().resolve_command(ctx, args)


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


def _load(folder: Path | None, name: str) -> operations.Loaded:
    return operations.load(
        environments_folder(str(folder) if folder else None), name, console.redact
    )


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
    console.print(f"ok: {', '.join(checked)}" if checked else "no environments found")


@app.command()
def render(name: Name, environments: Folder = None, json: Json = False) -> None:
    """Print the exact `docker compose` invocation and the resolved compose model."""
    loaded = _load(environments, name)
    command, desired = operations.render(loaded, console.redact)
    model = report.masked_model(
        desired.model, loaded.variables.secret_names() | loaded.spec.secrets
    )
    if json:
        console.json(report.render_document(command, model))
    else:
        console.print(report.render_text(command, model))


@app.command()
def env(name: Name, environments: Folder = None, json: Json = False) -> None:
    """Each variable with its value (secrets masked) and where it came from."""
    loaded = _load(environments, name)
    if json:
        console.json(report.variables_rows(loaded.variables))
    else:
        console.print(report.variables_text(loaded.variables))


@app.command()
def diff(name: Name, environments: Folder = None, json: Json = False) -> None:
    """What `deploy ENV` would change and why. Exit 0 in sync, 2 changes pending, 1 error."""
    plan, _, _ = operations.diff(_load(environments, name), console.redact)
    _show(plan, json)
    raise typer.Exit(EXIT_OK if plan.in_sync else EXIT_PENDING)


@app.command("up")
def up(
    name: Name,
    environments: Folder = None,
    json: Json = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Answer yes to confirmation.")] = False,
) -> None:
    """Deploy ENV: show the plan, confirm where the spec asks, apply, wait until healthy."""
    loaded = _load(environments, name)

    def confirm(plan: Plan) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise ConfirmationRefusedError(
                f"{name} asks for confirmation and there is no terminal to ask on: pass --yes"
            )
        return typer.confirm(f"Apply {len(plan.changes)} change(s) to {name}?", default=False)

    result = operations.deploy(
        loaded, console.redact, console, confirm, lambda plan: None if json else _show(plan, False)
    )
    if isinstance(result, Plan):
        if json:
            _show(result, True)
        return
    if json:
        console.json(report.applied_document(result))
    else:
        console.print(report.applied_text(result))


@app.command()
def version() -> None:
    """Print deployer's version."""
    console.print(f"deployer {__version__}")


def _show(plan: Plan, json: bool) -> None:
    if json:
        console.json(report.plan_document(plan))
    else:
        console.print(report.plan_text(plan))


def _str(path: Path | None) -> str | None:
    return str(path) if path else None


def main(argv: list[str] | None = None) -> None:
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
    except click.ClickException as e:
        # Usage errors exit 1, not 2: 2 means "changes pending" for `deploy diff`.
        console.error(f"error: {e.format_message()}")
        ctx = getattr(e, "ctx", None)
        if isinstance(ctx, click.Context):
            console.error(ctx.get_usage())
        code = EXIT_ERROR
    except (click.Abort, KeyboardInterrupt):
        console.error("interrupted")
        code = 130
    sys.exit(code if isinstance(code, int) else EXIT_OK)
