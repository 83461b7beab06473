"""The Docker SDK edge: every call deployer makes to an engine, every SDK error wrapped here."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from deployer.errors import DeployerError, EngineUnreachableError, PullError

if TYPE_CHECKING:
    import docker

DEFAULT_ENGINE_HOST = "unix:///var/run/docker.sock"
# Docker Engine 20.10's API: fixed rather than negotiated, which would cost a round trip per run.
API_VERSION = "1.41"
PROJECT_LABEL = "com.docker.compose.project"


@dataclass(frozen=True)
class Engine:
    """The Docker engine an environment targets; passed down explicitly, never global."""

    host: str

    @classmethod
    def choose(cls, spec_host: str | None, process_env: Mapping[str, str]) -> Engine:
        return cls(spec_host or process_env.get("DOCKER_HOST") or DEFAULT_ENGINE_HOST)


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

    def pull(self, image: str) -> Iterator[dict[str, Any]]:
        """Pull `image`, yielding the engine's progress events."""
        repository, tag = split_tag(image)
        with self._errors(image):
            for event in self._api.pull(repository, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise PullError(image, str(event["error"]))
                yield event

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


def _explain(error: Exception) -> str:
    explanation = getattr(error, "explanation", None)
    text = str(explanation or error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__
