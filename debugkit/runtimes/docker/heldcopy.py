"""Held copies on Docker-API engines (attach --copy, attach image/REF): the Runtime
protocol's plan_copy, hold_copy and remove_copy, mixed into DockerRuntime (Podman inherits
them). The copy's create body is a pure translation (copyspec.py); here the original is
read (never changed), the holder's volume is filled from the toolbox image, and the copy
is created, started and waited for until its holder runs.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time

from debugkit.core.errors import DebugkitError, ImageMissing, TargetNotFound
from debugkit.core.reuse import RUNNING
from debugkit.core.spec import LABEL_CLI_HOST, LABEL_CLI_PID, LABEL_LOCAL_USER, LABEL_MANAGED, LABEL_SESSION
from debugkit.core.targets import ImageRef
from debugkit.runtimes.base import HOLDER_SOURCE, LABEL_COPY_KEEP, LABEL_COPY_OF, CopyPlan, CopyRequest, HeldCopy
from debugkit.runtimes.docker import copyspec, translate

# The protocol whose toolbox carries HOLDER_SOURCE and understands hold and target.
COPY_PROTOCOL = 5
VOLUME_PREFIX = "debugkit-copy-"
HOLD_POLL_S = 0.05
# How long removing a copy waits for the engine to let it go (its sidecar removing itself).
REMOVE_WAIT_S = 15


def volume_name(session_id: str) -> str:
    return f"{VOLUME_PREFIX}{session_id}"


class DockerCopies:
    """plan_copy, hold_copy, remove_copy over the runtime's engine client (`api`, `calls`)."""

    def plan_copy(self, request: CopyRequest) -> CopyPlan:
        from debugkit.runtimes.docker.engine import EngineNotFound

        ref = request.ref
        with self.calls():
            if isinstance(ref, ImageRef):
                original, name = None, ref.image
                try:
                    image = self.api.inspect_image(ref.image)
                except EngineNotFound:
                    raise TargetNotFound(f"no image {ref.image!r} in the {self.engine} engine",
                                         hint=f"{self.cli} pull {ref.image}") from None
            else:
                try:
                    original = self.api.inspect_container(ref.name)
                except EngineNotFound:
                    raise TargetNotFound(f"no container named {ref.name!r} on {self.engine}",
                                         hint=f"see `{self.cli} ps -a`") from None
                labels = (original.get("Config") or {}).get("Labels") or {}
                if labels.get(LABEL_MANAGED) == "true":
                    what = "a held copy" if LABEL_COPY_OF in labels else "a debugkit sidecar"
                    raise TargetNotFound(f"{ref.name!r} is itself {what}: attach to it, or copy its original")
                name = original.get("Name", "").lstrip("/") or ref.name
                image = self.api.inspect_image(original["Image"])
            self.check_holder(request.toolbox)
            reuse = self.kept_copy(original or image, request.local_user) if request.keep else None
        copy = copyspec.copy_name(name, request.session_id)
        made = copyspec.copy_request(original=original, image=image, name=copy, holder_volume=volume_name(
            request.session_id), session_id=request.session_id, local_user=request.local_user,
            writable=request.writable, keep=request.keep, runtime=self.name, original_name=name)
        if not request.keep:  # gc collects it once this CLI is gone; a kept one outlives it on purpose
            made["body"]["Labels"].update({LABEL_CLI_PID: str(os.getpid()), LABEL_CLI_HOST: socket.gethostname()})
        return CopyPlan(runtime=self.name, original=name, original_id=(original or image)["Id"], name=copy,
                        request={"name": made["name"], "body": made["body"]}, program=tuple(made["program"]),
                        dropped=tuple(made["dropped"]), reuse=reuse,
                        details={"volume": volume_name(request.session_id), "toolbox": request.toolbox,
                                 "timeout": request.timeout})

    def check_holder(self, toolbox: str) -> None:
        """The toolbox must carry the readable helper a copy runs (protocol 5)."""
        from debugkit.runtimes.docker.engine import EngineNotFound

        try:
            labels = (self.api.inspect_image(toolbox).get("Config") or {}).get("Labels") or {}
        except EngineNotFound:
            raise self.missing_image(toolbox, toolbox=True) from None
        protocol = translate.helper_protocol(labels)
        if protocol is None or protocol < COPY_PROTOCOL:
            raise ImageMissing(f"the toolbox {toolbox!r} has no debugkit-helper that can hold a copy (protocol "
                               f"{protocol or 'none'}; held copies need {COPY_PROTOCOL})",
                               hint=self.rebuild_hint(toolbox))

    def kept_copy(self, original: dict, local_user: str) -> str | None:
        """A running copy of this original that this person kept (--keep-alive), or None."""
        found = self.api.containers(filters={"label": [f"{LABEL_MANAGED}=true", f"{LABEL_COPY_OF}={original['Id']}",
                                                       f"{LABEL_LOCAL_USER}={local_user}", f"{LABEL_COPY_KEEP}=true"],
                                             "status": ["running"]})
        for ctr in found:
            return (ctr.get("Names") or ["/"])[0].lstrip("/") or None
        return None

    def copy_ref(self, name: str) -> str:
        """The copy as a target reference of this runtime."""
        entry = self.entry
        if entry is None or entry.bare_names or not entry.schemes:
            return name
        return f"{entry.schemes[0]}{name}"

    def hold_copy(self, plan: CopyPlan) -> HeldCopy:
        if plan.reuse is not None:
            with self.calls():
                found = self.api.inspect_container(plan.reuse)
            return HeldCopy(runtime=self.name, original=plan.original, original_id=plan.original_id,
                            name=plan.reuse, id=found["Id"], target=self.copy_ref(plan.reuse), reused=True)
        volume, container_id = plan.details["volume"], None
        try:
            with self.calls():
                self.fill_holder_volume(volume, plan.details["toolbox"], plan.request["body"]["Labels"])
                container_id = self.api.create_container(plan.request["body"], name=plan.request["name"])["Id"]
                self.api.start(container_id)
                self.wait_held(container_id, plan.request["name"], timeout=plan.details["timeout"])
        except BaseException:
            self.remove_copy(HeldCopy(runtime=self.name, original=plan.original, original_id=plan.original_id,
                                      name=plan.request["name"], id=container_id or plan.request["name"],
                                      target="", details={"volume": volume}))
            raise
        return HeldCopy(runtime=self.name, original=plan.original, original_id=plan.original_id,
                        name=plan.request["name"], id=container_id, target=self.copy_ref(plan.request["name"]),
                        details={"volume": volume})

    def fill_holder_volume(self, volume: str, toolbox: str, labels: dict) -> None:
        """A volume with the toolbox's readable helper: an empty named volume mounted over
        the image's directory is filled from it (Docker at create, Podman at start); the
        throwaway container runs that very copy once (--version) to prove it is there."""
        self.api.create_volume(volume, labels={LABEL_MANAGED: "copy-volume",
                                               LABEL_SESSION: labels.get(LABEL_SESSION, "")})
        source_dir = os.path.dirname(HOLDER_SOURCE)
        filler = self.api.create_container({
            "Image": toolbox, "Entrypoint": [HOLDER_SOURCE, "--version"], "Cmd": None,
            "Labels": {LABEL_MANAGED: "probe"},
            "HostConfig": {"Mounts": [{"Type": "volume", "Source": volume, "Target": source_dir}],
                           "NetworkMode": "none", "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"]},
        })["Id"]
        try:
            self.api.start(filler)
            deadline = time.monotonic() + 30
            while True:
                state = self.api.inspect_container(filler).get("State") or {}
                if state.get("Status") not in ("created", "running"):
                    break
                if time.monotonic() > deadline:
                    raise DebugkitError(f"filling the copy's helper volume from {toolbox} took over 30 s")
                time.sleep(HOLD_POLL_S)
            if state.get("ExitCode") != 0:
                raise ImageMissing(f"the toolbox {toolbox!r} could not give its helper to the copy (exit "
                                   f"{state.get('ExitCode')})", hint=self.rebuild_hint(toolbox))
        finally:
            self.remove_container(filler)

    def wait_held(self, container_id: str, name: str, *, timeout: float) -> None:
        """Until the copy's holder runs; the copy ending first is one clear error."""
        deadline = time.monotonic() + max(5.0, timeout)
        while True:
            state = self.api.inspect_container(container_id).get("State") or {}
            if state.get("Status") == RUNNING and state.get("Pid"):
                return
            if state.get("Status") in ("exited", "dead"):
                raise DebugkitError(f"the held copy {name} ended at once (exit {state.get('ExitCode')}): "
                                    f"{state.get('Error') or 'see ' + self.cli + ' logs ' + name}")
            if time.monotonic() > deadline:
                raise DebugkitError(f"the held copy {name} did not start within {int(timeout)} s")
            time.sleep(HOLD_POLL_S)

    def remove_copy(self, copy: HeldCopy) -> None:
        from debugkit.runtimes.docker.engine import EngineError, EngineNotFound

        deadline = time.monotonic() + REMOVE_WAIT_S
        while True:
            try:
                self.api.remove_container(copy.id, force=True)
                break
            except EngineNotFound:
                break
            except (EngineError, OSError) as exc:
                # Podman refuses while the session's sidecar (which joined the copy's
                # namespaces, and removes itself) still exists: "has dependent containers".
                if time.monotonic() > deadline:
                    raise DebugkitError(f"cannot remove the held copy {copy.name}: {exc}") from None
                time.sleep(0.1)
        volume = (copy.details or {}).get("volume")
        if volume:
            for _attempt in range(20):  # the engine may still be releasing the removed container's mount
                try:
                    self.api.remove_volume(volume)
                    return
                except EngineNotFound:
                    return
                except (EngineError, OSError):
                    time.sleep(0.1)
            with contextlib.suppress(EngineError, OSError):
                self.api.remove_volume(volume)
