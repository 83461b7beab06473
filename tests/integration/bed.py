"""The multi-host test bed (scripts/test-hosts) as the tests see it: engines dh1..dhN, each in
its own network namespace, reached over unix:// sockets or ssh://, pulling from 10.213.0.1:5000
(the same storage as the local registry 127.0.0.1:5000)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "test-hosts"
STATE = Path(os.environ.get("DEPLOYER_TEST_STATE", "/var/lib/deployer-test")) / "hosts"
SUBNET = "10.213.0"
REGISTRY_PORT = os.environ.get("DEPLOYER_TEST_REGISTRY_PORT", "5000")
# The local registry as the tests push to it, and the same storage as the hosts pull from it.
LOCAL_REGISTRY = f"127.0.0.1:{REGISTRY_PORT}"
REGISTRY = f"{SUBNET}.1:{REGISTRY_PORT}"
TRANSPORTS = ("unix", "ssh")


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    """scripts/test-hosts with `args`; its output, whether it succeeded or not."""
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=600, check=False
    )


def checked(*args: str) -> str:
    proc = run_script(*args)
    assert proc.returncode == 0, f"scripts/test-hosts {' '.join(args)}: {proc.stderr}"
    return proc.stdout


@dataclass
class Bed:
    """Hosts 1..`hosts` of the bed, up. `home` and `env` are what a process needs to reach
    them over ssh:// (the client key, known_hosts, an `ssh` that reads the bed's config)."""

    hosts: int
    home: Path = STATE / "home"
    registry: str = REGISTRY
    _clients: dict[int, docker.DockerClient] = field(default_factory=dict, repr=False)
    _stopped: set[tuple[str, int]] = field(default_factory=set, repr=False)

    def unix(self, k: int) -> str:
        return f"unix:///run/dh{k}/docker.sock"

    def ssh(self, k: int) -> str:
        return f"ssh://root@{self.address(k)}"

    def address(self, k: int) -> str:
        return f"{SUBNET}.1{k}"

    def url(self, k: int, transport: str) -> str:
        """Host k's address as `unix` or `ssh` gives it."""
        return {"unix": self.unix, "ssh": self.ssh}[transport](k)

    @property
    def env(self) -> dict[str, str]:
        """The environment variables that make ssh:// URLs to the bed work: HOME, and PATH with
        the bed's `ssh` first (ssh ignores $HOME). The docker CLI keeps its own configuration
        folder (plugins such as Compose, credentials)."""
        docker_config = os.environ.get("DOCKER_CONFIG", str(Path.home() / ".docker"))
        return {
            "HOME": str(self.home),
            "PATH": f"{self.home / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "DOCKER_CONFIG": docker_config,
        }

    @property
    def numbers(self) -> range:
        return range(1, self.hosts + 1)

    def client(self, k: int) -> docker.DockerClient:
        """A Docker SDK client for host k over its socket (for assertions and cleanup)."""
        if k not in self._clients:
            self._clients[k] = docker.DockerClient(base_url=self.unix(k), timeout=60)
        return self._clients[k]

    def node_image(self, reference: str) -> str:
        """The reference the hosts pull for an image pushed as 127.0.0.1:5000/...: the same
        repository in the same storage, through the bridge's registry."""
        prefix = f"{LOCAL_REGISTRY}/"
        if not reference.startswith(prefix):
            raise ValueError(f"{reference} is not in the local registry {LOCAL_REGISTRY}")
        return f"{self.registry}/{reference.removeprefix(prefix)}"

    def stop_engine(self, k: int) -> None:
        """SIGTERM host k's dockerd and wait until it has exited."""
        self._fault("engine", k, stop=True)

    def kill_engine(self, k: int) -> None:
        """SIGKILL host k's dockerd, as a power loss would end it (its containers die with it)."""
        self._fault("engine", k, stop=True, how="kill")

    def start_engine(self, k: int) -> None:
        """Start host k's dockerd again and wait until it answers."""
        self._fault("engine", k, stop=False)

    def stop_sshd(self, k: int) -> None:
        self._fault("sshd", k, stop=True)

    def start_sshd(self, k: int) -> None:
        self._fault("sshd", k, stop=False)

    def _fault(self, daemon: str, k: int, *, stop: bool, how: str = "") -> None:
        checked(f"{how or ('stop' if stop else 'start')}-{daemon}", str(k))
        if daemon == "engine" and k in self._clients:  # its connections are to the old engine
            self._clients.pop(k).close()
        if stop:
            self._stopped.add((daemon, k))
        else:
            self._stopped.discard((daemon, k))

    def heal(self) -> None:
        """Start again what a test stopped and left stopped (a failed fault test)."""
        for daemon, k in sorted(self._stopped):
            self._fault(daemon, k, stop=False)

    def close(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()


@dataclass
class Swarm:
    """The bed's swarm (scripts/test-hosts swarm): managers dh4 and dh5, worker dh6. Kept apart
    from dh1..dh3, which tests stop and start; `down` removes it with the bed."""

    bed: Bed
    managers: tuple[int, ...] = (4, 5)
    workers: tuple[int, ...] = (6,)

    @property
    def numbers(self) -> tuple[int, ...]:
        return (*self.managers, *self.workers)

    @property
    def manager_urls(self) -> list[str]:
        return [self.bed.unix(k) for k in self.managers]

    def name(self, k: int) -> str:
        """Node k's hostname, as the swarm lists it."""
        return f"dh{k}"

    @property
    def node_names(self) -> list[str]:
        return [self.name(k) for k in self.numbers]

    def client(self, k: int) -> docker.DockerClient:
        return self.bed.client(k)

    def node_image(self, reference: str) -> str:
        return self.bed.node_image(reference)

    def number(self, hostname: str) -> int:
        """The k of node `dhK`."""
        return int(hostname.removeprefix("dh"))

    def hostnames(self) -> dict[str, str]:
        """Each node's hostname by its ID, as a manager lists them."""
        nodes = self.client(self.managers[0]).api.nodes()
        return {node["ID"]: node["Description"]["Hostname"] for node in nodes}

    def set_availability(self, k: int, availability: str) -> None:
        """`docker node update --availability AVAILABILITY dhK` through a manager."""
        api = self.client(self.managers[0]).api
        [node] = [n for n in api.nodes() if n["Description"]["Hostname"] == self.name(k)]
        spec = {**node["Spec"], "Availability": availability}
        api.update_node(node["ID"], node["Version"]["Index"], spec)

    @contextlib.contextmanager
    def drained(self, k: int) -> Iterator[None]:
        """Node k drained (its tasks move to the other nodes) for the `with` block; active again
        afterwards, also when the block fails: other sessions share this swarm."""
        self.set_availability(k, "drain")
        try:
            yield
        finally:
            self.set_availability(k, "active")

    def state(self, k: int) -> str:
        """Node k's state as the managers see it: ready, down, ..."""
        nodes = self.client(self.managers[0]).api.nodes()
        [node] = [n for n in nodes if n["Description"]["Hostname"] == self.name(k)]
        return str(node["Status"]["State"])

    def wait_state(self, k: int, state: str, seconds: float = 90.0) -> None:
        deadline = time.monotonic() + seconds
        while self.state(k) != state:
            assert time.monotonic() < deadline, f"dh{k} never became {state}"
            time.sleep(0.5)

    @contextlib.contextmanager
    def down(self, k: int) -> Iterator[None]:
        """Node k's engine stopped, and the managers seeing the node down (a missed heartbeat:
        some 12 s here), for the `with` block; started again and ready afterwards, also when
        the block fails."""
        self.bed.stop_engine(k)
        try:
            self.wait_state(k, "down")
            yield
        finally:
            self.bed.start_engine(k)
            self.wait_state(k, "ready")
