"""`deploy logs ENV [SERVICE ...]`: the services' log lines, from every host (every task of a
swarm), as they come; secret values are masked where they are printed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from deployer.core.results import HostOutcome
from deployer.core.variables import Redactor
from deployer.targets.base import Target


@dataclass(frozen=True)
class Logs:
    hosts: list[str]  # where the lines come from
    lines: Iterator[HostOutcome[str]]  # each with its host, or a host's error


def logs(
    target: Target[Any, Any],
    services: Sequence[str],
    follow: bool,
    since: str | None,
    tail: int | None,
    redact: Redactor,
) -> Logs:
    return Logs(target.hosts, target.logs(services, follow, since, tail, redact))
