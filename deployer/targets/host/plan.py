"""Stage 5 for the compose target: what must change on one engine, and why.
`plan(desired, observed)` is pure and deterministic."""

from __future__ import annotations

from deployer.core.desired import DesiredService, DesiredState, image_part, with_image
from deployer.core.observed import ObservedContainer, ObservedState
from deployer.core.plan import (
    ACTIONS,
    REPLACE,
    RUNNING,
    Change,
    MovedTag,
    Plan,
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
        change = _service_change(service, observed, moved.get(name))
        if change:
            changes.append(change)
    for orphan in sorted({c.service for c in observed.containers} - set(desired.services)):
        changes.append(Change(orphan, "remove", ("orphan: not in the spec",)))
    changes.sort(key=lambda c: (c.service, ACTIONS.index(c.action)))
    unchecked = tuple(e.message for _, e in sorted(registry.failures.items()))
    return Plan(
        desired.environment, observed.project, tuple(changes), tuple(moved.values()), unchecked
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


def _service_change(
    service: DesiredService, observed: ObservedState, moved: MovedTag | None = None
) -> Change | None:
    containers = observed.of_service(service.name)
    if not containers:
        if service.replicas == 0:
            return None
        return Change(service.name, "create", ("no container",))
    local_id = observed.image_id(service.image)
    # The tag here is not the registry's: it is pulled over first, and then names the image of
    # the registry's digest (known here when that image is).
    pulled_over = moved.cause if moved is not None and moved.kind != RUNNING else None
    if moved is not None and pulled_over:
        local_id = observed.image_id(ImageReference.parse(service.image).pinned(moved.new))
    recreate: dict[str, None] = {}  # ordered set of causes
    for container in containers:
        for cause in _recreate_causes(service, container, local_id, pulled_over):
            recreate[cause] = None
    if moved is not None and not pulled_over:
        recreate[moved.cause] = None
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
    if leftovers:
        return Change(service.name, REPLACE, (*leftovers, *rescale, *recreate))
    if recreate:
        return Change(service.name, "recreate", tuple(recreate))
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


def _recreate_causes(
    service: DesiredService,
    container: ObservedContainer,
    local_id: str | None,
    pulled_over: str | None = None,
) -> list[str]:
    if container.fingerprint is None:
        return ["not deployed by deployer (no fingerprint label)"]
    causes = []
    old, new = container.fingerprint, service.fingerprint
    for part in sorted(set(old) | set(new)):
        if old.get(part) == new.get(part):
            continue
        if part == "image":
            # Another reference to the image it runs (`repo:tag`, now pinned by digest): the
            # same image ID is the same image.
            if local_id is None or container.image_id != local_id:
                causes.append(f"image {image_change(container.image, service.image)}")
            continue
        kind, _, name = part.partition(".")
        if kind == "environment" and part in service.secret_parts:
            kind = "secret"
        label = f"{kind} {name}" if name else kind
        verb = "added" if part not in old else "removed" if part not in new else "changed"
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
    """`desired` as `up` gets it. A service the plan does not recreate, whose containers run the
    image the spec names under another reference (`repo:tag`, now `repo:tag@sha256:...`), keeps
    the reference and fingerprint its containers were made with: Compose hashes the reference,
    and would recreate them whenever it converges the service (as another one's dependency, or
    with every service when orphans are removed)."""
    renewed = {c.service for c in the_plan.changes if c.action in ("create", "recreate", REPLACE)}
    for name, service in sorted(desired.services.items()):
        made = _made_with(service, observed.of_service(name))
        if name not in renewed and made is not None:
            desired = with_image(desired, name, made.image, made.fingerprint or {})
    return desired


def _made_with(
    service: DesiredService, containers: list[ObservedContainer]
) -> ObservedContainer | None:
    """The container whose reference and fingerprint the service's containers share, where
    they differ from the spec's by the reference alone."""
    if not containers:
        return None
    first = containers[0]
    old, new = first.fingerprint or {}, service.fingerprint
    if any(c.fingerprint != old or c.image != first.image for c in containers):
        return None
    differing = {part for part in set(old) | set(new) if old.get(part) != new.get(part)}
    # The reference as the containers' fingerprint hashed it: Compose's hash has that one.
    if differing != {"image"} or old["image"] != image_part(first.image):
        return None
    return first
