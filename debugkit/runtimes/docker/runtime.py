"""The Docker runtime: a sidecar container joined to the target's PID and network namespaces.

The plan's hooks (planning.py): find the target, its identity sources (process, then
config), the image and its helper, the reuse key, the translation (translate.create_request).
run: create, attach, register the wait, start, stream, exit with the command's code.
ps and gc (sessions.py), fleets (fleet.py), doctor (doctor.py) and completion
(complete.py) are in their own modules. Podman's runtime is this class pointed at
Podman's Docker-compatible service.
"""
from __future__ import annotations

import contextlib
import threading
import time

from debugkit.core import jsonsafe
from debugkit.core.errors import DebugkitError, EngineUnreachable, InvalidInput, TargetNotRunning
from debugkit.core.options import Connection
from debugkit.core.targets import ContainerSetRef
from debugkit.runtimes.base import CheckResult, Expansion, Plan, Preferences, Runtime, SessionRow, Streams, TargetReport
from debugkit.runtimes import reuse_records
from debugkit.runtimes.docker import translate
from debugkit.runtimes.docker.errors import TransientStartFailure, engine_calls, engine_error, start_error
from debugkit.runtimes.docker.heldcopy import DockerCopies
from debugkit.runtimes.docker.planning import DockerPlanning
from debugkit.runtimes.docker.probe import ContainerProbe
from debugkit.runtimes.terminal import pump



class DockerRuntime(DockerPlanning, DockerCopies, Runtime):
    name = "docker"
    engine = "Docker"
    cli = "docker"

    def __init__(self, api=None, *, address=None, host: str | None = None, context: str | None = None):
        """`host` and `context` are -H and --docker-context as typed (None: not given);
        `address` (an EngineAddress or a host string) skips the resolution."""
        self.connection = Connection(docker_host=host, docker_context=context)
        self._api = api
        self._address = address
        self._host = host
        self._context = context
        self._resolution = None
        self._prefetch: tuple[int, bool] = (0, False)

    @classmethod
    def for_connection(cls, entry, connection: Connection, preferences: Preferences | None = None) -> "DockerRuntime":
        runtime = cls(host=connection.docker_host, context=connection.docker_context)
        runtime.entry, runtime.connection = entry, connection
        if preferences is not None:
            runtime.preferences = preferences
        return runtime

    def close(self) -> None:
        if self._api is not None:
            self._api.close()

    # -- the engine -----------------------------------------------------------------------

    def resolve(self):
        """Which engine, and why (hosts.resolve: -H, DOCKER_HOST, contexts, as the docker CLI)."""
        from debugkit.runtimes.docker import hosts

        if self._address is not None:
            address = self._address
            if isinstance(address, str):
                from debugkit.runtimes.docker.engine import tls_from_env

                address = hosts.address_for(address, tls=tls_from_env())
            return hosts.Resolution(address, "given by the caller")
        return hosts.resolve(host=self._host, context=self._context)

    @property
    def resolution(self):
        if self._resolution is None:
            from debugkit.runtimes.docker.engine import EngineConfigError

            try:
                self._resolution = self.resolve()
            except EngineConfigError as exc:
                raise InvalidInput(str(exc)) from None
        return self._resolution

    def connect(self):
        """An engine client whose API version is settled (its GET /_ping, once per process,
        is the round trip that also says the engine answers), or a DebugkitError saying why not."""
        from debugkit.runtimes.docker.engine import (EngineAnswerInvalid, EngineClient, EngineConfigError,
                                                     EngineConnectionError, EngineError)

        address = self.resolution.address
        dial = None
        if address.scheme == "ssh":
            from debugkit.runtimes.docker.sshdial import SSHDialer  # subprocess: only for ssh://

            dial = SSHDialer(address)
        try:
            client = EngineClient(address, dial=dial, engine=self.engine)
        except EngineConfigError as exc:
            raise InvalidInput(str(exc)) from None
        count, spare = self._prefetch
        if count:
            client.prefetch(count, spare=spare)
        try:
            client.negotiate()
        except BaseException as exc:
            client.close()
            client.release()
            if isinstance(exc, EngineError):  # it answered, but not with its version
                raise EngineUnreachable(f"the {self.engine} engine at {client.host} answered GET /_ping with "
                                        f"{exc.status_code}: {exc.explanation}") from exc
            if isinstance(exc, (EngineConnectionError, PermissionError, EngineAnswerInvalid)):
                raise engine_error(exc, engine=self.engine, host=client.host) from exc
            raise  # EngineIncompatible: it speaks none of our API versions
        return client

    @property
    def api(self):
        if self._api is None:
            self._api = self.connect()
        return self._api

    @property
    def probe(self) -> ContainerProbe:
        return ContainerProbe(self.api, engine=self.engine, local=self.api.local, cli=self.cli)

    def calls(self):
        return engine_calls(engine=self.engine, host=self.api.host)

    # -- run ------------------------------------------------------------------------------

    def create(self, plan: Plan, *, request: dict | None = None) -> str:
        """Create the plan's sidecar (from `request` instead of the plan's own when given)."""
        request = request or plan.request
        try:
            container_id = self.api.create_container(request["body"], name=request["name"])["Id"]
        except BaseException as exc:
            # A signal or a dropped connection while the answer was read: the container
            # may exist and we do not know its ID, but we chose its (random) name. An
            # answer from the engine (EngineError: a conflict, a bad request) created nothing.
            from debugkit.runtimes.docker.engine import EngineError

            if not isinstance(exc, EngineError):
                self.remove_container(request["name"])
            raise
        if self.on_created is not None:
            try:
                self.on_created(plan, container_id)
            except BaseException:
                self.remove_container(container_id)  # nothing runs without its record
                raise
        return container_id

    def attach(self, container_id: str, *, stdin: bool, logs: bool = False):
        """The container's attach stream (hijacked), before it starts."""
        params = {"stdin": int(stdin), "stdout": 1, "stderr": 1, "stream": 1}
        if logs:
            params["logs"] = 1
        return self.api.attach_socket(container_id, params=params)

    def start(self, container_id: str) -> None:
        from debugkit.runtimes.docker.engine import EngineError

        try:
            self.api.start(container_id)
        except EngineError as exc:
            raise start_error(exc.explanation) from exc

    def stop_container(self, container_id: str, *, graceful: bool, grace: float = 3.0) -> None:
        """SIGTERM first when a reaper (or keep-alive) is the main process: it ends its tree
        and reaps it; SIGKILL from the engine would orphan them to the target's PID 1. Then
        remove, whatever is left."""
        from debugkit.runtimes.docker.engine import EngineError

        if graceful:
            try:
                self.api.kill(container_id, signal="TERM")
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline:
                    if not (self.api.inspect_container(container_id).get("State") or {}).get("Running"):
                        break
                    time.sleep(0.02)
            except (EngineError, OSError):
                pass  # gone already, or the engine is: the removal below says which
        self.remove_container(container_id)

    def removed_by_itself(self, container_id: str, *, within: float = 3.0) -> bool:
        """Wait until the engine has removed an auto-removed sidecar whose main process is
        ending by itself (its keep-alive saw EOF): one request, no kill and no polling.
        False when that did not happen within `within` seconds (the caller stops it)."""
        from debugkit.runtimes.docker.engine import EngineError, EngineNotFound

        try:
            response, conn = self.api.wait_request(container_id, condition="removed")
        except EngineNotFound:
            return True  # gone already
        except (EngineError, OSError):
            return False
        try:
            if conn.sock is not None:
                conn.sock.settimeout(within)
            response.read(1 << 16)
            return True
        except (OSError, ValueError):
            return False
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def remove_container(self, container_id: str) -> None:
        from debugkit.runtimes.docker.engine import EngineError

        with contextlib.suppress(EngineError, OSError, Exception):
            self.api.remove_container(container_id, force=True)

    def run(self, plan: Plan, streams: Streams) -> int:
        try:
            return self._run(plan, streams)
        except TargetNotRunning as exc:
            # It stopped (or a restart loop took it down) between the plan and the start.
            if exc.hint is None and plan.ref is not None:
                exc.hint = f"debug it through a held copy: debugkit attach --copy {plan.ref}"
            raise

    def _run(self, plan: Plan, streams: Streams) -> int:
        from debugkit.runtimes.docker.exec import DockerExecSession

        if plan.keep_alive:
            return self._run_reusable(plan, streams)
        if plan.mode == "interactive":
            # A TTY does not close when its client dies, a non-TTY stdin does: so the shell
            # is an exec in a sidecar whose main process lives on our attach's stdin.
            with DockerExecSession(self, plan) as live:
                return live.exec_interactive(plan.details.exec_argv, stdin=streams.stdin, stdout=streams.stdout)
        run_once = self._run_streamed if plan.details.streamed else self._run_once
        for attempt in (1, 2):
            try:
                return run_once(plan, streams)
            except TransientStartFailure:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _run_streamed(self, plan: Plan, streams: Streams) -> int:
        """A scripted command as an exec in a keep-alive sidecar (remote engines, -i, -t)."""
        from debugkit.runtimes.docker.exec import DockerExecSession

        with DockerExecSession(self, plan) as live:
            if plan.spec.tty:
                return live.exec_interactive(plan.details.exec_argv, stdin=streams.stdin, stdout=streams.stdout)
            return live.exec_streamed(plan.details.exec_argv, stdin=streams.stdin if plan.spec.stdin else None,
                                      stdout=streams.stdout, stderr=streams.stderr)

    def lost_connection(self, reason: str) -> DebugkitError:
        return EngineUnreachable(f"lost the connection to the {self.engine} engine at {self.api.host}: ssh: {reason}")

    def _run_reusable(self, plan: Plan, streams: Streams) -> int:
        """--keep-alive: exec into the kept-alive sidecar, starting it first if there is none."""
        from debugkit.runtimes.docker.exec import DockerExecSession, SidecarGone

        for attempt in (1, 2):
            name = plan.reuse or self.start_kept_alive(plan)
            live = DockerExecSession(self, plan, container=name)
            try:
                if plan.mode == "interactive" or plan.spec.tty:
                    return live.exec_interactive(plan.details.exec_argv, stdin=streams.stdin, stdout=streams.stdout)
                return live.exec_streamed(plan.details.exec_argv, stdin=streams.stdin if plan.spec.stdin else None,
                                          stdout=streams.stdout, stderr=streams.stderr)
            except SidecarGone:
                # It reached its idle limit between the plan and the exec: start a new one.
                if attempt == 2 or plan.reuse is None:
                    raise
                plan = plan._replace(reuse=None)
        raise AssertionError("unreachable")

    def start_kept_alive(self, plan: Plan) -> str:
        """Start the plan's --keep-alive sidecar, which outlives this CLI until idle; its name.
        It is recorded in this person's state directory, which is what lets a later session
        trust it (DockerPlanning.reusable)."""
        with self.calls():
            container_id = self.create(plan)
            key = plan.spec.labels_dict().get(translate.LABEL_REUSE)
            if key:
                reuse_records.remember(self.name, self.api.host, key, reuse_records.Record(plan.spec.name,
                                                                                          container_id))
            try:
                # Attach before start: Podman would otherwise restart a target that
                # stopped in the meantime (its attach is where that is refused).
                self.attach(container_id, stdin=False).close()
                self.start(container_id)
            except BaseException:
                self.remove_container(container_id)
                raise
        return plan.spec.name

    def _run_once(self, plan: Plan, streams: Streams) -> int:
        spec = plan.spec
        exited = False
        sock = None
        with self.calls():
            container_id = self.create(plan)
            try:
                # The reaper's stdin: held open, never written (see translate.main_command).
                # Podman's attach to a container it has yet to start replays the log to catch
                # the first output; Docker's is connected before the start (the `none` log
                # driver, session_log_driver, has nothing to replay and refuses to).
                sock = self.attach(container_id, stdin=bool(plan.request["body"].get("OpenStdin")),
                                   logs=self.session_log_driver != "none")
                waiting = self.expect_exit(container_id)
                self.start(container_id)
                pump(sock, tty_mode=False, stdin=None, stdout=streams.stdout, stderr=streams.stderr)
                code = self.exit_status(container_id, waiting, name=spec.name)
                exited = True
                return code
            finally:
                # The attach stream first: after a closed stdout (`| head`) nobody reads it,
                # and dockerd, blocked writing the command's output into it, held the
                # container, so that the stop below waited for its 60 s timeouts (twice).
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()
                # After a normal exit the engine removes it (AutoRemove); on every other
                # path (errors, signals, a closed stdout) we stop it ourselves, at once:
                # gracefully when the reaper runs it, so no orphan is left to the target.
                if not exited:
                    self.stop_container(container_id, graceful=plan.helper)

    def expect_exit(self, container_id: str):
        """Register a wait for the exit *before* start, so a fast command's exit code is
        never missed. dockerd flushes the response headers once the waiter is registered,
        and the body (the exit status) arrives when the process has exited. Removal is
        the engine's job from then on (AutoRemove), so we do not wait for it."""
        response, conn = self.api.wait_request(container_id, condition="next-exit")
        result: dict = {}

        def read():
            try:
                answer = jsonsafe.loads(response.read(1 << 20) or b"{}", max_bytes=1 << 20)
                code = answer.get("StatusCode") if isinstance(answer, dict) else None
                if isinstance(code, int) and not isinstance(code, bool):
                    result["StatusCode"] = code
                else:
                    result["Error"] = {"Message": f"the engine's wait answered {str(answer)[:100]!r}"}
            except Exception as exc:  # surfaced to the caller through result
                result["Error"] = {"Message": str(exc)}
            finally:
                conn.close()

        reader = threading.Thread(target=read, daemon=True, name="debugkit-wait")
        reader.start()
        return reader, result

    def exit_status(self, container_id: str, waiting, *, name: str) -> int:
        """The sidecar's exit code, once its output has ended."""
        reader, result = waiting
        reader.join(timeout=30)
        if reader.is_alive() or "StatusCode" not in result:
            raise DebugkitError(f"lost track of sidecar {name}'s exit status: {result or 'timeout'}")
        return int(result["StatusCode"])

    def open_steps(self, plan: Plan):
        from debugkit.runtimes.docker.exec import DockerExecSession

        if plan.details.steps_request is not None and not plan.keep_alive:
            return DockerExecSession(self, plan, steps_main=True)
        return self.open_exec(plan)

    def open_exec(self, plan: Plan):
        """With --keep-alive, the commands run in the reusable sidecar (one that runs already,
        or a new one), which stays after them, as attach's do: so `cp --from-sidecar` reads
        what an earlier `attach --keep-alive` wrote. Otherwise a sidecar of their own."""
        from debugkit.runtimes.docker.exec import DockerExecSession

        if plan.keep_alive:
            return DockerExecSession(self, plan, container=plan.reuse or self.start_kept_alive(plan))
        return DockerExecSession(self, plan)

    def open_relay(self, plan: Plan, directory: str):
        """A sidecar of its own with `directory` mounted, on an engine reached through a
        local socket (whether it really runs here, relaysock proves); None otherwise."""
        from debugkit.runtimes.docker.exec import DockerExecSession

        if plan.keep_alive or not plan.helper or not self.api.local:
            return None
        return DockerExecSession(self, plan, relay_dir=directory)

    # -- inspect, ps, gc ----------------------------------------------------------------

    def inspect(self, plan: Plan) -> dict:
        report = plan.report or TargetReport()
        resolved = plan.spec.identity
        notes = list(resolved.notes)
        if not self.api.local:
            notes.append(f"the engine is remote ({self.api.address.scheme}://): the target's process identity comes "
                         f"from the engine's top API, its files from the archive API, not from this machine's /proc")
        if plan.details.streamed:
            notes.append("commands run as execs in a keep-alive sidecar, which ends when the connection does")
        return {
            "runtime": self.name,
            "engine": self.api.host,
            "engine_source": self.resolution.why,
            **self.engine_facts(),
            "container": plan.target.name,
            "container_id": plan.target.id,
            "image": plan.target.image,
            "pid": report.pid,
            "uid": resolved.uid,
            "gid": resolved.gid,
            "groups": list(resolved.groups),
            "user_name": resolved.user_name,
            "source": resolved.source,
            "notes": notes,
            "sources": [s.as_dict() for s in plan.sources],
            "configured_user": report.configured_user,
            "target_dumpable": report.dumpable,
            "zombies": report.zombies,
            "has_shell": report.shell is not None,
            "shell": report.shell,
            "sidecar_image": plan.spec.image,
            "profile": plan.spec.profile,
            "warnings": list(plan.warnings),
            "attach_command": translate.shell_join(self.cli_argv(
                translate.run_argv(plan.request, names={plan.target.id: plan.target.name}, cli=self.cli))),
        }

    def engine_facts(self) -> dict:
        """The engine's release and the API version negotiated with it, for inspect."""
        found = self.api.negotiate()
        release = f"{self.engine} {found.engine_version or '(version not stated)'}"
        return {"engine_version": f"{release} (API {found.engine_range()})", "engine_api": found.version}

    def cli_argv(self, argv: list[str]) -> list[str]:
        """`docker run ...` pointed at the engine this runtime uses (a context by name)."""
        from debugkit.runtimes.docker.engine import DEFAULT_SOCKET

        found = self.resolution
        if argv[:1] != [self.cli] or (found.context is None and found.address.text == f"unix://{DEFAULT_SOCKET}"):
            return argv
        if found.context:
            return [argv[0], "--context", found.context, *argv[1:]]
        return [argv[0], "-H", found.address.text, *argv[1:]]

    # -- ps, gc, fleets, doctor, completion --------------------------------------------------

    def sessions(self, *, namespace: str | None = None) -> list[SessionRow]:
        from debugkit.runtimes.docker import sessions

        return sessions.rows(self)

    def stop_execs(self, container_id: str, marker: str) -> None:
        from debugkit.runtimes.docker import sessions

        sessions.stop_execs(self, container_id, marker)

    def remove(self, row: SessionRow) -> None:
        from debugkit.runtimes.docker import sessions

        sessions.remove(self, row)

    def expand(self, many) -> Expansion:
        from debugkit.runtimes.docker import fleet

        if not isinstance(many, ContainerSetRef):
            return super().expand(many)
        return fleet.expand(self, many)

    def stop(self, sidecar_id: str, *, grace: float) -> None:
        from debugkit.runtimes.docker import fleet

        fleet.stop(self, sidecar_id, grace=grace)

    def doctor(self, *, target: Plan | None = None, namespace: str | None = None) -> list[CheckResult]:
        from debugkit.runtimes.docker.doctor import engine_checks

        return engine_checks(self)

    def complete_targets(self, word: str, *, namespace: str | None = None, timeout: float) -> list[str]:
        from debugkit.runtimes.docker import complete
        from debugkit.runtimes.docker.clients import short_client

        entry = self.entry
        prefix = complete.prefix_for(word, schemes=entry.schemes, bare=entry.bare_names)
        if prefix is None:
            return []
        api = short_client(self.resolve().address, timeout=timeout, engine=self.engine)
        return complete.container_names(api, prefix=prefix)

    # -- what the messages and hints say ------------------------------------------------------

    unconfigured = "no -H, DOCKER_HOST or Docker context is set and /var/run/docker.sock does not exist"
    address_setting = "-H, DOCKER_HOST or the Docker context"

    def toolbox_missing_fix(self, image: str, *, standard: bool) -> str:
        return "debugkit toolbox build" + ("" if standard else f" --tag {image} (or docker pull {image})")

    def toolbox_rebuild_fix(self, image: str) -> str:
        return "rebuild it: debugkit toolbox build"
