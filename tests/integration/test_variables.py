"""Values from .env files reach the containers exactly as python-dotenv read them."""

from __future__ import annotations

import io

import pytest
from dotenv import dotenv_values

from tests.integration.conftest import REGISTRY, Workspace

pytestmark = pytest.mark.integration

AWKWARD_ENV = r"""
SINGLE='say "hi"'
APOSTROPHE="it's"
DOUBLE="say \"hi\" and 'bye'"
DOLLAR='cost: $5 ${HOME} $$ $(whoami)'
DOLLAR_BARE=a$$b
HASH="a # not a comment"
HASH_BARE=a#b
BACKSLASH='C:\path\to\new'
BACKSLASH_DOUBLE="tab\\t and \\n stay"
EQUALS=a=b==c
NEWLINE="first line
second line"
NEWLINE_ESCAPED="one\ntwo"
TAB="a	b"
UNICODE=héllo wörld ✓ 日本語 🚀
SPACES="  padded  "
"""
NAMES = [
    line.split("=", 1)[0] for line in AWKWARD_ENV.split("\n") if "=" in line and line[0].isupper()
]


def test_awkward_values_reach_the_container_byte_for_byte(workspace: Workspace) -> None:
    environment_lines = "\n".join(f"      {name}: ${{{name}}}" for name in NAMES)
    workspace.write(
        "app/compose.yml",
        f"services:\n  web:\n    image: {REGISTRY}/testapp:1.0.0\n    environment:\n{environment_lines}\n"
        "      PASSED_THROUGH:\n",
    )
    workspace.write("app/.env", AWKWARD_ENV + "PASSED_THROUGH='x $y \"z\"'\n")
    workspace.write(
        "test.yml",
        f"project: {workspace.project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n",
    )
    expected = dotenv_values(stream=io.StringIO(AWKWARD_ENV + "PASSED_THROUGH='x $y \"z\"'\n"))
    assert expected["NEWLINE"] == "first line\nsecond line"  # the test's own premise

    result = workspace.deploy("test", "--yes")

    assert result.returncode == 0, result.stderr
    [web] = workspace.containers("web")
    raw = web.exec_run(["cat", "/proc/1/environ"]).output
    seen = dict(entry.split(b"=", 1) for entry in raw.split(b"\0") if entry)
    for name in [*NAMES, "PASSED_THROUGH"]:
        assert seen[name.encode()] == str(expected[name]).encode("utf-8"), name
    assert workspace.deploy("diff", "test").returncode == 0
