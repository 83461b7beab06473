"""Stage 3: the desired state, as Compose resolves it (deployer.compose.resolve asks it).

Compose does all compose semantics (merging files, interpolation, `env_file:`): deployer hands it
the compose files, the merged variables and the spec's overrides, and reads back
`docker compose config --format json`. From that model each service gets a fingerprint: one short
hash per part of its configuration (per variable for `environment`). The fingerprint travels on
the containers as a label, so drift is exact and every difference can be named. Every target
starts from this model: the swarm target converts it into a stack file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from deployer.core.errors import ConfigError, ConfigIssue, DeployerError
from deployer.core.inputs import RELOAD_SIGNAL_LABEL, SECRET, Digest, ServiceInputs, input_notes
from deployer.core.reference import ImageReference, is_reference
from deployer.core.spec import Spec
from deployer.core.variables import SecretPolicy, Variables

FINGERPRINT_LABEL = "dev.deployer.fingerprint"
ENVIRONMENT_LABEL = "dev.deployer.environment"
DEPLOYER_LABELS = frozenset({FINGERPRINT_LABEL, ENVIRONMENT_LABEL})  # deployer's own, on `up`
# libyaml's dumper where PyYAML has it: a 200-service override takes ~30 ms in pure Python.
SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
# Parts of a service that do not make Compose recreate its containers (Compose's hash leaves
# them out too); replicas are compared by counting containers instead.
UNHASHED_KEYS = frozenset({"build", "pull_policy", "depends_on", "profiles", "scale"})


@dataclass(frozen=True)
class ComposeFiles:
    """What every `docker compose` call of an environment reads, whichever engine it acts on:
    the project's name, its compose files, and the variables they are interpolated with."""

    project: str
    paths: tuple[Path, ...]
    variables: Mapping[str, str]
    secret_names: frozenset[str] = frozenset()

    @classmethod
    def of(cls, spec: Spec, variables: Variables) -> ComposeFiles:
        return cls(spec.project, spec.compose_files, variables.values(), variables.secret_names())


START_FIRST, STOP_FIRST = "start-first", "stop-first"
DEFAULT_ORDER = "default order"


@dataclass(frozen=True)
class UpdateOrder:
    """How new containers of a service replace its old ones: started beside them first, or
    only once they are stopped; `reason` says why a service is updated stop-first."""

    start_first: bool
    reason: str = ""

    def __str__(self) -> str:
        return START_FIRST if self.start_first else f"{STOP_FIRST} ({self.reason})"


@dataclass(frozen=True)
class DesiredService:
    name: str
    image: str
    replicas: int
    fingerprint: Mapping[str, str]
    secret_parts: frozenset[str]  # fingerprint parts whose values are secret
    restart: str = "no"  # the engine's restart policy, e.g. "no", "always", "on-failure:3"
    # Sent instead of recreating when only files it reads changed (RELOAD_SIGNAL_LABEL).
    reload_signal: str | None = None
    order: UpdateOrder = UpdateOrder(False, DEFAULT_ORDER)


def update_order(service: Mapping[str, Any]) -> UpdateOrder:
    """The order its `deploy.update_config.order` says (Compose's and Swarm's default: stop-first),
    unless two of its containers cannot run at once: they would take the same host port, name
    or address, or write to the same data."""
    declared = ((service.get("deploy") or {}).get("update_config") or {}).get("order")
    if declared != START_FIRST:
        return UpdateOrder(False, f"order: {declared}" if declared else DEFAULT_ORDER)
    blockers = _start_first_blockers(service)
    return UpdateOrder(False, ", ".join(blockers)) if blockers else UpdateOrder(True)


def _start_first_blockers(service: Mapping[str, Any]) -> list[str]:
    blockers = []
    network_mode = str(service.get("network_mode") or "")
    if network_mode == "host":
        blockers.append("host network")
    elif network_mode.startswith(("service:", "container:")):
        blockers.append(f"shares the network of {network_mode}")
    if service.get("container_name"):
        blockers.append(f"container_name {service['container_name']}")
    published = sorted(
        {str(p["published"]) for p in service.get("ports") or [] if p.get("published")},
        key=lambda port: (len(port), port),
    )
    if published:
        blockers.append(f"publishes {', '.join(published)}")
    if service.get("mac_address"):
        blockers.append(f"fixed address {service['mac_address']}")
    for network in (service.get("networks") or {}).values():
        fixed = [(network or {}).get(k) for k in ("ipv4_address", "ipv6_address", "mac_address")]
        blockers += [f"fixed address {address}" for address in fixed if address]
    for mount in service.get("volumes") or []:
        if mount.get("type") in ("volume", "bind") and not mount.get("read_only"):
            source = mount.get("source")
            if not source:
                blockers.append(f"mounts an anonymous volume at {mount.get('target')}")
            else:
                kind = "volume " if mount["type"] == "volume" else ""
                blockers.append(f"mounts {kind}{source} read-write")
    return blockers


@dataclass(frozen=True)
class DesiredState:
    environment: str
    files: ComposeFiles
    overrides: Mapping[str, Mapping[str, Any]]  # per service, the compose entries of the spec
    services: Mapping[str, DesiredService]
    model: Mapping[str, Any]  # the resolved compose model (values as Compose prints them)
    wait_timeout: float
    # How to read the same model before interpolation (`${NAME}` as written): where a secret is
    # referenced. Only a release's record needs it, so it is read (once) only then.
    read_written: Callable[[], Mapping[str, Any]] = field(default=dict, compare=False, repr=False)
    # What reading the files the services read said (a path missing, a socket), for the plan.
    notes: tuple[str, ...] = ()
    # Compose's config hash of each service as declared, without deployer's labels: what a
    # container made by plain Compose carries when it runs as declared. Asked only when the
    # engine has such containers.
    compose_hashes: Mapping[str, str] = field(default_factory=dict)
    # Services `up` gets without deployer's labels: adopted containers, made so by Compose.
    unlabelled: frozenset[str] = frozenset()

    @cached_property
    def written(self) -> Mapping[str, Any]:
        """The model as written; empty when the environment has no secret variable."""
        return self.read_written()

    @cached_property
    def override(self) -> str:
        """The override `up` gets: the spec's overrides plus the fingerprint labels."""
        labelled = {n: s for n, s in self.services.items() if n not in self.unlabelled}
        return labelled_override(self.overrides, self.environment, labelled)


def with_file_digests(
    desired: DesiredState, inputs: ServiceInputs, digests: Mapping[str, Digest]
) -> DesiredState:
    """`desired` with the content of the files each service reads in its fingerprint: one part
    per path (`file:conf/app.conf`), secret where it is a secret's file."""
    services = dict(desired.services)
    for name, found in inputs.by_service.items():
        parts, secret = dict(services[name].fingerprint), set(services[name].secret_parts)
        for entry in found:
            value = digests[entry.path].value
            if value is None:
                continue
            parts[entry.part] = value
            if entry.kind == SECRET:
                secret.add(entry.part)
        services[name] = replace(services[name], fingerprint=parts, secret_parts=frozenset(secret))
    notes = input_notes(inputs.by_service, digests)
    return replace(desired, services=services, notes=(*desired.notes, *notes))


def environment_override(spec: Spec) -> str | None:
    """The spec's `environment:` overrides as a compose file, for Compose to interpolate."""
    services = {
        name: {"environment": dict(override.environment)}
        for name, override in sorted(spec.services.items())
        if override.environment
    }
    return dump_compose({"services": services}) if services else None


def identifiers(model: Mapping[str, Any], project: str) -> set[str]:
    """The names an environment's model uses for things: project, services, images (and each part
    of their names), containers, hosts, networks and volumes."""
    names = {project, *model.get("services", {})}
    for kind in ("networks", "volumes"):
        for key, entry in (model.get(kind) or {}).items():
            names |= {key, str((entry or {}).get("name", key))}
    for service in model.get("services", {}).values():
        names |= {str(service.get(k)) for k in ("container_name", "hostname") if service.get(k)}
        image = str(service.get("image", ""))
        names.add(image)
        if is_reference(image):
            reference = ImageReference.parse(image)
            names |= {reference.repository, *reference.path.split("/"), reference.tag or ""}
    return names - {""}


def named_services(desired: DesiredState, services: Sequence[str]) -> list[str]:
    """The services a command names (all when it names none); one it does not know is an
    error."""
    unknown = sorted(set(services) - set(desired.services))
    if unknown:
        raise DeployerError(
            f"no service {', '.join(unknown)} in {desired.environment} "
            f"(services: {', '.join(desired.services)})"
        )
    return list(services) or sorted(desired.services)


def check_services_exist(spec: Spec, model: Mapping[str, Any]) -> None:
    known = model.get("services", {})
    issues = [
        spec.issue(
            f"services.{name}",
            f"no service {name!r} in the compose files (services: {', '.join(sorted(known)) or 'none'})",
        )
        for name in sorted(spec.services)
        if name not in known
    ]
    if issues:
        raise ConfigError(issues)


def spec_overrides(spec: Spec, model: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per service, the compose entries that carry out the spec's overrides."""
    entries: dict[str, dict[str, Any]] = {}
    for name, override in sorted(spec.services.items()):
        resolved = model["services"][name]
        entry: dict[str, Any] = {}
        if override.image is not None:
            entry["image"] = override.image
        elif override.tag is not None:
            entry["image"] = _with_tag(str(resolved.get("image", "")), override.tag)
        if override.replicas is not None:
            if "replicas" in (resolved.get("deploy") or {}):
                entry["deploy"] = {"replicas": override.replicas}
            else:
                # `scale`, unlike deploy.replicas, is outside Compose's config hash: scaling
                # then starts new containers without recreating the running ones.
                entry["scale"] = override.replicas
        if override.order is not None:
            # Where Swarm reads it too: one setting for every target.
            deploy = entry.setdefault("deploy", {})
            deploy["update_config"] = {"order": override.order}
        if override.environment:
            entry["environment"] = dict(override.environment)
        if entry:
            entries[name] = entry
    return entries


def with_overrides(
    model: Mapping[str, Any], entries: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The resolved model with the overrides' images and replicas set, as `up` will set them."""
    result = copy.deepcopy(dict(model))
    for name, entry in entries.items():
        service = result["services"][name]
        if "image" in entry:
            service["image"] = entry["image"]
        if "scale" in entry:
            service["scale"] = entry["scale"]
        deploy = entry.get("deploy", {})
        if "replicas" in deploy:
            service["deploy"]["replicas"] = deploy["replicas"]
        if "update_config" in deploy:
            found = service.setdefault("deploy", {}) or {}
            found["update_config"] = {
                **(found.get("update_config") or {}),
                **deploy["update_config"],
            }
            service["deploy"] = found
    return result


class Replacement(dict[str, Any]):
    """A service's whole configuration in an override: it replaces the service's configuration
    from the compose files (`!override`, Compose >= 2.24.4) instead of merging into it."""


SafeDumper.add_representer(
    Replacement, lambda dumper, data: dumper.represent_mapping("!override", data)
)


class _ComposeLoader(yaml.SafeLoader):
    """Reads back what dump_compose wrote, `!override` included."""


def _replacement(loader: yaml.SafeLoader, node: yaml.Node) -> Replacement:
    assert isinstance(node, yaml.MappingNode)
    return Replacement({str(k): v for k, v in loader.construct_mapping(node, deep=True).items()})


_ComposeLoader.add_constructor("!override", _replacement)


def load_compose(text: str) -> Any:
    return yaml.load(text, Loader=_ComposeLoader)


def labelled_override(
    entries: Mapping[str, Mapping[str, Any]],
    environment: str,
    services: Mapping[str, DesiredService],
) -> str:
    """The override `up` gets: the spec's overrides plus the fingerprint label of every service."""
    document: dict[str, dict[str, Any]] = {
        name: Replacement(entry) if isinstance(entry, Replacement) else dict(entry)
        for name, entry in entries.items()
    }
    for name, service in services.items():
        entry = document.setdefault(name, {})
        # Added to the entry's own labels: a Replacement carries the service's labels.
        entry["labels"] = {
            **(entry.get("labels") or {}),
            FINGERPRINT_LABEL: json.dumps(
                service.fingerprint, sort_keys=True, separators=(",", ":")
            ),
            ENVIRONMENT_LABEL: environment,
        }
    return dump_compose({"services": document})


def dump_compose(document: Mapping[str, Any]) -> str:
    """A compose file's text (deployer's overrides, given to Compose on stdin)."""
    return yaml.dump(
        document, Dumper=SafeDumper, sort_keys=True, allow_unicode=True, default_flow_style=False
    )


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def with_image(
    desired: DesiredState, name: str, image: str, fingerprint: Mapping[str, str]
) -> DesiredState:
    """`desired` with service `name` deployed as `image` under `fingerprint`: the same
    configuration otherwise (its override entry, its model)."""
    entry = desired.overrides.get(name, {})
    entry = (Replacement if isinstance(entry, Replacement) else dict)({**entry, "image": image})
    model_services = dict(desired.model.get("services", {}))
    if name in model_services:
        model_services[name] = {**model_services[name], "image": image}
    service = replace(desired.services[name], image=image, fingerprint=fingerprint)
    return replace(
        desired,
        overrides={**desired.overrides, name: entry},
        services={**desired.services, name: service},
        model={**desired.model, "services": model_services},
    )


def image_part(image: str) -> str:
    """The fingerprint's part for a service's `image:`."""
    return _digest(image)


def replicas_of(service: Mapping[str, Any]) -> int:
    replicas = (service.get("deploy") or {}).get("replicas")
    if replicas is None:
        replicas = service.get("scale", 1)
    return int(replicas)


def restart_policy_of(service: Mapping[str, Any]) -> str:
    """The restart policy Compose gives the containers: deploy.restart_policy wins over restart."""
    condition = ((service.get("deploy") or {}).get("restart_policy") or {}).get("condition")
    if condition is not None:
        return {"none": "no", "any": "always"}.get(str(condition), str(condition))
    return str(service.get("restart") or "no")


def fingerprint(
    service: Mapping[str, Any], is_secret: SecretPolicy
) -> tuple[dict[str, str], frozenset[str]]:
    """One hash per part of a resolved service; `environment` one per variable."""
    parts: dict[str, str] = {}
    secret_parts = set()
    for key, value in service.items():
        if key in UNHASHED_KEYS or key.startswith("x-"):
            continue
        if key == "environment":
            for name, env_value in (value or {}).items():
                parts[f"environment.{name}"] = _digest(env_value)
                if is_secret(name):
                    secret_parts.add(f"environment.{name}")
            continue
        if key == "labels":
            value = {k: v for k, v in (value or {}).items() if k not in DEPLOYER_LABELS}
        elif key == "deploy":
            value = {k: v for k, v in (value or {}).items() if k != "replicas"}
        parts[key] = _digest(value)
    return parts, frozenset(secret_parts)


def desired_services(
    model: Mapping[str, Any], is_secret: SecretPolicy
) -> dict[str, DesiredService]:
    services = {}
    for name, service in sorted(model.get("services", {}).items()):
        parts, secret_parts = fingerprint(service, is_secret)
        services[name] = DesiredService(
            name,
            str(service.get("image", "")),
            replicas_of(service),
            parts,
            secret_parts,
            restart_policy_of(service),
            ((service.get("labels") or {}).get(RELOAD_SIGNAL_LABEL) or None),
            update_order(service),
        )
    return services


def check_images(spec: Spec, services: Mapping[str, DesiredService]) -> None:
    issues = []
    for name, service in services.items():
        if is_reference(service.image):  # an image ID (a pinned rollback) parses too
            continue
        override = spec.services.get(name)
        if override and (override.image or override.tag):
            at = f"services.{name}.{'image' if override.image else 'tag'}"
            issues.append(spec.issue(at, f"invalid image reference {service.image!r}"))
        else:
            issues.append(
                ConfigIssue(
                    str(spec.compose_files[0]),
                    None,
                    f"services.{name}.image",
                    f"invalid image reference {service.image!r}"
                    if service.image
                    else "no image (deployer deploys images, not builds)",
                )
            )
    if issues:
        raise ConfigError(issues)


def _with_tag(image: str, tag: str) -> str:
    """The compose file's image at the spec's tag; an image that is no reference is kept for
    check_images to report."""
    if not is_reference(image):
        return image
    return str(ImageReference.parse(image).with_tag(tag))


class _StackDumper(SafeDumper):  # type: ignore[misc,valid-type]
    """docker CLI 20.10 reads YAML with go-yaml v2, where a plain y, Y, n or N is a boolean:
    such strings are quoted."""


_StackDumper.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^[yYnN]$"), list("yYnN"))


def dump_stack(document: Mapping[str, Any]) -> str:
    """A stack file's text: keys in the document's order, no line folded (width)."""
    return yaml.dump(
        dict(document),
        Dumper=_StackDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=2**31 - 1,
    )
