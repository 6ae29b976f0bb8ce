"""Pure translations for Docker-API engines: spec -> create body -> `docker run` line.

`create_request` is the only place the sidecar's container is described for the engine;
`run_argv` derives the equivalent command line from that very body, so what `inspect`
shows cannot drift from what `attach` sends.
"""
from __future__ import annotations

import shlex

from debugkit.core.options import format_bytes
from debugkit.core.spec import LABEL_USER, SidecarSpec


def create_request(spec: SidecarSpec, *, target_id: str, mounts: tuple[tuple[str, str], ...] = ()) -> dict:
    """{"name": ..., "body": ...} for POST /containers/create. `mounts` are read-only
    single-file binds (host path, container path), e.g. the helper for a foreign image."""
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
    }
    body = {
        "Image": spec.image,
        "Cmd": list(spec.command) or None,
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


def run_argv(request: dict, *, names: dict[str, str] | None = None) -> list[str]:
    """The `docker run` command line equivalent to a create request. `names` maps the
    target's ID to its name, for a readable --pid/--network."""
    body, host = request["body"], request["body"].get("HostConfig", {})
    names = names or {}

    def container(mode: str) -> str:
        kind, _, ident = mode.partition(":")
        return f"{kind}:{names.get(ident, ident)}"

    argv = ["docker", "run", "--rm" if host.get("AutoRemove") else "", "--name", request["name"]]
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
    argv.append(body["Image"])
    argv += list(body.get("Cmd") or ())
    return argv


def shell_join(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
