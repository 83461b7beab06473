"""What each command does, stage by stage. The CLI calls these and renders what they return."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from deployer import runner
from deployer.apply import Applied, Progress, apply
from deployer.compose import Command, up
from deployer.desired import DesiredState, resolve
from deployer.engine import Engine, EngineClient
from deployer.errors import ConfigError, ConfigIssue, ConfirmationRefusedError, DeployerError
from deployer.observed import observe
from deployer.plan import Plan, plan
from deployer.spec import Spec, find_specs, load_spec, spec_path
from deployer.variables import Redactor, Variables, is_secret, load_variables


@dataclass(frozen=True)
class Loaded:
    spec: Spec
    variables: Variables
    engine: Engine


def load(
    folder: Path, name: str, redact: Redactor, process_env: Mapping[str, str] | None = None
) -> Loaded:
    """Spec and variables of one environment; their secret values are taught to `redact`."""
    environ = os.environ if process_env is None else process_env
    spec = load_spec(spec_path(folder, name))
    variables = load_variables(spec.env_files, environ, spec.secrets)
    redact.add(variables.secret_values())
    return Loaded(spec, variables, Engine.choose(spec.engine_host, environ))


def desired_state(loaded: Loaded, redact: Redactor) -> DesiredState:
    desired = resolve(loaded.spec, loaded.variables, loaded.engine, runner.run)
    # Secrets that reach containers from elsewhere (env_file:, the process environment).
    redact.add(_secret_values(desired, loaded.spec.secrets))
    return desired


def _secret_values(desired: DesiredState, declared: Iterable[str]) -> list[str]:
    names = frozenset(declared)
    values = []
    for service in desired.model.get("services", {}).values():
        for name, value in (service.get("environment") or {}).items():
            if value is not None and is_secret(name, names):
                values.append(str(value).replace("$$", "$"))
    return values


def validate(folder: Path, names: list[str], redact: Redactor) -> list[str]:
    """Check each named environment (all when none named); returns the names checked."""
    names = names or sorted(find_specs(folder))
    issues: list[ConfigIssue] = []
    for name in names:
        try:
            desired_state(load(folder, name, redact), redact)
        except ConfigError as e:
            issues.extend(e.issues)
    if issues:
        raise ConfigError(issues)
    return names


def render(loaded: Loaded, redact: Redactor) -> tuple[Command, DesiredState]:
    desired = desired_state(loaded, redact)
    return up(desired.project, [], remove_orphans=True), desired


def diff(loaded: Loaded, redact: Redactor) -> tuple[Plan, DesiredState, EngineClient]:
    # Compose resolves the model in its own process while this one reads the engine.
    with ThreadPoolExecutor(max_workers=1) as pool:
        resolving = pool.submit(desired_state, loaded, redact)
        try:
            client = EngineClient(loaded.engine)
            observed = observe(client, loaded.spec.project)
        except DeployerError:
            resolving.result()  # a problem in the spec is reported before one with the engine
            raise
        desired = resolving.result()
    return plan(desired, observed), desired, client


def deploy(
    loaded: Loaded,
    redact: Redactor,
    progress: Progress,
    confirm: Callable[[Plan], bool],
    show_plan: Callable[[Plan], None],
) -> Applied | Plan:
    """Plan, confirm where the spec asks, apply. Returns the plan alone when in sync."""
    the_plan, desired, client = diff(loaded, redact)
    show_plan(the_plan)
    if the_plan.in_sync:
        return the_plan
    if loaded.spec.confirm and not confirm(the_plan):
        raise ConfirmationRefusedError(
            f"deploy of {loaded.spec.name} not confirmed; nothing changed"
        )
    return apply(the_plan, desired, client, runner.run, progress)
