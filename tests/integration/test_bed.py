"""The multi-host test bed itself (scripts/test-hosts, the `bed` and `fleet` fixtures): distinct
engines reached over unix:// and ssh://, pulling from the bridge's registry, and the faults
other tests cause with it."""

from __future__ import annotations

import subprocess

import docker
import docker.errors
import pytest

from deployer.infra import runner
from deployer.infra.ssh import SshConnections
from tests.integration.bed import Bed
from tests.integration.conftest import REGISTRY, Fleet, ok

pytestmark = pytest.mark.integration


def cli_name(bed: Bed, url: str) -> subprocess.CompletedProcess[str]:
    """`docker info` of the docker CLI with DOCKER_HOST=url, as a test process runs it."""
    return subprocess.run(
        ["docker", "info", "--format", "{{.Name}}"],
        env={**bed.env, "DOCKER_HOST": url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_each_host_is_an_engine_of_its_own_on_its_socket(bed: Bed) -> None:
    assert [bed.client(k).info()["Name"] for k in bed.numbers] == ["dh1", "dh2", "dh3"]


def test_each_host_answers_the_docker_cli_over_ssh(bed: Bed) -> None:
    names = [cli_name(bed, bed.ssh(k)) for k in bed.numbers]
    assert [(n.returncode, n.stdout, n.stderr) for n in names] == [
        (0, "dh1\n", ""),
        (0, "dh2\n", ""),
        (0, "dh3\n", ""),
    ]


def test_each_host_answers_the_sdk_over_ssh(bed: Bed, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK as deployer uses it over ssh:// (deployer.ssh): on a unix socket forwarded to the
    engine the remote docker CLI uses, through one SSH connection per host."""
    for name, value in bed.env.items():
        monkeypatch.setenv(name, value)
    connections = SshConnections(lambda command: runner.run(command, check=False), runner.hold)
    names = []
    try:
        for k in bed.numbers:
            client = docker.APIClient(f"unix://{connections.tunnel(bed.ssh(k))}", timeout=60)
            names.append(client.info()["Name"])
            client.close()
    finally:
        connections.close()
    assert names == ["dh1", "dh2", "dh3"]


def test_each_host_pulls_the_test_images_from_the_bridge_registry(
    bed: Bed, images: list[str], engine: docker.DockerClient
) -> None:
    reference = f"{REGISTRY}/testapp:1.0.0"
    pushed = engine.images.get_registry_data(reference).id  # the manifest's digest
    node_reference = bed.node_image(reference)
    try:
        pulled = [bed.client(k).images.pull(node_reference) for k in bed.numbers]
        digests = {image.attrs["RepoDigests"][0].rsplit("@", 1)[1] for image in pulled}
        assert digests == {pushed}
    finally:
        for k in bed.numbers:
            bed.client(k).images.remove(node_reference, force=True)


def test_node_image_is_the_same_repository_through_the_bridge(bed: Bed) -> None:
    assert bed.node_image("127.0.0.1:5000/ns/deployer-test/testapp:1.0.0") == (
        "10.213.0.1:5000/ns/deployer-test/testapp:1.0.0"
    )
    with pytest.raises(ValueError, match="not in the local registry"):
        bed.node_image("docker.io/library/busybox:1")


def test_stop_engine_stops_that_engine_only_and_start_engine_brings_it_back(bed: Bed) -> None:
    try:
        bed.stop_engine(2)
        with pytest.raises(docker.errors.DockerException, match="No such file or directory"):
            docker.DockerClient(base_url=bed.unix(2), timeout=10)
        assert [bed.client(k).info()["Name"] for k in (1, 3)] == ["dh1", "dh3"]
        down_over_ssh = cli_name(bed, bed.ssh(2))
        assert down_over_ssh.returncode != 0
        assert "Cannot connect to the Docker daemon" in down_over_ssh.stderr
    finally:
        bed.start_engine(2)
    assert bed.client(2).info()["Name"] == "dh2"


def test_stop_sshd_refuses_ssh_and_start_sshd_lets_it_in_again(bed: Bed) -> None:
    try:
        bed.stop_sshd(3)
        refused = cli_name(bed, bed.ssh(3))
        assert refused.returncode != 0
        assert "Connection refused" in refused.stderr
        assert bed.client(3).info()["Name"] == "dh3"  # the engine runs on
    finally:
        bed.start_sshd(3)
    assert cli_name(bed, bed.ssh(3)).stdout == "dh3\n"


@pytest.mark.parametrize("fleet", ["unix", "ssh"], indirect=True)
def test_fleet_deploys_its_environment_over_each_transport(fleet: Fleet) -> None:
    ok(fleet.deploy("validate", "test"))
    ok(fleet.deploy("test", "--yes"))
    first = fleet.containers_on(1)
    assert sorted(c.labels["com.docker.compose.service"] for c in first) == ["web", "worker"]
    assert fleet.http_on(1, "web", "/version") == "1.0.0"
