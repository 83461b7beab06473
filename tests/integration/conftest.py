"""Fixtures for tests on the real engine, Compose CLI and local registry (scripts/test-engine).

Each test gets a workspace with a unique project name (dt-<hex>); everything it creates on the
engine (containers, networks, volumes, the image tags it pulled) is removed afterwards, also when
it fails. With CI=true a missing engine fails the run instead of skipping.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from deployer.commands.load import load
from deployer.commands.spec import render
from deployer.core.command import Command
from deployer.core.variables import Redactor
from deployer.infra import runner
from tests.integration.bed import TRANSPORTS, Bed, Swarm, checked, run_script

ROOT = Path(__file__).resolve().parents[2]
# The tests' own namespace in the local registry, apart from the example's images.
TEST_REGISTRY = os.environ.get("DEPLOYER_TEST_REGISTRY", "127.0.0.1:5000")
REGISTRY = TEST_REGISTRY + "/deployer-test"
# The engine of the specs without `engine:` (the test engine), as deployer names it.
ENGINE_HOST = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
AUTH_REGISTRY = os.environ.get("DEPLOYER_TEST_AUTH_REGISTRY", "127.0.0.1:5001")
AUTH_USER = os.environ.get("DEPLOYER_TEST_AUTH_USER", "deployer")
AUTH_PASSWORD = os.environ.get("DEPLOYER_TEST_AUTH_PASSWORD", "deployer-test-password")
# In the same namespace as REGISTRY's (`host/NAMESPACE`), so that sessions run side by side
# (another worktree's, a nested one) do not remove each other's copy.
AUTH_IMAGE = "/".join(
    part
    for part in (AUTH_REGISTRY, TEST_REGISTRY.partition("/")[2], "deployer-test/private:1.0.0")
    if part
)
# Every image the tests use: REPO:TAG[:MODE] as scripts/build-images takes them.
TEST_IMAGES = [
    "testapp:1.0.0",
    "testapp:1.1.0",
    "testapp:2.0.0",
    "testapp-unhealthy:1.0.0:unhealthy",
    "testapp-exits:1.0.0:exit",
    "shop-web:1.0.0",
    "shop-web:1.1.0",
    "shop-worker:1.0.0",
]
TEST_REFS = [f"{REGISTRY}/{':'.join(image.split(':')[:2])}" for image in TEST_IMAGES]
PROJECT_LABEL = "com.docker.compose.project"
STATE_PROJECT_LABEL = "dev.deployer.project"


@pytest.fixture(scope="session")
def engine() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as e:
        message = f"no Docker engine (run scripts/test-engine): {e}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield client
    # deployer's empty image for lock markers, made on first use; in use only while a lock is held.
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove("deployer-state:1")
    client.close()


@pytest.fixture(scope="session")
def images(engine: docker.DockerClient) -> list[str]:
    """The test images, built once per session and pushed to the local registry."""
    subprocess.run(
        [str(ROOT / "scripts" / "build-images"), "--untag", REGISTRY, *TEST_IMAGES],
        check=True,
        capture_output=True,
        text=True,
    )
    return TEST_REFS


@pytest.fixture(scope="session")
def proxy_image(engine: docker.DockerClient) -> str:
    """A reverse proxy built in the session from Debian's Caddy, in a scratch image, pushed to
    the local registry (scripts/build-proxy-image)."""
    built = subprocess.run(
        [str(ROOT / "scripts" / "build-proxy-image"), REGISTRY],
        check=True,
        capture_output=True,
        text=True,
    )
    return built.stdout.strip()


@pytest.fixture(scope="session")
def private_image(engine: docker.DockerClient, images: list[str]) -> str:
    """The test app in the registry that needs a login (scripts/test-engine's credentials)."""
    auth = {"username": AUTH_USER, "password": AUTH_PASSWORD}
    source = f"{REGISTRY}/testapp:1.0.0"
    engine.images.pull(source)
    repository, tag = AUTH_IMAGE.rsplit(":", 1)
    engine.images.get(source).tag(repository, tag)
    for line in engine.images.push(repository, tag, auth_config=auth, stream=True, decode=True):
        assert "error" not in line, line
    untag(engine, AUTH_IMAGE)
    untag(engine, source)
    return AUTH_IMAGE


@functools.cache
def cli_plugins() -> tuple[Path, ...]:
    """The docker CLI plugins (Compose among them) the CLI finds as the tests run: in system
    folders, ~/.docker/cli-plugins or $DOCKER_CONFIG/cli-plugins."""
    found = subprocess.run(
        ["docker", "info", "--format", "{{json .ClientInfo.Plugins}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return tuple(Path(plugin["Path"]) for plugin in json.loads(found) or [])


def operator_home(home: Path) -> dict[str, str]:
    """The environment of another operator whose home is `home`: a docker config folder of its
    own that has the plugins of this machine's docker CLI, wherever they are installed."""
    plugins = home / ".docker" / "cli-plugins"
    plugins.mkdir(parents=True)
    for plugin in cli_plugins():
        (plugins / plugin.name).symlink_to(plugin)
    return {"HOME": str(home), "DOCKER_CONFIG": str(home / ".docker")}


def untag(engine: docker.DockerClient, reference: str) -> None:
    with contextlib.suppress(docker.errors.ImageNotFound):
        engine.images.remove(reference, force=True, noprune=False)


def remove_project(engine: docker.DockerClient, project: str) -> None:
    """Remove what Compose and deployer made for `project`: containers, networks, volumes, records."""
    for label in (f"{PROJECT_LABEL}={project}", f"{STATE_PROJECT_LABEL}={project}"):
        filters = {"label": label}
        for container in engine.containers.list(all=True, filters=filters, ignore_removed=True):
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        for network in engine.networks.list(filters=filters):
            network.remove()
        for volume in engine.volumes.list(filters=filters):
            volume.remove(force=True)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> object:
        return json.loads(self.stdout)


def ok(result: Result) -> Result:
    """`result`, after checking that its command succeeded (its stderr shown if not)."""
    assert result.returncode == 0, result.stderr
    return result


@dataclass
class Workspace:
    """A folder with environments/ for one test, and the project name it deploys as."""

    root: Path
    project: str
    engine: docker.DockerClient
    env: dict[str, str] = field(default_factory=dict)
    other_projects: list[str] = field(default_factory=list)  # removed afterwards too

    @property
    def environments(self) -> Path:
        return self.root / "environments"

    def write(self, relative: str, text: str) -> Path:
        path = self.environments / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def environment(self, compose: str, variables: str, wait_timeout: int = 30) -> None:
        """An environment `test` of one compose file (app/compose.yml) and one .env."""
        self.write("app/compose.yml", compose)
        self.write("app/.env", variables)
        self.write(
            "test.yml",
            f"project: {self.project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
            f"deploy: {{wait_timeout: {wait_timeout}}}\n",
        )

    def append(self, relative: str, text: str) -> None:
        """Add `text` at the end of a file under environments/ (e.g. overrides to a spec)."""
        path = self.environments / relative
        path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")

    def deploy(
        self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> Result:
        """Run the real `deploy` CLI in this workspace."""
        proc = subprocess.run(
            [sys.executable, "-m", "deployer", *args],
            cwd=self.root,
            env={**os.environ, **self.env, **(env or {})},
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=300,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def containers(self, service: str | None = None) -> list[docker.models.containers.Container]:
        return project_containers(self.engine, self.project, service)

    def ids(self) -> dict[str, str]:
        return {c.name: c.id for c in self.containers()}

    def http(self, service: str, path: str) -> str:
        """GET a path from the service's published port 8080 on loopback."""
        return http_get(self.containers(service)[0], "127.0.0.1", path)


def project_containers(
    engine: docker.DockerClient, project: str, service: str | None = None
) -> list[docker.models.containers.Container]:
    """The containers of `project` (of one of its services) on `engine`, sorted by name."""
    filters = [f"{PROJECT_LABEL}={project}"]
    if service:
        filters.append(f"com.docker.compose.service={service}")
    # Compose may remove a container between the list and its inspection: not an error.
    found = engine.containers.list(all=True, filters={"label": filters}, ignore_removed=True)
    return sorted(found, key=lambda c: c.name)


def http_get(container: docker.models.containers.Container, address: str, path: str) -> str:
    """GET a path from the container's port 8080 as published on `address`."""
    import urllib.request

    container.reload()
    binding = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]
    url = f"http://{address}:{binding['HostPort']}{path}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode().strip()


@pytest.fixture
def workspace(
    tmp_path: Path, engine: docker.DockerClient, images: list[str]
) -> Iterator[Workspace]:
    """An empty workspace; the test images are not present locally, so deploys pull them."""
    project = f"dt-{uuid.uuid4().hex[:10]}"
    for reference in images:
        untag(engine, reference)
    space = Workspace(
        tmp_path, project, engine, {"DEPLOYER_ENVIRONMENTS": str(tmp_path / "environments")}
    )
    try:
        yield space
    finally:
        for name in [project, *space.other_projects]:
            remove_project(engine, name)
        for reference in [*images, AUTH_IMAGE]:
            untag(engine, reference)


APP_COMPOSE = """\
services:
  web:
    image: ${REGISTRY}/testapp:${WEB_TAG}
    ports: ["127.0.0.1::8080"]
    environment:
      LOG_LEVEL: ${LOG_LEVEL}
      DB_PASSWORD: ${DB_PASSWORD}
  worker:
    image: ${REGISTRY}/testapp:${WORKER_TAG}
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    env_file: [worker.env]
"""


@pytest.fixture
def app(workspace: Workspace) -> Workspace:
    """A workspace with a two-service environment `test` built on the test images."""
    workspace.write("app/compose.yml", APP_COMPOSE)
    workspace.write("app/worker.env", "CONCURRENCY=2\n")
    workspace.write(
        "app/.env",
        f"REGISTRY={REGISTRY}\nWEB_TAG=1.0.0\nWORKER_TAG=1.0.0\nLOG_LEVEL=info\nDB_PASSWORD=s3cret-canary-4711\n",
    )
    workspace.write(
        "test.yml",
        f"project: {workspace.project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        "deploy: {wait_timeout: 30}\n",
    )
    return workspace


@pytest.fixture
def example(workspace: Workspace) -> Workspace:
    """The shipped example environments, under this test's own project names and free ports."""
    shutil.copytree(ROOT / "environments", workspace.environments)
    # staging deploys as the workspace's project, production as a second one of its own.
    production = f"{workspace.project}-production"
    workspace.other_projects.append(production)
    for name, project in (("staging", workspace.project), ("production", production)):
        path = workspace.environments / f"{name}.yml"
        path.write_text(path.read_text().replace(f"project: shop-{name}", f"project: {project}"))
    workspace.env.update({"WEB_PUBLISH": "127.0.0.1::8080", "IMAGE_REGISTRY": REGISTRY})
    return workspace


@pytest.fixture(scope="session")
def bed(engine: docker.DockerClient) -> Iterator[Bed]:
    """Three more engines, dh1..dh3 (scripts/test-hosts), up once per session and down at its
    end, unless another session still uses them (a lease per session's pid)."""
    lease = str(os.getpid())
    proc = run_script("lease", lease, "3")
    if proc.returncode != 0:
        run_script("release", lease)  # what a failed `up` made, unless another session uses it
        message = f"no multi-host test bed (scripts/test-hosts up 3): {proc.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    hosts = Bed(3)
    try:
        yield hosts
    finally:
        hosts.close()
        checked("release", lease)


@pytest.fixture(scope="session")
def swarm(bed: Bed) -> Swarm:
    """The bed's swarm (scripts/test-hosts swarm, idempotent): dh4, dh5 managers, dh6 worker.
    Under the bed's lease: it goes with the bed at the end of the last session using it (`down`
    leaves the swarm first); tests remove the stacks they deploy."""
    checked("swarm")
    return Swarm(bed)


@dataclass
class Fleet(Workspace):
    """A workspace whose environment `test` runs on every host of the bed, reached over
    `transport` (unix or ssh); `engine` is host 1's."""

    bed: Bed = field(kw_only=True)
    transport: str = field(kw_only=True)

    @property
    def urls(self) -> list[str]:
        return [self.bed.url(k, self.transport) for k in self.bed.numbers]

    def containers_on(
        self, k: int, service: str | None = None
    ) -> list[docker.models.containers.Container]:
        return project_containers(self.bed.client(k), self.project, service)

    def http_on(self, k: int, service: str, path: str) -> str:
        """GET a path from the service's port 8080 as host k publishes it on its address."""
        return http_get(self.containers_on(k, service)[0], self.bed.address(k), path)


# The app's services, published on every address of each host (its own namespace).
FLEET_COMPOSE = APP_COMPOSE.replace('"127.0.0.1::8080"', '"8080"')


@pytest.fixture
def fleet(
    request: pytest.FixtureRequest, tmp_path: Path, bed: Bed, images: list[str]
) -> Iterator[Fleet]:
    """The app of `app`, environment `test`, on every host of the bed: over unix:// sockets, or
    over ssh:// with `@pytest.mark.parametrize("fleet", ["ssh"], indirect=True)`. The hosts
    start without the test images; the project is removed from every host afterwards."""
    transport = getattr(request, "param", "unix")
    assert transport in TRANSPORTS, transport
    project = f"dt-{uuid.uuid4().hex[:10]}"
    node_images = [bed.node_image(reference) for reference in images]
    env = {**bed.env, "DEPLOYER_ENVIRONMENTS": str(tmp_path / "environments")}
    space = Fleet(tmp_path, project, bed.client(1), env, bed=bed, transport=transport)
    space.write("app/compose.yml", FLEET_COMPOSE)
    space.write("app/worker.env", "CONCURRENCY=2\n")
    space.write(
        "app/.env",
        f"REGISTRY={bed.node_image(REGISTRY)}\nWEB_TAG=1.0.0\nWORKER_TAG=1.0.0\nLOG_LEVEL=info\n"
        "DB_PASSWORD=s3cret-canary-4711\n",
    )
    space.write(
        "test.yml",
        f"project: {project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        f"engine: {{hosts: {json.dumps(space.urls)}}}\ndeploy: {{wait_timeout: 30}}\n",
    )
    for k in bed.numbers:
        for reference in node_images:
            untag(bed.client(k), reference)
    try:
        yield space
    finally:
        bed.heal()
        for k in bed.numbers:
            for name in [project, *space.other_projects]:
                remove_project(bed.client(k), name)
            for reference in node_images:
                untag(bed.client(k), reference)


# A stack on the bed's swarm (dh4, dh5 managers, dh6 worker).
SWARM_COMPOSE = """\
services:
  web:
    image: ${REGISTRY}/testapp:${WEB_TAG}
    environment:
      LOG_LEVEL: ${LOG_LEVEL}
    deploy:
      replicas: 2
  worker:
    image: ${REGISTRY}/testapp:1.0.0
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""
CONVERGE_SECONDS = 120  # pulls on three nodes of a 2-core machine


class SwarmSpace(Workspace):
    """A workspace whose environment `test` is a stack on the bed's swarm, through manager dh4."""

    swarm: Swarm

    def stack_deploy(self) -> None:
        """The stack deploy `deploy render test` shows, run as is; then waits until every
        service of the stack has all its tasks running."""
        environ = {**os.environ, **self.env}
        target = load(self.environments, "test", Redactor(), environ)
        command = render(target, Redactor()).command
        done = runner.run(command, check=False)
        assert done.returncode == 0, done.stderr
        manager = self.swarm.client(4)
        deadline = time.monotonic() + CONVERGE_SECONDS
        while time.monotonic() < deadline:
            services = manager.api.services(
                filters={"label": f"com.docker.stack.namespace={self.project}"}, status=True
            )
            counts = [
                (s["ServiceStatus"]["RunningTasks"], s["ServiceStatus"]["DesiredTasks"])
                for s in services
            ]
            if services and all(running == desired for running, desired in counts):
                return
            time.sleep(0.5)
        raise AssertionError(f"the stack {self.project} did not converge: {counts}")

    def services(self) -> dict[str, dict[str, Any]]:
        """The stack's services as `docker service inspect` shows them, by their name in the
        stack file."""
        manager = self.swarm.client(4)
        found = manager.api.services(
            filters={"label": f"com.docker.stack.namespace={self.project}"}
        )
        return {s["Spec"]["Name"].removeprefix(f"{self.project}_"): s for s in found}

    def versions(self) -> dict[str, int]:
        """Each service's Version.Index: it moves with every change to the service's spec."""
        return {name: s["Version"]["Index"] for name, s in self.services().items()}

    def running_tasks(self, service: str) -> list[dict[str, Any]]:
        """The service's tasks that run and are meant to, by ID."""
        tasks = self.swarm.client(4).api.tasks(
            filters={"service": f"{self.project}_{service}", "desired-state": "running"}
        )
        return sorted(
            (t for t in tasks if t["Status"]["State"] == "running"), key=lambda t: str(t["ID"])
        )

    def task_ids(self) -> dict[str, list[str]]:
        """The IDs of each service's running tasks: a restarted task is a new one."""
        return {name: [t["ID"] for t in self.running_tasks(name)] for name in self.services()}

    def task_nodes(self, service: str) -> list[str]:
        """The hostnames of the nodes the service's running tasks run on, sorted."""
        hostnames = self.swarm.hostnames()
        return sorted(hostnames[t["NodeID"]] for t in self.running_tasks(service))

    def task_environments(self, service: str) -> list[dict[str, str]]:
        """The environment of each running task's container, read on the node it runs on."""
        hostnames = self.swarm.hostnames()
        environments = []
        for task in self.running_tasks(service):
            node = self.swarm.client(self.swarm.number(hostnames[task["NodeID"]]))
            container = node.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
            environments.append(dict(e.split("=", 1) for e in container.attrs["Config"]["Env"]))
        return environments

    def remove_stack(self) -> None:
        """`docker stack rm`, then waits until its services and networks are gone."""
        manager = self.swarm.client(4)
        runner.run(runner_command(self.swarm, ["stack", "rm", self.project]), check=False)
        label = {"label": f"com.docker.stack.namespace={self.project}"}
        for _ in range(240):
            if not manager.api.services(filters=label) and not manager.api.networks(filters=label):
                return
            time.sleep(0.25)

    def remove_state(self) -> None:
        """The swarm configs that hold the state of the stack (and of `other_projects`):
        releases, audit entries, the lock and its renewals (deployer/swarm_state.py)."""
        manager = self.swarm.client(4)
        for project in [self.project, *self.other_projects]:
            label = {"label": f"{STATE_PROJECT_LABEL}={project}"}
            for config in manager.configs.list(filters=label):
                config.remove()


def runner_command(swarm: Swarm, args: list[str]) -> Command:
    return Command(("docker", *args), {"DOCKER_HOST": swarm.manager_urls[0]})


@pytest.fixture
def stack(tmp_path: Path, swarm: Swarm, images: list[str]) -> Iterator[SwarmSpace]:
    project = f"dt-{uuid.uuid4().hex[:10]}"
    space = SwarmSpace(
        tmp_path,
        project,
        swarm.client(4),
        {"DEPLOYER_ENVIRONMENTS": str(tmp_path / "environments")},
    )
    space.swarm = swarm
    space.write("app/compose.yml", SWARM_COMPOSE)
    space.write(
        "app/.env", f"REGISTRY={swarm.node_image(REGISTRY)}\nWEB_TAG=1.0.0\nLOG_LEVEL=info\n"
    )
    space.write(
        "test.yml",
        f"project: {project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        f"engine: {{host: '{swarm.manager_urls[0]}', orchestrator: swarm}}\n",
    )
    try:
        yield space
    finally:
        try:
            space.remove_stack()
        finally:
            space.remove_state()
