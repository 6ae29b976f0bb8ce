"""Node debugging (node/NAME): a pod pinned to the node with the host's PID and network
namespaces and its / at /host (nodepod.py translates it), planned by the same skeleton as
a debug container, created only after the namespace's PodSecurity level was checked,
labelled and audited as soon as it exists, and deleted when the session ends. `ps` lists
these pods and `gc` deletes one whose CLI died (SIGKILL leaves no time for a finally).

Mixed into KubernetesRuntime: its hooks hand a NodeRef's plan to the methods here.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import time

from debugkit.core.errors import DebugkitError, Forbidden, PolicyRejected, TargetNotFound, Timeout
from debugkit.core.escape import safe
from debugkit.core.identity import Identity
from debugkit.core.spec import LABEL_CLI_HOST, LABEL_CLI_PID, LABEL_PROFILE, LABEL_REASON, LABEL_SESSION
from debugkit.core.targets import NodeRef, names_a_node
from debugkit.runtimes.base import (Admission, Draft, Expansion, IdentitySource, Located, Member, Plan,
                                    ResolvedTarget, SessionRow, TargetReport, Translation)
from debugkit.runtimes.kubernetes import nodepod, podsecurity
from debugkit.runtimes.kubernetes.nodepod import NodePlan, NodePod, NodeTarget
from debugkit.runtimes.kubernetes.errors import api_error, client_errors, status_and_message
from debugkit.runtimes.kubernetes.start import DEFINITIVE_REASONS, PULL_FAILURES
from debugkit.runtimes.kubernetes.stream import KubeExecSession

SOURCE_NODE = "node"
ROOT = Identity(uid=0, gid=0, source=SOURCE_NODE, notes=("a node debugging pod runs as root",))
# How often the pod is read while it starts: the kubelet reports `running` within a
# second of the container's start.
POLL_S = 0.1


class NodeDebugging:
    """The node/NAME side of KubernetesRuntime (see the module's docstring)."""

    # -- the plan's hooks -------------------------------------------------------------------

    def locate_node(self, options) -> Located:
        ref = options.target
        namespace = ref.namespace or self.default_namespace
        try:
            node = self.api.read_node(ref.node)
        except client_errors() as exc:
            status = status_and_message(exc)[0]
            if status == 404:
                raise TargetNotFound(f"node {ref.node} not found") from None
            if status != 403:
                raise api_error(exc, verb="get", resource="nodes", namespace="(cluster)", name=ref.node) from exc
            node = {}  # may not read nodes: the pod's start says whether the node exists (a timeout if not)
        uid = (node.get("metadata") or {}).get("uid", "")
        target = ResolvedTarget(runtime=self.name, name=str(ref), id=uid, image="", namespace=namespace)
        return Located(target=target, details=NodeTarget(node=ref.node, namespace=namespace, uid=uid))

    def expand_nodes(self, many) -> Expansion:
        """-l SELECTOR --nodes: every Ready node whose labels match, each a node/NAME whose
        pod goes to -n or the context's namespace."""
        namespace = many.namespace or self.default_namespace
        found = self.call(self.api.list_nodes, many.selector, verb="list", resource="nodes", namespace="(cluster)")
        members, skipped = [], []
        for node in sorted(found.get("items") or [], key=lambda n: n["metadata"]["name"]):
            name = node["metadata"]["name"]
            ready = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
            if ready.get("Ready") != "True":
                skipped.append((f"node/{name}", "not Ready"))
                continue
            members.append(Member(NodeRef(node=name, namespace=namespace, runtime=self.name), label=f"node/{name}",
                                  namespace=namespace))
        return Expansion(members=tuple(members), skipped=tuple(skipped))

    @staticmethod
    def node_identity_sources() -> list[IdentitySource]:
        return [IdentitySource(source=SOURCE_NODE, identity=ROOT)]

    def node_translate(self, draft: Draft) -> Translation:
        located: NodeTarget = draft.located.details
        pod = nodepod.node_pod(draft.spec, node=located.node, namespace=located.namespace, helper=draft.image.helper)
        container = pod["spec"]["containers"][0]
        warnings = () if draft.image.helper else (
            f"the image {draft.spec.image} may lack debugkit-helper: the node debugging pod then lives a fixed "
            f"minute or more, and `gc` deletes it",)
        return Translation(spec=draft.spec, request=pod, warnings=warnings,
                           security_context=container.get("securityContext"),
                           details=NodePlan(pod_target=NodePod(located.namespace, draft.spec.name), node=located.node,
                                            timeout=draft.options.timeout, created=[]))

    def node_admit(self, draft: Draft, translation: Translation) -> Admission:
        """Host namespaces and a hostPath volume need PodSecurity `privileged`: a namespace
        that enforces less is refused before anything is created, naming one that allows it."""
        namespace = draft.located.details.namespace
        if not draft.thorough:
            self.check_node_rbac(namespace)
        level = self.enforce_level(namespace)
        found = podsecurity.pod_violations(level, translation.request)
        if found and not draft.thorough:
            elsewhere = self.privileged_namespace(exclude=namespace)
            hint = (f"pass -n {elsewhere[0]}: {elsewhere[1]}" if elsewhere else
                    "pass -n NAMESPACE with a namespace whose PodSecurity level is privileged")
            raise PolicyRejected(f"namespace {namespace} enforces PodSecurity {level!r}, which rejects a node "
                                 f"debugging pod: " + "; ".join(found[:3]), hint=hint)
        return Admission(where=f"namespace {namespace}", level=level, reasons=tuple(found))

    def check_node_rbac(self, namespace: str) -> None:
        """Everything a node session does to its pod, asked before it is created: a pod we
        could create but not exec into (websocket exec: `get` and, since Kubernetes 1.35,
        `create` on pods/exec) or not delete would be left behind for nothing."""
        needed = (("create", "pods", None), ("get", "pods", None), ("delete", "pods", None),
                  ("get", "pods", "exec"), ("create", "pods", "exec"))
        try:
            denied = [f"{verb} {resource}/{sub}" if sub else f"{verb} {resource}" for verb, resource, sub in needed
                      if not self.api.self_subject_access_review(verb, resource, namespace, subresource=sub)]
        except client_errors():
            return  # cannot ask: the API server still decides, and the pod is deleted when it refuses
        if denied:
            raise Forbidden(f"forbidden: node debugging in namespace {namespace} needs {', '.join(denied)}",
                            hint="ask for RBAC that grants these verbs, or pass -n with a namespace where you have "
                                 "them (debugkit doctor node/NAME -n NAMESPACE lists them)")

    def privileged_namespace(self, *, exclude: str) -> tuple[str, str] | None:
        """(a namespace whose PodSecurity enforce level is `privileged`, why it admits the pod):
        a labelled one first, else one without a label (the cluster's default); None when
        there is none, or when we may not list namespaces."""
        try:
            found = self.api.list_namespaces(limit=500)
        except client_errors():
            return None
        labelled, unlabelled = [], []
        for ns in found.get("items") or []:
            meta = ns.get("metadata") or {}
            name, level = meta.get("name"), (meta.get("labels") or {}).get(podsecurity.ENFORCE_LABEL)
            if name == exclude or (ns.get("status") or {}).get("phase") == "Terminating":
                continue
            if level == "privileged":
                labelled.append(name)
            elif level is None:
                unlabelled.append(name)
        if labelled:
            return sorted(labelled)[0], "it enforces PodSecurity privileged"
        if unlabelled:
            return sorted(unlabelled)[0], "it has no PodSecurity enforce label: the cluster's default level"
        return None

    @staticmethod
    def node_report(draft: Draft) -> TargetReport:
        return TargetReport(unseen="a node's processes are seen from its debugging pod (hostPID), not from here")

    # -- running ----------------------------------------------------------------------------

    def create_node_pod(self, plan: Plan, *, on_waiting=None) -> str:
        """Create the pod, audit it at once, and wait until its container runs."""
        details: NodePlan = plan.details
        pt = details.pod_target
        try:
            made = self.api.create_pod(pt.namespace, plan.request)
        except client_errors() as exc:
            raise api_error(exc, verb="create", resource="pods", namespace=pt.namespace, name=pt.pod_name) from exc
        uid = (made.get("metadata") or {}).get("uid", "")
        details.created.append(uid)
        if self.on_created is not None:
            self.on_created(plan, uid)
        self.wait_node_pod(plan, on_waiting=on_waiting)
        return plan.spec.name

    def wait_node_pod(self, plan: Plan, *, on_waiting=None) -> None:
        details: NodePlan = plan.details
        pt, name = details.pod_target, plan.spec.name
        deadline = time.monotonic() + details.timeout
        last = None
        while True:
            pod = self.read_pod(pt.namespace, pt.pod_name)
            status = next((s for s in (pod.get("status") or {}).get("containerStatuses") or [] if s["name"] == name),
                          {})
            state = status.get("state") or {}
            if "running" in state:
                return
            if "terminated" in state:
                ended = state["terminated"]
                raise DebugkitError(f"node debugging pod {name} ended at once: {ended.get('reason')} "
                                    f"(exit {ended.get('exitCode')})")
            waiting = state.get("waiting") or {}
            reason, message = waiting.get("reason"), waiting.get("message") or ""
            if reason in DEFINITIVE_REASONS:
                raise DebugkitError(f"node debugging pod {name} cannot start: {reason}: {safe(message)}")
            if reason and reason != last:
                last = reason
                if on_waiting and reason not in ("ContainerCreating", "PodInitializing"):
                    on_waiting(f"{reason}: {message}" if message else reason)
            if time.monotonic() >= deadline:
                why = f"the node cannot pull the image {plan.spec.image}" if reason in PULL_FAILURES else \
                    f"last state: {reason or (pod.get('status') or {}).get('phase') or 'unknown'}"
                raise Timeout(f"node debugging pod {name} did not start within {details.timeout:g}s ({why})")
            time.sleep(POLL_S)

    def delete_node_pod(self, plan: Plan) -> None:
        """Delete the session's pod (that very pod: by UID). Bounded, and never in the way of
        the session's own exit code: `gc` collects what could not be deleted now."""
        details: NodePlan = plan.details
        if not details.created:
            return
        pt = details.pod_target
        try:
            self.api.delete_pod(pt.namespace, pt.pod_name, uid=details.created[0])
        except client_errors() as exc:
            if status_and_message(exc)[0] not in (404, 409):
                with contextlib.suppress(Exception):
                    self.api.warn_once(f"could not delete node debugging pod {pt.namespace}/{pt.pod_name} "
                                       f"({status_and_message(exc)[1]}): `debugkit gc` deletes it")
        details.created.clear()

    def open_node_exec(self, plan: Plan) -> "NodeExecSession":
        return NodeExecSession(self, plan)

    def node_inspect(self, plan: Plan) -> dict:
        details: NodePlan = plan.details
        admission = plan.admission
        ctx = f" --context {self.context_name}" if self.context_name else ""
        return {
            "runtime": self.name,
            "node": details.node,
            "namespace": details.pod_target.namespace,
            "uid": 0, "gid": 0, "groups": [],
            "source": SOURCE_NODE,
            "sources": [s.as_dict() for s in plan.sources],
            "pod_security_enforce": admission.level if admission else None,
            "admitted_by_namespace": admission.admitted if admission else True,
            "admission_reasons": list(admission.reasons) if admission else [],
            "profile": plan.spec.profile,
            "warnings": list(plan.warnings),
            "pod": plan.request,
            "attach_command": (f"debugkit attach node/{details.node} -n {details.pod_target.namespace}{ctx}"
                               f" --profile {plan.spec.profile}"),
        }

    # -- ps and gc ----------------------------------------------------------------------------

    def node_rows(self, namespace: str | None) -> list[SessionRow]:
        pods = self.call(self.api.list_pods, namespace, label_selector=nodepod.NODE_POD_SELECTOR, verb="list",
                         resource="pods", namespace=namespace or "(all namespaces)")
        now = dt.datetime.now(dt.timezone.utc)
        rows = []
        for pod in pods.get("items") or []:
            meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
            labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
            created = meta.get("creationTimestamp")
            age = int((now - dt.datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()) \
                if created else 0
            pid = labels.get(LABEL_CLI_PID, "")
            state = (pod.get("status") or {}).get("phase", "Unknown")
            rows.append(SessionRow(
                runtime=self.name, session=labels.get(LABEL_SESSION, ""), name=meta.get("name", ""),
                target=f"node/{spec.get('nodeName', '?')}", user="0:0",
                state="running" if state == "Running" else state.lower(), age_s=age,
                profile=labels.get(LABEL_PROFILE, ""), cli_pid=int(pid) if pid.isdigit() else None,
                cli_host=notes.get(LABEL_CLI_HOST), id=meta.get("uid", ""), namespace=meta.get("namespace"),
                reason=notes.get(LABEL_REASON),
            ))
        return rows

    @staticmethod
    def is_node_row(row: SessionRow) -> bool:
        return names_a_node(row.target)

    def remove_node_pod(self, row: SessionRow) -> None:
        try:
            self.api.delete_pod(row.namespace, row.name, uid=row.id or None)
        except client_errors() as exc:
            if status_and_message(exc)[0] != 404:
                raise api_error(exc, verb="delete", resource="pods", namespace=row.namespace or "",
                                name=row.name) from exc


class NodeExecSession(KubeExecSession):
    """A runbook's (or cp's) commands in a node debugging pod, which is deleted on close."""

    def __enter__(self) -> "NodeExecSession":
        try:
            return super().__enter__()
        except BaseException:
            self.runtime.delete_node_pod(self.plan)
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.runtime.delete_node_pod(self.plan)
