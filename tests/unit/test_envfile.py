"""Env files are read as Compose reads them: deployer.core.envfile ports compose-go v2.9.1's dotenv
parser and interpolation. The expected values are compose-go's own (its fixtures and the tables of
dotenv/godotenv_test.go, parser_test.go, godotenv_var_expansion_test.go and
template/template_test.go), and Compose's where its CLI reads a fixture differently from the Go
function those tests call (noted where so)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployer.core.envfile import TemplateError, parse, substitute
from deployer.core.errors import ConfigError
from deployer.core.variables import PROCESS_ENVIRONMENT, SecretPolicy, Variable, load_variables

FIXTURES = Path(__file__).parent / "fixtures" / "compose_go_dotenv"
INHERITED = {"VAR_TO_BE_LOADED_FROM_OS_ENV": "SOME_RANDOM_VALUE"}


def read(text: str, environment: dict[str, str] | None = None) -> dict[str, str]:
    values: dict[str, str] = {}
    for binding in parse(text, ".env", environment or {}, {}):
        values[binding.name] = binding.value
    return values


def refusal(text: str, environment: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, ".env", environment or {}, {})
    return caught.value.lines()


def load_refusal(env: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_variables([env], {}, SecretPolicy())
    return caught.value.lines()


# The issue's examples: python-dotenv read each of them differently.
def test_the_issues_examples_read_as_compose_reads_them(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=va\nB=$A\nC=${UNSET-fallback}\nE=${UNSET:-${A}x}\nF=a$$b\nX=xv\nG='${X}'\n")

    variables = load_variables([env], {}, SecretPolicy())

    # What `docker compose --env-file .env config --environment` printed for this file.
    assert variables.values() == {
        "A": "va",
        "B": "va",
        "C": "fallback",
        "E": "vax",
        "F": "a$b",
        "X": "xv",
        "G": "${X}",
    }


def test_a_required_variable_that_is_unset_refuses_the_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\nD=${UNSET:?required}\n")
    assert load_refusal(env) == [f"{env}:2: required variable UNSET is missing a value: required"]


PLAIN = {
    "OPTION_A": "1",
    "OPTION_B": "2",
    "OPTION_C": "3",
    "OPTION_D": "4",
    "OPTION_E": "5",
    # compose-go's Read() drops names that start with a digit; Compose's --env-file keeps them.
    "456": "ABC",
    "OPTION_F": "",
    "OPTION_G": "",
    "OPTION_H": "my string",
}
SUBSTITUTED = {
    "OPTION_A": "1",
    "OPTION_B": "1",
    "OPTION_C": "1",
    "OPTION_D": "1_1",
    "OPTION_E": "",
}
FIXTURE_VALUES = [
    ("custom.format", {}, {"FOO": "BAR", "ZOT": "QIX"}),
    ("equals.env", {}, {"OPTION_A": "postgres://localhost:5432/database?sslmode=disable"}),
    ("exported.env", {}, {"OPTION_A": "2", "OPTION_B": "\\n"}),
    ("inherited-multi-var.env", {}, {"foo": "bar", "bar": "baz"}),
    (
        "inherited-multi-var.env",
        INHERITED,
        {"foo": "bar", "VAR_TO_BE_LOADED_FROM_OS_ENV": "SOME_RANDOM_VALUE", "bar": "baz"},
    ),
    ("inherited-not-found.env", {}, {}),
    ("inherited-single-var.env", {}, {}),
    ("inherited-single-var.env", INHERITED, INHERITED),
    ("plain.env", {}, PLAIN),
    (
        "quoted.env",
        {},
        {
            "OPTION_A": "1",
            "OPTION_B": "2",
            "OPTION_C": "",
            "OPTION_D": "\\n",
            "OPTION_E": "1",
            "OPTION_F": "2",
            "OPTION_G": "",
            "OPTION_H": "\n",
            "OPTION_I": "echo 'asd'",
            "OPTION_J": "first line\nsecond line\nthird line\nand so on",
            "OPTION_K": "Let's go!",
            "OPTION_Z": "last value",
        },
    ),
    (
        "special.env",
        {},
        {
            "VAR.WITH.DOTS": "dots",
            "VAR_WITH_UNDERSCORES": "underscores",
            "VAR-WITH-DASHES": "dashes",
        },
    ),
    ("substitutions-default.env", {}, SUBSTITUTED),
    (
        "substitutions-default.env",
        {"OPTION_A": "5"},
        {"OPTION_A": "5", "OPTION_B": "5", "OPTION_C": "5", "OPTION_D": "5_5", "OPTION_E": ""},
    ),
    ("substitutions.env", {}, SUBSTITUTED),
    # The file's own OPTION_A is 1; its lookups see the process environment's 5 first.
    (
        "substitutions.env",
        {"OPTION_A": "5"},
        {"OPTION_A": "1", "OPTION_B": "5", "OPTION_C": "5", "OPTION_D": "5_5", "OPTION_E": ""},
    ),
    (
        "unquoted.env",
        {},
        {
            "OPTION_A": "some quoted phrase",
            "OPTION_B": "first one with an unquoted phrase",
            "OPTION_C": "then another one with an unquoted phrase",
            "OPTION_D": "then another one with an unquoted phrase special è char",
            "OPTION_E": "then another one quoted phrase",
        },
    ),
    ("utf8-bom.env", {}, PLAIN),
]


@pytest.mark.parametrize(("fixture", "environment", "expected"), FIXTURE_VALUES)
def test_compose_go_fixtures(
    fixture: str, environment: dict[str, str], expected: dict[str, str]
) -> None:
    text = (FIXTURES / fixture).read_bytes().decode("utf-8")
    assert read(text, environment) == expected


def test_the_bom_fixture_has_its_bom() -> None:
    # The BOM is invisible: without it, the fixture would test nothing of its own.
    assert (FIXTURES / "utf8-bom.env").read_bytes().startswith(b"\xef\xbb\xbf")


def test_compose_go_fixture_compose_refuses() -> None:
    text = (FIXTURES / "invalid1.env").read_text()
    assert refusal(text) == [".env:7: key cannot contain a space"]


def test_every_fixture_has_a_test() -> None:
    tested = {fixture for fixture, _, _ in FIXTURE_VALUES} | {"invalid1.env"}
    fixtures = {p.name for p in FIXTURES.iterdir() if p.suffix in (".env", ".format")}
    assert fixtures == tested


# dotenv/godotenv_test.go's TestParsing, TestParse, TestExpanding, TestParseBytes and the other
# one-line cases: (text, name, value).
PARSE_CASES = [
    ("FOO=bar", "FOO", "bar"),
    ("FOO =bar", "FOO", "bar"),
    ("FOO= bar", "FOO", "bar"),
    ('FOO="bar"', "FOO", "bar"),
    ("FOO='bar'", "FOO", "bar"),
    ('FOO="escaped\\"bar"', "FOO", 'escaped"bar'),
    ('FOO="\\"quoted\\""', "FOO", '"quoted"'),
    ("FOO=\"'d'\"", "FOO", "'d'"),
    ("OPTION_A: 1", "OPTION_A", "1"),
    ("OPTION_A: Foo=bar", "OPTION_A", "Foo=bar"),
    ("OPTION_A=1:B", "OPTION_A", "1:B"),
    ("export OPTION_A=2", "OPTION_A", "2"),
    ("export OPTION_B='\\n'", "OPTION_B", "\\n"),
    ("export exportFoo=2", "exportFoo", "2"),
    ("exportFOO=2", "exportFOO", "2"),
    ("export_FOO =2", "export_FOO", "2"),
    ("export.FOO= 2", "export.FOO", "2"),
    ("export\tOPTION_A=2", "OPTION_A", "2"),
    ("  export OPTION_A=2", "OPTION_A", "2"),
    ("\texport OPTION_A=2", "OPTION_A", "2"),
    ('export OPTION_A="export A"', "OPTION_A", "export A"),
    ('FOO="bar\\nbaz"', "FOO", "bar\nbaz"),
    ("FOO=a\\tb", "FOO", "a\\tb"),
    ('FOO="a\\tb"', "FOO", "a\tb"),
    ('KEY="Z\\aZ\\bZ\\fZ\\nZ\\rZ\\tZ\\vZ\\\\Z\\0123Z"', "KEY", "Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\ZSZ"),
    ("FOO.BAR=foobar", "FOO.BAR", "foobar"),
    ("FOO=foobar=", "FOO", "foobar="),
    ("FOO=bar ", "FOO", "bar"),
    ("FOO=bar # this is foo", "FOO", "bar"),
    ("FOO=bar #this is foo", "FOO", "bar"),
    ("FOO=bar #", "FOO", "bar"),
    ("FOO=123#not-an-inline-comment", "FOO", "123#not-an-inline-comment"),
    ('FOO="bar#baz"', "FOO", "bar#baz"),
    ('FOO="bar#baz"#', "FOO", "bar#baz"),
    ('FOO="bar#baz" # comment', "FOO", "bar#baz"),
    ("FOO='bar#baz' # comment", "FOO", "bar#baz"),
    ('FOO="bar#baz#bang" # comment', "FOO", "bar#baz#bang"),
    ('FOO="ba#r"', "FOO", "ba#r"),
    ("FOO='ba#r'", "FOO", "ba#r"),
    ('FOO="bar\\n\\ b\\az"', "FOO", "bar\n\\ b\az"),
    ('FOO="bar\\\\\\n\\ b\\az"', "FOO", "bar\\\n\\ b\az"),
    ('FOO="bar\\\\r\\ b\\az"', "FOO", "bar\\r\\ b\az"),
    ('FOO="bar\\nbaz\\\\"', "FOO", "bar\nbaz\\"),
    ('="value"', "", "value"),
    (" KEY =value", "KEY", "value"),
    ("   KEY=value", "KEY", "value"),
    ("\tKEY=value", "KEY", "value"),
    ('KEY="\\0123"', "KEY", "S"),
    ('KEY="\\x07"', "KEY", "\\x07"),
    ('KEY="\\u12e4"', "KEY", "\\u12e4"),
    ('KEY="\\U00101234"', "KEY", "\\U00101234"),
    # TestExpanding
    ("FOO=test\nBAR=$FOO", "BAR", "test"),
    ("FOO=test\nBAR=${FOO}bar", "BAR", "testbar"),
    ("BAR=$FOO", "BAR", ""),
    ('FOO=test\nBAR="quote $FOO"', "BAR", "quote test"),
    ("BAR='quote $FOO'", "BAR", "quote $FOO"),
    ('FOO="foo\\$BAR"', "FOO", "foo$BAR"),
    ('FOO="foo\\${BAR}"', "FOO", "foo${BAR}"),
    ('FOO=test\nBAR="foo\\${FOO} ${FOO}"', "BAR", "foo${FOO} test"),
    # TestVariableStringValueSeparator
    (
        'TEST_URLS="stratum+tcp://stratum.antpool.com:3333\nstratum+tcp://stratum.antpool.com:443"',
        "TEST_URLS",
        "stratum+tcp://stratum.antpool.com:3333\nstratum+tcp://stratum.antpool.com:443",
    ),
    # TestLinesToIgnore's one statement
    ("export OPTION_B='\\n'", "OPTION_B", "\\n"),
]


@pytest.mark.parametrize(("text", "name", "value"), PARSE_CASES)
def test_compose_go_parse_cases(text: str, name: str, value: str) -> None:
    assert read(text)[name] == value


def test_compose_go_parse_whole_files() -> None:
    # TestParse, TestParseBytes
    assert read("ONE=1\nTWO='2'\nTHREE = \"3\"") == {"ONE": "1", "TWO": "2", "THREE": "3"}
    text = "\na=b\na[1]=c\na.propertyKey=d\nárvíztűrő-TÜKÖRFÚRÓGÉP=ÁRVÍZTŰRŐ-tükörfúrógép\n"
    assert read(text) == {
        "a": "b",
        "a[1]": "c",
        "a.propertyKey": "d",
        "árvíztűrő-TÜKÖRFÚRÓGÉP": "ÁRVÍZTŰRŐ-tükörfúrógép",
    }
    # TestExpandingEnvironmentWithLookup
    assert read("TEST=$ME", {"ME": "YES"}) == {"TEST": "YES"}
    # TestMemoryExplosion: every line read, none lost.
    many = "\n".join(f"KEY{i}=VALUE{i}" for i in range(1000))
    assert read(many) == {f"KEY{i}": f"VALUE{i}" for i in range(1000)}


@pytest.mark.parametrize("text", ["\n", "\r\n", "\t\t ", "# Comment", "\t # comment"])
def test_compose_go_lines_to_ignore(text: str) -> None:
    assert read(text) == {}


@pytest.mark.parametrize(
    "text",
    [
        'KEY="',
        'KEY="value',
        'KEY="value\\"',
        "KEY=\"value'",
        "KEY='",
        "KEY='value",
        "KEY='value\\'",
        "KEY='value\"",
    ],
)
def test_compose_go_unterminated_quotes(text: str) -> None:
    assert refusal(text) == [".env:1: unterminated quoted value (the quote opens on line 1)"]


def test_compose_go_refusals_without_the_lines_text() -> None:
    # TestParseVariable: Compose also quotes the line; deployer does not (it may hold a secret).
    assert refusal("%!(EXTRA string)=foo") == ['.env:1: unexpected character "%" in variable name']
    assert refusal("lol$wut") == ['.env:1: unexpected character "$" in variable name']


# dotenv/godotenv_var_expansion_test.go, whose lookups see EMPTY_VAR (empty) and TEST_VAR.
EXPANSION_VALUES = {"EMPTY_VAR": "", "TEST_VAR": "Test Value"}
EXPANSIONS = [
    ("RESULT=${UNSET_VAR:-Default Value}", "RESULT=Default Value"),
    ("RESULT=${EMPTY_VAR:-Default Value}", "RESULT=Default Value"),
    ("RESULT=${TEST_VAR:-Default Value}", "RESULT=Test Value"),
    ("RESULT=${UNSET_VAR-Default Value}", "RESULT=Default Value"),
    ("RESULT=${EMPTY_VAR-Default Value}", "RESULT="),
    ("RESULT=${TEST_VAR-Default Value}", "RESULT=Test Value"),
    ("RESULT=${TEST_VAR:?Default Value}", "RESULT=Test Value"),
    ("RESULT=${EMPTY_VAR?Test error}", "RESULT="),
    ("RESULT=${TEST_VAR?Default Value}", "RESULT=Test Value"),
]
EXPANSION_ERRORS = [
    (
        "RESULT=${UNSET_VAR:?Test error}",
        "required variable UNSET_VAR is missing a value: Test error",
    ),
    (
        "RESULT=${EMPTY_VAR:?Test error}",
        "required variable EMPTY_VAR is missing a value: Test error",
    ),
    (
        "RESULT=${UNSET_VAR?Test error}",
        "required variable UNSET_VAR is missing a value: Test error",
    ),
]


# template/template_test.go, whose lookups see FOO, BAR (empty) and JSON.
TEMPLATE_VALUES = {"FOO": "first", "BAR": "", "JSON": '{"json":2}'}
TEMPLATES = [
    ("$${foo}", "${foo}"),
    ("foo", "foo"),
    ("a $ string", "a $ string"),
    ("^REGEX$", "^REGEX$"),
    ("$}", "$}"),
    ("$", "$"),
    ("$FOO-bar", "first-bar"),
    ("This ${missing} var", "This  var"),
    ("This ${BAR} var", "This  var"),
    ("This $FOO var", "This first var"),
    ("This ${FOO} var", "This first var"),
    ("ok ${missing:-def}", "ok def"),
    ("ok ${missing-def}", "ok def"),
    ("ok ${BAR:-def}", "ok def"),
    ("ok ${FOO:-def}", "ok first"),
    ("ok ${BAR-def}", "ok "),
    ("ok ${UNSET_VAR:+presence_value}", "ok "),
    ("ok ${UNSET_VAR+presence_value}", "ok "),
    ("ok ${FOO:+presence_value}", "ok presence_value"),
    ("ok ${FOO+presence_value}", "ok presence_value"),
    ("ok ${BAR+presence_value}", "ok presence_value"),
    ("ok ${BAR:+presence_value}", "ok "),
    ("ok ${BAR:-/non:-alphanumeric}", "ok /non:-alphanumeric"),
    # TestInterpolationExternalInterference
    ("-ok ${BAR:-defaultValue}", "-ok defaultValue"),
    ("+ok ${UNSET:-${BAR-defaultValue}}", "+ok "),
    ("-ok ${FOO:-defaultValue}", "-ok first"),
    (":-ok ${UNSET-defaultValue}", ":-ok defaultValue"),
    (":-ok ${BAR-defaultValue}", ":-ok "),
    (":?ok ${BAR-defaultValue}", ":?ok "),
    (":?ok ${BAR:-defaultValue}", ":?ok defaultValue"),
    (":+ok ${BAR:-defaultValue}", ":+ok defaultValue"),
    ("+ok ${BAR-defaultValue}", "+ok "),
    ("?ok ${BAR:-defaultValue}", "?ok defaultValue"),
    # TestDefaultsWithNestedExpansion
    ("ok ${UNSET_VAR-$FOO}", "ok first"),
    ("ok ${UNSET_VAR-${FOO}}", "ok first"),
    ("ok ${UNSET_VAR-${FOO} ${FOO}}", "ok first first"),
    ("ok ${BAR:-$FOO}", "ok first"),
    ("ok ${BAR:-${FOO}}", "ok first"),
    ("ok ${BAR:-${FOO} ${FOO}}", "ok first first"),
    ("ok ${BAR+$FOO}", "ok first"),
    ("ok ${BAR+$FOO ${FOO:+second}}", "ok first second"),
    # TestDefaultsForMandatoryVariables, TestSubstituteWithReplacementFunc's last case
    ("ok ${FOO:?err}", "ok first"),
    ("ok ${FOO?err}", "ok first"),
    ("ok ${BAR?err}", "ok "),
    ("ok ${SUBDOMAIN:-redis}.${FOO:?}", "ok redis.first"),
    # TestPrecedence
    ("${UNSET_VAR-myerror?msg}", "myerror?msg"),
    ("${FOO?bar-baz}", "first"),
    ("${BAR:-default_value_for_empty_var}", "default_value_for_empty_var"),
    ("${UNSET_VAR-default_value_for_unset_var}", "default_value_for_unset_var"),
    # TestNoValueWithCurlyBracesDefault, TestValueWithCurlyBracesDefault
    ('ok ${missing:-{"json":1}}', 'ok {"json":1}'),
    ('ok ${missing-{"json":1}}', 'ok {"json":1}'),
    ('ok ${JSON:-{"json":1}}', 'ok {"json":2}'),
    ('ok ${JSON-{"json":1}}', 'ok {"json":2}'),
]
TEMPLATE_ERRORS = [
    *((t, "Invalid template") for t in ["${", "${}", "${ }", "${ foo}", "${foo }", "${foo!}"]),
    (
        "not ok ${UNSET_VAR:?Mandatory Variable Unset}",
        "required variable UNSET_VAR is missing a value: Mandatory Variable Unset",
    ),
    (
        "not ok ${BAR:?Mandatory Variable Empty}",
        "required variable BAR is missing a value: Mandatory Variable Empty",
    ),
    ("not ok ${UNSET_VAR:?}", "required variable UNSET_VAR is missing a value"),
    (
        "not ok ${UNSET_VAR?Mandatory Variable Unset}",
        "required variable UNSET_VAR is missing a value: Mandatory Variable Unset",
    ),
    ("not ok ${UNSET_VAR?}", "required variable UNSET_VAR is missing a value"),
    (
        "not ok ${UNSET_VAR:?Mandatory Variable ${FOO}}",
        "required variable UNSET_VAR is missing a value: Mandatory Variable first",
    ),
    (
        "not ok ${UNSET_VAR?Mandatory Variable ${FOO}}",
        "required variable UNSET_VAR is missing a value: Mandatory Variable first",
    ),
    ("${UNSET_VAR?bar-baz}", "required variable UNSET_VAR is missing a value: bar-baz"),
]


SUBSTITUTIONS = [(EXPANSION_VALUES, *case) for case in EXPANSIONS]
SUBSTITUTIONS += [(TEMPLATE_VALUES, *case) for case in TEMPLATES]
SUBSTITUTION_ERRORS = [(EXPANSION_VALUES, *case) for case in EXPANSION_ERRORS]
SUBSTITUTION_ERRORS += [(TEMPLATE_VALUES, *case) for case in TEMPLATE_ERRORS]


@pytest.mark.parametrize(("values", "template", "expected"), SUBSTITUTIONS)
def test_compose_go_substitutions(values: dict[str, str], template: str, expected: str) -> None:
    assert substitute(template, values.get) == expected


@pytest.mark.parametrize(("values", "template", "message"), SUBSTITUTION_ERRORS)
def test_compose_go_substitution_errors(
    values: dict[str, str], template: str, message: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        substitute(template, values.get)
    assert str(caught.value) == message


# TestSubstitutionFunctionChoice: the operator found first applies, whatever follows it. Each case
# is read with VARNAME unset (where the operator refuses or defaults) and set (where `+` applies).
@pytest.mark.parametrize(
    ("inside", "unset", "set_"),
    [
        ("VARNAME:?val?ue", "!: val?ue", "v"),
        ("VARNAME?val:?ue", "!: val:?ue", "v"),
        ("VARNAME?va-lu+e:?e", "!: va-lu+e:?e", "v"),
        ("VARNAME?va+lu-e:?e", "!: va+lu-e:?e", "v"),
        ("VARNAME:-value", "value", "v"),
        ("VARNAME-va:-lu:?e", "va:-lu:?e", "v"),
        ("VARNAME-va+lu?e", "va+lu?e", "v"),
        ("VARNAME-va?lu+e", "va?lu+e", "v"),
        ("VARNAME:+va:?lu:-e", "", "va:?lu:-e"),
        ("VARNAME+va:+lue", "", "va:+lue"),
        ("VARNAME+va?lu-e", "", "va?lu-e"),
        ("VARNAME+va-lu?e", "", "va-lu?e"),
    ],
)
def test_compose_go_operator_choice(inside: str, unset: str, set_: str) -> None:
    template = "${" + inside + "}"
    if unset.startswith("!"):
        with pytest.raises(TemplateError) as caught:
            substitute(template, {}.get)
        assert str(caught.value) == "required variable VARNAME is missing a value" + unset[1:]
    else:
        assert substitute(template, {}.get) == unset
    assert substitute(template, {"VARNAME": "v"}.get) == set_


def test_compose_go_multiple_files(tmp_path: Path) -> None:
    # TestMultipleFiles: a later file's lookups see the earlier one's values, the process
    # environment first; the process environment's value wins in the end.
    base = tmp_path / "base.env"
    base.write_text('\nENV_HOSTNAME=localhost\nENV_MY_URL="http://${ENV_HOSTNAME}"\n')
    override = tmp_path / "override.env"
    override.write_text('\nENV_HOSTNAME=dev.my-company.com\nENV_MY_URL="http://${ENV_HOSTNAME}"\n')

    assert load_variables([base, override], {}, SecretPolicy()).values() == {
        "ENV_HOSTNAME": "dev.my-company.com",
        "ENV_MY_URL": "http://dev.my-company.com",
    }
    process = {"ENV_HOSTNAME": "host.local"}
    assert load_variables([base, override], process, SecretPolicy()).items == {
        "ENV_HOSTNAME": Variable("ENV_HOSTNAME", "host.local", PROCESS_ENVIRONMENT, False),
        "ENV_MY_URL": Variable("ENV_MY_URL", "http://host.local", f"{override}:3", False),
    }


# Beyond compose-go's own tables: what deployer's port must also get right, each checked against
# `docker compose --env-file` (tests/integration/test_variables.py reads the same lines).
def test_lines_and_lookups() -> None:
    text = (
        "A=1\r\n"
        "B='x'  # c\r\n"
        'C="multi\r\nline"\r\n'
        "A=2\n"
        "D=${A}\n"
        "E=${A:-${B}}\n"
        "export F : ${C+set}\n"
        "G=  \n"
        "H=é${Z-$$}\n"
        "I=\\$\n"
        'J="\\$A \\0101\\0\\08\\0400"\n'
        "K=${A}}\n"
        "L=${A:-{}x}\n"
    )
    bindings = parse(text, ".env", {"Z": "zz"}, {"A": "0", "OLD": "o"})
    assert [(b.name, b.value, b.line) for b in bindings] == [
        ("A", "1", 1),
        ("B", "x", 2),
        ("C", "multi\r\nline", 3),
        ("A", "2", 5),
        ("D", "2", 6),
        ("E", "2", 7),
        ("F", "set", 8),
        ("G", "", 9),
        ("H", "ézz", 10),
        ("I", "\\$", 11),
        ("J", "$A A\\\\8\\400", 12),
        ("K", "2}", 13),
        ("L", "2", 14),
    ]


def test_names_that_are_not_plain() -> None:
    # A name ending the file without a line break is the value of a variable named "" (so
    # Compose reads it); a digit may start a name.
    assert read("1A=x\nB\nLAST", {"B": "b"}) == {"1A": "x", "B": "b", "": "LAST"}


@pytest.mark.parametrize(
    ("text", "issue"),
    [
        ("A=1\nB C=secret\n", ".env:2: key cannot contain a space"),
        ("A=1\nexport   ", ".env:2: zero length string"),
        ("A=1\nTOKEN=${", ".env:2: Invalid template"),
        (
            'A=1\nTOKEN="secret\nB=2\n',
            ".env:4: unterminated quoted value (the quote opens on line 2)",
        ),
        ("A=1\n\nP=${U:?needs ${A}}", ".env:3: required variable U is missing a value: needs 1"),
        ("A=1\nP=${U:-${V?}}", ".env:2: required variable V is missing a value"),
        ("A=1\nTOKEN$=secret", '.env:2: unexpected character "$" in variable name'),
    ],
)
def test_files_compose_refuses(text: str, issue: str) -> None:
    assert refusal(text) == [issue]


def test_refusals_are_at_the_line_and_never_show_it(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('A=1\nTOKEN="s3cr3t\n')
    assert load_refusal(env) == [f"{env}:3: unterminated quoted value (the quote opens on line 2)"]


def test_what_no_process_environment_can_carry(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('="nameless"\nA=1\nNUL="a\\0000b"\n')
    assert load_refusal(env) == [f"{env}:3: NUL: a value cannot hold a NUL character"]

    env.write_text('="nameless"\nA=1\n')
    assert load_variables([env], {}, SecretPolicy()).values() == {"A": "1"}
