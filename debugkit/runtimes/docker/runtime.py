"""The Docker runtime: a sidecar container joined to the target's PID and network namespaces.

plan: find the target, resolve its identity (process, then config, then --user), check
the image, build the spec, apply the profile, translate it (translate.create_request).
run: create, attach, register the wait, start, stream, exit with the command's code.
Podman's runtime is this class pointed at Podman's Docker-compatible service.
"""
from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import replace

from debugkit.core import identity as ident
from debugkit.core import jsonsafe
from debugkit.core.errors import DebugkitError, EngineUnreachable, ImageMissing, InvalidInput
from debugkit.core.imageref import toolbox_ref
from debugkit.core.options import SidecarOptions
from debugkit.core.profiles import apply_profile
from debugkit.core.spec import (LABEL_CLI_HOST, LABEL_CLI_PID, LABEL_PROFILE, LABEL_REASON, LABEL_SESSION,
                                LABEL_TARGET, LABEL_MANAGED, LABEL_USER, base_spec)
from debugkit.runtimes.base import Plan, ResolvedTarget, Runtime, SessionRow, Streams, local_user, with_target_env
from debugkit.core.reuse import NOT_RECORDED, RUNNING, refusal_line, reuse_refusal
from debugkit.runtimes import reuse_records
from debugkit.runtimes.docker import translate
from debugkit.runtimes.docker.errors import TransientStartFailure, engine_calls, engine_error, start_error
from debugkit.runtimes.docker.probe import ContainerProbe
from debugkit.runtimes.terminal import pump



class DockerRuntime(Runtime):
    name = "docker"
    engine = "Docker"
    cli = "docker"

    def __init__(self, api=None, *, address=None, host: str | None = None, context: str | None = None):
        """`host` and `context` are -H and --docker-context as typed (None: not given);
        `address` (an EngineAddress or a host string) skips the resolution."""
        self._api = api
        self._address = address
        self._host = host
        self._context = context
        self._resolution = None
        self._prefetch: tuple[int, bool] = (0, False)

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

    # -- plan -----------------------------------------------------------------------------

    def plan(self, options: SidecarOptions, *, mode: str, thorough: bool = False) -> Plan:
        if self._api is None and not thorough:
            # A session needs three connections (the API calls, the keep-alive stream,
            # the first exec) when the engine is remote; a dialer (ssh) starts them at once.
            self._prefetch = (3, mode == "exec")
        with self.calls():
            probe = self.probe
            info = probe.find_target(options.target.name)
            sources = probe.identity_sources(info, stop_at_first=not thorough)
            identity = probe.resolve_identity(info, options.user, sources)
            image_ref = options.sidecar_image
            image = self.image_facts(image_ref, toolbox=options.image is None)
            helper, mounts, helper_warning = self.helper_for(image)
        me = local_user()
        spec = base_spec(
            image=image_ref, identity=identity, target_name=info.name, target_id=info.id, runtime=self.name,
            command=options.command, stdin=options.stdin, tty=options.tty, session_id=options.session_id,
            cli_pid=os.getpid(), cli_host=socket.gethostname(), local_user=me, reason=options.reason,
        )
        spec = apply_profile(spec, options.profile).evolve(resources=options.resources)
        if options.custom is not None:
            raise InvalidInput(f"--custom is a Kubernetes option (a partial container spec); "
                               f"{self.engine} sidecars take --memory, --pids-limit and --cpus instead")
        keep_alive = options.keep_alive or None  # 0: end with the command, as without the flag
        # On a remote engine a scripted command runs as an exec too: its sidecar's main
        # process is the keep-alive on our attach stream, so a dropped connection ends
        # the sidecar (EOF -> exit -> auto-remove) even when nothing can reach the engine
        # to remove it. Locally the command is the main process (one round trip less).
        # With -i or -t the command needs the attach's stdin itself, so nothing would tell the
        # sidecar that a killed CLI is gone (a TTY never even sees EOF): the command is an
        # exec there too, in a keep-alive that lives on our attach.
        remote = not self.api.local
        streamed = mode == "command" and not keep_alive and (remote or spec.stdin or spec.tty)
        if options.target_env:
            if not helper:
                raise InvalidInput("--target-env needs debugkit-helper in the sidecar image: use the toolbox")
            spec = spec.evolve(command=with_target_env(spec.command or image["default_command"]))
        exec_argv = tuple(spec.command) or (image["default_command"] if mode == "interactive" else ())
        key = None
        if keep_alive:
            key = translate.reuse_key(spec, target_id=info.id, image_id=image["image_id"], local_user=me,
                                      keep_alive=keep_alive)
            spec = spec.with_labels(**{translate.LABEL_REUSE: key, translate.LABEL_KEEP_ALIVE: str(int(keep_alive))})
        main = translate.main_command(spec.name, spec.command, mode="exec" if streamed else mode, helper=helper,
                                      keep_alive=keep_alive, session_id=spec.session_id, heartbeat=remote)
        scripted_main = mode == "command" and not keep_alive and not streamed
        # Every sidecar but a kept-alive one has its stdin attached: the scripted command's
        # reaper and the session keep-alive both end when it closes.
        container_spec = spec.evolve(command=main, stdin=not keep_alive if helper or not scripted_main else False,
                                     tty=False)
        warnings = list(self.resolution.warnings) + ([helper_warning] if helper_warning else [])
        dumpable = probe.dumpable(info)
        if dumpable is False and not spec.run_as_root:
            warnings.append("the target changed UID at runtime and is not dumpable: /proc/1/root and "
                            "/proc/1/environ stay root-only; use --profile ptrace to read them")
        facts: dict = {"exec_argv": list(exec_argv), "helper": helper, "keep_alive": keep_alive, "streamed": streamed,
                       "engine": self.api.host, "heartbeat_s": translate.HEARTBEAT_S if remote else None}
        if thorough:
            with self.calls():
                shell = probe.shell(info)
            facts.update(dumpable=dumpable, shell=shell, zombies=probe.zombies(info), pid=info.pid,
                         configured_user=info.configured_user or None, image_id=info.image_id)
        target = ResolvedTarget(runtime=self.name, name=info.name, id=info.id, image=info.image)
        request = translate.create_request(container_spec, target_id=info.id, mounts=mounts)
        reuse = None
        if key is not None and not options.new:
            with self.calls():
                reuse, refused = self.trusted_reuse(key, request, image_id=image["image_id"], helper=helper,
                                                    keep_alive=keep_alive)
            if refused:
                warnings.append(refused)
        image = {k: v for k, v in image.items() if k in ("image_id", "image_digest")}
        return Plan(runtime=self.name, mode=mode, target=target, spec=spec, request=request,
                    sources=tuple(sources), warnings=tuple(warnings), image=image, facts=facts, reuse=reuse)

    def helper_for(self, image: dict) -> tuple[bool, tuple, str | None]:
        """(the sidecar has debugkit-helper, read-only mounts that give it one, a warning).
        The toolbox carries it; a foreign image gets the local toolbox's copy bind-mounted
        when the engine is on this machine; otherwise there is no reaper."""
        protocol = translate.helper_protocol(image["labels"])
        if protocol is not None:
            if protocol < translate.HELPER_PROTOCOL:
                raise ImageMissing(
                    f"sidecar image {image['ref']!r} carries an older debugkit-helper (protocol {protocol}; this "
                    f"debugkit needs {translate.HELPER_PROTOCOL})", hint=self.rebuild_hint(image["ref"]))
            return True, (), None
        if self.api.local:
            copy = self.helper_copy()
            if copy is not None:
                return True, ((copy, translate.HELPER),), None
        return False, (), ("the sidecar image has no debugkit-helper (and none can be mounted into it): "
                           "processes the command leaves behind become zombies of the target's PID 1")

    def helper_copy(self) -> str | None:
        """The local toolbox's helper, copied once into ~/.cache/debugkit, for bind mounts."""
        from debugkit.runtimes.docker.engine import EngineError
        from debugkit.runtimes.docker.helper import cached_helper

        try:
            toolbox = self.api.inspect_image(toolbox_ref())
        except EngineError:
            return None
        protocol = translate.helper_protocol((toolbox.get("Config") or {}).get("Labels") or {})
        if protocol is None or protocol < translate.HELPER_PROTOCOL:
            return None
        return cached_helper(self.api, toolbox["Id"], translate.HELPER)

    def trusted_reuse(self, key: str, request: dict, *, image_id: str, helper: bool,
                      keep_alive: float) -> tuple[str | None, str | None]:
        """(the name of the kept-alive sidecar to exec into, or None; the one line that says
        why a candidate is not reused, or None). Only the sidecar this person's debugkit
        recorded starting for this key is a candidate (see core/reuse.py), and only when the
        engine shows it running with exactly the plan's image, user, security settings and
        keep-alive command. A look-alike that merely carries the key is named and skipped."""
        from debugkit.runtimes.docker.engine import EngineNotFound

        scope = self.api.host
        record = reuse_records.recall(self.name, scope, key)
        if record is not None:
            try:
                found = translate.inspected_facts(self.api.inspect_container(record.id))
            except EngineNotFound:
                found = None  # it reached its idle limit and was removed: the usual end
            if found is not None:
                wanted = translate.planned_facts(request, image_id=image_id, name=found.name, command=(
                    translate.main_command(found.name, (), mode="exec", helper=helper, keep_alive=keep_alive,
                                           session_id="")))
                why = reuse_refusal(found, wanted, recorded=True)
                if why is None:
                    return found.name, None
                reuse_records.forget(self.name, scope, key, record.name)
                if found.state != RUNNING:
                    return None, None  # it ended by itself (its keep-alive expired): nothing to say
                return None, refusal_line(found.name, why)
            reuse_records.forget(self.name, scope, key, record.name)
        lookalikes = self.api.containers(filters={"label": [f"{LABEL_MANAGED}=true", f"{translate.LABEL_REUSE}={key}"],
                                                  "status": ["running"]})
        for ctr in lookalikes:
            return None, refusal_line((ctr.get("Names") or ["/?"])[0].lstrip("/"), NOT_RECORDED)
        return None, None

    def image_facts(self, image: str, *, toolbox: bool) -> dict:
        """The image's ID, repo digest and default command; ImageMissing when it is not there."""
        from debugkit.runtimes.docker.engine import EngineNotFound

        try:
            attrs = self.api.inspect_image(image)
        except EngineNotFound as exc:
            raise self.missing_image(image, toolbox=toolbox) from exc
        digests = attrs.get("RepoDigests") or []
        config = attrs.get("Config") or {}
        return {"ref": image, "image_id": attrs["Id"], "image_digest": digests[0] if digests else None,
                "default_command": tuple((config.get("Entrypoint") or []) + (config.get("Cmd") or ["sh"])),
                "labels": config.get("Labels") or {}}

    def rebuild_hint(self, image: str) -> str:
        if image == toolbox_ref():
            return "rebuild it with: debugkit toolbox build" + ("" if self.cli == "docker" else
                                                               f", then docker save {image} | podman load")
        return f"rebuild or pull a current {image}"

    def missing_image(self, image: str, *, toolbox: bool) -> DebugkitError:
        if toolbox and "@" in image:  # pinned by digest (toolbox push --set-default): it is in a registry
            hint = f"pull it with: {self.cli} pull {image}"
        elif toolbox:
            standard = image == toolbox_ref()
            hint = "build it with: debugkit toolbox build" + ("" if standard else f" --tag {image}")
        else:
            hint = f"{self.cli} pull {image}"
        return ImageMissing(f"sidecar image {image!r} is not in the local {self.engine} engine", hint=hint)

    # -- run ------------------------------------------------------------------------------

    def create(self, plan: Plan) -> str:
        request = plan.request
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

    def remove_container(self, container_id: str) -> None:
        from debugkit.runtimes.docker.engine import EngineError

        with contextlib.suppress(EngineError, OSError, Exception):
            self.api.remove_container(container_id, force=True)

    def run(self, plan: Plan, streams: Streams) -> int:
        from debugkit.runtimes.docker.exec import DockerExecSession

        if plan.facts["keep_alive"]:
            return self._run_reusable(plan, streams)
        if plan.mode == "interactive":
            # A TTY does not close when its client dies, a non-TTY stdin does: so the shell
            # is an exec in a sidecar whose main process lives on our attach's stdin.
            with DockerExecSession(self, plan) as live:
                return live.exec_interactive(plan.facts["exec_argv"], stdin=streams.stdin, stdout=streams.stdout)
        run_once = self._run_streamed if plan.facts.get("streamed") else self._run_once
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
                return live.exec_interactive(plan.facts["exec_argv"], stdin=streams.stdin, stdout=streams.stdout)
            return live.exec_streamed(plan.facts["exec_argv"], stdin=streams.stdin if plan.spec.stdin else None,
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
                    return live.exec_interactive(plan.facts["exec_argv"], stdin=streams.stdin, stdout=streams.stdout)
                return live.exec_streamed(plan.facts["exec_argv"], stdin=streams.stdin if plan.spec.stdin else None,
                                          stdout=streams.stdout, stderr=streams.stderr)
            except SidecarGone:
                # It reached its idle limit between the plan and the exec: start a new one.
                if attempt == 2 or plan.reuse is None:
                    raise
                plan = replace(plan, reuse=None)
        raise AssertionError("unreachable")

    def start_kept_alive(self, plan: Plan) -> str:
        """Start the plan's --keep-alive sidecar, which outlives this CLI until idle; its name.
        It is recorded in this person's state directory, which is what lets a later session
        trust it (trusted_reuse)."""
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
                sock = self.attach(container_id, stdin=bool(plan.request["body"].get("OpenStdin")), logs=True)
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
                    self.stop_container(container_id, graceful=plan.facts["helper"])

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

    def open_exec(self, plan: Plan):
        """With --keep-alive, the commands run in the reusable sidecar (one that runs already,
        or a new one), which stays after them, as attach's do: so `cp --from-sidecar` reads
        what an earlier `attach --keep-alive` wrote. Otherwise a sidecar of their own."""
        from debugkit.runtimes.docker.exec import DockerExecSession

        if plan.facts.get("keep_alive"):
            return DockerExecSession(self, plan, container=plan.reuse or self.start_kept_alive(plan))
        return DockerExecSession(self, plan)

    # -- inspect, ps, gc ----------------------------------------------------------------

    def inspect(self, plan: Plan) -> dict:
        facts = plan.facts
        resolved = plan.spec.identity
        notes = list(resolved.notes)
        if not self.api.local:
            notes.append(f"the engine is remote ({self.api.address.scheme}://): the target's process identity comes "
                         f"from the engine's top API, its files from the archive API, not from this machine's /proc")
        if facts.get("streamed"):
            notes.append("commands run as execs in a keep-alive sidecar, which ends when the connection does")
        return {
            "runtime": self.name,
            "engine": self.api.host,
            "engine_source": self.resolution.why,
            **self.engine_facts(),
            "container": plan.target.name,
            "container_id": plan.target.id,
            "image": plan.target.image,
            "pid": facts.get("pid"),
            "uid": resolved.uid,
            "gid": resolved.gid,
            "groups": list(resolved.groups),
            "user_name": resolved.user_name,
            "source": resolved.source,
            "notes": notes,
            "sources": [s.as_dict() for s in plan.sources],
            "configured_user": facts.get("configured_user"),
            "target_dumpable": facts.get("dumpable"),
            "zombies": facts.get("zombies"),
            "has_shell": facts.get("shell") is not None,
            "shell": facts.get("shell"),
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

    def sessions(self) -> list[SessionRow]:
        with self.calls():
            containers = self.api.containers(all=True, filters={"label": [f"{LABEL_MANAGED}=true"]})
        rows = []
        now = time.time()
        for ctr in containers:
            labels = ctr.get("Labels") or {}
            pid = labels.get(LABEL_CLI_PID, "")
            rows.append(SessionRow(
                runtime=self.name,
                session=labels.get(LABEL_SESSION, "?"),
                name=(ctr.get("Names") or ["?"])[0].lstrip("/"),
                target=labels.get(LABEL_TARGET, "?"),
                user=labels.get(LABEL_USER, "?"),
                state=ctr.get("State", "?"),
                age_s=max(0, int(now - (ctr.get("Created") or now))),
                profile=labels.get(LABEL_PROFILE, ""),
                cli_pid=int(pid) if ident.is_decimal(pid) else None,
                cli_host=labels.get(LABEL_CLI_HOST),
                id=ctr.get("Id", ""),
                reusable=translate.LABEL_REUSE in labels,
                keep_alive_s=int(keep) if ident.is_decimal(keep := labels.get(translate.LABEL_KEEP_ALIVE, "")) else None,
                reason=labels.get(LABEL_REASON),
            ))
        return rows

    def stop_execs(self, container_id: str, marker: str) -> None:
        """SIGKILL the execs marked `marker` in a running sidecar, before it is ended: the
        engine closes an exec's stream only when it sees the exec exit, which it does not
        when the sidecar (sharing the target's PID namespace) ends first. Best effort and
        bounded (3 s); a sidecar without sh, tr and kill keeps the old behaviour."""
        deadline = time.monotonic() + 3
        with contextlib.suppress(Exception):
            killer = self.api.exec_create(container_id, ["sh", "-c", translate.STOP_EXECS, "debugkit-stop", marker],
                                          stdout=False, stderr=False)["Id"]
            self.api.exec_start_detached(killer)
            while time.monotonic() < deadline and self.api.exec_inspect(killer).get("Running"):
                time.sleep(0.02)

    def remove(self, row: SessionRow) -> None:
        if row.state == "running" and row.session != "?":
            self.stop_execs(row.id, f"{row.session}.")
        self.remove_container(row.id)

