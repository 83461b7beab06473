"""Releases: what each deploy put on the engine, so that any operator can see and go back to it.

A release records per service the exact image and the resolved configuration its containers run,
secret values by reference; going back to it restores both (see docs/state.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from deployer.core.desired import DesiredState
from deployer.core.errors import DeployerError
from deployer.core.results import SUCCESS
from deployer.core.spec import Spec
from deployer.core.variables import MASK, SecretPolicy, Variables
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

    def referenced(self, text: str, written: str | None) -> str:
        """`text` (as Compose prints it, `$` doubled) with secret values as `${NAME}`: where
        `written` (the same value before interpolation) refers to a secret variable, that
        reference; where the value's source is not known, only a text that is exactly a
        secret's value. Never any text that merely contains one: with `PW=postgres`,
        `/var/lib/postgresql/data` and `user: postgres` stay as written."""
        if written is not None:
            return _as_written(text, written, self.values) or text
        exact = (n for n, v in self.values.items() if text == v.replace("$", "$$"))
        return next((f"${{{name}}}" for name in sorted(exact)), text)


# In a value as written: `$$` (a literal `$`), or a reference `${NAME...}` or `$NAME`.
_INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)[^}]*\}|\$(\w+)")


def _as_written(text: str, written: str, secrets: Mapping[str, str]) -> str | None:
    """`text` with each reference of `written` to a secret variable put back, the other
    references as interpolated; None if `text` is not `written` interpolated with the secrets'
    values (Compose normalised it)."""
    pattern: list[str] = []
    parts: list[str | None] = []
    position = 0
    for match in _INTERPOLATION.finditer(written):
        literal = written[position : match.start()] + ("$$" if match[0] == "$$" else "")
        pattern.append(re.escape(literal))
        parts.append(literal)
        name = match[1] or match[2]
        if name in secrets:
            pattern.append(re.escape(secrets[name].replace("$", "$$")))
            parts.append(f"${{{name}}}")
        elif name:
            pattern.append("(.*?)")
            parts.append(None)
        position = match.end()
    pattern.append(re.escape(written[position:]))
    parts.append(written[position:])
    interpolated = re.fullmatch("".join(pattern), text, re.DOTALL)
    if interpolated is None:
        return None
    others = iter(interpolated.groups())
    return "".join(part if part is not None else next(others) for part in parts)


NO_SECRETS = Secrets({})


def recorded_config(state: DesiredState, name: str, secrets: Secrets) -> dict[str, Any]:
    """Service `name` of `state` as a release keeps it, with no secret value in it. A secret
    from a variable becomes a reference where the compose files refer to it (`state.written`),
    so that going back uses the secret's current value; a secret entry from elsewhere
    (`env_file:`) is kept as *** and going back takes its current value."""
    service = state.model["services"][name]
    source = _mapping(_mapping(state.written.get("services")).get(name))
    config: dict[str, Any] = {}
    for key, value in service.items():
        if key == "environment":
            sources = _mapping(source.get(key))
            config[key] = {
                name: _recorded_secret(name, entry, sources.get(name), secrets)
                for name, entry in (value or {}).items()
            }
        elif key == "labels":
            sources = _mapping(source.get(key))
            config[key] = {
                k: _referenced(v, sources.get(k), secrets)
                for k, v in (value or {}).items()
                if not k.startswith("dev.deployer.")
            }
        else:
            config[key] = _referenced(value, source.get(key), secrets)
    return config


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _recorded_secret(name: str, value: Any, written: Any, secrets: Secrets) -> Any:
    referenced = _referenced(value, written, secrets)
    if referenced == value and value and secrets.is_secret(name):
        return MASK
    return referenced


def _referenced(value: Any, written: Any, secrets: Secrets) -> Any:
    """`value` with its secrets as references, `written` its counterpart before interpolation
    (None where the two differ in shape: Compose parses some values only once interpolated)."""
    if isinstance(value, str):
        return secrets.referenced(value, written if isinstance(written, str) else None)
    if isinstance(value, list):
        same = isinstance(written, list) and len(written) == len(value)
        return [_referenced(v, written[i] if same else None, secrets) for i, v in enumerate(value)]
    if isinstance(value, dict):
        sources = _mapping(written)
        return {k: _referenced(v, sources.get(k), secrets) for k, v in value.items()}
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
