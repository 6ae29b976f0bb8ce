"""A copy of the toolbox's debugkit-helper on this machine, for foreign --image sidecars.

The helper is read out of the local toolbox image once (a created, never started,
container and the archive API) and kept in the cache directory under the image's ID, so
a later sidecar bind-mounts it read-only at the same path the toolbox uses.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

from debugkit.core.spec import LABEL_MANAGED

MAX_HELPER_BYTES = 64 << 20


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "debugkit" / "helper"


def cached_helper(api, image_id: str, path: str) -> str | None:
    """The host path of the helper from image `image_id`, copied on first use; None when
    the image has none or the copy cannot be made."""
    target = cache_dir() / image_id.removeprefix("sha256:")[:16] / "debugkit-helper"
    if target.is_file() and os.access(target, os.X_OK):
        return str(target)
    from debugkit.runtimes.docker.engine import EngineError

    try:
        created = api.create_container({"Image": image_id, "Cmd": ["/nonexistent"],
                                        "Labels": {LABEL_MANAGED: "probe"}})
    except (EngineError, OSError):
        return None
    try:
        data, _stat = api.get_archive(created["Id"], path, max_bytes=MAX_HELPER_BYTES)
    except (EngineError, OSError):
        return None
    finally:
        with contextlib.suppress(Exception):
            api.remove_container(created["Id"], force=True)
    if data is None:
        return None
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = next((m for m in tar.getmembers() if m.isfile()), None)
        source = tar.extractfile(member) if member is not None else None
        if source is None:
            return None
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".helper.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(source.read())
            os.chmod(tmp, 0o711)  # execute-only for the sidecar's user: non-dumpable from execve (toolbox.md)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return str(target)
