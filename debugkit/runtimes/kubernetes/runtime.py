"""The Kubernetes runtime: an ephemeral debug container with targetContainerName.

plan: find the pod and container, resolve the identity, build the container as plain
data (translate.py), pre-check PodSecurity against the namespace's label. run: PATCH
pods/ephemeralcontainers, watch until it starts (bounded, printing waiting reasons),
attach, and exit with the container's real exit code.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
import sys
import time
from dataclasses import replace
from typing import Callable

from debugkit.core.errors import (
    DebugkitError,
    EphemeralContainersUnavailable,
    FileInvalid,
    Interrupted,
    InvalidInput,
    PolicyRejected,
    TargetNotFound,
    TargetNotRunning,
    Timeout,
)
from debugkit.core.escape import safe
from debugkit.core.options import SidecarOptions
from debugkit.core.profiles import apply_profile
from debugkit.core.spec import ENV_REASON, ENV_SESSION, base_spec
from debugkit.runtimes.base import (Plan, ResolvedTarget, Runtime, SessionRow, Streams, guard_command, guard_name,
                                    local_user, with_target_env)
from debugkit.core.reuse import NOT_RECORDED, refusal_line, reuse_refusal
from debugkit.runtimes import reuse_records
from debugkit.runtimes.kubernetes import podsecurity, translate
from debugkit.runtimes.kubernetes.errors import api_error
from debugkit.runtimes.kubernetes.identity import PodIdentity, PodTarget
from debugkit.runtimes.kubernetes.stream import ContainerNotReady, KubeExecSession, drain_and_close, exit_code_of, pump
from debugkit.runtimes.terminal import write_output

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
# wait_ready probes a new debug container with an exec: every PROBE_FIRST_S while a
# container usually starts (PROBE_STEADY_S: each sleep is time the person waits for), then
# PROBE_BACKOFF times longer each time, at most every PROBE_MAX_S. A fleet (concurrency > 1)
# backs off from the first probe: its containers start together on busy nodes, where a
# stream of exec upgrades would slow them all (docs/fleet.md).
PROBE_FIRST_S, PROBE_STEADY_S, PROBE_BACKOFF, PROBE_MAX_S = 0.05, 1.5, 1.5, 0.25
DEFAULT_KEEP_ALIVE = 600.0   # a reusable debug container stays this long once idle (--keep-alive)
INTERACTIVE_SHELL = ("sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh")
# Waiting reasons every start goes through: not worth a line on a scripted command's stderr.
ROUTINE_REASONS = {"ContainerCreating", "PodInitializing"}
# A websocket upgrade (exec, attach, portforward) is a GET: RBAC authorizes it as `get` on
# the subresource, and since Kubernetes 1.35 as `create` too.
WEBSOCKET_VERBS = ("get", "create")
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


class KubernetesRuntime(Runtime):
    name = "kubernetes"

    def __init__(self, *, kubeconfig: str | None = None, context: str | None = None, api=None,
                 namespace_fallback: str = "default", impersonate=None):
        self._kubeconfig = kubeconfig
        self._context = context
        self._impersonate = impersonate
        self._api = api
        self._auth = None
        # The namespace when the kube context names none (the config file's `namespace`).
        self._fallback = namespace_fallback

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
        self.api  # noqa: B018
        if self._auth is not None and self._auth.namespace_set:
            return self._auth.namespace
        return self._fallback

    def call(self, fn, *args, verb: str, resource: str, namespace: str, name: str = "", **kwargs):
        from debugkit.runtimes.kubernetes.kubeconfig import KubeConfigError

        try:
            return fn(*args, **kwargs)
        except DebugkitError:
            raise
        except KubeConfigError as exc:  # credentials read at request time: a tokenFile, an exec plugin
            raise FileInvalid(f"cannot use the Kubernetes configuration: {exc}") from None
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
        flag = options.user
        identities = PodIdentity(self.api, pt, uids=(flag.uid,) if flag is not None and flag.gid is None else ())
        sources = identities.sources(stop_at_first=not thorough)
        identity = identities.resolve(options.user, sources)
        me = local_user()
        spec = base_spec(
            image=options.sidecar_image, identity=identity, target_name=pt.name, target_id=pt.uid,
            runtime=self.name, command=options.command, stdin=options.stdin, tty=options.tty,
            session_id=options.session_id, cli_pid=os.getpid(), cli_host=socket.gethostname(), local_user=me,
            reason=options.reason,
        )
        spec = apply_profile(spec, options.profile)
        if options.target_env:
            if options.image is not None:
                raise InvalidInput("--target-env needs debugkit-helper in the sidecar image: use the toolbox")
            spec = spec.evolve(command=with_target_env(spec.command or INTERACTIVE_SHELL))
        keep_alive = DEFAULT_KEEP_ALIVE if options.keep_alive is None else options.keep_alive
        helper = options.image is None  # the toolbox carries debugkit-helper; a foreign image may not
        key = translate.reuse_key(spec, target_container=pt.container, custom=options.custom, local_user=me,
                                  keep_alive=keep_alive)
        # The container this plan would start (also when a reused one has ended by the time
        # of the exec): its keep-alive listens on its own name, which its execs hold.
        container_spec = spec.evolve(
            command=tuple(translate.keepalive_command(spec.name, idle=keep_alive, helper=helper)), stdin=False,
            tty=False,
        ).with_env(**{translate.ENV_REUSE: key, translate.ENV_KEEP_ALIVE: str(int(keep_alive)),
                      translate.ENV_LOCAL_USER: me, translate.ENV_PROFILE: spec.profile})
        container = translate.ephemeral_container(container_spec, target_container=pt.container,
                                                  custom=options.custom)
        warnings = []
        # --keep-alive 0 makes the container end with its command: never one to reuse.
        reuse, refused = (None, None) if options.new or not keep_alive else \
            self.trusted_reuse(pt, key, container, keep_alive=keep_alive, helper=helper)
        if refused:
            warnings.append(refused)
        name = reuse or spec.name
        if not helper:
            warnings.append(f"the image {spec.image} may lack debugkit-helper: without it the debug container "
                            f"lives a fixed {max(60, int(keep_alive))} s and orphaned processes go to the target's "
                            f"PID 1")
        level, found = None, []
        if reuse is None or thorough:
            level = self.enforce_level(pt.namespace)
            found = podsecurity.violations(level, container, pt.pod_security_context)
        if found and not thorough:
            raise PolicyRejected(
                f"namespace {pt.namespace} enforces PodSecurity {level!r}, which rejects profile "
                f"{spec.profile!r}: " + "; ".join(found),
                hint="use --profile restricted" if spec.profile != "restricted" else None,
            )
        facts = {"pod_target": pt, "timeout": options.timeout, "helper": helper, "keep_alive": keep_alive,
                 "level": level, "admitted": not found, "container": name, "reuse_key": key}
        target = ResolvedTarget(runtime=self.name, name=pt.name, id=pt.uid, image=pt.container_spec.get("image", ""),
                                namespace=pt.namespace, pod=pt.pod_name, container=pt.container)
        return Plan(runtime=self.name, mode=mode, target=target, spec=spec, request=container,
                    sources=tuple(sources), warnings=tuple(warnings),
                    image={"image_id": None, "image_digest": None}, facts=facts, reuse=reuse)

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
        try:
            self.api.add_ephemeral_container(pt.namespace, pt.pod_name, container)
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

    def waiting_state(self, pt: PodTarget, name: str) -> dict:
        return self.debug_status(self.read_pod(pt.namespace, pt.pod_name), name).get("state") or {}

    def stream(self, pt: PodTarget, container: str, argv, *, stdin: bool, tty: bool):
        """An exec stream; API refusals (RBAC, a missing pod) as debugkit errors."""
        from debugkit.runtimes.kubernetes.kubeclient import ApiError

        try:
            ws = self.api.exec_stream(pt.namespace, pt.pod_name, list(argv), container=container, stdin=stdin,
                                      tty=tty)
            if self.on_stream is not None:
                self.on_stream(ws)
            return ws
        except ApiError as exc:
            if exc.status == 500 and "container not found" in exc.message:  # v4 says it at the handshake
                raise ContainerNotReady(f"debug container {container} is not running yet") from None
            raise api_error(exc, verb="get", resource="pods/exec", namespace=pt.namespace, name=pt.pod_name) from None
        except Exception as exc:  # noqa: BLE001 - transport failures
            raise api_error(exc, verb="get", resource="pods/exec", namespace=pt.namespace, name=pt.pod_name) from exc

    def exec(self, plan: Plan, container: str, argv, *, stdin: bool, tty: bool, guard: str | None = None):
        """argv in the debug container, under the reaper, holding the keep-alive. A command
        that reads no stdin of ours gets none; its reaper watches the exec's stdin instead,
        to end the command when this CLI is gone. One that does (-i, -t) holds `guard`."""
        watch = not stdin and not tty and plan.facts["helper"]
        command = translate.exec_command(container, argv, helper=plan.facts["helper"], watch_stdin=watch,
                                         guard=guard)
        return self.stream(plan.facts["pod_target"], container, command, stdin=stdin or watch, tty=tty)

    def start_guard(self, plan: Plan, container: str):
        """(name, stream) of a guard for a session whose stdin is the person's: when this CLI
        dies the kubelet closes the guard's stdin, and the session's command is wound down
        (a TTY never tells its shell that the client went away)."""
        name = guard_name(container, plan.spec.session_id)
        return name, self.stream(plan.facts["pod_target"], container, guard_command(name), stdin=True, tty=False)

    def ensure_container(self, plan: Plan, *, on_waiting: Callable[[str], None] | None = None) -> str:
        """The running debug container the plan uses: the one it reuses, or a new one. A
        reused one that fails to start is dropped, and a new one starts in its place."""
        pt = plan.facts["pod_target"]
        if plan.reuse is not None:
            state = self.debug_status(pt.pod, plan.reuse).get("state") or {}
            if "running" in state:
                return plan.reuse
            try:
                self.wait_ready(plan, name=plan.reuse, on_waiting=on_waiting)
                return plan.reuse
            except (Interrupted, ContainerNotReady):
                raise
            except DebugkitError as exc:
                reuse_records.forget(self.name, pt.uid, plan.facts["reuse_key"], plan.reuse)
                if on_waiting:
                    on_waiting(refusal_line(plan.reuse, str(exc)))
        self.launch(pt, plan.request)
        if plan.facts.get("reuse_key") and plan.facts.get("keep_alive"):
            reuse_records.remember(self.name, pt.uid, plan.facts["reuse_key"],
                                   reuse_records.Record(plan.spec.name, plan.spec.name))
        self.wait_ready(plan, name=plan.spec.name, on_waiting=on_waiting)
        return plan.spec.name

    def trusted_reuse(self, pt: PodTarget, key: str, container: dict, *, keep_alive: float,
                      helper: bool) -> tuple[str | None, str | None]:
        """(the debug container to exec into, or None; the one line that says why a
        candidate is not reused, or None). Only the container this person's debugkit
        recorded adding to this very pod (its UID) for this key is a candidate, and only
        when its spec and status are exactly the plan's: image (and digest), user,
        securityContext, target and keep-alive command (core/reuse.py). A look-alike that
        merely carries the key in its environment, planted by anyone who may patch
        pods/ephemeralcontainers, is named and skipped; so is one that cannot start."""
        specs = {c.get("name"): c for c in pt.pod["spec"].get("ephemeralContainers") or []}
        record = reuse_records.recall(self.name, pt.uid, key)
        if record is not None:
            found_spec = specs.get(record.name)
            if found_spec is not None:
                found = translate.found_facts(found_spec, self.debug_status(pt.pod, record.name))
                wanted = translate.planned_facts(container, name=record.name, command=translate.keepalive_command(
                    record.name, idle=keep_alive, helper=helper))
                why = reuse_refusal(found, wanted, recorded=True, recorded_digest=record.digest)
                if why is None:
                    if record.digest is None and found.digest:  # the image it runs is known now: pin it
                        reuse_records.remember(self.name, pt.uid, key, replace(record, digest=found.digest))
                    return record.name, None
                reuse_records.forget(self.name, pt.uid, key, record.name)
                if found.state.startswith("terminated"):
                    return None, None  # it ended by itself (its keep-alive expired): nothing to say
                return None, refusal_line(record.name, why)
            reuse_records.forget(self.name, pt.uid, key, record.name)
        for name in lookalikes(pt.pod, key):
            return None, refusal_line(name, NOT_RECORDED)
        return None, None

    def wait_ready(self, plan: Plan, *, name: str, on_waiting: Callable[[str], None] | None = None) -> None:
        """Exec a no-op until it runs. The kubelet finds a new container in the runtime about
        a second before the API status says `running`, so this beats watching the pod; the
        pod is read every half second only for waiting reasons (ErrImagePull...)."""
        from debugkit.runtimes.kubernetes.websocket import container_not_found

        pt, timeout = plan.facts["pod_target"], plan.facts["timeout"]
        probe = [translate.HELPER, "--version"] if plan.facts["helper"] else ["true"]
        started = time.monotonic()
        deadline = started + timeout
        next_look, last_reason = started + 0.5, "not yet created"
        messages: dict[str, str] = {}  # the last message of each waiting reason, for a timeout
        pause = PROBE_FIRST_S
        while True:
            try:
                ws = self.stream(pt, name, probe, stdin=False, tty=False)
                drain_and_close(ws, wait=0.1)
                if ws.exit_code() is not None or ws.exec_failure_code() is not None:
                    return  # it ran (a foreign image without `true` still proves the container runs)
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
        name, timeout, image = plan.spec.name, plan.facts["timeout"], plan.spec.image
        if reason not in PULL_FAILURES:
            return Timeout(f"debug container {name} did not start within {timeout:g}s (last state: {reason})")
        detail = f"{reason}: {messages[reason]}" if reason in messages else reason
        if reason == "ImagePullBackOff" and "ErrImagePull" in messages:
            # The back-off only says "Back-off pulling image"; the failed pull said why.
            detail = f"{reason}; the last pull failed with: {messages['ErrImagePull']}"
        if plan.facts.get("helper"):  # the toolbox, not an --image of the person's choosing
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

    # -- run ------------------------------------------------------------------------------

    def run(self, plan: Plan, streams: Streams) -> int:
        tty = plan.spec.tty
        argv = plan.spec.command or INTERACTIVE_SHELL
        wants_stdin = plan.spec.stdin or tty
        for attempt in (1, 2):
            container = self.start_showing_waits(plan, streams.stderr)
            guard = ws = None
            try:
                if wants_stdin and plan.facts["helper"]:
                    guard = self.start_guard(plan, container)
                ws = self.exec(plan, container, argv, stdin=wants_stdin, tty=tty, guard=guard and guard[0])
                pump(ws, stdin_fd=streams.stdin.fileno() if (wants_stdin and streams.stdin) else None,
                     stdout=streams.stdout, stderr=streams.stderr, tty=tty)
                return exit_code_of(ws, what=f"debug container {container}")
            except ContainerNotReady:
                # The reused container expired between the plan and the exec: start a new one.
                if attempt == 2 or plan.reuse is None:
                    raise
                plan = replace(plan, reuse=None, facts={**plan.facts, "container": plan.spec.name})
            finally:
                if ws is not None:
                    ws.close(wait=0.2)
                if guard is not None:
                    guard[1].close(wait=0)
        raise AssertionError("unreachable")

    def start_showing_waits(self, plan: Plan, stderr) -> str:
        """ensure_container, with the waiting reasons on stderr: on a terminal one line,
        rewritten as the reason changes and erased once the container runs; elsewhere a
        `debugkit: waiting: REASON` line for each reason that is not routine."""
        from debugkit.core.statusline import StatusLine, is_live_terminal

        if plan.reuse is not None or not is_live_terminal(stderr):
            def on_waiting(reason: str) -> None:
                write_output(stderr, f"debugkit: waiting: {safe(reason)}\n".encode())

            return self.ensure_container(plan, on_waiting=on_waiting)
        with StatusLine.over_binary(stderr) as status:
            status.update(f"debugkit: starting debug container {plan.spec.name} ({plan.spec.image})")
            return self.ensure_container(plan, on_waiting=lambda reason: status.update(
                f"debugkit: waiting: {short_reason(reason)}"))

    def open_exec(self, plan: Plan) -> KubeExecSession:
        return KubeExecSession(self, plan)

    # -- inspect, ps, gc ----------------------------------------------------------------

    def inspect(self, plan: Plan) -> dict:
        pt, winner, facts = plan.facts["pod_target"], plan.spec.identity, plan.facts
        ctx = f" --context {self.context_name}" if self.context_name else ""
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
            "debug_container": facts["container"],
            "reuses": plan.reuse,
            "keep_alive_s": int(facts["keep_alive"]),
            "warnings": list(plan.warnings),
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
                keep_alive = env.get(translate.ENV_KEEP_ALIVE)
                rows.append(SessionRow(
                    runtime=self.name, session=env.get(ENV_SESSION, ctr["name"][len(translate.NAME_PREFIX):]),
                    name=ctr["name"], target=f"{pod['metadata']['name']}/{ctr.get('targetContainerName', '')}",
                    user=f"{sc.get('runAsUser', '?')}:{sc.get('runAsGroup', '?')}",
                    state="running" if kind == "running" else label, age_s=age,
                    namespace=pod["metadata"]["namespace"], reusable=keep_alive not in (None, "0"),
                    profile=env.get(translate.ENV_PROFILE) or "",
                    keep_alive_s=int(keep_alive) if keep_alive and keep_alive.isdigit() else None,
                    reason=env.get(ENV_REASON),
                ))
        return rows

    def direct_forward(self, plan: Plan):
        """The portforward subresource, when RBAC allows `get` and `create` on pods/portforward."""
        pt = plan.facts["pod_target"]
        try:
            # A websocket portforward is a GET, authorized as `get`; since 1.35 the API server
            # also asks for `create` on the subresource (AuthorizePodWebsocketUpgradeCreatePermission).
            allowed = all(self.api.self_subject_access_review(verb, "pods", pt.namespace, subresource="portforward")
                          for verb in WEBSOCKET_VERBS)
        except Exception:  # noqa: BLE001 - cannot ask: relay through the debug container instead
            return None
        if not allowed:
            return None
        from debugkit.runtimes.kubernetes.portforward import PodPortForward

        return PodPortForward(self, pt)

    def remove(self, row: SessionRow) -> None:
        raise DebugkitError("ephemeral containers cannot be deleted; they end with their process or their pod")



def connect(*, kubeconfig: str | None, context: str | None, impersonate=None, **client_options):
    """(client, the context's namespace) as kubectl resolves them: --kubeconfig, else
    KUBECONFIG (merged), else ~/.kube/config, else the in-cluster service account;
    `impersonate` (core.options.Impersonate): --as, --as-group, --as-uid."""
    from debugkit.runtimes.kubernetes.kubeclient import KubeClient
    from debugkit.runtimes.kubernetes.kubeconfig import KubeConfigError, load

    if kubeconfig is not None and not os.path.isfile(kubeconfig):
        raise InvalidInput(f"--kubeconfig {kubeconfig}: no such file")
    override = impersonation(impersonate)
    try:
        auth = load(kubeconfig, context, impersonate=override)
        return KubeClient(auth, warn=client_options.pop("warn", _warn), **client_options), auth
    except KubeConfigError as exc:
        if override and not override.user and "needs a user to impersonate" in str(exc):
            raise InvalidInput("--as-group and --as-uid need --as (or as: in the kubeconfig's user)") from None
        raise FileInvalid(f"cannot use the Kubernetes configuration: {exc}") from None


def impersonation(flags):
    """core.options.Impersonate (the flags) as the kubeconfig layer's Impersonation."""
    if not flags:
        return None
    from debugkit.runtimes.kubernetes.kubeuser import Impersonation

    return Impersonation(user=flags.user, uid=flags.uid, groups=tuple(flags.groups))


def _warn(message: str) -> None:
    sys.stderr.write(f"debugkit: warning: {safe(message)}\n")


def lookalikes(pod: dict, key: str) -> list[str]:
    """Debug containers of this pod that carry the reuse key and have not ended, newest
    first: candidates only in name (see KubernetesRuntime.trusted_reuse)."""
    states = {st["name"]: (st.get("state") or {}) for st in pod.get("status", {}).get("ephemeralContainerStatuses") or []}
    found = []
    for ctr in reversed(pod["spec"].get("ephemeralContainers") or []):
        env = {e.get("name"): e.get("value") for e in ctr.get("env") or []}
        if str(ctr.get("name", "")).startswith(translate.NAME_PREFIX) and env.get(translate.ENV_REUSE) == key \
                and "terminated" not in states.get(ctr["name"], {}):
            found.append(ctr["name"])
    return found
