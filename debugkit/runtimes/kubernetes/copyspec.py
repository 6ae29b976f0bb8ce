"""Pure translation of a pod's held copy: the original pod and its container -> the copy pod.

Kept: the container's image, env and envFrom, working directory, securityContext and
resources; the pod's service account, securityContext, volumes, image pull secrets,
tolerations, node selector and affinity, DNS settings and host aliases. Dropped: the pod's
labels (no Service and no controller selects the copy) and owner references, the
container's probes, lifecycle hooks and ports, the other containers, `nodeName` (unless
--same-node) and the restart policy (`Never`). Every volume mount is read-only unless
--copy-writable. The copy's main process, `hold -- PROGRAM`, runs the toolbox's readable
helper from an image volume of the toolbox (Kubernetes 1.35+: no extra container to
start), or, where the API server refuses image volumes, from an emptyDir an init container
of the toolbox fills (`holder="init"`); either passes the `restricted` PodSecurity level
when the original does.
"""
from __future__ import annotations

from debugkit.core.errors import InvalidInput
from debugkit.core.spec import LABEL_LOCAL_USER, LABEL_MANAGED, LABEL_SESSION
from debugkit.runtimes.base import HOLDER_SOURCE, LABEL_COPY_KEEP, LABEL_COPY_OF

HOLDER_DIR = "/.debugkit"
HOLDER = f"{HOLDER_DIR}/debugkit-helper"
# In an image volume of the toolbox, its whole filesystem is under HOLDER_DIR.
IMAGE_HOLDER = f"{HOLDER_DIR}{HOLDER_SOURCE}"
HOLDERS = ("image", "init")
HOLDER_VOLUME = "debugkit-holder"
INSTALLER = "debugkit-holder"
COPY_MARK = "-debugkit-copy-"
# The toolbox's own user: the init container only writes a file into an emptyDir.
TOOLBOX_UID = 65532
# Annotations: who made the copy and from what (labels hold only what selectors need).
ANNOTATION_ORIGINAL = "debugkit.io/copy-of"
ANNOTATION_CLI_PID = "debugkit.io/cli-pid"
ANNOTATION_CLI_HOST = "debugkit.io/cli-host"
KEPT_POD_FIELDS = ("serviceAccountName", "automountServiceAccountToken", "securityContext", "imagePullSecrets",
                   "tolerations", "nodeSelector", "affinity", "dnsPolicy", "dnsConfig", "hostAliases",
                   "enableServiceLinks", "runtimeClassName", "priorityClassName", "terminationGracePeriodSeconds")
KEPT_CONTAINER_FIELDS = ("image", "env", "envFrom", "workingDir", "securityContext", "resources", "imagePullPolicy",
                         "volumeDevices")
DROPPED_CONTAINER_FIELDS = {"livenessProbe": "the liveness probe", "readinessProbe": "the readiness probe",
                            "startupProbe": "the startup probe", "lifecycle": "the lifecycle hooks",
                            "ports": "the container ports"}


def copy_name(pod: str, session_id: str) -> str:
    """A pod name (a DNS subdomain, 253 at most; kept short for the debug container's name)."""
    return f"{pod[:200]}{COPY_MARK}{session_id}"


def program(container: dict, image_config: dict | None) -> list[str]:
    """What the kubelet would run: command + args, with the image's ENTRYPOINT and CMD
    filling in what the spec leaves out (image_config: None when the spec needs none)."""
    command, args = container.get("command"), container.get("args")
    config = image_config or {}
    if command:
        run = list(command) + list(args or [])
    elif args is not None:
        run = list(config.get("Entrypoint") or []) + list(args)
    else:
        run = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    if not run:
        raise InvalidInput(f"container {container.get('name')!r} has no command and its image no entrypoint: "
                           f"there is no program to hold")
    return run


def needs_image_config(container: dict) -> bool:
    return not container.get("command")


def installer(toolbox: str) -> dict:
    """The init container that copies the toolbox's readable helper into the emptyDir."""
    return {
        "name": INSTALLER, "image": toolbox, "imagePullPolicy": "IfNotPresent",
        "command": [HOLDER_SOURCE, "install-holder", HOLDER],
        "volumeMounts": [{"name": HOLDER_VOLUME, "mountPath": HOLDER_DIR}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": TOOLBOX_UID, "runAsGroup": TOOLBOX_UID,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def copy_pod(pod: dict, container_name: str, *, run: list[str], name: str, session_id: str, local_user: str,
             toolbox: str, writable: bool, same_node: bool, keep: bool, cli_pid: int, cli_host: str,
             holder: str = "image") -> tuple[dict, list[str]]:
    """(the copy pod, what it leaves out). `holder`: where the helper comes from, an image
    volume of the toolbox or an init container that fills an emptyDir."""
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    original = next(c for c in spec.get("containers") or [] if c.get("name") == container_name)
    dropped = []
    if meta.get("labels"):
        dropped.append("the pod's labels (" + ", ".join(sorted(meta["labels"])) + ")")
    if meta.get("ownerReferences"):
        dropped.append("its owner references")
    others = [c["name"] for c in spec.get("containers") or [] if c.get("name") != container_name]
    if others:
        dropped.append("the other containers (" + ", ".join(others) + ")")
    if spec.get("initContainers"):
        dropped.append("the init containers")
    container = {"name": container_name, **{k: original[k] for k in KEPT_CONTAINER_FIELDS if k in original}}
    container["command"] = [IMAGE_HOLDER if holder == "image" else HOLDER, "hold", "--"] + list(run)
    container["volumeMounts"] = [{**m, "readOnly": True if not writable else m.get("readOnly", False)}
                                 for m in original.get("volumeMounts") or []]
    container["volumeMounts"].append({"name": HOLDER_VOLUME, "mountPath": HOLDER_DIR, "readOnly": True})
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    for key, what in DROPPED_CONTAINER_FIELDS.items():
        if original.get(key):
            dropped.append(what)
    new_spec = {k: spec[k] for k in KEPT_POD_FIELDS if k in spec}
    if holder == "image":
        volume = {"name": HOLDER_VOLUME, "image": {"reference": toolbox, "pullPolicy": "IfNotPresent"}}
    else:
        volume = {"name": HOLDER_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}}
        new_spec["initContainers"] = [installer(toolbox)]
    new_spec.update({"restartPolicy": "Never", "containers": [container],
                     "volumes": list(spec.get("volumes") or []) + [volume]})
    if same_node and spec.get("nodeName"):
        new_spec["nodeName"] = spec["nodeName"]
    elif spec.get("nodeName"):
        dropped.append(f"the node ({spec['nodeName']}; --same-node keeps it)")
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        dropped.append("the host namespaces (hostNetwork, hostPID, hostIPC)")
    annotations = {ANNOTATION_ORIGINAL: f"{meta.get('namespace')}/{meta.get('name')}/{container_name}"}
    if not keep:
        annotations.update({ANNOTATION_CLI_PID: str(cli_pid), ANNOTATION_CLI_HOST: cli_host})
    labels = {LABEL_MANAGED: "true", LABEL_SESSION: session_id, LABEL_COPY_OF: meta.get("uid", ""),
              LABEL_LOCAL_USER: _label_value(local_user), **({LABEL_COPY_KEEP: "true"} if keep else {})}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": meta.get("namespace"), "labels": labels,
                         "annotations": annotations},
            "spec": new_spec}, dropped


def _label_value(text: str) -> str:
    """A label value: 63 characters of [A-Za-z0-9_.-], starting and ending alphanumeric."""
    cleaned = "".join(c if c.isalnum() or c in "_.-" else "_" for c in text)[:63].strip("_.-")
    return cleaned or "unknown"
