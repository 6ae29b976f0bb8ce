"""The Kubernetes runtime: an ephemeral debug container with targetContainerName.

plan: find the pod and container, resolve the identity, build the container as plain
data (translate.py), pre-check PodSecurity against the namespace's label. run: PATCH
pods/ephemeralcontainers, watch until it starts (bounded, printing waiting reasons),
attach, and exit with the container's real exit code.
"""
from __future__ import annotations

import datetime as dt
import math
import os
import socket
import time
from typing import Callable

from debugkit.core.errors import (
    DebugkitError,
    EphemeralContainersUnavailable,
    InvalidInput,
    PolicyRejected,
    TargetNotFound,
    TargetNotRunning,
    Timeout,
)
from debugkit.core.escape import safe
from debugkit.core.options import SidecarOptions
from debugkit.core.profiles import apply_profile
from debugkit.core.spec import ENV_SESSION, base_spec
from debugkit.runtimes.base import Plan, ResolvedTarget, Runtime, SessionRow, Streams, local_user
from debugkit.runtimes.kubernetes import podsecurity, translate
from debugkit.runtimes.kubernetes.errors import api_error
from debugkit.runtimes.kubernetes.identity import PodIdentity, PodTarget
from debugkit.runtimes.kubernetes.stream import KubeExecSession, pump
from debugkit.runtimes.terminal import write_output

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
# Waiting reasons every start goes through: not worth a line on a scripted command's stderr.
ROUTINE_REASONS = {"ContainerCreating", "PodInitializing"}


class KubernetesRuntime(Runtime):
    name = "kubernetes"

    def __init__(self, *, kubeconfig: str | None = None, context: str | None = None, api=None,
                 default_namespace: str = "default"):
        self._kubeconfig = kubeconfig
        self._context = context
        self._api = api
        self._default_namespace = default_namespace

    @property
    def api(self):
        if self._api is None:
            from debugkit.runtimes.kubernetes.kubeapi import connect

            self._api, self._default_namespace = connect(kubeconfig=self._kubeconfig, context=self._context)
        return self._api

    @property
    def default_namespace(self) -> str:
        self.api  # noqa: B018 - loading the config sets it
        return self._default_namespace

    def call(self, fn, *args, verb: str, resource: str, namespace: str, name: str = "", **kwargs):
        try:
            return fn(*args, **kwargs)
        except DebugkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - the client's API and transport errors
            raise api_error(exc, verb=verb, resource=resource, namespace=namespace, name=name) from exc

    # -- the target -------------------------------------------------------------------

    def read_pod(self, namespace: str, name: str) -> dict:
        return self.call(self.api.read_pod, namespace, name, verb="get", resource="pods",
                         namespace=namespace, name=name)

    def find_target(self, ref, *, require_running: bool = True) -> PodTarget:
        namespace = ref.namespace or self.default_namespace
        pod = self.read_pod(namespace, ref.pod)
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = ref.container
        if container is None:
            annotated = (pod["metadata"].get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
            if annotated in names:
                container = annotated
            elif len(names) == 1:
                container = names[0]
            else:
                raise InvalidInput(f"pod {ref.pod} has several containers; choose one with -c: {', '.join(names)}")
        if container not in names:
            raise TargetNotFound(f"container {container!r} not found in pod {namespace}/{ref.pod} "
                                 f"(containers: {', '.join(names)})")
        pt = PodTarget(namespace, ref.pod, container, pod)
        if require_running:
            phase = pod.get("status", {}).get("phase")
            state = pt.container_status.get("state") or {}
            if phase != "Running" or "running" not in state:
                why = next(iter(state), phase or "unknown")
                raise TargetNotRunning(f"container {pt.name} is not running ({why})")
        return pt

    # -- plan -----------------------------------------------------------------------------

    def plan(self, options: SidecarOptions, *, mode: str, thorough: bool = False) -> Plan:
        pt = self.find_target(options.target)
        identities = PodIdentity(self.api, pt)
        sources = identities.sources(stop_at_first=not thorough)
        identity = identities.resolve(options.user, sources)
        spec = base_spec(
            image=options.sidecar_image, identity=identity, target_name=pt.name, target_id=pt.uid,
            runtime=self.name, command=options.command, stdin=options.stdin, tty=options.tty,
            session_id=options.session_id, cli_pid=os.getpid(), cli_host=socket.gethostname(),
            local_user=local_user(),
        )
        spec = apply_profile(spec, options.profile)
        scripted = bool(options.command) and not options.tty
        if mode == "exec":
            container_spec = spec.evolve(command=translate.KEEPALIVE, stdin=True, tty=False)
        elif scripted:
            # Scripted commands go through the gate and always attach stdin.
            gated = translate.gate(spec.command, seconds=int(options.timeout) + 60)
            container_spec = spec.evolve(command=gated, stdin=True)
        else:
            container_spec = spec.evolve(stdin=True)
        container = translate.ephemeral_container(container_spec, target_container=pt.container,
                                                  custom=options.custom)
        level = self.enforce_level(pt.namespace)
        found = podsecurity.violations(level, container, pt.pod_security_context)
        facts = {"pod_target": pt, "timeout": options.timeout, "scripted": scripted, "level": level,
                 "admitted": not found}
        if found and not thorough:
            raise PolicyRejected(
                f"namespace {pt.namespace} enforces PodSecurity {level!r}, which rejects profile "
                f"{spec.profile!r}: " + "; ".join(found),
                hint="use --profile restricted" if spec.profile != "restricted" else None,
            )
        target = ResolvedTarget(runtime=self.name, name=pt.name, id=pt.uid, image=pt.container_spec.get("image", ""),
                                namespace=pt.namespace, pod=pt.pod_name, container=pt.container)
        return Plan(runtime=self.name, mode=mode, target=target, spec=spec, request=container,
                    sources=tuple(sources), image={"image_id": None, "image_digest": None}, facts=facts)

    # -- policy -----------------------------------------------------------------------

    def enforce_level(self, namespace: str) -> str | None:
        try:
            ns = self.api.read_namespace(namespace)
        except Exception as exc:  # noqa: BLE001
            from debugkit.runtimes.kubernetes.errors import status_and_message

            if status_and_message(exc)[0] == 403:
                return None  # cannot read it: the API server will still enforce; we cannot pre-check
            raise api_error(exc, verb="get", resource="namespaces", namespace=namespace, name=namespace) from exc
        return (ns.get("metadata", {}).get("labels") or {}).get(podsecurity.ENFORCE_LABEL)

    # -- the debug container ----------------------------------------------------------

    def launch(self, pt: PodTarget, container: dict) -> None:
        if pt.pod["spec"].get("ephemeralContainers"):
            patch = [{"op": "add", "path": "/spec/ephemeralContainers/-", "value": container}]
        else:
            patch = [{"op": "add", "path": "/spec/ephemeralContainers", "value": [container]}]
        try:
            self.api.patch_ephemeral_containers(pt.namespace, pt.pod_name, patch)
        except Exception as exc:  # noqa: BLE001
            from debugkit.runtimes.kubernetes.errors import status_and_message

            if status_and_message(exc)[0] == 404:
                # The pod was there a moment ago: a bare 404 means the subresource is missing.
                raise EphemeralContainersUnavailable(
                    "ephemeral containers are not available in this cluster (pods/ephemeralcontainers: 404)"
                ) from exc
            raise api_error(exc, verb="patch", resource="pods/ephemeralcontainers",
                            namespace=pt.namespace, name=pt.pod_name) from exc

    @staticmethod
    def debug_status(pod: dict, name: str) -> dict:
        for st in pod.get("status", {}).get("ephemeralContainerStatuses") or []:
            if st["name"] == name:
                return st
        return {}

    def wait_for(self, pt: PodTarget, name: str, *, until: str, timeout: float,
                 on_reason: Callable[[str], None] | None = None) -> dict:
        """Watch the pod until the debug container is `running` (or already terminated)
        or, with until="terminated", has terminated; return its state."""
        deadline = time.monotonic() + timeout
        last_reason = "not yet created"
        while True:
            pod = self.read_pod(pt.namespace, pt.pod_name)
            state = self.debug_status(pod, name).get("state") or {}
            if "terminated" in state or (until == "running" and "running" in state):
                return state
            if "waiting" in state:
                reason = state["waiting"].get("reason") or "Waiting"
                message = state["waiting"].get("message")
                if reason != last_reason:
                    last_reason = reason
                    if on_reason and reason not in ROUTINE_REASONS:
                        on_reason(f"{reason}: {message}" if message else reason)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"debug container {name} did not {'start' if until == 'running' else 'finish'} "
                              f"within {timeout:g}s (last state: {last_reason})")
            events = self.api.watch_pod(pt.namespace, pt.pod_name,
                                        resource_version=pod["metadata"]["resourceVersion"],
                                        timeout_seconds=max(1, math.ceil(min(remaining, 30))))
            try:
                for _event in events:
                    break  # something changed: re-read and re-check
            except Exception:  # noqa: BLE001 - a dropped watch is not fatal: poll again
                time.sleep(0.2)
            finally:
                events.close()

    def open_stream(self, pt: PodTarget, name: str, *, tty: bool, stdin: bool = True, command=None):
        """A websocket attached to (or exec'd in, with command) the debug container."""
        flag = {True: "true", False: "false"}
        query = [("container", name), ("stdin", flag[stdin]), ("stdout", "true"), ("stderr", flag[not tty]),
                 ("tty", flag[tty])] + [("command", part) for part in (command or ())]
        path = f"/api/v1/namespaces/{pt.namespace}/pods/{pt.pod_name}/{'exec' if command else 'attach'}"
        try:
            return self.api.websocket(path, query)
        except Exception as exc:  # noqa: BLE001 - API or websocket errors
            raise api_error(exc, verb="create", resource="pods/exec" if command else "pods/attach",
                            namespace=pt.namespace, name=pt.pod_name) from exc

    # -- run ------------------------------------------------------------------------------

    def run(self, plan: Plan, streams: Streams) -> int:
        pt, name, facts = plan.facts["pod_target"], plan.spec.name, plan.facts

        def on_waiting(reason: str) -> None:
            write_output(streams.stderr, f"debugkit: waiting: {safe(reason)}\n".encode())

        self.launch(pt, plan.request)
        state = self.wait_for(pt, name, until="running", timeout=facts["timeout"], on_reason=on_waiting)
        if "running" in state:
            ws = self.open_stream(pt, name, tty=plan.spec.tty, stdin=True)
            try:
                pump(ws, tty=plan.spec.tty, gate=facts["scripted"],
                     stdin=streams.stdin if (plan.spec.stdin or plan.spec.tty) else None,
                     stdout=streams.stdout, stderr=streams.stderr)
            finally:
                ws.close()
        # After the stream ends the container is finishing; the exit code is in its status.
        final = self.wait_for(pt, name, until="terminated", timeout=max(facts["timeout"], 30))
        code = int(final["terminated"].get("exitCode", 1))
        if facts["scripted"] and code == 125 and final["terminated"].get("reason") == "Error" \
                and "running" not in state:
            raise DebugkitError("the debug container ended before debugkit could attach to it")
        return code

    def open_exec(self, plan: Plan) -> KubeExecSession:
        return KubeExecSession(self, plan)

    # -- inspect, ps, gc ----------------------------------------------------------------

    def inspect(self, plan: Plan) -> dict:
        pt, winner, facts = plan.facts["pod_target"], plan.spec.identity, plan.facts
        ctx = f" --context {self._context}" if self._context else ""
        return {
            "runtime": self.name,
            "namespace": pt.namespace,
            "pod": pt.pod_name,
            "container": pt.container,
            "image": pt.container_spec.get("image"),
            "image_id": pt.container_status.get("imageID"),
            "uid": winner.uid,
            "gid": winner.gid,
            "groups": list(winner.groups),
            "user_name": winner.user_name,
            "source": winner.source,
            "notes": list(winner.notes),
            "sources": [s.as_dict() for s in plan.sources],
            "pod_security_enforce": facts["level"],
            "profile": plan.spec.profile,
            "admitted_by_namespace": facts["admitted"],
            "zombies": None,
            "ephemeral_container": plan.request,
            "attach_command": (f"debugkit attach k8s://{pt.namespace}/{pt.pod_name}/{pt.container}{ctx}"
                               f" --profile {plan.spec.profile}"),
        }

    def sessions(self, namespace: str | None = None) -> list[SessionRow]:
        """debugkit's ephemeral containers, running or terminated, across namespaces."""
        pods = self.call(self.api.list_pods, namespace, verb="list", resource="pods",
                         namespace=namespace or "(all namespaces)")
        rows = []
        now = dt.datetime.now(dt.timezone.utc)
        for pod in pods.get("items") or []:
            for ctr in pod["spec"].get("ephemeralContainers") or []:
                if not ctr["name"].startswith(translate.NAME_PREFIX):
                    continue
                env = {e["name"]: e.get("value") for e in ctr.get("env") or []}
                sc = ctr.get("securityContext") or {}
                state = self.debug_status(pod, ctr["name"]).get("state") or {}
                kind = next(iter(state), "pending")
                started = (state.get(kind) or {}).get("startedAt")
                age = int((now - dt.datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds()) \
                    if started else 0
                label = kind if kind != "terminated" else f"exited({state[kind].get('exitCode')})"
                rows.append(SessionRow(
                    runtime=self.name, session=env.get(ENV_SESSION, ctr["name"][len(translate.NAME_PREFIX):]),
                    name=ctr["name"], target=f"{pod['metadata']['name']}/{ctr.get('targetContainerName', '')}",
                    user=f"{sc.get('runAsUser', '?')}:{sc.get('runAsGroup', '?')}",
                    state="running" if kind == "running" else label, age_s=age,
                    namespace=pod["metadata"]["namespace"],
                ))
        return rows

    def remove(self, row: SessionRow) -> None:
        raise DebugkitError("ephemeral containers cannot be deleted; they end with their process or their pod")

