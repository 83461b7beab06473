"""Real inputs from elsewhere: image references as promotion writes them, engines and machines
set up differently from the test one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.integration.conftest import REGISTRY, ROOT, Workspace, cli_plugins, ok, untag
from tests.integration.engine_proxy import EngineProxy, TLSEngineProxy

pytestmark = pytest.mark.integration


def test_tag_plus_digest_is_in_sync_after_a_deploy(workspace: Workspace) -> None:
    tagged = f"{REGISTRY}/testapp:1.0.0"
    workspace.engine.images.pull(tagged)
    digest = workspace.engine.images.get(tagged).attrs["RepoDigests"][0].split("@")[1]
    untag(workspace.engine, tagged)
    pinned = f"{tagged}@{digest}"
    workspace.write("app/compose.yml", f"services:\n  web:\n    image: {pinned}\n")
    workspace.write("test.yml", f"project: {workspace.project}\ncompose_files: [app/compose.yml]\n")
    try:
        ok(workspace.deploy("test", "--yes"))
        before = workspace.ids()

        diff = workspace.deploy("diff", "test")
        again = ok(workspace.deploy("test", "--yes"))

        assert (diff.returncode, diff.stdout) == (
            0,
            f"test (project {workspace.project}): in sync, nothing to change\n",
        )
        assert "pulling" not in again.stderr
        assert workspace.ids() == before
    finally:
        untag(workspace.engine, f"{REGISTRY}/testapp@{digest}")


def bin_folder(tmp_path: Path, *programs: str) -> str:
    """A PATH of one folder holding only `programs` (links to the machine's own)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for program in programs:
        found = shutil.which(program)
        assert found, f"{program} is needed for this test"
        (folder / program).symlink_to(found)
    return str(folder)


def test_deploy_without_git_on_path(app: Workspace, tmp_path: Path) -> None:
    result = app.deploy("test", "--yes", env={"PATH": bin_folder(tmp_path, "docker")})

    assert result.returncode == 0, result.stderr
    assert len(app.containers()) == 2


@pytest.fixture
def newer_engine() -> Iterator[EngineProxy]:
    """The test engine behind a proxy that answers as an engine refusing API versions below 1.44."""
    folder = Path(tempfile.mkdtemp(prefix="dt-engine-"))  # short: a socket path has 107 bytes
    try:
        with EngineProxy(folder / "docker.sock", "/var/run/docker.sock") as proxy:
            yield proxy
    finally:
        shutil.rmtree(folder)


def test_commands_negotiate_the_api_version_with_a_newer_engine(
    app: Workspace, newer_engine: EngineProxy
) -> None:
    through_proxy = {"DOCKER_HOST": newer_engine.host}

    pending = app.deploy("diff", "test", env=through_proxy)
    ok(app.deploy("test", "--yes", env=through_proxy))
    status = app.deploy("status", "test", env=through_proxy)
    in_sync = app.deploy("diff", "test", env=through_proxy)

    assert (pending.returncode, status.returncode, in_sync.returncode) == (2, 0, 0), (
        pending.stderr + status.stderr + in_sync.stderr
    )
    assert len(app.containers()) == 2
    versions = {re.sub(r"^\S+ /(v[0-9.]+)?.*$", r"\1", line) for line in newer_engine.requests}
    assert versions == {"", "v1.45", "v1.47"}  # /_ping, the SDK's newest, the CLI's choice
    # the SDK asks each engine its version once per command: four commands, four questions
    assert sum(line.startswith("GET /version ") for line in newer_engine.requests) == 4


def with_user_plugins_only(
    argv: list[str], home: Path, cwd: Path, plugins: tuple[Path, ...]
) -> subprocess.CompletedProcess[str]:
    """Run `argv` as a user whose home is `home`, in a mount namespace of its own where the
    docker CLI's plugin folders outside that home are hidden and `plugins` appear in the
    user's ~/.docker/cli-plugins instead (Docker's documented manual install of Compose)."""
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs a mount namespace (unshare --mount) to hide the system's plugins")
    user_plugins = home / ".docker" / "cli-plugins"
    user_plugins.mkdir(parents=True)
    script = ["set -e"]
    for plugin in plugins:
        (user_plugins / plugin.name).touch()
        script.append(f"mount --bind {plugin} {user_plugins / plugin.name}")
    for folder in sorted({plugin.parent for plugin in cli_plugins()} - {user_plugins}):
        script.append(f"mount -t tmpfs tmpfs {folder}")
    # the setup holds: without this user's HOME there is no Compose
    script += ["! HOME=/nonexistent docker compose version >/dev/null 2>&1 || exit 97", 'exec "$@"']
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"}
    namespace = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script)]
    return subprocess.run(
        [*namespace, "sh", *argv],
        cwd=cwd,
        env={**env, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_without_the_compose_plugin_one_line_says_so(app: Workspace, tmp_path: Path) -> None:
    result = with_user_plugins_only(
        [sys.executable, "-m", "deployer", "diff", "test"], tmp_path / "user", app.root, ()
    )

    client = subprocess.run(["docker", "--version"], capture_output=True, text=True).stdout.strip()
    assert (result.returncode, result.stderr) == (
        1,
        f"error: Docker Compose v2 is required (`docker compose`), found: {client} without the compose plugin\n",
    )


# The tests that run deploy as another operator, with a HOME of their own.
OTHER_HOME_TESTS = [
    "tests/integration/test_ops.py::test_login_with_the_right_credentials_pulls_and_saves_nothing",
    "tests/integration/test_ops.py::test_save_login_writes_the_docker_config",
    "tests/integration/test_releases.py::test_history_and_lock_are_seen_by_a_second_operator",
]


def test_other_home_tests_pass_with_compose_as_a_per_user_plugin(
    engine: docker.DockerClient, tmp_path: Path
) -> None:
    pytest_run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]

    result = with_user_plugins_only(
        [*pytest_run, *OTHER_HOME_TESTS], tmp_path / "user", ROOT, cli_plugins()
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert result.stdout.splitlines()[-1].startswith(f"{len(OTHER_HOME_TESTS)} passed")


def make_certificates(folder: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as `dockerd
    --tlsverify` and its clients use them (ca.pem, cert.pem, key.pem: the client's names)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(
        "req",
        "-x509",
        *key,
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
    )
    for name, common_name, usage in (
        ("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("client", "deployer-test-client", "extendedKeyUsage=clientAuth"),
    ):
        (folder / f"{name}.ext").write_text(usage + "\n")
        openssl(
            "req",
            *key,
            "-keyout",
            f"{name}-key.pem",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={common_name}",
        )
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "1", "-extfile", f"{name}.ext",
        )  # fmt: skip
    (folder / "client-cert.pem").rename(folder / "cert.pem")
    (folder / "client-key.pem").rename(folder / "key.pem")


def test_deploy_to_a_tls_engine_with_client_certificates(app: Workspace, tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certificates(certs)
    server = (certs / "server-cert.pem", certs / "server-key.pem", certs / "ca.pem")
    with TLSEngineProxy("/var/run/docker.sock", *server) as engine:
        app.append("test.yml", f"engine: {{host: '{engine.host}'}}\n")
        tls = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}
        # a CA bundle for other HTTPS (set on many machines) is not the engine's CA
        tls["REQUESTS_CA_BUNDLE"] = tls["CURL_CA_BUNDLE"] = str(certs / "server-cert.pem")

        without_tls = app.deploy("diff", "test")
        ok(app.deploy("test", "--yes", env=tls))
        in_sync = app.deploy("diff", "test", env=tls)

    assert without_tls.returncode == 1
    assert without_tls.stderr.startswith(f"error: Docker engine at {engine.host} is unreachable: ")
    assert (in_sync.returncode, in_sync.stdout) == (
        0,
        f"test (project {app.project}): in sync, nothing to change\n",
    )
    assert len(app.containers()) == 2
    # the SDK and Compose (the docker CLI) alike connected with the client certificate
    assert set(engine.clients) == {"deployer-test-client"} and len(engine.clients) > 3
