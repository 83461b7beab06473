"""Stage 4 for the swarm target: what runs on a swarm for one stack, read from a manager.

A stack has no object of its own on the server: its services carry the label
com.docker.stack.namespace=PROJECT and are named PROJECT_SERVICE. `stack_from` is pure (the
engine's answers in, the observed stack out); `observe_stack` asks the engine (deployer/engine.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from deployer.core.desired import DesiredState
from deployer.core.observed import ObservedService, ObservedStack, ObservedTask
from deployer.core.reference import ImageReference
from deployer.infra.engine import EngineClient
from deployer.state.releases import Secrets, ServiceRelease, recorded_config
from deployer.targets.swarm.stack import convert, service_fingerprint

# A task in these states is on its way to running (or running): it counts as current.
_LIVE_DESIRED = frozenset({"running", "ready", "accepted"})


# Masks the secret values in Swarm's free text (update messages, task errors, log lines).
Mask = Callable[[str], str]


def observe_stack(client: EngineClient, project: str, redact: Mask) -> ObservedStack:
    """The stack as a manager sees it. The engine must be a swarm manager."""
    client.swarm_manager()
    return read_stack(client, project, redact)


def read_stack(client: EngineClient, project: str, redact: Mask) -> ObservedStack:
    """The stack, read from an engine known to be a manager (watching it converge)."""
    services = client.stack_services(project)
    tasks = client.service_tasks(sorted(s["ID"] for s in services))
    return stack_from(project, services, tasks, client.nodes(), redact)


def stack_from(
    project: str,
    services: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
    nodes: list[dict[str, Any]],
    redact: Mask = str,
) -> ObservedStack:
    """The observed stack from the engine's answers; Swarm's words (update messages, task
    errors) masked with `redact`, at their source."""
    hostnames = {n["ID"]: n.get("Description", {}).get("Hostname", "") for n in nodes}
    by_service: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        by_service.setdefault(task["ServiceID"], []).append(task)
    observed = {}
    for raw in services:
        service = _service(project, raw, by_service.get(raw["ID"], []), hostnames, redact)
        observed[service.name] = service
    return ObservedStack(project, dict(sorted(observed.items())))


def _service(
    project: str,
    raw: dict[str, Any],
    tasks: list[dict[str, Any]],
    hostnames: Mapping[str, str],
    redact: Mask,
) -> ObservedService:
    spec = raw["Spec"]
    container = spec.get("TaskTemplate", {}).get("ContainerSpec", {})
    checked = _has_health_check(container.get("Healthcheck"))
    replicated = spec.get("Mode", {}).get("Replicated")
    status = raw.get("ServiceStatus") or {}
    update = raw.get("UpdateStatus") or {}
    template = spec.get("TaskTemplate") or {}
    current = sorted(
        (
            _task(t, hostnames, checked, template, redact)
            for t in tasks
            if t.get("DesiredState") in _LIVE_DESIRED
        ),
        key=lambda t: (t.slot or 0, t.node),
    )
    newest_first = sorted(
        tasks, key=lambda t: t.get("Status", {}).get("Timestamp", ""), reverse=True
    )
    errors = [redact(_error(t)) for t in newest_first if _error(t)]
    return ObservedService(
        name=spec["Name"].removeprefix(f"{project}_"),
        id=raw["ID"],
        version=int((raw.get("Version") or {}).get("Index", 0)),
        labels=dict(spec.get("Labels") or {}),
        image=container.get("Image", ""),
        replicas=int(replicated.get("Replicas", 1)) if replicated is not None else None,
        running=int(status.get("RunningTasks", 0)),
        desired_tasks=int(status.get("DesiredTasks", 0)),
        update_state=update.get("State"),
        update_message=redact(update.get("Message", "")),
        tasks=tuple(current),
        last_error=errors[0] if errors else "",
        file_names=mounted_files(spec),
    )


def mounted_files(spec: Mapping[str, Any]) -> frozenset[str]:
    """The names of the configs and secrets a service spec mounts."""
    container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    configs = (c.get("ConfigName", "") for c in container.get("Configs") or [])
    secrets = (s.get("SecretName", "") for s in container.get("Secrets") or [])
    return frozenset([*configs, *secrets]) - {""}


def _task(
    raw: dict[str, Any],
    hostnames: Mapping[str, str],
    checked: bool,
    template: Mapping[str, Any],
    redact: Mask,
) -> ObservedTask:
    status = raw.get("Status") or {}
    state = status.get("State", "")
    # Swarm calls a task with a health check running only once it is healthy.
    health = None
    if checked and state in ("starting", "running"):
        health = "healthy" if state == "running" else "starting"
    return ObservedTask(
        slot=raw.get("Slot"),
        node=hostnames.get(raw.get("NodeID", ""), ""),
        desired_state=raw.get("DesiredState", ""),
        state=state,
        health=health,
        since=status.get("Timestamp", ""),
        error=redact(_error(raw)),
        current=_made_from(raw.get("Spec") or {}, template),
    )


def _made_from(task_spec: Mapping[str, Any], template: Mapping[str, Any]) -> bool:
    """Whether a task was made from the service's task template as it is now. The engine adds
    keys of its own to the template (`Runtime`), so each key the task has is compared."""
    return all(template.get(key) == value for key, value in task_spec.items())


def _error(task: Mapping[str, Any]) -> str:
    status = task.get("Status") or {}
    return str(status.get("Err") or "")


def _has_health_check(check: Mapping[str, Any] | None) -> bool:
    return bool(check and check.get("Test") and check["Test"][0] != "NONE")


def stack_leftovers(client: EngineClient, project: str) -> list[str]:
    """What of the stack is still on the swarm: its services and networks, by name."""
    services = sorted(s["Spec"]["Name"] for s in client.stack_services(project))
    networks = sorted(n["Name"] for n in client.stack_networks(project))
    return [f"service {name}" for name in services] + [f"network {name}" for name in networks]


def stack_services(
    observed: ObservedStack, states: Sequence[DesiredState], secrets: Secrets
) -> dict[str, ServiceRelease]:
    """Per service of a swarm stack, the image its spec pins (by digest), and its configuration:
    that of the first of `states` whose converted service carries the service's fingerprint
    (None when none does)."""
    fingerprints = [
        (
            state,
            {
                n: service_fingerprint(s)
                for n, s in convert(state.model).document["services"].items()
            },
        )
        for state in states
    ]
    services: dict[str, ServiceRelease] = {}
    for name, service in observed.services.items():
        digest = service.digest or ""
        pinned = ImageReference.parse(service.image).pinned(digest) if digest else service.image
        configs = (
            recorded_config(state, name, secrets)
            for state, prints in fingerprints
            if prints.get(name) is not None and prints.get(name) == service.fingerprint
        )
        services[name] = ServiceRelease(
            service.requested_image, digest, pinned, next(configs, None)
        )
    return services
