"""API clients for the lookups of doctor and completion, and whether a kubeconfig is here
at all.

A session's client waits as long as a debug session needs (30 s a request); doctor and
completion pass their own timeout to each request. Their client prints no warnings
(completion's output must stay clean).
"""
from __future__ import annotations


def configured(connection) -> bool:
    """Is there a kubeconfig to load (--kubeconfig, KUBECONFIG, ~/.kube/config, or a service
    account)? Cheap: the environment and file existence only, no parsing."""
    from debugkit.runtimes.kubernetes.kubeconfig import config_available

    return config_available(connection.kubeconfig)


def quiet_client(kubeconfig: str | None = None, context: str | None = None, *, impersonate=None,
                 exec_timeout: float | None = None, quiet: bool = False):
    """(client, auth) for the kube context, kubectl's way. The client prints no warnings
    (completion output must stay clean), never gives an exec plugin the terminal, and
    ends a plugin that runs longer than `exec_timeout`; `quiet`: a plugin's stderr is not
    shown either. Pass `timeout=` to each request. `impersonate`: core.options.Impersonate
    (--as...). Raises KubeConfigError when the configuration cannot be used."""
    from debugkit.runtimes.kubernetes.kubeclient import KubeClient
    from debugkit.runtimes.kubernetes.kubeconfig import load

    auth = load(kubeconfig, context, impersonate=impersonation(impersonate))
    return KubeClient(auth, warn=None, interactive=False, exec_timeout=exec_timeout,
                      plugin_stderr=False if quiet else None), auth


def namespace_for(flag: str | None, auth, preferences) -> str:
    """The namespace a pod without one is looked up in, as attach decides: -n, else the
    preferences' (environment, the config file's entry for the context), else the
    context's own, else the preferences' fallback."""
    if flag:
        return flag
    chosen = preferences.namespace(auth.context)
    if chosen:
        return chosen
    return auth.namespace if auth.namespace_set else preferences.namespace_fallback()


def impersonation(flags):
    """core.options.Impersonate (the flags) as the kubeconfig layer's Impersonation."""
    if not flags:
        return None
    from debugkit.runtimes.kubernetes.kubeuser import Impersonation

    return Impersonation(user=flags.user, uid=flags.uid, groups=tuple(flags.groups))
