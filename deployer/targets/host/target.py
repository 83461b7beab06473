"""One engine, driven with the real Compose CLI: the target of `engine: {host: ...}`, and of each
host of several (deployer/targets/fleet)."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from deployer.compose import project as compose
from deployer.compose.resolve import restore_state
from deployer.core.command import Command
from deployer.core.desired import ComposeFiles, DesiredState, with_file_digests
from deployer.core.errors import DeployerError, Interrupted, StartFirstFailedError
from deployer.core.inputs import Digest, ServiceInputs, file_inputs
from deployer.core.observed import ObservedContainer, ObservedState
from deployer.core.plan import Plan
from deployer.core.progress import Progress
from deployer.core.reference import lookup_key
from deployer.core.results import (
    Applied,
    Candidate,
    ComposeRendering,
    Diff,
    HostOutcome,
    Prunable,
    Restarted,
    Statuses,
    TakenDown,
)
from deployer.core.status import EnvironmentStatus
from deployer.core.variables import Redactor
from deployer.infra.engine import PROJECT_LABEL, EngineClient, read_paths
from deployer.infra.files import LocalFiles
from deployer.infra.registry import Login, RegistryDigests, resolve_digests
from deployer.state import containers
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
from deployer.targets.base import (
    Check,
    Environment,
    Failed,
    Place,
    PlacePlan,
    Teardown,
    Undone,
    refuse_moved_tags,
)
from deployer.targets.host.apply import apply, wait_ready
from deployer.targets.host.observe import (
    image_ids,
    observe,
    observe_containers,
    running_services,
)
from deployer.targets.host.plan import as_deployed, plan
from deployer.targets.host.registry import from_registry, running_tags, tags_to_check
from deployer.targets.host.status import status
from deployer.targets.hosts import stream_by_host
from deployer.targets.prune import kept_by_releases, prunable, remove_images, repository_of

_ANONYMOUS_VOLUME = re.compile(r"^[0-9a-f]{64}$")  # the name the engine gives an anonymous volume


@dataclass(frozen=True)
class HostPlan(PlacePlan):
    """The plan of one engine, with what it was made from: besides the desired state, what ran
    before, and what the registries said of the tags that run."""

    before: ObservedState
    digests: RegistryDigests

    @property
    def changes_anything(self) -> bool:
        return not self.plan.in_sync

    @property
    def deployed(self) -> DesiredState:
        """The desired state as `up` gets it (plan.as_deployed)."""
        return as_deployed(self.desired, self.before, self.plan)

    @property
    def states(self) -> list[DesiredState]:
        return [self.deployed]


def replaced(
    before: ObservedState, after: Sequence[ObservedContainer], services: Sequence[str]
) -> bool:
    """Whether any container of `services` is not the one it was: from then on, a failure
    leaves the environment changed and is rolled back."""
    wanted = set(services)
    return {c.id for c in before.containers if c.service in wanted} != {
        c.id for c in after if c.service in wanted
    }


class _EarlyLookups:
    """The registries asked about the tags that run while Compose resolves the spec, in a
    thread of their own: a deploy that keeps its tags (a no-op, most deploys) needs exactly these
    answers, and has them once Compose is done. Only answers for the tags the plan checks are
    used; a failure to ask early (no credentials, an engine gone) leaves them to be asked then.
    A daemon thread: a command that ends first (a problem in the spec) does not wait for it."""

    def __init__(
        self,
        client: EngineClient,
        images: Sequence[str],
        env: Environment,
        redact: Redactor,
        check: Check,
    ) -> None:
        self._found = RegistryDigests()
        self._thread: threading.Thread | None = None
        if check is Check.SKIP or not images:
            return
        try:
            login = env.login(images, redact)
        except DeployerError:
            return  # said, if it matters, when the plan's own tags are asked

        def ask() -> None:
            with contextlib.suppress(DeployerError):
                self._found = resolve_digests(client, images, login)

        self._thread = threading.Thread(target=ask, name="registry lookups", daemon=True)
        self._thread.start()

    def answers(self) -> RegistryDigests:
        if self._thread is not None:
            self._thread.join()
        return self._found


class HostTarget(Place[HostPlan]):
    """One engine: `docker compose` for every change, the Docker SDK to read it, deployer's
    records and lock on the engine itself."""

    def parts(self) -> Sequence[HostTarget]:
        return [self]

    def store(self, reading: bool = False) -> Store:
        return self.env.outside.store(self.client, self.env.project)

    def project(self) -> compose.ComposeProject:
        """The project on this engine as its compose files and variables make it, without
        deployer's override: what `logs`, `restart` and `down` act on."""
        return compose.ComposeProject(
            ComposeFiles.of(self.env.spec, self.env.variables), self.engine
        )

    def observe(self) -> ObservedState:
        """The project's containers, each with the fingerprint deployer knows it runs (its
        label's, or the one the store remembers for it)."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            memory = pool.submit(containers.remembered, self.store(reading=True))
            observed = observe(self.client, self.env.project)
            return observed.remembering(memory.result())

    def here(self, desired: DesiredState, observed: ObservedState) -> DesiredState:
        """`desired` as this engine's host has it: with the content of the files its services
        read, and (where plain Compose made containers) Compose's hash of each service."""
        desired = self.with_files(desired)
        if any(c.fingerprint is None for c in observed.containers):
            hashing = compose.hashing(desired.model, desired.files, self.engine)
            output = self.env.outside.run(compose.config_hashes(hashing)).stdout
            desired = replace(desired, compose_hashes=compose.parse_hashes(output))
        return desired

    def with_files(self, desired: DesiredState) -> DesiredState:
        """`desired` with the content of the files its services read, as this engine's host
        has them, in their fingerprints."""
        inputs = file_inputs(desired.model, str(desired.files.paths[0].parent), self.env.mask)
        return with_file_digests(desired, inputs, self.read_files(inputs))

    def read_files(self, inputs: ServiceInputs) -> dict[str, Digest]:
        """Each path's digest, read where the engine's host has it: here for an engine on this
        machine, else through the engine."""
        found = {i.path: i for entries in inputs.by_service.values() for i in entries}
        if not found:
            return {}
        if self.engine.on_this_machine:
            return LocalFiles().digests(found)
        read = read_paths([(self.host, self.client)], found)
        return {path: on_host[self.host] for path, on_host in read.items()}

    def _remember(self, planned: HostPlan) -> None:
        """Keep what the containers of adopted and signalled services run, where their label
        does not say it (those of an adopted service `up` started or scaled too); forget the
        containers gone."""
        store = self.store()
        after = observe_containers(self.client, self.env.project)
        services = planned.plan.services_to_remember
        fingerprints = {
            c.id: planned.desired.services[c.service].fingerprint
            for c in after
            if c.service in services
            and c.made_with != planned.desired.services[c.service].fingerprint
        }
        if fingerprints:
            containers.remember(store, fingerprints, store.clock())
        containers.forget(store, {c.id for c in after})

    def plan(self, desired: Callable[[], DesiredState], redact: Redactor, check: Check) -> HostPlan:
        try:
            observed = self.observe()
        except DeployerError:
            desired()  # a problem in the spec is reported before one with the engine
            raise
        asked = _EarlyLookups(self.client, running_tags(observed), self.env, redact, check)
        return self._checked(self.here(desired(), observed), observed, redact, check, asked)

    def _checked(
        self,
        desired: DesiredState,
        observed: ObservedState,
        redact: Redactor,
        check: Check,
        asked: _EarlyLookups | None = None,
    ) -> HostPlan:
        """The plan with the running tags checked in their registries (unless SKIP). A moved tag
        in an environment whose tags are immutable is an error; with STRICT, so is a registry
        that cannot be asked. What `asked` has answered already is not asked again."""
        digests = RegistryDigests()
        if check is not Check.SKIP:
            images = tags_to_check(desired, observed)
            login = self.env.login(images, redact) if images else None
            early = asked.answers() if asked is not None else RegistryDigests()
            answered = {*early.digests, *early.failures}
            rest = resolve_digests(self.client, [i for i in images if i not in answered], login)
            digests = RegistryDigests(
                {i: d for i, d in [*early.digests.items(), *rest.digests.items()] if i in images},
                {i: e for i, e in [*early.failures.items(), *rest.failures.items()] if i in images},
            )
            trusted = from_registry(desired, observed)
            failures = [e for image, e in sorted(digests.failures.items()) if image in trusted]
            if check is Check.STRICT and failures:
                raise failures[0]
        the_plan = plan(desired, observed, digests)
        refuse_moved_tags(self.env, the_plan)
        return HostPlan(self.host, the_plan, desired, observed, digests)

    def replan(self, planned: HostPlan, redact: Redactor) -> HostPlan:
        """Against what runs now; what the registries said a moment ago stands."""
        before = self.observe()
        the_plan = plan(planned.desired, before, planned.digests)
        return replace(planned, plan=the_plan, before=before)

    def unchanged(self, planned: HostPlan) -> Plan:
        return planned.plan

    def prepare(self, planned: HostPlan, redact: Redactor) -> Login | None:
        return self.env.login(planned.plan.pulls, redact)

    def apply(self, planned: HostPlan, progress: Progress, login: Login | None) -> Applied:
        deployed = planned.deployed
        project = compose.deploying(deployed, self.engine)
        try:
            applied = apply(
                planned.plan,
                deployed,
                project,
                self.client,
                self.env.outside.run,
                progress,
                login,
            )
            self._remember(planned)
            return applied
        except DeployerError as failure:
            # A start-first update that failed has put its service back already; services
            # rolled before it are put back by the undo.
            put_back = [failure.service] if isinstance(failure, StartFirstFailedError) else []

            def changed() -> bool:
                if put_back:
                    return True
                after = observe_containers(self.client, self.env.project)
                return replaced(planned.before, after, planned.plan.services_to_up)

            raise Failed(failure, changed, put_back) from failure

    def undo(self, planned: HostPlan, progress: Progress, releases: Sequence[Release]) -> Undone:
        """Put the changed services back on the exact images they ran before, with the
        configuration they ran (as the newest release that ran that image recorded it); remove
        the containers of the services the deploy created."""
        observed = self.observe()
        # Only the services whose containers the deploy replaced are put back.
        changed = {
            s
            for s in planned.plan.services_to_up
            if replaced(planned.before, observed.containers, [s])
        }
        before = replace(
            planned.before,
            containers=tuple(c for c in planned.before.containers if c.service in changed),
        )
        targets = configured(running_services(before), releases, self.host)
        created = sorted(changed - set(targets))
        states = []
        if targets:
            state = restore_state(
                planned.desired, targets, self.env.secrets, self.engine, self.env.outside.run
            )
            state = self.here(state, observed)
            restoring = plan(state, observed)
            # Only what is put back: a service the deploy created is removed below, not started.
            only = replace(
                restoring, changes=tuple(c for c in restoring.changes if c.service in targets)
            )
            deployed = as_deployed(state, observed, only)
            states.append(deployed)
            project = compose.deploying(deployed, self.engine)
            apply(only, deployed, project, self.client, self.env.outside.run, progress)
        if created:
            project = compose.deploying(planned.desired, self.engine)
            self.env.outside.run(compose.remove(project, created))
        return Undone(sorted([*targets, *created]), states)

    def services(
        self, states: Sequence[DesiredState], releases: Sequence[Release]
    ) -> dict[str, ServiceRelease]:
        """What runs here, as a release records it: each service's configuration that of the
        first of `states` its containers carry, else the one `releases` recorded for its image."""
        running = running_services(self.observe(), states, self.env.secrets)
        return configured(running, releases, self.host)

    def snapshot(
        self,
        planned: HostPlan,
        states: Sequence[DesiredState],
        releases: Sequence[Release],
        redact: Redactor,
    ) -> tuple[dict[str, ServiceRelease], list[HostRelease]]:
        return self.services(states, releases), []

    def release_state(self, release: Release, redact: Redactor) -> DesiredState:
        return self.restored(self.resolve(redact), release.services_on(self.host))

    def restored(
        self, current: DesiredState, recorded: Mapping[str, ServiceRelease]
    ) -> DesiredState:
        """`current` with the recorded services its compose files still have put back."""
        targets = {name: s for name, s in recorded.items() if name in current.services}
        return restore_state(current, targets, self.env.secrets, self.engine, self.env.outside.run)

    # Reading
    def diff(self, redact: Redactor) -> Diff:
        with self.resolving(redact) as desired:
            planned = self.plan(desired, redact, Check.WARN)
        return Diff(self.env.name, self.env.project, (HostOutcome(self.host, planned.plan),))

    def status(self, redact: Redactor) -> Statuses:
        with self.resolving(redact) as desired:
            running = self.status_of(desired)
        return Statuses(self.env.name, self.env.project, (HostOutcome(self.host, running),))

    def running(self, redact: Redactor) -> Statuses:
        return self.status(redact)

    def status_of(self, desired: Callable[[], DesiredState]) -> EnvironmentStatus:
        """What runs here against `desired()`, with the releases that put it there."""
        observed = self.observe()
        return status(self.here(desired(), observed), observed, history(self.store(reading=True)))

    def logs(
        self,
        services: Sequence[str],
        follow: bool,
        since: str | None,
        tail: int | None,
        redact: Redactor,
    ) -> Iterator[HostOutcome[str]]:
        return stream_by_host([(self.host, self.log_command(services, follow, since, tail))])

    def log_command(
        self, services: Sequence[str], follow: bool, since: str | None, tail: int | None
    ) -> Command:
        return compose.logs(self.project(), services, follow, since, tail)

    def render(self, desired: DesiredState) -> ComposeRendering:
        project = compose.deploying(self.with_files(desired), self.engine)
        command = compose.up(project, [], remove_orphans=True)
        return ComposeRendering(command, desired.model, self.env.spec.is_secret)

    # Host after host
    def restart(
        self, desired: DesiredState, services: Sequence[str], progress: Progress
    ) -> Restarted:
        restarted = f"`docker compose restart` was not cut short: {', '.join(services)} restarted"
        with Interrupted.leaving(restarted):
            self.env.outside.run(compose.restart(self.project(), services))
        with Interrupted.leaving(f"{restarted}, not waited for until ready"):
            return Restarted(wait_ready(self.client, desired, list(services), progress))

    def teardown(self, volumes: bool, several: bool) -> Teardown:
        name = self.env.name
        where = f" on {self.host}" if several else ""
        if not volumes:
            return Teardown(f"Stop and remove the containers and networks of {name}?", [])
        doomed = self.project_volumes()
        listed = ", ".join(doomed) or "none found"
        return Teardown(
            f"Stop and remove the containers and networks of {name}{where} "
            f"and DELETE its volumes ({listed})? Their data cannot be brought back.",
            [f"volume {v} removed" for v in doomed],
            doomed,
        )

    def take_down(self, teardown: Teardown) -> TakenDown:
        volumes = teardown.volumes is not None
        what = "containers, networks and volumes" if volumes else "containers and networks"
        outcome = (
            f"`docker compose down` was not cut short: the {what} of {self.env.name} are removed"
        )
        with Interrupted.leaving(outcome):
            self.env.outside.run(compose.down(self.project(), volumes))
        kept = None if teardown.volumes is None else tuple(teardown.volumes)
        return TakenDown(self.env.name, kept)

    def project_volumes(self) -> list[str]:
        """The volumes `docker compose down --volumes` removes: the project's named volumes and
        the anonymous ones its containers use."""
        client, project = self.client, self.env.project
        named = {v["Name"] for v in client.volumes([f"{PROJECT_LABEL}={project}"])}
        anonymous = {
            mount["Name"]
            for container in client.project_containers(project)
            for mount in container.get("Mounts") or []
            if mount.get("Type") == "volume" and _ANONYMOUS_VOLUME.match(mount.get("Name") or "")
        }
        return sorted(named | anonymous)

    # Image hygiene
    def prunable(self, desired: DesiredState, aggressive: bool) -> Prunable:
        """Dangling images; with `aggressive`, also this environment's unused ones. Never an
        image a container uses, nor one of the last `deploy.keep_releases` releases of any
        environment on the engine (they share it, and images), nor one the spec names."""
        client, spec = self.client, self.env.spec
        every_project = records_of_every_project(client, "release")
        recorded = newest_first(every_project.get(spec.project, []))
        local = client.images()
        local_ids = image_ids(local)
        keep = kept_by_releases(every_project, spec.keep_releases)
        keep |= {local_ids.get(lookup_key(s.image), "") for s in desired.services.values()}
        repositories = {repository_of(s.image) for s in desired.services.values()}
        repositories |= {repository_of(s.image) for r in recorded for s in r.services.values()}
        images = client.dangling_images() + (local if aggressive else [])
        unique = list({i["Id"]: i for i in images}.values())
        found = prunable(unique, client.images_in_use(), keep, repositories, aggressive)
        return Prunable(tuple(found))

    def remove_images(self, candidates: Sequence[Candidate], stopped: str) -> dict[str, int]:
        return {"": remove_images(self.client, candidates, stopped)}

    def running_images(self) -> dict[str, str]:
        return {n: s.image_id for n, s in running_services(self.observe()).items()}
