"""Completion of container targets on Docker and Podman: the running containers, but not
debugkit's own sidecars (they are refused as targets), written the way the runtime's
targets are written (a bare name, or behind its scheme)."""
from __future__ import annotations

from debugkit.core.spec import LABEL_MANAGED


def prefix_for(word: str, *, schemes: tuple[str, ...], bare: bool) -> str | None:
    """How the candidates for `word` start ("" or a scheme), or None when `word` cannot
    name one of this runtime's containers."""
    for scheme in schemes:
        if word.startswith(scheme):
            return scheme
    if "/" in word or ":" in word:
        return None
    if bare:
        return ""
    # A runtime reached only through its scheme: offered while the word may still become it.
    return next((scheme for scheme in schemes if scheme.startswith(word)), None)


def container_names(api, *, prefix: str = "") -> list[str]:
    """Running containers, each as `prefix + name`; `api` is a short-timeout client."""
    try:
        found = api.containers(filters={"status": ["running"]})
    finally:
        api.close()
    names = []
    for ctr in found or []:
        if (ctr.get("Labels") or {}).get(LABEL_MANAGED):
            continue
        for name in ctr.get("Names") or []:
            names.append(prefix + name.lstrip("/"))
    return sorted(names)
