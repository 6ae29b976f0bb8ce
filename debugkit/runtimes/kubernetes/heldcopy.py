"""Held copies of pods (attach --copy pod/NAME): the Runtime protocol's plan_copy,
hold_copy and remove_copy, mixed into KubernetesRuntime. The copy pod is a pure
translation (copyspec.py); here the original pod is read (never changed), the image's
entrypoint is read when the spec has no command (the local engine when it holds that very
image, else the registry), and the copy is created, waited for and deleted.
"""
from __future__ import annotations

import os
import socket
import time

from debugkit.core.errors import DebugkitError, InvalidInput, PolicyRejected, TargetNotFound
from debugkit.core.targets import PodRef
from debugkit.runtimes.base import LABEL_COPY_KEEP, LABEL_COPY_OF, CopyPlan, CopyRequest, HeldCopy
from debugkit.runtimes.kubernetes import copyspec, podsecurity
from debugkit.runtimes.kubernetes.errors import api_error, client_errors, status_and_message

POLL_S = 0.1
DELETE_WAIT_S = 60
# Waiting reasons after which a copy will not start by itself.
HOPELESS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
            "CreateContainerError", "RunContainerError")


class KubernetesCopies:
    """plan_copy, hold_copy, remove_copy over the runtime's API client."""

    def plan_copy(self, request: CopyRequest) -> CopyPlan:
        from debugkit.core.spec import LABEL_MANAGED

        ref = request.ref
        if not isinstance(ref, PodRef):
            raise InvalidInput(f"{ref} is not a pod: --copy takes pod/NAME or k8s://NAMESPACE/POD")
        pt = self.find_target(ref, require_running=False)
        labels = pt.pod["metadata"].get("labels") or {}
        if labels.get(LABEL_MANAGED) == "true":
            raise TargetNotFound(f"pod {pt.namespace}/{pt.pod_name} is itself a held copy: attach to it, or copy "
                                 f"its original")
        config = image_config(pt) if copyspec.needs_image_config(pt.container_spec) else None
        run = copyspec.program(pt.container_spec, config)
        name = copyspec.copy_name(pt.pod_name, request.session_id)
        asked = dict(run=run, name=name, session_id=request.session_id, local_user=request.local_user,
                     toolbox=request.toolbox, writable=request.writable, same_node=request.same_node,
                     keep=request.keep, cli_pid=os.getpid(), cli_host=socket.gethostname())
        pod, dropped = copyspec.copy_pod(pt.pod, pt.container, **asked)
        fallback, _ = copyspec.copy_pod(pt.pod, pt.container, holder="init", **asked)
        self.admit_copy(pt.namespace, pod)
        reuse = self.kept_copy(pt, pod["metadata"]["labels"]) if request.keep else None
        return CopyPlan(runtime=self.name, original=pt.name, original_id=pt.uid, name=name, request=pod,
                        program=tuple(run), dropped=tuple(dropped), reuse=reuse,
                        details={"namespace": pt.namespace, "container": pt.container, "timeout": request.timeout,
                                 "fallback": fallback})

    def admit_copy(self, namespace: str, pod: dict) -> None:
        """The namespace's PodSecurity level, checked for both containers before anything is sent."""
        level = self.enforce_level(namespace)
        pod_sc = pod["spec"].get("securityContext") or {}
        found = []
        for container in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            found += podsecurity.violations(level, container, pod_sc)
        if found:
            raise PolicyRejected(f"namespace {namespace} enforces PodSecurity {level!r}, which would reject the "
                                 f"held copy: " + "; ".join(found))

    def kept_copy(self, pt, labels: dict) -> str | None:
        from debugkit.core.spec import LABEL_LOCAL_USER, LABEL_MANAGED

        selector = ",".join([f"{LABEL_MANAGED}=true", f"{LABEL_COPY_OF}={pt.uid}",
                             f"{LABEL_LOCAL_USER}={labels[LABEL_LOCAL_USER]}", f"{LABEL_COPY_KEEP}=true"])
        pods = self.call(self.api.list_pods, pt.namespace, selector, verb="list", resource="pods",
                         namespace=pt.namespace)
        for pod in pods.get("items") or []:
            if pod.get("status", {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp"):
                return pod["metadata"]["name"]
        return None

    def hold_copy(self, plan: CopyPlan) -> HeldCopy:
        ns, ctr = plan.details["namespace"], plan.details["container"]
        if plan.reuse is not None:
            pod = self.read_pod(ns, plan.reuse)
            return HeldCopy(runtime=self.name, original=plan.original, original_id=plan.original_id, name=plan.reuse,
                            id=pod["metadata"]["uid"], target=f"k8s://{ns}/{plan.reuse}/{ctr}", reused=True,
                            details={"namespace": ns})
        created = self.create_copy(ns, plan)
        held = HeldCopy(runtime=self.name, original=plan.original, original_id=plan.original_id, name=plan.name,
                        id=created["metadata"].get("uid", ""), target=f"k8s://{ns}/{plan.name}/{ctr}",
                        details={"namespace": ns})
        try:
            self.wait_held(ns, plan.name, ctr, timeout=plan.details["timeout"])
        except BaseException:
            self.remove_copy(held)
            raise
        return held

    def create_copy(self, namespace: str, plan: CopyPlan) -> dict:
        """The copy pod with the toolbox as an image volume; where the API server refuses
        one (no ImageVolume: the field is dropped and the volume has no source, 422; a
        PodSecurity that predates it, 403), the same pod with an init container instead."""
        try:
            return self.api.create_pod(namespace, plan.request)
        except client_errors() as exc:
            status, message = status_and_message(exc)
            refused_volume = status == 422 or (status == 403 and "PodSecurity" in (message or ""))
            if not refused_volume:
                raise api_error(exc, verb="create", resource="pods", namespace=namespace, name=plan.name) from exc
        fallback = plan.details["fallback"]
        self.admit_copy(namespace, fallback)
        return self.call(self.api.create_pod, namespace, fallback, verb="create", resource="pods",
                         namespace=namespace, name=plan.name)

    def wait_held(self, namespace: str, name: str, container: str, *, timeout: float) -> None:
        """Until the copy's holder runs; a copy that cannot start is one clear error."""
        deadline = time.monotonic() + timeout
        while True:
            pod = self.read_pod(namespace, name)
            status = pod.get("status") or {}
            for st in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
                state = st.get("state") or {}
                if st.get("name") == container and "running" in state:
                    return
                waiting, ended = state.get("waiting") or {}, state.get("terminated") or {}
                if waiting.get("reason") in HOPELESS or (ended and ended.get("exitCode") != 0) or \
                        (st.get("name") == container and ended):
                    why = waiting.get("reason") or ended.get("reason") or f"exit {ended.get('exitCode')}"
                    detail = waiting.get("message") or ended.get("message") or ""
                    raise DebugkitError(f"the held copy {namespace}/{name} could not start its {st.get('name')} "
                                        f"container: {why}{': ' + detail.strip()[:300] if detail else ''}")
            if status.get("phase") in ("Failed", "Succeeded"):
                raise DebugkitError(f"the held copy {namespace}/{name} ended at once ({status.get('phase')})")
            if time.monotonic() > deadline:
                raise DebugkitError(f"the held copy {namespace}/{name} did not start within {int(timeout)} s",
                                    hint="see kubectl describe pod; --timeout waits longer")
            time.sleep(POLL_S)

    def remove_copy(self, copy: HeldCopy) -> None:
        ns = (copy.details or {}).get("namespace")
        try:
            self.api.delete_pod(ns, copy.name, uid=copy.id or None)
        except client_errors() as exc:
            if status_and_message(exc)[0] == 404:
                return
            raise api_error(exc, verb="delete", resource="pods", namespace=ns, name=copy.name) from exc
        deadline = time.monotonic() + DELETE_WAIT_S
        while time.monotonic() < deadline:  # gone means gone: the test (and the person) look right after
            try:
                self.api.read_pod(ns, copy.name)
            except client_errors() as exc:
                if status_and_message(exc)[0] == 404:
                    return
                raise api_error(exc, verb="get", resource="pods", namespace=ns, name=copy.name) from exc
            time.sleep(POLL_S)


def image_config(pt) -> dict:
    """The image's ENTRYPOINT and CMD (the spec has no command): from the local engine when it
    holds exactly the image the node runs, else from the registry."""
    image = pt.container_spec.get("image", "")
    image_id = pt.container_status.get("imageID") or ""
    from debugkit.runtimes.kubernetes.identity import local_engine_config

    local = local_engine_config(image, image_id)
    if local is not None:
        return local
    from debugkit.runtimes.kubernetes.registry import RegistryClient, RegistryError, parse_ref

    ref = image_id.removeprefix("docker-pullable://") if "@sha256:" in image_id else image
    try:
        client = RegistryClient(parse_ref(ref))
        config = client.config(client.manifest()).get("config") or {}
    except RegistryError as exc:
        raise DebugkitError(f"cannot read the entrypoint of {image} (the container has no command): {exc}") from exc
    return config if isinstance(config, dict) else {}
