"""The Docker backend: find the target, resolve who it runs as, run the sidecar.

Everything goes through the Engine API (docker SDK). Nothing is ever executed inside
the target: its passwd and group files are read through the archive API.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO

from debugkit import identity as ident
from debugkit.errors import (
    CommandNotExecutable,
    CommandNotFound,
    DebugkitError,
    EngineUnreachable,
    IdentityUnresolved,
    ImageMissing,
    InvalidInput,
    PermissionDenied,
    TargetNotFound,
    TargetNotRunning,
)
from debugkit.spec import LABEL_MANAGED, LABEL_USER, SidecarSpec
from debugkit.execution import ExecResult, StepRun
from debugkit.terminal import pump, terminal_size

MAX_ETC_FILE = 1 << 20  # passwd/group larger than this are not real passwd/group files
SHELLS = ("/bin/sh", "/bin/bash", "/bin/ash", "/busybox/sh")


@dataclass
class TargetInfo:
    """What the backend learnt about a target container."""

    id: str
    name: str
    image: str
    image_id: str
    pid: int
    status: str
    configured_user: str
    group_add: tuple[str, ...] = ()
    # The image's /etc/passwd and /etc/group, read on first need (None: not read yet).
    passwd: dict | None = None
    group: dict | None = None


@dataclass
class Candidate:
    """One identity source as inspect shows it: what it said, or why it could not say."""

    source: str
    identity: ident.Identity | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        if self.identity is not None:
            return self.identity.as_dict()
        return {"source": self.source, "error": self.error}


def connect():
    """An engine client that has answered a ping, or a DebugkitError saying why not."""
    from debugkit.engine import EngineClient, EngineConnectionError, EngineError

    try:
        client = EngineClient()
        client.ping()
        return client
    except (EngineConnectionError, EngineError, PermissionError) as exc:
        raise _engine_error(exc) from exc


def _engine_error(exc: Exception) -> DebugkitError:
    text = str(exc)
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if isinstance(exc, PermissionError) or "Permission denied" in text:
        return PermissionDenied(
            f"permission denied on the Docker socket {host}",
            hint="add your user to the 'docker' group or run with sudo",
        )
    return EngineUnreachable(
        f"cannot reach the Docker engine at {host}",
        hint="is dockerd running? scripts/docker-testenv starts one",
    )


def _api_errors():
    from debugkit.engine import EngineError, EngineNotFound

    return EngineError, EngineNotFound


@contextlib.contextmanager
def engine_calls():
    """Turn transport failures mid-session (dockerd restarted, socket gone) into our errors."""
    from debugkit.engine import EngineConnectionError

    try:
        yield
    except DebugkitError:
        raise
    except (EngineConnectionError, ConnectionError, PermissionError) as exc:
        raise _engine_error(exc) from exc


def parse_bytes(value: str) -> int:
    """`256m`, `1g`, `512k` or a plain number of bytes, as docker run --memory takes it."""
    match = re.fullmatch(r"\s*(\d+)\s*([bkmg]?)\s*", value.lower())
    if not match:
        raise InvalidInput(f"invalid memory size {value!r}: use e.g. 256m or 1g")
    return int(match.group(1)) * {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2)]


class DockerBackend:
    runtime = "docker"

    def __init__(self, api=None):
        self._api = api

    @property
    def api(self):
        if self._api is None:
            self._api = connect()
        return self._api

    # -- the target -------------------------------------------------------------------

    def find_target(self, name: str, *, require_running: bool = True) -> TargetInfo:
        APIError, NotFound = _api_errors()
        with engine_calls():
            try:
                attrs = self.api.inspect_container(name)
            except NotFound as exc:
                raise TargetNotFound(f"no container named {name!r}", hint="see `docker ps`") from exc
        state = attrs.get("State", {})
        status = state.get("Status", "unknown")
        if require_running and (status != "running" or state.get("Paused")):
            raise TargetNotRunning(
                f"container {name!r} is {'paused' if state.get('Paused') else status}, not running",
                hint=f"start it first: docker start {name}",
            )
        labels = attrs.get("Config", {}).get("Labels") or {}
        if labels.get(LABEL_MANAGED) == "true":
            raise TargetNotFound(f"{name!r} is itself a debugkit sidecar; attach to its target instead")
        return TargetInfo(
            id=attrs["Id"],
            name=attrs.get("Name", "").lstrip("/") or name,
            image=attrs.get("Config", {}).get("Image", ""),
            image_id=attrs.get("Image", ""),
            pid=int(state.get("Pid") or 0),
            status=status,
            configured_user=attrs.get("Config", {}).get("User") or "",
            group_add=tuple(attrs.get("HostConfig", {}).get("GroupAdd") or ()),
        )

    def read_target_file(self, target: TargetInfo, path: str) -> str | None:
        """A small text file from the target's filesystem via the archive API, or None."""
        APIError, NotFound = _api_errors()
        try:
            stream, stat = self.api.get_archive(target.id, path)
        except NotFound:
            return None
        except APIError:
            return None
        if stat.get("size", 0) > MAX_ETC_FILE:
            return None
        import io
        import tarfile  # here, not at the top: attach rarely needs it and it is slow to import

        data = b"".join(stream)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    fh = tar.extractfile(member)
                    return fh.read(MAX_ETC_FILE).decode("utf-8", "replace") if fh else None
                if member.issym():
                    # /etc/passwd -> ../usr/share/... ; one hop is plenty for real images.
                    link = member.linkname
                    if not link.startswith("/"):
                        link = os.path.normpath(os.path.join(os.path.dirname(path), link))
                    return None if link == path else self.read_target_file(target, link)
        return None

    def target_shell(self, target: TargetInfo) -> str | None:
        APIError, NotFound = _api_errors()
        for shell in SHELLS:
            try:
                stream, _stat = self.api.get_archive(target.id, shell)
                for _ in stream:  # drain, so the connection is reusable
                    pass
                return shell
            except (NotFound, APIError):
                continue
        return None

    def load_etc(self, target: TargetInfo) -> None:
        """Read passwd and group once; two archive calls, so only when a name matters."""
        if target.passwd is not None:
            return
        passwd = self.read_target_file(target, "/etc/passwd")
        group = self.read_target_file(target, "/etc/group")
        target.passwd = ident.parse_passwd(passwd) if passwd else {}
        target.group = ident.parse_group(group) if group else {}

    # -- identity ---------------------------------------------------------------------

    def process_identity(self, target: TargetInfo) -> ident.Identity:
        status = self._local_proc_status(target)
        if status is not None:
            return ident.identity_from_status(status, source=ident.SOURCE_PROCESS)
        APIError, NotFound = _api_errors()
        try:
            top = self.api.top(target.id, ps_args="-o pid,ruid,euid,rgid,egid,supgid")
        except APIError as exc:
            raise IdentityUnresolved(f"engine top API failed: {exc.explanation or exc}") from exc
        titles = [t.upper() for t in top.get("Titles") or []]
        rows = [dict(zip(titles, proc)) for proc in top.get("Processes") or []]
        if not rows:
            raise IdentityUnresolved("engine top API returned no processes")
        main = next((r for r in rows if r.get("PID") == str(target.pid)), rows[0])
        return ident.identity_from_ps_row(main)

    def _local_proc_status(self, target: TargetInfo) -> str | None:
        """/proc/<pid>/status, but only when that PID really is this container's process
        (a remote or VM-hosted engine reports PIDs that mean nothing here)."""
        base = getattr(self.api, "base_url", "")
        if target.pid <= 0 or not base.startswith("http+docker://"):
            return None
        try:
            with open(f"/proc/{target.pid}/cgroup", encoding="utf-8") as fh:
                if target.id not in fh.read():
                    return None
            with open(f"/proc/{target.pid}/status", encoding="utf-8") as fh:
                return fh.read()
        except OSError:
            return None

    def target_dumpable(self, target: TargetInfo) -> bool | None:
        """False when the kernel hides the target's /proc entries from its own UID.

        A process that changed UID at runtime (started as root, then dropped) is not
        dumpable: its /proc/<pid> files belong to root, and /proc/1/root then needs
        CAP_SYS_PTRACE (the `ptrace` profile) even for the same UID. None: unknown
        (a remote engine)."""
        if self._local_proc_status(target) is None:
            return None
        try:
            st = os.stat(f"/proc/{target.pid}/environ")
            status = ident.identity_from_status(self._local_proc_status(target) or "")
        except (OSError, IdentityUnresolved):
            return None
        return not (st.st_uid == 0 and status.uid != 0)

    def configured_identity(self, target: TargetInfo) -> ident.Identity:
        self.load_etc(target)
        user = target.configured_user or "0"
        extra = []
        for g in target.group_add:
            if g.isdigit():
                extra.append(int(g))
            elif g in target.group:
                extra.append(target.group[g].gid)
        resolved = ident.resolve_configured_user(
            user, passwd=target.passwd, groups=target.group, missing_gid="zero", extra_groups=extra,
        )
        if not target.configured_user:
            resolved = resolved.with_note("no USER configured: the runtime starts the process as root")
        return resolved

    def _candidate(self, source: str, fn, target: TargetInfo) -> Candidate:
        try:
            return Candidate(source, identity=ident.name_identity(fn(target), target.passwd))
        except IdentityUnresolved as exc:
            return Candidate(source, error=str(exc))

    def identity_candidates(self, target: TargetInfo, *, stop_at_first: bool = False) -> list[Candidate]:
        """Every source in order of trust (inspect), or up to the first that answers (attach)."""
        out = []
        for source, fn in (("process", self.process_identity), (ident.SOURCE_CONFIG, self.configured_identity)):
            out.append(self._candidate(source, fn, target))
            if stop_at_first and out[-1].identity is not None:
                break
        return out

    def resolve_identity(self, target: TargetInfo, *, user_flag: str | None = None) -> ident.Identity:
        if user_flag:
            if ident.parse_user_flag(user_flag)[1] is None:
                self.load_etc(target)  # the primary group of a bare UID comes from passwd
            return ident.name_identity(ident.identity_from_flag(user_flag, passwd=target.passwd), target.passwd)
        errors = []
        for candidate in self.identity_candidates(target, stop_at_first=True):
            if candidate.identity is not None:
                return candidate.identity
            errors.append(f"{candidate.source}: {candidate.error}")
        raise IdentityUnresolved(
            "cannot determine the target's user (" + "; ".join(errors) + ")",
            hint="pass --user UID[:GID]",
        )

    # -- the sidecar ------------------------------------------------------------------

    def ensure_image(self, image: str, *, default_image: bool) -> dict:
        """The image's ID and repo digest; a clear ImageMissing when it is not in the engine."""
        APIError, NotFound = _api_errors()
        try:
            attrs = self.api.inspect_image(image)
            digests = attrs.get("RepoDigests") or []
            return {"image_id": attrs["Id"], "image_digest": digests[0] if digests else None}
        except NotFound as exc:
            if default_image:
                from debugkit.toolbox import TOOLBOX_REPOSITORY, __version__

                standard = image == f"{TOOLBOX_REPOSITORY}:{__version__}"
                hint = "build it with: debugkit toolbox build" + ("" if standard else f" --tag {image}")
            else:
                hint = f"docker pull {image}"
            raise ImageMissing(f"toolbox image {image!r} is not in the local engine", hint=hint) from exc

    def create_sidecar(self, spec: SidecarSpec, target: TargetInfo) -> str:
        memory = parse_bytes(spec.resources.memory) if spec.resources.memory else None
        host_config = {
            "PidMode": f"container:{target.id}",
            "NetworkMode": f"container:{target.id}",
            "CapDrop": list(spec.cap_drop) or None,
            "CapAdd": list(spec.cap_add) or None,
            "Privileged": spec.privileged,
            "SecurityOpt": ["no-new-privileges:true"] if spec.no_new_privileges else None,
            "ReadonlyRootfs": spec.read_only_root,
            "Tmpfs": dict(spec.tmpfs),
            "GroupAdd": [str(g) for g in spec.supplementary_groups] or None,
            "Memory": memory,
            "MemorySwap": memory,
            "PidsLimit": spec.resources.pids,
            "NanoCpus": int(spec.resources.cpus * 1e9) if spec.resources.cpus else None,
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
        return self.api.create_container_raw(body, name=spec.name)["Id"]

    def remove_sidecar(self, container_id: str) -> None:
        APIError, NotFound = _api_errors()
        with contextlib.suppress(NotFound, APIError, Exception):
            self.api.remove_container(container_id, force=True)

    def start_sidecar(self, container_id: str) -> None:
        APIError, _ = _api_errors()
        try:
            self.api.start(container_id)
        except APIError as exc:
            raise _start_error(exc) from exc

    def _wait_request(self, container_id: str):
        """Register a wait for the exit *before* start, so a fast command's exit code is
        never missed. dockerd flushes the response headers once the waiter is registered,
        and the body (the exit status) arrives when the process has exited. Removal is
        the engine's job from then on (AutoRemove), so we do not wait for it."""
        response, conn = self.api.wait_request(container_id, condition="next-exit")
        result: dict = {}

        def read():
            try:
                result.update(json.loads(response.read() or b"{}"))
            except Exception as exc:  # surfaced to the caller through result
                result["Error"] = {"Message": str(exc)}
            finally:
                conn.close()

        reader = threading.Thread(target=read, daemon=True, name="debugkit-wait")
        reader.start()
        return reader, result

    def run(
        self,
        spec: SidecarSpec,
        target: TargetInfo,
        *,
        stdin: BinaryIO | None,
        stdout: BinaryIO,
        stderr: BinaryIO,
        on_started=None,
    ) -> int:
        """Run the sidecar to completion, streaming its I/O; return its exit code."""
        if spec.tty:
            # Interactive: the shell is an exec in a sidecar whose main process lives only
            # while our connection holds its stdin open. A TTY does not close when its
            # client dies, a non-TTY stdin does: so a killed CLI still ends its sidecar.
            with DockerExecSession(self, spec, target) as live:
                if on_started:
                    on_started(live.container_id)
                return live.exec_interactive(spec.command, stdin=stdin, stdout=stdout)
        for attempt in (1, 2):
            try:
                return self._run_once(spec, target, stdin=stdin, stdout=stdout, stderr=stderr,
                                      on_started=on_started)
            except TransientStartFailure:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _run_once(self, spec, target, *, stdin, stdout, stderr, on_started) -> int:
        exited = False
        with engine_calls():
            container_id = self.create_sidecar(spec, target)
            try:
                sock = self.api.attach_socket(
                    container_id,
                    params={"stdin": int(spec.stdin), "stdout": 1, "stderr": 1, "stream": 1, "logs": 1},
                )
                waiter, result = self._wait_request(container_id)
                self.start_sidecar(container_id)
                if on_started:
                    on_started(container_id)
                on_resize = None
                if spec.tty:
                    on_resize = lambda rows, cols: self._resize(container_id, rows, cols)  # noqa: E731
                    on_resize(*terminal_size())
                pump(sock, tty_mode=spec.tty, stdin=stdin if spec.stdin else None,
                     stdout=stdout, stderr=stderr, on_resize=on_resize)
                waiter.join(timeout=30)
                if waiter.is_alive() or "StatusCode" not in result:
                    raise DebugkitError(f"lost track of sidecar {spec.name}'s exit status: {result or 'timeout'}")
                exited = True
                return int(result["StatusCode"])
            finally:
                # After a normal exit the engine removes it (AutoRemove); on every other
                # path (errors, signals) we remove it ourselves, at once.
                if not exited:
                    self.remove_sidecar(container_id)

    def _resize(self, container_id: str, rows: int, cols: int) -> None:
        APIError, _ = _api_errors()
        with contextlib.suppress(APIError):
            self.api.resize(container_id, height=rows, width=cols)

    def list_sidecars(self, *, all_states: bool = True) -> list[dict]:
        with engine_calls():
            return self.api.containers(all=all_states, filters={"label": [f"{LABEL_MANAGED}=true"]})


class TransientStartFailure(DebugkitError):
    pass


_NOT_FOUND = re.compile(r'exec: "([^"]*)": (executable file not found|stat .*: no such file or directory)')
_NOT_EXEC = re.compile(r'exec: "([^"]*)": permission denied|exec format error')


def _start_error(exc) -> DebugkitError:
    text = str(getattr(exc, "explanation", "") or exc)
    match = _NOT_FOUND.search(text)
    if match:
        return CommandNotFound(f"command {match.group(1)!r} not found in the toolbox image")
    match = _NOT_EXEC.search(text)
    if match:
        what = match.group(1) if match.lastindex else "the command"
        return CommandNotExecutable(f"command {what!r} cannot be executed in the toolbox image")
    if "error during container init: %!w(<nil>)" in text:
        # runc 1.1 occasionally fails a start with a nil error under load: nothing the
        # user did; one fresh attempt succeeds.
        return TransientStartFailure(f"the runtime failed to start the sidecar: {text}")
    if ("is not running" in text or "of a non running container" in text
            or re.search(r"namespace path: lstat /proc/\d+/ns/\w+: no such file", text)):
        return TargetNotRunning(f"the target stopped before the sidecar could join it: {text}")
    return DebugkitError(f"the engine refused to start the sidecar: {text}")


def docker_run_argv(spec: SidecarSpec, target: TargetInfo) -> list[str]:
    """The equivalent `docker run` command line (what inspect shows and what we run)."""
    argv = ["docker", "run", "--rm", "--name", spec.name]
    if spec.stdin:
        argv.append("-i")
    if spec.tty:
        argv.append("-t")
    argv += ["--pid", f"container:{target.name}", "--network", f"container:{target.name}",
             "--user", f"{spec.uid}:{spec.gid}"]
    for g in spec.supplementary_groups:
        argv += ["--group-add", str(g)]
    for cap in spec.cap_drop:
        argv += ["--cap-drop", cap]
    for cap in spec.cap_add:
        argv += ["--cap-add", cap]
    if spec.privileged:
        argv.append("--privileged")
    if spec.no_new_privileges:
        argv += ["--security-opt", "no-new-privileges"]
    if spec.read_only_root:
        argv.append("--read-only")
    for path, opts in spec.tmpfs:
        argv += ["--tmpfs", f"{path}:{opts}"]
    if spec.resources.memory:
        argv += ["--memory", spec.resources.memory]
    if spec.resources.pids:
        argv += ["--pids-limit", str(spec.resources.pids)]
    if spec.resources.cpus:
        argv += ["--cpus", f"{spec.resources.cpus:g}"]
    for key, value in spec.labels:
        argv += ["--label", f"{key}={value}"]
    for key, value in spec.env:
        argv += ["-e", f"{key}={value}"]
    argv.append(spec.image)
    argv += list(spec.command)
    return argv


def shell_join(argv: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


# -- one sidecar, many commands (runbooks) ---------------------------------------------

# The sidecar's main process: it lives exactly as long as our attach connection keeps
# its stdin open, so a killed CLI takes its sidecar with it (EOF -> exit -> auto-remove).
KEEPALIVE_COMMAND = ("sh", "-c", "exec cat >/dev/null")


class DockerExecSession:
    """A started sidecar that runs one command after another in the same namespaces."""

    def __init__(self, backend: DockerBackend, spec: SidecarSpec, target: TargetInfo):
        self.backend = backend
        self.spec = spec.evolve(command=KEEPALIVE_COMMAND, stdin=True, tty=False)
        self.target = target
        self.container_id: str | None = None
        self._keepalive = None

    def __enter__(self) -> "DockerExecSession":
        with engine_calls():
            self.container_id = self.backend.create_sidecar(self.spec, self.target)
            try:
                self._keepalive = self.backend.api.attach_socket(
                    self.container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
                self.backend.start_sidecar(self.container_id)
            except BaseException:
                self.close()
                raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._keepalive is not None:
            with contextlib.suppress(Exception):
                self._keepalive.close()
            self._keepalive = None
        if self.container_id:
            self.backend.remove_sidecar(self.container_id)
            self.container_id = None

    def exec_interactive(self, argv, *, stdin, stdout) -> int:
        """A TTY exec of argv (the image's default command when empty); its exit code."""
        api = self.backend.api
        with engine_calls():
            if not argv:
                config = api.inspect_image(self.spec.image).get("Config") or {}
                argv = (config.get("Entrypoint") or []) + (config.get("Cmd") or ["sh"])
            exec_id = api.exec_create(self.container_id, list(argv), stdin=True, stdout=True, stderr=True,
                                      tty=True, environment=self.spec.env_dict())["Id"]
            sock = api.exec_start(exec_id, tty=True)

            def resize(rows, cols):
                with contextlib.suppress(Exception):
                    api.exec_resize(exec_id, height=rows, width=cols)

            resize(*terminal_size())
            pump(sock, tty_mode=True, stdin=stdin, stdout=stdout, stderr=stdout, on_resize=resize)
        code = self._exec_exit_code(exec_id)
        if code is None:
            raise DebugkitError("the interactive shell's exit status never arrived")
        return int(code)

    def exec(self, argv: list[str] | tuple[str, ...], *, timeout: float, max_output: int = 1 << 20) -> ExecResult:
        """Run argv in the sidecar; kill it after `timeout` seconds (timed_out, no exit code)."""
        import select
        import socket as socketlib

        from debugkit.terminal import STDERR_STREAM, FrameDemuxer, raw_socket

        api = self.backend.api
        step = StepRun(argv, timeout=timeout, max_output=max_output)
        with engine_calls():
            exec_id = api.exec_create(self.container_id, step.wrapped, stdout=True, stderr=True,
                                      environment=self.spec.env_dict())["Id"]
            sock = raw_socket(api.exec_start(exec_id))
        demux = FrameDemuxer()
        try:
            while True:
                remaining = step.remaining()
                if remaining <= 0:
                    step.timed_out = True
                    break
                readable, _, _ = select.select([sock], [], [], remaining)
                if not readable:
                    continue
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, socketlib.timeout):
                    data = b""
                if not data:
                    break
                for stream, payload in demux.feed(data):
                    step.add(payload, stderr=stream == STDERR_STREAM)
        finally:
            with contextlib.suppress(OSError):
                sock.close()
        return step.result(None if step.timed_out else self._exec_exit_code(exec_id))

    def _exec_exit_code(self, exec_id: str) -> int | None:
        """The exit code once the engine has seen the exec end (a moment after its stream)."""
        with engine_calls():
            for _ in range(300):
                info = self.backend.api.exec_inspect(exec_id)
                if not info.get("Running"):
                    return info.get("ExitCode")
                time.sleep(0.01)
        return None
