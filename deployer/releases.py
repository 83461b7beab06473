"""Releases: what each deploy put on the engine, so that any operator can see and go back to it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from deployer.engine import split_tag
from deployer.errors import DeployerError
from deployer.observed import ObservedState
from deployer.plan import Plan
from deployer.spec import ServiceOverride, Spec
from deployer.state import Actor, StateStore, iso, now
from deployer.variables import Variables

SUCCESS, FAILED, ROLLED_BACK, INTERRUPTED = "success", "failed", "rolled back", "interrupted"


@dataclass(frozen=True)
class ServiceRelease:
    image: str  # the reference the service was deployed with
    image_id: str
    pinned: str  # `repo@sha256:...` where the engine knows one, else the image ID

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ServiceRelease:
        return cls(str(record["image"]), str(record["image_id"]), str(record["pinned"]))


@dataclass(frozen=True)
class Release:
    number: int
    time: str
    performer: str
    host: str
    command: str
    spec_hash: str
    variables_hash: str
    result: str
    services: Mapping[str, ServiceRelease]
    changes: Sequence[str] = field(default_factory=list)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Release:
        services = {n: ServiceRelease.from_record(s) for n, s in record.get("services", {}).items()}
        fields = {
            k: record.get(k, "")
            for k in (
                "time",
                "performer",
                "host",
                "command",
                "spec_hash",
                "variables_hash",
                "result",
            )
        }
        return cls(
            number=int(record["number"]),
            services=services,
            changes=list(record.get("changes", [])),
            **fields,
        )

    def record(self) -> dict[str, Any]:
        return asdict(self)


def history(store: StateStore) -> list[Release]:
    """Every release of the environment, newest first."""
    return newest_first(store.records("release"))


def newest_first(records: Iterable[Mapping[str, Any]]) -> list[Release]:
    """The readable releases among `records`, newest first."""
    releases = []
    for record in records:
        try:
            releases.append(Release.from_record(record))
        except (KeyError, TypeError, ValueError):
            continue
    return sorted(releases, key=lambda r: r.number, reverse=True)


def pinned_reference(image: str, image_id: str, digests: Mapping[str, Sequence[str]]) -> str:
    """The exact image: a digest of the same repository where there is one, else the ID."""
    repository, _ = split_tag(image)
    for digest in digests.get(image_id, []):
        if digest.split("@", 1)[0] == repository:
            return digest
    return image_id


def running_services(observed: ObservedState) -> dict[str, ServiceRelease]:
    """Per service, the image its first container runs."""
    services: dict[str, ServiceRelease] = {}
    for container in observed.containers:
        if container.service not in services:
            pinned = pinned_reference(container.image, container.image_id, observed.digests)
            services[container.service] = ServiceRelease(
                container.image, container.image_id, pinned
            )
    return services


def spec_hash(spec: Spec) -> str:
    return hashlib.sha256(spec.path.read_bytes()).hexdigest()[:16]


def variables_hash(variables: Variables) -> str:
    text = json.dumps(variables.values(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def change_lines(plan: Plan) -> list[str]:
    return [f"{c.service} {c.action}: {'; '.join(c.causes)}" for c in plan.changes]


def record(
    store: StateStore,
    actor: Actor,
    command: str,
    result: str,
    spec: Spec,
    variables: Variables,
    services: Mapping[str, ServiceRelease],
    plan: Plan,
) -> Release:
    """Add the next release. Callers hold the environment lock, so numbers do not collide."""
    number = max((r.number for r in history(store)), default=0) + 1
    release = Release(
        number=number,
        time=iso(now()),
        performer=actor.performer,
        host=actor.host,
        command=command,
        spec_hash=spec_hash(spec),
        variables_hash=variables_hash(variables),
        result=result,
        services=dict(services),
        changes=change_lines(plan),
    )
    store.add("release", f"{number:06d}", release.record())
    return release


def rollback_target(releases: Sequence[Release], number: int | None) -> Release:
    """Release `number`, or the last good release before the current (newest good) one."""
    if number is not None:
        for release in releases:
            if release.number == number:
                return release
        known = ", ".join(str(r.number) for r in releases) or "none"
        raise DeployerError(f"no release {number} (releases: {known})")
    good = [r for r in releases if r.result == SUCCESS]
    if len(good) < 2:
        raise DeployerError("no earlier good release to roll back to (see `deploy history`)")
    return good[1]


def pinned_spec(spec: Spec, images: Mapping[str, str]) -> Spec:
    """`spec` with the given services' images replaced by exact references."""
    services = dict(spec.services)
    for name, image in images.items():
        current = services.get(name, ServiceOverride())
        services[name] = replace(current, image=image, tag=None)
    return replace(spec, services=services)
