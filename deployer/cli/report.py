"""Stage 7: what the user sees. Every line leaves through a Console.

Secrets are masked at the source, in one of two ways. Output built from data (plans, status,
history, the resolved model, JSON documents) is masked as data: secret values are replaced in the
values of the structure before it is serialised, and identifiers (service, container, project,
image, network, volume names), keys, booleans and numbers never are, so a weak secret that equals
a service name does not hide the service, and JSON stays JSON. Free text that can carry values
(logs, errors, Compose's and the engine's messages) goes through the Redactor, which also knows
each secret's escaped forms.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, TextIO, TypeVar

import yaml

from deployer.commands.operations import Divergence, Promotion, Rollout
from deployer.core.desired import SafeDumper, dump_compose, load_compose
from deployer.core.errors import shown_path
from deployer.core.reference import short_id
from deployer.core.variables import MASK, Redactor, Variables
from deployer.state.audit import AuditEntry
from deployer.state.lock import Lock, held_note
from deployer.state.releases import Release
from deployer.state.store import iso
from deployer.targets.compose.apply import Applied
from deployer.targets.compose.build import Built
from deployer.targets.compose.observe import ObservedContainer
from deployer.targets.compose.plan import Plan
from deployer.targets.compose.project import Command
from deployer.targets.compose.prune import Pruned
from deployer.targets.compose.status import EnvironmentStatus, RunningImage, images_by_service
from deployer.targets.fleet.hosts import HostOutcome, label
from deployer.targets.swarm.apply import SwarmApplied
from deployer.targets.swarm.stack import dump_stack
from deployer.targets.swarm.status import SwarmStatus

T = TypeVar("T")


class Console:
    """The single way out for text: stdout for results, stderr for progress and errors."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out, self._err = out, err
        self.redact = Redactor()
        self._live: str | None = None  # the progress line shown on a terminal, if any
        self._started: set[str] = set()
        self._lock = threading.Lock()

    # Looked up when used, so that a stream replaced after start-up (tests, wrappers) is honoured.
    @property
    def out(self) -> TextIO:
        return self._out or sys.stdout

    @property
    def err(self) -> TextIO:
        return self._err or sys.stderr

    def print(self, text: str = "") -> None:
        """Free text to stdout: every secret value in it is masked."""
        self.emit(self.redact(text))

    def error(self, text: str) -> None:
        """Free text to stderr: every secret value in it is masked."""
        self.notice(self.redact(text))

    def emit(self, text: str) -> None:
        """Text rendered from data that was masked at its source: printed as it is."""
        self._end_live()
        print(text, file=self.out, flush=True)

    def notice(self, text: str) -> None:
        """Like emit, to stderr (warnings)."""
        self._end_live()
        print(text, file=self.err, flush=True)

    def json(self, document: Any) -> None:
        """A document built from masked data: always valid JSON."""
        self.emit(json.dumps(document, indent=2, ensure_ascii=False))

    @property
    def live(self) -> bool:
        return self.err.isatty()

    # Progress, as apply reports it: one rewritten line on a terminal; plain lines otherwise,
    # one when a step starts and one when it ends, so that logs stay short.
    # Parallel pulls report from several threads. Progress is built from identifiers and the
    # engine's states, never from values, so it is not redacted (a weak secret equal to an image
    # name would hide the image).
    def update(self, subject: str, text: str) -> None:
        with self._lock:
            if self.live:
                self._live = text[:120]
                self.err.write(f"\r\033[K{self._live}")
                self.err.flush()
            elif subject not in self._started:
                self._started.add(subject)
                print(text, file=self.err, flush=True)

    def done(self, subject: str, text: str) -> None:
        with self._lock:
            self._end_live()
            print(text, file=self.err, flush=True)

    def _end_live(self) -> None:
        if self._live is not None:
            self.err.write("\r\033[K")
            self.err.flush()
            self._live = None


def build_text(built: Sequence[Built]) -> str:
    lines = []
    for image in built:
        if image.already_there:
            lines.append(
                f"{image.service}: {image.image} is in the registry already ({image.pushed})"
            )
        elif image.pushed:
            lines.append(f"{image.service}: pushed {image.image} ({image.pushed})")
        else:
            lines.append(f"{image.service}: built {image.image} ({image.image_id})")
    return "\n".join(lines)


def plan_document(plan: Plan) -> dict[str, Any]:
    return {"environment": plan.environment, "project": plan.project, **_plan_fields(plan)}


def _plan_fields(plan: Plan) -> dict[str, Any]:
    return {
        "in_sync": plan.in_sync,
        "changes": [
            {"service": c.service, "action": c.action, "causes": list(c.causes)}
            for c in plan.changes
        ],
    }


def plan_text(plan: Plan, host: str | None = None) -> str:
    header = _header(plan.environment, plan.project, host)
    if plan.in_sync:
        return f"{header}: in sync, nothing to change"
    count = len(plan.changes)
    rows = [("SERVICE", "ACTION", "CAUSE")]
    for change in plan.changes:
        for index, cause in enumerate(change.causes or ("",)):
            rows.append((change.service, change.action, cause) if index == 0 else ("", "", cause))
    return f"{header}: {count} change{'s' if count != 1 else ''}\n" + _table(rows)


def _header(environment: str, project: str, host: str | None = None) -> str:
    return f"{environment} (project {project})" + (f" on {host}" if host else "")


def _unknown_text(
    environment: str, project: str, outcome: HostOutcome[Any], redact: Redactor
) -> str:
    """A host that could not be read: its state is unknown, and why."""
    assert outcome.error is not None
    lines = [f"{_header(environment, project, outcome.host)}: state unknown"]
    lines += [f"  error: {redact(line)}" for line in outcome.error.lines()]
    return "\n".join(lines)


def _per_host(
    outcomes: Sequence[HostOutcome[T]],
    fields: Callable[[T], dict[str, Any]],
    unknown: Sequence[str],
    redact: Redactor,
) -> list[dict[str, Any]]:
    """The `hosts` of a JSON document: each host's own fields and its error (its text masked);
    null for each `unknown` field of a host that could not be read."""
    return [
        {
            "host": o.host,
            **(dict.fromkeys(unknown) if o.value is None else fields(o.value)),
            "error": None if o.error is None else redact(o.error.message),
        }
        for o in outcomes
    ]


def _counted(count: int, what: str) -> str:
    return f"{count} {what}{'s' if count != 1 else ''}"


def plans_text(
    environment: str, project: str, outcomes: Sequence[HostOutcome[Plan]], redact: Redactor
) -> str:
    """Each host's plan (one host: as ever), then how many hosts are in sync."""
    if len(outcomes) == 1 and outcomes[0].value is not None:
        return plan_text(outcomes[0].value)
    blocks = [
        plan_text(o.value, o.host)
        if o.value is not None
        else _unknown_text(environment, project, o, redact)
        for o in outcomes
    ]
    plans = [o.value for o in outcomes if o.value is not None]
    in_sync = sum(1 for p in plans if p.in_sync)
    counts = [
        f"{in_sync} in sync",
        f"{len(plans) - in_sync} with changes",
        f"{len(outcomes) - len(plans)} unknown",
    ]
    summary = f"{_header(environment, project)}: {_counted(len(outcomes), 'host')}: " + ", ".join(
        c for c in counts if not c.startswith("0 ")
    )
    return "\n\n".join([*blocks, summary])


def plans_document(
    environment: str, project: str, outcomes: Sequence[HostOutcome[Plan]], redact: Redactor
) -> dict[str, Any]:
    """Today's fields (one host: its plan; several: all hosts in sync, and every change with
    its host) and `hosts`: each host's own, with its error (in_sync and changes null) where it
    could not be read."""
    hosts = _per_host(outcomes, _plan_fields, ("in_sync", "changes"), redact)
    if len(outcomes) == 1 and outcomes[0].value is not None:
        return {**plan_document(outcomes[0].value), "hosts": hosts}
    plans = [(o.host, o.value) for o in outcomes if o.value is not None]
    return {
        "environment": environment,
        "project": project,
        "in_sync": len(plans) == len(outcomes) and all(p.in_sync for _, p in plans),
        "changes": [
            {"host": host, **change} for host, p in plans for change in _plan_fields(p)["changes"]
        ],
        "hosts": hosts,
    }


def _applied_lines(done: str, plan: Plan, target: str, seconds: float) -> list[str]:
    """What an applied plan did: `deployed ENV (project P) in Ns`, then each change."""
    lines = [f"{done} {plan.environment} ({target} {plan.project}) in {seconds:.1f}s"]
    return lines + [f"  {change.action:<9} {change.service}" for change in plan.changes]


def applied_text(applied: Applied) -> str:
    lines = _applied_lines("deployed", applied.plan, "project", applied.seconds)
    for container in applied.containers:
        lines.append(f"  {container.name}: {container.status}")
    return "\n".join(lines)


def swarm_applied_text(applied: SwarmApplied) -> str:
    lines = _applied_lines(applied.done, applied.plan, "stack", applied.seconds)
    for s in applied.services:
        digest = short_id(s.digest or "-")
        lines.append(
            f"  {s.name}: {s.running}/{s.desired_tasks} tasks running, {s.requested_image} ({digest})"
        )
    return "\n".join(lines)


def swarm_applied_document(applied: SwarmApplied) -> dict[str, Any]:
    return {
        **plan_document(applied.plan),
        "seconds": round(applied.seconds, 3),
        "services": [
            {
                "service": s.name,
                "image": s.requested_image,
                "digest": s.digest,
                "version": s.version,
                "replicas": {"running": s.running, "desired": s.desired_tasks},
            }
            for s in applied.services
        ],
        "unavailable_nodes": list(applied.unavailable),
    }


def applied_document(applied: Applied) -> dict[str, Any]:
    return {
        **plan_document(applied.plan),
        "seconds": round(applied.seconds, 3),
        "containers": [
            {
                "service": c.service,
                "name": c.name,
                "id": c.id,
                "image": c.image,
                "image_id": c.image_id,
                "status": c.status,
            }
            for c in applied.containers
        ],
    }


def variables_rows(variables: Variables, redact: Redactor) -> list[dict[str, Any]]:
    """Each variable; a secret's value is masked, and so is a secret inside another value."""
    return [
        {
            "name": v.name,
            "value": MASK if v.secret else redact(v.value),
            "source": v.source,
            "secret": v.secret,
        }
        for v in sorted(variables.items.values(), key=lambda v: v.name)
    ]


def variables_text(variables: Variables, redact: Redactor) -> str:
    rows = [("NAME", "VALUE", "SOURCE")]
    for row in variables_rows(variables, redact):
        rows.append((row["name"], _one_line(row["value"]), row["source"]))
    return _table(rows)


def _one_line(value: str) -> str:
    """A value shown in a table: quoted where whitespace or control characters would hide it."""
    if value == MASK or (value.isprintable() and value.strip() == value and value):
        return value
    return json.dumps(value, ensure_ascii=False)


# Keys of a compose model whose values name things rather than carry configuration values.
IDENTIFIER_KEYS = frozenset(
    {"image", "container_name", "hostname", "domainname", "name", "network_mode", "driver"}
    | {"source", "target", "platform", "pull_policy", "restart", "condition", "type"}
)


# Mappings whose keys are names chosen by the user, not compose keys: their values are all values.
VALUE_MAPPINGS = frozenset({"environment", "labels", "annotations", "args", "sysctls"})


def masked(value: Any, redact: Redactor, key: str = "") -> Any:
    """`value` with secret values masked in every string except identifiers; keys, booleans and
    numbers are never touched."""
    if isinstance(value, Mapping):
        if key in VALUE_MAPPINGS:
            items = {k: masked(v, redact) for k, v in value.items()}
        else:
            items = {k: masked(v, redact, str(k)) for k, v in value.items()}
        # A Replacement stays one: it is written back as `!override`.
        return type(value)(items) if isinstance(value, dict) else items
    if isinstance(value, list | tuple):
        return [masked(v, redact, key) for v in value]
    if isinstance(value, str) and key not in IDENTIFIER_KEYS:
        return redact(value)
    return value


def masked_model(
    model: Mapping[str, Any], is_secret: Callable[[str], bool], redact: Redactor
) -> dict[str, Any]:
    """The resolved compose model with secret variables' values masked, as data."""
    document: dict[str, Any] = masked(model, redact)
    for service in document.get("services", {}).values():
        environment = service.get("environment") or {}
        for name in environment:
            if is_secret(name):
                environment[name] = MASK
    return document


def _masked_override(command: Command, redact: Redactor) -> str | None:
    if command.stdin is None:
        return None
    return dump_compose(masked(load_compose(command.stdin), redact))


def render_text(command: Command, model: Mapping[str, Any], redact: Redactor) -> str:
    invocation = command.shell(redact)
    override = _masked_override(command, redact)
    if override:
        invocation += f" <<'OVERRIDE'\n{override}OVERRIDE"
    dumped = yaml.dump(dict(model), Dumper=SafeDumper, sort_keys=False, allow_unicode=True)
    return f"# invocation\n{invocation}\n\n# resolved compose model\n{dumped}"


def render_document(command: Command, model: Mapping[str, Any], redact: Redactor) -> dict[str, Any]:
    return {
        "argv": list(command.argv),
        "env": command.shown_env(redact),
        "stdin": _masked_override(command, redact),
        "shell": command.shell(redact),
        "model": dict(model),
    }


def stack_render_text(command: Command, stack: Mapping[str, Any], redact: Redactor) -> str:
    """The `docker stack deploy` invocation with its stack file (masked) on stdin."""
    return f"# invocation\n{command.shell(redact)} <<'STACK'\n{dump_stack(stack)}STACK"


def stack_render_document(
    command: Command, stack: Mapping[str, Any], redact: Redactor
) -> dict[str, Any]:
    return {
        "argv": list(command.argv),
        "env": command.shown_env(redact),
        "stdin": dump_stack(stack),
        "shell": command.shell(redact),
        "stack": dict(stack),
    }


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def rollout_text(rollout: Rollout) -> str:
    """Per host: what the deploy did there, how long it took, and what changed."""
    if rollout.in_sync:
        return f"{rollout.environment}: every host in sync, nothing to change"
    rows = [("HOST", "RESULT", "TIME", "CHANGED")]
    for host in rollout.hosts:
        changed = ", ".join(change.split(":", 1)[0] for change in host.changes) or "-"
        time = f"{host.seconds:.1f}s" if host.seconds else "-"
        rows.append((host.host, host.result, time, changed))
    return f"{rollout.environment}: {len(rollout.hosts)} hosts\n" + _table(rows)


def rollout_document(rollout: Rollout) -> dict[str, Any]:
    return {
        "environment": rollout.environment,
        "in_sync": rollout.in_sync,
        "hosts": [
            {
                "host": h.host,
                "result": h.result,
                "seconds": h.seconds,
                "changes": list(h.changes),
                "error": h.error,
            }
            for h in rollout.hosts
        ],
    }


def history_document(
    releases: Sequence[Release], divergences: Sequence[Divergence]
) -> list[dict[str, Any]]:
    """The releases as recorded; the release a diverged host should run says how it differs."""
    documents = [release.record() for release in releases]
    by_number = {document["number"]: document for document in documents}
    for divergence in divergences:
        document = by_number.get(divergence.release or 0)
        for host in document["hosts"] if document else []:
            if host["host"] == divergence.host:
                host["diverged"] = list(divergence.differences)
    return documents


def history_text(
    environment: str, releases: Sequence[Release], divergences: Sequence[Divergence] = ()
) -> str:
    flags = [
        f"{d.host} DIVERGES from "
        + (f"release #{d.release}" if d.release else "its releases")
        + f": {'; '.join(d.differences)}"
        for d in divergences
    ]
    if not releases:
        return "\n".join([f"{environment}: no releases yet", *flags])
    lines = [
        f"{environment}: {len(releases)} release{'s' if len(releases) != 1 else ''}, newest first"
    ]
    for release in releases:
        lines.append(
            f"#{release.number}  {release.time}  {release.performer}@{release.host}  "
            f"{release.result}  ({release.command})"
        )
        if release.promoted_from:
            source = release.promoted_from
            number = f" #{source['release']}" if source.get("release") else ""
            lines.append(f"    promoted from {source['environment']}{number}")
        if release.hosts:
            for host in release.hosts:
                lines.append(f"    {host.host}: {host.result}")
                lines.extend(_services_lines(host.services, "      "))
        else:
            lines.extend(_services_lines(release.services, "    "))
        lines.extend(f"    changed: {change}" for change in release.changes)
    return "\n".join([*lines, *flags])


def _services_lines(services: Mapping[str, Any], indent: str) -> list[str]:
    return [
        f"{indent}{name}: {service.image} ({short_id(service.image_id)})"
        for name, service in sorted(services.items())
    ]


def audit_text(environment: str, entries: Sequence[AuditEntry]) -> str:
    if not entries:
        return f"{environment}: no audit entries yet"
    rows = [("TIME", "WHO", "COMMAND", "RESULT", "DETAIL")]
    for entry in entries:
        detail = entry.error or "; ".join(entry.changes)
        rows.append(
            (entry.time, f"{entry.performer}@{entry.host}", entry.command, entry.result, detail)
        )
    return _table(rows)


def lock_document(environment: str, lock: Lock | None, stale: str | None) -> dict[str, Any]:
    return {"environment": environment, **_lock_fields(lock, stale)}


def _lock_fields(lock: Lock | None, stale: str | None) -> dict[str, Any]:
    return {
        "locked": lock is not None,
        "stale": stale,
        "lock": None
        if lock is None
        else {**lock.record(), "since": iso(lock.since), "expires": iso(lock.expires)},
    }


def locks_document(
    environment: str,
    outcomes: Sequence[HostOutcome[tuple[Lock | None, str | None]]],
    redact: Redactor,
) -> dict[str, Any]:
    """Today's fields, of the first host holding the lock (none: not locked), and `hosts`: the
    lock as each host's records hold it, with its error where it could not be read."""
    hosts = _per_host(
        outcomes, lambda held: _lock_fields(*held), ("locked", "stale", "lock"), redact
    )
    held = next((o.value for o in outcomes if o.value is not None and o.value[0]), (None, None))
    return {**lock_document(environment, *held), "hosts": hosts}


def locks_text(
    environment: str,
    outcomes: Sequence[HostOutcome[tuple[Lock | None, str | None]]],
    redact: Redactor,
) -> str:
    """The lock on each host (one host: as ever)."""
    if len(outcomes) == 1 and outcomes[0].value is not None:
        return lock_text(environment, *outcomes[0].value)
    lines = []
    for outcome in outcomes:
        if outcome.value is None:
            assert outcome.error is not None
            lines.append(f"{environment} on {outcome.host}: unknown")
            lines += [f"  error: {redact(line)}" for line in outcome.error.lines()]
        else:
            lines.append(lock_text(environment, *outcome.value, host=outcome.host))
    held = sum(1 for o in outcomes if o.value is not None and o.value[0])
    lines.append(f"{environment}: locked on {held} of {_counted(len(outcomes), 'host')}")
    return "\n".join(lines)


def lock_text(
    environment: str,
    lock: Lock | None,
    stale: str | None,
    here: str | None = None,
    host: str | None = None,
) -> str:
    where = f"{environment} on {host}" if host else environment
    if lock is None:
        return f"{where}: not locked"
    state = (
        f"STALE ({stale}); break it with `deploy lock release {environment} --force`"
        if stale
        else held_note(lock, here or socket.gethostname())
    )
    return (
        f"{where}: locked by {lock.describe()} since {iso(lock.since)}: {lock.reason}\n"
        f"  kind {lock.kind}, expires {iso(lock.expires)}; {state}"
    )


def status_document(status: EnvironmentStatus) -> dict[str, Any]:
    return {"environment": status.environment, "project": status.project, **_status_fields(status)}


def _status_fields(status: EnvironmentStatus) -> dict[str, Any]:
    return {
        "in_sync": status.in_sync,
        "healthy": status.healthy,
        "services": [
            {
                "service": s.service,
                "desired_image": s.desired_image,
                "replicas": {"ready": s.ready, "desired": s.desired_replicas},
                "healthy": s.healthy,
                "containers": [asdict(c) for c in s.containers],
            }
            for s in status.services
        ],
        "orphans": list(status.orphans),
    }


def statuses_document(
    environment: str,
    project: str,
    outcomes: Sequence[HostOutcome[EnvironmentStatus]],
    redact: Redactor,
) -> dict[str, Any]:
    """Today's fields (one host: its status; several: in sync and healthy only when every host
    is, replicas summed, every container with its host, and per service `images`: which hosts
    run which image) and `hosts`: each host's own, with its error where it could not be read."""
    unknown = ("in_sync", "healthy", "services", "orphans")
    hosts = _per_host(outcomes, _status_fields, unknown, redact)
    if len(outcomes) == 1 and outcomes[0].value is not None:
        return {**status_document(outcomes[0].value), "hosts": hosts}
    known = [(o.host, o.value) for o in outcomes if o.value is not None]
    images = images_by_service(known)
    services = []
    for name in images:
        each = [(host, s) for host, status in known for s in status.services if s.service == name]
        services.append(
            {
                "service": name,
                "desired_image": each[0][1].desired_image,
                "replicas": {
                    "ready": sum(s.ready for _, s in each),
                    "desired": sum(s.desired_replicas for _, s in each),
                },
                "healthy": len(known) == len(outcomes) and all(s.healthy for _, s in each),
                "containers": [{"host": h, **asdict(c)} for h, s in each for c in s.containers],
                "images": [asdict(i) for i in images[name]],
            }
        )
    return {
        "environment": environment,
        "project": project,
        "in_sync": all(h["in_sync"] for h in hosts),
        "healthy": all(h["healthy"] for h in hosts),
        "services": services,
        "orphans": sorted({o for _, status in known for o in status.orphans}),
        "hosts": hosts,
    }


def statuses_text(
    environment: str,
    project: str,
    outcomes: Sequence[HostOutcome[EnvironmentStatus]],
    redact: Redactor,
) -> str:
    """One host: as ever. Several: the whole (healthy and in sync only when every host is),
    per service which hosts run which image (MIXED where they differ), then each host's."""
    if len(outcomes) == 1 and outcomes[0].value is not None:
        return status_text(outcomes[0].value)
    known = [(o.host, o.value) for o in outcomes if o.value is not None]
    unknown = [o.host for o in outcomes if o.value is None]
    healthy = not unknown and all(status.healthy for _, status in known)
    in_sync = not unknown and all(status.in_sync for _, status in known)
    header = (
        f"{_header(environment, project)}: {_counted(len(outcomes), 'host')}: "
        f"{_health_and_sync(healthy, in_sync)}"
    )
    if unknown:
        header += f"; state unknown on {', '.join(unknown)}"
    lines = [header]
    for service, images in images_by_service(known).items():
        shown = [
            f"{_running(i)} on "
            + ("every host" if len(i.hosts) == len(outcomes) else ", ".join(i.hosts))
            for i in images
        ]
        if len(shown) == 1:
            lines.append(f"  {service}: {shown[0]}")
        else:
            lines.append(f"  {service}: MIXED versions")
            lines += [f"    {line}" for line in shown]
    blocks = [
        status_text(o.value, o.host)
        if o.value is not None
        else _unknown_text(environment, project, o, redact)
        for o in outcomes
    ]
    return "\n\n".join(["\n".join(lines), *blocks])


def _running(image: RunningImage) -> str:
    return f"{image.image} ({short_id(image.image_id)})" if image.image else "no container"


def _health_and_sync(healthy: bool, in_sync: bool) -> str:
    sync = "in sync" if in_sync else "NOT in sync (see `deploy diff`)"
    return f"{'healthy' if healthy else 'NOT healthy'}, {sync}"


def status_text(status: EnvironmentStatus, host: str | None = None) -> str:
    rows = [("SERVICE", "READY", "CONTAINER", "IMAGE", "ID", "RELEASE", "STATUS")]
    for service in status.services:
        ready = f"{service.ready}/{service.desired_replicas}"
        if not service.containers:
            rows.append(
                (service.service, ready, "-", service.desired_image, "-", "-", "no container")
            )
        for index, c in enumerate(service.containers):
            first = index == 0
            release = f"#{c.release}" if c.release else "-"
            rows.append(
                (
                    service.service if first else "",
                    ready if first else "",
                    c.name,
                    c.image,
                    short_id(c.image_id),
                    release,
                    c.status,
                )
            )
    header = _header(status.environment, status.project, host)
    lines = [f"{header}: {_health_and_sync(status.healthy, status.in_sync)}", _table(rows)]
    lines.extend(
        f"orphan: {name} (not in the spec; `deploy {status.environment}` removes it)"
        for name in status.orphans
    )
    return "\n".join(lines)


def prunes_document(outcomes: Sequence[HostOutcome[Pruned]], redact: Redactor) -> dict[str, Any]:
    """Today's fields (several hosts: every image with its host, bytes and records summed) and
    `hosts`: each host's own, with its error where it failed."""
    unknown = ("dry_run", "images", "freed_bytes", "records_removed")
    hosts = _per_host(outcomes, prune_document, unknown, redact)
    done = [(o.host, o.value) for o in outcomes if o.value is not None]
    if len(outcomes) == 1 and done:
        return {**prune_document(done[0][1]), "hosts": hosts}
    return {
        "dry_run": all(p.dry_run for _, p in done),
        "images": [{"host": host, **asdict(c)} for host, p in done for c in p.candidates],
        "freed_bytes": sum(p.freed for _, p in done),
        "records_removed": {
            "releases": sum(p.trimmed.releases for _, p in done),
            "audit": sum(p.trimmed.audit for _, p in done),
        },
        "hosts": hosts,
    }


def host_by_host_text(
    hosts: Sequence[str],
    outcomes: Sequence[HostOutcome[T]],
    render: Callable[[T], str],
    redact: Redactor,
) -> str:
    """The result of an operation done host by host: one host's as ever; with several, each
    host's under its name, and the hosts it never reached after a failure."""
    if len(hosts) == 1 and outcomes and outcomes[0].value is not None:
        return render(outcomes[0].value)
    by_host = {o.host: o for o in outcomes}
    stopped = next((o.host for o in outcomes if o.error is not None), "")
    lines = []
    for host in hosts:
        outcome = by_host.get(host)
        lines.append(f"{host}:")
        if outcome is None:
            body = [f"not done: stopped after the failure on {stopped}"]
        elif outcome.error is not None:
            body = [f"error: {redact(line)}" for line in outcome.error.lines()]
        else:
            body = render(outcome.value).splitlines() if outcome.value is not None else []
        lines += [f"  {line}" for line in body]
    return "\n".join(lines)


def restarted_text(containers: Sequence[ObservedContainer]) -> str:
    return "\n".join(f"restarted {c.name}: {c.status}" for c in containers)


def line_prefixes(hosts: Sequence[str]) -> dict[str, str]:
    """What starts each log line of a host: nothing with one host; with several, the host's
    label, aligned."""
    if len(hosts) == 1:
        return {hosts[0]: ""}
    labels = {host: label(host) for host in hosts}
    width = max(len(shown) for shown in labels.values())
    return {host: f"{shown.ljust(width)} | " for host, shown in labels.items()}


def prune_document(pruned: Pruned) -> dict[str, Any]:
    return {
        "dry_run": pruned.dry_run,
        "images": [asdict(c) for c in pruned.candidates],
        "freed_bytes": pruned.freed,
        "records_removed": asdict(pruned.trimmed),
    }


def prune_text(pruned: Pruned) -> str:
    if not pruned.candidates:
        return "\n".join(pruned.trimmed.lines()) or "nothing to remove"
    verb = "would remove" if pruned.dry_run else "removed"
    lines = [
        f"{verb} {short_id(c.image_id)} {' '.join(c.references) or '<none>'} ({_megabytes(c.size)}, {c.why})"
        for c in pruned.candidates
    ]
    if pruned.dry_run:
        total = sum(c.size for c in pruned.candidates)
        lines.append(
            f"{len(pruned.candidates)} image(s), up to {_megabytes(total)} (layers shared with kept images stay)"
        )
    else:
        lines.append(f"{len(pruned.candidates)} image(s) removed, {_megabytes(pruned.freed)} freed")
    return "\n".join([*pruned.trimmed.lines(), *lines])


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def promotion_document(promotion: Promotion) -> dict[str, Any]:
    return {
        "source": promotion.source,
        "target": promotion.target.spec.name,
        "source_release": promotion.source_release,
        "spec": str(promotion.target.spec.path),
        "written": promotion.changes,
        "services": [asdict(p) for p in promotion.services],
    }


def promotion_text(promotion: Promotion) -> str:
    """What promote pins in TARGET's spec: per service, the image it had and the exact one."""
    target = promotion.target.spec
    source = promotion.source
    if promotion.source_release is not None:
        source += f" #{promotion.source_release}"
    spec = shown_path(str(target.path))
    if not promotion.changes:
        return f"{spec} already pins what {source} runs: nothing to write"
    lines = [f"promote {source} -> {target.name}: {spec} would pin"]
    lines += [f"  {p.service}: {p.before} -> {p.pinned}" for p in promotion.services]
    return "\n".join(lines)


def promoted_text(promotion: Promotion) -> str:
    name = promotion.target.spec.name
    return (
        f"wrote {shown_path(str(promotion.target.spec.path))}: review and commit it; "
        f"`deploy diff {name}` shows the change, `deploy {name}` deploys it"
    )


def swarm_status_document(status: SwarmStatus) -> dict[str, Any]:
    return {
        "environment": status.environment,
        "project": status.stack.project,
        "in_sync": status.plan.in_sync,
        "healthy": status.healthy,
        "services": [
            {
                "service": s.name,
                "image": s.requested_image,
                "digest": s.digest,
                "replicas": {"running": s.running, "desired": s.desired_tasks},
                "update": {"state": s.update_state, "message": s.update_message},
                "tasks": [asdict(t) for t in s.tasks],
            }
            for s in status.stack.services.values()
        ],
    }


def swarm_status_text(status: SwarmStatus) -> str:
    sync = "in sync" if status.plan.in_sync else "NOT in sync (see `deploy diff`)"
    health = "healthy" if status.healthy else "NOT healthy"
    rows: list[tuple[str, ...]] = [
        ("SERVICE", "RUNNING", "IMAGE", "DIGEST", "UPDATE", "NODE", "STATE", "HEALTH", "SINCE")
    ]
    for s in status.stack.services.values():
        digest = short_id(s.digest or "-")
        head = (
            s.name,
            f"{s.running}/{s.desired_tasks}",
            s.requested_image,
            digest,
            s.update_state or "-",
        )
        for index, t in enumerate(s.tasks or [None]):
            first = head if index == 0 else ("",) * len(head)
            task = (
                (t.node or "?", t.state, t.health or "-", t.since[:19] + "Z") if t else ("-",) * 4
            )
            rows.append((*first, *task))
    lines = [f"{status.environment} (stack {status.stack.project}): {health}, {sync}", _table(rows)]
    lines.extend(
        f"{c.action}: {c.service} ({'; '.join(c.causes)})"
        for c in status.plan.changes
        if c.action in ("create", "converge", "remove")
    )
    return "\n".join(lines)
