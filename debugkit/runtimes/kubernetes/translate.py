"""Pure translations for Kubernetes: spec -> EphemeralContainer, and the commands it runs.

Ephemeral containers cannot carry labels, so the session lives in the name
(debugkit-<id>) and in the environment. Nothing here talks to a cluster.
"""
from __future__ import annotations

import copy

from debugkit.core.errors import InvalidInput
from debugkit.core.spec import SidecarSpec

NAME_PREFIX = "debugkit-"
# Gate for scripted commands: the container waits for one line on stdin before it execs
# the command, so our attach is in place first and no output is lost; stdout and stderr
# then arrive on their own channels. The wait is bounded: a CLI that dies before it
# attaches must not leave a container waiting for ever (ephemeral ones cannot be deleted).
GATE_SECONDS = 300
# Runbooks: a main process that lives as long as our attach keeps its stdin open (and
# never longer than 10 minutes without it). Not `cat >/dev/null`: under containerd that
# sees EOF at once; nothing is ever written, so stdout is as quiet.
KEEPALIVE = ("sh", "-c", "exec timeout 600 cat")
# Fields of the securityContext that decide privilege: --custom may not touch them
# unless the profile already grants as much (see check_custom).
PRIVILEGE_FIELDS = ("privileged", "runAsUser", "runAsGroup", "runAsNonRoot", "allowPrivilegeEscalation",
                    "capabilities", "seccompProfile", "appArmorProfile", "seLinuxOptions", "procMount",
                    "windowsOptions")


def gate(command: tuple[str, ...], *, seconds: int = GATE_SECONDS) -> tuple[str, ...]:
    script = f'timeout {int(seconds)} sh -c "read -r _" || exit 125; exec "$@"'
    return ("sh", "-c", script, "debugkit", *command)


GATE = gate(())


def security_context(spec: SidecarSpec) -> dict:
    sc: dict = {
        "runAsUser": spec.uid,
        "runAsGroup": spec.gid,
        "runAsNonRoot": spec.run_as_non_root,
        "allowPrivilegeEscalation": not spec.no_new_privileges,
        "readOnlyRootFilesystem": spec.read_only_root,
    }
    caps: dict = {}
    if spec.cap_drop:
        caps["drop"] = list(spec.cap_drop)
    if spec.cap_add:
        caps["add"] = list(spec.cap_add)
    if caps:
        sc["capabilities"] = caps
    if spec.seccomp_runtime_default:
        sc["seccompProfile"] = {"type": "RuntimeDefault"}
    if spec.privileged:
        sc["privileged"] = True
    return sc


def ephemeral_container(spec: SidecarSpec, *, target_container: str, custom: dict | None = None) -> dict:
    """The EphemeralContainer for this spec, with --custom merged last."""
    container: dict = {
        "name": spec.name,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "targetContainerName": target_container,
        "stdin": spec.stdin,
        "stdinOnce": spec.stdin,
        "tty": spec.tty,
        "env": [{"name": k, "value": v} for k, v in spec.env],
        "securityContext": security_context(spec),
        "terminationMessagePolicy": "File",
    }
    if spec.command:
        container["command"] = list(spec.command)
    if custom:
        check_custom(custom, container)
        container = merge(container, custom)
    return container


def check_custom(custom: dict, container: dict) -> None:
    """--custom may shape the container (env, workingDir, resources, volumeMounts...) but
    never raise its privileges: a file may ask, only a --profile flag grants."""
    for key in ("name", "targetContainerName"):
        if key in custom:
            raise InvalidInput(f"--custom may not set {key!r}")
    sc = custom.get("securityContext")
    if sc is None:
        return
    if not isinstance(sc, dict):
        raise InvalidInput("--custom: securityContext must be a mapping")
    current = container["securityContext"]
    for field in PRIVILEGE_FIELDS:
        if field in sc and sc[field] != current.get(field):
            raise InvalidInput(
                f"--custom may not change securityContext.{field} (the profile sets it to "
                f"{current.get(field)!r}); choose a --profile that grants what you need")


def merge(base: dict, override: dict) -> dict:
    """Recursive merge: mappings merge, everything else (lists included) is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
