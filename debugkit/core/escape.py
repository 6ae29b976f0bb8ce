"""Text from a target, an image or a label, made safe for the operator's terminal.

An image can put anything in its /etc/passwd, its configured user or a label: escape
sequences that clear the screen, recolour it, set the window title (which some terminals
echo back as input) or hide text. Every such value is passed through `safe()` before it
is printed. Control characters become visible `\\xNN` / `\\uNNNN` escapes; printable text,
including non-ASCII letters, is unchanged.
"""
from __future__ import annotations

import unicodedata
from typing import Any

# Characters that reorder or hide text (bidi overrides, isolates, zero-width marks).
_INVISIBLE = {0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028, 0x2029, 0x202A, 0x202B, 0x202C,
              0x202D, 0x202E, 0x2060, 0x2066, 0x2067, 0x2068, 0x2069, 0xFEFF}


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def safe(value: Any, *, keep_newlines: bool = False) -> str:
    """str(value) with every control or invisible character escaped."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable() and not any(ord(c) in _INVISIBLE for c in text):
        return text
    out = []
    for ch in text:
        if keep_newlines and ch in "\n\t":
            out.append(ch)
        elif ch.isprintable() and ord(ch) not in _INVISIBLE:
            out.append(ch)
        elif ch == " ":
            out.append(ch)
        elif unicodedata.category(ch) == "Zs":  # other spaces: printable enough, but make them plain
            out.append(" ")
        else:
            out.append(_escape_char(ch))
    return "".join(out)


def safe_data(value: Any) -> Any:
    """The same, applied to every string inside lists and dicts (for text and YAML output).
    JSON output is already escaped by the encoder and does not need it."""
    if isinstance(value, str):
        return safe(value)
    if isinstance(value, dict):
        return {safe(k) if isinstance(k, str) else k: safe_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_data(v) for v in value]
    return value
