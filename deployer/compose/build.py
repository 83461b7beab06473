"""Before the deploy: build the services that have a `build:` section with the real
`docker compose build`, tagged as the spec resolves their images, and push them with the spec's
registry credentials. A tag the registry holds already is never moved: the same content again is
no push at all, other content is refused before anything is pushed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from deployer.compose import project as compose
from deployer.core.command import Runner
from deployer.core.desired import DesiredState
from deployer.core.errors import BuildError, CommandFailedError, DeployerError, TagTakenError
from deployer.core.progress import Progress
from deployer.core.reference import ImageReference, digest_in, short_id
from deployer.core.results import Built
from deployer.infra.engine import EngineClient
from deployer.infra.registry import Login

BUILD_LOG_LINES = 15


def buildable(desired: DesiredState, names: Sequence[str]) -> list[str]:
    """The services to build: those named (each must have a `build:` section), or all that
    have one, sorted."""
    services = desired.model.get("services", {})
    with_build = sorted(name for name, service in services.items() if service.get("build"))
    unknown = sorted(set(names) - set(services))
    if unknown:
        raise DeployerError(
            f"no service {', '.join(unknown)} in {desired.environment} "
            f"(services: {', '.join(sorted(services))})"
        )
    without = sorted(set(names) - set(with_build))
    if without:
        raise DeployerError(
            f"{', '.join(without)} in {desired.environment}: no `build:` section in the compose "
            f"files, nothing to build (services with one: {', '.join(with_build) or 'none'})"
        )
    if not with_build:
        raise DeployerError(f"no service of {desired.environment} has a `build:` section")
    return sorted(set(names)) if names else with_build


def build(
    desired: DesiredState,
    services: Sequence[str],
    client: EngineClient,
    run: Runner,
    progress: Progress,
) -> list[Built]:
    """Build each service in turn with the deploy's project (variables, overrides) on the engine
    `client` reaches, so that the image gets the tag the deploy will run."""
    project = compose.deploying(desired, client.engine)
    built = []
    for name in services:
        image = desired.services[name].image
        before = client.local_image(image)
        progress.update(name, f"{name}: building {image}")
        try:
            run(compose.build(project, [name]))
        except CommandFailedError as e:
            raise BuildError(name, image, e.output.strip().splitlines()[-BUILD_LOG_LINES:]) from e
        found = client.local_image(image)
        if found is None:
            raise DeployerError(f"the build of {name} made no image {image}")
        progress.done(name, f"{name}: built {image} ({short_id(found['Id'])})")
        before_id = str(before["Id"]) if before else None
        built.append(Built(name, image, str(found["Id"]), before=before_id))
    return built


def check_tag(built: Built, found: Mapping[str, Any], registry_digest: str | None) -> Built:
    """What pushing `built` would do to its tag: None in the registry, push; the same image there
    already, nothing (returned as already there); another image there, refused."""
    if registry_digest is None:
        return built
    reference = ImageReference.parse(built.image)
    if digest_in(found.get("RepoDigests") or [], reference.repository) == registry_digest:
        return replace(built, pushed=registry_digest, already_there=True)
    raise TagTakenError(built.image, reference.tag or "latest", registry_digest, built.image_id)


def _tag_put_back(refused: TagTakenError, built: Built, client: EngineClient) -> TagTakenError:
    """The local tag back on the image it named before the build (a deploy then runs what it
    ran); a tag that named none stays on the image built, and the refusal says so."""
    if built.before is None:
        left = f"the local tag {refused.tag} now names the image built, not the registry's"
    else:
        client.tag(built.before, built.image)
        left = f"the local tag is left on {built.before}"
    return TagTakenError(refused.image, refused.tag, refused.registry_digest, refused.built, left)


def push(
    built: Sequence[Built], client: EngineClient, login: Login | None, progress: Progress
) -> list[Built]:
    """Check every tag first, then push those the registry does not hold: one refused tag
    pushes nothing, and its local tag goes back to the image it named before the build."""
    checked, refusals = [], []
    for image in built:
        auth = login.auth_for(image.image) if login else None
        found = client.local_image(image.image) or {}
        try:
            checked.append(check_tag(image, found, client.registry_digest(image.image, auth)))
        except TagTakenError as refused:
            refusals.append(_tag_put_back(refused, image, client))
    if refusals:
        raise refusals[0]
    pushed = []
    for image in checked:
        if image.already_there:
            progress.done(
                image.service, f"{image.service}: {image.image} is in the registry already"
            )
            pushed.append(image)
            continue
        auth = login.auth_for(image.image) if login else None
        digest = ""
        progress.update(image.service, f"{image.service}: pushing {image.image}")
        for event in client.push(image.image, auth):
            digest = str((event.get("aux") or {}).get("Digest") or digest)
            if event.get("status") and event.get("id"):
                progress.update(
                    image.service, f"{image.service}: {event['id']} {str(event['status']).lower()}"
                )
        progress.done(image.service, f"{image.service}: pushed {image.image} ({digest})")
        pushed.append(Built(image.service, image.image, image.image_id, digest))
    return pushed
