"""The Docker SDK edge: every call deployer makes to an engine, every SDK error wrapped here."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from deployer.core.errors import (
    DeployerError,
    EngineUnreachableError,
    NotSwarmManagerError,
    PullError,
    PushError,
    RegistryError,
)
from deployer.core.inputs import (
    CHUNK,
    FILE,
    FOLDER,
    LINK,
    Digest,
    FileInput,
    content_digest,
    folder_digest,
    missing,
    not_content,
)
from deployer.core.reference import ImageReference

if TYPE_CHECKING:
    import docker

DEFAULT_ENGINE_HOST = "unix:///var/run/docker.sock"
SDK_TIMEOUT = 60  # seconds per request
PROJECT_LABEL = "com.docker.compose.project"
STACK_LABEL = "com.docker.stack.namespace"  # a swarm has no stack object: its services' label
STATE_IMAGE = "deployer-state:1"
_EMPTY_TAR = bytes(1024)  # a tar archive with no members: two zero blocks
_ENGINE_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class Engine:
    """The Docker engine an environment targets and how to reach it: one connection profile,
    handed both to the docker CLI (Compose) and to the SDK. Passed down explicitly, never global.

    TLS is read as the docker CLI reads it (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) and applies to
    tcp:// hosts. ssh:// hosts are reached through this process's one SSH connection to each
    (deployer.ssh): the CLI keeps its ssh:// URL, the SDK speaks to a socket forwarded over it."""

    host: str
    cert_path: str | None = None  # a folder with ca.pem, cert.pem, key.pem: TLS, verified

    @classmethod
    def choose(cls, spec_host: str | None, process_env: Mapping[str, str]) -> Engine:
        host = spec_host or process_env.get("DOCKER_HOST") or DEFAULT_ENGINE_HOST
        if not (host.startswith("tcp://") and process_env.get("DOCKER_TLS_VERIFY")):
            return cls(host)
        config = process_env.get("DOCKER_CONFIG") or os.path.join(
            process_env.get("HOME") or os.path.expanduser("~"), ".docker"
        )
        return cls(host, process_env.get("DOCKER_CERT_PATH") or config)

    def cli_environment(self) -> dict[str, str]:
        """The variables that point the docker CLI (and Compose) at this engine. DOCKER_HOST
        takes precedence over any DOCKER_CONTEXT; TLS settings of the caller's shell are
        replaced, so that the CLI connects exactly as the SDK does."""
        if self.cert_path is None:
            return {"DOCKER_HOST": self.host, "DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": ""}
        return {
            "DOCKER_HOST": self.host,
            "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": self.cert_path,
        }

    @property
    def over_ssh(self) -> bool:
        return self.host.startswith("ssh://")

    @property
    def on_this_machine(self) -> bool:
        """Reached through a unix socket: its bind mounts name this machine's paths."""
        return self.host.startswith("unix://")

    def sdk_arguments(self, ssh_tunnel: str | None = None) -> dict[str, Any]:
        """docker.APIClient's arguments, but the API version (negotiated) and TLS given as the
        arguments of docker.tls.TLSConfig. An ssh:// engine is reached at `ssh_tunnel`, the
        local end of the socket forwarded to it (SshConnections.tunnel)."""
        if self.over_ssh:
            if ssh_tunnel is None:
                raise ValueError(f"{self.host}: the SDK reaches an ssh:// engine through a tunnel")
            return {"base_url": f"unix://{ssh_tunnel}", "timeout": SDK_TIMEOUT}
        arguments: dict[str, Any] = {"base_url": self.host, "timeout": SDK_TIMEOUT}
        if self.cert_path is not None:
            arguments["tls"] = {
                "client_cert": (
                    os.path.join(self.cert_path, "cert.pem"),
                    os.path.join(self.cert_path, "key.pem"),
                ),
                "ca_cert": os.path.join(self.cert_path, "ca.pem"),
                "verify": True,
            }
        return arguments


# The API version agreed with each engine, once per command (process): a /version round trip.
_negotiated: dict[Engine, str] = {}


def negotiate(server: Mapping[str, Any], newest: str) -> str:
    """The API version to speak, as the docker CLI chooses it: the engine's own, or the newest
    the SDK knows when the engine is newer still."""
    offered = str(server.get("ApiVersion") or newest)
    version = min(offered, newest, key=_version_key)
    minimum = str(server.get("MinAPIVersion") or version)
    if _version_key(version) < _version_key(minimum):
        raise DeployerError(
            f"the engine requires API version {minimum} or later; deployer's Docker SDK speaks up to {newest}"
        )
    return version


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class Marker:
    """A marker container: its ID, when the engine created it (engine clock), its labels."""

    id: str
    created: float
    labels: Mapping[str, str]


@dataclass(frozen=True)
class SwarmConfig:
    """A swarm config: its ID, name, when the swarm created it (its clock), labels and data."""

    id: str
    name: str
    created: float
    labels: Mapping[str, str]
    data: bytes

    @classmethod
    def of(cls, found: Mapping[str, Any]) -> SwarmConfig:
        spec = found["Spec"]
        return cls(
            found["ID"],
            spec["Name"],
            engine_timestamp(found["CreatedAt"]),
            dict(spec.get("Labels") or {}),
            base64.b64decode(spec.get("Data") or ""),
        )


class EngineClient:
    """A connection to one engine. Raises only DeployerErrors."""

    def __init__(self, engine: Engine) -> None:
        import docker  # costly import, paid only by commands that talk to an engine
        import docker.constants
        import docker.tls

        self.engine = engine
        if engine.over_ssh:
            from deployer.infra.runner import (
                SSH,  # the runner starts the SSH connection's processes
            )

            arguments = engine.sdk_arguments(SSH.tunnel(engine.host))
        else:
            arguments = engine.sdk_arguments()

        def connect(version: str) -> docker.APIClient:
            api = docker.APIClient(**arguments, version=version)
            if "tls" in arguments:
                # The engine's CA is DOCKER_CERT_PATH's ca.pem, as for the docker CLI: requests
                # would otherwise verify against REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE if set.
                api.trust_env = False
            return api

        with self._errors():
            if "tls" in arguments:
                arguments["tls"] = docker.tls.TLSConfig(**arguments["tls"])
            version = _negotiated.get(engine)
            if version is None:
                newest = docker.constants.DEFAULT_DOCKER_API_VERSION
                probe = connect(newest)
                version = negotiate(probe.version(api_version=False), newest)
                probe.close()
                _negotiated[engine] = version
            self._api: docker.APIClient = connect(version)

    @contextmanager
    def _errors(self, image: str | None = None) -> Iterator[None]:
        import docker.errors

        try:
            yield
        except docker.errors.ImageNotFound as e:
            raise PullError(image or "?", _explain(e)) from e
        except docker.errors.APIError as e:
            if image is not None:
                raise PullError(image, _explain(e)) from e
            raise DeployerError(f"Docker engine at {self.engine.host}: {_explain(e)}") from e
        except _unreachable() as e:
            raise EngineUnreachableError(self.engine.host, _explain(e)) from e

    def project_containers(self, project: str) -> list[dict[str, Any]]:
        with self._errors():
            return self._api.containers(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})  # type: ignore[no-any-return]

    def swarm_manager(self) -> None:
        """Checks that this engine is a manager of a swarm (it answers for the whole swarm)."""
        with self._errors():
            swarm = self._api.info().get("Swarm") or {}
        if not swarm.get("ControlAvailable"):
            raise NotSwarmManagerError(self.engine.host, swarm.get("LocalNodeState") or "inactive")

    def stack_services(self, project: str) -> list[dict[str, Any]]:
        """The services of the stack `project`, with their running and desired task counts."""
        with self._errors():
            return self._api.services(  # type: ignore[no-any-return,no-untyped-call]
                filters={"label": f"{STACK_LABEL}={project}"}, status=True
            )

    def stack_networks(self, project: str) -> list[dict[str, Any]]:
        """The networks of the stack `project` (stack deploy labels them as its services)."""
        with self._errors():
            return self._api.networks(filters={"label": f"{STACK_LABEL}={project}"})  # type: ignore[no-any-return]

    def stack_files(self, project: str) -> list[tuple[str, str]]:
        """The configs and secrets of the stack `project` (stack deploy labels them as its
        services): ("configs" or "secrets", name) each."""
        label = {"label": f"{STACK_LABEL}={project}"}
        with self._errors():
            configs = self._api.configs(filters=label)  # type: ignore[no-untyped-call]
            secrets = self._api.secrets(filters=label)
        return [("configs", c["Spec"]["Name"]) for c in configs] + [
            ("secrets", s["Spec"]["Name"]) for s in secrets
        ]

    def service_tasks(self, service_ids: list[str]) -> list[dict[str, Any]]:
        """The tasks of these services, old ones too (Swarm keeps a few per slot)."""
        if not service_ids:
            return []
        with self._errors():
            return self._api.tasks(filters={"service": service_ids})  # type: ignore[no-any-return,no-untyped-call]

    def service_logs(self, service_id: str, tail: int) -> list[str]:
        """The last lines of a service's logs, from every task on every node."""
        with self._errors():
            raw = self._api.service_logs(service_id, stdout=True, stderr=True, tail=str(tail))
            text = b"".join(raw).decode("utf-8", errors="replace")
        return text.splitlines()[-tail:]

    def nodes(self) -> list[dict[str, Any]]:
        with self._errors():
            return self._api.nodes()

    def swarm_node_id(self) -> str:
        """The ID of the swarm node this engine is ("" for an engine in no swarm)."""
        with self._errors():
            return str((self._api.info().get("Swarm") or {}).get("NodeID") or "")

    def service_images(self) -> list[str]:
        """The image of every service on the swarm, of any stack, as its spec pins it."""
        with self._errors():
            services = self._api.services()  # type: ignore[no-untyped-call]
        return [s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] for s in services]

    def images(self) -> list[dict[str, Any]]:
        with self._errors():
            return self._api.images()  # type: ignore[no-any-return]

    def pull(self, image: str, auth: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Pull `image`, yielding the engine's progress events; `auth` goes to the engine only."""
        reference = ImageReference.parse(image)
        with self._errors(image):
            events = self._api.pull(
                reference.repository,
                tag=reference.pull_tag,  # by digest where there is one: the tag may have moved
                stream=True,
                decode=True,
                auth_config=dict(auth) if auth else None,
            )
            for event in events:
                if "error" in event:
                    raise PullError(image, str(event["error"]))
                yield event

    def registry_digest(self, image: str, auth: Mapping[str, str] | None = None) -> str | None:
        """The digest `image`'s tag points to in its registry now, asked of the engine, which
        reads the manifest without pulling it; None when the registry has no such tag."""
        import docker.errors

        reference = ImageReference.parse(image)
        try:
            found = self._api.inspect_distribution(  # type: ignore[no-untyped-call]
                reference.normalized, auth_config=dict(auth) if auth else None
            )
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as e:
            raise RegistryError(reference.registry, image, _explain(e)) from e
        except _unreachable() as e:
            raise EngineUnreachableError(self.engine.host, _explain(e)) from e
        return str(found["Descriptor"]["digest"])

    def local_image(self, image: str) -> dict[str, Any] | None:
        """The engine's record of a local image (Id, RepoDigests, ...); None when absent."""
        import docker.errors

        with self._errors():
            try:
                return self._api.inspect_image(image)  # type: ignore[no-any-return,no-untyped-call]
            except docker.errors.ImageNotFound:
                return None

    def tag(self, image_id: str, image: str) -> None:
        """Tag the local image `image_id` as `image` (moving the tag if it names another)."""
        reference = ImageReference.parse(image)
        repository = str(replace(reference, tag=None, digest=None))
        with self._errors():
            self._api.tag(image_id, repository, reference.tag or "latest", force=True)

    def push(self, image: str, auth: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Push `image` (a tag), yielding the engine's progress events; `auth` goes to the
        engine only. The last event's `aux` carries the digest the registry stored."""
        import docker.errors

        reference = ImageReference.parse(image)
        try:
            events = self._api.push(
                reference.repository,
                tag=reference.tag or "latest",
                stream=True,
                decode=True,
                auth_config=dict(auth) if auth else None,
            )
            for event in events:
                if "error" in event:
                    raise PushError(image, str(event["error"]).strip())
                yield event
        except docker.errors.APIError as e:
            raise PushError(image, _explain(e)) from e
        except _unreachable() as e:
            raise EngineUnreachableError(self.engine.host, _explain(e)) from e

    def images_in_use(self) -> set[str]:
        """IDs of the images any container on the engine was created from, running or not."""
        with self._errors():
            return {c["ImageID"] for c in self._api.containers(all=True)}

    def dangling_images(self) -> list[dict[str, Any]]:
        with self._errors():
            return self._api.images(filters={"dangling": True})  # type: ignore[no-any-return]

    def remove_image(self, image_id: str) -> None:
        """Remove an image no container uses, with all its tags."""
        with self._errors():
            self._api.remove_image(image_id, force=True)

    def layers_size(self) -> int:
        """Bytes the engine's image layers take on disk."""
        with self._errors():
            return int(self._api.df().get("LayersSize") or 0)

    # deployer's own state on the engine: volumes with labels for records, a created (never
    # started) container for the lock, since a container name is claimed atomically.
    def volumes(self, labels: list[str]) -> list[dict[str, Any]]:
        with self._errors():
            found = self._api.volumes(filters={"label": labels}).get("Volumes") or []
        return list(found)

    def create_volume(self, name: str, labels: dict[str, str]) -> dict[str, str]:
        """Create volume `name`, or find it; the labels it has (not `labels` if it existed)."""
        with self._errors():
            created = self._api.create_volume(name=name, labels=labels)
        return dict(created.get("Labels") or {})

    def remove_volume(self, name: str) -> None:
        """Remove a volume; one already gone is no error."""
        import docker.errors

        with self._errors(), contextlib.suppress(docker.errors.NotFound):
            self._api.remove_volume(name)

    def clock(self) -> float:
        """The engine's time now: every operator of an engine shares its clock, not their own."""
        with self._errors():
            return _timestamp(self._api.info()["SystemTime"])

    def claim_name(self, name: str, labels: dict[str, str]) -> str | None:
        """Create the marker container `name`; its ID, or None when that name is taken already."""
        import docker.errors

        self._ensure_state_image()
        with self._errors():
            try:
                created = self._api.create_container(
                    STATE_IMAGE, command=["none"], name=name, labels=labels
                )
            except docker.errors.APIError as e:
                if e.status_code == 409:
                    return None
                raise
        return str(created["Id"])

    def marker(self, name: str) -> Marker | None:
        """The marker container `name`, None when there is none."""
        import docker.errors

        with self._errors():
            try:
                found = self._api.inspect_container(name)
            except docker.errors.NotFound:
                return None
        labels = dict(found["Config"]["Labels"] or {})
        return Marker(found["Id"], _timestamp(found["Created"]), labels)

    def markers(self, labels: list[str]) -> list[Marker]:
        """The marker containers that carry all of `labels` (`key=value`)."""
        with self._errors():
            found = self._api.containers(all=True, filters={"label": labels})
        return [Marker(c["Id"], float(c["Created"]), dict(c["Labels"] or {})) for c in found]

    def remove_marker(self, marker_id: str) -> None:
        """Remove exactly this marker (by ID, never by name: the name may be someone else's now)."""
        import docker.errors

        with self._errors(), contextlib.suppress(docker.errors.NotFound):
            self._api.remove_container(marker_id, force=True)

    def read_path(self, found: FileInput) -> Digest:
        """The digest of `found` as the engine's host has it: read through a container made
        (never started) of the empty image, with the path bind-mounted read-only, whose
        archive the engine streams. A missing path, a socket or a device is said, not read."""
        import docker.errors
        import docker.types

        self._ensure_state_image()
        mount = docker.types.Mount("/input", found.path, type="bind", read_only=True)
        with self._errors():
            try:
                created = self._api.create_container(
                    STATE_IMAGE,
                    command=["none"],
                    host_config=self._api.create_host_config(mounts=[mount]),
                    labels={"dev.deployer.reads": found.path},
                )
            except docker.errors.APIError as e:
                if "does not exist" in str(e.explanation or e):
                    return missing(found)
                raise
        try:
            with self._errors():
                stream, info = self._api.get_archive(created["Id"], "/input")
                kind = _special_kind(int(info.get("mode", 0)))
                if kind is not None:
                    return not_content(found.shown, kind)
                return _archive_digest(_Chunks(stream), found.shown)
        finally:
            self.remove_marker(created["Id"])

    def kill(self, container_id: str, signal: str) -> None:
        """Send `signal` to the container's main process."""
        with self._errors():
            self._api.kill(container_id, signal=signal)

    def _ensure_state_image(self) -> None:
        """An empty image to create marker containers from, made on the engine itself."""
        with self._errors():
            if self._api.images(name=STATE_IMAGE):
                return
            state = ImageReference.parse(STATE_IMAGE)
            self._api.import_image_from_data(_EMPTY_TAR, repository=state.repository, tag=state.tag)

    # deployer's state on a swarm: configs, which the managers replicate (Raft); a config's
    # name is claimed atomically across the swarm.
    def configs(self, labels: list[str]) -> list[SwarmConfig]:
        """The swarm's configs that carry all of `labels` (`key=value`), with their data."""
        with self._errors():
            found = self._api.configs(filters={"label": labels})  # type: ignore[no-untyped-call]
        return [SwarmConfig.of(config) for config in found]

    def create_config(self, name: str, labels: dict[str, str], data: bytes) -> str | None:
        """Create the config `name`; its ID, or None when that name is taken already."""
        import docker.errors

        with self._errors():
            try:
                created = self._api.create_config(name, data, labels=labels)
            except docker.errors.APIError as e:
                if e.status_code == 409:
                    return None
                raise
        return str(created["ID"])

    def config(self, name: str) -> SwarmConfig | None:
        """The config named `name`; None when there is none."""
        import docker.errors

        with self._errors():
            try:
                found = SwarmConfig.of(self._api.inspect_config(name))  # type: ignore[no-untyped-call]
            except docker.errors.NotFound:
                return None
        # The engine also looks a config up by ID prefix: only the name itself counts here.
        return found if found.name == name else None

    def remove_config(self, config_id: str) -> None:
        """Remove exactly this config (by ID: its name may be someone else's now); one already
        gone is no error."""
        import docker.errors

        with self._errors(), contextlib.suppress(docker.errors.NotFound):
            self._api.remove_config(config_id)  # type: ignore[no-untyped-call]

    def start_record(self, container_id: str) -> tuple[float, int]:
        """When the container last started (by the engine's clock) and how often it restarted."""
        with self._errors():
            found = self._api.inspect_container(container_id)
        return engine_timestamp(found["State"]["StartedAt"]), int(found.get("RestartCount") or 0)

    def system_time(self) -> float:
        """The engine's clock, in seconds since the epoch."""
        with self._errors():
            return engine_timestamp(str(self._api.info()["SystemTime"]))

    def logs(self, container_id: str, tail: int) -> list[str]:
        with self._errors():
            raw: bytes = self._api.logs(container_id, tail=tail, timestamps=False)
        return raw.decode("utf-8", errors="replace").splitlines()


def engine_timestamp(text: str) -> float:
    """Seconds since the epoch of an engine time (RFC 3339 with nanoseconds, as in StartedAt)."""
    found = _ENGINE_TIME.match(text)
    if found is None:
        raise ValueError(f"not an engine time: {text!r}")
    whole, fraction, zone = found.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + float(f"0.{fraction or 0}")


def _timestamp(text: str) -> float:
    """Seconds since the epoch from the engine's RFC 3339 times."""
    return datetime.fromisoformat(text).timestamp()


def read_paths(
    engines: Sequence[tuple[str, EngineClient]], found: Mapping[str, FileInput]
) -> dict[str, dict[str, Digest]]:
    """Each path's digest where each engine's host has it, by path and then by the engine's
    name: read through the engines, four at a time."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        reads = {
            (path, name): pool.submit(client.read_path, entry)
            for path, entry in sorted(found.items())
            for name, client in engines
        }
        by_path: dict[str, dict[str, Digest]] = {}
        for (path, name), future in reads.items():
            by_path.setdefault(path, {})[name] = future.result()
    return by_path


# Go's os.FileMode bits, as the engine's archive stat gives a path's mode.
_GO_MODES = ((1 << 24, "socket"), (1 << 25, "named pipe"), (1 << 26, "device"))


def _special_kind(mode: int) -> str | None:
    return next((kind for bit, kind in _GO_MODES if mode & bit), None)


class _Chunks(io.RawIOBase):
    """The engine's archive stream as a file tarfile reads, one chunk at a time."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._rest = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            self._rest = next(self._chunks, b"")
            if not self._rest:
                return 0
        size = min(len(buffer), len(self._rest))
        buffer[:size], self._rest = self._rest[:size], self._rest[size:]
        return size


def _archive_digest(stream: io.RawIOBase, shown: str) -> Digest:
    """The digest of the archive of `/input`: a file's content, or a folder's tree."""
    entries: list[tuple[str, str, str]] = []
    single: str | None = None
    with tarfile.open(fileobj=io.BufferedReader(stream, CHUNK), mode="r|") as archive:
        for member in archive:
            name = member.name.removeprefix("input").lstrip("/")
            if member.isfile():
                digest = _member_digest(archive, member)
                if not name:
                    single = digest
                else:
                    entries.append((name, FILE, digest))
            elif member.issym():
                entries.append((name, LINK, member.linkname))
            elif member.isdir():
                if name:
                    entries.append((name, FOLDER, ""))
            elif name:
                entries.append((name, "device" if member.isdev() else "named pipe", ""))
    if single is not None:
        return Digest(single)
    return folder_digest(shown, entries)


def _member_digest(archive: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    extracted = archive.extractfile(member)
    assert extracted is not None  # a regular file's content
    return content_digest(extracted)


def _unreachable() -> tuple[type[Exception], ...]:
    """What the SDK and the HTTP stack under it raise for an engine that cannot be reached, or
    that goes away mid-answer: a stream broken off (a pull's, a push's) raises urllib3's own
    error, which requests does not wrap there."""
    import docker.errors
    import requests.exceptions
    import urllib3.exceptions

    return (
        docker.errors.DockerException,
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
    )


def _explain(error: Exception) -> str:
    explanation = getattr(error, "explanation", None)
    text = str(explanation or error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
