"""`deploy prune ENV [--aggressive] [--dry-run]`: image hygiene, host after host, where the
target keeps images of its own (its capabilities say where it does not)."""

from __future__ import annotations

from typing import Any

from deployer.commands.session import Interaction, confirmed, host_by_host, locked, recorded
from deployer.core.results import SUCCESS, ByHost, Pruned
from deployer.state import audit, retention
from deployer.targets.base import PRUNE, Place, Target


def prune(
    target: Target[Any, Any],
    ui: Interaction,
    aggressive: bool,
    dry_run: bool,
    lock_wait: float = 0.0,
) -> ByHost[Pruned]:
    """On one host after the other, each asking about its own images."""
    target.capabilities.require(PRUNE)
    return host_by_host(
        target,
        ui,
        None,
        lambda part, ui, several: _prune(part, ui, aggressive, dry_run, lock_wait, several),
    )


def _prune(
    part: Place[Any],
    ui: Interaction,
    aggressive: bool,
    dry_run: bool,
    lock_wait: float,
    several: bool,
) -> Pruned:
    """Remove dangling images; with `aggressive`, also this environment's unused images. Never
    an image a container uses, nor one of the last `deploy.keep_releases` releases of any
    environment on the engine; records beyond retention go too. A swarm's images are on each
    of its nodes: every node is read, and each candidate removed from its own."""
    name, spec = part.env.name, part.env.spec
    desired = part.resolve(ui.redact)
    with locked(part, "prune", lock_wait) as held:
        found = part.prunable(desired, aggressive)
        candidates = found.candidates
        if dry_run:
            return Pruned(candidates, True, 0, nodes=tuple((node, 0) for node in found.nodes))
        where = f" on {part.host}" if several else ""
        if candidates:
            engines = "the engines of the nodes" if found.nodes else "the engine"
            question = f"Remove {len(candidates)} image(s) from {engines} of {name}{where}?"
            confirmed(part, ui, question)
        running = part.running_images()

        def remove() -> Pruned:
            stopped = (
                f"stopped while removing images; `deploy prune {name} --dry-run` shows what is left"
            )
            freed = part.remove_images(candidates, stopped) if candidates else {}
            trimmed = retention.trim(held.store, spec.keep_history, running)
            nodes = tuple((node, freed.get(node, 0)) for node in found.nodes)
            return Pruned(candidates, False, sum(freed.values()), trimmed, nodes)

        command = "prune --aggressive" if aggressive else "prune"
        if not candidates:
            pruned = remove()
            if pruned.trimmed.lines():
                lines = pruned.trimmed.lines()
                audit.write(held.store, held.actor, name, command, SUCCESS, ui.redact, lines)
            return pruned
        removed = [
            f"{c.node + ': ' if c.node else ''}{c.image_id[7:19]} "
            f"{' '.join(c.references) or '(dangling)'}"
            for c in candidates
        ]
        with recorded(held, command, ui.redact, removed):
            return remove()
