"""Pure translation of a held copy for Docker-API engines: the original container's inspect
(or an image's, for image/REF) -> the copy's create body, and what it leaves out.

The copy runs the original's image with its environment, user, working directory, groups,
capabilities and security options, its volumes and bind mounts (read-only unless
--copy-writable) and its user-defined networks, but without published ports, network
aliases, a restart policy, the original's labels or privileged mode. Its main process is
the toolbox's readable helper, `hold -- PROGRAM`, from a volume filled from the toolbox
image and mounted read-only at HOLDER_DIR: the original program starts only when the
sidecar's `target start` asks.
"""
from __future__ import annotations

from debugkit.core.errors import InvalidInput
from debugkit.core.spec import (LABEL_LOCAL_USER, LABEL_MANAGED, LABEL_RUNTIME, LABEL_SESSION, LABEL_TARGET,
                                LABEL_TARGET_ID, LABEL_USER)
from debugkit.runtimes.base import LABEL_COPY_KEEP, LABEL_COPY_OF

HOLDER_DIR = "/.debugkit"
HOLDER = f"{HOLDER_DIR}/debugkit-helper"
# The default network modes: anything else is a user-defined network by name.
DEFAULT_NETWORKS = ("default", "bridge", "")
# HostConfig fields a copy keeps as the original has them (least privilege: none adds any).
# (Not Ulimits, modes or masked paths: Podman's inspect writes them in forms its create refuses,
# and the engine's defaults are what the original got unless it asked.)
KEPT_HOST_FIELDS = ("CapAdd", "CapDrop", "SecurityOpt", "GroupAdd", "ReadonlyRootfs", "Tmpfs", "Dns", "DnsOptions",
                    "DnsSearch", "ExtraHosts", "Memory", "NanoCpus", "PidsLimit")


# In every copy's name (ps shows it; gc removes the copy's volume with it).
COPY_MARK = "-debugkit-copy-"


def copy_name(original: str, session_id: str) -> str:
    """A container name from the original's (an image's: its last path part, without tag or digest)."""
    base = original.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
    base = "".join(c if c.isalnum() or c in "_.-" else "-" for c in base)[:60].strip("-_.") or "image"
    return f"{base}{COPY_MARK}{session_id}"


def holder_socket(session_id: str) -> str:
    """The holder's abstract socket: one per copy, as copies may share a network namespace."""
    return f"debugkit-target-{session_id}"


def program_of(config: dict, what: str) -> list[str]:
    program = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    if not program:
        raise InvalidInput(f"{what} has no entrypoint or command: there is no program to hold")
    return program


def copy_mounts(mounts: list[dict], *, writable: bool) -> tuple[list[dict], list[str]]:
    """The original's mounts (its inspect's `Mounts`) for the copy: the same volumes and
    host paths, read-only unless `writable` (then as the original has them). Anything else
    (a named pipe, an image mount) is left out, and named."""
    out, dropped = [], []
    for m in mounts or []:
        kind, dest = m.get("Type"), m.get("Destination")
        read_only = (not m.get("RW", True)) or not writable
        if kind == "volume" and m.get("Name"):
            out.append({"Type": "volume", "Source": m["Name"], "Target": dest, "ReadOnly": read_only,
                        "VolumeOptions": {"NoCopy": True}})
        elif kind == "bind" and m.get("Source"):
            out.append({"Type": "bind", "Source": m["Source"], "Target": dest, "ReadOnly": read_only})
        elif kind == "tmpfs":
            out.append({"Type": "tmpfs", "Target": dest})
        else:
            dropped.append(f"the {kind or 'unknown'} mount at {dest}")
    return out, dropped


def networks_of(original: dict) -> tuple[str, dict, list[str]]:
    """(NetworkMode, EndpointsConfig, dropped): the same networks, without aliases (no name
    a Service-like client uses reaches the copy) and without fixed addresses."""
    host = original.get("HostConfig") or {}
    mode = host.get("NetworkMode") or "default"
    dropped = []
    attached = (original.get("NetworkSettings") or {}).get("Networks") or {}
    if mode in DEFAULT_NETWORKS or mode.startswith("container:") or mode in ("host", "none"):
        if mode.startswith("container:"):
            dropped.append(f"the network of {mode} (the copy gets the default bridge network)")
            mode = "bridge"
        return mode, {}, dropped
    endpoints = {name: {} for name in attached if name not in DEFAULT_NETWORKS} or {mode: {}}
    aliases = sorted({a for ep in attached.values() for a in (ep or {}).get("Aliases") or []
                      if a and not str(original.get("Id", "")).startswith(a)})
    if aliases:
        dropped.append("network aliases " + ", ".join(aliases))
    return mode, endpoints, dropped


def copy_request(*, original: dict | None, image: dict, name: str, holder_volume: str, session_id: str,
                 local_user: str, writable: bool, keep: bool, runtime: str, original_name: str) -> dict:
    """{"name", "body", "program", "dropped"}: the create request of the held copy. `original`
    is the container's inspect, or None for an image (then its config is the image's)."""
    if original is not None:
        config = original.get("Config") or {}
        host = original.get("HostConfig") or {}
        image_ref = original.get("Image") or config.get("Image")
        what = f"container {original_name}"
    else:
        config = image.get("Config") or {}
        host = {}
        image_ref = image["Id"]
        what = f"image {original_name}"
    program = program_of(config, what)
    mounts, dropped = copy_mounts(original.get("Mounts") if original else [], writable=writable)
    mounts.append({"Type": "volume", "Source": holder_volume, "Target": HOLDER_DIR, "ReadOnly": True,
                   "VolumeOptions": {"NoCopy": True}})
    host_config = {key: host[key] for key in KEPT_HOST_FIELDS if host.get(key)}
    host_config.update({"Mounts": mounts, "RestartPolicy": {"Name": "no"}, "AutoRemove": False,
                        "Privileged": False, "PublishAllPorts": False, "Init": False})
    body = {
        "Image": image_ref,
        "Entrypoint": [HOLDER, "hold", "--socket", holder_socket(session_id), "--"],
        "Cmd": program,
        "Env": list(config.get("Env") or []),
        "WorkingDir": config.get("WorkingDir") or "",
        "User": config.get("User") or "",
        "StopSignal": "SIGTERM",
        "Labels": {
            LABEL_MANAGED: "true", LABEL_SESSION: session_id, LABEL_TARGET: original_name,
            LABEL_TARGET_ID: (original or image)["Id"], LABEL_RUNTIME: runtime, LABEL_LOCAL_USER: local_user,
            LABEL_USER: config.get("User") or "", LABEL_COPY_OF: (original or image)["Id"],
            **({LABEL_COPY_KEEP: "true"} if keep else {}),
        },
        "HostConfig": host_config,
    }
    if original is not None:
        mode, endpoints, net_dropped = networks_of(original)
        host_config["NetworkMode"] = mode
        if endpoints:
            body["NetworkingConfig"] = {"EndpointsConfig": endpoints}
        dropped += net_dropped
        ports = sorted((host.get("PortBindings") or {}).keys())
        if ports:
            dropped.append("published ports " + ", ".join(ports))
        if host.get("Privileged"):
            dropped.append("privileged mode")
        restart = (host.get("RestartPolicy") or {}).get("Name")
        if restart and restart != "no":
            dropped.append(f"the restart policy {restart}")
        if config.get("Labels"):
            dropped.append("the original's labels")
        if config.get("Healthcheck"):
            dropped.append("the health check")
    return {"name": name, "body": body, "program": program, "dropped": dropped}
