"""The Docker SDK edge: every call deployer makes to an engine, every SDK error wrapped here."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from deployer.errors import DeployerError, EngineUnreachableError, PullError

if TYPE_CHECKING:
    import docker

DEFAULT_ENGINE_HOST = "unix:///var/run/docker.sock"
# Docker Engine 20.10's API: fixed rather than negotiated, which would cost a round trip per run.
API_VERSION = "1.41"
PROJECT_LABEL = "com.docker.compose.project"
STATE_IMAGE = "deployer-state:1"
_EMPTY_TAR = bytes(1024)  # a tar archive with no members: two zero blocks


@dataclass(frozen=True)
class Engine:
    """The Docker engine an environment targets; passed down explicitly, never global."""

    host: str

    @classmethod
    def choose(cls, spec_host: str | None, process_env: Mapping[str, str]) -> Engine:
        return cls(spec_host or process_env.get("DOCKER_HOST") or DEFAULT_ENGINE_HOST)


@dataclass(frozen=True)
class Marker:
    """A marker container: its ID, when the engine created it (engine clock), its labels."""

    id: str
    created: float
    labels: Mapping[str, str]


class EngineClient:
    """A connection to one engine. Raises only DeployerErrors."""

    def __init__(self, engine: Engine) -> None:
        import docker  # costly import, paid only by commands that talk to an engine

        self.engine = engine
        with self._errors():
            self._api: docker.APIClient = docker.APIClient(
                base_url=engine.host, version=API_VERSION, timeout=60
            )

    @contextmanager
    def _errors(self, image: str | None = None) -> Iterator[None]:
        import docker.errors
        import requests.exceptions

        try:
            yield
        except docker.errors.ImageNotFound as e:
            raise PullError(image or "?", _explain(e)) from e
        except docker.errors.APIError as e:
            if image is not None:
                raise PullError(image, _explain(e)) from e
            raise DeployerError(f"Docker engine at {self.engine.host}: {_explain(e)}") from e
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            raise EngineUnreachableError(self.engine.host, _explain(e)) from e

    def project_containers(self, project: str) -> list[dict[str, Any]]:
        with self._errors():
            return self._api.containers(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})  # type: ignore[no-any-return]

    def images(self) -> list[dict[str, Any]]:
        with self._errors():
            return self._api.images()  # type: ignore[no-any-return]

    def pull(self, image: str, auth: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Pull `image`, yielding the engine's progress events; `auth` goes to the engine only."""
        repository, tag = split_tag(image)
        with self._errors(image):
            events = self._api.pull(
                repository,
                tag=tag,
                stream=True,
                decode=True,
                auth_config=dict(auth) if auth else None,
            )
            for event in events:
                if "error" in event:
                    raise PullError(image, str(event["error"]))
                yield event

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

    def create_volume(self, name: str, labels: dict[str, str]) -> None:
        with self._errors():
            self._api.create_volume(name=name, labels=labels)

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

    def _ensure_state_image(self) -> None:
        """An empty image to create marker containers from, made on the engine itself."""
        with self._errors():
            if self._api.images(name=STATE_IMAGE):
                return
            repository, tag = STATE_IMAGE.split(":")
            self._api.import_image_from_data(_EMPTY_TAR, repository=repository, tag=tag)

    def logs(self, container_id: str, tail: int) -> list[str]:
        with self._errors():
            raw: bytes = self._api.logs(container_id, tail=tail, timestamps=False)
        return raw.decode("utf-8", errors="replace").splitlines()


def split_tag(image: str) -> tuple[str, str | None]:
    """`repo:tag` -> (repo, tag); a digest reference keeps its digest as the tag part."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, digest
    slash, colon = image.rfind("/"), image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, "latest"


def _timestamp(text: str) -> float:
    """Seconds since the epoch from the engine's RFC 3339 times."""
    return datetime.fromisoformat(text).timestamp()


def _explain(error: Exception) -> str:
    explanation = getattr(error, "explanation", None)
    text = str(explanation or error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
