"""Stage 1: load and check `environments/<name>.yml` into a `Spec`.

YAML is read into plain data while remembering the line of every key, so that each problem can be
reported as `FILE:LINE: path.in.spec: message`. Problems are gathered and raised together.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from deployer.core.errors import ConfigError, ConfigIssue, UnknownEnvironmentError, shown_path
from deployer.core.reference import TAG_PATTERN, is_reference
from deployer.core.variables import SecretPolicy

SPEC_SUFFIXES = (".yml", ".yaml")
# Shipped inside the package; schemas/environment.schema.json at the top of the repository links here.
SCHEMA_PATH = Path(__file__).parents[1] / "environment.schema.json"
ENVIRONMENTS_VARIABLE = "DEPLOYER_ENVIRONMENTS"
DEFAULT_WAIT_TIMEOUT = 120.0
# Names the CLI uses for commands: an environment may not take one (`deploy diff` must stay a command).
COMMAND_NAMES = frozenset(
    {"audit", "diff", "down", "env", "history", "lock", "logs", "prune", "render", "restart"}
    | {"promote", "rollback", "status", "up", "validate", "version"}
    | {"build", "serve"}
)
# A spec is a small file: far more nodes than this means an alias bomb, refused before it expands.
MAX_YAML_NODES = 100_000
# `engine.orchestrator`: what runs the environment on its engine.
COMPOSE, SWARM = "compose", "swarm"
Path_ = tuple[str | int, ...]


def dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


@dataclass(frozen=True)
class ServiceOverride:
    image: str | None = None
    tag: str | None = None
    replicas: int | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    order: str | None = None  # deploy.update_config.order: start-first | stop-first


@dataclass(frozen=True)
class Registry:
    """Credentials for pulls from one registry; the password is read from a variable."""

    server: str
    username: str
    password_env: str


@dataclass(frozen=True)
class Watch:
    """What `deploy serve` does with an environment (`watch:`)."""

    interval: float | None = None  # seconds between rounds (None: `deploy serve --interval`)
    apply: str = "notify"  # notify | auto | off: what a difference leads to
    git: bool = False  # pull the environments folder (a git checkout) before each round


@dataclass(frozen=True)
class Spec:
    """A checked environment declaration; paths are absolute."""

    name: str
    path: Path
    project: str
    compose_files: tuple[Path, ...]
    env_files: tuple[Path, ...]
    secrets: frozenset[str]  # declared secret (the registry password's variable included)
    services: Mapping[str, ServiceOverride]
    confirm: bool
    wait_timeout: float
    engine_host: str | None
    on_failure: str = "rollback"
    orchestrator: str = COMPOSE  # SWARM: `engine_host` is a swarm manager, the project a stack
    # `engine.hosts`: several identical hosts, deployed `batch` at a time (None: one host).
    engine_hosts: tuple[str, ...] | None = None
    batch: int | str = 1  # a number of hosts, or a percentage of them ("25%")
    # `engine.nodes` of a swarm: each node's own engine by its hostname, for what is done node
    # by node (prune: images are per node).
    engine_nodes: Mapping[str, str] = field(default_factory=dict)
    batch_pause: float = 0.0
    keep_releases: int = 3
    keep_history: int = 10
    registry: Registry | None = None
    immutable_tags: bool = False  # a moved tag is an error instead of an update
    not_secret: frozenset[str] = (
        frozenset()
    )  # names that a secret word in them does not make secret
    # `x-promoted-from: {environment, release}`, written by `deploy promote`; releases carry it.
    promoted_from: Mapping[str, Any] | None = None
    watch: Watch = field(default_factory=Watch)
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_secret(self) -> SecretPolicy:
        return SecretPolicy(self.secrets, self.not_secret)

    def interpolated_texts(self) -> list[str]:
        """Every text Compose interpolates for this environment: the compose files and the
        spec's overrides (a service's `env_file:` files are Compose's to read)."""
        texts = [path.read_text(encoding="utf-8", errors="replace") for path in self.compose_files]
        for override in self.services.values():
            texts += [override.image or "", override.tag or "", *override.environment.values()]
        return texts

    def issue(self, path: str, message: str) -> ConfigIssue:
        """A problem located at `path` in this spec (the line of its nearest known parent)."""
        parts = path.split(".")
        while parts and ".".join(parts) not in self.lines:
            parts.pop()
        return ConfigIssue(str(self.path), self.lines.get(".".join(parts)), path, message)


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


class _Budget:
    def __init__(self, file: str) -> None:
        self.file, self.left = file, MAX_YAML_NODES

    def spend(self, node: yaml.Node) -> None:
        self.left -= 1
        if self.left < 0:
            raise ConfigError(
                [
                    ConfigIssue(
                        self.file,
                        node.start_mark.line + 1,
                        "",
                        f"YAML expands to more than {MAX_YAML_NODES} nodes (alias bomb?); refused",
                    )
                ]
            )


_scalars = yaml.SafeLoader("")


def _build(
    node: yaml.Node, path: Path_, lines: dict[str, int], issues: list[ConfigIssue], budget: _Budget
) -> Any:
    budget.spend(node)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            budget.spend(key_node)
            key = (
                _scalars.construct_object(key_node)
                if isinstance(key_node, yaml.ScalarNode)
                else None
            )
            if key_node.tag == "tag:yaml.org,2002:merge":
                issues.append(
                    ConfigIssue(
                        budget.file,
                        key_node.start_mark.line + 1,
                        dotted(path),
                        "merge keys (<<) are not supported",
                    )
                )
                continue
            if not isinstance(key, str | int | float | bool) or key is None:
                issues.append(
                    ConfigIssue(
                        budget.file,
                        key_node.start_mark.line + 1,
                        dotted(path),
                        "keys must be plain strings",
                    )
                )
                continue
            key = str(key)
            child = (*path, key)
            if key in result:
                issues.append(
                    ConfigIssue(
                        budget.file, key_node.start_mark.line + 1, dotted(child), "duplicate key"
                    )
                )
            lines[dotted(child)] = key_node.start_mark.line + 1
            result[key] = _build(value_node, child, lines, issues, budget)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            lines[dotted((*path, index))] = item.start_mark.line + 1
            items.append(_build(item, (*path, index), lines, issues, budget))
        return items
    return _scalars.construct_object(node)


def load_yaml(path: Path) -> tuple[Any, dict[str, int]]:
    """Parse one YAML document into plain data and the line of every key path."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(file, None, "", "file not found")]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            [ConfigIssue(file, e.object[: e.start].count(b"\n") + 1, "", "not valid UTF-8 text")]
        ) from e
    except OSError as e:
        raise ConfigError([ConfigIssue(file, None, "", f"cannot read: {e.strerror}")]) from e
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        problem = e.problem or e.context or "invalid YAML"
        raise ConfigError([ConfigIssue(file, line, "", f"invalid YAML: {problem}")]) from e
    except yaml.YAMLError as e:
        raise ConfigError([ConfigIssue(file, None, "", f"invalid YAML: {e}")]) from e
    if node is None:
        raise ConfigError(
            [
                ConfigIssue(
                    file, None, "", "empty file: expected a mapping with project and compose_files"
                )
            ]
        )
    lines: dict[str, int] = {"": node.start_mark.line + 1}
    issues: list[ConfigIssue] = []
    data = _build(node, (), lines, issues, _Budget(file))
    if issues:
        raise ConfigError(issues)
    return data, lines


# ---------------------------------------------------------------------------------------------
# Schema


@cache
def schema() -> dict[str, Any]:
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def _schema_issues(data: Any, lines: Mapping[str, int], file: str) -> Iterator[ConfigIssue]:
    from jsonschema import Draft202012Validator  # costly import, needed only here

    def line_of(path: Path_) -> int | None:
        parts = list(path)
        while dotted(tuple(parts)) not in lines:
            parts.pop()
        return lines[dotted(tuple(parts))]

    validator = Draft202012Validator(schema())
    for error in sorted(
        validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]
    ):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {})
            for key in sorted(
                k for k in error.instance if k not in known and not str(k).startswith("x-")
            ):
                child = (*path, key)
                yield ConfigIssue(file, line_of(child), dotted(child), "unknown key")
            continue
        if error.validator == "pattern" and path == ("project",):
            message = f"invalid project name {error.instance!r}: use lowercase letters, digits, '_' and '-', starting with a letter or digit"
        elif error.validator == "type":
            message = f"expected {_types(error.validator_value)}, got {_type_name(error.instance)}"
        else:
            message = error.message
        yield ConfigIssue(file, line_of(path), dotted(path), message)


def _validity_marker(data: Any) -> Path:
    """Where a spec's content that passed the schema is remembered.

    Importing and running jsonschema is a large part of a no-op deploy; whether some content
    matches the schema never changes, so it is checked once per content and schema.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deployer"
    content = json.dumps([schema(), data], sort_keys=True, default=str).encode("utf-8")
    return cache / "valid-specs" / hashlib.sha256(content).hexdigest()


def _remember(marker: Path) -> None:
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # a cache: without it the next run validates again


def _types(value: Any) -> str:
    names = value if isinstance(value, list) else [value]
    words = {"object": "a mapping", "array": "a list", "integer": "an integer", "null": "nothing"}
    return " or ".join(words.get(n, f"a {n}") for n in names)


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------------------------
# Specs


def environments_folder(option: str | None) -> Path:
    return Path(option or os.environ.get(ENVIRONMENTS_VARIABLE) or "environments")


def find_specs(folder: Path) -> dict[str, Path]:
    """The environments declared in `folder`, by name (the file's stem)."""
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix in SPEC_SUFFIXES and path.is_file() and not path.name.startswith("."):
            found.setdefault(path.stem, path)
    return found


def spec_path(folder: Path, name: str) -> Path:
    specs = find_specs(folder)
    if name not in specs:
        raise UnknownEnvironmentError(name, str(folder), sorted(specs))
    return specs[name]


def load_spec(path: Path) -> Spec:
    """Read, validate and check one spec; all problems are raised together as a ConfigError."""
    path = path.absolute()
    file = str(path)
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(
            [
                ConfigIssue(
                    file,
                    lines[""],
                    "",
                    f"expected a mapping with project and compose_files, got {_type_name(data)}",
                )
            ]
        )
    known_valid = _validity_marker(data)
    issues = []
    if not known_valid.exists():
        issues = sorted(_schema_issues(data, lines, file), key=lambda i: (i.line or 0, i.path))
    name = path.stem
    if name in COMMAND_NAMES:
        issues.append(
            ConfigIssue(
                file, None, "", f"environment name {name!r} is a deploy command; rename the file"
            )
        )
    if issues:
        raise ConfigError(issues)

    folder = path.parent.resolve()

    def existing_files(key: str) -> tuple[Path, ...]:
        paths = []
        for index, entry in enumerate(data.get(key, [])):
            resolved = (folder / entry).resolve()
            if not resolved.is_file():
                issues.append(
                    ConfigIssue(
                        file,
                        lines.get(f"{key}.{index}"),
                        f"{key}.{index}",
                        f"file not found: {shown_path(str(resolved))}",
                    )
                )
            paths.append(resolved)
        return tuple(paths)

    compose_files = existing_files("compose_files")
    env_files = existing_files("env_files")
    services = {}
    for service, override in data.get("services", {}).items():
        at = f"services.{service}"
        if "image" in override and "tag" in override:
            issues.append(ConfigIssue(file, lines.get(at), at, "set image or tag, not both"))
        tag = override.get("tag")
        if tag is not None and "$" not in tag and not TAG_PATTERN.match(tag):
            issues.append(
                ConfigIssue(file, lines.get(f"{at}.tag"), f"{at}.tag", f"invalid tag {tag!r}")
            )
        image = override.get("image")
        if image is not None and "$" not in image and not is_reference(image):
            issues.append(
                ConfigIssue(
                    file,
                    lines.get(f"{at}.image"),
                    f"{at}.image",
                    f"invalid image reference {image!r}",
                )
            )
        environment = {k: _env_text(v) for k, v in override.get("environment", {}).items()}
        services[service] = ServiceOverride(
            image, tag, override.get("replicas"), environment, override.get("order")
        )
    deploy = data.get("deploy", {})
    keep_releases = deploy.get("keep_releases", 3)
    # Helm keeps 10 releases; never fewer than those whose images prune keeps.
    keep_history = deploy.get("keep_history", max(10, keep_releases))
    if keep_history < keep_releases:
        issues.append(
            ConfigIssue(
                file,
                lines.get("deploy.keep_history"),
                "deploy.keep_history",
                f"keep_history ({keep_history}) must be at least keep_releases ({keep_releases}):"
                " prune keeps the images of that many releases for rollback",
            )
        )
    issues += _engine_issues(data.get("engine", {}), lines, file)
    if issues:
        raise ConfigError(issues)

    _remember(known_valid)
    watch = data.get("watch", {})
    return Spec(
        name=name,
        path=path.resolve(),
        project=data["project"],
        compose_files=compose_files,
        env_files=env_files,
        # The registry password's variable is a secret whatever its name.
        secrets=frozenset(data.get("secrets", []))
        | ({data["registry"]["password_env"]} if "registry" in data else set()),
        services=services,
        confirm=deploy.get("confirm", name == "production"),
        immutable_tags=deploy.get("immutable_tags", name == "production"),
        wait_timeout=float(deploy.get("wait_timeout", DEFAULT_WAIT_TIMEOUT)),
        engine_host=data.get("engine", {}).get("host"),
        engine_hosts=tuple(data["engine"]["hosts"]) if "hosts" in data.get("engine", {}) else None,
        orchestrator=data.get("engine", {}).get("orchestrator", COMPOSE),
        engine_nodes=dict(data.get("engine", {}).get("nodes", {})),
        batch=deploy.get("batch", 1),
        batch_pause=float(deploy.get("batch_pause", 0)),
        on_failure=deploy.get("on_failure", "rollback"),
        keep_releases=keep_releases,
        keep_history=keep_history,
        registry=Registry(**data["registry"]) if "registry" in data else None,
        not_secret=frozenset(data.get("not_secret", [])),
        promoted_from=_promoted_from(data.get("x-promoted-from")),
        watch=Watch(
            interval=float(watch["interval"]) if "interval" in watch else None,
            apply=watch.get("apply", "notify") or "off",  # YAML 1.1 reads a bare off as false
            git=watch.get("git", False),
        ),
        lines=lines,
    )


def _engine_issues(
    engine: Mapping[str, Any], lines: Mapping[str, int], file: str
) -> list[ConfigIssue]:
    """`host` and `hosts` exclude each other; a host is named once; a swarm has one `host`, and
    only a swarm has `nodes`."""
    if "host" in engine and "hosts" in engine:
        return [ConfigIssue(file, lines.get("engine"), "engine", "set host or hosts, not both")]
    if engine.get("orchestrator") == SWARM and "hosts" in engine:
        at = "engine.orchestrator"
        message = "a swarm is reached through one manager: set engine.host, not engine.hosts"
        return [ConfigIssue(file, lines.get(at), at, message)]
    if "nodes" in engine and engine.get("orchestrator") != SWARM:
        at = "engine.nodes"
        message = "only a swarm has nodes (engine.orchestrator: swarm)"
        return [ConfigIssue(file, lines.get(at), at, message)]
    issues, seen = [], set()
    for index, url in enumerate(engine.get("hosts", [])):
        address = url.rstrip("/")
        if address in seen:
            at = f"engine.hosts.{index}"
            issues.append(ConfigIssue(file, lines.get(at), at, f"host {url} is listed twice"))
        seen.add(address)
    return issues


def _env_text(value: str | int | float | bool) -> str:
    # YAML `true` means the text "true" in a container's environment, as Compose writes it.
    return str(value).lower() if isinstance(value, bool) else str(value)


def _promoted_from(value: Any) -> Mapping[str, Any] | None:
    """What `deploy promote` wrote: the source environment and its release (None if unreadable)."""
    if not isinstance(value, dict) or not isinstance(value.get("environment"), str):
        return None
    release = value.get("release")
    return {
        "environment": value["environment"],
        "release": release if isinstance(release, int) else None,
    }
