"""Pure translations for Kubernetes: spec -> EphemeralContainer, and the commands it runs.

Ephemeral containers cannot carry labels, so the session lives in the name
(debugkit-<id>) and in the environment. Nothing here talks to a cluster.
"""
from __future__ import annotations

import copy

from debugkit.core.errors import InvalidInput
from debugkit.core.reuse import RUNNING, STARTING, SidecarFacts
from debugkit.core.spec import SidecarSpec
from debugkit.runtimes.base import HELPER_PATH, HELPER_PROTOCOL, reaped

NAME_PREFIX = "debugkit-"
# The toolbox's helper: the reaper and the keep-alive (toolbox-image/helper).
HELPER = HELPER_PATH
ENV_REUSE = "DEBUGKIT_REUSE"            # what a later attach must match to exec into this container
ENV_KEEP_ALIVE = "DEBUGKIT_KEEP_ALIVE"  # seconds the keep-alive stays up once idle
ENV_LOCAL_USER = "DEBUGKIT_LOCAL_USER"
ENV_PROFILE = "DEBUGKIT_SIDECAR_PROFILE"  # for `ps` (ephemeral containers carry no labels)
# How long a keep-alive waits for its first command before it gives up (a CLI that died
# between the PATCH and its first exec must not leave a container for ever).
FIRST_COMMAND_SECONDS = 120
# What --custom may never set, and why: what the debug container is, what it runs and how
# long it lives (kubectl debug refuses the same for its --custom).
FIXED_FIELDS = {
    "name": "name", "targetContainerName": "target", "image": "image", "command": "command", "args": "command",
    "lifecycle": "lifecycle", "stdin": "lifecycle (its stdin decides when it ends)",
    "stdinOnce": "lifecycle (its stdin decides when it ends)", "tty": "terminal",
    "volumeDevices": "devices", "restartPolicy": "lifecycle",
}
# Fields of the securityContext that decide privilege: --custom may not touch them
# unless the profile already grants as much (see check_custom).
PRIVILEGE_FIELDS = ("privileged", "runAsUser", "runAsGroup", "runAsNonRoot", "allowPrivilegeEscalation",
                    "capabilities", "seccompProfile", "appArmorProfile", "seLinuxOptions", "procMount",
                    "windowsOptions")


def keepalive_command(name: str, *, idle: float, helper: bool) -> list[str]:
    """The debug container's main process. With the helper: a keep-alive that counts the
    commands holding its socket and exits once none has for `idle` seconds (0: as soon as
    the last one ends). Without it (a foreign --image): a fixed lifetime of `idle`
    seconds, at least a minute, and no reaping."""
    seconds = str(int(idle))
    if helper:
        return [HELPER, "keepalive", "--socket", name, "--idle", seconds, "--first", str(FIRST_COMMAND_SECONDS)]
    script = ('if command -v debugkit-helper >/dev/null 2>&1; then '
              'exec debugkit-helper keepalive --socket "$0" --idle "$1" --first "$2"; fi; exec sleep "$3"')
    return ["sh", "-c", script, name, seconds, str(FIRST_COMMAND_SECONDS), str(max(60, int(idle)))]


def exec_command(name: str, argv, *, helper: bool, watch_stdin: bool = False, guard: str | None = None) -> list[str]:
    """A command as an exec (see base.reaped). Without the toolbox's helper: the image's
    own debugkit-helper if it has one, else the bare command."""
    if helper:
        return reaped(name, argv, watch_stdin=watch_stdin, guard=guard)
    script = ('if command -v debugkit-helper >/dev/null 2>&1; then '
              'exec debugkit-helper reap --hold "$0" -- "$@"; fi; exec "$@"')
    return ["sh", "-c", script, name, *argv]


# A command of a debug container from a foreign --image (no debugkit-helper, so no
# `as-target`) that runs as the target's process does (identity.AS_PROCESS):
# read its effective UID and GID and its groups from /proc/1/status, drop to them (setpriv:
# the permitted and effective capabilities go with UID 0), then run the command. Builtins
# only up to setpriv: each command pays for this script, and a fork costs under load.
AS_TARGET_SCRIPT = r"""
uid= gid= groups=
while read -r key first second rest; do
  case $key in
    Uid:) uid=$second ;;
    Gid:) gid=$second ;;
    Groups:) for group in $first $second $rest; do groups=${groups:+$groups,}$group; done ;;
  esac
done < /proc/1/status
if [ -z "$uid" ] || [ -z "$gid" ]; then
  echo "debugkit: cannot read the target's user from /proc/1/status" >&2; exit 125
fi
if [ ! -x /usr/bin/setpriv ]; then
  echo "debugkit: running as the target's process needs util-linux's setpriv in an --image without" \
    "debugkit-helper: use the toolbox, or pass --user UID[:GID]" >&2; exit 125
fi
if [ -n "$groups" ]; then set_groups=--groups=$groups; else set_groups=--clear-groups; fi
exec /usr/bin/setpriv --reuid="$uid" --regid="$gid" $set_groups --inh-caps=-all -- "$@"
"""
AS_PROCESS_CAPABILITIES = ("SETUID", "SETGID")


def as_target(argv, *, helper: bool) -> list[str]:
    """argv, run as the target's process runs: by the toolbox's helper (`as-target`, which
    also sets no_new_privs and drops the capabilities of a target that runs as root), or
    for a foreign image by AS_TARGET_SCRIPT."""
    if helper:
        return [HELPER, "as-target", "--", *argv]
    return ["sh", "-c", AS_TARGET_SCRIPT, "debugkit-as-target", *argv]


def reuse_key(spec: SidecarSpec, *, target_container: str, custom: dict | None, local_user: str,
              keep_alive: float | None = None, as_process: bool = False) -> str:
    """What two attaches must share to use one debug container: the target container, the
    person, the sidecar's identity, image and profile, any --custom, and the keep-alive
    (its idle limit is part of the container's command)."""
    import hashlib
    import json

    # The helper protocol too: a container started by an older debugkit runs a helper that
    # may not know what this one asks of it (the image's tag can have moved since).
    facts = [target_container, local_user, spec.uid, spec.gid, list(spec.supplementary_groups), spec.image,
             spec.profile, custom or {}, HELPER_PROTOCOL]
    if keep_alive is not None:
        facts.append(int(keep_alive))
    if as_process:
        facts.append("as-process")
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:20]


# Waiting reasons of a debug container on its way to running: reusing it means waiting.
STARTING_REASONS = {None, "", "ContainerCreating", "PodInitializing"}


def _digest(image_id: str | None) -> str | None:
    """sha256:... of an imageID (docker-pullable://repo@sha256:..., repo@sha256:..., sha256:...)."""
    if not isinstance(image_id, str) or "sha256:" not in image_id:
        return None
    return "sha256:" + image_id.rsplit("sha256:", 1)[1]


def _security(container: dict) -> dict:
    return {"securityContext": container.get("securityContext") or {},
            "targetContainerName": container.get("targetContainerName") or ""}


def planned_facts(container: dict, *, name: str, command) -> SidecarFacts:
    """What a reused debug container named `name` must be to serve this plan: the plan's
    image (and digest, when the reference pins one), user and securityContext (after
    --custom), targeting the same container, running its own keep-alive command."""
    sc = container.get("securityContext") or {}
    return SidecarFacts(name=name, image=container["image"], user=f"{sc.get('runAsUser')}:{sc.get('runAsGroup')}",
                        security=_security(container), command=tuple(command),
                        digest=_digest(container["image"]) if "@" in container["image"] else None)


def found_facts(container: dict, status: dict) -> SidecarFacts:
    """What an ephemeral container of the pod is, from its spec and status."""
    sc = container.get("securityContext") or {}
    state = status.get("state") or {}
    if "running" in state:
        now = RUNNING
    elif "terminated" in state:
        now = f"terminated: {state['terminated'].get('reason') or 'exit ' + str(state['terminated'].get('exitCode'))}"
    elif (state.get("waiting") or {}).get("reason") in STARTING_REASONS:
        now = STARTING
    else:
        now = f"waiting: {state['waiting'].get('reason')}"
    command = [*(container.get("command") or []), *(container.get("args") or [])]
    return SidecarFacts(name=container.get("name", ""), image=str(container.get("image") or ""),
                        user=f"{sc.get('runAsUser')}:{sc.get('runAsGroup')}", security=_security(container),
                        command=tuple(str(c) for c in command), state=now, digest=_digest(status.get("imageID")))


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
    never raise its privileges (a file may ask, only a --profile flag grants), and never
    change what the debug container is or how long it lives: as kubectl debug's --custom
    (KEP-4292), not its name, image, command, args or lifecycle, nor debugkit's own
    DEBUGKIT_* variables, which carry its session, reuse key and keep-alive."""
    for key in FIXED_FIELDS:
        if key in custom:
            raise InvalidInput(f"--custom may not set {key!r}: debugkit decides the debug container's "
                               f"{FIXED_FIELDS[key]}")
    env = custom.get("env")
    if env is not None:
        if not isinstance(env, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in env):
            raise InvalidInput("--custom: env must be a list of {name, value} mappings")
        for entry in env:
            if entry["name"].startswith("DEBUGKIT_"):
                raise InvalidInput(f"--custom may not set the environment variable {entry['name']}: debugkit's "
                                   f"own variables carry the session, its reuse key and its keep-alive")
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
    """Recursive merge: mappings merge; `env` merges by name, as a strategic merge patch
    does (so --custom adds to debugkit's variables instead of replacing them); every other
    list is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif key == "env" and isinstance(value, list) and isinstance(out.get(key), list):
            given = {e["name"]: copy.deepcopy(e) for e in value}
            out[key] = [given.pop(e["name"], e) for e in out[key]] + list(given.values())
        else:
            out[key] = copy.deepcopy(value)
    return out
