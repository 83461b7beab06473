"""The commands about what is declared, before any engine: `deploy validate`, `render` and
`env`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deployer.commands.load import load
from deployer.core.desired import identifiers
from deployer.core.errors import ConfigError, ConfigIssue
from deployer.core.results import Rendering, Validated
from deployer.core.spec import find_specs
from deployer.core.variables import Redactor, weak_secret_issues
from deployer.targets.base import Target


def validate(folder: Path, names: Sequence[str], redact: Redactor) -> Validated:
    """Check each named environment (all when none named); errors raise, all at once, and
    warnings are returned."""
    names = list(names) or sorted(find_specs(folder))
    issues: list[ConfigIssue] = []
    warnings: list[ConfigIssue] = []
    for name in names:
        try:
            target = load(folder, name, redact)
            desired = target.resolve(redact)
        except ConfigError as e:
            issues.extend(e.issues)
            continue
        refused, ignored = target.validate(desired)
        issues += refused
        warnings += ignored
        model_names = identifiers(desired.model, target.env.project)
        warnings += weak_secret_issues(target.env.variables, model_names)
    if issues:
        raise ConfigError(issues)
    return Validated(names, warnings)


def render(target: Target[Any, Any], redact: Redactor) -> Rendering:
    """The exact invocation that deploys the environment (secrets masked where it is shown)
    and what it is given: the resolved compose model, or a swarm's stack file."""
    return target.render(target.resolve(redact))
