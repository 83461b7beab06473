"""Variable layering (as Compose does it), sources, secrets and redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.errors import ConfigError
from deployer.variables import (
    PROCESS_ENVIRONMENT,
    Redactor,
    Variable,
    Variables,
    is_secret,
    load_variables,
)


def test_later_files_win_and_the_process_environment_wins_over_all(tmp_path: Path) -> None:
    base = tmp_path / ".env"
    base.write_text("# shared\nA=base\nB=base\nC=base\nDB_PASSWORD=hunter22\n")
    staging = tmp_path / ".env.staging"
    staging.write_text("B=staging\nC=staging\n")

    variables = load_variables([base, staging], {"C": "process", "UNRELATED": "x"}, secrets=["A"])

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

    variables = load_variables([env], {}, secrets=[])

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
        load_variables([env], {}, secrets=[])
    assert caught.value.lines() == [f"{env}:2: env file is not valid UTF-8 text"]


def test_unparsable_lines_are_errors_that_do_not_show_the_line(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('A=1\nthis is not a variable\nTOKEN="unterminated secret\n')
    with pytest.raises(ConfigError) as caught:
        load_variables([env], {}, secrets=[])
    assert caught.value.lines() == [
        f"{env}:2: cannot parse this line (expected NAME=value)",
        f"{env}:3: cannot parse this line (expected NAME=value)",
    ]


def test_secret_names() -> None:
    names = [
        "DB_PASSWORD",
        "db_passwd",
        "API_SECRET",
        "GITHUB_TOKEN",
        "SSH_KEY",
        "AWS_CREDENTIALS",
        "DSN",
        "HOST",
    ]
    assert [n for n in names if is_secret(n, ["DSN"])] == names[:-1]


def test_redactor_masks_longest_first_and_ignores_tiny_values() -> None:
    redact = Redactor()
    redact.add(["abc", "abcdef", "x"])
    assert redact("value abcdef and abc and x") == "value *** and *** and x"
