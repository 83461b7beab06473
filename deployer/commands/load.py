"""Reading an environment: its spec and variables, and the target it runs on."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deployer.core.spec import load_spec, spec_path
from deployer.core.variables import Redactor, load_variables, referenced_names
from deployer.targets.base import Environment, Outside, Target
from deployer.targets.choose import target_of


def load(
    folder: Path,
    name: str,
    redact: Redactor,
    process_env: Mapping[str, str] | None = None,
    hosts: Sequence[str] = (),
    outside: Outside | None = None,
) -> Target[Any, Any]:
    """The target of environment `name`; its secret values are taught to `redact`. `hosts`
    (`--hosts`) limits it to some of its hosts. Nothing is reached yet."""
    environ = os.environ if process_env is None else process_env
    spec = load_spec(spec_path(folder, name))
    referenced = referenced_names(spec.interpolated_texts())
    variables = load_variables(spec.env_files, environ, spec.is_secret, referenced)
    redact.add(variables.secret_values())
    return target_of(Environment(spec, variables, outside or Outside()), environ, hosts)
