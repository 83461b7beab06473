"""Env files read exactly as Docker Compose reads them: a port of compose-go v2.9.1 (the version
Compose 2.40 is built with), `dotenv/parser.go` and `godotenv.go` with the interpolation of
`template/template.go`. Quirks are kept on purpose: where this reads a line differently from
Compose, this is the bug. Nothing here reads files or the process environment.

compose-go is Apache-2.0 licensed, (c) The Compose Specification Authors.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from deployer.core.errors import ConfigError, ConfigIssue

Lookup = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Binding:
    name: str
    value: str
    line: int  # where the line that sets it starts


class TemplateError(Exception):
    """A `${...}` Compose refuses: its message as compose-go words it, without the value."""


def parse(
    text: str, file: str, environment: Mapping[str, str], known: Mapping[str, str]
) -> list[Binding]:
    """The `NAME=value` statements of one env file, interpolated as `docker compose --env-file`
    does: a `${VAR}` sees `environment` (the process environment) first, then the values of
    earlier lines and of earlier files (`known`). A file Compose refuses raises ConfigError at
    Compose's line, never showing the line's text (it may hold a secret)."""
    try:
        return _Parser(environment, dict(known)).statements(text.removeprefix("\ufeff"))
    except _ParseError as e:
        raise ConfigError([ConfigIssue(file, e.line, "", e.message)]) from None


class _ParseError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


# Go's regexp `\s` (ASCII only, no \v) and `\d` (ASCII digits).
_EXPORT = re.compile(r"^export[\t\n\f\r ]+")
_ESCAPE_SEQUENCE = re.compile(r'\\(?:[abcfnrtv$"\\]|0[0-9]{0,3})')
# The escapes Go's strconv reads and writes, besides octal and hexadecimal ones.
_GO_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_GO_ESCAPES |= {"\\": "\\", '"': '"'}
_GO_ESCAPED = {char: "\\" + letter for letter, char in _GO_ESCAPES.items()}


# parser.go's isSpace: blanks, but not a line break.
_BLANKS = "\t\v\f\r \x85\xa0"


def _is_go_space(char: str) -> bool:
    """Go's unicode.IsSpace (Python's str.isspace also counts \\x1c-\\x1f)."""
    return char in "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" or (
        "\u2000" <= char <= "\u200a"
    )


def _trim_right_go_space(text: str) -> str:
    end = len(text)
    while end and _is_go_space(text[end - 1]):
        end -= 1
    return text[:end]


def _go_quote(char: str) -> str:
    """A character as Go's %q writes it."""
    code = ord(char)
    if char in _GO_ESCAPED:
        inner = _GO_ESCAPED[char]
    elif char.isprintable():
        inner = char
    elif code < 0x80:
        inner = f"\\x{code:02x}"
    else:
        inner = f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    return f'"{inner}"'


class _Parser:
    """parser.go's parser: `line` counts as Compose counts, for its error messages."""

    def __init__(self, environment: Mapping[str, str], values: dict[str, str]) -> None:
        self.line = 1
        self.environment = environment
        self.values = values  # earlier files', then this file's as it is read

    def resolve(self, name: str) -> str | None:
        return self.environment[name] if name in self.environment else self.values.get(name)

    def statements(self, src: str) -> list[Binding]:
        found: list[Binding] = []
        while True:
            src = self._statement_start(src)
            if src == "":
                return found
            line = self.line
            key, src, inherited = self._key_name(src)
            if " " in key:
                raise _ParseError(self.line, "key cannot contain a space")
            if inherited:
                # A bare `NAME`: the value it has where Compose runs, if any.
                value = self.resolve(key)
                if value is None:
                    continue
            else:
                value, src = self._value(src, line)
            self.values[key] = value
            found.append(Binding(key, value, line))

    def _index_of_non_space(self, src: str) -> int:
        for i, char in enumerate(src):
            if char == "\n":
                self.line += 1
            if not _is_go_space(char):
                return i
        return -1

    def _statement_start(self, src: str) -> str:
        """The text from the next statement on, past blank lines and comments."""
        while True:
            pos = self._index_of_non_space(src)
            if pos == -1:
                return ""
            src = src[pos:]
            if src[0] != "#":
                return src
            pos = src.find("\n")
            if pos == -1:
                return ""
            src = src[pos:]

    def _key_name(self, src: str) -> tuple[str, str, bool]:
        """The name, the text after its `=` or `:` (or line end), and whether it is a bare name."""
        if _EXPORT.match(src):
            src = src.removeprefix("export").lstrip(_BLANKS)
        key, offset, inherited = "", 0, False
        for i, char in enumerate(src):
            if char in _BLANKS:
                continue
            if char in "=:\n":
                # `NAME: value`: compose-go reads YAML-style lines too.
                key, offset, inherited = src[:i], i + 1, char == "\n"
                break
            # Go's unicode.IsLetter and IsNumber: the Unicode categories L* and N*.
            if char in "_.-[]" or unicodedata.category(char)[0] in "LN":
                continue
            raise _ParseError(self.line, f"unexpected character {_go_quote(char)} in variable name")
        if src == "":
            raise _ParseError(self.line, "zero length string")
        if inherited and " " not in key:
            self.line += 1
        rest = src[offset:]
        return _trim_right_go_space(key), rest.lstrip(_BLANKS), inherited

    def _value(self, src: str, line: int) -> tuple[str, str]:
        quote = src[:1]
        if quote not in ("'", '"'):
            value, _, rest = src.partition("\n")
            self.line += 1
            # An inline comment starts at ` #`; `a#b` is a value.
            value = _trim_right_go_space(value.partition(" #")[0])
            return _expanded(value, self.resolve, line), rest
        chars = []
        previous_is_escape = False
        for i in range(1, len(src)):
            char = src[i]
            if char == "\n":
                self.line += 1
            if char != quote:
                if not previous_is_escape and char == "\\":
                    previous_is_escape = True
                    continue
                if previous_is_escape:
                    previous_is_escape = False
                    chars.append("\\")
                chars.append(char)
                continue
            if previous_is_escape:
                # An escaped quote of the value's own kind.
                previous_is_escape = False
                chars.append(char)
                continue
            value = "".join(chars)
            if quote == '"':
                value = _expanded(_expand_escapes(value), self.resolve, line)
            return value, src[i + 1 :]
        raise _ParseError(self.line, f"unterminated quoted value (the quote opens on line {line})")


def _expand_escapes(text: str) -> str:
    """The escapes of a double-quoted value: \\n, \\t, ..., \\\\, \\", octal \\0NNN; `\\$` is `$$`
    (a literal dollar for the interpolation that follows); any other backslash stays."""

    def unescape(match: re.Match[str]) -> str:
        sequence = match.group()
        if sequence == "\\$":
            return "$$"
        if sequence.startswith("\\0"):
            # `\0NNN` is Go's octal `\NNN`: exactly three digits, at most \377. Otherwise the
            # `\0` still loses its 0 (parser.go rewrites the text before Go reads it).
            digits = sequence[2:]
            if len(digits) == 3 and all(d in "01234567" for d in digits) and int(digits, 8) < 256:
                return chr(int(digits, 8))
            return "\\" + digits
        return _GO_ESCAPES.get(sequence[1], sequence)

    return _ESCAPE_SEQUENCE.sub(unescape, text)


def _expanded(value: str, resolve: Lookup, line: int) -> str:
    try:
        return substitute(value, resolve)
    except TemplateError as e:
        raise _ParseError(line, str(e)) from None


# template.go's pattern: `$$`, `$NAME`, `${NAME...}`, or a `${` that starts nothing valid. Its
# `(?i)` makes Go match the Kelvin sign and long s as letters too.
_LETTER = "_a-zA-Z\u017f\u212a"
_PATTERN = re.compile(
    rf"\$(?:(?P<escaped>\$)|(?P<named>[{_LETTER}][{_LETTER}0-9]*)|"
    rf"\{{(?:(?P<braced>[{_LETTER}][{_LETTER}0-9]*(?::?[-+?](.*))?)\}}|(?P<invalid>)))"
)
# The one found first in the text applies; with none, the first (template.go's sort).
_OPERATORS = (":?", "?", ":-", "-", ":+", "+")


def substitute(template: str, resolve: Lookup) -> str:
    """template.go's Substitute: `$V ${V} ${V:-d} ${V-d} ${V:?e} ${V?e} ${V:+a} ${V+a}`, nested
    in defaults, `$$` for `$`. An unset variable is empty. Raises TemplateError."""
    return _PATTERN.sub(lambda match: _replacement(match.group(), resolve), template)


def _operator(template: str) -> str:
    found = [(template.find(op), n) for n, op in enumerate(_OPERATORS) if op in template]
    return _OPERATORS[min(found)[1]] if found else _OPERATORS[0]


def _first_closing_brace(text: str) -> int:
    depth = 0
    i = 0
    while i < len(text):
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        if text[i] == "{":
            depth += 1
            i += 1  # as template.go does: the character after a `{` is not looked at
        i += 1
    return -1


def _replacement(substring: str, resolve: Lookup) -> str:
    operator = _operator(substring)
    closing = _first_closing_brace(substring)
    rest = ""
    if closing > -1:
        substring, rest = substring[: closing + 1], substring[closing + 1 :]
    match = _PATTERN.search(substring)
    groups = match.groupdict() if match else {}
    if groups.get("escaped"):
        return "$"
    substitution = groups.get("named") or ""
    braced = not substitution
    if braced:
        substitution = groups.get("braced") or ""
    if not substitution:
        raise TemplateError("Invalid template")
    if braced and operator in substitution:
        name, argument = substitution.split(operator, 1)
        return _with_operator(operator, name, argument, resolve) + substitute(rest, resolve)
    return resolve(substitution) or ""


def _with_operator(operator: str, name: str, argument: str, resolve: Lookup) -> str:
    argument = substitute(argument, resolve)
    value = resolve(name)
    if operator in (":?", "?"):
        if value is None or (operator == ":?" and value == ""):
            reason = f": {argument}" if argument else ""
            raise TemplateError(f"required variable {name} is missing a value{reason}")
        return value
    if operator in (":-", "-"):
        if value is None or (operator == ":-" and value == ""):
            return argument
        return value
    # `+` and `:+`: the argument when set (and not empty, for `:+`).
    if value is not None and (operator == "+" or value != ""):
        return argument
    return value or ""
