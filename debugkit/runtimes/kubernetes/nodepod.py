"""Pure translation of a node debugging session into the Pod that runs it. No I/O.

A node debugging pod is what `kubectl debug node/NAME` creates (pinned to the node, the
host's PID and network namespaces, the host's / at /host, tolerating every taint), with
what kubectl's lacks: debugkit's labels (so `ps` lists it and `gc` collects it), a main
process that ends when the session's last command does (the helper's keep-alive), and a
deletion when the session ends (kubernetes/kubectl#1681 rejected `--rm`).

The profile decides the privileges: `node` runs as root with the runtime's default
capabilities and /host read-only; `sysadmin` is privileged with /host writable.
"""
from __future__ import annotations

import re
from typing import Any, NamedTuple

from debugkit.core.spec import (ENV_TARGET_ROOT, LABEL_CLI_HOST, LABEL_CLI_PID, LABEL_LOCAL_USER, LABEL_MANAGED,
                                LABEL_PROFILE, LABEL_REASON, LABEL_RUNTIME, LABEL_SESSION, LABEL_TARGET,
                                LABEL_TARGET_ID, LABEL_VERSION, SidecarSpec)
from debugkit.runtimes.kubernetes import translate

HOST_ROOT = "/host"
HOST_VOLUME = "host-root"
LABEL_KIND = "io.debugkit.kind"
KIND_NODE = "node"
LABEL_NODE = "io.debugkit.node"
# What `ps` and `gc` list: debugkit's node debugging pods.
NODE_POD_SELECTOR = f"{LABEL_MANAGED}=true,{LABEL_KIND}={KIND_NODE}"
# Labels are short, restricted values: these travel as annotations (a host name, a local
# user name, a node name or a --reason may not fit a label).
ANNOTATED = (LABEL_CLI_HOST, LABEL_LOCAL_USER, LABEL_REASON, LABEL_TARGET, LABEL_TARGET_ID)
LABELLED = (LABEL_MANAGED, LABEL_SESSION, LABEL_RUNTIME, LABEL_PROFILE, LABEL_CLI_PID, LABEL_VERSION)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


class NodeTarget(NamedTuple):
    """A node as locate() found it, and where its debugging pod goes."""

    node: str
    namespace: str
    uid: str


class NodePod(NamedTuple):
    """Where the debugging pod is, as the exec streams address it (PodTarget's fields)."""

    namespace: str
    pod_name: str


class NodePlan(NamedTuple):
    """What a node plan decided beyond the request (Plan.details)."""

    pod_target: NodePod
    node: str
    timeout: float
    created: list                   # the pod's UID once created (deletion is for that very pod)
    reuse_key: str = ""


def is_node_plan(plan: Any) -> bool:
    return isinstance(plan.details, NodePlan)


def label_value(value: str) -> str | None:
    """`value` if Kubernetes takes it as a label value, else None."""
    return value if _LABEL_VALUE.match(value) else None


def node_pod(spec: SidecarSpec, *, node: str, namespace: str, helper: bool) -> dict:
    """The Pod for a node debugging session: named after the session, its container too (the
    keep-alive listens on that name, and every exec holds it)."""
    given = spec.labels_dict()
    labels = {key: given[key] for key in LABELLED if key in given and label_value(given[key]) is not None}
    labels[LABEL_KIND] = KIND_NODE
    if label_value(node):
        labels[LABEL_NODE] = node
    annotations = {key: given[key] for key in ANNOTATED if key in given}
    writable = spec.privileged
    env = {**spec.env_dict(), ENV_TARGET_ROOT: HOST_ROOT}
    container = {
        "name": spec.name,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        # Idle 0: the pod's main process ends as soon as the session's last command does, so
        # a CLI killed with SIGKILL leaves a finished pod (gc deletes it), never a running one.
        "command": translate.keepalive_command(spec.name, idle=0, helper=helper),
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "securityContext": translate.security_context(spec),
        "volumeMounts": [{"name": HOST_VOLUME, "mountPath": HOST_ROOT, "readOnly": not writable}],
        "terminationMessagePolicy": "File",
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": spec.name, "namespace": namespace, "labels": labels, "annotations": annotations},
        "spec": {
            "nodeName": node,
            "hostPID": True,
            "hostNetwork": True,
            "dnsPolicy": "ClusterFirstWithHostNet",
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "tolerations": [{"operator": "Exists"}],
            "volumes": [{"name": HOST_VOLUME, "hostPath": {"path": "/"}}],
            "containers": [container],
        },
    }
