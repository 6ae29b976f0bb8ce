"""Reading a file that a person names, with a size cap."""
from __future__ import annotations

import os


def read_capped(path: str | os.PathLike, max_bytes: int) -> bytes | None:
    """At most max_bytes + 1 bytes of path, so that the caller can tell a file larger than
    it accepts (a FIFO or a /proc file lies about its size); None when there is no such
    file. Any other OSError (a directory, no permission) is the caller's to word."""
    try:
        with open(path, "rb") as fh:
            return fh.read(max_bytes + 1)
    except FileNotFoundError:
        return None
