"""Stage 5 for the compose target: what must change on one engine, and why.
`plan(desired, observed)` is pure and deterministic."""

from __future__ import annotations

from deployer.core.desired import DesiredService, DesiredState
from deployer.core.observed import ObservedContainer, ObservedState
from deployer.core.plan import ACTIONS, Change, MovedTag, Plan, image_change
from deployer.core.reference import ImageReference, short_id
from deployer.infra.registry import RegistryDigests
from deployer.targets.host.registry import moved_tags, repository_digest


def plan(
    desired: DesiredState, observed: ObservedState, registry: RegistryDigests | None = None
) -> Plan:
    """`registry`: the digests the services' tags point to in their registries now (registry.py);
    a running container whose tag moved there is recreated on the new digest."""
    registry = registry or RegistryDigests()
    moved = {m.service: m for m in moved_tags(desired, observed, registry)}
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
    recreate: dict[str, None] = {}  # ordered set of causes
    for container in containers:
        for cause in _recreate_causes(service, container, local_id):
            recreate[cause] = None
    if moved is not None:
        recreate[moved.cause] = None
    if recreate:
        return Change(service.name, "recreate", tuple(recreate))
    # A one-shot container (a migration) that exited 0 has done its work: nothing to start.
    causes = [
        f"{c.name} {c.status.lower()}"
        for c in containers
        if c.state != "running" and not c.done(service.restart)
    ]
    if len(containers) != service.replicas:
        causes.append(f"replicas {len(containers)} -> {service.replicas}")
        return Change(service.name, "scale", tuple(causes))
    if len(causes) == len(containers):  # e.g. a recreate cut short: only a `Created` container
        causes = [f"no running container: {'; '.join(causes)}"]
    return Change(service.name, "start", tuple(causes)) if causes else None


def _recreate_causes(
    service: DesiredService, container: ObservedContainer, local_id: str | None
) -> list[str]:
    if container.fingerprint is None:
        return ["not deployed by deployer (no fingerprint label)"]
    causes = []
    old, new = container.fingerprint, service.fingerprint
    for part in sorted(set(old) | set(new)):
        if old.get(part) == new.get(part):
            continue
        if part == "image":
            causes.append(f"image {image_change(container.image, service.image)}")
            continue
        kind, _, name = part.partition(".")
        if kind == "environment" and part in service.secret_parts:
            kind = "secret"
        label = f"{kind} {name}" if name else kind
        verb = "added" if part not in old else "removed" if part not in new else "changed"
        causes.append(f"{label} {verb}")
    if causes:
        return causes
    if local_id is None:
        # The tag is pulled first; Compose then recreates only if it names another image.
        causes.append(f"image {service.image} not present locally")
    elif container.image_id != local_id:
        causes.append(
            f"image {service.image} now points to {short_id(local_id)} (container runs {short_id(container.image_id)})"
        )
    return causes
