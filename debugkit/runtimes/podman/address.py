"""Where Podman's Docker-compatible service is, and whether it is set up here at all.

Kept apart from runtime.py so that `ps`, doctor and completion can ask without importing
the Docker runtime it builds on.
"""
from __future__ import annotations

import os

DEFAULT_SOCKET = "/run/podman/podman.sock"


def podman_address() -> str:
    """$CONTAINER_HOST when set, otherwise the rootful default socket."""
    return os.environ.get("CONTAINER_HOST") or f"unix://{DEFAULT_SOCKET}"


def configured(connection=None) -> bool:
    """Podman is set up here when CONTAINER_HOST names a service or its socket exists."""
    return bool(os.environ.get("CONTAINER_HOST")) or os.path.exists(DEFAULT_SOCKET)
