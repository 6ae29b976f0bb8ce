"""JSON from outside (an engine, a registry, the audit log, a Docker context's files),
parsed with bounds: its size, its nesting, and what it may be.

json.loads alone reads any size and raises RecursionError, not ValueError, on a deeply
nested document, which would end as an internal error. Here every refusal is a
`Rejected` (a ValueError) whose message says in a few words what was sent, so the caller
can name the peer in one line. Pure: bytes in, data or an exception out.
"""
from __future__ import annotations

import json

MAX_DEPTH = 64  # real engine, registry and audit documents nest fewer than 20 levels


class Rejected(ValueError):
    """Not JSON we accept: the message says what it was instead ("HTML", "nested deeper than...")."""


def describe(data: bytes) -> str:
    """What a body that is not JSON looks like, in a few words."""
    head = data[:512].lstrip().lower()
    if not head:
        return "an empty body"
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head:
        return "HTML, not JSON"
    if head.startswith(b"<"):
        return "XML or HTML, not JSON"
    return "a body that is not JSON"


def loads(data: bytes | str, *, max_bytes: int, max_depth: int = MAX_DEPTH):
    """The document, or Rejected: larger than max_bytes, not JSON, or nested too deeply."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > max_bytes:
        raise Rejected(f"a body larger than {max_bytes} bytes")
    try:
        value = json.loads(data)
    except RecursionError:
        raise Rejected(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError:
        raise Rejected(describe(data)) from None
    if depth_exceeds(value, max_depth):
        raise Rejected(f"JSON nested deeper than {max_depth} levels")
    return value


def depth_exceeds(value, limit: int) -> bool:
    """Whether lists and objects nest deeper than `limit` (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def expect(value, kind: type, what: str):
    """value when it is a `kind` (dict, list, str...), else Rejected naming what it was."""
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    names = {dict: "an object", list: "a list", str: "a string", int: "a number", bool: "true or false"}
    got = "null" if value is None else names.get(type(value), type(value).__name__)
    raise Rejected(f"{what} as {got}, not {names.get(kind, kind.__name__)}")
