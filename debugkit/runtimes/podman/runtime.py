"""The Podman runtime: the Docker runtime pointed at Podman's Docker-compatible service.

Only what Podman really does differently is specialised here; see docs/podman.md.
"""
from __future__ import annotations

import os

from debugkit.runtimes.docker.runtime import DockerRuntime

DEFAULT_SOCKET = "/run/podman/podman.sock"


def podman_address() -> str:
    """$CONTAINER_HOST when set, otherwise the rootful default socket."""
    return os.environ.get("CONTAINER_HOST") or f"unix://{DEFAULT_SOCKET}"


def podman_configured() -> bool:
    """Whether Podman is set up here at all (for `ps --runtime auto`)."""
    return bool(os.environ.get("CONTAINER_HOST")) or os.path.exists(DEFAULT_SOCKET)


class PodmanRuntime(DockerRuntime):
    name = "podman"
    engine = "Podman"
    cli = "podman"

    def default_address(self):
        return podman_address()

    def resolve(self):
        """$CONTAINER_HOST or Podman's socket; Docker's contexts and DOCKER_HOST do not apply."""
        from debugkit.runtimes.docker.engine import EngineConfigError, parse_host, tls_from_env
        from debugkit.runtimes.docker.hosts import Resolution

        if self._address is not None:
            return super().resolve()
        text = self.default_address()
        if text.startswith("ssh://"):
            raise EngineConfigError(f"CONTAINER_HOST={text}: ssh:// Podman connections are not supported; "
                                    f"use Podman's socket (unix://) or tcp://")
        why = "CONTAINER_HOST" if os.environ.get("CONTAINER_HOST") else "the default Podman socket"
        return Resolution(parse_host(text, tls=tls_from_env()), why)
