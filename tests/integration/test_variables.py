"""deployer reads env files as `docker compose --env-file` does, value for value and refusal for
refusal, and those values reach the containers byte for byte."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from deployer.core.command import Command
from deployer.core.errors import ConfigError, ConfigIssue
from deployer.core.variables import SecretPolicy, load_variables
from deployer.infra import runner
from tests.integration.conftest import REGISTRY, Workspace

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parents[1] / "unit" / "fixtures" / "compose_go_dotenv"
# The docker CLI and Compose add these to the environment they read env files with.
COMPOSE_OWN = re.compile(r"^(DOCKER_|COMPOSE_|PWD$)")
LISTED_NAME = re.compile(r"^([^=\n]*)=", re.MULTILINE)


def compose_reading(
    env_files: Sequence[Path], process: Mapping[str, str]
) -> tuple[dict[str, str] | None, str]:
    """What `docker compose --env-file ...` reads, per variable, or None and its error. The
    `config --environment` listing is ambiguous where values span lines, so it only proposes
    names; each value is read back through a service's `environment: [NAME]`, in JSON."""
    argv = ["docker", "compose", "--project-name", "probe"]
    for path in env_files:
        argv += ["--env-file", str(path)]
    listing = runner.run(
        Command((*argv, "--file", "-", "config", "--environment"), dict(process), "services: {}\n"),
        check=False,
    )
    if listing.returncode != 0:
        return None, listing.stderr.strip().splitlines()[-1]
    inherited = runner.tool_environment(os.environ) | dict(process)
    names = sorted(
        name
        for name in set(LISTED_NAME.findall(listing.stdout))
        if name and name not in inherited and not COMPOSE_OWN.match(name)
    )
    compose_file = json.dumps({"services": {"probe": {"image": "x", "environment": names}}})
    argv += ["--file", "-", "config", "--format", "json"]
    resolved = runner.run(Command(tuple(argv), dict(process), compose_file))
    environment = json.loads(resolved.stdout)["services"]["probe"].get("environment", {})
    # A name that only looked like one (a line inside a value) resolves to nothing. The model
    # Compose prints writes a literal `$` as `$$`.
    values = {n: v.replace("$$", "$") for n, v in environment.items() if v is not None}
    return values, ""


def deployers_reading(
    env_files: Sequence[Path], process: Mapping[str, str]
) -> tuple[dict[str, str] | None, list[ConfigIssue]]:
    inherited = runner.tool_environment(os.environ) | dict(process)
    try:
        variables = load_variables(env_files, inherited, SecretPolicy())
    except ConfigError as e:
        return None, e.issues
    return {n: v for n, v in variables.values().items() if n not in inherited}, []


# Lines the issue and deployer's users care about, beyond compose-go's fixtures; each file is
# read alone, with an empty process environment but for what the docker CLI needs.
PROBES = {
    "issue.env": "A=va\nB=$A\nC=${UNSET-fallback}\nE=${UNSET:-${A}x}\nF=a$$b\nX=xv\nG='${X}'\n",
    "quotes.env": (
        "S='say \"hi\" $A ${A} \\n \\\\ \\'q\\''\n"
        'D="say \\"hi\\" and \'bye\' \\t|\\n|\\\\|\\$A|\\0101|\\0|\\08|\\x41|\\c"\n'
        "E1=''\nE2=\"\"\nE3=\nE4=   \n"
        "A=1\n"
        "AFTER=\"x\"  # a comment\nJOINED='x'y\n"
    ),
    "interpolation.env": (
        "A=a\nEMPTY=\n"
        "P1=${A:+set}|${EMPTY:+set}|${UNSET:+set}|${A+set}|${EMPTY+set}|${UNSET+set}\n"
        "P2=${EMPTY:-d}|${EMPTY-d}|${UNSET:-${UNSET2:-${A}}}|${A?no}|${EMPTY?no}\n"
        'P3=$A$A${A}}|$|$ |a$|$1|${A:-{}x}|${UNSET:-{"json":1}}|$$$A|\\$A\n'
        'P4="${A:-x y} $A.$A-$A"\n'
        "P5=${A}_${A}\n"
    ),
    "layout.env": (
        "# a comment\n\n   # an indented comment\nexport EXPORTED=1\n  export  SPACED = 2 \n"
        "YAML: style\nYAML2:x:y\nINLINE=value # comment\nHASH=a#b\nHASH2=a\t#b\n"
        "DOTS.AND-DASHES[1]=ok\n1DIGIT=ok\nTAB\tKEY=x\n"
        "MULTI=\"line one\nline two\n  three\"\nMULTI_SINGLE='a\nB=not a variable'\n"
        "UNICODE=héllo wörld ✓ 日本語 🚀\nÜNICODE_NAME=ok\n"
    ),
    "crlf.env": "A=1\r\nB='x'\r\nC=\"multi\r\nline\"\r\nD=${A}\r\n\r\nE=e # c\r\n",
    "bom.env": "\ufeffA=1\nB=$A\n",
    "bare.env": "A=1\nHOME\nA\nNOT_SET_ANYWHERE\nLAST_BARE",
}
REFUSED = {
    "required.env": ("A=1\nD=${UNSET:?required}\n", 2),
    "required-empty.env": ("A=\nD=${A:?}\n", 2),
    "space.env": ("A=1\nTHIS IS NOT=a variable\n", 2),
    "unterminated.env": ('A=1\nTOKEN="secret\nB=2\n\n', 5),
    "unterminated-single.env": ("A=1\nTOKEN='secret", 2),
    "character.env": ("A=1\nB=2\nTOKEN$=x\n", 3),
    "invalid-template.env": ("A=1\nB=${A\n", 2),
    "invalid-name.env": ("A=1\nB=${1A}\n", 2),
    "export-only.env": ("A=1\nexport   ", 2),
}


def probe_cases() -> list[tuple[list[str], dict[str, str]]]:
    fixtures = sorted(p.name for p in FIXTURES.iterdir() if p.suffix in (".env", ".format"))
    cases: list[tuple[list[str], dict[str, str]]] = [
        ([f"fixture:{name}"], {}) for name in fixtures if name != "invalid1.env"
    ]
    inherited = {"VAR_TO_BE_LOADED_FROM_OS_ENV": "SOME_RANDOM_VALUE"}
    cases += [
        (["fixture:inherited-multi-var.env"], inherited),
        (["fixture:inherited-single-var.env"], inherited),
        (["fixture:substitutions.env"], {"OPTION_A": "5"}),
        (["fixture:substitutions-default.env"], {"OPTION_A": "5"}),
    ]
    cases += [([name], {}) for name in PROBES]
    cases += [(["bare.env"], {"A": "from the shell", "NOT_SET_ANYWHERE": "now set"})]
    return cases


def files(tmp_path: Path, names: Sequence[str], texts: Mapping[str, str]) -> list[Path]:
    paths = []
    for name in names:
        if name.startswith("fixture:"):
            paths.append(FIXTURES / name.removeprefix("fixture:"))
        else:
            path = tmp_path / name
            path.write_bytes(texts[name].encode("utf-8"))
            paths.append(path)
    return paths


@pytest.mark.parametrize(
    ("names", "process"),
    [
        pytest.param(names, process, id="+".join(names) + (" with env" if process else ""))
        for names, process in probe_cases()
    ],
)
def test_deployer_reads_each_env_file_as_compose_does(
    tmp_path: Path, names: list[str], process: dict[str, str]
) -> None:
    env_files = files(tmp_path, names, PROBES)

    theirs, failure = compose_reading(env_files, process)
    ours, _ = deployers_reading(env_files, process)

    assert theirs is not None, failure
    assert ours == theirs


def test_several_files_as_compose_reads_them(tmp_path: Path) -> None:
    texts = {
        "base.env": "A=a1\nB=b1\nP=p1\nREF1=${P}-${B}\nONLY_BASE=$A\n",
        "staging.env": "B=b2\nREF2=${A}-${B}-${P}\nA=a2\nREF3=$A\nP\n",
    }
    env_files = files(tmp_path, ["base.env", "staging.env"], texts)
    process = {"P": "from the shell"}

    theirs, failure = compose_reading(env_files, process)
    ours, _ = deployers_reading(env_files, process)

    assert theirs is not None, failure
    # Later files win, `${VAR}` sees earlier files, the process environment wins in both.
    assert theirs["REF2"] == "a1-b2-from the shell"
    assert ours == theirs


@pytest.mark.parametrize("name", [*REFUSED, "fixture:invalid1.env"])
def test_deployer_refuses_what_compose_refuses_at_its_line(tmp_path: Path, name: str) -> None:
    texts = {n: text for n, (text, _) in REFUSED.items()}
    [env_file] = files(tmp_path, [name], texts)
    line = REFUSED[name][1] if name in REFUSED else 7

    theirs, failure = compose_reading([env_file], {})
    ours, issues = deployers_reading([env_file], {})

    assert (theirs, ours) == (None, None)
    [issue] = issues
    assert (issue.file, issue.line) == (str(env_file), line)
    # Compose's words, less the line's text that Compose adds (it may hold a secret).
    assert issue.message.split(" (")[0].split(" in variable name")[0] in failure
    compose_line = re.search(r": line (\d+): ", failure)
    assert compose_line is None or int(compose_line.group(1)) == line


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
PASSED_THROUGH='x $y "z"'
"""
NAMES = [
    line.split("=", 1)[0] for line in AWKWARD_ENV.split("\n") if "=" in line and line[0].isupper()
]


def test_awkward_values_reach_the_container_byte_for_byte(workspace: Workspace) -> None:
    environment_lines = "\n".join(f"      {name}: ${{{name}}}" for name in NAMES[:-1])
    workspace.write(
        "app/compose.yml",
        f"services:\n  web:\n    image: {REGISTRY}/testapp:1.0.0\n    environment:\n{environment_lines}\n"
        "      PASSED_THROUGH:\n",
    )
    env_file = workspace.write("app/.env", AWKWARD_ENV)
    workspace.write(
        "test.yml",
        f"project: {workspace.project}\ncompose_files: [app/compose.yml]\nenv_files: [app/.env]\n",
    )
    expected, failure = compose_reading([env_file], {})
    assert expected is not None, failure
    # The test's own premise: these values are awkward.
    assert expected["NEWLINE"] == "first line\nsecond line"
    assert expected["DOLLAR"] == "cost: $5 ${HOME} $$ $(whoami)"

    result = workspace.deploy("test", "--yes")

    assert result.returncode == 0, result.stderr
    [web] = workspace.containers("web")
    raw = web.exec_run(["cat", "/proc/1/environ"]).output
    seen = dict(entry.split(b"=", 1) for entry in raw.split(b"\0") if entry)
    for name in NAMES:
        assert seen[name.encode()] == expected[name].encode("utf-8"), name
    assert workspace.deploy("diff", "test").returncode == 0
