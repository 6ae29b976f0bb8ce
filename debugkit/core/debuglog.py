"""`--debug`'s notes: facts a person debugging debugkit itself wants (the Engine API
version negotiated, ...), one line each on stderr. Off unless the CLI turns them on."""
from __future__ import annotations

import sys

_ON = {"on": False}


def enable() -> None:
    _ON["on"] = True


def enabled() -> bool:
    return _ON["on"]


def note(line: str) -> None:
    if _ON["on"]:
        from debugkit.core.escape import safe  # the line may carry an engine's words

        print(f"debugkit: debug: {safe(line)}", file=sys.stderr, flush=True)
