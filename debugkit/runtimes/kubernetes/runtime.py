"""The Kubernetes runtime: an ephemeral debug container with targetContainerName.

plan (the hooks in planning.py): find the pod and container, resolve the identity, build
the container as plain data (translate.py), pre-check PodSecurity against the namespace's
label. run: PATCH pods/ephemeralcontainers, probe until it starts (bounded, printing
waiting reasons), exec, and exit with the command's real exit code. ps, fleets, doctor and
completion are in their own modules (sessions.py, fleet.py, doctor.py, complete.py).
"""
from __future__ import annotations

import os
import sys

from debugkit.core.errors import DebugkitError, FileInvalid, InvalidInput
from debugkit.core.escape import safe
from debugkit.core.options import Connection
from debugkit.core.targets import NodeSetRef, PodRef, SelectorRef, WorkloadRef
from debugkit.runtimes.base import (CheckResult, Expansion, Plan, Preferences, Runtime, SessionRow, Streams,
                                    guard_command, guard_name)
from debugkit.runtimes.kubernetes import translate
from debugkit.runtimes.kubernetes.errors import api_error, client_errors
from debugkit.runtimes.kubernetes.identity import PodTarget
from debugkit.runtimes.kubernetes.heldcopy import KubernetesCopies
from debugkit.runtimes.kubernetes.nodepod import is_node_plan
from debugkit.runtimes.kubernetes.nodes import NodeDebugging
from debugkit.runtimes.kubernetes.planning import INTERACTIVE_SHELL, KubernetesPlanning
from debugkit.runtimes.kubernetes.start import DebugContainerStart
from debugkit.runtimes.kubernetes.stream import ContainerNotReady, KubeExecSession, exit_code_of, pump

KEPT = "ephemeral containers cannot be deleted; they end with their process or their pod"
# A websocket upgrade (exec, attach, portforward) is a GET: RBAC authorizes it as `get` on
# the subresource, and since Kubernetes 1.35 as `create` too.
WEBSOCKET_VERBS = ("get", "create")


class KubernetesRuntime(KubernetesPlanning, NodeDebugging, KubernetesCopies, DebugContainerStart, Runtime):
    name = "kubernetes"

    def __init__(self, *, kubeconfig: str | None = None, context: str | None = None, api=None,
                 preferences: Preferences | None = None, impersonate=None):
        self._kubeconfig = kubeconfig
        self._context = context
        self._impersonate = impersonate
        self._api = api
        self._auth = None
        self.connection = Connection(kube_context=context, kubeconfig=kubeconfig, kube_impersonate=impersonate)
        if preferences is not None:
            self.preferences = preferences

    @classmethod
    def for_connection(cls, entry, connection: Connection,
                       preferences: Preferences | None = None) -> "KubernetesRuntime":
        runtime = cls(kubeconfig=connection.kubeconfig, context=connection.kube_context, preferences=preferences,
                      impersonate=connection.kube_impersonate)
        runtime.entry, runtime.connection = entry, connection
        return runtime

    def close(self) -> None:
        if self._api is not None:
            self._api.close()

    @property
    def api(self):
        if self._api is None:
            self._api, self._auth = connect(kubeconfig=self._kubeconfig, context=self._context,
                                            impersonate=self._impersonate)
        return self._api

    @property
    def context_name(self) -> str | None:
        """The kube context in use (the flag's, else the kubeconfig's current context)."""
        self.api  # noqa: B018 - loading the kubeconfig sets it
        return self._auth.context if self._auth is not None else self._context

    @property
    def default_namespace(self) -> str:
        """Where a pod without a namespace is: $DEBUGKIT_NAMESPACE or the config file's entry
        for the context, else the context's own namespace, else the file's `namespace`."""
        self.api  # noqa: B018
        chosen = self.preferences.namespace(self.context_name)
        if chosen:
            return chosen
        if self._auth is not None and self._auth.namespace_set:
            return self._auth.namespace
        return self.preferences.namespace_fallback()

    def call(self, fn, *args, verb: str, resource: str, namespace: str, name: str = "", **kwargs):
        """fn(*args, **kwargs), the client's failures as debugkit errors (a bug stays a bug;
        credentials read at request time, a tokenFile or an exec plugin, are the config's)."""
        try:
            return fn(*args, **kwargs)
        except client_errors() as exc:
            raise api_error(exc, verb=verb, resource=resource, namespace=namespace, name=name) from exc

    def read_pod(self, namespace: str, name: str) -> dict:
        return self.call(self.api.read_pod, namespace, name, verb="get", resource="pods",
                         namespace=namespace, name=name)

    # -- the debug container ----------------------------------------------------------

    def stream(self, pt: PodTarget, container: str, argv, *, stdin: bool, tty: bool):
        """An exec stream; API refusals (RBAC, a missing pod) as debugkit errors."""
        from debugkit.runtimes.kubernetes.kubeclient import ApiError

        try:
            ws = self.api.exec_stream(pt.namespace, pt.pod_name, list(argv), container=container, stdin=stdin,
                                      tty=tty)
        except ApiError as exc:
            if exc.status == 500 and "container not found" in exc.message:  # v4 says it at the handshake
                raise ContainerNotReady(f"debug container {container} is not running yet") from None
            raise api_error(exc, verb="get", resource="pods/exec", namespace=pt.namespace, name=pt.pod_name) from None
        except client_errors() as exc:
            raise api_error(exc, verb="get", resource="pods/exec", namespace=pt.namespace, name=pt.pod_name) from exc
        if self.on_stream is not None:
            self.on_stream(Unwaited(ws))
        return ws

    def exec(self, plan: Plan, container: str, argv, *, stdin: bool, tty: bool, guard: str | None = None):
        """argv in the debug container, under the reaper, holding the keep-alive. A command
        that reads no stdin of ours gets none; its reaper watches the exec's stdin instead,
        to end the command when this CLI is gone. One that does (-i, -t) holds `guard`."""
        watch = not stdin and not tty and plan.helper
        command = translate.exec_command(container, argv, helper=plan.helper, watch_stdin=watch,
                                         guard=guard)
        if getattr(plan.details, "as_process", False):
            command = translate.as_target(command, helper=plan.helper)
        return self.stream(plan.details.pod_target, container, command, stdin=stdin or watch, tty=tty)

    def start_guard(self, plan: Plan, container: str):
        """(name, stream) of a guard for a session whose stdin is the person's: when this CLI
        dies the kubelet closes the guard's stdin, and the session's command is wound down
        (a TTY never tells its shell that the client went away)."""
        name = guard_name(container, plan.spec.session_id)
        return name, self.stream(plan.details.pod_target, container, guard_command(name), stdin=True, tty=False)

    # -- run ------------------------------------------------------------------------------

    def run(self, plan: Plan, streams: Streams) -> int:
        if not is_node_plan(plan):
            return self.run_in_container(plan, streams)
        try:
            return self.run_in_container(plan, streams)
        finally:
            self.delete_node_pod(plan)

    def run_in_container(self, plan: Plan, streams: Streams) -> int:
        tty = plan.spec.tty
        argv = plan.spec.command or INTERACTIVE_SHELL
        wants_stdin = plan.spec.stdin or tty
        guarded = wants_stdin and plan.helper
        for attempt in (1, 2):
            guard = ws = None
            try:
                if guarded:
                    container, _ = self.start_showing_waits(plan, streams.stderr)
                    guard = self.start_guard(plan, container)
                    ws = self.exec(plan, container, argv, stdin=wants_stdin, tty=tty, guard=guard[0])
                else:
                    # The command's exec is the new container's readiness probe: it fails at
                    # the handshake, before anything runs or any stdin is read, until the
                    # container runs.
                    container, ws = self.start_showing_waits(plan, streams.stderr, open_first=lambda name: self.exec(
                        plan, name, argv, stdin=wants_stdin, tty=tty))
                pump(ws, stdin_fd=streams.stdin.fileno() if (wants_stdin and streams.stdin) else None,
                     stdout=streams.stdout, stderr=streams.stderr, tty=tty)
                return exit_code_of(ws, what=f"debug container {container}")
            except ContainerNotReady:
                # The reused container expired between the plan and the exec: start a new one.
                if attempt == 2 or plan.reuse is None:
                    raise
                plan = plan._replace(reuse=None)
            finally:
                if ws is not None:
                    ws.close(wait=0.2)
                if guard is not None:
                    guard[1].close(wait=0)
        raise AssertionError("unreachable")

    def open_exec(self, plan: Plan) -> KubeExecSession:
        if is_node_plan(plan):
            return self.open_node_exec(plan)
        return KubeExecSession(self, plan)

    # -- inspect, ps, gc ----------------------------------------------------------------

    def inspect(self, plan: Plan) -> dict:
        if is_node_plan(plan):
            return self.node_inspect(plan)
        pt, winner, admission = plan.details.pod_target, plan.spec.identity, plan.admission
        ctx = f" --context {self.context_name}" if self.context_name else ""
        sources = [s.as_dict() for s in plan.sources]
        if plan.details.as_process:
            # Read now through the debug container this person's debugkit keeps there, when
            # there is one (its reuse was checked like an attach's); else when one starts.
            winner = self.process_identity(plan)
            sources[0] = winner.as_dict()
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
            "sources": sources,
            "pod_security_enforce": admission.level if admission else None,
            "profile": plan.spec.profile,
            "admitted_by_namespace": admission.admitted if admission else True,
            "zombies": None,
            "debug_container": plan.reuse or plan.spec.name,
            "reuses": plan.reuse,
            "keep_alive_s": int(plan.keep_alive),
            "warnings": list(plan.warnings),
            "ephemeral_container": plan.request,
            "attach_command": (f"debugkit attach k8s://{pt.namespace}/{pt.pod_name}/{pt.container}{ctx}"
                               f" --profile {plan.spec.profile}"),
        }

    def process_identity(self, plan: Plan):
        """The target process's identity as the plan's reusable debug container reads it from
        /proc/1/status; an identity without IDs (to be read when the container starts) when
        no such container runs, or it cannot be read now."""
        from dataclasses import replace

        from debugkit.core.errors import IdentityUnresolved
        from debugkit.core.identity import identity_from_status
        from debugkit.runtimes.kubernetes.stream import STDOUT, drain_and_close

        later = replace(plan.spec.identity, uid=None, gid=None)
        if plan.reuse is None:
            return later
        try:
            ws = self.stream(plan.details.pod_target, plan.reuse, ["cat", "/proc/1/status"], stdin=False, tty=False)
        except DebugkitError:
            return later
        chunks = []
        try:
            while True:
                try:
                    item = ws.recv(5)
                except EOFError:
                    break
                if item is None:
                    break
                if item[0] == STDOUT:
                    chunks.append(item[1])
        finally:
            drain_and_close(ws, wait=0.1)
        try:
            found = identity_from_status(b"".join(chunks).decode("ascii", "replace"))
        except IdentityUnresolved:
            return later
        return found.with_note(f"read from /proc/1/status through debug container {plan.reuse}")

    def direct_forward(self, plan: Plan):
        """The portforward subresource, when RBAC allows `get` and `create` on pods/portforward."""
        if is_node_plan(plan):
            return None  # the node pod's host network: relay through it
        pt = plan.details.pod_target
        try:
            # A websocket portforward is a GET, authorized as `get`; since 1.35 the API server
            # also asks for `create` on the subresource (AuthorizePodWebsocketUpgradeCreatePermission).
            allowed = all(self.api.self_subject_access_review(verb, "pods", pt.namespace, subresource="portforward")
                          for verb in WEBSOCKET_VERBS)
        except client_errors():  # cannot ask: relay through the debug container instead
            return None
        if not allowed:
            return None
        from debugkit.runtimes.kubernetes.portforward import PodPortForward

        return PodPortForward(self, pt)

    # -- ps, gc, fleets, doctor, completion --------------------------------------------------

    def sessions(self, *, namespace: str | None = None) -> list[SessionRow]:
        from debugkit.runtimes.kubernetes import sessions

        return sessions.rows(self, namespace) + self.node_rows(namespace)

    def remove(self, row: SessionRow) -> None:
        from debugkit.runtimes.base import HeldCopy
        from debugkit.runtimes.kubernetes import sessions

        if self.is_node_row(row):
            self.remove_node_pod(row)
        elif sessions.is_copy(row):
            self.remove_copy(HeldCopy(runtime=self.name, original=row.target, original_id="", name=row.name,
                                      id=row.id, target="", details={"namespace": row.namespace}))
        else:
            raise DebugkitError(KEPT)

    def kept(self, row: SessionRow) -> str | None:
        from debugkit.runtimes.kubernetes import sessions

        return None if self.is_node_row(row) or sessions.is_copy(row) else KEPT

    def expand(self, many) -> Expansion:
        from debugkit.runtimes.kubernetes import fleet

        if isinstance(many, NodeSetRef):
            return self.expand_nodes(many)
        if not isinstance(many, (WorkloadRef, SelectorRef)):
            return super().expand(many)
        return fleet.expand(self, many)

    def why_gone(self, ref) -> str | None:
        from debugkit.runtimes.kubernetes import fleet

        return fleet.why_gone(self, ref)

    def doctor(self, *, target: Plan | None = None, namespace: str | None = None) -> list[CheckResult]:
        from debugkit.runtimes.kubernetes import doctor

        return doctor.kube_checks(self, target=target, namespace=namespace)

    def complete_targets(self, word: str, *, namespace: str | None = None, timeout: float) -> list[str]:
        from debugkit.runtimes.kubernetes.complete import Cluster

        with Cluster(self, namespace=namespace, timeout=timeout) as cluster:
            return cluster.targets(word)

    def complete_namespaces(self, word: str, *, timeout: float) -> list[str]:
        from debugkit.runtimes.kubernetes.complete import Cluster

        with Cluster(self, timeout=timeout) as cluster:
            return [ns for ns in cluster.namespaces() if ns.startswith(word)]

    def complete_contexts(self, word: str) -> list[str]:
        from debugkit.runtimes.kubernetes.kubeconfig import context_names

        return [name for name in context_names(self._kubeconfig) if name.startswith(word)]

    def complete_containers(self, ref, word: str, *, timeout: float) -> list[str]:
        from debugkit.runtimes.kubernetes.complete import Cluster

        if not isinstance(ref, PodRef):
            return []
        with Cluster(self, namespace=ref.namespace, timeout=timeout) as cluster:
            return [c for c in cluster.containers(ref.pod) if c.startswith(word)]


class Unwaited:
    """An exec stream as a fleet's Ctrl-C closes it: at once, with no close handshake."""

    def __init__(self, stream):
        self.stream = stream

    def close(self) -> None:
        self.stream.close(wait=0)


def connect(*, kubeconfig: str | None, context: str | None, impersonate=None, **client_options):
    """(client, the context's namespace) as kubectl resolves them: --kubeconfig, else
    KUBECONFIG (merged), else ~/.kube/config, else the in-cluster service account;
    `impersonate` (core.options.Impersonate): --as, --as-group, --as-uid."""
    from debugkit.runtimes.kubernetes.clients import impersonation
    from debugkit.runtimes.kubernetes.kubeclient import KubeClient
    from debugkit.runtimes.kubernetes.kubeconfig import ContextNotFound, KubeConfigError, load

    if kubeconfig is not None and not os.path.isfile(kubeconfig):
        raise InvalidInput(f"--kubeconfig {kubeconfig}: no such file")
    override = impersonation(impersonate)
    try:
        auth = load(kubeconfig, context, impersonate=override)
        return KubeClient(auth, warn=client_options.pop("warn", _warn), **client_options), auth
    except ContextNotFound as exc:
        # A flag's value, as a Docker context that does not exist is: 64 for both.
        raise InvalidInput(f"--context {context}: {exc}") from None
    except KubeConfigError as exc:
        if override and not override.user and "needs a user to impersonate" in str(exc):
            raise InvalidInput("--as-group and --as-uid need --as (or as: in the kubeconfig's user)") from None
        raise FileInvalid(f"cannot use the Kubernetes configuration: {exc}") from None


def _warn(message: str) -> None:
    sys.stderr.write(f"debugkit: warning: {safe(message)}\n")
