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
    compose_reading_issues,
    load_variables,
    parse_environment_listing,
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


def test_values_are_python_dotenvs(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('X=1\nSINGLE=\'${X} too\'\nDOUBLE="${X} and more"\nMULTI="a\nb"\nBARE\n')

    variables = load_variables([env], {}, SecretPolicy())

    # python-dotenv interpolates inside single quotes too, where Compose would not: its reading
    # is the one that counts. A bare name has no value, as in Compose.
    assert variables.values() == {
        "X": "1",
        "SINGLE": "1 too",
        "DOUBLE": "1 and more",
        "MULTI": "a\nb",
    }


def test_env_file_that_is_not_utf8(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_bytes(b"A=1\nB=caf\xe9\n")
    with pytest.raises(ConfigError) as caught:
        load_variables([env], {}, SecretPolicy())
    assert caught.value.lines() == [f"{env}:2: env file is not valid UTF-8 text"]


def test_unparsable_lines_are_errors_that_do_not_show_the_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('A=1\nthis is not a variable\nTOKEN="unterminated secret\n')
    with pytest.raises(ConfigError) as caught:
        load_variables([env], {}, SecretPolicy())
    assert caught.value.lines() == [
        f"{env}:2: cannot parse this line (expected NAME=value)",
        f"{env}:3: cannot parse this line (expected NAME=value)",
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


def test_environment_listing_with_multiline_values() -> None:
    listing = "A=1\nMULTI=first\nsecond\nB=x=y\n"
    assert parse_environment_listing(listing) == {"A": "1", "MULTI": "first\nsecond", "B": "x=y"}


def test_where_compose_reads_env_files_differently(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("X=1\nF='${X}'\nG=a$$b\nM=${UNSET-d}\nSAME=ok\nDB_PASSWORD='p${X}'\n")
    variables = load_variables([env], {"SHELL": "wins"}, SecretPolicy(), referenced=["SHELL"])
    # What `docker compose --env-file .env config --environment` printed for this file.
    compose = "F=${X}\nG=a$b\nM=d\nSAME=ok\nX=1\nDB_PASSWORD=p${X}\nSHELL=wins\nPATH=/bin\n"

    issues = compose_reading_issues(variables, compose, None)

    assert [str(i) for i in issues] == [
        f'{env}:2: F: Compose would read this differently: deployer reads "1", docker compose '
        '--env-file reads "${X}"; deployer\'s reading is used',
        f'{env}:3: G: Compose would read this differently: deployer reads "a$$b", docker compose '
        '--env-file reads "a$b"; deployer\'s reading is used',
        f'{env}:4: M: Compose would read this differently: deployer reads "", docker compose '
        '--env-file reads "d"; deployer\'s reading is used',
        f"{env}:6: DB_PASSWORD: Compose would read this differently (values not shown: secret); "
        "deployer's reading is used",
    ]


def test_a_file_compose_cannot_read() -> None:
    failure = (
        "time=x level=warning msg=y\nfailed to read /srv/.env: line 4: unterminated quoted value\n"
    )
    issues = compose_reading_issues(Variables({}), "", failure)
    assert [str(i) for i in issues] == [
        "/srv/.env:4: docker compose cannot read it: unterminated quoted value"
    ]
