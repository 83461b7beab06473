"""One error tree. Errors carry facts as fields; only the CLI turns them into text and exit codes."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


def shown_path(path: str) -> str:
    """A path as the user best reads it: relative to the working folder when inside it."""
    if not os.path.isabs(path):
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP: locks are released and the outcome is recorded. `outcome` says
    what the interrupt left behind, as the operation it stopped knows it ("" when none said)."""

    def __init__(self, outcome: str = "") -> None:
        super().__init__(outcome)
        self.outcome = outcome

    @staticmethod
    @contextmanager
    def leaving(outcome: str) -> Iterator[None]:
        """An interrupt within this block leaves `outcome` behind, unless an inner block said."""
        try:
            yield
        except KeyboardInterrupt as e:
            if isinstance(e, Interrupted) and e.outcome:
                raise
            raise Interrupted(outcome) from e


class DeployerError(Exception):
    """Base of every error deployer reports to its user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def lines(self) -> list[str]:
        """The lines shown to the user, each complete on its own."""
        return [self.message]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file: where it is and what is wrong."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        file = shown_path(self.file)
        where = f"{file}:{self.line}" if self.line else file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(DeployerError):
    """One or more problems in specs, env files or compose files, gathered to be shown at once."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def lines(self) -> list[str]:
        return [str(i) for i in self.issues]


class UnknownEnvironmentError(DeployerError):
    def __init__(self, name: str, folder: str, known: Sequence[str]) -> None:
        self.name, self.folder, self.known = name, folder, list(known)
        choices = ", ".join(self.known) if self.known else "none"
        super().__init__(f"unknown environment {name!r} in {folder} (known: {choices})")


class EngineUnreachableError(DeployerError):
    def __init__(self, host: str, reason: str) -> None:
        self.host, self.reason = host, reason
        super().__init__(f"Docker engine at {host} is unreachable: {reason}")


class SshConnectError(EngineUnreachableError):
    """An ssh:// host deployer cannot use: ssh itself failed (`ssh_failed`: refused, no route,
    unknown host key, key refused), or the remote has no docker CLI or its engine does not answer.
    `reason` is what ssh or the remote docker CLI said."""

    def __init__(self, host: str, reason: str, ssh_failed: bool) -> None:
        self.host, self.reason, self.ssh_failed = host, reason, ssh_failed
        how = "over SSH" if ssh_failed else "through SSH"
        DeployerError.__init__(self, f"Docker engine at {host} is unreachable {how}: {reason}")


class ComposeUnavailableError(DeployerError):
    def __init__(self, found: str) -> None:
        self.found = found
        super().__init__(f"Docker Compose v2 is required (`docker compose`), found: {found}")


class ProgramNotFoundError(DeployerError):
    def __init__(self, program: str) -> None:
        self.program = program
        super().__init__(f"`{program}` is not installed (not found on PATH)")


class InvalidReferenceError(DeployerError):
    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(f"invalid image reference {text!r}")


class CommandFailedError(DeployerError):
    def __init__(self, argv: Sequence[str], returncode: int, output: str) -> None:
        self.argv, self.returncode, self.output = list(argv), returncode, output
        last = output.strip().splitlines()[-1] if output.strip() else "no output"
        super().__init__(f"`{' '.join(self.argv[:4])} ...` failed (exit {returncode}): {last}")


class PullError(DeployerError):
    def __init__(self, image: str, reason: str) -> None:
        self.image, self.reason = image, reason
        super().__init__(f"cannot pull {image}: {reason}")


class UnhealthyServiceError(DeployerError):
    def __init__(self, service: str, state: str, timeout: float, log_lines: Sequence[str]) -> None:
        self.service, self.state, self.timeout = service, state, timeout
        self.log_lines = list(log_lines)
        super().__init__(
            f"service {service} did not become healthy within {timeout:g}s (last state: {state})"
        )

    def lines(self) -> list[str]:
        tail = [f"  {line}" for line in self.log_lines] or ["  (no log output)"]
        return [self.message, f"last log lines of {self.service}:", *tail]


class StartFirstFailedError(DeployerError):
    """The new containers of a start-first update did not become ready: they were removed, and
    the old ones, never stopped, went on serving."""

    def __init__(self, service: str, failure: DeployerError) -> None:
        self.service, self.failure = service, failure
        super().__init__(
            f"{failure.message}; its new containers were removed, the old ones never stopped"
        )

    def lines(self) -> list[str]:
        return [self.message, *self.failure.lines()[1:]]


class ConfirmationRefusedError(DeployerError):
    """Raised when a change needs confirmation and none can be asked for or it was declined."""


class LockedError(DeployerError):
    """The environment's lock is held by someone else, or left stale by someone gone."""

    def __init__(
        self, environment: str, holder: str, since: str, reason: str, stale: str | None
    ) -> None:
        self.environment, self.holder, self.since = environment, holder, since
        self.reason, self.stale = reason, stale
        held = f"held by {holder} since {since} ({reason})"
        if stale:
            message = (
                f"the lock of {environment} is stale: {stale}; {held}. "
                f"Break it with `deploy lock release {environment} --force`"
            )
        else:
            message = f"{environment} is locked: {held}. Wait with --lock-wait SECONDS"
        super().__init__(message)


class RolledBackError(DeployerError):
    """A deploy failed and the changed services were put back as they were."""

    def __init__(self, failure: DeployerError, restored: Sequence[str]) -> None:
        self.failure, self.restored = failure, list(restored)
        what = ", ".join(self.restored) or "nothing (no service had an earlier container)"
        super().__init__(f"{failure.message}; rolled back: {what}")

    def lines(self) -> list[str]:
        return [self.message, *self.failure.lines()[1:]]


class HostsFailedError(DeployerError):
    """Hosts of an environment that failed before anything changed (an engine that cannot be
    reached, a registry it cannot ask): nothing was changed on any host."""

    def __init__(self, environment: str, failures: Sequence[tuple[str, DeployerError]]) -> None:
        self.environment, self.failures = environment, list(failures)
        hosts = ", ".join(host for host, _ in self.failures)
        super().__init__(
            f"{environment}: {hosts}: {self.failures[0][1].message}; nothing changed on any host"
            if len(self.failures) == 1
            else f"{environment}: {len(self.failures)} hosts failed ({hosts}); "
            "nothing changed on any host"
        )

    def lines(self) -> list[str]:
        if len(self.failures) == 1:
            return [self.message]
        return [self.message, *(f"  {host}: {e.message}" for host, e in self.failures)]


class RolloutFailedError(DeployerError):
    """A deploy over several hosts failed on some: no further batch started; the hosts it
    changed were put back (`rolled_back`) or left as they were. `results` has one line per
    host: what happened there."""

    def __init__(
        self,
        environment: str,
        failures: Sequence[tuple[str, DeployerError]],
        rolled_back: Sequence[str] | None,
        results: Sequence[str],
        result: str,
    ) -> None:
        self.environment, self.failures = environment, list(failures)
        self.rolled_back, self.results = rolled_back, list(results)
        self.result = result  # what the release records: rolled back, or failed
        host, failure = self.failures[0]
        self.failure = f"{host}: {failure.message}"
        if rolled_back is None:
            what = "nothing undone (deploy.on_failure: stop)"
        else:
            what = f"rolled back: {', '.join(rolled_back) or 'no host was changed'}"
        super().__init__(f"deploy of {environment} failed on {self.failure}; {what}")

    def lines(self) -> list[str]:
        details = [line for _, e in self.failures for line in e.lines()[1:]]
        return [self.message, *(f"  {line}" for line in self.results), *details]


class RegistryLoginError(DeployerError):
    """A registry refused a pull: wrong credentials, or none where some are needed."""

    def __init__(self, server: str, username: str | None, reason: str) -> None:
        self.server, self.username, self.reason = server, username, reason
        if username is None:
            message = (
                f"registry {server} refused the pull without a login ({reason}): "
                "set `registry: {server, username, password_env}` in the spec"
            )
        else:
            message = f"login to registry {server} as {username} failed: {reason}"
        super().__init__(message)


class LockBusyError(DeployerError):
    """A lock cannot be broken: processes its holder started still change the environment."""

    def __init__(self, environment: str, holder: str, running: Sequence[str]) -> None:
        self.environment, self.holder, self.running = environment, holder, list(running)
        super().__init__(
            f"the lock of {environment} is not stale: processes of its holder {holder} still "
            f"change the environment here: {'; '.join(self.running)}; wait until they end"
        )


class LockLostError(DeployerError):
    """The lock this command took was broken or taken over while it ran."""

    def __init__(self, project: str, holder: str | None) -> None:
        self.project, self.holder = project, holder
        now = f"now held by {holder}" if holder else "now free"
        super().__init__(
            f"the lock of project {project} is no longer this command's ({now}): "
            "its outcome is not recorded as a release"
        )


class SpecEditError(DeployerError):
    """A spec file whose text cannot be edited safely: nothing is written, and the lines to add
    by hand are given instead."""

    def __init__(self, file: str, reason: str, hand_lines: Sequence[str]) -> None:
        self.file, self.reason, self.hand_lines = file, reason, list(hand_lines)
        super().__init__(
            f"{shown_path(file)}: cannot be edited safely ({reason}); nothing written. "
            "Add these lines by hand, in place of the services' `image:` or `tag:`:"
        )

    def lines(self) -> list[str]:
        return [self.message, *(f"  {line}" for line in self.hand_lines)]


class PromotionRefusedError(DeployerError):
    """`deploy promote` cannot take what SOURCE runs to TARGET; the reason says why."""

    def __init__(self, source: str, target: str, reason: str) -> None:
        self.source, self.target, self.reason = source, target, reason
        super().__init__(f"cannot promote {source} to {target}: {reason}")


class RegistryError(DeployerError):
    """A registry could not answer for an image: not reachable, or it refused the request."""

    def __init__(self, registry: str, image: str, reason: str) -> None:
        self.registry, self.image, self.reason = registry, image, reason
        super().__init__(f"cannot check {image} in registry {registry}: {reason}")


class TagMovedError(DeployerError):
    """A tag points to another digest in the registry than the one deployer ran or built, and
    the environment's tags are immutable (`deploy.immutable_tags`)."""

    def __init__(self, image: str, tag: str, old: str, new: str, why: str, built: bool) -> None:
        self.image, self.tag, self.old, self.new, self.built = image, tag, old, new, built
        if built:  # `old` is the ID of an image built or tagged here, never pushed
            super().__init__(
                f"the image under tag {tag} of {image} here ({old}) is not the registry's "
                f"({new}); {why}"
            )
        else:
            super().__init__(f"tag {tag} of {image} moved: {old} -> {new}; {why}")


class PushError(DeployerError):
    """The registry refused a push, or it broke off."""

    def __init__(self, image: str, reason: str) -> None:
        self.image, self.reason = image, reason
        super().__init__(f"cannot push {image}: {reason}")


class BuildError(DeployerError):
    """`docker compose build` of a service failed; its last output lines say why."""

    def __init__(self, service: str, image: str, output_lines: Sequence[str]) -> None:
        self.service, self.image, self.output_lines = service, image, list(output_lines)
        super().__init__(f"the build of {service} ({image}) failed")

    def lines(self) -> list[str]:
        tail = [f"  {line}" for line in self.output_lines] or ["  (no output)"]
        return [self.message, f"last lines of the build of {self.service}:", *tail]


class TagTakenError(DeployerError):
    """A push would move a tag the registry holds with other content: tags are immutable."""

    def __init__(
        self, image: str, tag: str, registry_digest: str, built: str, left: str = ""
    ) -> None:
        self.image, self.tag = image, tag
        self.registry_digest, self.built, self.left = registry_digest, built, left
        super().__init__(
            f"tag {tag} of {image} exists in the registry as {registry_digest}, and the image "
            f"built is another one ({built}): not pushed; build under a new tag"
            + (f"; {left}" if left else "")
        )


class FileInputError(DeployerError):
    """A file a service reads that cannot be compared: not readable, or changing all the time."""

    def __init__(self, shown: str, kind: str, reason: str) -> None:
        super().__init__(f"{kind} {shown}: cannot be read ({reason}); nothing changed")
        self.shown, self.kind, self.reason = shown, kind, reason


class UnsupportedError(DeployerError):
    """A command, or an option of one, that the environment's target cannot do: its
    capabilities say so, before any engine is reached."""

    def __init__(self, capability: str, message: str) -> None:
        self.capability = capability
        super().__init__(message)


class SwarmNodesError(DeployerError):
    """Nodes of a swarm that prune cannot visit (not in engine.nodes, unreachable, another
    engine than the node's): nothing is removed anywhere."""

    def __init__(self, environment: str, nodes: list[str], reason: str) -> None:
        self.environment, self.nodes, self.reason = environment, nodes, reason
        named = f"node {nodes[0]}" if len(nodes) == 1 else f"nodes {', '.join(nodes)}"
        super().__init__(f"cannot prune {environment}: {named} {reason}: nothing removed")


class TagNotInRegistryError(DeployerError):
    """An image a deploy would hand to Swarm that its registry does not have: the nodes could
    not pull it."""

    def __init__(self, images: Sequence[str]) -> None:
        self.images = list(images)
        super().__init__(
            f"not in the registry: {', '.join(self.images)} (push it there first); nothing changed"
        )


class SwarmServiceError(DeployerError):
    """A service of a swarm deploy that did not converge: rolled back or paused by Swarm, or
    still not there when the wait ran out."""

    def __init__(
        self,
        service: str,
        state: str,
        reason: str,
        task_errors: Sequence[str],
        log_lines: Sequence[str],
    ) -> None:
        self.service, self.state, self.reason = service, state, reason
        self.task_errors, self.log_lines = list(task_errors), list(log_lines)
        why = f" ({reason})" if reason and reason not in state else ""
        super().__init__(f"service {service}: {state}{why}")

    def lines(self) -> list[str]:
        errors = [f"  {error}" for error in self.task_errors] or ["  (none)"]
        tail = [f"  {line}" for line in self.log_lines] or ["  (no log output)"]
        return [
            self.message,
            f"task errors of {self.service}:",
            *errors,
            f"last log lines of {self.service}:",
            *tail,
        ]


class NotSwarmManagerError(DeployerError):
    """A swarm environment's engine that cannot answer for the swarm: not in one, or a worker."""

    def __init__(self, host: str, node_state: str) -> None:
        self.host, self.node_state = host, node_state
        what = "a swarm worker" if node_state == "active" else f"in no swarm ({node_state})"
        super().__init__(
            f"{host} is not a swarm manager, it is {what}: name a manager in engine.host "
            "(or make this engine one: docker swarm init)"
        )


class ServeOptionError(DeployerError):
    """`deploy serve` cannot start as asked: a notification URL no notifier knows, an address
    other than loopback without a token, a file it needs that cannot be read."""

    def __init__(self, option: str, problem: str) -> None:
        self.option, self.problem = option, problem
        super().__init__(f"{option}: {problem}")


class GitPullError(DeployerError):
    """The environments checkout could not be brought up to date (`git pull --ff-only`)."""

    def __init__(self, folder: str, output: str) -> None:
        self.folder, self.output = folder, output
        last = output.strip().splitlines()[-1] if output.strip() else "no output"
        super().__init__(f"git pull --ff-only in {shown_path(folder)} failed: {last}")
