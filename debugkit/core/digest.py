"""SHA-256 for the audit chain and the recordings, without OpenSSL's start-up cost.

`hashlib` loads OpenSSL's libcrypto (4-10 ms on these machines), and the audit chain
hashes a line on every command's start. CPython's own SHA-256 module does the same work
and loads in under a millisecond; hashlib is the fallback where it is missing.
"""
from __future__ import annotations

import os

try:
    from _sha2 import sha256  # CPython 3.12 and later
except ImportError:
    try:
        from _sha256 import sha256  # CPython 3.9 to 3.11
    except ImportError:  # another interpreter
        from hashlib import sha256

CHUNK = 1 << 20


def hex_digest(data: bytes) -> str:
    return sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read in chunks (a recording may be large)."""
    digest = sha256()
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)
