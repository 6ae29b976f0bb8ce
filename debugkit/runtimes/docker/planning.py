"""The Docker runtime's hooks for the plan that session/planning.py writes once: find the
target and who it runs as (probe.py), the sidecar image and whether it has debugkit-helper
(or can be given the local toolbox's), the reuse key of a kept-alive sidecar, and the
pure translation into a create request (translate.py). Mixed into DockerRuntime, whose
engine client (`api`, `calls`, `probe`) it uses.
"""
from __future__ import annotations

from typing import NamedTuple

from debugkit.core.errors import DebugkitError, ImageMissing
from debugkit.core.imageref import toolbox_ref
from debugkit.core.reuse import NOT_RECORDED, RUNNING, refusal_line, reuse_refusal
from debugkit.core.spec import LABEL_MANAGED
from debugkit.core.targets import ImageRef
from debugkit.runtimes import reuse_records
from debugkit.runtimes.base import Draft, Located, ResolvedTarget, SidecarImage, TargetReport, Translation
from debugkit.runtimes.docker import translate


class DockerPlan(NamedTuple):
    """What a Docker plan decided beyond the request (Plan.details)."""

    exec_argv: tuple[str, ...]      # what runs as an exec (interactive, streamed, kept-alive)
    streamed: bool                  # a scripted command runs as an exec in a keep-alive sidecar
    heartbeat_s: float | None       # a remote engine: how often the keep-alive hears from us
    # The create request of a sidecar whose main process is `debugkit-helper steps` on our
    # attach (open_steps, a runbook on a local engine), or None where it cannot be.
    steps_request: dict | None = None


class DockerPlanning:
    """The plan's hooks, in the order session/planning.py calls them."""

    # Nothing a session prints goes to the engine's log driver: a debug session reads what
    # a target hides (its environment, its secrets), and a driver can ship it off the
    # machine (fluentd, syslog, a cloud's logging) where it outlives the session. The
    # attach stream does not need the log (debugkit attaches before the start). Podman's
    # attach does (PodmanRuntime).
    session_log_driver: str | None = "none"

    def locate(self, options, *, mode: str, thorough: bool) -> Located:
        if self._api is None and not thorough:
            # A session needs three connections (the API calls, the keep-alive stream,
            # the first exec) when the engine is remote; a dialer (ssh) starts them at once.
            self._prefetch = (3, mode == "exec")
        with self.calls():
            if not thorough and self.api.local:
                self._inspect_image_ahead(options.sidecar_image)
            if isinstance(options.target, ImageRef):
                info = self.probe.find_image(options.target.image)
            else:
                info = self.probe.find_target(options.target.name, ref=str(options.target))
        target = ResolvedTarget(runtime=self.name, name=info.name, id=info.id, image=info.image)
        return Located(target=target, details=info)

    def identity_sources(self, located: Located, *, thorough: bool) -> list:
        with self.calls():
            return self.probe.identity_sources(located.details, stop_at_first=not thorough)

    def user_identity(self, located: Located, user):
        with self.calls():
            return self.probe.resolve_identity(located.details, user, [])

    def sidecar_image(self, ref: str, *, toolbox: bool) -> SidecarImage:
        with self.calls():
            image = self.image_facts(ref, toolbox=toolbox)
            helper, mounts, helper_warning = self.helper_for(image)
        return SidecarImage(ref=ref, helper=helper, default_command=image["default_command"],
                            image_id=image["image_id"], image_digest=image["image_digest"],
                            warnings=tuple(self.resolution.warnings) + ((helper_warning,) if helper_warning else ()),
                            details=mounts)

    def reuse_key(self, draft: Draft) -> str | None:
        if not draft.keep_alive:  # 0: end with the command, as without the flag
            return None
        return translate.reuse_key(draft.spec, target_id=draft.located.target.id, image_id=draft.image.image_id,
                                   local_user=draft.local_user, keep_alive=draft.keep_alive)

    def translate(self, draft: Draft) -> Translation:
        spec, mode, helper = draft.spec, draft.mode, draft.image.helper
        keep_alive = draft.keep_alive or None
        # On a remote engine a scripted command runs as an exec too: its sidecar's main
        # process is the keep-alive on our attach stream, so a dropped connection ends
        # the sidecar (EOF -> exit -> auto-remove) even when nothing can reach the engine
        # to remove it. Locally the command is the main process (one round trip less).
        # With -i or -t the command needs the attach's stdin itself, so nothing would tell the
        # sidecar that a killed CLI is gone (a TTY never even sees EOF): the command is an
        # exec there too, in a keep-alive that lives on our attach.
        remote = not self.api.local
        streamed = mode == "command" and not keep_alive and (remote or spec.stdin or spec.tty)
        exec_argv = tuple(spec.command) or (draft.image.default_command if mode == "interactive" else ())
        if draft.reuse_key is not None:
            spec = spec.with_labels(**{translate.LABEL_REUSE: draft.reuse_key,
                                       translate.LABEL_KEEP_ALIVE: str(int(keep_alive))})
        main = translate.main_command(spec.name, spec.command, mode="exec" if streamed else mode, helper=helper,
                                      keep_alive=keep_alive, session_id=spec.session_id, heartbeat=remote)
        scripted_main = mode == "command" and not keep_alive and not streamed
        # Every sidecar but a kept-alive one has its stdin attached: the scripted command's
        # reaper and the session keep-alive both end when it closes.
        container_spec = spec.evolve(command=main, stdin=not keep_alive if helper or not scripted_main else False,
                                     tty=False)
        warnings = []
        with self.calls():
            dumpable = self.probe.dumpable(draft.located.details)
        if dumpable is False and not spec.run_as_root:
            warnings.append("the target changed UID at runtime and is not dumpable: /proc/1/root and "
                            "/proc/1/environ stay root-only; use --profile ptrace to read them")
        request = translate.create_request(container_spec, target_id=draft.located.target.id,
                                           mounts=draft.image.details, log_driver=self.session_log_driver)
        steps_request = None
        if mode == "exec" and helper and not keep_alive and not remote:
            steps_request = translate.create_request(
                spec.evolve(command=translate.steps_main_command(), stdin=True, tty=False),
                target_id=draft.located.target.id, mounts=draft.image.details, log_driver=self.session_log_driver)
        details = DockerPlan(exec_argv=exec_argv, streamed=streamed,
                             heartbeat_s=translate.HEARTBEAT_S if remote else None, steps_request=steps_request)
        return Translation(spec=spec, request=request, warnings=tuple(warnings), engine=self.api.host,
                           details=details)

    def reusable(self, draft: Draft, translation: Translation) -> tuple[str | None, str | None]:
        """Only the sidecar this person's debugkit recorded starting for this key is a
        candidate (see core/reuse.py), and only when the engine shows it running with exactly
        the plan's image, user, security settings and keep-alive command. A look-alike that
        merely carries the key is named and skipped."""
        return self.trusted_reuse(draft.reuse_key, translation.request, image_id=draft.image.image_id,
                                  helper=draft.image.helper, keep_alive=draft.keep_alive)

    def trusted_reuse(self, key: str, request: dict, *, image_id: str, helper: bool,
                      keep_alive: float) -> tuple[str | None, str | None]:
        """reusable() for the plan's create `request`: (the sidecar to reuse, a refusal line)."""
        from debugkit.runtimes.docker.engine import EngineNotFound

        scope = self.api.host
        with self.calls():
            record = reuse_records.recall(self.name, scope, key)
            if record is not None:
                try:
                    found = translate.inspected_facts(self.api.inspect_container(record.id))
                except EngineNotFound:
                    found = None  # it reached its idle limit and was removed: the usual end
                if found is not None:
                    wanted = translate.planned_facts(request, image_id=image_id,
                                                     name=found.name, command=translate.main_command(
                                                         found.name, (), mode="exec", helper=helper,
                                                         keep_alive=keep_alive, session_id=""))
                    why = reuse_refusal(found, wanted, recorded=True)
                    if why is None:
                        return found.name, None
                    reuse_records.forget(self.name, scope, key, record.name)
                    if found.state != RUNNING:
                        return None, None  # it ended by itself (its keep-alive expired): nothing to say
                    return None, refusal_line(found.name, why)
                reuse_records.forget(self.name, scope, key, record.name)
            lookalikes = self.api.containers(filters={"label": [f"{LABEL_MANAGED}=true",
                                                                f"{translate.LABEL_REUSE}={key}"],
                                                      "status": ["running"]})
        for ctr in lookalikes:
            return None, refusal_line((ctr.get("Names") or ["/?"])[0].lstrip("/"), NOT_RECORDED)
        return None, None

    def report(self, draft: Draft, translation: Translation) -> TargetReport:
        info = draft.located.details
        with self.calls():
            probe = self.probe
            return TargetReport(pid=info.pid, dumpable=probe.dumpable(info), zombies=probe.zombies(info),
                                shell=probe.shell(info), configured_user=info.configured_user or None,
                                image_id=info.image_id, unseen=self.unseen())

    def unseen(self) -> str:
        if self.api.local:
            return "the target's process is not visible in this machine's /proc"
        return (f"the {self.engine} engine is remote ({self.api.address.scheme}://): its processes are not this "
                f"machine's")

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

    def _inspect_image_ahead(self, ref: str) -> None:
        """Start `GET /images/REF/json` now, on a connection of its own, so that it overlaps
        the target's look-up: on Docker 29's containerd image store it takes 10-16 ms, and
        docker run does not pay it (image_facts takes the answer)."""
        import threading

        api, box = self.api, {}

        def fetch():
            try:
                box["attrs"] = api.inspect_image(ref)
            except BaseException as exc:  # handed to image_facts, in the main thread
                box["error"] = exc
            finally:
                api.close()  # this thread's connection

        thread = threading.Thread(target=fetch, daemon=True, name="debugkit-image")
        thread.start()
        self._image_ahead = (ref, thread, box)

    def _inspected_image(self, image: str) -> dict:
        ahead, self._image_ahead = getattr(self, "_image_ahead", None), None
        if ahead is not None and ahead[0] == image:
            _ref, thread, box = ahead
            thread.join()
            if "error" in box:
                raise box["error"]
            return box["attrs"]
        return self.api.inspect_image(image)

    def image_facts(self, image: str, *, toolbox: bool) -> dict:
        """The image's ID, repo digest and default command; ImageMissing when it is not there."""
        from debugkit.runtimes.docker.engine import EngineNotFound

        try:
            attrs = self._inspected_image(image)
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

