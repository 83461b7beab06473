"""Loading specs: every bad input gives clear FILE:LINE: path: message lines, all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.core.errors import ConfigError, UnknownEnvironmentError
from deployer.core.spec import ServiceOverride, Spec, Watch, load_spec, spec_path


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write(tmp_path, "app/compose.yml", "services:\n  web:\n    image: web:1\n")
    write(tmp_path, "app/.env", "A=1\n")
    return tmp_path


def errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_spec(path)
    return caught.value.lines()


def test_full_spec_loads(folder: Path) -> None:
    path = write(
        folder,
        "staging.yml",
        "project: shop-staging\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n"
        "secrets: [DB_PASSWORD]\nnot_secret: [KEY_ROTATION_DAYS]\n"
        "services:\n  web:\n    tag: '1.4.2'\n    replicas: 2\n"
        "    environment: {LOG_LEVEL: info, DEBUG: false, WORKERS: 4}\n"
        "deploy: {wait_timeout: 30}\nengine: {host: 'unix:///run/other.sock'}\nx-team: shop\n",
    )

    spec = load_spec(path)

    assert spec == Spec(
        name="staging",
        path=path.resolve(),
        project="shop-staging",
        compose_files=((folder / "app/compose.yml").resolve(),),
        env_files=((folder / "app/.env").resolve(),),
        secrets=frozenset({"DB_PASSWORD"}),
        services={
            "web": ServiceOverride(
                None, "1.4.2", 2, {"LOG_LEVEL": "info", "DEBUG": "false", "WORKERS": "4"}
            )
        },
        confirm=False,
        wait_timeout=30.0,
        engine_host="unix:///run/other.sock",
        not_secret=frozenset({"KEY_ROTATION_DAYS"}),
    )
    assert [spec.is_secret(n) for n in ("DB_PASSWORD", "KEY_ROTATION_DAYS", "API_KEY")] == [
        True,
        False,
        True,
    ]


def test_production_confirms_by_default(folder: Path) -> None:
    path = write(folder, "production.yml", "project: p\ncompose_files: [app/compose.yml]\n")
    assert load_spec(path).confirm is True


def test_malformed_yaml(folder: Path) -> None:
    path = write(folder, "s.yml", "project: p\ncompose_files: [app/compose.yml\n")
    assert errors(path) == [f"{path}:3: invalid YAML: expected ',' or ']', but got '<stream end>'"]


def test_document_that_is_not_a_mapping(folder: Path) -> None:
    path = write(folder, "s.yml", "- project\n- p\n")
    assert errors(path) == [
        f"{path}:1: expected a mapping with project and compose_files, got a list"
    ]


def test_empty_file(folder: Path) -> None:
    path = write(folder, "s.yml", "# nothing here\n")
    assert errors(path) == [
        f"{path}: empty file: expected a mapping with project and compose_files"
    ]


def test_alias_bomb_is_refused_without_expanding(folder: Path) -> None:
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    path = write(folder, "s.yml", "\n".join(bomb) + "\n")

    assert errors(path) == [
        f"{path}:1: YAML expands to more than 100000 nodes (alias bomb?); refused"
    ]


def test_unknown_keys_wrong_types_and_bad_project_all_at_once(folder: Path) -> None:
    path = write(
        folder,
        "s.yml",
        "project: Shop_Staging\ncompose_files: app/compose.yml\nreplica: 2\nx-ok: fine\n"
        "services:\n  web:\n    replicas: two\n    imagee: x\ndeploy: {wait_timeout: -1}\n",
    )

    assert errors(path) == [
        f"{path}:1: project: invalid project name 'Shop_Staging': use lowercase letters, digits, '_' and '-', starting with a letter or digit",
        f"{path}:2: compose_files: expected a list, got a string",
        f"{path}:3: replica: unknown key",
        f"{path}:7: services.web.replicas: expected an integer, got a string",
        f"{path}:8: services.web.imagee: unknown key",
        f"{path}:9: deploy.wait_timeout: -1 is less than or equal to the minimum of 0",
    ]


def test_missing_required_keys(folder: Path) -> None:
    path = write(folder, "s.yml", "project: p\n")
    assert errors(path) == [f"{path}:1: 'compose_files' is a required property"]


def test_missing_compose_and_env_files(folder: Path) -> None:
    path = write(
        folder, "s.yml", "project: p\ncompose_files: [nope.yml]\nenv_files: [app/.env, .env.nope]\n"
    )
    assert errors(path) == [
        f"{path}:2: compose_files.0: file not found: {folder / 'nope.yml'}",
        f"{path}:3: env_files.1: file not found: {folder / '.env.nope'}",
    ]


def test_spec_that_is_not_utf8(folder: Path) -> None:
    path = write(folder, "s.yml", b"project: p\ncompose_files: [caf\xe9.yml]\n")
    assert errors(path) == [f"{path}:2: not valid UTF-8 text"]


def test_bad_tag_image_and_both_set(folder: Path) -> None:
    path = write(
        folder,
        "s.yml",
        "project: p\ncompose_files: [app/compose.yml]\nservices:\n  web:\n    tag: 'bad tag'\n"
        "  api:\n    image: 'UPPER/Case:1'\n  both:\n    image: a:1\n    tag: '2'\n",
    )
    assert errors(path) == [
        f"{path}:5: services.web.tag: invalid tag 'bad tag'",
        f"{path}:7: services.api.image: invalid image reference 'UPPER/Case:1'",
        f"{path}:8: services.both: set image or tag, not both",
    ]


def test_duplicate_keys(folder: Path) -> None:
    path = write(folder, "s.yml", "project: p\nproject: q\ncompose_files: [app/compose.yml]\n")
    assert errors(path) == [f"{path}:2: project: duplicate key"]


def test_environment_named_like_a_command(folder: Path) -> None:
    path = write(folder, "diff.yml", "project: p\ncompose_files: [app/compose.yml]\n")
    assert errors(path) == [f"{path}: environment name 'diff' is a deploy command; rename the file"]


def test_unknown_environment_lists_the_known_ones(folder: Path) -> None:
    write(folder, "staging.yml", "project: p\n")
    write(folder, "production.yaml", "project: p\n")
    with pytest.raises(UnknownEnvironmentError) as caught:
        spec_path(folder, "stagign")
    assert (
        caught.value.message
        == f"unknown environment 'stagign' in {folder} (known: production, staging)"
    )


def test_several_hosts_with_batches(folder: Path) -> None:
    path = write(
        folder,
        "production.yml",
        "project: shop\ncompose_files: [app/compose.yml]\n"
        "engine:\n  hosts: ['ssh://deploy@web1:2222', 'tcp://web2:2376', 'unix:///run/h3.sock']\n"
        "deploy: {batch: '50%', batch_pause: 2.5}\n",
    )
    spec = load_spec(path)
    assert (spec.engine_host, spec.engine_hosts, spec.batch, spec.batch_pause) == (
        None,
        ("ssh://deploy@web1:2222", "tcp://web2:2376", "unix:///run/h3.sock"),
        "50%",
        2.5,
    )


def test_bad_hosts_and_batches_all_at_once(folder: Path) -> None:
    both = write(
        folder,
        "both.yml",
        "project: shop\ncompose_files: [app/compose.yml]\n"
        "engine:\n  host: unix:///run/a.sock\n  hosts: [unix:///run/a.sock]\n",
    )
    assert errors(both) == [f"{both}:3: engine: set host or hosts, not both"]
    bad = write(
        folder,
        "bad.yml",
        "project: shop\ncompose_files: [app/compose.yml]\n"
        "engine:\n  hosts:\n    - http://web1\n    - ssh://root@web2\n"
        "deploy: {batch: 0, batch_pause: -1}\n",
    )
    assert errors(bad) == [
        f"{bad}:5: engine.hosts.0: 'http://web1' does not match '^(unix|tcp|ssh)://[^\\\\s]+$'",
        f"{bad}:7: deploy.batch: 0 is not valid under any of the given schemas",
        f"{bad}:7: deploy.batch_pause: -1 is less than the minimum of 0",
    ]
    empty = write(
        folder,
        "empty.yml",
        "project: shop\ncompose_files: [app/compose.yml]\nengine: {hosts: []}\n",
    )
    assert errors(empty) == [f"{empty}:3: engine.hosts: [] should be non-empty"]
    twice = write(
        folder,
        "twice.yml",
        "project: shop\ncompose_files: [app/compose.yml]\n"
        "engine:\n  hosts:\n    - ssh://root@web1\n    - ssh://root@web2\n    - ssh://root@web1/\n",
    )
    assert errors(twice) == [f"{twice}:7: engine.hosts.2: host ssh://root@web1/ is listed twice"]


def test_the_orchestrator_defaults_to_compose_and_may_be_swarm(folder: Path) -> None:
    one_host = write(folder, "staging.yml", "project: shop\ncompose_files: [app/compose.yml]\n")
    assert load_spec(one_host).orchestrator == "compose"
    swarm = write(
        folder,
        "production.yml",
        "project: shop\ncompose_files: [app/compose.yml]\n"
        "engine: {host: 'ssh://deploy@manager1', orchestrator: swarm}\n",
    )
    spec = load_spec(swarm)
    assert (spec.engine_host, spec.orchestrator) == ("ssh://deploy@manager1", "swarm")


def test_a_swarm_is_reached_through_one_manager(folder: Path) -> None:
    several = write(
        folder,
        "several.yml",
        "project: shop\ncompose_files: [app/compose.yml]\n"
        "engine:\n  hosts: [ssh://root@m1, ssh://root@m2]\n  orchestrator: swarm\n",
    )
    assert errors(several) == [
        f"{several}:5: engine.orchestrator: a swarm is reached through one manager: "
        "set engine.host, not engine.hosts"
    ]
    unknown = write(
        folder,
        "unknown.yml",
        "project: shop\ncompose_files: [app/compose.yml]\nengine: {orchestrator: kubernetes}\n",
    )
    assert errors(unknown) == [
        f"{unknown}:3: engine.orchestrator: 'kubernetes' is not one of ['compose', 'swarm']"
    ]


def test_watch_defaults_to_notify_at_the_serve_interval_without_git(folder: Path) -> None:
    """No `watch:` (or an empty one): `deploy serve` tells what differs, at its --interval."""
    bare = write(folder, "bare.yml", "project: p\ncompose_files: [app/compose.yml]\n")
    empty = write(folder, "empty.yml", "project: p\ncompose_files: [app/compose.yml]\nwatch: {}\n")
    assert [load_spec(bare).watch, load_spec(empty).watch] == [
        Watch(interval=None, apply="notify", git=False)
    ] * 2


def test_watch_values_are_read(folder: Path) -> None:
    """`apply: off` bare, which YAML 1.1 reads as false, is off too."""
    texts = [
        "watch:\n  interval: 30\n  apply: auto\n  git: true\n  x-note: nightly\n",
        "watch: {interval: 2.5, apply: 'off'}\n",
        "watch:\n  apply: off\n",
    ]
    paths = [
        write(folder, f"s{n}.yml", "project: p\ncompose_files: [app/compose.yml]\n" + text)
        for n, text in enumerate(texts)
    ]
    assert [load_spec(path).watch for path in paths] == [
        Watch(interval=30.0, apply="auto", git=True),
        Watch(interval=2.5, apply="off", git=False),
        Watch(interval=None, apply="off", git=False),
    ]


def test_bad_watch_values_all_at_once(folder: Path) -> None:
    path = write(
        folder,
        "s.yml",
        "project: p\ncompose_files: [app/compose.yml]\n"
        "watch:\n  apply: sometimes\n  interval: 0\n  git: yes-please\n  when: now\n",
    )
    assert errors(path) == [
        f"{path}:4: watch.apply: 'sometimes' is not one of ['notify', 'auto', 'off', False]",
        f"{path}:5: watch.interval: 0 is less than or equal to the minimum of 0",
        f"{path}:6: watch.git: expected a boolean, got a string",
        f"{path}:7: watch.when: unknown key",
    ]
    nothing = write(folder, "n.yml", "project: p\ncompose_files: [app/compose.yml]\nwatch:\n")
    assert errors(nothing) == [f"{nothing}:3: watch: expected a mapping, got nothing (null)"]
