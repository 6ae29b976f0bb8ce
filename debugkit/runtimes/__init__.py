"""The runtimes: one package each, all offering the Runtime protocol (base.py).

`for_target` picks the runtime a target reference names. Each runtime is imported only
when it is used, so `debugkit --help` and a Docker attach never pay for the others.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from debugkit.core.options import Connection
    from debugkit.runtimes.base import Runtime

RUNTIMES = ("docker", "podman", "kubernetes")


def get(name: str, connection: "Connection | None" = None, *, namespace_fallback: str = "default") -> "Runtime":
    from debugkit.core.options import Connection

    connection = connection or Connection()
    if name == "docker":
        from debugkit.runtimes.docker.runtime import DockerRuntime

        return DockerRuntime(host=connection.docker_host, context=connection.docker_context)
    if name == "podman":
        from debugkit.runtimes.podman.runtime import PodmanRuntime

        return PodmanRuntime()
    if name == "kubernetes":
        from debugkit.runtimes.kubernetes.runtime import KubernetesRuntime

        return KubernetesRuntime(kubeconfig=connection.kubeconfig, context=connection.kube_context,
                                 namespace_fallback=namespace_fallback, impersonate=connection.kube_impersonate)
    raise ValueError(f"unknown runtime {name!r}")


def for_target(target, connection: "Connection | None" = None, *, namespace_fallback: str = "default") -> "Runtime":
    return get(target.runtime, connection, namespace_fallback=namespace_fallback)
