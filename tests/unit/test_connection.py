"""One connection profile per engine: the docker CLI's environment and the SDK's arguments agree."""

from __future__ import annotations

from typing import Any

import pytest

from deployer.core.errors import DeployerError, EngineUnreachableError
from deployer.infra.engine import Engine, EngineClient, negotiate

TLS_ENV = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/certs"}


@pytest.mark.parametrize(
    ("spec_host", "process_env", "cli_environment", "sdk_arguments"),
    [
        (
            None,
            {},
            {"DOCKER_HOST": "unix:///var/run/docker.sock", "DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": ""},
            {"base_url": "unix:///var/run/docker.sock", "timeout": 60},
        ),
        (
            # TLS settings of the shell do not apply to a socket (the CLI would still read them)
            "unix:///run/other.sock",
            {"DOCKER_HOST": "tcp://x:2376", **TLS_ENV},
            {"DOCKER_HOST": "unix:///run/other.sock", "DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": ""},
            {"base_url": "unix:///run/other.sock", "timeout": 60},
        ),
        (
            "tcp://10.0.0.5:2375",
            {},
            {"DOCKER_HOST": "tcp://10.0.0.5:2375", "DOCKER_TLS_VERIFY": "", "DOCKER_CERT_PATH": ""},
            {"base_url": "tcp://10.0.0.5:2375", "timeout": 60},
        ),
        (
            "tcp://10.0.0.5:2376",
            TLS_ENV,
            {"DOCKER_HOST": "tcp://10.0.0.5:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/certs"},
            {"base_url": "tcp://10.0.0.5:2376", "timeout": 60, "tls": {
                "client_cert": ("/certs/cert.pem", "/certs/key.pem"), "ca_cert": "/certs/ca.pem", "verify": True,
            }},
        ),
        (
            # without DOCKER_CERT_PATH, the CLI's own default: the docker config folder
            None,
            {"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1", "HOME": "/home/ops"},
            {"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "/home/ops/.docker"},
            {"base_url": "tcp://h:2376", "timeout": 60, "tls": {
                "client_cert": ("/home/ops/.docker/cert.pem", "/home/ops/.docker/key.pem"),
                "ca_cert": "/home/ops/.docker/ca.pem", "verify": True,
            }},
        ),
    ],
)  # fmt: skip
def test_profile_gives_cli_environment_and_sdk_arguments(
    spec_host: str | None,
    process_env: dict[str, str],
    cli_environment: dict[str, str],
    sdk_arguments: dict[str, Any],
) -> None:
    engine = Engine.choose(spec_host, process_env)
    assert engine.cli_environment() == cli_environment
    assert engine.sdk_arguments() == sdk_arguments


def test_ssh_profile_keeps_its_url_for_the_cli_and_gives_the_sdk_the_tunnel() -> None:
    # TLS settings of the shell do not apply either: the CLI dials `ssh`
    engine = Engine.choose("ssh://deploy@prod-1", TLS_ENV)
    assert engine.cli_environment() == {
        "DOCKER_HOST": "ssh://deploy@prod-1",
        "DOCKER_TLS_VERIFY": "",
        "DOCKER_CERT_PATH": "",
    }
    assert engine.sdk_arguments("/tmp/deployer-ssh-x/engine-1.sock") == {
        "base_url": "unix:///tmp/deployer-ssh-x/engine-1.sock",
        "timeout": 60,
    }


def test_tls_cert_path_defaults_to_docker_config() -> None:
    env = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CONFIG": "/etc/ops-docker", "HOME": "/home/ops"}
    assert Engine.choose("tcp://h:2376", env) == Engine("tcp://h:2376", "/etc/ops-docker")


@pytest.mark.parametrize(
    ("server", "version"),
    [
        ({"ApiVersion": "1.41", "MinAPIVersion": "1.12"}, "1.41"),  # Docker 20.10
        ({"ApiVersion": "1.47", "MinAPIVersion": "1.44"}, "1.45"),  # newer than the SDK knows
        ({"ApiVersion": "1.45", "MinAPIVersion": "1.24"}, "1.45"),
        ({"ApiVersion": "1.9"}, "1.9"),  # compared as numbers, not text
    ],
)
def test_negotiate(server: dict[str, str], version: str) -> None:
    assert negotiate(server, "1.45") == version


def test_negotiate_refuses_an_engine_beyond_the_sdk() -> None:
    with pytest.raises(DeployerError) as raised:
        negotiate({"ApiVersion": "1.60", "MinAPIVersion": "1.50"}, "1.45")
    assert raised.value.message == (
        "the engine requires API version 1.50 or later; deployer's Docker SDK speaks up to 1.45"
    )


class BrokenOff:
    """The SDK's low-level client of an engine that goes away while it streams a pull or push:
    the stream breaks off with urllib3's own error, which requests does not wrap there."""

    def _stream(self, *args: Any, **kwargs: Any) -> Any:
        import urllib3.exceptions

        yield {"status": "Pulling fs layer", "id": "layer"}
        raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(0 bytes read)")

    pull = push = _stream


@pytest.mark.parametrize("stream", ["pull", "push"])
def test_an_engine_that_goes_away_mid_stream_is_unreachable_not_a_traceback(stream: str) -> None:
    client = EngineClient.__new__(EngineClient)  # no engine to negotiate with
    client.engine, client._api = Engine("unix:///run/dh2/docker.sock"), BrokenOff()  # type: ignore[assignment]

    with pytest.raises(EngineUnreachableError) as raised:
        list(getattr(client, stream)("reg/web:1.1.0"))

    assert raised.value.message == (
        "Docker engine at unix:///run/dh2/docker.sock is unreachable: "
        "Connection broken: IncompleteRead(0 bytes read)"
    )
