"""`debugkit doctor [TARGET]`: one line per check, each with its fix."""
from __future__ import annotations

import json

import click

from debugkit.cli.common import connection, complete_target, sidecar_flags, target_options

LABELS = {"ok": "ok", "fail": "FAIL", "warn": "warn", "skip": "skip", "not configured": "n/a"}


@click.command("doctor")
@click.argument("target", required=False, shell_complete=complete_target)
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@target_options
def doctor(target, output, namespace, container, kube_context, kubeconfig, docker_host, docker_context):
    """Check that debugkit can work here (and on TARGET): one line per check, with its fix.

    \b
    Engines (Docker; Podman when set up): reachable, socket permissions, toolbox image.
    Kubernetes (when a kubeconfig exists): context, API server, ephemeral containers,
    RBAC, the namespace's PodSecurity level, the cluster's toolbox image in its registry.
    The audit log and the config file. With TARGET: its identity, whether it is
    dumpable, whether the default profile reads its files, its zombies.

    Exit status: 0 when every check passes, 1 when one fails. Runtimes that are not set
    up here are shown as n/a and fail nothing; warnings fail nothing either.
    """
    from debugkit import runtimes
    from debugkit.core.errors import InvalidInput
    from debugkit.core.targets import NODE_PROFILES, NodeRef, check_k8s_name, parse_target
    from debugkit.session import doctor as checks

    if namespace is not None:
        try:
            check_k8s_name("namespace", namespace, namespace, label=True)
        except InvalidInput:
            raise InvalidInput(f"invalid --namespace {namespace!r}: a namespace is a DNS label (lower-case "
                               f"letters, digits and '-', at most 63)") from None
    flags = None
    where = connection(kube_context=kube_context, kubeconfig=kubeconfig, docker_host=docker_host,
                       docker_context=docker_context)
    if target is not None:
        # -n also chooses the namespace of the runtimes' checks: it goes to the target only
        # when the target takes one (a container target would refuse it).
        ref = parse_target(target, runtimes.syntax())
        takes_namespace = hasattr(ref, "namespace")
        if takes_namespace:
            parse_target(target, runtimes.syntax(), namespace=namespace, container=container)  # bad input: 64 now
        # A node is planned with the least of its profiles: doctor plans, it never creates.
        profile = NODE_PROFILES[0] if isinstance(ref, NodeRef) else None
        flags = sidecar_flags(target, namespace=namespace if takes_namespace else None, container=container,
                              kube_context=kube_context, kubeconfig=kubeconfig, docker_host=docker_host,
                              docker_context=docker_context, profile=profile)
    results = checks.run(flags=flags, connection=where, namespace=namespace)
    ok = checks.passed(results)
    if output == "json":
        click.echo(json.dumps({"ok": ok, "checks": [r.as_dict() for r in results]}, indent=2))
    else:
        render_text(results)
    return 0 if ok else 1


def render_text(results) -> None:
    """`STATUS NAME DETAIL  (fix: FIX)`: every value may come from a target or an image."""
    from debugkit.core.escape import safe

    width = max((len(r.name) for r in results), default=0)
    for r in results:
        fix = f"  (fix: {safe(r.fix)})" if r.fix and r.status != "ok" else ""
        click.echo(f"{LABELS.get(r.status, r.status):<5} {safe(r.name):<{width}}  {safe(r.detail)}{fix}")
