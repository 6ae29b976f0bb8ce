"""Expectation patterns, matched in linear time.

Python's `re` backtracks: `^(a+)+$` against 31 bytes of output takes tens of seconds of
the CLI's CPU, whatever the step's timeout. Runbook files are shared, so their patterns
are untrusted: they are compiled with RE2 (google-re2), whose matching time is linear in
the text. RE2 has no backreferences or lookaround; a pattern that needs them is refused
when the runbook is loaded, with the reason.
"""
from __future__ import annotations

import functools


class PatternError(ValueError):
    pass


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str):
    import re2

    options = re2.Options()
    options.log_errors = False   # RE2 would print its own lines on stderr
    options.max_mem = 32 << 20
    try:
        return re2.compile(f"(?m){pattern}", options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        reason = reason.replace(f"(?m){pattern}", pattern)  # the multi-line flag is ours, not the user's
        raise PatternError(f"{reason} (RE2 syntax: no backreferences or lookaround)") from None


def search(pattern: str, text: str) -> str | None:
    """The first match of pattern in text (multi-line mode), or None."""
    match = compile_pattern(pattern).search(text)
    return None if match is None else match.group(0)
