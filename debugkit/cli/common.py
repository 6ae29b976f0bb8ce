"""What every command shares: options declared once, output rendering, the error line.

Values are passed on as typed (strings): validation is the session flow's job
(core.options), so a bad value gets the same one-line message whichever command took it.
The runtime names a choice offers come from the runtime registry when the choice is used.
"""
from __future__ import annotations

import json
from typing import Callable, Iterable

import click

from debugkit.cli.completion import (complete_container, complete_context, complete_file,  # noqa: F401
                                     complete_namespace, complete_profile, complete_runbook, complete_target)
from debugkit.core.escape import safe, safe_data
from debugkit.core.profiles import PROFILE_NAMES  # noqa: F401 - the --profile choices


class NamesChoice(click.Choice):
    """A click.Choice whose names are looked up when it is used, not when the CLI is
    imported (the runtime registry's names, which a test may add to)."""

    def __init__(self, names: Callable[[], Iterable[str]]):
        self._names = names
        super().__init__(())

    @property
    def choices(self):
        return tuple(self._names())

    @choices.setter
    def choices(self, _value) -> None:
        pass


def runtime_names(*, auto: bool = False, where: Callable | None = None) -> NamesChoice:
    """--runtime: the registered runtimes (those `where` picks), and `auto` first if asked."""
    def names():
        from debugkit import runtimes

        return (("auto",) if auto else ()) + (where() if where else runtimes.names())
    return NamesChoice(names)


OUTPUT_FORMATS = click.Choice(["text", "json", "yaml"])
RUNTIME_CHOICE = runtime_names(auto=True)


def err(message: str) -> None:
    click.echo(f"debugkit: {safe(message)}", err=True)


def engine_options(func):
    """-H/--host and --docker-context: which Docker engine (as the docker CLI picks it)."""
    func = click.option("-H", "--host", "docker_host", metavar="URL",
                        help="Docker engine: unix://PATH, tcp://HOST:PORT or ssh://[USER@]HOST[:PORT] "
                             "(default: DOCKER_HOST, then the Docker context).")(func)
    func = click.option("--docker-context", metavar="NAME",
                        help="Docker context to use (default: DOCKER_CONTEXT, then `docker context use`).")(func)
    return func


_IMPERSONATE = "debugkit.impersonate"


def _remember_impersonation(ctx: click.Context, param: click.Parameter, value):
    """--as, --as-group and --as-uid are kept in the context (not passed to each command):
    connection() hands them to the Kubernetes runtime, as kubectl's global flags."""
    if value not in (None, ()):
        if any(not v or not str(v).isprintable() for v in (value if isinstance(value, tuple) else (value,))):
            raise click.BadParameter("must be a non-empty name without control characters")
        ctx.meta.setdefault(_IMPERSONATE, {})[param.name] = value
    return value


def impersonation():
    """The --as/--as-group/--as-uid of the command being run (None when none was given)."""
    from debugkit.core.options import Impersonate

    ctx = click.get_current_context(silent=True)
    given = ctx.meta.get(_IMPERSONATE) if ctx is not None else None
    if not given:
        return None
    return Impersonate(user=given.get("kube_as"), groups=tuple(given.get("kube_as_groups") or ()),
                       uid=given.get("kube_as_uid"))


def kube_options(func):
    """--context/--kubeconfig: which cluster, --as/--as-group/--as-uid: as whom (kubectl's
    impersonation flags); -H/--docker-context: which Docker engine."""
    func = click.option("--as-uid", "kube_as_uid", metavar="UID", expose_value=False,
                        callback=_remember_impersonation, help="Kubernetes: UID to impersonate.")(func)
    func = click.option("--as-group", "kube_as_groups", metavar="GROUP", multiple=True, expose_value=False,
                        callback=_remember_impersonation,
                        help="Kubernetes: group to impersonate (repeatable).")(func)
    func = click.option("--as", "kube_as", metavar="USER", expose_value=False, callback=_remember_impersonation,
                        help="Kubernetes: user to impersonate (as kubectl --as).")(func)
    func = click.option("--context", "kube_context", metavar="NAME", help="kubeconfig context to use.",
                        shell_complete=complete_context)(func)
    func = click.option("--kubeconfig", help="Path to a kubeconfig file.", shell_complete=complete_file)(func)
    return engine_options(func)


def target_options(func):
    """-n/-c: where in the cluster a pod target lives, and the kube and engine options."""
    func = click.option("-n", "--namespace", help="Kubernetes namespace (pod targets).",
                        shell_complete=complete_namespace)(func)
    func = click.option("-c", "--container", help="Target container in the pod.",
                        shell_complete=complete_container)(func)
    return kube_options(func)


def sidecar_options(func):
    """The sidecar's identity, image, privileges and limits."""
    func = click.option("--user", "-u", metavar="UID[:GID]",
                        help="Run the sidecar as this numeric user instead of the target's.")(func)
    func = click.option("--image", metavar="REF", help="Sidecar image (default: the bundled toolbox).")(func)
    func = click.option("--profile", type=click.Choice(PROFILE_NAMES), default=None,
                        help="Security profile of the sidecar (default: restricted).")(func)
    func = click.option("--memory", metavar="SIZE",
                        help="Docker/Podman: memory limit of the sidecar (default: 256m; e.g. 512m, or none).")(func)
    func = click.option("--pids-limit", metavar="N",
                        help="Docker/Podman: process limit of the sidecar (default: 256, or none).")(func)
    func = click.option("--cpus", metavar="N",
                        help="Docker/Podman: CPU limit of the sidecar (default: 1; e.g. 0.5, or none).")(func)
    func = click.option("--keep-alive", metavar="DURATION",
                        help="Keep the sidecar for reuse until idle this long (10m, 0 = end with the command). "
                             "Kubernetes default: 10m; Docker/Podman: removed after each command unless "
                             "given.")(func)
    func = click.option("--new", is_flag=True, help="Start a new sidecar even if a reusable one exists.")(func)
    func = click.option("--custom", metavar="FILE", shell_complete=complete_file,
                        help="Kubernetes: partial container spec (YAML/JSON) merged last; it cannot "
                             "raise privileges.")(func)
    func = click.option("--timeout", metavar="SECONDS",
                        help="Kubernetes: seconds to wait for the debug container to start (default: 120).")(func)
    return func


def copy_options(func):
    """--copy, --copy-writable, --same-node: debug a target that is not running through a held copy."""
    func = click.option("--copy", is_flag=True,
                        help="Debug a held copy of TARGET (running, restarting, exited or crash-looping): its "
                             "image, env, mounts (read-only), user and networks, with the program not started; "
                             "`target start` in the sidecar runs it. Removed at the end unless --keep-alive.")(func)
    func = click.option("--copy-writable", is_flag=True,
                        help="With --copy: volumes and bind mounts as writable as the original's (audited).")(func)
    func = click.option("--same-node", is_flag=True,
                        help="With --copy of a pod: run the copy on the original's node.")(func)
    return func


def check_copy_scope(many, contexts) -> None:
    """--copy takes one target (a workload names one of its pods) in one cluster: 64 otherwise,
    before anything is asked of a runtime."""
    from debugkit.core.errors import InvalidInput
    from debugkit.core.targets import WorkloadRef

    if many is not None and not isinstance(many, WorkloadRef):
        raise InvalidInput(f"--copy takes one target, not {many}: name one pod, container or workload")
    if contexts is not None:
        raise InvalidInput("--copy takes one target in one cluster: give one --context")


def reason_option(func):
    """--reason: why, kept in the audit log and on the sidecar (label, DEBUGKIT_REASON)."""
    return click.option("--reason", metavar="TEXT",
                        help="Why you are debugging (a sentence or a ticket): in the audit log, the sidecar's "
                             "labels and its DEBUGKIT_REASON. Required when the config sets require_reason.")(func)


def record_options(func):
    """--record and --record-input: the session as an asciicast v3 file in the state directory."""
    func = click.option("--record", "record", is_flag=True, default=None,
                        help="Record the session (asciicast v3, mode 0600, beside the audit log; its SHA-256 "
                             "goes into the audit log). Config: record: always.")(func)
    func = click.option("--record-input", is_flag=True,
                        help="Record what is typed too (implies --record; input can hold passwords).")(func)
    return func


def connection(*, kube_context=None, kubeconfig=None, docker_host=None, docker_context=None):
    from debugkit.core.options import Connection

    return Connection(docker_host=docker_host, docker_context=docker_context, kube_context=kube_context,
                      kubeconfig=kubeconfig, kube_impersonate=impersonation())


def sidecar_flags(target: str, command=(), *, kube_context=None, kubeconfig=None, docker_host=None,
                  docker_context=None, **flags):
    """The flags as typed (core.options.Flags), which the session layer validates."""
    from debugkit.core.options import Flags

    return Flags(target=target, command=tuple(command), **flags,
                 connection=connection(kube_context=kube_context, kubeconfig=kubeconfig, docker_host=docker_host,
                                       docker_context=docker_context))


def render(data: dict, output: str) -> None:
    """inspect-style output. Every value may come from a target or an image: text and YAML
    are escaped for the terminal (JSON's encoder escapes control characters itself)."""
    if output == "json":
        click.echo(json.dumps(data, indent=2, sort_keys=False))
        return
    data = safe_data(data)
    if output == "yaml":
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())
        return
    for key, value in data.items():
        if key == "sources":
            click.echo("sources:")
            for src in value:
                if "error" in src:
                    click.echo(f"  {src['source']:<13} unavailable: {src['error']}")
                elif src.get("uid") is None:  # read by the sidecar when it starts
                    click.echo(f"  {src['source']:<13} when the sidecar starts ({'; '.join(src.get('notes') or [])})")
                else:
                    groups = ",".join(str(g) for g in src.get("groups", []))
                    notes = f"  ({'; '.join(src['notes'])})" if src.get("notes") else ""
                    click.echo(f"  {src['source']:<13} {src['uid']}:{src['gid']} groups={groups}{notes}")
            continue
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=False)
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "-"
        click.echo(f"{key + ':':<17}{'-' if value is None else value}")


def age(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
