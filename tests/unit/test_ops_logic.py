"""Pure parts of the ops commands: pruning choices, status, registry logins, their commands."""

from __future__ import annotations

from pathlib import Path

from deployer.compose import project as compose
from deployer.compose.project import ComposeProject
from deployer.core.command import Command
from deployer.core.desired import ComposeFiles, DesiredService, DesiredState
from deployer.core.observed import ObservedContainer, ObservedState
from deployer.core.results import Candidate
from deployer.core.status import ContainerStatus, EnvironmentStatus, ServiceStatus
from deployer.infra.engine import Engine
from deployer.infra.registry import Login, registry_of
from deployer.state.releases import Release, ServiceRelease
from deployer.targets.host.status import status
from deployer.targets.prune import prunable

ENGINE = Engine("unix:///var/run/docker.sock")
PROJECT = ComposeProject(ComposeFiles("shop", (Path("/srv/compose.yml"),), {"A": "1"}), ENGINE)

PINNED = "reg/web@sha256:" + "a" * 64


def test_prunable_dangling_and_unused_images_of_the_environment_only() -> None:
    images = [
        {"Id": "sha256:dangling", "RepoTags": ["<none>:<none>"], "Size": 10},
        {"Id": "sha256:dangling-used", "RepoTags": None, "Size": 10},
        {"Id": "sha256:old", "RepoTags": ["reg/web:1.0"], "Size": 20},
        {"Id": "sha256:kept", "RepoTags": ["reg/web:1.1"], "Size": 20},
        {"Id": "sha256:running", "RepoTags": ["reg/web:2.0"], "Size": 20},
        {"Id": "sha256:foreign", "RepoTags": ["other/app:1"], "Size": 20},
    ]
    in_use = {"sha256:dangling-used", "sha256:running"}

    assert prunable(images, in_use, {"sha256:kept"}, {"reg/web"}, aggressive=False) == [
        Candidate("sha256:dangling", (), 10, "dangling")
    ]
    assert prunable(images, in_use, {"sha256:kept"}, {"reg/web"}, aggressive=True) == [
        Candidate("sha256:dangling", (), 10, "dangling"),
        Candidate("sha256:old", ("reg/web:1.0",), 20, "unused image of this environment"),
    ]


def test_status_per_service_with_releases() -> None:
    desired = DesiredState(
        "staging", PROJECT.files, {},
        {"web": DesiredService("web", "reg/web:2.0", 2, {"image": "i"}, frozenset()),
         "db": DesiredService("db", "db:1", 1, {"image": "d"}, frozenset())},
        {}, 60.0,
    )  # fmt: skip
    web = ObservedContainer(
        "c1",
        "shop-web-1",
        "web",
        1,
        "running",
        "Up 2 hours (healthy)",
        "healthy",
        "reg/web:2.0",
        "sha256:w2",
        {"image": "i"},
    )
    observed = ObservedState("shop", (web,), {"reg/web:2.0": "sha256:w2"}, {"sha256:w2": (PINNED,)})
    releases = [
        Release(
            2,
            "t",
            "alice",
            "h",
            "deploy",
            "s",
            "v",
            "success",
            {"web": ServiceRelease("reg/web:2.0", "sha256:w2", PINNED)},
        ),
    ]

    current = status(desired, observed, releases)

    assert current == EnvironmentStatus(
        "staging", "shop", False,
        (
            ServiceStatus("db", "db:1", 1, ()),
            ServiceStatus("web", "reg/web:2.0", 2, (
                ContainerStatus("shop-web-1", "reg/web:2.0", "sha256:w2", PINNED, "running", "healthy", "Up 2 hours (healthy)", 2),
            )),
        ),
        (),
    )  # fmt: skip
    assert (current.services[1].ready, current.services[1].healthy, current.healthy) == (
        1,
        False,
        False,
    )


def test_registry_of_and_login_scope() -> None:
    assert [registry_of(i) for i in ("web:1", "acme/web", "ghcr.io/acme/web:1", "127.0.0.1:5001/x", "localhost/x")] == [
        "docker.io", "docker.io", "ghcr.io", "127.0.0.1:5001", "localhost",
    ]  # fmt: skip
    login = Login("ghcr.io", "bot", "t0ken")
    assert login.auth_for("ghcr.io/acme/web:1") == {
        "username": "bot",
        "password": "t0ken",
        "serveraddress": "ghcr.io",
    }
    assert login.auth_for("docker.io/library/redis:7") is None
    assert "t0ken" not in repr(login)


def test_ops_commands_as_data() -> None:
    base = (
        "docker",
        "compose",
        "--project-name",
        "shop",
        "--env-file",
        "/dev/fd/3",
        "--file",
        "/srv/compose.yml",
    )
    assert compose.logs(PROJECT, ["web"], True, "10m", 5).argv == (
        *base, "logs", "--no-color", "--follow", "--since", "10m", "--tail", "5", "web",
    )  # fmt: skip
    assert compose.restart(PROJECT, ["web", "worker"]).argv == (*base, "restart", "web", "worker")
    assert compose.down(PROJECT, volumes=True).argv == (
        *base,
        "down",
        "--remove-orphans",
        "--volumes",
    )
    assert compose.docker_login(ENGINE, "ghcr.io", "bot", "t0ken") == Command(
        ("docker", "login", "--username", "bot", "--password-stdin", "ghcr.io"),
        {
            "DOCKER_HOST": "unix:///var/run/docker.sock",
            "DOCKER_TLS_VERIFY": "",
            "DOCKER_CERT_PATH": "",
        },
        stdin="t0ken",
    )
