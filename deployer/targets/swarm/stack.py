"""The swarm target's stack file: Compose's resolved model, converted into what `docker stack
deploy` of docker CLI 20.10 accepts (compose file format 3.8), with safe rolling-update defaults.

Compose still resolves the model (`.env` layering, interpolation, `env_file:`), so the stack file
holds values, not references: every `$` in it is escaped as `$$` by Compose, and stack deploy's
own interpolation turns each `$$` back into `$`. What Swarm cannot honour is a Finding: an error
where the meaning would change, a warning where Swarm ignores it harmlessly. `convert` and
`stack_deploy` are pure; `located_issues` reads the compose files to place each finding.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from deployer.core.command import Command
from deployer.core.desired import dump_stack
from deployer.core.errors import ConfigIssue
from deployer.core.observed import FILES_LABEL, FINGERPRINT_LABEL, KEY_FINGERPRINTS_LABEL
from deployer.core.spec import Spec
from deployer.infra.engine import Engine

STACK_VERSION = "3.8"
# Swarmkit's longest name of a config or secret, and the hex digits of its content's SHA-256
# that a config or secret made from a file ends with.
NAME_LIMIT, CONTENT_DIGEST_LENGTH = 64, 10
FILE_KINDS = {"configs": "config", "secrets": "secret"}
# Swarm's own update monitor; kept where no health check says how long a task needs.
SWARM_MONITOR = 5.0
# Docker's health check defaults, where a compose health check leaves them out.
HEALTH_INTERVAL, HEALTH_RETRIES = 30.0, 3

# Service keys of the 3.8 stack file that Swarm honours as Compose writes them.
_KEPT = frozenset(
    {"cap_add", "cap_drop", "credential_spec", "dns", "dns_search", "environment", "hostname"}
    | {"image", "init", "isolation", "labels", "logging", "read_only", "stdin_open"}
    | {"stop_grace_period", "stop_signal", "sysctls", "tty", "ulimits", "user", "working_dir"}
)
# Keys Swarm ignores, harmlessly.
_IGNORED = {
    "expose": "Swarm ignores expose: services on a network reach each other on every port",
    "pull_policy": "Swarm resolves the image to a digest and pulls it where a task runs",
}
# Keys Swarm ignores or has no place for, where that changes what runs.
_REFUSED = {
    "container_name": "Swarm names the tasks itself; remove container_name",
    "network_mode": "a swarm service joins networks, it has no network_mode "
    "(for the host's network, attach the service to the external network `host`)",
    "privileged": "Swarm services cannot run privileged",
    "devices": "Swarm services cannot be given host devices",
    "pid": "Swarm services cannot share a PID namespace",
    "ipc": "Swarm services cannot share an IPC namespace",
    "userns_mode": "Swarm services have no user namespace setting",
    "cgroup_parent": "Swarm services have no cgroup parent",
    "cgroupns_mode": "Swarm services have no cgroup namespace setting",
    "security_opt": "Swarm services have no security options",
    "shm_size": "Swarm services have no /dev/shm size",
    "mac_address": "Swarm services have no fixed MAC address",
    "domainname": "Swarm services have no domain name",
    "external_links": "Swarm has no links to containers outside the stack",
    "volumes_from": "Swarm services cannot mount another container's volumes",
}
_RESOURCE_KEYS = frozenset(
    {"cpus", "mem_limit", "mem_reservation", "memswap_limit", "pids_limit", "cpu_shares"}
    | {"cpu_quota", "cpu_period", "cpuset", "cpu_count", "cpu_percent"}
)

_DEPLOY_KEYS = frozenset(
    {"mode", "replicas", "labels", "endpoint_mode", "restart_policy", "placement"}
    | {"update_config", "rollback_config", "resources"}
)
_VOLUME_KEYS = frozenset({"type", "source", "target", "read_only", "consistency"})
_NETWORK_KEYS = frozenset(
    {"name", "driver", "driver_opts", "ipam", "external", "internal", "attachable", "labels"}
)
_TOP_KEYS = {
    "networks": _NETWORK_KEYS,
    "volumes": frozenset({"name", "driver", "driver_opts", "external", "labels"}),
    "secrets": frozenset({"name", "file", "external", "labels", "driver", "driver_opts"})
    | {"template_driver"},
    "configs": frozenset({"name", "file", "external", "labels", "template_driver"}),
}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class Finding:
    """A compose feature Swarm cannot honour: where it is in the model, and what it means."""

    path: str  # dotted path in the resolved model, e.g. services.web.network_mode
    message: str
    error: bool  # the meaning would change (refused), rather than ignored harmlessly


@dataclass(frozen=True)
class StackFile:
    """The stack file and what the conversion found."""

    document: dict[str, Any]
    findings: tuple[Finding, ...]
    # The configs and secrets made from files, named by their content: per `configs.KEY` or
    # `secrets.KEY`, the file as the user reads its path (for the plan's causes).
    files: Mapping[str, str] = field(default_factory=dict)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.error)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.error)

    def text(self) -> str:
        return dump_stack(self.document)

    def only(self, services: Sequence[str]) -> StackFile:
        """The same file with only `services` (and every top-level network, volume, secret
        and config, which stack deploy creates where missing)."""
        kept = {n: s for n, s in self.document["services"].items() if n in services}
        return replace(self, document={**self.document, "services": kept})

    def file_names(self, service: Mapping[str, Any]) -> dict[str, str]:
        """Per `configs.KEY` / `secrets.KEY` made from a file that `service` mounts, the name
        of its content."""
        names = {}
        for kind in FILE_KINDS:
            for reference in service.get(kind) or []:
                key = reference["source"] if isinstance(reference, Mapping) else reference
                if f"{kind}.{key}" in self.files:
                    names[f"{kind}.{key}"] = self.document[kind][key]["name"]
        return names


def stack_deploy(
    project: str, engine: Engine, stack: StackFile, registry_auth: bool, prune: bool = True
) -> Command:
    """`docker stack deploy` of the stack file, given on stdin; `--prune` removes the services
    the file no longer declares; `--with-registry-auth` hands the client's registry login to
    the nodes (credentials never on the command line)."""
    argv = ["docker", "stack", "deploy", "--compose-file", "-", *(["--prune"] if prune else [])]
    if registry_auth:
        argv.append("--with-registry-auth")
    return Command((*argv, project), engine.cli_environment(), stack.text())


class _Conversion:
    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def refuse(self, path: str, message: str) -> None:
        self.findings.append(Finding(path, message, True))

    def warn(self, path: str, message: str) -> None:
        self.findings.append(Finding(path, message, False))

    def unknown(self, path: str) -> None:
        key = path.rsplit(".", 1)[-1]
        self.refuse(path, f"a {STACK_VERSION} stack file has no {key}: Swarm would not honour it")


def convert(model: Mapping[str, Any]) -> StackFile:
    """The stack file for Compose's resolved model (`docker compose config` output with the
    spec's overrides), with every finding, in the model's path order."""
    conversion = _Conversion()
    document: dict[str, Any] = {"version": STACK_VERSION}
    services = model.get("services") or {}
    document["services"] = {
        name: _service(conversion, name, services[name]) for name in sorted(services)
    }
    for kind, known in _TOP_KEYS.items():
        entries = model.get(kind) or {}
        if entries:
            document[kind] = {
                name: _top_level(conversion, f"{kind}.{name}", kind, entries[name] or {}, known)
                for name in sorted(entries)
            }
    for key in sorted(model):
        if key not in {"name", "services", *_TOP_KEYS} and not key.startswith("x-"):
            conversion.unknown(key)
    return StackFile(document, tuple(sorted(conversion.findings, key=lambda f: f.path)))


def _service(conversion: _Conversion, name: str, service: Mapping[str, Any]) -> dict[str, Any]:
    at = f"services.{name}"
    result: dict[str, Any] = {}
    for key in sorted(service):
        value = service[key]
        path = f"{at}.{key}"
        if key in _KEPT:
            result[key] = copy.deepcopy(value)
        elif key in ("command", "entrypoint"):
            if value is not None:  # Compose writes null for "the image's own"
                result[key] = copy.deepcopy(value)
        elif key == "ports":
            result["ports"] = [_port(conversion, f"{path}.{i}", p) for i, p in enumerate(value)]
        elif key == "volumes":
            mounts = [_mount(conversion, f"{path}.{i}", m) for i, m in enumerate(value)]
            result["volumes"] = mounts + result.get("volumes", [])  # after tmpfs's, if any
        elif key == "tmpfs":
            _tmpfs(conversion, path, value, result)
        elif key == "healthcheck":
            result["healthcheck"] = _healthcheck(conversion, path, value)
        elif key == "extra_hosts":
            result["extra_hosts"] = _extra_hosts(value)
        elif key == "networks":
            result["networks"] = _service_networks(conversion, path, value)
        elif key in ("secrets", "configs"):
            result[key] = [
                _file_reference(conversion, f"{path}.{i}", key, reference)
                for i, reference in enumerate(value)
            ]
        elif key == "depends_on":
            _depends_on(conversion, path, value)
        elif key == "build":
            if service.get("image"):
                conversion.warn(
                    path,
                    "Swarm pulls the image, it does not build: build and push it first (`deploy build ENV --push`)",
                )
            else:
                conversion.refuse(path, "Swarm cannot build: give the service an image")
        elif key == "links":
            _links(conversion, path, value)
        elif key == "profiles":
            conversion.warn(
                path,
                f"Compose has applied the profiles ({', '.join(value)} active): the stack file has none",
            )
        elif key in _IGNORED:
            conversion.warn(path, _IGNORED[key])
        elif key in ("deploy", "scale", "restart"):
            pass  # below, together
        elif key in _REFUSED:
            conversion.refuse(path, _REFUSED[key])
        elif key in _RESOURCE_KEYS:
            conversion.refuse(path, "Swarm takes resource limits from deploy.resources only")
        elif key.startswith("x-"):
            pass  # extensions mean nothing to Swarm
        else:
            conversion.unknown(path)
    deploy = _deploy(conversion, f"{at}.deploy", service)
    if "image" not in service and "build" not in service:
        conversion.refuse(f"{at}.image", "Swarm needs an image for every service")
    result["deploy"] = with_rolling_defaults(deploy, result)
    return with_fingerprint(result)


def _port(conversion: _Conversion, path: str, port: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key in ("mode", "target", "published", "protocol"):
        if key in port:
            result[key] = port[key]
    published = port.get("published")
    if isinstance(published, str):
        if published.isdigit():
            result["published"] = int(published)
        else:
            conversion.refuse(
                f"{path}.published", f"Swarm publishes one port per entry, not {published!r}"
            )
    if port.get("host_ip"):
        conversion.refuse(
            f"{path}.host_ip",
            f"Swarm publishes on every address of a node, not on {port['host_ip']} only",
        )
    for key in sorted(set(port) - {"mode", "target", "published", "protocol", "host_ip"}):
        if key in ("name", "app_protocol"):
            conversion.warn(
                f"{path}.{key}", "Swarm has no port names or application protocols: left out"
            )
        else:
            conversion.unknown(f"{path}.{key}")
    return result


def _mount(conversion: _Conversion, path: str, mount: Mapping[str, Any]) -> dict[str, Any]:
    result = {key: mount[key] for key in mount if key in _VOLUME_KEYS}
    kind = mount.get("type")
    if kind == "bind":
        conversion.warn(
            f"{path}.source",
            f"Swarm does not create a bind mount's source: {mount.get('source')} must exist on every node a task may run on",
        )
    elif kind not in ("volume", "tmpfs"):
        conversion.refuse(
            f"{path}.type", f"Swarm services mount volumes, binds and tmpfs, not {kind}"
        )
    options = {"bind": {"propagation"}, "volume": {"nocopy"}, "tmpfs": {"size"}}
    for key in sorted(set(mount) - _VOLUME_KEYS):
        given = mount[key] or {}
        if key not in options or not isinstance(given, Mapping):
            conversion.unknown(f"{path}.{key}")
            continue
        kept = {option: given[option] for option in sorted(given) if option in options[key]}
        if isinstance(kept.get("size"), str):
            kept["size"] = _whole_number(conversion, f"{path}.tmpfs.size", kept["size"], 10)
        for option in sorted(set(given) - options[key]):
            if (key, option) != ("bind", "create_host_path"):  # the warning above says it
                conversion.unknown(f"{path}.{key}.{option}")
        if kept:
            result[key] = kept
    return result


def _tmpfs(conversion: _Conversion, path: str, value: Any, result: dict[str, Any]) -> None:
    """Swarm ignores a service's `tmpfs:`; a tmpfs mount among its volumes means the same."""
    for index, entry in enumerate([value] if isinstance(value, str) else value):
        if ":" in entry:
            conversion.refuse(
                f"{path}.{index}",
                f"tmpfs options ({entry}): use a volumes entry of type tmpfs (tmpfs.size)",
            )
        else:
            result.setdefault("volumes", []).append({"type": "tmpfs", "target": entry})


def _healthcheck(conversion: _Conversion, path: str, check: Mapping[str, Any]) -> dict[str, Any]:
    known = {"test", "interval", "timeout", "retries", "start_period", "disable"}
    for key in sorted(set(check) - known):
        if key == "start_interval":
            conversion.warn(
                f"{path}.{key}",
                "Swarm (engine API 1.41) has no start_interval: checks run every interval from the start",
            )
        else:
            conversion.unknown(f"{path}.{key}")
    return {key: copy.deepcopy(check[key]) for key in check if key in known}


def _extra_hosts(value: Any) -> Any:
    """Compose writes `name=address`; the 3.8 stack file reads `name:address`."""
    if isinstance(value, Mapping):
        return [f"{name}:{address}" for name, address in value.items()]
    return [entry.replace("=", ":", 1) if "=" in entry else entry for entry in value]


def _service_networks(conversion: _Conversion, path: str, networks: Any) -> Any:
    if not isinstance(networks, Mapping):
        return list(networks)
    known = {"aliases", "ipv4_address", "ipv6_address"}
    result: dict[str, Any] = {}
    for name in sorted(networks):
        entry = networks[name]
        if entry is None:
            result[name] = None
            continue
        for key in sorted(set(entry) - known):
            conversion.unknown(f"{path}.{name}.{key}")
        result[name] = {key: copy.deepcopy(entry[key]) for key in entry if key in known} or None
    return result


def _file_reference(conversion: _Conversion, path: str, kind: str, reference: Any) -> Any:
    """A secret's or config's reference; a secret's target below /run/secrets is written
    relative to it, as every engine places a relative secret target there; the file mode,
    which Compose writes as octal text ("0400"), is a number."""
    if not isinstance(reference, Mapping):
        return reference
    result = dict(reference)
    target = result.get("target")
    if kind == "secrets" and isinstance(target, str) and target.startswith("/run/secrets/"):
        result["target"] = target.removeprefix("/run/secrets/")
    if isinstance(result.get("mode"), str):
        result["mode"] = _whole_number(conversion, f"{path}.mode", result["mode"], 8)
    return result


def _whole_number(conversion: _Conversion, path: str, text: str, base: int) -> int | str:
    """A number Compose writes as text; text that is none stays, refused."""
    try:
        return int(text, base)
    except ValueError:
        conversion.refuse(path, f"expected a number, not {text!r}")
        return text


def _depends_on(conversion: _Conversion, path: str, value: Any) -> None:
    entries = value if isinstance(value, Mapping) else {name: {} for name in value}
    for name in sorted(entries):
        condition = (entries[name] or {}).get("condition", "service_started")
        if condition == "service_started":
            conversion.warn(
                f"{path}.{name}",
                "Swarm starts services in no order: tasks must wait for their dependencies themselves",
            )
        else:
            conversion.refuse(
                f"{path}.{name}.condition", f"Swarm cannot wait for {name} ({condition})"
            )


def _links(conversion: _Conversion, path: str, links: list[str]) -> None:
    for index, link in enumerate(links):
        service, _, alias = link.partition(":")
        if alias and alias != service:
            conversion.refuse(
                f"{path}.{index}", f"Swarm has no links: the alias {alias} would not resolve"
            )
        else:
            conversion.warn(
                f"{path}.{index}", f"Swarm has no links: {service} resolves by its service name"
            )


def _deploy(conversion: _Conversion, path: str, service: Mapping[str, Any]) -> dict[str, Any]:
    """`deploy:` as the 3.8 stack file has it; `scale` and `restart` become its replicas and
    restart policy where it has none (Swarm restarts every task otherwise)."""
    given = service.get("deploy") or {}
    result: dict[str, Any] = {}
    for key in sorted(given):
        value = given[key]
        if key not in _DEPLOY_KEYS:
            conversion.unknown(f"{path}.{key}")
        elif key == "mode" and value not in ("replicated", "global"):
            conversion.refuse(
                f"{path}.mode",
                f"docker CLI 20.10 deploys replicated and global services, not {value}",
            )
        elif key == "resources":
            resources = _resources(conversion, f"{path}.resources", value)
            if resources:
                result["resources"] = resources
        elif value != {}:
            result[key] = copy.deepcopy(value)
    if "replicas" not in result and "scale" in service:
        result["replicas"] = service["scale"]
    restart = service.get("restart")
    if restart and "restart_policy" not in result:
        policy, _, attempts = str(restart).partition(":")
        condition = {"no": "none", "always": "any", "unless-stopped": "any"}.get(policy, policy)
        result["restart_policy"] = {"condition": condition}
        if attempts:
            result["restart_policy"]["max_attempts"] = int(attempts)
        if policy == "unless-stopped":
            conversion.warn(
                path.rsplit(".", 1)[0] + ".restart",
                "Swarm has no unless-stopped: tasks restart after any exit (restart_policy any)",
            )
    return result


def _resources(conversion: _Conversion, path: str, resources: Mapping[str, Any]) -> dict[str, Any]:
    known = {"limits": {"cpus", "memory"}, "reservations": {"cpus", "memory", "generic_resources"}}
    result: dict[str, Any] = {}
    for part in sorted(resources):
        if part not in known:
            conversion.unknown(f"{path}.{part}")
            continue
        entries = resources[part] or {}
        for key in sorted(set(entries) - known[part]):
            conversion.unknown(f"{path}.{part}.{key}")
        kept = {key: entries[key] for key in sorted(entries) if key in known[part]}
        if "cpus" in kept:
            kept["cpus"] = str(kept["cpus"])  # Compose writes a number, the 3.8 file a string
        if "memory" in kept:
            kept["memory"] = str(kept["memory"])
        if kept:
            result[part] = kept
    return result


def _top_level(
    conversion: _Conversion, path: str, kind: str, entry: Mapping[str, Any], known: frozenset[str]
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key in sorted(entry):
        if key not in known:
            if key.startswith("x-"):
                continue
            conversion.unknown(f"{path}.{key}")
        elif key == "ipam":
            ipam = _ipam(conversion, f"{path}.ipam", entry[key])
            if ipam:
                result["ipam"] = ipam
        elif key == "driver" and kind == "networks" and entry[key] == "bridge":
            conversion.refuse(
                f"{path}.driver",
                "a bridge network is local to one node: Swarm services need an overlay network",
            )
        else:
            result[key] = copy.deepcopy(entry[key])
    return result


def _ipam(conversion: _Conversion, path: str, ipam: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key in sorted(ipam):
        if key == "driver":
            result["driver"] = ipam["driver"]
        elif key == "config":
            result["config"] = []
            for index, pool in enumerate(ipam["config"]):
                for option in sorted(set(pool) - {"subnet"}):
                    conversion.unknown(f"{path}.config.{index}.{option}")
                result["config"].append({"subnet": pool["subnet"]} if "subnet" in pool else {})
        else:
            conversion.unknown(f"{path}.{key}")
    return result


# ---------------------------------------------------------------------------------------------
# Fingerprints


def service_fingerprint(service: Mapping[str, Any]) -> str | None:
    """The fingerprint a converted service carries."""
    return ((service.get("deploy") or {}).get("labels") or {}).get(FINGERPRINT_LABEL)


def with_fingerprint(service: Mapping[str, Any]) -> dict[str, Any]:
    """The converted service with its fingerprint labels in `deploy.labels` (replacing any
    there): a digest of the service without them, and one per top-level key."""
    bare = without_fingerprint(service)
    result = copy.deepcopy(bare)
    labels = result["deploy"].setdefault("labels", {})
    labels[FINGERPRINT_LABEL] = _digest(bare)
    labels[KEY_FINGERPRINTS_LABEL] = ",".join(
        f"{key}={digest}" for key, digest in sorted(key_fingerprints(bare).items())
    )
    return result


def label_mapping(given: Any) -> dict[str, Any]:
    """Labels as a compose file gives them: a mapping, or a list of `name=value`."""
    if isinstance(given, Mapping):
        return dict(given)
    return dict(str(entry).partition("=")[::2] for entry in given)


def without_fingerprint(service: Mapping[str, Any]) -> dict[str, Any]:
    """The service as its fingerprint sees it: deploy.labels (a mapping, as Compose writes it,
    or a list of `name=value`) without the fingerprint labels; no labels at all if none remain."""
    result = copy.deepcopy(dict(service))
    deploy = result.get("deploy")
    if isinstance(deploy, dict) and "labels" in deploy:
        labels = label_mapping(deploy["labels"])
        kept = {k: v for k, v in labels.items() if k not in _FINGERPRINT_LABELS}
        if kept:
            deploy["labels"] = kept
        else:
            del deploy["labels"]
    return result


def key_fingerprints(service: Mapping[str, Any]) -> dict[str, str]:
    """Each top-level key's digest (of a service without its fingerprint labels); `deploy`'s
    without the replicas, which the swarm's service spec shows as they are."""
    return {
        key: _digest(
            {k: v for k, v in value.items() if k != "replicas"} if key == "deploy" else value
        )[:12]
        for key, value in service.items()
    }


# Left out of the fingerprints: the files a service reads are compared by FILES_LABEL itself.
_FINGERPRINT_LABELS = frozenset({FINGERPRINT_LABEL, KEY_FINGERPRINTS_LABEL, FILES_LABEL})


def with_bind_digests(stack: StackFile, digests: Mapping[str, Mapping[str, str]]) -> StackFile:
    """The stack file with, per service, the digests of the files it bind-mounts (by path as
    shown) in its FILES_LABEL."""
    services = dict(stack.document["services"])
    for name, files in sorted(digests.items()):
        service = copy.deepcopy(services[name])
        labels = service.setdefault("deploy", {}).setdefault("labels", {})
        labels[FILES_LABEL] = json.dumps(dict(files), sort_keys=True, separators=(",", ":"))
        services[name] = service
    return replace(stack, document={**stack.document, "services": services})


def bind_digests(service: Mapping[str, Any]) -> dict[str, str] | None:
    """The digests a converted or running service's FILES_LABEL holds; None without one."""
    return parse_files_label(((service.get("deploy") or {}).get("labels") or {}).get(FILES_LABEL))


def parse_files_label(label: str | None) -> dict[str, str] | None:
    if label is None:
        return None
    try:
        found = json.loads(label)
    except ValueError:
        return None
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else None


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# Rolling updates


def with_rolling_defaults(deploy: Mapping[str, Any], service: Mapping[str, Any]) -> dict[str, Any]:
    """`deploy:` with safe update and rollback settings wherever the compose file gives none:
    a failed update rolls back (Swarm's default pauses half-way); a new task starts before the
    old one stops, unless both cannot run at once (a host-mode port, or a single replica's
    writable volume); the update watches each task for as long as its health check needs to
    call it unhealthy."""
    order = "stop-first" if needs_stop_first(deploy, service) else "start-first"
    monitor = format_duration(update_monitor(service.get("healthcheck")))
    result = dict(deploy)
    result["update_config"] = {
        "failure_action": "rollback",
        "order": order,
        "monitor": monitor,
        **(deploy.get("update_config") or {}),
    }
    result["rollback_config"] = {
        "failure_action": "pause",
        "order": order,
        "monitor": monitor,
        **(deploy.get("rollback_config") or {}),
    }
    return result


def needs_stop_first(deploy: Mapping[str, Any], service: Mapping[str, Any]) -> bool:
    """Two tasks of the service cannot run side by side: a port published in host mode is
    taken on the node, or one replica's writable volume or bind would have two writers."""
    host_ports = any(
        p.get("mode") == "host" and p.get("published") for p in service.get("ports") or []
    )
    single = deploy.get("mode", "replicated") == "replicated" and deploy.get("replicas", 1) == 1
    writable = any(
        m.get("type") in ("volume", "bind") and not m.get("read_only")
        for m in service.get("volumes") or []
    )
    return host_ports or (single and writable)


def update_monitor(healthcheck: Mapping[str, Any] | None) -> float:
    """Seconds to watch an updated task: its health check's interval times its retries (Docker's
    defaults where not given), at least Swarm's own monitor."""
    if healthcheck is None or not _checks(healthcheck):
        return SWARM_MONITOR
    retries = int(healthcheck.get("retries", HEALTH_RETRIES))
    return max(SWARM_MONITOR, _health_interval(healthcheck) * retries)


def _checks(healthcheck: Mapping[str, Any] | None) -> bool:
    """Whether the compose file gives the service a health check of its own."""
    return bool(
        healthcheck
        and not healthcheck.get("disable")
        and healthcheck.get("test") not in (None, ["NONE"])
    )


def _health_interval(healthcheck: Mapping[str, Any]) -> float:
    return parse_duration(healthcheck["interval"]) if "interval" in healthcheck else HEALTH_INTERVAL


def update_seconds(service: Mapping[str, Any]) -> float:
    """About how long Swarm takes to update every task of a converted service: its tasks in
    batches of `parallelism`, each batch healthy after one health check interval (Swarm calls a
    task running once healthy) and followed by the update delay, then the monitor."""
    deploy = service.get("deploy") or {}
    update = deploy.get("update_config") or {}
    replicas = int(deploy.get("replicas", 1)) if deploy.get("mode") != "global" else 1
    parallelism = int(update.get("parallelism", 1)) or replicas  # 0: all at once
    batches = -(-replicas // parallelism)
    check = service.get("healthcheck") or {}
    interval = _health_interval(check) if _checks(check) else 0.0
    delay = parse_duration(update.get("delay", "0s"))
    monitor = parse_duration(update.get("monitor", format_duration(SWARM_MONITOR)))
    return batches * (interval + delay) + monitor


def slow_updates(stack: StackFile, wait_timeout: float) -> StackFile:
    """The stack with a warning for each service Swarm would take longer to update than a
    deploy waits: the deploy would fail while Swarm is still at work."""
    slow = []
    for name, service in stack.document["services"].items():
        needed = update_seconds(service)
        if needed > wait_timeout:
            slow.append(
                Finding(
                    f"services.{name}.deploy",
                    f"Swarm needs about {needed:g}s to update every task (health check interval "
                    f"and delay per batch, then the monitor), more than deploy.wait_timeout "
                    f"({wait_timeout:g}s): raise deploy.wait_timeout or shorten the health check",
                    False,
                )
            )
    return replace(stack, findings=tuple(sorted((*stack.findings, *slow), key=lambda f: f.path)))


def named_by_content(
    stack: StackFile, project: str, read: Callable[[str], bytes], shown: Callable[[str], str]
) -> StackFile:
    """The stack with each config and secret made from a file named by its content:
    `<name>_<first hex digits of its SHA-256>` (the name Compose gives it, `PROJECT_KEY`, kept
    in front). Swarm cannot change a config or secret: a changed file is then a new one, which
    the services mounting it are updated to (the old one stays until none uses it). A file
    that cannot be read is an error; `shown` is how the plan names a file."""
    document = copy.deepcopy(stack.document)
    findings, files = list(stack.findings), {}
    for kind, singular in FILE_KINDS.items():
        for key, entry in (document.get(kind) or {}).items():
            path = entry.get("file")
            if entry.get("external") or not isinstance(path, str):
                continue
            try:
                content = read(path)
            except OSError as e:
                findings.append(
                    Finding(f"{kind}.{key}.file", f"cannot read {path}: {e.strerror or e}", True)
                )
                continue
            digest = hashlib.sha256(content).hexdigest()[:CONTENT_DIGEST_LENGTH]
            name = f"{entry.get('name') or f'{project}_{key}'}_{digest}"
            if len(name) > NAME_LIMIT:
                findings.append(
                    Finding(
                        f"{kind}.{key}.name",
                        f"{name} is longer than the {NAME_LIMIT} characters Swarm allows a "
                        f"{singular}'s name (with the digest of its content): give it a shorter "
                        "name",
                        True,
                    )
                )
                continue
            entry["name"] = name
            files[f"{kind}.{key}"] = shown(path)
    return StackFile(document, tuple(sorted(findings, key=lambda f: f.path)), files)


def parse_duration(text: str) -> float:
    """Seconds of a Go duration as Compose writes it (`1m30s`, `500ms`)."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def format_duration(seconds: float) -> str:
    milliseconds = round(seconds * 1000)
    return f"{milliseconds // 1000}s" if milliseconds % 1000 == 0 else f"{milliseconds}ms"


# ---------------------------------------------------------------------------------------------
# Where a finding is


def located_issues(stack: StackFile, spec: Spec) -> tuple[list[ConfigIssue], list[ConfigIssue]]:
    """The stack's errors and warnings as ConfigIssues, each in the compose file (and at the
    line) that declares it: the last file declaring the longest part of its path, as later
    files override earlier ones; the spec where no compose file has the entry."""
    trees = [(str(path), _key_lines(path)) for path in spec.compose_files]
    trees.insert(0, (str(spec.path), dict(spec.lines)))  # overrides of the spec

    def issue(finding: Finding) -> ConfigIssue:
        parts = finding.path.split(".")
        best: tuple[int, str, int] | None = None
        for file, lines in trees:
            # At least the entry (`services.web`): every file has `services`.
            for depth in range(len(parts), min(2, len(parts)) - 1, -1):
                line = lines.get(".".join(parts[:depth]))
                if line is not None:
                    if best is None or depth >= best[0]:
                        best = (depth, file, line)
                    break
        if best is None:
            return ConfigIssue(str(spec.path), None, finding.path, finding.message)
        return ConfigIssue(best[1], best[2], finding.path, finding.message)

    return [issue(f) for f in stack.errors], [issue(f) for f in stack.warnings]


def _key_lines(path: Path) -> dict[str, int]:
    """The line of every mapping key path in a compose file (lists are not entered: the
    model's list entries need not be the file's)."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}  # Compose has read it already; without lines the finding names the file only
    lines: dict[str, int] = {}

    def walk(node: yaml.Node | None, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                path = f"{prefix}{key.value}"
                lines.setdefault(path, key.start_mark.line + 1)
                walk(value, f"{path}.")

    walk(root, "")
    return lines
