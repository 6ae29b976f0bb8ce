"""Profiles: small, named edits of a SidecarSpec. Nothing here talks to an API.

Like kubectl debug's profiles, each is built from single-purpose edits over an
immutable spec. Unlike kubectl's default, `restricted` is the default: it passes the
`restricted` PodSecurity level and still reads the target's files, because it runs as
the target's own UID.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from debugkit.core.errors import InvalidInput

if TYPE_CHECKING:  # the CLI imports this module for its --profile choices: keep it light
    from debugkit.core.spec import SidecarSpec

Edit = Callable[["SidecarSpec"], "SidecarSpec"]


def drop_all_capabilities(spec: SidecarSpec) -> SidecarSpec:
    return spec.evolve(cap_drop=("ALL",), cap_add=(), privileged=False)


def forbid_privilege_escalation(spec: SidecarSpec) -> SidecarSpec:
    return spec.evolve(no_new_privileges=True)


def read_only_root(spec: SidecarSpec) -> SidecarSpec:
    return spec.evolve(read_only_root=True)


def add_capabilities(*caps: str) -> Edit:
    def edit(spec: SidecarSpec) -> SidecarSpec:
        return spec.evolve(cap_add=tuple(dict.fromkeys(spec.cap_add + caps)))
    return edit


def run_as_root(spec: SidecarSpec) -> SidecarSpec:
    # Linux gives a non-root process no effective capabilities from cap_add (no
    # ambient capabilities in Docker or Kubernetes), so capability profiles run as 0.
    return spec.evolve(run_as_root=True)


def keep_default_capabilities(spec: SidecarSpec) -> SidecarSpec:
    # The container runtime's default set, none added: what kubectl debug node's `general`
    # profile gives, and what reading the host's processes and files as root needs.
    return spec.evolve(cap_drop=(), cap_add=(), privileged=False)


def privileged(spec: SidecarSpec) -> SidecarSpec:
    return spec.evolve(
        privileged=True, run_as_root=True, cap_drop=(), no_new_privileges=False,
        read_only_root=False, seccomp_runtime_default=False,
    )


PROFILES: dict[str, tuple[str, tuple[Edit, ...]]] = {
    "restricted": (
        "target's UID/GID, no capabilities, no-new-privileges, read-only root (default; passes PodSecurity restricted)",
        (drop_all_capabilities, forbid_privilege_escalation, read_only_root),
    ),
    "netadmin": (
        "root with only NET_ADMIN and NET_RAW (tcpdump, ip changes); needs PodSecurity privileged",
        (drop_all_capabilities, forbid_privilege_escalation, read_only_root,
         run_as_root, add_capabilities("NET_ADMIN", "NET_RAW")),
    ),
    "ptrace": (
        "root with only SYS_PTRACE (strace, gdb, non-dumpable targets); needs PodSecurity privileged",
        (drop_all_capabilities, forbid_privilege_escalation, read_only_root,
         run_as_root, add_capabilities("SYS_PTRACE")),
    ),
    "node": (
        "node/NAME only: root in the host's PID and network namespaces, the host's / read-only at /host, "
        "no added capabilities; needs PodSecurity privileged",
        (keep_default_capabilities, forbid_privilege_escalation, read_only_root, run_as_root),
    ),
    "sysadmin": (
        "privileged root: everything (on node/NAME: /host writable); never a default, only when named explicitly",
        (privileged,),
    ),
}


PROFILE_NAMES = tuple(PROFILES)
# Profiles that only a node debugging pod takes (node/NAME): a debug container has no host to mount.
NODE_ONLY = ("node",)


def apply_profile(spec: SidecarSpec, name: str) -> SidecarSpec:
    from debugkit.core.spec import LABEL_PROFILE

    if name not in PROFILES:
        raise InvalidInput(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}")
    for edit in PROFILES[name][1]:
        spec = edit(spec)
    return spec.evolve(profile=name).with_labels(**{LABEL_PROFILE: name})
