"""Releases: what each deploy put on the engine, so that any operator can see and go back to it.

A release records per service the exact image and the resolved configuration its containers run,
secret values by reference; going back to it restores both (see docs/state.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from deployer.core.errors import DeployerError
from deployer.core.results import SUCCESS
from deployer.core.spec import Spec
from deployer.core.variables import MASK, MIN_REDACTED_LENGTH, SecretPolicy, Variables
from deployer.state.store import Actor, Store, iso, now


@dataclass(frozen=True)
class ServiceRelease:
    image: str  # the reference the service was deployed with
    image_id: str
    pinned: str  # `repo@sha256:...` where the engine knows one, else the image ID
    # The service as `docker compose config` resolved it (deployer's overrides applied), secret
    # values as `${VARIABLE}`; None when the configuration its containers run is not known.
    config: Mapping[str, Any] | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ServiceRelease:
        return cls(
            str(record["image"]),
            str(record["image_id"]),
            str(record["pinned"]),
            _mapping_or_none(record.get("config")),
        )


def _mapping_or_none(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


@dataclass(frozen=True)
class HostRelease:
    """What one host of several runs after a deploy, and what the deploy did to it."""

    host: str
    result: str
    services: Mapping[str, ServiceRelease] = field(default_factory=dict)
    changes: Sequence[str] = field(default_factory=list)
    seconds: float = 0.0  # how long its deploy (and any rollback) took
    error: str = ""

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> HostRelease:
        services = record.get("services") or {}
        return cls(
            str(record["host"]),
            str(record.get("result", "")),
            {n: ServiceRelease.from_record(s) for n, s in services.items()},
            list(record.get("changes", [])),
            float(record.get("seconds", 0.0)),
            str(record.get("error", "")),
        )


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
    # The spec's `x-promoted-from` when deployed: {environment, release} of the promotion.
    promoted_from: Mapping[str, Any] | None = None
    # An environment of several hosts: each host's services, changes and result (`services` and
    # `changes` above are then those of the first host, and of all hosts together).
    hosts: Sequence[HostRelease] = ()

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
            promoted_from=_mapping_or_none(record.get("promoted_from")),
            hosts=tuple(HostRelease.from_record(h) for h in record.get("hosts", [])),
            **fields,
        )

    def record(self) -> dict[str, Any]:
        record = asdict(self)
        if not self.hosts:
            del record["hosts"]  # a one-host release is recorded as it always was
        return record

    def on(self, host: str) -> HostRelease | None:
        """What this release recorded for `host`; None when it lists hosts but not that one."""
        if not self.hosts:
            return HostRelease(host, self.result, self.services, self.changes)
        return next((h for h in self.hosts if h.host == host), None)

    def services_on(self, host: str) -> Mapping[str, ServiceRelease]:
        """The services this release recorded for `host` (none when it did not deploy there)."""
        found = self.on(host)
        return found.services if found is not None else {}


def history(store: Store) -> list[Release]:
    """Every release of the environment, newest first."""
    return newest_first(store.records("release"))


def release_of(service: str, image_id: str, releases: Sequence[Release]) -> int | None:
    """The newest of `releases` (newest first) that ran the image `image_id` for `service`."""
    for release in releases:
        ran = release.services.get(service)
        if ran is not None and ran.image_id == image_id:
            return release.number
    return None


def newest_first(records: Iterable[Mapping[str, Any]]) -> list[Release]:
    """The readable releases among `records`, newest first."""
    releases = []
    for record in records:
        try:
            releases.append(Release.from_record(record))
        except (KeyError, TypeError, ValueError):
            continue
    return sorted(releases, key=lambda r: r.number, reverse=True)


@dataclass(frozen=True)
class Secrets:
    """What is secret in a resolved service: the values of the secret variables, and any
    `environment` entry whose name is declared secret or looks like one."""

    values: Mapping[str, str]  # secret variable -> its value
    is_secret: SecretPolicy = field(default_factory=SecretPolicy)

    @classmethod
    def of(cls, spec: Spec, variables: Variables) -> Secrets:
        values = {n: v.value for n, v in variables.items.items() if v.secret}
        return cls(values, spec.is_secret)

    def referenced(self, text: str) -> str:
        """`text` (as Compose prints it, `$` doubled) with each secret value as `${NAME}`."""
        for name, value in sorted(self.values.items(), key=lambda item: -len(item[1])):
            escaped = value.replace("$", "$$")
            if text == escaped or (len(value) >= MIN_REDACTED_LENGTH and escaped in text):
                text = text.replace(escaped, f"${{{name}}}")
        return text


NO_SECRETS = Secrets({})


def recorded_config(service: Mapping[str, Any], secrets: Secrets) -> dict[str, Any]:
    """A resolved service as a release keeps it, with no secret value in it. A secret from a
    variable becomes a reference, so that going back uses the secret's current value; a secret
    entry from elsewhere (`env_file:`) is kept as *** and going back takes its current value."""
    config: dict[str, Any] = {}
    for key, value in service.items():
        if key == "environment":
            config[key] = {
                name: _recorded_secret(name, entry, secrets)
                for name, entry in (value or {}).items()
            }
        elif key == "labels":
            config[key] = {
                k: _referenced(v, secrets)
                for k, v in (value or {}).items()
                if not k.startswith("dev.deployer.")
            }
        else:
            config[key] = _referenced(value, secrets)
    return config


def _recorded_secret(name: str, value: Any, secrets: Secrets) -> Any:
    referenced = _referenced(value, secrets)
    if referenced == value and value and secrets.is_secret(name):
        return MASK
    return referenced


def _referenced(value: Any, secrets: Secrets) -> Any:
    if isinstance(value, str):
        return secrets.referenced(value)
    if isinstance(value, list):
        return [_referenced(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _referenced(v, secrets) for k, v in value.items()}
    return value


def configured(
    services: Mapping[str, ServiceRelease], releases: Sequence[Release], host: str
) -> dict[str, ServiceRelease]:
    """`services` (what runs on `host`), each whose configuration is not known with the one
    recorded for it by the newest of `releases` (newest first) that ran the same image there.
    The one answer to "which configuration belongs to a recorded service": a service runs the
    configuration it was last deployed with on that image, not whatever a later release that
    never replaced it (a failed pull, an interrupt) meant to give it."""
    filled = dict(services)
    for name, service in services.items():
        if service.config is not None:
            continue
        recorded = (r.services_on(host).get(name) for r in releases)
        known = next(
            (
                r.config
                for r in recorded
                if r is not None and r.image_id == service.image_id and r.config is not None
            ),
            None,
        )
        filled[name] = replace(service, config=known)
    return filled


def spec_hash(spec: Spec) -> str:
    return hashlib.sha256(spec.path.read_bytes()).hexdigest()[:16]


def variables_hash(variables: Variables) -> str:
    text = json.dumps(variables.values(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def record(
    store: Store,
    actor: Actor,
    command: str,
    result: str,
    spec: Spec,
    variables: Variables,
    services: Mapping[str, ServiceRelease],
    changes: Sequence[str],
    hosts: Sequence[HostRelease] = (),
) -> Release:
    """Add the next release. Its number is claimed on the store: one taken already (a forced
    lock break, a record no longer readable) is passed over, never written over."""
    number = max((r.number for r in history(store)), default=0) + 1
    while True:
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
            changes=list(changes),
            promoted_from=spec.promoted_from,
            hosts=tuple(hosts),
        )
        if store.add("release", f"{number:06d}", release.record()):
            return release
        number += 1


def rollback_target(
    releases: Sequence[Release], number: int | None, hosts: Sequence[str] = ()
) -> Release:
    """Release `number`, or the last good release before the current one: the newest good one.
    Of several `hosts`, the current release is the newest good one that changed one of them,
    and the one to go back to the newest good one before it that lists every one of them: a
    release of some hosts only (a canary) is gone back over, as the hosts that followed it are."""
    if number is not None:
        for release in releases:
            if release.number == number:
                return release
        known = ", ".join(str(r.number) for r in releases) or "none"
        raise DeployerError(f"no release {number} (releases: {known})")
    good = [r for r in releases if r.result == SUCCESS]
    current = next((i for i, r in enumerate(good) if _changed_any(r, hosts)), None)
    earlier = good[current + 1 :] if current is not None else []
    target = next((r for r in earlier if all(r.on(host) is not None for host in hosts)), None)
    if target is None:
        raise DeployerError("no earlier good release to roll back to (see `deploy history`)")
    return target


def _changed_any(release: Release, hosts: Sequence[str]) -> bool:
    """Whether `release` changed one of `hosts` (of one host: it did, or it would not be)."""
    return (
        not hosts
        or not release.hosts
        or any(
            found is not None and found.result == SUCCESS
            for found in (release.on(host) for host in hosts)
        )
    )
