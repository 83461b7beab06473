"""Variable layering (as Compose does it), sources, secrets and redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.core.errors import ConfigError
from deployer.core.variables import (
    PROCESS_ENVIRONMENT,
    Redactor,
    SecretPolicy,
    Variable,
    Variables,
    load_variables,
    referenced_names,
    weak_secret_issues,
)


def test_later_files_win_and_the_process_environment_wins_over_all(tmp_path: Path) -> None:
    base = tmp_path / ".env"
    base.write_text("# shared\nA=base\nB=base\nC=base\nDB_PASSWORD=hunter22\n")
    staging = tmp_path / ".env.staging"
    staging.write_text("B=staging\nC=staging\n")

    variables = load_variables(
        [base, staging], {"C": "process", "UNRELATED": "x"}, SecretPolicy(frozenset({"A"}))
    )

    assert variables == Variables(
        {
            "A": Variable("A", "base", f"{base}:2", secret=True),
            "B": Variable("B", "staging", f"{staging}:1", secret=False),
            "C": Variable("C", "process", PROCESS_ENVIRONMENT, secret=False),
            "DB_PASSWORD": Variable("DB_PASSWORD", "hunter22", f"{base}:5", secret=True),
        }
    )
    assert variables.secret_values() == ["base", "hunter22"]


def test_values_are_composes(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('X=1\nSINGLE=\'${X} too\'\nDOUBLE="${X} and more"\nMULTI="a\nb"\nBARE\nSET\n')

    variables = load_variables([env], {"SET": "s"}, SecretPolicy())

    # Single quotes are literal, as in Compose. A bare name has the process environment's value,
    # if any.
    assert variables.items == {
        "X": Variable("X", "1", f"{env}:1", secret=False),
        "SINGLE": Variable("SINGLE", "${X} too", f"{env}:2", secret=False),
        "DOUBLE": Variable("DOUBLE", "1 and more", f"{env}:3", secret=False),
        "MULTI": Variable("MULTI", "a\nb", f"{env}:4", secret=False),
        "SET": Variable("SET", "s", PROCESS_ENVIRONMENT, secret=False),
    }


def test_env_file_that_is_not_utf8(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_bytes(b"A=1\nB=caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_variables([env], {}, SecretPolicy())
    assert caught.value.lines() == [f"{env}:2: env file is not valid UTF-8 text"]


def test_unparsable_files_are_errors_that_do_not_show_the_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\nthis is not a variable\n")
    other = tmp_path / ".env.other"
    other.write_text('A=1\nTOKEN="unterminated secret\n')
    with pytest.raises(ConfigError) as caught:
        load_variables([env, other], {}, SecretPolicy())
    # As Compose, the first problem of each file (Compose counts the lines to the file's end).
    assert caught.value.lines() == [
        f"{env}:2: key cannot contain a space",
        f"{other}:3: unterminated quoted value (the quote opens on line 2)",
    ]


def test_later_files_see_earlier_files_and_the_process_environment(tmp_path: Path) -> None:
    base = tmp_path / ".env"
    base.write_text("IMAGE_REGISTRY=127.0.0.1:5000\nX=from-file\n")
    staging = tmp_path / ".env.staging"
    staging.write_text("CHAIN=${IMAGE_REGISTRY}/web\nBOTH=${X}-${FROM_SHELL}\n")

    variables = load_variables([base, staging], {"X": "shell", "FROM_SHELL": "s"}, SecretPolicy())

    # As `docker compose --env-file .env --env-file .env.staging` reads them: the process
    # environment wins in lookups too.
    assert variables.values() == {
        "IMAGE_REGISTRY": "127.0.0.1:5000",
        "X": "shell",
        "CHAIN": "127.0.0.1:5000/web",
        "BOTH": "shell-s",
    }


def test_process_variables_referenced_by_compose_files_and_compose_options_count(
    tmp_path: Path,
) -> None:
    env = tmp_path / ".env"
    env.write_text("WEB_TAG=1.0\n")
    process = {"TAG": "2.0", "COMPOSE_PROFILES": "debug", "HOME": "/root", "API_TOKEN": "t0ken-xyz"}

    variables = load_variables([env], process, SecretPolicy(), referenced=["TAG", "API_TOKEN"])

    assert variables == Variables(
        {
            "WEB_TAG": Variable("WEB_TAG", "1.0", f"{env}:1", secret=False),
            "API_TOKEN": Variable("API_TOKEN", "t0ken-xyz", PROCESS_ENVIRONMENT, secret=True),
            "COMPOSE_PROFILES": Variable("COMPOSE_PROFILES", "debug", PROCESS_ENVIRONMENT, False),
            "TAG": Variable("TAG", "2.0", PROCESS_ENVIRONMENT, secret=False),
        }
    )


def test_referenced_names() -> None:
    texts = [
        "image: ${REGISTRY:?set it}/web:${TAG:-${DEFAULT_TAG}}\n",
        "command: echo $$NOT_A_REFERENCE $PLAIN $$$AFTER_ESCAPE",
        "x: ${lower_case}",
    ]
    assert referenced_names(texts) == {
        "REGISTRY",
        "TAG",
        "DEFAULT_TAG",
        "PLAIN",
        "AFTER_ESCAPE",
        "lower_case",
    }


def test_secret_names_by_their_parts() -> None:
    names = [
        "DB_PASSWORD",
        "db_passwd",
        "API_SECRET",
        "GITHUB_TOKEN",
        "SSH_KEY",
        "SSH_KEYS",
        "AWS_CREDENTIALS",
        "AWS_SECRET_ACCESS_KEY",
        "apiKey",
        "APIKEY",
        "DSN",
        "KEYCLOAK_ENABLED",
        "TOKENIZER_MODEL",
        "PASSWORDLESS_LOGIN",
        "AUTH_TOKEN_ENABLED",
        "HOST",
    ]
    policy = SecretPolicy(
        frozenset({"DSN", "SSH_KEY"}), frozenset({"AUTH_TOKEN_ENABLED", "SSH_KEY"})
    )
    assert [n for n in names if policy(n)] == names[:11]


def test_redactor_masks_longest_first_and_ignores_tiny_values() -> None:
    redact = Redactor()
    redact.add(["abc", "abcdef", "x"])
    assert redact("value abcdef and abc and x") == "value *** and *** and x"


def test_redactor_masks_escaped_forms() -> None:
    secret = "pa'ss\"w\\rd$1"
    redact = Redactor()
    redact.add([secret])
    texts = [
        "raw: pa'ss\"w\\rd$1",
        "yaml single: 'pa''ss\"w\\rd$1'",
        'json: "pa\'ss\\"w\\\\rd$1"',
        "shell: X='pa'\"'\"'ss\"w\\rd$1'",
        "compose model: pa'ss\"w\\rd$$1",
    ]
    assert [redact(t) for t in texts] == [
        "raw: ***",
        "yaml single: '***'",
        'json: "***"',
        "shell: X=***",
        "compose model: ***",
    ]


def test_weak_secrets(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    variables = Variables(
        {
            "POSTGRES_PASSWORD": Variable("POSTGRES_PASSWORD", "postgres", f"{env}:1", True),
            "API_TOKEN": Variable("API_TOKEN", "short", f"{env}:2", True),
            "DB_PASSWORD": Variable("DB_PASSWORD", "long-enough-secret", f"{env}:3", True),
            "SERVICE": Variable("SERVICE", "postgres", f"{env}:4", False),
            "SHELL_TOKEN": Variable("SHELL_TOKEN", "tiny", PROCESS_ENVIRONMENT, True),
        }
    )

    issues = weak_secret_issues(variables, {"postgres", "web", "shop-staging"})

    assert [str(i) for i in issues] == [
        f"{env}:1: POSTGRES_PASSWORD: weak secret: its value is also a name in this environment "
        "(service, image, project, network, volume or host)",
        f"{env}:2: API_TOKEN: weak secret: its value is shorter than 8 characters",
        "process environment: SHELL_TOKEN: weak secret: its value is shorter than 8 characters",
    ]
