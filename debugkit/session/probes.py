"""Short, read-only lookups with their own time limits, for `completion` and `doctor`.

The runtimes' clients wait as long as a debug session needs (60 s for an engine call,
30 s for an API request). Completion must answer while a person waits at a prompt and
doctor must finish even when an engine hangs, so both build their clients here, with
the timeout they choose, from the same addresses and kube contexts the runtimes use.
Nothing here starts, changes or audits anything.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from debugkit.runtimes.docker.engine import EngineClient
    from debugkit.runtimes.kubernetes.kubeclient import KubeClient
    from debugkit.runtimes.kubernetes.kubeconfig import ClusterAuth


def engine_resolution(runtime: str, docker_host: str | None = None, docker_context: str | None = None):
    """The engine the Docker or Podman runtime would use, and why: for Docker as the
    docker CLI decides (-H, --docker-context, DOCKER_HOST, DOCKER_CONTEXT, the current
    context). Raises EngineConfigError for flags or a context that cannot be used."""
    from debugkit.runtimes.docker import hosts
    from debugkit.runtimes.docker.engine import tls_from_env

    if runtime == "podman":
        from debugkit.runtimes.podman.runtime import podman_address

        return hosts.Resolution(hosts.address_for(podman_address(), tls=tls_from_env()), "CONTAINER_HOST or "
                                "the rootful Podman socket")
    return hosts.resolve(host=docker_host, context=docker_context)


def engine_address(runtime: str, docker_host: str | None = None, docker_context: str | None = None) -> str:
    """The address the Docker or Podman runtime would dial, as text."""
    return engine_resolution(runtime, docker_host, docker_context).address.text


def engine_configured(runtime: str, docker_host: str | None = None, docker_context: str | None = None) -> bool:
    """Podman: as `ps` decides. Docker: anything but the default socket was chosen (a
    flag, DOCKER_HOST, a context), or the default socket exists."""
    if runtime == "podman":
        from debugkit.runtimes.podman.runtime import podman_configured

        return podman_configured()
    from debugkit.runtimes.docker.engine import DEFAULT_SOCKET, EngineConfigError

    try:
        address = engine_resolution(runtime, docker_host, docker_context).address
    except EngineConfigError:
        return True  # configured, wrongly: the checks say how
    return address.text != f"unix://{DEFAULT_SOCKET}" or os.path.exists(DEFAULT_SOCKET)


def engine_client(runtime: str, *, timeout: float, docker_host: str | None = None,
                  docker_context: str | None = None) -> "EngineClient":
    """An engine client whose every call gives up after `timeout` seconds. Raises
    EngineConfigError for an address that cannot be used as written."""
    from debugkit.runtimes.docker.engine import EngineClient

    address = engine_resolution(runtime, docker_host, docker_context).address
    dial = None
    if address.scheme == "ssh":
        from debugkit.runtimes.docker.sshdial import SSHDialer

        dial = SSHDialer(address)
    return EngineClient(address, timeout=timeout, dial=dial, engine="Podman" if runtime == "podman" else "Docker")


def kube_configured(kubeconfig: str | None = None) -> bool:
    from debugkit.runtimes.kubernetes.kubeconfig import config_available

    return config_available(kubeconfig)


def kube_client(kubeconfig: str | None = None, context: str | None = None, *, impersonate=None,
                exec_timeout: float | None = None, quiet: bool = False) -> tuple["KubeClient", "ClusterAuth"]:
    """(client, auth) for the kube context, kubectl's way. The client prints no warnings
    (completion output must stay clean), never gives an exec plugin the terminal, and
    ends a plugin that runs longer than `exec_timeout`; `quiet`: a plugin's stderr is not
    shown either. Pass `timeout=` to each request. `impersonate`: core.options.Impersonate
    (--as...). Raises KubeConfigError when the configuration cannot be used."""
    from debugkit.runtimes.kubernetes.kubeclient import KubeClient
    from debugkit.runtimes.kubernetes.kubeconfig import load
    from debugkit.runtimes.kubernetes.runtime import impersonation

    auth = load(kubeconfig, context, impersonate=impersonation(impersonate))
    return KubeClient(auth, warn=None, interactive=False, exec_timeout=exec_timeout,
                      plugin_stderr=False if quiet else None), auth


def kube_namespace(flag: str | None, auth: "ClusterAuth") -> str:
    """The namespace a pod target without one would be looked up in, as attach decides:
    -n, else $DEBUGKIT_NAMESPACE or the config file's entry for the context, else the
    context's own namespace, else the config file's `namespace`, else "default"."""
    from debugkit.session import defaults

    if flag:
        return flag
    chosen = defaults.namespace(kube_context=auth.context)
    if chosen:
        return chosen
    return auth.namespace if auth.namespace_set else defaults.namespace_fallback()
