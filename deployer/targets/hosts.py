"""Several hosts: one-host operations fanned out over an environment's hosts (`engine.hosts`), in
parallel or in turn, each outcome kept with the host it belongs to."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from deployer.core.command import Command
from deployer.core.errors import DeployerError
from deployer.core.progress import Progress
from deployer.core.results import HostOutcome
from deployer.infra import runner
from deployer.infra.runner import interrupts_held

T = TypeVar("T")


class OnHost(Protocol):
    """Something on one host: an engine, or a target on one engine."""

    @property
    def host(self) -> str: ...


H = TypeVar("H", bound=OnHost)


def each(hosts: Sequence[H], action: Callable[[H], T]) -> list[HostOutcome[T]]:
    """`action` on every host at once; outcomes in the order of `hosts`. A DeployerError is
    kept as that host's outcome; anything else (a bug, an interrupt) propagates."""

    def attempt(on: H) -> HostOutcome[T]:
        try:
            return HostOutcome(on.host, action(on))
        except DeployerError as e:
            return HostOutcome(on.host, error=e)

    if len(hosts) == 1:
        return [attempt(hosts[0])]
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        return list(pool.map(attempt, hosts))


def together(items: Sequence[T], action: Callable[[T], None]) -> None:
    """`action` on every item at once, each in a thread of its own; returns when all are done.
    An interrupt (Ctrl-C, SIGTERM, SIGHUP) propagates only once every action has finished:
    they all start (the signals wait until they have), and none is cut short."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        with interrupts_held():
            futures = [pool.submit(action, item) for item in items]
        # Leaving this block, by an interrupt too, waits for every thread started above.
        for future in futures:
            future.result()


def in_turn(hosts: Sequence[H], action: Callable[[H], T]) -> list[HostOutcome[T]]:
    """`action` on one host after the other, stopping at the first that fails: the outcomes of
    the hosts attempted, in order (the failed one last)."""
    outcomes: list[HostOutcome[T]] = []
    for on in hosts:
        try:
            outcomes.append(HostOutcome(on.host, action(on)))
        except DeployerError as e:
            outcomes.append(HostOutcome(on.host, error=e))
            break
    return outcomes


def stream_by_host(commands: Sequence[tuple[str, Command]]) -> Iterator[HostOutcome[str]]:
    """The output lines of `commands`, one per host, run at once: each line with its host, as it
    comes. With several hosts a host that fails gives its error among the lines and the others
    go on; with one, its error is the command's."""
    for index, line in runner.streams([command for _, command in commands]):
        host = commands[index][0]
        if not isinstance(line, DeployerError):
            yield HostOutcome(host, line)
        elif len(commands) == 1:
            raise line
        else:
            yield HostOutcome(host, error=line)


def failures(outcomes: Sequence[HostOutcome[T]]) -> list[tuple[str, DeployerError]]:
    """Each host whose outcome is an error, with that error."""
    return [(o.host, o.error) for o in outcomes if o.error is not None]


def alone_raises(outcomes: list[HostOutcome[T]]) -> list[HostOutcome[T]]:
    """The outcomes; of one host, its error is the command's, as it always was."""
    if len(outcomes) == 1 and outcomes[0].error is not None:
        raise outcomes[0].error
    return outcomes


def batches(hosts: Sequence[T], batch: int | str) -> list[list[T]]:
    """The hosts in the order given, cut into batches of `batch` hosts (a number, or a
    percentage of the hosts rounded up: never an empty batch)."""
    percent = batch if isinstance(batch, str) else None
    size = math.ceil(len(hosts) * int(percent.rstrip("%")) / 100) if percent else int(batch)
    size = max(1, size)
    return [list(hosts[i : i + size]) for i in range(0, len(hosts), size)]


def host_names(url: str) -> set[str]:
    """The names `--hosts` accepts for a host: its URL, its address, `user@address`."""
    parts = urlsplit(url)
    names = {url, url.rstrip("/")}
    if parts.hostname:
        names.add(parts.hostname)
        names.add(parts.netloc)
    return names


def selected(hosts: Sequence[H], wanted: Sequence[str], environment: str) -> list[H]:
    """The hosts named in `wanted` (`--hosts`), in the spec's order; all when none named."""
    if not wanted:
        return list(hosts)
    unknown = [w for w in wanted if not any(w in host_names(h.host) for h in hosts)]
    if unknown:
        raise DeployerError(
            f"no host {', '.join(unknown)} in {environment} "
            f"(hosts: {', '.join(h.host for h in hosts)})"
        )
    return [h for h in hosts if host_names(h.host) & set(wanted)]


@dataclass(frozen=True)
class HostProgress:
    """A host's progress among several: each line says which host it is about."""

    progress: Progress
    host: str

    def update(self, subject: str, text: str) -> None:
        self.progress.update(f"{self.host} {subject}", f"{self.host}: {text}")

    def done(self, subject: str, text: str) -> None:
        self.progress.done(f"{self.host} {subject}", f"{self.host}: {text}")
