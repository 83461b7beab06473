"""`deploy promote SOURCE TARGET`: pin in TARGET's spec the exact images SOURCE runs, editing
only those lines; nothing is deployed (`deploy diff TARGET`, then `deploy TARGET`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from deployer.commands.session import Interaction, confirmed
from deployer.core.errors import DeployerError, PromotionRefusedError
from deployer.core.reference import ImageReference, is_image_id
from deployer.core.results import SUCCESS, PinnedService, Promotion
from deployer.core.spec_edit import pin_images
from deployer.core.status import EnvironmentStatus, ServiceStatus
from deployer.core.variables import Redactor
from deployer.state import audit
from deployer.targets.base import PROMOTE, Target


def promotion(
    source: Target[Any, Any], target: Target[Any, Any], services: Sequence[str], redact: Redactor
) -> Promotion:
    """The exact images SOURCE runs, pinned in TARGET's spec text (nothing written yet).
    Refused unless SOURCE is in sync and healthy, TARGET declares each service, and both name
    the same repository for it."""
    source.capabilities.require(PROMOTE)
    target.capabilities.require(PROMOTE)
    source_name, target_name = source.env.name, target.env.name

    def refused(reason: str) -> PromotionRefusedError:
        return PromotionRefusedError(source_name, target_name, reason)

    if source.env.spec.path == target.env.spec.path:
        raise refused("they are the same environment")
    statuses = _source_statuses(source, redact, refused)
    running = statuses[0][1]
    by_name = {s.service: s for s in running.services}
    names = sorted(set(services)) or sorted(by_name)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise refused(f"{source_name} has no service {', '.join(unknown)}")
    declared = target.resolve(redact).services
    undeclared = [n for n in names if n not in declared]
    if undeclared:
        raise refused(
            f"{target_name} does not declare {', '.join(undeclared)} (its compose files have no such service)"
        )
    pinned = tuple(_pinned(refused, source_name, by_name[n], declared[n].image) for n in names)
    # Several hosts: each must run exactly what the first runs, or there is no one image to pin.
    for host, other in statuses[1:]:
        theirs = {s.service: s for s in other.services}
        for chosen in pinned:
            image = declared[chosen.service].image
            again = _pinned(refused, source_name, theirs[chosen.service], image).pinned
            if again != chosen.pinned:
                raise refused(
                    f"{chosen.service} runs {chosen.pinned} on {statuses[0][0]} "
                    f"but {again} on {host}"
                )
    numbers = [p.source_release for p in pinned if p.source_release is not None]
    source_release = max(numbers, default=None)
    path = target.env.spec.path
    original = path.read_text(encoding="utf-8")
    promoted_from: dict[str, str | int] = {"environment": source_name}
    if source_release is not None:
        promoted_from["release"] = source_release
    edited = pin_images(original, str(path), {p.service: p.pinned for p in pinned}, promoted_from)
    return Promotion(source_name, target_name, path, source_release, pinned, original, edited)


def _source_statuses(
    source: Target[Any, Any], redact: Redactor, refused: Callable[[str], DeployerError]
) -> list[tuple[str, EnvironmentStatus]]:
    """What SOURCE runs on each of its hosts; refused unless every host is read, in sync and
    healthy."""
    name = source.env.name
    statuses = []
    for outcome in source.running(redact).outcomes:
        where = f" on {outcome.host}" if len(source.hosts) > 1 else ""
        if outcome.value is None:
            assert outcome.error is not None
            raise refused(f"{name} cannot be read{where}: {outcome.error.message}")
        running = outcome.value
        if not running.in_sync:
            raise refused(
                f"{name} is not in sync with its spec{where} (`deploy diff {name}` shows how)"
            )
        if not running.healthy:
            unhealthy = ", ".join(s.service for s in running.services if not s.healthy)
            raise refused(f"{name} is not healthy{where}: {unhealthy} (see `deploy status {name}`)")
        statuses.append((outcome.host, running))
    return statuses


def _pinned(
    refused: Callable[[str], DeployerError],
    source_name: str,
    running: ServiceStatus,
    target_image: str,
) -> PinnedService:
    """The reference that pins the image `running` runs, in the repository it was deployed from."""
    if not running.containers:
        raise refused(f"{running.service} runs no container on {source_name}")
    container = running.containers[0]
    if is_image_id(container.image) or is_image_id(container.pinned):
        raise refused(
            f"the image of {running.service} on {source_name} has no registry digest "
            f"({container.image}): push it to its registry and deploy {source_name} from there"
        )
    source_ref = ImageReference.parse(container.image)
    target_repository = ImageReference.parse(target_image).repository
    if source_ref.repository != target_repository:
        raise refused(
            f"{running.service} comes from {source_ref.repository} on {source_name} "
            f"but from {target_repository} on the target"
        )
    digest = ImageReference.parse(container.pinned).digest
    return PinnedService(
        running.service,
        target_image,
        str(replace(source_ref, digest=digest)),
        container.release,
    )


def promote(promoted: Promotion, target: Target[Any, Any], ui: Interaction) -> None:
    """Write the pinned references into TARGET's spec, after a question where it asks; the
    edit is recorded in TARGET's audit trail. Nothing is deployed."""
    if not promoted.changes:
        return
    path = promoted.spec
    # Everything the write needs is checked first: the audit entry goes to TARGET's engines.
    try:
        store = target.store()
        store.clock()
    except DeployerError as e:
        raise DeployerError(f"{e.message}; nothing written") from e
    confirmed(target, ui, f"Pin {len(promoted.services)} image(s) in {path.name}?")
    if path.read_text(encoding="utf-8") != promoted.original:
        raise DeployerError(f"{path.name} changed while promote ran; nothing written, run it again")
    # Written whole or not at all: a reader never sees half a spec.
    temporary = path.with_name(f".{path.name}.promote")
    try:
        temporary.write_text(promoted.edited, encoding="utf-8")
        os.chmod(temporary, path.stat().st_mode)
        os.replace(temporary, path)
    except OSError as e:
        temporary.unlink(missing_ok=True)
        raise DeployerError(f"cannot write {path}: {e.strerror}; nothing written") from e
    release = f" release {promoted.source_release}" if promoted.source_release else ""
    audit.write(
        store,
        target.env.outside.actor(),
        target.env.name,
        f"promote from {promoted.source}{release}",
        SUCCESS,
        ui.redact,
        [f"{p.service}: {p.before} -> {p.pinned}" for p in promoted.services],
    )
