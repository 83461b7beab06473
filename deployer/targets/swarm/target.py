"""A Docker Swarm, through one of its managers (`engine: {host, orchestrator: swarm}`): the same
stages as one engine's, with Compose's model converted into a stack file and handed to Swarm
(`docker stack deploy`, never a scheduler of deployer's own); records and lock in the swarm."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from deployer.compose.resolve import restore_state
from deployer.core.desired import DesiredState, named_services
from deployer.core.errors import (
    ConfigError,
    ConfigIssue,
    DeployerError,
    Interrupted,
    SwarmNodesError,
    TagNotInRegistryError,
)
from deployer.core.inputs import across_nodes, binds, file_inputs, input_notes, per_node_binds
from deployer.core.observed import ObservedStack
from deployer.core.plan import Change, Plan
from deployer.core.progress import Progress
from deployer.core.results import (
    Candidate,
    Diff,
    HostOutcome,
    Prunable,
    StackRendering,
    Statuses,
    SwarmApplied,
    TakenDown,
)
from deployer.core.status import SwarmStatus
from deployer.core.variables import Redactor
from deployer.infra import runner
from deployer.infra.engine import Engine, EngineClient, read_paths
from deployer.infra.registry import Login, RegistryDigests, resolve_digests
from deployer.state.engine_store import records_of_every_project
from deployer.state.releases import (
    HostRelease,
    Release,
    ServiceRelease,
    configured,
    history,
    newest_first,
)
from deployer.state.store import Store
from deployer.state.swarm_store import records_of_every_project as swarm_records_of_every_project
from deployer.targets.base import (
    REMOVE_VOLUMES,
    Capabilities,
    Check,
    Failed,
    Place,
    PlacePlan,
    Teardown,
    Undone,
    refuse_moved_tags,
)
from deployer.targets.prune import kept_by_releases, remove_images, repository_of
from deployer.targets.swarm import apply as swarm_apply
from deployer.targets.swarm.commands import (
    log_line,
    service_logs,
    service_remove,
    service_restart,
    service_rollback,
    stack_rm,
)
from deployer.targets.swarm.images import digest_of, node_candidates, running_status
from deployer.targets.swarm.observe import (
    observe_stack,
    stack_leftovers,
    stack_services,
)
from deployer.targets.swarm.plan import plan, tags_to_check
from deployer.targets.swarm.stack import (
    StackFile,
    convert,
    located_issues,
    named_by_content,
    slow_updates,
    stack_deploy,
    with_bind_digests,
)

# A service Swarm has begun to roll back by itself: its spec is its previous one again, and it
# keeps none (swarmkit drops it), so `docker service rollback` would refuse it.
_ROLLED_BACK_BY_SWARM = frozenset({"rollback_started", "rollback_completed"})


@dataclass(frozen=True)
class StackPlan(PlacePlan):
    """The plan of a stack, with what it was made from: besides the desired state (`host`: the
    manager), its stack file and the stack as it was on the swarm."""

    stack: StackFile
    before: ObservedStack
    digests: RegistryDigests  # what the registries said of the tags the services run

    @property
    def changes_anything(self) -> bool:
        """Whether `docker stack deploy` has anything to do (services that have not converged
        are Swarm's to fix)."""
        return swarm_apply.changes_anything(self.plan)


def stack_file(desired: DesiredState) -> StackFile:
    """The stack file of a desired state, its configs and secrets named by their files'
    content, with warnings for updates a deploy would not wait for to the end."""
    files = desired.files
    home = files.paths[0].parent if files.paths else Path.cwd()  # Compose's project folder
    stack = named_by_content(
        convert(desired.model),
        files.project,
        lambda path: Path(path).read_bytes(),
        lambda path: shown_path(Path(path), home),
    )
    return slow_updates(stack, desired.wait_timeout)


def shown_path(path: Path, home: Path) -> str:
    """A file as the user names it: relative to the project's folder where it is in it."""
    return str(path.relative_to(home)) if path.is_relative_to(home) else str(path)


class SwarmTarget(Place[StackPlan]):
    """A swarm, through the manager `engine`."""

    @property
    def capabilities(self) -> Capabilities:
        name = self.env.name
        return Capabilities(
            {
                REMOVE_VOLUMES: f"{name} is a swarm stack: its volumes are on each node that ran "
                "its tasks, out of reach of `deploy down --volumes`; nothing changed "
                f"(`deploy down {name}`, then `docker volume rm` on each node)",
            }
        )

    def parts(self) -> Sequence[SwarmTarget]:
        return [self]

    # What is read from the swarm is masked with the secrets the last `resolve` taught (every
    # command resolves its desired state before it reads the swarm).
    _redact: Redactor | None = None

    def resolve(self, redact: Redactor) -> DesiredState:
        self._redact = redact
        return super().resolve(redact)

    @property
    def redact(self) -> Redactor:
        return self._redact or Redactor()

    def store(self, reading: bool = False) -> Store:
        return self.env.outside.swarm_store(self.client, self.env.project)

    def stack(self, desired: DesiredState) -> tuple[StackFile, list[ConfigIssue]]:
        """The stack file of `desired` and what Swarm would ignore of it; a feature Swarm cannot
        honour is an error."""
        stack = stack_file(desired)
        refused, ignored = located_issues(stack, self.env.spec)
        if refused:
            raise ConfigError(refused)
        return stack, ignored

    def plan(
        self, desired: Callable[[], DesiredState], redact: Redactor, check: Check
    ) -> StackPlan:
        try:
            observed = observe_stack(self.client, self.env.project, redact)
        except DeployerError:
            desired()  # a problem in the spec is reported before one with the swarm
            raise
        resolved = desired()
        stack, _ = self.stack(resolved)
        stack, notes = self.with_bind_files(stack, resolved)
        digests = RegistryDigests()
        if check is not Check.SKIP:
            images = tags_to_check(stack, observed)
            login = self.env.login(images, redact) if images else None
            digests = resolve_digests(self.client, images, login)
            if check is Check.STRICT and digests.failures:
                raise next(iter(sorted(digests.failures.items())))[1]
        the_plan = replace(plan(self.env.name, stack, observed, digests), notes=notes)
        refuse_moved_tags(self.env, the_plan)
        return StackPlan(self.host, the_plan, resolved, stack, observed, digests)

    def with_bind_files(
        self, stack: StackFile, desired: DesiredState
    ) -> tuple[StackFile, tuple[str, ...]]:
        """The stack file with the digests of the files each service bind-mounts, read on every
        node through its engine (engine.nodes), and what reading them said. Without
        engine.nodes they are not compared, and the notes say so."""
        found = binds(file_inputs(desired.model, str(desired.files.paths[0].parent), self.env.mask))
        if not found:
            return stack, ()
        if not self.env.spec.engine_nodes:
            return stack, tuple(per_node_binds(found))
        paths = {entry.path: entry for entries in found.values() for entry in entries}
        digests = {
            path: across_nodes(paths[path].shown, by_node)
            for path, by_node in read_paths(self.node_engines(), paths).items()
        }
        by_service = {
            name: {e.shown: value for e in entries if (value := digests[e.path].value)}
            for name, entries in found.items()
        }
        return with_bind_digests(stack, by_service), input_notes(found, digests)

    def signal_tasks(self, before: ObservedStack, service: str, signal: str) -> None:
        """Send `signal` to the container of each running task of `service`, on its node
        through the node's engine (engine.nodes)."""
        engines = dict(self.node_engines())
        hostnames = {n["ID"]: n["Description"]["Hostname"] for n in self.client.nodes()}
        for task in self.client.service_tasks([before.services[service].id]):
            status = task.get("Status") or {}
            container = (status.get("ContainerStatus") or {}).get("ContainerID")
            running = status.get("State") == task.get("DesiredState") == "running"
            if container and running:
                engines[hostnames[task["NodeID"]]].kill(container, signal)

    def replan(self, planned: StackPlan, redact: Redactor) -> StackPlan:
        """Against the swarm now; what the registries said a moment ago stands."""
        observed = observe_stack(self.client, self.env.project, redact)
        the_plan = plan(self.env.name, planned.stack, observed, planned.digests)
        the_plan = replace(the_plan, notes=planned.plan.notes)
        return replace(planned, plan=the_plan, before=observed)

    def unchanged(self, planned: StackPlan) -> Plan:
        """In sync: the plan, with the services that have not converged (tasks down, an update
        paused), which are Swarm's to fix and not a change to make (`deploy diff` exits 0 on
        them too; `deploy status` exits 1)."""
        return planned.plan

    def prepare(self, planned: StackPlan, redact: Redactor) -> Login | None:
        """The login, and every image to deploy in its registry, asked through the manager: the
        nodes pull them there."""
        services = planned.stack.document["services"]
        deploying = swarm_apply.deployed_services(planned.plan)
        images = sorted({str(services[n]["image"]) for n in deploying})
        login = self.env.login(images, redact)
        found = resolve_digests(self.client, images, login)
        if found.failures:
            raise next(iter(sorted(found.failures.items())))[1]
        missing = [image for image in images if found.digests.get(image) is None]
        if missing:
            raise TagNotInRegistryError(missing)
        return login

    def apply(self, planned: StackPlan, progress: Progress, login: Login | None) -> SwarmApplied:
        try:
            return swarm_apply.apply(
                planned.plan,
                planned.stack,
                self.client,
                self.env.outside.run,
                progress,
                login,
                planned.desired.wait_timeout,
                self.redact,
                lambda service, signal: self.signal_tasks(planned.before, service, signal),
            )
        except DeployerError as failure:
            # Whether a service changed is read by the undo, service by service.
            raise Failed(failure, lambda: True) from failure

    def undo(self, planned: StackPlan, progress: Progress, releases: Sequence[Release]) -> Undone:
        """Put back the services a failed deploy created or updated: created ones removed;
        updated ones (their version moved) with Swarm's own rollback to the spec each had
        before, unless Swarm has begun it by itself. The services the deploy did not reach are
        left as they are, and so is one whose own rollback Swarm paused. A service that cannot
        be put back does not stop the others: its error is raised once they are."""
        project, engine, run = self.env.project, self.engine, self.env.outside.run
        observed = observe_stack(self.client, project, self.redact)
        undone, rolling, failures = [], [], []
        for name in swarm_apply.deployed_services(planned.plan):
            service, earlier = observed.services.get(name), planned.before.services.get(name)
            if service is None or (earlier is not None and earlier.version == service.version):
                continue
            if service.update_state == "rollback_paused":
                continue
            try:
                if earlier is None:
                    run(service_remove(engine, project, [name]))
                elif service.update_state not in _ROLLED_BACK_BY_SWARM:
                    run(service_rollback(engine, project, name))
                    rolling.append(name)
            except DeployerError as e:
                failures.append(e)
                continue
            undone.append(name)
        accepted = frozenset({swarm_apply.CONVERGED, swarm_apply.ROLLED_BACK})
        with Interrupted.leaving(f"stopped while waiting for the rollback of {', '.join(rolling)}"):
            swarm_apply.wait(
                self.client,
                project,
                rolling,
                planned.desired.wait_timeout,
                progress,
                self.redact,
                accepted,
            )
        if failures:
            raise failures[0]
        return Undone(undone)

    def snapshot(
        self,
        planned: StackPlan,
        states: Sequence[DesiredState],
        releases: Sequence[Release],
        redact: Redactor,
    ) -> tuple[dict[str, ServiceRelease], list[HostRelease]]:
        on_swarm = observe_stack(self.client, self.env.project, redact)
        services = stack_services(on_swarm, states, self.env.secrets)
        return configured(services, releases, self.host), []

    def release_state(self, release: Release, redact: Redactor) -> DesiredState:
        """Each service by the reference it was deployed with where its registry still gives
        that tag the digest it ran (Swarm resolves it to that digest again, and a service not
        changed since keeps its spec: it is not updated), by digest otherwise."""
        current = self.resolve(redact)
        targets = {n: s for n, s in release.services.items() if n in current.services}
        images = sorted({t.image for t in targets.values()})
        found = resolve_digests(self.client, images, self.env.login(images, redact))
        pinned = {
            name: replace(t, pinned=t.image) if found.digests.get(t.image) == t.image_id else t
            for name, t in targets.items()
        }
        return restore_state(current, pinned, self.env.secrets, self.engine, self.env.outside.run)

    # Reading
    def diff(self, redact: Redactor) -> Diff:
        with self.resolving(redact) as desired:
            planned = self.plan(desired, redact, Check.WARN)
        return Diff(
            self.env.name, self.env.project, (HostOutcome(self.host, planned.plan),), by_host=False
        )

    def status(self, redact: Redactor) -> SwarmStatus:
        with self.resolving(redact) as desired:
            planned = self.plan(desired, redact, Check.SKIP)
        return SwarmStatus(self.env.name, planned.before, planned.plan)

    def running(self, redact: Redactor) -> Statuses:
        """Each service's current tasks, running the digest its spec pins."""
        found = running_status(self.status(redact), history(self.store(reading=True)))
        return Statuses(self.env.name, self.env.project, (HostOutcome(self.host, found),))

    def logs(
        self,
        services: Sequence[str],
        follow: bool,
        since: str | None,
        tail: int | None,
        redact: Redactor,
    ) -> Iterator[HostOutcome[str]]:
        """The log lines of the services (those of the stack on the swarm when none named),
        from their tasks on every node, as they come."""
        desired = self.resolve(redact)  # also teaches `redact` their secrets
        wanted = named_services(desired, services)
        name, project = self.env.name, self.env.project
        on_swarm = observe_stack(self.client, project, redact).services
        absent = sorted(set(services) - set(on_swarm))
        if absent:
            them = "them" if len(absent) > 1 else "it"
            raise DeployerError(
                f"{name} has no {', '.join(absent)} on the swarm yet (`deploy {name}` creates {them})"
            )
        commands = [
            service_logs(self.engine, project, s, follow, since, tail)
            for s in sorted(set(wanted) & set(on_swarm))
        ]
        for _, line in runner.streams(commands):
            if isinstance(line, DeployerError):
                raise line
            yield HostOutcome(self.host, log_line(project, line))

    def render(self, desired: DesiredState) -> StackRendering:
        stack, ignored = self.stack(desired)
        registry_auth = self.env.spec.registry is not None
        command = stack_deploy(self.env.project, self.engine, stack, registry_auth)
        return StackRendering(command, stack.document, self.env.spec.is_secret, tuple(ignored))

    def validate(self, desired: DesiredState) -> tuple[list[ConfigIssue], list[ConfigIssue]]:
        return located_issues(stack_file(desired), self.env.spec)

    # Commands done host after host: a swarm is one
    def restart(
        self, desired: DesiredState, services: Sequence[str], progress: Progress
    ) -> SwarmApplied:
        """A rolling restart: a forced update of each service, as its update_config says (one
        task at a time by default); waits until they converge."""
        project = self.env.project
        started = time.monotonic()
        for name in services:
            self.env.outside.run(service_restart(self.engine, project, name))
        with Interrupted.leaving("stopped while waiting: Swarm goes on restarting"):
            after = swarm_apply.wait(
                self.client, project, services, desired.wait_timeout, progress, self.redact
            )
        changes = tuple(Change(n, "restart", ("forced update",)) for n in services)
        return SwarmApplied(
            Plan(self.env.name, project, changes),
            time.monotonic() - started,
            tuple(after.services[n] for n in services if n in after.services),
            done="restarted",
        )

    def teardown(self, volumes: bool, several: bool) -> Teardown:
        project = self.env.project
        removed = sorted(observe_stack(self.client, project, self.redact).services)
        return Teardown(
            f"Remove the stack {project} of {self.env.name}, its services and networks?",
            [f"service {s} removed" for s in removed],
            services=removed,
        )

    def take_down(self, teardown: Teardown) -> TakenDown:
        """`docker stack rm`, then wait until its services and networks are gone (the manager
        removes the networks once their tasks have stopped)."""
        project = self.env.project
        with Interrupted.leaving(f"`docker stack rm` was not cut short: {project} is removed"):
            self.env.outside.run(stack_rm(self.engine, project))
        with Interrupted.leaving(f"{project} is removed; its networks may still be going"):
            self._wait_removed(self.env.spec.wait_timeout)
        return TakenDown(self.env.name, stack=project, services=tuple(teardown.services))

    def _wait_removed(self, timeout: float) -> None:
        project = self.env.project
        deadline = time.monotonic() + timeout
        while left := stack_leftovers(self.client, project):
            if time.monotonic() >= deadline:
                raise DeployerError(
                    f"the stack {project} was removed, but after {timeout:g}s the swarm still "
                    f"has {', '.join(left)}"
                )
            time.sleep(0.25)

    # Image hygiene: images are per node, each node's engine visited (engine.nodes)
    def node_engines(self) -> list[tuple[str, EngineClient]]:
        """Each node of the swarm, by hostname, with its own engine as engine.nodes names it,
        checked to be that node's. Every node, or none: a node prune cannot reach is an error
        before anything is removed."""
        name, listed = self.env.name, self.env.spec.engine_nodes
        nodes = {n["Description"]["Hostname"]: n["ID"] for n in self.client.nodes()}
        unlisted = sorted(set(nodes) - set(listed))
        if unlisted:
            raise SwarmNodesError(
                name,
                unlisted,
                f"of the swarm {'has' if len(unlisted) == 1 else 'have'} no engine in "
                "engine.nodes (prune removes images on every node, through each node's engine)",
            )
        strangers = sorted(set(listed) - set(nodes))
        if strangers:
            raise SwarmNodesError(
                name, strangers, "in engine.nodes: not a node of the swarm (`docker node ls`)"
            )
        engines = []
        for hostname, node_id in sorted(nodes.items()):
            url = listed[hostname]
            try:
                client = self.env.outside.connect(Engine(url))
                found = client.swarm_node_id()
            except DeployerError as e:
                raise SwarmNodesError(name, [hostname], f"cannot be reached: {e.message}") from e
            if found != node_id:
                raise SwarmNodesError(
                    name, [hostname], f"is not the engine at {url} (engine.nodes.{hostname})"
                )
            engines.append((hostname, client))
        return engines

    def prunable(self, desired: DesiredState, aggressive: bool) -> Prunable:
        """On every node: dangling images; with `aggressive`, this environment's unused ones.
        Never an image a container uses on any node, one a service of the swarm pins, one of
        the last `deploy.keep_releases` releases of any stack of the swarm (or of any project
        on the node's engine), nor one the spec names."""
        engines = self.node_engines()
        keep_releases = self.env.spec.keep_releases
        swarm_records = swarm_records_of_every_project(self.client, "release")
        keep_digests = kept_by_releases(swarm_records, keep_releases)
        keep_digests |= {d for d in map(digest_of, self.client.service_images()) if d}
        named = {s.image for s in desired.services.values()}
        repositories = {repository_of(image) for image in named}
        recorded = newest_first(swarm_records.get(self.env.project, []))
        repositories |= {repository_of(s.image) for r in recorded for s in r.services.values()}
        in_use = {image for _, client in engines for image in client.images_in_use()}
        candidates: list[Candidate] = []
        for hostname, client in engines:
            local = client.images()
            keep_ids = kept_by_releases(records_of_every_project(client, "release"), keep_releases)
            keep_ids |= {i["Id"] for i in local if named & set(i.get("RepoTags") or ())}
            images = client.dangling_images() + (local if aggressive else [])
            unique = list({i["Id"]: i for i in images}.values())
            candidates += node_candidates(
                hostname, unique, in_use, keep_ids, keep_digests, repositories, aggressive
            )
        return Prunable(tuple(candidates), tuple(hostname for hostname, _ in engines))

    def remove_images(self, candidates: Sequence[Candidate], stopped: str) -> dict[str, int]:
        """Node by node, each its own candidates; the bytes each node's engine freed."""
        engines = dict(self.node_engines())
        return {
            node: remove_images(engines[node], [c for c in candidates if c.node == node], stopped)
            for node in sorted({c.node for c in candidates})
        }

    def running_images(self) -> dict[str, str]:
        """Per service, the digest its spec pins: what a swarm's release records."""
        services = observe_stack(self.client, self.env.project, self.redact).services
        return {name: s.digest or "" for name, s in services.items()}
