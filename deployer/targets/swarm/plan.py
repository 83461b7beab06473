"""Stage 5 for the swarm target: what `docker stack deploy` of the stack file would change on
the swarm, and why; the same Plan and Change as the compose target's. Pure and deterministic.

Actions per service: adopt (made without deployer, by a plain `docker stack deploy`: its labels
are written, which replaces no task), create (not on the swarm), update (its spec differs: the
requested image, a top-level key of the converted service by its fingerprint, the replicas),
restart (files it bind-mounts changed on the nodes: a forced rolling update), signal (the same,
for a service that rereads them on a signal), converge (nothing to deploy, but the swarm has not
got there: tasks not all running, an update paused or rolled back), remove (a service of the
stack the file no longer declares: `--prune` removes it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from deployer.core.inputs import RELOAD_SIGNAL_LABEL, file_cause, reload_line
from deployer.core.observed import FILES_LABEL, ObservedService, ObservedStack
from deployer.core.plan import ADOPT, SIGNAL, Change, MovedTag, Plan, differing, image_change
from deployer.core.reference import ImageReference, is_image_id
from deployer.infra.registry import RegistryDigests
from deployer.targets.swarm.stack import (
    CONTENT_DIGEST_LENGTH,
    FILE_KINDS,
    StackFile,
    bind_digests,
    key_fingerprints,
    label_mapping,
    parse_files_label,
    service_fingerprint,
    without_fingerprint,
)

# A name of a file's content, after the name it is made from.
_CONTENT_NAME = re.compile(rf"_[0-9a-f]{{{CONTENT_DIGEST_LENGTH}}}")
ACTIONS = ("adopt", "create", "update", "restart", "signal", "converge", "remove")
RESTART = "restart"
_NOT_DEPLOYER = "not deployed by deployer (no fingerprint label)"
_FILES_FIRST_READ = (
    "the files it bind-mounts are compared from now on: their digests written in its label, "
    "which replaces no task"
)
_ADOPTED = (
    "made without deployer: deployer's labels are written, which replaces no task "
    "(Swarm replaces a task only where its spec differs from the stack file's)"
)
# UpdateStatus states that leave a service not as deployed (Swarm's own words). A rolled back
# service is back on its previous spec: in sync if that is what the spec declares.
_UNSETTLED = frozenset({"updating", "paused", "rollback_started", "rollback_paused"})
_ROLLED_BACK = "rollback_completed"


def plan(
    environment: str,
    stack: StackFile,
    observed: ObservedStack,
    registry: RegistryDigests | None = None,
) -> Plan:
    """`registry`: the digests the tags of `tags_to_check` point to in their registries now; a
    service pinned to another digest of its tag is updated to the new one (stack deploy
    resolves the tag again)."""
    registry = registry or RegistryDigests()
    declared: Mapping[str, Any] = stack.document.get("services") or {}
    moved = {m.service: m for m in moved_tags(stack, observed, registry)}
    changes: list[Change] = []
    for name, service in sorted(declared.items()):
        running = observed.services.get(name)
        if running is None:
            changes.append(Change(name, "create", ("not on the swarm",)))
            continue
        causes = _update_causes(stack, service, running, moved.get(name))
        if causes == [_NOT_DEPLOYER]:
            changes.append(Change(name, ADOPT, (_ADOPTED,)))
        elif causes:
            changes.append(Change(name, "update", tuple(causes)))
        # Where its spec is written anyway, so is the label of the files it reads.
        changes += [
            c for c in _file_changes(name, service, running) if not causes or c.action != ADOPT
        ]
        warnings = _convergence(running)
        if warnings:
            changes.append(Change(name, "converge", tuple(warnings)))
    for name in sorted(set(observed.services) - set(declared)):
        changes.append(Change(name, "remove", ("not in the spec: --prune removes it",)))
    changes.sort(key=lambda c: (c.service, ACTIONS.index(c.action)))
    unchecked = tuple(e.message for _, e in sorted(registry.failures.items()))
    return Plan(environment, observed.project, tuple(changes), tuple(moved.values()), unchecked)


def _pinned_by_tag(stack: StackFile, observed: ObservedStack) -> dict[str, tuple[str, str]]:
    """Per declared service that runs the tag it declares, pinned to a digest by stack deploy:
    that image and digest (a reference pinned by digest, or an image ID, has no tag to move)."""
    pinned = {}
    for name, service in sorted((stack.document.get("services") or {}).items()):
        running, image = observed.services.get(name), str(service.get("image"))
        if running is None or running.digest is None or running.requested_image != image:
            continue
        if is_image_id(image) or ImageReference.parse(image).digest:
            continue
        pinned[name] = (image, running.digest)
    return pinned


def tags_to_check(stack: StackFile, observed: ObservedStack) -> list[str]:
    """The images whose tag a service of the stack runs pinned to a digest, sorted."""
    return sorted({image for image, _ in _pinned_by_tag(stack, observed).values()})


def moved_tags(
    stack: StackFile, observed: ObservedStack, registry: RegistryDigests
) -> list[MovedTag]:
    """The services whose tag points to another digest in the registry than they run."""
    moved = []
    for name, (image, digest) in _pinned_by_tag(stack, observed).items():
        new = registry.digests.get(image)
        if new is not None and new != digest:
            moved.append(MovedTag(name, image, digest, new))
    return moved


def _update_causes(
    stack: StackFile, service: Mapping[str, Any], running: ObservedService, moved: MovedTag | None
) -> list[str]:
    deploy = service.get("deploy") or {}
    desired_fingerprint = service_fingerprint(service)
    causes = []
    image = str(service.get("image"))
    if running.requested_image != image:
        causes.append(f"image {image_change(running.requested_image, image)}")
    if moved is not None:
        causes.append(moved.cause)
    if running.fingerprint is None:
        causes.append(_NOT_DEPLOYER)
    elif running.fingerprint != desired_fingerprint:
        causes += _changed_keys(service, running)
    replicas = deploy.get("replicas", 1)
    if running.replicas is not None and running.replicas != replicas:
        causes.append(f"replicas {running.replicas} -> {replicas}")
    if not causes and running.fingerprint != desired_fingerprint:
        causes.append("configuration changed")  # written by another version of deployer
    causes += _file_causes(stack, service, running)
    if causes and running.update_state == _ROLLED_BACK:
        # It runs the spec it had before its last update: that update is still to make.
        causes.append(f"its last update was rolled back ({running.update_message})")
    return causes


def _file_changes(name: str, service: Mapping[str, Any], running: ObservedService) -> list[Change]:
    """A restart (or a signal) for the files the service bind-mounts that changed since its
    label was written; where it has no such label yet (deployed before they were read, or
    without engine.nodes), the label is written: what its tasks read is taken as it is."""
    old, new = parse_files_label(running.labels.get(FILES_LABEL)), bind_digests(service)
    if new is None:
        return []
    if old is None:
        return [Change(name, ADOPT, (_FILES_FIRST_READ,))]
    causes = tuple(
        file_cause(path, old.get(path), new.get(path), False) for path in differing(old, new)
    )
    if not causes:
        return []
    signal = label_mapping(service.get("labels") or {}).get(RELOAD_SIGNAL_LABEL)
    if signal and running.running == running.desired_tasks:
        return [Change(name, SIGNAL, (*causes, reload_line(signal)), signal=signal)]
    return [Change(name, RESTART, causes)]


def _file_causes(
    stack: StackFile, service: Mapping[str, Any], running: ObservedService
) -> list[str]:
    """The configs and secrets made from files that the service mounts under another name
    than their content's now: a file that changed is a new config or secret."""
    causes = []
    for path, name in sorted(stack.file_names(service).items()):
        base = name[: -CONTENT_DIGEST_LENGTH - 1]
        kind, _, key = path.partition(".")
        said = f"{FILE_KINDS[kind]} {key}: file {stack.files[path]}"
        if base in running.file_names:  # deployed before its name said its content
            causes.append(f"{said} mounted by its content's name now")
        elif name not in running.file_names and any(
            _CONTENT_NAME.fullmatch(mounted.removeprefix(base)) for mounted in running.file_names
        ):
            causes.append(f"{said} changed")
    return causes


def _changed_keys(service: Mapping[str, Any], running: ObservedService) -> list[str]:
    """The top-level keys whose fingerprints differ (the image is said above; the replicas
    are compared as they are)."""
    old = running.key_fingerprints
    if not old:
        return []
    new = key_fingerprints(without_fingerprint(service))
    causes = []
    for key in differing(old, new):
        if key != "image":
            verb = "added" if key not in old else "removed" if key not in new else "changed"
            causes.append(f"{key} {verb}")
    return causes


def _convergence(running: ObservedService) -> list[str]:
    warnings = []
    if running.update_state in _UNSETTLED:
        said = f": {running.update_message}" if running.update_message else ""
        warnings.append(f"update {running.update_state}{said}")
    if running.running < running.desired_tasks:
        warnings.append(f"{running.running}/{running.desired_tasks} tasks running")
        if running.last_error:
            warnings.append(f"last task error: {running.last_error}")
    return warnings
