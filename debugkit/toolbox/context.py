"""The toolbox image's build context: where its Dockerfile is in this installation, the base
image it pins, the source labels (version, revision, origin without credentials) and the
digest of every input, which decides whether a build can be skipped. No engine involved.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from debugkit import __version__
from debugkit.core.errors import DebugkitError

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path


def toolbox_context_dir() -> Path:
    """The directory holding the toolbox Dockerfile (the build context).

    Installed wheel: the package data `debugkit/toolbox/image/`. Editable install or a
    plain checkout: `debugkit/toolbox/image` is a symlink to the repository's
    `toolbox-image/`, and the repository directory itself is the fallback. The returned
    path is resolved (no symlinks), so it is usable as a docker build context.
    """
    from pathlib import Path

    here = Path(__file__).resolve().parent
    candidates = [here / "image", here.parent.parent / "toolbox-image"]
    try:  # the importlib view covers zipped or otherwise relocated installs
        from importlib.resources import files

        packaged = files("debugkit.toolbox") / "image"
        if isinstance(packaged, Path):
            candidates.insert(0, packaged)
    except (ImportError, ModuleNotFoundError, TypeError):  # pragma: no cover
        pass
    for candidate in candidates:
        if (candidate / "Dockerfile").is_file():
            return candidate.resolve()
    raise DebugkitError(
        "cannot find the toolbox image's Dockerfile in this installation",
        hint="looked in " + ", ".join(str(c) for c in candidates),
    )


_ARG_BASE = re.compile(r"^\s*ARG\s+BASE_IMAGE=(\S+)\s*$", re.MULTILINE)


def pinned_base_image(context: Path | None = None) -> str:
    """The digest-pinned default of `ARG BASE_IMAGE` in the toolbox Dockerfile."""
    dockerfile = (context or toolbox_context_dir()) / "Dockerfile"
    match = _ARG_BASE.search(dockerfile.read_text(encoding="utf-8"))
    if not match:
        raise DebugkitError(f"{dockerfile} has no default for ARG BASE_IMAGE")
    return match.group(1)


def _git(context: Path, *args: str) -> str | None:
    import subprocess

    try:
        done = subprocess.run(
            ["git", "-C", str(context), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _strip_userinfo(url: str) -> str:
    """Never put credentials from a remote URL into an image label."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1", url, flags=re.IGNORECASE)


def source_metadata(context: Path) -> dict[str, str]:
    """VERSION, REVISION and SOURCE build args for the OCI labels.

    REVISION is the last git commit that changed the build context (with `-dirty` when
    it has uncommitted changes), `unknown` for an installed package: commits elsewhere
    in the repository leave the image, and its ID, unchanged. SOURCE is the checkout's
    `origin` remote without credentials, `unknown` when there is none.
    """
    revision = _git(context, "log", "-1", "--format=%H", "--", ".") or "unknown"
    if revision != "unknown" and _git(context, "status", "--porcelain", "--", "."):
        revision += "-dirty"
    remote = _git(context, "config", "--get", "remote.origin.url")
    return {
        "VERSION": __version__,
        "REVISION": revision,
        "SOURCE": _strip_userinfo(remote) if remote else "unknown",
    }


def inputs_digest(*, context: Path, variant: str, base_id: str, buildargs: dict[str, str]) -> str:
    """A digest of what determines the image: the context's files, variant, base image ID
    and build arguments (REVISION excluded: the files already say what changed)."""
    import hashlib
    import json

    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(path.relative_to(context).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    meta = {k: v for k, v in buildargs.items() if k != "REVISION"}
    digest.update(json.dumps({"variant": variant, "base_id": base_id, **meta}, sort_keys=True).encode())
    return "sha256:" + digest.hexdigest()
