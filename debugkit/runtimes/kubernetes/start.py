"""Starting a debug container and waiting until it runs: the PATCH of
pods/ephemeralcontainers, then a probe exec until the container answers (bounded by
--timeout, with the kubelet's waiting reasons shown as they change), and a timeout that
says why (an image the node cannot pull, and how to fix that). Mixed into
KubernetesRuntime, whose API client and exec streams it uses.
"""
from __future__ import annotations

import time
from typing import Callable, TypeVar

from debugkit.core.errors import DebugkitError, EphemeralContainersUnavailable, Interrupted, Timeout
from debugkit.core.reuse import refusal_line
from debugkit.runtimes import reuse_records
from debugkit.core.escape import safe
from debugkit.runtimes.base import Plan
from debugkit.runtimes.kubernetes import translate
from debugkit.runtimes.kubernetes.errors import api_error, client_errors, status_and_message
from debugkit.runtimes.kubernetes.identity import PodTarget
from debugkit.runtimes.kubernetes.nodepod import is_node_plan
from debugkit.runtimes.kubernetes.stream import ContainerNotReady, drain_and_close
from debugkit.runtimes.terminal import write_output

T = TypeVar("T")

# wait_ready probes a new debug container with an exec: every PROBE_FIRST_S while a
# container usually starts (PROBE_STEADY_S: each sleep is time the person waits for, half
# an interval on average; a refused exec costs the API server and the kubelet a few ms),
# then PROBE_BACKOFF times longer each time, at most every PROBE_MAX_S. A fleet
# (concurrency > 1) backs off from the first probe: its containers start together on busy
# nodes, where a stream of exec upgrades would slow them all (docs/fleet.md), and from a
# longer first interval, PROBE_FLEET_FIRST_S.
PROBE_FIRST_S, PROBE_STEADY_S, PROBE_BACKOFF, PROBE_MAX_S = 0.025, 1.5, 1.5, 0.25
PROBE_FLEET_FIRST_S = 0.05
# Waiting reasons every start goes through: not worth a line on a scripted command's stderr.
ROUTINE_REASONS = {"ContainerCreating", "PodInitializing"}
# Waiting reasons that more waiting will not cure (a pull, by contrast, may succeed on a retry).
DEFINITIVE_REASONS = {"RunContainerError", "CreateContainerError", "CreateContainerConfigError", "InvalidImageName",
                      "ErrImageNeverPull"}
# Waiting reasons that mean the node cannot get the image: a start timeout then says which
# image and what to do about it.
PULL_FAILURES = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
                 "RegistryUnavailable", "ImageInspectError", "SignatureValidationFailed"}


def short_reason(text: str, *, keep: int = 70) -> str:
    """`REASON: MESSAGE` for one terminal line: the kubelet's messages chain their causes
    (`failed to pull ...: failed to resolve ...: dial tcp ...: connection refused`), so the
    end of a long one is kept, not its start."""
    reason, sep, message = text.partition(": ")
    if len(message) <= keep:
        return text
    return f"{reason}{sep}…{message[-keep:]}"



class DebugContainerStart:
    """Launch a debug container and wait for it (see the module's docstring)."""

    def launch(self, pt: PodTarget, container: dict) -> None:
        try:
            self.api.add_ephemeral_container(pt.namespace, pt.pod_name, container)
        except client_errors() as exc:
            if status_and_message(exc)[0] == 404:
                # The pod was there a moment ago: a bare 404 means the subresource is missing.
                raise EphemeralContainersUnavailable(
                    "ephemeral containers are not available in this cluster (pods/ephemeralcontainers: 404)"
                ) from exc
            raise api_error(exc, verb="patch", resource="pods/ephemeralcontainers",
                            namespace=pt.namespace, name=pt.pod_name) from exc

    @staticmethod
    def debug_status(pod: dict, name: str) -> dict:
        """The status of debug container `name`: an ephemeral one, or the container of a node
        debugging pod."""
        status = pod.get("status", {})
        for st in (status.get("ephemeralContainerStatuses") or []) + (status.get("containerStatuses") or []):
            if st["name"] == name:
                return st
        return {}

    def waiting_state(self, pt: PodTarget, name: str) -> dict:
        return self.debug_status(self.read_pod(pt.namespace, pt.pod_name), name).get("state") or {}

    def ensure_container(self, plan: Plan, *, on_waiting: Callable[[str], None] | None = None,
                         open_first: Callable[[str], T] | None = None) -> tuple[str, T | None]:
        """The running debug container the plan uses: the one it reuses, or a new one. A
        reused one that fails to start is dropped, and a new one starts in its place.

        With `open_first` (a function of the container's name that opens the command's exec
        and raises ContainerNotReady, at the handshake, while the container is not running):
        a new container is not probed with a no-op first; the command's own exec is the
        probe, which saves the no-op's exec (50-100 ms on a container that has just started).
        Returns the name and what `open_first` returned (None without it)."""
        if is_node_plan(plan):
            name = self.create_node_pod(plan, on_waiting=on_waiting)
            return name, open_first(name) if open_first else None
        pt = plan.details.pod_target
        if plan.reuse is not None:
            ready = "running" in (self.debug_status(pt.pod, plan.reuse).get("state") or {})
            if not ready:
                try:
                    self.wait_ready(plan, name=plan.reuse, on_waiting=on_waiting)
                    ready = True
                except (Interrupted, ContainerNotReady):
                    raise
                except DebugkitError as exc:
                    reuse_records.forget(self.name, pt.uid, plan.details.reuse_key, plan.reuse)
                    if on_waiting:
                        on_waiting(refusal_line(plan.reuse, str(exc)))
            if ready:
                return plan.reuse, open_first(plan.reuse) if open_first else None
        self.launch(pt, plan.request)
        if plan.details.reuse_key and plan.keep_alive:
            reuse_records.remember(self.name, pt.uid, plan.details.reuse_key,
                                   reuse_records.Record(plan.spec.name, plan.spec.name))
        name = plan.spec.name
        if open_first is None:
            self.wait_ready(plan, name=name, on_waiting=on_waiting)
            return name, None
        return name, self.wait_ready(plan, name=name, on_waiting=on_waiting, probe=lambda: open_first(name))

    def wait_ready(self, plan: Plan, *, name: str, on_waiting: Callable[[str], None] | None = None,
                   probe: Callable[[], T] | None = None) -> T | None:
        """Exec a no-op until it runs (or call `probe` until it raises no ContainerNotReady,
        and return what it returns). The kubelet finds a new container in the runtime about
        a second before the API status says `running`, so this beats watching the pod; the
        pod is read every half second only for waiting reasons (ErrImagePull...)."""
        from debugkit.runtimes.kubernetes.websocket import container_not_found

        pt, timeout = plan.details.pod_target, plan.details.timeout
        no_op = [translate.HELPER, "--version"] if plan.helper else ["true"]
        started = time.monotonic()
        deadline = started + timeout
        next_look, last_reason = started + 0.5, "not yet created"
        messages: dict[str, str] = {}  # the last message of each waiting reason, for a timeout
        pause = PROBE_FIRST_S if self.concurrency <= 1 else PROBE_FLEET_FIRST_S
        while True:
            try:
                if probe is not None:
                    return probe()
                ws = self.stream(pt, name, no_op, stdin=False, tty=False)
                drain_and_close(ws, wait=0.1)
                if ws.exit_code() is not None or ws.exec_failure_code() is not None:
                    return None  # it ran (a foreign image without `true` still proves the container runs)
                if not container_not_found(ws.status()):
                    raise DebugkitError(f"debug container {name}: {ws.status()}")
            except ContainerNotReady:
                pass
            now = time.monotonic()
            if now >= next_look:
                next_look = now + 0.5
                state = self.waiting_state(pt, name)
                if "terminated" in state:
                    ended = state["terminated"]
                    raise DebugkitError(f"debug container {name} ended at once: "
                                        f"{ended.get('reason')} (exit {ended.get('exitCode')})")
                reason = (state.get("waiting") or {}).get("reason")
                message = (state.get("waiting") or {}).get("message")
                if reason and message:
                    messages[reason] = message
                if reason and reason != last_reason:
                    last_reason = reason
                    if on_waiting and reason not in ROUTINE_REASONS:
                        on_waiting(f"{reason}: {message}" if message else reason)
                if reason in DEFINITIVE_REASONS:
                    raise DebugkitError(f"debug container {name} cannot start: {reason}: {safe(message or '')}")
            if now >= deadline:
                raise self.start_timeout(plan, last_reason, messages)
            time.sleep(pause)
            # Each probe is an exec through the API server and the kubelet (a few ms each
            # when the container is not there yet): after the usual start time, back off, so
            # that a slow start (or a fleet's many) does not become a stream of upgrades.
            if self.concurrency > 1 or now - started >= PROBE_STEADY_S:
                pause = min(pause * PROBE_BACKOFF, PROBE_MAX_S)

    def start_timeout(self, plan: Plan, reason: str, messages: dict[str, str]) -> Timeout:
        """The debug container did not start in time: why, and, when the node could not pull
        the image, which image, why the pull failed and what to do about it."""
        name, timeout, image = plan.spec.name, plan.details.timeout, plan.spec.image
        if reason not in PULL_FAILURES:
            return Timeout(f"debug container {name} did not start within {timeout:g}s (last state: {reason})")
        detail = f"{reason}: {messages[reason]}" if reason in messages else reason
        if reason == "ImagePullBackOff" and "ErrImagePull" in messages:
            # The back-off only says "Back-off pulling image"; the failed pull said why.
            detail = f"{reason}; the last pull failed with: {messages['ErrImagePull']}"
        if plan.helper:  # the toolbox, not an --image of the person's choosing
            context = f" --context {self.context_name}" if self.context_name else ""
            hint = (f"the node pulls the toolbox from a registry: push it to one the node can reach and make "
                    f"that the default, with: debugkit toolbox push REGISTRY/REPOSITORY --set-default{context}; "
                    f"if the image is already there, check the node's access to its registry (network, TLS, "
                    f"the pod's imagePullSecrets)")
        else:
            hint = ("check that the image exists in its registry and that the node can pull it (network, TLS, "
                    "the pod's imagePullSecrets)")
        return Timeout(f"debug container {name} did not start within {timeout:g}s: the node cannot pull the "
                       f"image {image} (last state: {detail})", hint=hint)

    def start_showing_waits(self, plan: Plan, stderr, *,
                            open_first: Callable[[str], T] | None = None) -> tuple[str, T | None]:
        """ensure_container, with the waiting reasons on stderr: on a terminal one line,
        rewritten as the reason changes and erased once the container runs (before any
        output of the command `open_first` opens); elsewhere a `debugkit: waiting: REASON`
        line for each reason that is not routine."""
        from debugkit.core.statusline import StatusLine, is_live_terminal

        if plan.reuse is not None or not is_live_terminal(stderr):
            def on_waiting(reason: str) -> None:
                write_output(stderr, f"debugkit: waiting: {safe(reason)}\n".encode())

            return self.ensure_container(plan, on_waiting=on_waiting, open_first=open_first)
        with StatusLine.over_binary(stderr) as status:
            status.update(f"debugkit: starting debug container {plan.spec.name} ({plan.spec.image})")
            return self.ensure_container(plan, open_first=open_first, on_waiting=lambda reason: status.update(
                f"debugkit: waiting: {short_reason(reason)}"))
