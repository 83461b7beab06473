"""`deploy build ENV [SERVICE ...] [--push]`: build the images the spec deploys, where Compose
builds them (the host, the first host of several, a swarm's manager)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deployer.commands.session import Interaction, confirmed
from deployer.compose import build as build_stage
from deployer.core.results import Built
from deployer.targets.base import Target


def build(
    target: Target[Any, Any], ui: Interaction, services: Sequence[str], push: bool
) -> list[Built]:
    """Build the services with a `build:` section (those named, or all), tagged as the spec
    resolves their images; with `push`, push them where the registry does not hold the tag."""
    desired = target.resolve(ui.redact)
    names = build_stage.buildable(desired, services)
    images = [desired.services[name].image for name in names]
    # Credentials and confirmation come before a build that could take minutes.
    login = target.env.login(images, ui.redact) if push else None
    if push:
        confirmed(target, ui, f"Build and push {', '.join(images)}?")
    run = target.env.outside.run
    built = build_stage.build(desired, names, target.client, run, ui.progress)
    return build_stage.push(built, target.client, login, ui.progress) if push else built
