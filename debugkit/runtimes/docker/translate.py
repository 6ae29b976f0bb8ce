"""Pure translations for Docker-API engines: spec -> create body -> `docker run` line.

`create_request` is the only place the sidecar's container is described for the engine;
`run_argv` derives the equivalent command line from that very body, so what `inspect`
shows cannot drift from what `attach` sends.
"""
from __future__ import annotations

import shlex

from debugkit.core.options import format_bytes
from debugkit.core.reuse import RUNNING, SidecarFacts
from debugkit.core.spec import LABEL_USER, SidecarSpec
from debugkit.runtimes.base import HELPER_PATH, HELPER_PROTOCOL, RELAY_MOUNT, reaped

# The toolbox's helper (toolbox-image/helper): the reaper and the keep-alive. A foreign
# --image gets it as a read-only single-file mount at the same path, when the engine is local.
HELPER = HELPER_PATH
HELPER_LABEL = "io.debugkit.helper"          # set on the toolbox image: it carries HELPER
# An image whose helper speaks an older protocol would fail every command (exit 125).
HELPER_PROTOCOL_LABEL = "io.debugkit.helper-protocol"


def helper_protocol(labels: dict) -> int | None:
    """The protocol of the image's debugkit-helper: None without one, 1 for a build from
    before the protocol label."""
    if labels.get(HELPER_LABEL) != HELPER:
        return None
    value = labels.get(HELPER_PROTOCOL_LABEL, "1")
    return int(value) if value.isdigit() and len(value) < 6 else 1
LABEL_REUSE = "io.debugkit.reuse-key"        # a reusable sidecar (--keep-alive), and what it is for
LABEL_KEEP_ALIVE = "io.debugkit.keep-alive"
# With --stdin the keep-alive ends on our attach's EOF; the idle bound is only a backstop.
SESSION_IDLE_SECONDS = 86400


# Every exec debugkit starts carries DEBUGKIT_EXEC=<session>.<random> in its environment
# (exec.py). This script, run in the sidecar as the sidecar's user, SIGKILLs exactly the
# processes whose environment has DEBUGKIT_EXEC=$1 (a whole tag, or "<session>." for all
# of a session's execs), never a target process: none carries the marker. The engine
# closes an exec's stream only when it sees the exec exit, which it does not when the
# sidecar (sharing the target's PID namespace) ends first: so execs go before the
# sidecar, and the script returns once they are dead (zombies count: the target's init
# may never reap them; at most 3 s), plus a moment for the engine to see it.
STOP_EXECS = "; ".join((
    'killed=""',
    # An exec's own processes carry the marker in their environment: SIGKILL. Its reaper
    # (debugkit-helper, not dumpable: its environment is root's to read) carries it on its
    # command line: SIGTERM, and it ends and reaps its own tree.
    'for p in /proc/[0-9]*; do '
    'case "$(tr "\\0" "\\n" 2>/dev/null <"$p/environ")" in '
    '*"DEBUGKIT_EXEC=$1"*) kill -KILL "${p#/proc/}" 2>/dev/null && killed="$killed ${p#/proc/}";; '
    '*) case "$(tr "\\0" "\\n" 2>/dev/null <"$p/cmdline")" in '
    '*"DEBUGKIT_EXEC=$1"*) kill -TERM "${p#/proc/}" 2>/dev/null && killed="$killed ${p#/proc/}";; esac;; '
    'esac; done',
    'n=0',
    'while [ -n "$killed" ] && [ $n -lt 30 ]; do '
    'left=""; for q in $killed; do case "$(cat 2>/dev/null "/proc/$q/stat")" in ""|*") Z "*) ;; '
    '*) left="$left $q";; esac; done; killed=$left; '
    'n=$((n+1)); [ -n "$killed" ] && sleep 0.1; done',
    '[ $n -gt 0 ] && sleep 0.3',
    'true',
))


# On a remote engine the CLI sends a heartbeat byte on the keep-alive stream every
# HEARTBEAT_S seconds, and the keep-alive ends when none arrives for HEARTBEAT_TIMEOUT_S:
# a connection that goes silent (a network partition, a suspended laptop) ends the
# sidecar within that bound, whatever the server's sshd or TCP keep-alive settings.
HEARTBEAT_S = 5
HEARTBEAT_TIMEOUT_S = 30


def fallback_keepalive(session_id: str, *, heartbeat: bool = False) -> tuple[str, ...]:
    """Without the helper: the main process of a sidecar that serves execs (interactive
    shells, runbooks, remote scripted commands). It lives exactly as long as our attach
    connection keeps its stdin open (and, with `heartbeat`, keeps sending); at EOF (we
    closed it, we died, the connection dropped) or silence it stops the session's execs,
    then exits, and the engine removes the sidecar."""
    wait = "cat >/dev/null"
    if heartbeat:
        # Each heartbeat is one "." (a newline would vanish in $(...)). An image without
        # timeout or head keeps the plain keep-alive (EOF only).
        wait = (f'if command -v timeout && command -v head; then '
                f'while [ -n "$(timeout {HEARTBEAT_TIMEOUT_S} head -c 1)" ]; do :; done; '
                f'else cat; fi >/dev/null 2>&1')
    return ("sh", "-c", f"{wait}; {STOP_EXECS}", "debugkit-keepalive", f"{session_id}.")


def main_command(name: str, command, *, mode: str, helper: bool, keep_alive: float | None, session_id: str,
                 heartbeat: bool = False) -> tuple[str, ...]:
    """The sidecar container's main process.

    - reusable (--keep-alive D): a keep-alive that outlives this CLI until idle for D seconds;
    - a scripted command: the command itself, under the reaper (orphans come to it, not to
      the target's PID 1; the whole tree is ended and reaped when the command ends). The
      reaper watches the container's stdin, which our attach holds open and never writes:
      when the CLI dies the engine closes it, and the reaper ends the tree;
    - an interactive shell, a runbook, or any command on a remote engine: a keep-alive
      tied to our attach's stdin (and, on a remote engine, to its heartbeat); the commands
      are execs in it."""
    if keep_alive:
        if helper:
            return (HELPER, "keepalive", "--socket", name, "--idle", str(int(keep_alive)), "--first", "60")
        return ("sh", "-c", f"exec sleep {max(60, int(keep_alive))}")
    if mode == "command":
        return (HELPER, "reap", "--watch-stdin", "--", *command) if helper else tuple(command)
    if helper:
        argv = (HELPER, "keepalive", "--socket", name, "--stdin", "--idle", str(SESSION_IDLE_SECONDS))
        return argv + (("--stdin-timeout", str(HEARTBEAT_TIMEOUT_S)) if heartbeat else ())
    return fallback_keepalive(session_id, heartbeat=heartbeat)


def steps_main_command() -> tuple[str, ...]:
    """The main process of a runbook's sidecar on a local engine: the helper's `steps` on
    our attach (its stdin and stdout), which runs each step as the reaper would and ends at
    the attach's EOF, so the sidecar ends (and is removed) with it."""
    return (HELPER, "steps")


def exec_command(name: str, argv, *, helper: bool, watch_stdin: bool = False, guard: str | None = None,
                 mark: str | None = None) -> list[str]:
    """An exec in a sidecar (see base.reaped); the bare command without the helper."""
    return reaped(name, argv, watch_stdin=watch_stdin, guard=guard, mark=mark) if helper else list(argv)


def reuse_key(spec: SidecarSpec, *, target_id: str, image_id: str, local_user: str,
              keep_alive: float | None = None) -> str:
    """What two attaches must share to use one kept-alive sidecar: the target, the person,
    the sidecar's identity, image, profile and limits, and the keep-alive (its idle limit
    is part of the sidecar's command)."""
    import hashlib
    import json

    res = spec.resources
    facts = [target_id, local_user, spec.uid, spec.gid, list(spec.supplementary_groups), image_id, spec.profile,
             res.memory_bytes, res.pids, res.nano_cpus]
    if keep_alive is not None:
        facts.append(int(keep_alive))
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:20]


# The capabilities a container gets when nothing is dropped: Docker's default set, which
# Podman 4.3 also lists when it reports a CapDrop of ALL (it expands ALL into them).
DEFAULT_CAPS = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                          "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})


def _caps(values) -> set[str]:
    return {str(c).upper().removeprefix("CAP_") for c in values or ()}


def effective_caps(host_config: dict) -> list[str]:
    """The capabilities a container runs with, from CapAdd and CapDrop, whichever way the
    engine writes them: Docker keeps CapDrop: [ALL], Podman reports the defaults it dropped."""
    dropped, added = _caps(host_config.get("CapDrop")), _caps(host_config.get("CapAdd"))
    base = set() if "ALL" in dropped else DEFAULT_CAPS - dropped
    return sorted(base | added)


def security_facts(host_config: dict) -> dict:
    """The security settings of a container, from a create body's HostConfig or an
    inspect's, in one form (None, [] and absent alike; the capabilities it gets)."""
    return {
        "Privileged": bool(host_config.get("Privileged")),
        "Capabilities": effective_caps(host_config),
        "NoNewPrivileges": any(str(o).startswith("no-new-privileges") and not str(o).endswith(":false")
                               for o in host_config.get("SecurityOpt") or ()),
        "ReadonlyRootfs": bool(host_config.get("ReadonlyRootfs")),
        "PidMode": host_config.get("PidMode") or "",
        "NetworkMode": host_config.get("NetworkMode") or "",
        "GroupAdd": sorted(str(g) for g in host_config.get("GroupAdd") or ()),
        "Binds": sorted(str(b) for b in host_config.get("Binds") or ()),
    }


def planned_facts(request: dict, *, image_id: str, name: str, command) -> SidecarFacts:
    """What a kept-alive sidecar named `name` must be to serve this plan: the plan's image
    (by ID), user and security settings, and its own keep-alive command."""
    body = request["body"]
    return SidecarFacts(name=name, image=image_id, user=body.get("User") or "",
                        security=security_facts(body.get("HostConfig") or {}), command=tuple(command))


def inspected_facts(attrs: dict) -> SidecarFacts:
    """What a container is, from the engine's inspect of it."""
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    running = state.get("Running") and not state.get("Paused")
    command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
    return SidecarFacts(name=str(attrs.get("Name") or "").lstrip("/"), image=str(attrs.get("Image") or ""),
                        user=str(config.get("User") or ""), security=security_facts(attrs.get("HostConfig") or {}),
                        command=tuple(str(c) for c in command),
                        state=RUNNING if running else str(state.get("Status") or "not running"))


def create_request(spec: SidecarSpec, *, target_id: str, mounts: tuple[tuple[str, str], ...] = (),
                   log_driver: str | None = None) -> dict:
    """{"name": ..., "body": ...} for POST /containers/create. `mounts` are read-only
    single-file binds (host path, container path), e.g. the helper for a foreign image.
    `log_driver`: the sidecar's (None: the engine's default)."""
    res = spec.resources
    host_config = {
        "PidMode": f"container:{target_id}",
        "NetworkMode": f"container:{target_id}",
        "CapDrop": list(spec.cap_drop) or None,
        "CapAdd": list(spec.cap_add) or None,
        "Privileged": spec.privileged,
        "SecurityOpt": ["no-new-privileges:true"] if spec.no_new_privileges else None,
        "ReadonlyRootfs": spec.read_only_root,
        "Tmpfs": dict(spec.tmpfs) or None,
        "GroupAdd": [str(g) for g in spec.supplementary_groups] or None,
        "Memory": res.memory_bytes,
        "MemorySwap": res.memory_bytes,
        "PidsLimit": res.pids,
        "NanoCpus": res.nano_cpus,
        "Binds": [f"{src}:{dst}:ro" for src, dst in mounts] or None,
        "AutoRemove": True,
        "LogConfig": {"Type": log_driver, "Config": {}} if log_driver else None,
    }
    body = {
        "Image": spec.image,
        # The command replaces the image's entrypoint too (as kubectl debug's does): the
        # reaper or keep-alive must be the process, not an argument to some server.
        "Entrypoint": list(spec.command[:1]) or None,
        "Cmd": list(spec.command[1:]) if spec.command else None,
        "User": f"{spec.uid}:{spec.gid}",
        "Env": [f"{k}={v}" for k, v in spec.env],
        "Labels": {**spec.labels_dict(), LABEL_USER: f"{spec.uid}:{spec.gid}"},
        "OpenStdin": spec.stdin,
        "StdinOnce": spec.stdin,
        "AttachStdin": spec.stdin,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": spec.tty,
        "HostConfig": {k: v for k, v in host_config.items() if v is not None},
    }
    return {"name": spec.name, "body": body}


def with_relay_mount(request: dict, directory: str) -> dict:
    """The create request with the host `directory` mounted read-write at RELAY_MOUNT
    (port-forward through unix sockets). A Mounts entry, not a bind in Binds: the engine
    refuses a source it cannot see instead of creating it on its own host, which is the
    first sign that the engine does not run here."""
    body = dict(request["body"])
    host_config = dict(body.get("HostConfig") or {})
    host_config["Mounts"] = [*(host_config.get("Mounts") or ()),
                             {"Type": "bind", "Source": directory, "Target": RELAY_MOUNT, "ReadOnly": False}]
    body["HostConfig"] = host_config
    return {**request, "body": body}


def run_argv(request: dict, *, names: dict[str, str] | None = None, cli: str = "docker") -> list[str]:
    """The `docker run` (or `podman run`) command line equivalent to a create request.
    `names` maps the target's ID to its name, for a readable --pid/--network."""
    body, host = request["body"], request["body"].get("HostConfig", {})
    names = names or {}

    def container(mode: str) -> str:
        kind, _, ident = mode.partition(":")
        return f"{kind}:{names.get(ident, ident)}"

    argv = [cli, "run", "--rm" if host.get("AutoRemove") else "", "--name", request["name"]]
    if (host.get("LogConfig") or {}).get("Type"):
        argv += ["--log-driver", host["LogConfig"]["Type"]]
    argv = [a for a in argv if a]
    if body.get("OpenStdin"):
        argv.append("-i")
    if body.get("Tty"):
        argv.append("-t")
    argv += ["--pid", container(host["PidMode"]), "--network", container(host["NetworkMode"]),
             "--user", body["User"]]
    for g in host.get("GroupAdd") or ():
        argv += ["--group-add", g]
    for cap in host.get("CapDrop") or ():
        argv += ["--cap-drop", cap]
    for cap in host.get("CapAdd") or ():
        argv += ["--cap-add", cap]
    if host.get("Privileged"):
        argv.append("--privileged")
    for opt in host.get("SecurityOpt") or ():
        argv += ["--security-opt", opt.replace(":true", "")]
    if host.get("ReadonlyRootfs"):
        argv.append("--read-only")
    for path, opts in (host.get("Tmpfs") or {}).items():
        argv += ["--tmpfs", f"{path}:{opts}"]
    for bind in host.get("Binds") or ():
        argv += ["-v", bind]
    for mount in host.get("Mounts") or ():
        argv += ["--mount", f"type={mount['Type']},source={mount['Source']},target={mount['Target']}"
                            + (",readonly" if mount.get("ReadOnly") else "")]
    if host.get("Memory"):
        argv += ["--memory", format_bytes(host["Memory"])]
        if host.get("MemorySwap") == host["Memory"]:
            argv += ["--memory-swap", format_bytes(host["Memory"])]
    if host.get("PidsLimit"):
        argv += ["--pids-limit", str(host["PidsLimit"])]
    if host.get("NanoCpus"):
        argv += ["--cpus", f"{host['NanoCpus'] / 1e9:g}"]
    for key, value in (body.get("Labels") or {}).items():
        argv += ["--label", f"{key}={value}"]
    for item in body.get("Env") or ():
        argv += ["-e", item]
    if body.get("Entrypoint"):
        argv += ["--entrypoint", body["Entrypoint"][0]]
    argv.append(body["Image"])
    argv += list(body.get("Cmd") or ())
    return argv


def shell_join(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
