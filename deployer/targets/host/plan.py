"""Stage 5 for the compose target: what must change on one engine, and why.
`plan(desired, observed)` is pure and deterministic."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from deployer.core.desired import DesiredService, DesiredState, image_part, with_image
from deployer.core.inputs import FILE_PART, file_cause, reload_line
from deployer.core.observed import ObservedContainer, ObservedState
from deployer.core.plan import (
    ACTIONS,
    ADOPT,
    REPLACE,
    RUNNING,
    SIGNAL,
    Change,
    MovedTag,
    Plan,
    Roll,
    differing,
    image_change,
)
from deployer.core.reference import ImageReference, short_id
from deployer.infra.registry import RegistryDigests
from deployer.targets.host.registry import foreign_tags, moved_tags, repository_digest


def plan(
    desired: DesiredState, observed: ObservedState, registry: RegistryDigests | None = None
) -> Plan:
    """`registry`: the digests the services' tags point to in their registries now (registry.py);
    a running container whose tag moved there is recreated on the new digest."""
    registry = registry or RegistryDigests()
    moved = {m.service: m for m in moved_tags(desired, observed, registry)}
    moved.update((m.service, m) for m in foreign_tags(desired, observed, registry, set(moved)))
    changes: list[Change] = []
    pulled: set[str] = set()
    for name, service in sorted(desired.services.items()):
        pull_cause = _pull_cause(service, observed, moved.get(name))
        if pull_cause and service.image not in pulled:
            pulled.add(service.image)
            changes.append(Change(name, "pull", (pull_cause,), service.image))
        changes += _service_changes(
            service, observed, moved.get(name), desired.compose_hashes.get(name)
        )
    for orphan in sorted({c.service for c in observed.containers} - set(desired.services)):
        changes.append(Change(orphan, "remove", ("orphan: not in the spec",)))
    changes.sort(key=lambda c: (c.service, ACTIONS.index(c.action)))
    unchecked = tuple(e.message for _, e in sorted(registry.failures.items()))
    return Plan(
        desired.environment,
        observed.project,
        tuple(changes),
        tuple(moved.values()),
        unchecked,
        desired.notes,
    )


def _pull_cause(
    service: DesiredService, observed: ObservedState, moved: MovedTag | None
) -> str | None:
    local_id = observed.image_id(service.image)
    if local_id is None:
        return f"image {service.image} not present locally"
    repository = ImageReference.parse(service.image).repository if moved else ""
    if moved and repository_digest(observed, local_id, repository) != moved.new:
        return moved.cause
    return None


def _service_changes(
    service: DesiredService,
    observed: ObservedState,
    moved: MovedTag | None = None,
    compose_hash: str | None = None,
) -> list[Change]:
    containers = observed.of_service(service.name)
    if not containers:
        if service.replicas == 0:
            return []
        return [Change(service.name, "create", ("no container",))]
    local_id = observed.image_id(service.image)
    # The tag here is not the registry's: it is pulled over first, and then names the image of
    # the registry's digest (known here when that image is).
    pulled_over = moved.cause if moved is not None and moved.kind != RUNNING else None
    if moved is not None and pulled_over:
        local_id = observed.image_id(ImageReference.parse(service.image).pinned(moved.new))
    if any(c.fingerprint is None for c in containers):
        adopted = _adopted(service, containers, local_id, compose_hash)
    else:
        adopted = _files_first_read(service, containers)
    if adopted is not None:  # from now on known to run the service as declared
        containers = [replace(c, fingerprint=_adopting(c, service)) for c in containers]
    # Under a moved tag, containers made from the registry's new digest (by an update cut short)
    # run what is declared.
    repository = ImageReference.parse(service.image).repository if moved else ""
    current = {
        c.id
        for c in containers
        if moved is not None and repository_digest(observed, c.image_id, repository) == moved.new
    }
    change = _service_change(
        service, containers, local_id, moved, pulled_over, compose_hash, current
    )
    return [c for c in (adopted, change) if c is not None]


def _service_change(
    service: DesiredService,
    containers: list[ObservedContainer],
    local_id: str | None,
    moved: MovedTag | None,
    pulled_over: str | None,
    compose_hash: str | None,
    current: set[str],
) -> Change | None:
    """`current`: under a moved tag, the containers that run the registry's new digest."""
    recreate: dict[str, None] = {}  # ordered set of causes
    stale = []  # the containers that do not run the service as declared
    for container in containers:
        causes = _recreate_causes(service, container, local_id, pulled_over, compose_hash)
        if causes:
            stale.append(container)
        for cause in causes:
            recreate[cause] = None
    if moved is not None and not pulled_over:
        recreate[moved.cause] = None
        stale = [c for c in containers if c.id not in current]
    # An engine restarted while a deploy started it may keep its task (a start then fails with
    # "task ... already exists" or "failed to start shim: ... file exists"): a new one replaces it.
    leftovers = [
        f"{c.name} created, never started (a deploy cut short or failed)"
        for c in containers
        if c.never_started
    ]
    rescale = (
        []
        if len(containers) == service.replicas
        else [f"replicas {len(containers)} -> {service.replicas}"]
    )
    start_first = service.order.start_first
    if leftovers and not start_first:
        return Change(service.name, REPLACE, (*leftovers, *rescale, *recreate))
    signal = service.reload_signal
    if signal and recreate and _reloads(service, containers, local_id) and not (moved or rescale):
        return Change(service.name, SIGNAL, (*recreate, reload_line(signal)), signal=signal)
    if recreate or leftovers:  # leftovers here: of a start-first service, discarded
        roll = _roll(service, containers, stale) if start_first else None
        # A start-first update cut short leaves new containers beside the old ones: their count
        # is no replicas change, and the roll says what becomes of each.
        cut_short = start_first and (leftovers or len(stale) < len(containers))
        why = (*leftovers, *recreate, *([] if cut_short else rescale))
        return Change(service.name, "recreate", why, order=service.order, roll=roll)
    # A one-shot container (a migration) that exited 0 has done its work: nothing to start.
    causes = [
        f"{c.name} {c.status.lower()}"
        for c in containers
        if c.state != "running" and not c.done(service.restart)
    ]
    if rescale:
        return Change(service.name, "scale", (*causes, *rescale))
    if len(causes) == len(containers):  # e.g. only an exited container
        causes = [f"no running container: {'; '.join(causes)}"]
    return Change(service.name, "start", tuple(causes)) if causes else None


def _roll(
    service: DesiredService, containers: list[ObservedContainer], stale: list[ObservedContainer]
) -> Roll:
    """The start-first update of a service: running containers that run it as declared already
    (started by an update cut short; ready or not, they are waited for as new ones would be)
    are kept, up to its replicas; new ones make up the rest."""
    kept = [c for c in containers if c not in stale and c.state == "running"][: service.replicas]
    old = [c for c in containers if c not in kept]
    retire = tuple(c.name for c in old if c.state == "running")
    discard = tuple(c.name for c in old if c.state != "running")
    return Roll(len(retire) + service.replicas, retire, discard)


def _adopted(
    service: DesiredService,
    containers: list[ObservedContainer],
    local_id: str | None,
    compose_hash: str | None,
) -> Change | None:
    """Containers made by plain Compose that run exactly as declared (Compose's own hash of
    their configuration, the image the tag names here): adopted as they are, not recreated."""
    if compose_hash is None or local_id is None:
        return None
    if all(
        c.fingerprint is not None or (c.config_hash == compose_hash and c.image_id == local_id)
        for c in containers
    ):
        return Change(
            service.name,
            ADOPT,
            (
                f"made without deployer, runs as declared (Compose's config hash {compose_hash[:12]})",
            ),
        )
    return None


def _files_first_read(
    service: DesiredService, containers: list[ObservedContainer]
) -> Change | None:
    """Containers made by a deployer that did not compare the files services read: their
    fingerprints have no file part, and those are all that differ. What they read is taken as
    it is (remembered), not a cause to restart them; a new mount changes `volumes` too."""
    if not any(p.startswith(FILE_PART) for p in service.fingerprint):
        return None
    for container in containers:
        old = container.fingerprint or {}
        parts = differing(old, service.fingerprint)
        if any(p.startswith(FILE_PART) for p in old) or not parts:
            return None
        if not all(p.startswith(FILE_PART) for p in parts):
            return None
    cause = (
        "made before deployer compared the files services read: what they read is taken as it is"
    )
    return Change(service.name, ADOPT, (cause,))


def _adopting(container: ObservedContainer, service: DesiredService) -> Mapping[str, str]:
    """The fingerprint of a container adopted: the service's where it had none; the files'
    parts added to one that has none of them."""
    if container.fingerprint is None:
        return service.fingerprint
    if any(p.startswith(FILE_PART) for p in container.fingerprint):
        return container.fingerprint
    files = {p: v for p, v in service.fingerprint.items() if p.startswith(FILE_PART)}
    return {**container.fingerprint, **files}


def _reloads(
    service: DesiredService, containers: list[ObservedContainer], local_id: str | None
) -> bool:
    """Whether the service rereads its files on a signal, all its containers run, and only files
    it reads changed."""
    if service.reload_signal is None:
        return False
    return all(
        c.fingerprint is not None
        and c.state == "running"
        and c.image_id == local_id
        and all(
            p.startswith(FILE_PART) or (p == "image" and c.image_id == local_id)
            for p in differing(c.fingerprint, service.fingerprint)
        )
        for c in containers
    )


def _recreate_causes(
    service: DesiredService,
    container: ObservedContainer,
    local_id: str | None,
    pulled_over: str | None = None,
    compose_hash: str | None = None,
) -> list[str]:
    if container.fingerprint is None:
        if container.config_hash is None or compose_hash is None:
            return ["not deployed by deployer (no fingerprint label)"]
        if container.config_hash != compose_hash:
            return [
                "made without deployer, not as declared (Compose's config hash "
                f"{container.config_hash[:12]}, declared {compose_hash[:12]})"
            ]
        named = short_id(local_id) if local_id else "not present here"
        return [
            f"made without deployer, runs image {short_id(container.image_id)}, "
            f"{service.image} is {named}"
        ]
    causes = []
    old, new = container.fingerprint, service.fingerprint
    for part in differing(old, new):
        if part == "image":
            # Another reference to the image it runs (`repo:tag`, now pinned by digest): the
            # same image ID is the same image.
            if local_id is None or container.image_id != local_id:
                causes.append(f"image {image_change(container.image, service.image)}")
            continue
        verb = "added" if part not in old else "removed" if part not in new else "changed"
        if part.startswith(FILE_PART):
            path, secret = part.removeprefix(FILE_PART), part in service.secret_parts
            causes.append(file_cause(path, old.get(part), new.get(part), secret))
            continue
        kind, _, name = part.partition(".")
        if kind == "environment" and part in service.secret_parts:
            kind = "secret"
        label = f"{kind} {name}" if name else kind
        causes.append(f"{label} {verb}")
    if causes or container.image_id == local_id:
        return causes
    if pulled_over:
        causes.append(pulled_over)
    elif local_id is None:
        # The tag is pulled first; Compose then recreates only if it names another image.
        causes.append(f"image {service.image} not present locally")
    elif container.image_id != local_id:
        causes.append(
            f"image {service.image} now points to {short_id(local_id)} (container runs {short_id(container.image_id)})"
        )
    return causes


def as_deployed(desired: DesiredState, observed: ObservedState, the_plan: Plan) -> DesiredState:
    """`desired` as `up` gets it. A service the plan does not recreate keeps what its containers
    were made with where that differs from the spec's but runs the same: the reference (the
    image the spec names under another, `repo:tag`, now `repo:tag@sha256:...`), the fingerprint
    of files it reread on a signal, no label at all where plain Compose made them (adopted).
    Compose hashes all of these, and would otherwise recreate the containers whenever it
    converges the service (as another one's dependency, or with every service when orphans are
    removed)."""
    renewed = {c.service for c in the_plan.changes if c.action in ("create", "recreate", REPLACE)}
    unlabelled = set(desired.unlabelled)
    for name, service in sorted(desired.services.items()):
        if name in renewed:
            continue
        made = _made_with(service, observed.of_service(name))
        if made is None:
            continue
        if made.made_with is None:
            unlabelled.add(name)
        else:
            desired = with_image(desired, name, made.image, made.made_with)
    return replace(desired, unlabelled=frozenset(unlabelled))


def _made_with(
    service: DesiredService, containers: list[ObservedContainer]
) -> ObservedContainer | None:
    """The container whose reference and label the service's containers share, where they
    differ from the spec's by what runs the same: the reference, the files' digests, or no
    label at all (made by plain Compose)."""
    if not containers:
        return None
    first = containers[0]
    if any(c.made_with != first.made_with or c.image != first.image for c in containers):
        return None
    if first.made_with is None:
        return first if first.config_hash is not None else None
    old, new = first.made_with, service.fingerprint
    parts = set(differing(old, new))
    if not parts or any(p != "image" and not p.startswith(FILE_PART) for p in parts):
        return None
    # The reference as the containers' fingerprint hashed it: Compose's hash has that one.
    if "image" in parts and old["image"] != image_part(first.image):
        return None
    return first
