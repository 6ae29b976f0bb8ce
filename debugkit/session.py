"""Attach and inspect, runtime by runtime: complete -> validate -> run.

Complete gathers facts (target, identity, image); the spec is then built as plain
data and edited by the profile and the user's overrides; only `run` starts anything.
"""
from __future__ import annotations

import contextlib
import getpass
import os
import socket
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from debugkit import audit
from debugkit import identity as ident
from debugkit.errors import DebugkitError, ExitCode, Interrupted, InvalidInput
from debugkit.profiles import apply_profile
from debugkit.spec import Resources, SidecarSpec, base_spec, new_session_id
from debugkit.targets import DockerTarget, KubeTarget, Target
from debugkit.toolbox import default_ref


@dataclass
class AttachOptions:
    target: Target
    command: tuple[str, ...] = ()
    stdin: bool = False
    tty: bool = False
    user: str | None = None
    image: str | None = None
    profile: str = "restricted"
    memory: str | None = Resources.memory
    pids_limit: int | None = Resources.pids
    cpus: float | None = Resources.cpus
    session_id: str | None = None
    # Kubernetes only
    context: str | None = None
    kubeconfig: str | None = None
    custom: str | None = None
    timeout: float = 120.0
    extra: dict = field(default_factory=dict)

    @property
    def image_ref(self) -> str:
        return self.image or default_ref()


@dataclass
class Streams:
    stdin: BinaryIO | None
    stdout: BinaryIO
    stderr: BinaryIO


def local_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry for our own UID (containers, CI)
        return str(os.getuid())


def _resources(options: AttachOptions) -> Resources:
    if options.pids_limit is not None and options.pids_limit < 1:
        raise InvalidInput("--pids-limit must be at least 1")
    if options.cpus is not None and options.cpus <= 0:
        raise InvalidInput("--cpus must be positive")
    return Resources(memory=options.memory or None, pids=options.pids_limit, cpus=options.cpus)


def build_spec(options: AttachOptions, *, identity: ident.Identity, target_name: str, target_id: str,
               runtime: str) -> SidecarSpec:
    spec = base_spec(
        image=options.image_ref,
        identity=identity,
        target_name=target_name,
        target_id=target_id,
        runtime=runtime,
        command=options.command,
        stdin=options.stdin,
        tty=options.tty,
        session_id=options.session_id,
        cli_pid=os.getpid(),
        cli_host=socket.gethostname(),
        local_user=local_user(),
    )
    spec = apply_profile(spec, options.profile)
    return spec.evolve(resources=_resources(options))


# -- Docker -----------------------------------------------------------------------------

def prepare_docker(options: AttachOptions, backend=None):
    """Complete + validate for Docker: (backend, target info, spec). Starts nothing."""
    from debugkit.backends.docker import DockerBackend

    assert isinstance(options.target, DockerTarget)
    _resources(options)  # validate flags before touching the engine
    if options.user:
        ident.parse_user_flag(options.user)
    backend = backend or DockerBackend()
    info = backend.find_target(options.target.container)
    identity = backend.resolve_identity(info, user_flag=options.user)
    spec = build_spec(options, identity=identity, target_name=info.name, target_id=info.id, runtime="docker")
    return backend, info, spec


def audit_start(spec: SidecarSpec, *, runtime: str, target: str, target_id: str, image: dict,
                mode: str) -> float:
    """Write (and fsync) the start record before anything is launched."""
    audit.append({
        "event": "start",
        "session": spec.session_id,
        "runtime": runtime,
        "target": target,
        "target_id": target_id,
        "identity": spec.identity.as_dict(),
        "sidecar_user": f"{spec.uid}:{spec.gid}",
        "image": spec.image,
        **image,
        "profile": spec.profile,
        "mode": mode,
        "command": list(spec.command),
        "local_user": local_user(),
        "cli_pid": os.getpid(),
        "host": socket.gethostname(),
    })
    return time.monotonic()


@contextlib.contextmanager
def audited(spec: SidecarSpec, *, started: float) -> Iterator[dict]:
    """The end record, whatever happens: the caller puts the exit code in the yielded dict."""
    result: dict = {"exit_code": None, "outcome": "error"}
    try:
        yield result
    except Interrupted as exc:
        result.update(exit_code=int(exc.exit_code), outcome="interrupted", error=str(exc))
        raise
    except KeyboardInterrupt:
        result.update(exit_code=int(ExitCode.INTERRUPTED), outcome="interrupted")
        raise
    except DebugkitError as exc:
        result.update(exit_code=int(exc.exit_code), outcome="error", error=str(exc))
        raise
    finally:
        audit.append({"event": "end", "session": spec.session_id,
                      "duration_s": round(time.monotonic() - started, 3), **result})


@contextlib.contextmanager
def refusals_audited(options: AttachOptions) -> Iterator[None]:
    """A session refused before launch still leaves one complete record of the attempt."""
    try:
        yield
    except DebugkitError as exc:
        with contextlib.suppress(OSError):
            audit.append({
                "event": "refused", "session": options.session_id or new_session_id(),
                "runtime": options.target.runtime, "target": str(options.target),
                "command": list(options.command), "profile": options.profile, "local_user": local_user(),
                "exit_code": int(exc.exit_code), "outcome": "refused", "error": str(exc),
            })
        raise


def attach(options: AttachOptions, streams: Streams, *, announce=None) -> int:
    if isinstance(options.target, KubeTarget):
        from debugkit.backends import kubernetes as kube

        return kube.attach(options, streams, announce=announce)
    with refusals_audited(options):
        backend, info, spec = prepare_docker(options)
        image = backend.ensure_image(spec.image, default_image=options.image is None)
    warnings = []
    if backend.target_dumpable(info) is False and not spec.run_as_root:
        warnings.append("the target changed UID at runtime and is not dumpable: /proc/1/root and "
                        "/proc/1/environ stay root-only; use --profile ptrace to read them")
    if announce:
        announce(spec, info, warnings)
    started = audit_start(spec, runtime="docker", target=info.name, target_id=info.id, image=image,
                          mode="interactive" if spec.tty else "command")
    with audited(spec, started=started) as result:
        result["exit_code"] = backend.run(spec, info, stdin=streams.stdin, stdout=streams.stdout,
                                          stderr=streams.stderr)
        result["outcome"] = "exited"
    return result["exit_code"]


def inspect(options: AttachOptions) -> dict:
    if isinstance(options.target, KubeTarget):
        from debugkit.backends import kubernetes as kube

        return kube.inspect(options)
    from debugkit.backends.docker import docker_run_argv, shell_join

    backend, info, spec = prepare_docker(options)
    backend.load_etc(info)
    candidates = backend.identity_candidates(info)
    resolved = ident.name_identity(spec.identity, info.passwd)
    shell = backend.target_shell(info)
    return {
        "runtime": "docker",
        "container": info.name,
        "container_id": info.id,
        "image": info.image,
        "pid": info.pid,
        "uid": resolved.uid,
        "gid": resolved.gid,
        "groups": list(resolved.groups),
        "user_name": resolved.user_name,
        "source": resolved.source,
        "notes": list(resolved.notes),
        "sources": [c.as_dict() | {"source": c.source} for c in candidates],
        "configured_user": info.configured_user or None,
        "target_dumpable": backend.target_dumpable(info),
        "has_shell": shell is not None,
        "shell": shell,
        "sidecar_image": spec.image,
        "profile": spec.profile,
        "attach_command": shell_join(docker_run_argv(spec, info)),
    }


def open_exec_session(options: AttachOptions):
    """A context manager: one started sidecar whose `.exec(argv, timeout=...)` runs a
    command and returns an ExecResult. Runbooks use it for one start, many steps."""
    if isinstance(options.target, KubeTarget):
        from debugkit.backends import kubernetes as kube

        return kube.open_exec_session(options)
    from debugkit.backends.docker import DockerExecSession

    with refusals_audited(options):
        backend, info, spec = prepare_docker(options)
        image = backend.ensure_image(spec.image, default_image=options.image is None)
    return _audited_exec_session(DockerExecSession(backend, spec, info), runtime="docker",
                                 target=info.name, target_id=info.id, image=image)


@contextlib.contextmanager
def _audited_exec_session(exec_session, *, runtime: str, target: str, target_id: str, image: dict):
    spec = exec_session.spec
    started = audit_start(spec, runtime=runtime, target=target, target_id=target_id, image=image,
                          mode="runbook")
    with audited(spec, started=started) as result:
        with exec_session as live:
            yield live
        result.update(exit_code=0, outcome="closed")
