"""Edit a spec's text as a person would: change the lines that must change, keep every other byte.

No round-trip YAML library is used. The text is composed with PyYAML, whose nodes know where
they start and end, and only those spans are replaced, or new lines inserted with the
indentation of their siblings. The result is parsed again and must equal the old data with
exactly the intended changes. Text that cannot be edited so (flow-style mappings, anchors or
aliases on the path, tabs, multi-line values, ...) is refused with the lines to add by hand:
never a silently reformatted file. Pure: text in, text out.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence

import yaml

from deployer.core.errors import SpecEditError

Value = str | int
_MERGE_TAG = "tag:yaml.org,2002:merge"
_DEFAULT_STEP = 2
_TAB_INDENT = re.compile(r"^ *\t", re.MULTILINE)


class _Unsafe(Exception):
    """The text cannot be edited without risk of changing more than intended."""


def pin_images(
    text: str,
    file: str,
    pins: Mapping[str, str],
    promoted_from: Mapping[str, Value] | None = None,
) -> str:
    """`text` with `services.<name>.image` set to each pinned reference (in place of the
    service's `image:` or `tag:`), and `x-promoted-from` set to `promoted_from` when given."""
    edits: list[tuple[tuple[str, ...], Value, str | None]] = [
        (("services", name, "image"), reference, "tag") for name, reference in sorted(pins.items())
    ]
    for key, value in (promoted_from or {}).items():
        edits.append((("x-promoted-from", key), value, None))
    try:
        edited = text
        for path, value, replaces in edits:
            edited = _set(edited, path, value, replaces)
        _verify(text, edited, edits)
    except _Unsafe as e:
        raise SpecEditError(file, str(e), hand_lines(pins, promoted_from)) from None
    return edited


def hand_lines(pins: Mapping[str, str], promoted_from: Mapping[str, Value] | None) -> list[str]:
    """The YAML a person adds to the spec in place of an edit that was refused."""
    lines = ["services:"]
    for name, reference in sorted(pins.items()):
        lines += [f"  {name}:", f"    image: {_scalar(reference, None)}"]
    if promoted_from:
        lines.append("x-promoted-from:")
        lines += [f"  {key}: {_scalar(value, None)}" for key, value in promoted_from.items()]
    return lines


def _set(text: str, path: Sequence[str], value: Value, replaces: str | None) -> str:
    """`text` with the scalar at `path` set to `value`: its span replaced when the key exists
    (or the key `replaces`, a sibling it takes the place of), else new lines inserted."""
    root = _compose(text)
    anchored = _anchored(text)
    step = _indent_step(root)
    node: yaml.Node = root
    for depth, key in enumerate(path):
        mapping = _block_mapping(node, anchored, path[:depth])
        last = depth == len(path) - 1
        found = _entry(mapping, key) or (_entry(mapping, replaces) if last and replaces else None)
        if found is None:
            return _insert(text, mapping, path[depth:], value, step)
        key_node, value_node = found
        where = ".".join([*path[:depth], key_node.value])
        if value_node.start_mark.index in anchored or key_node.start_mark.index in anchored:
            raise _Unsafe(f"{where} uses an anchor or an alias")
        if not last:
            node = value_node
            continue
        if not isinstance(value_node, yaml.ScalarNode) or (
            value_node.start_mark.line != value_node.end_mark.line
        ):
            raise _Unsafe(f"{where} is not a value on one line")
        if key_node.value == key:
            start, end = value_node.start_mark.index, value_node.end_mark.index
            return text[:start] + _scalar(value, value_node.style) + text[end:]
        start, end = key_node.start_mark.index, value_node.end_mark.index
        return text[:start] + f"{key}: {_scalar(value, value_node.style)}" + text[end:]
    raise AssertionError("unreachable: an empty path")


def _compose(text: str) -> yaml.MappingNode:
    if "\r" in text:
        raise _Unsafe("the file has carriage returns (CRLF line ends)")
    if _TAB_INDENT.search(text):
        raise _Unsafe("the file indents with tabs")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        raise _Unsafe(f"the file is not one valid YAML document: {e}") from e
    if not isinstance(node, yaml.MappingNode):
        raise _Unsafe("the file is not a mapping")
    return node


def _anchored(text: str) -> set[int]:
    """Where anchored nodes and aliases start: a node that starts there is shared."""
    return {
        event.start_mark.index
        for event in yaml.parse(text, Loader=yaml.SafeLoader)
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None and event.start_mark
    }


def _block_mapping(node: yaml.Node, anchored: set[int], path: Sequence[str]) -> yaml.MappingNode:
    """`node`, when it is a block mapping that can be edited in place."""
    where = ".".join(path) or "the top level"
    if not isinstance(node, yaml.MappingNode):
        raise _Unsafe(f"{where} is not a mapping")
    if node.flow_style:
        raise _Unsafe(f"{where} is a flow-style mapping ({{...}})")
    if not node.value:
        raise _Unsafe(f"{where} is an empty mapping")
    if node.start_mark.index in anchored:
        raise _Unsafe(f"{where} uses an anchor or an alias")
    if any(key.tag == _MERGE_TAG for key, _ in node.value):
        raise _Unsafe(f"{where} uses a merge key (<<)")
    return node


def _entry(node: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return key_node, value_node
    return None


def _insert(text: str, node: yaml.MappingNode, keys: Sequence[str], value: Value, step: int) -> str:
    """`keys` (the last with `value`) added as new lines after the last line of `node`, at the
    indentation of its keys."""
    indent = node.value[0][0].start_mark.column
    lines = [f"{' ' * (indent + i * step)}{key}:" for i, key in enumerate(keys)]
    lines[-1] += f" {_scalar(value, None)}"
    after = _last_line(node)
    text_lines = text.splitlines(keepends=True)
    offset = sum(len(line) for line in text_lines[: after + 1])
    head = text[:offset]
    if head and not head.endswith("\n"):
        head += "\n"
    return head + "".join(f"{line}\n" for line in lines) + text[offset:]


def _last_line(node: yaml.Node) -> int:
    """The last line (0-based) holding a part of `node`."""
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        return _last_line(node.value[-1][1])
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return _last_line(node.value[-1])
    end = node.end_mark
    # A block scalar (`|`) ends at the start of the line after its text.
    return end.line - 1 if end.column == 0 and end.line > node.start_mark.line else end.line


def _indent_step(root: yaml.MappingNode) -> int:
    """How far the file indents a nested mapping, as its first one does."""
    for key_node, value in root.value:
        if isinstance(value, yaml.MappingNode) and value.value and not value.flow_style:
            return int(value.value[0][0].start_mark.column - key_node.start_mark.column)
    return _DEFAULT_STEP


def _scalar(value: Value, style: str | None) -> str:
    """`value` as YAML text, quoted as the value it replaces was (plain when that reads back)."""
    if isinstance(value, int):
        return str(value)
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style is None and yaml.safe_load(f"k: {value}") == {"k": value}:
        return value
    return json.dumps(value)


def _verify(
    before: str, after: str, edits: Sequence[tuple[tuple[str, ...], Value, str | None]]
) -> None:
    """The edited text must read as the old data with exactly the intended changes."""
    expected = copy.deepcopy(yaml.safe_load(before))
    for path, value, replaces in edits:
        parent = expected
        for key in path[:-1]:
            parent = parent.setdefault(key, {})
            if not isinstance(parent, dict):
                raise _Unsafe(f"{'.'.join(path[:-1])} is not a mapping")
        if replaces:
            parent.pop(replaces, None)
        parent[path[-1]] = value
    try:
        actual = yaml.safe_load(after)
    except yaml.YAMLError as e:
        raise _Unsafe(f"the edited text would not be valid YAML: {e}") from e
    if actual != expected:
        raise _Unsafe("the edited text would not read as intended")
