"""Hardened YAML for files people hand to debugkit: runbooks, --custom and the config file.

yaml.safe_load alone still expands aliases (a "billion laughs" file), accepts any depth
and loses line numbers. Here a file is bounded in size, anchors and aliases are refused,
nesting and node counts are bounded, only plain tags are allowed, and every complaint
carries FILE:LINE. Pure: text in, data or an exception out.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import yaml

MAX_DEPTH = 20
MAX_NODES = 20_000

_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}


class Refused(Exception):
    """What the hardened loader will not accept, at a line."""

    def __init__(self, line: int, message: str):
        super().__init__(f"{line}: {message}")
        self.line = line
        self.message = message


class _Loader(yaml.SafeLoader):
    """yaml.safe_load's loader that refuses anchors and aliases (no alias bombs, no merge
    keys) and bounds nesting and node count. Nodes are composed first to keep lines."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise Refused(line_of(event.start_mark), f"anchors and aliases are not allowed (found *{event.anchor})")
        if getattr(event, "anchor", None) is not None:
            raise Refused(line_of(event.start_mark), f"anchors and aliases are not allowed (found &{event.anchor})")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise Refused(line_of(event.start_mark), f"too many YAML nodes (more than {MAX_NODES})")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise Refused(line_of(event.start_mark), f"nested more than {MAX_DEPTH} levels deep")
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node.tag not in _PLAIN_TAGS:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            raise Refused(line_of(node.start_mark), f"the YAML tag {tag} is not allowed")
        return node


def line_of(node_or_mark) -> int:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return (mark.line + 1) if mark is not None else 1


def decode(data: str | bytes, source: str, *, max_bytes: int, fail: Callable[[str], Exception]) -> str:
    """Text of a file, or `fail(message)` for one too large, not UTF-8 or binary."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > max_bytes:
        raise fail(f"{source}: the file is larger than the {max_bytes}-byte limit")
    if b"\0" in data:
        raise fail(f"{source}: a binary file, not YAML text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"{source}: not UTF-8 text (byte {exc.start})") from None


class Document:
    """One parsed file: its root node and a checker that reports FILE:LINE."""

    def __init__(self, text: str, source: str, *, fail: Callable[[str], Exception]):
        self.source = source
        self._fail = fail
        self.loader = _Loader(text)
        try:
            try:
                self.root = self.loader.get_single_node()
            except Refused as exc:
                raise fail(f"{source}:{exc.line}: {exc.message}") from None
            except yaml.MarkedYAMLError as exc:
                raise fail(f"{source}:{_yaml_problem(exc)}") from None
            except yaml.YAMLError as exc:
                raise fail(f"{source}:1: invalid YAML: {exc}") from None
        except BaseException:
            self.loader.dispose()
            raise

    def close(self) -> None:
        self.loader.dispose()

    def __enter__(self) -> "Document":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- checks that carry FILE:LINE ----------------------------------------------------

    def fail(self, node_or_line, message: str):
        line = node_or_line if isinstance(node_or_line, int) else line_of(node_or_line)
        raise self._fail(f"{self.source}:{line}: {message}")

    def value(self, node) -> Any:
        """Any node as plain data (mappings, lists, scalars)."""
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.fail(node, f"{getattr(exc, 'problem', None) or exc}")

    def scalar(self, node, what: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            kind = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
            self.fail(node, f"{what} must be a single value, not {kind}")
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.fail(node, f"{what}: {getattr(exc, 'problem', None) or exc}")

    def string(self, node, what: str, *, allow_empty: bool = False) -> str:
        value = self.scalar(node, what)
        if not isinstance(value, str):
            self.fail(node, f"{what} must be a string, not {describe(value)}")
        if not allow_empty and not value.strip():
            self.fail(node, f"{what} must not be empty")
        return value

    def mapping(self, node, what: str, where: str, allowed: Sequence[str] | None,
                required: Sequence[str] = ()) -> dict:
        """Keys of a mapping node -> (key node, value node). `what` names the mapping
        ("step 2"), `where` places a key in it ("in step 2"); allowed=None takes any key."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping (key: value)")
        found: dict[str, tuple] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, f"a key {where}")
            if not isinstance(key, str):
                self.fail(key_node, f"keys {where} must be strings, not {describe(key)}")
            if key in found:
                self.fail(key_node, f"duplicate key {key!r} {where}")
            if allowed is not None and key not in allowed:
                self.fail(key_node, f"unknown key {key!r} {where} (expected one of: {', '.join(allowed)})")
            found[key] = (key_node, value_node)
        for key in required:
            if key not in found:
                self.fail(node, f"missing required key {key!r} {where}")
        return found


def load_mapping(data: str | bytes, source: str, *, max_bytes: int, fail: Callable[[str], Exception],
                 what: str) -> dict:
    """A whole file that must be one mapping, as plain data (--custom). Empty -> {}."""
    text = decode(data, source, max_bytes=max_bytes, fail=fail)
    with Document(text, source, fail=fail) as doc:
        if doc.root is None:
            return {}
        if not isinstance(doc.root, yaml.MappingNode):
            doc.fail(doc.root, f"{what} must be a mapping (key: value)")
        doc.mapping(doc.root, what, f"in {what}", None)  # duplicate and non-string keys
        return doc.value(doc.root)


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """`LINE: invalid YAML: problem (context)` from PyYAML's marks."""
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "cannot parse"
    context = exc.context if exc.problem else None
    if context and context.startswith("expected"):  # "expected a single document in the stream"
        problem = f"{context}, {problem}"
    elif context and exc.context_mark is not None and exc.context_mark is not mark:
        problem = f"{problem} ({context} started on line {line_of(exc.context_mark)})"
    return f"{line_of(mark)}: invalid YAML: {problem}"
