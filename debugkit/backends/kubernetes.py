"""The Kubernetes backend: an ephemeral debug container with targetContainerName.

Complete (pod, container, identity, namespace level) -> build the container as plain
data -> pre-check PodSecurity -> PATCH pods/ephemeralcontainers -> watch until it
starts (with a timeout, printing waiting reasons) -> attach over the websocket ->
exit with the container's real exit code from its terminated state.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import select
import time
from dataclasses import dataclass
from typing import Callable

from debugkit import identity as ident
from debugkit import podsecurity
from debugkit.errors import (
    DebugkitError,
    EngineUnreachable,
    EphemeralContainersUnavailable,
    Forbidden,
    IdentityUnresolved,
    InvalidInput,
    PolicyRejected,
    TargetNotFound,
    TargetNotRunning,
    Timeout,
)
from debugkit.spec import ENV_SESSION, SidecarSpec

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
NAME_PREFIX = "debugkit-"
# Gate for scripted commands: the container waits for one line on stdin before it execs
# the command, so our attach is in place first and no output is lost; stdout and stderr
# then arrive on their own channels. The wait is bounded: a CLI that dies before it
# attaches must not leave a container waiting for ever (ephemeral ones cannot be deleted).
GATE_SECONDS = 300


def gate(command: tuple[str, ...], *, seconds: int = GATE_SECONDS) -> tuple[str, ...]:
    script = f'timeout {int(seconds)} sh -c "read -r _" || exit 125; exec "$@"'
    return ("sh", "-c", script, "debugkit", *command)


GATE = gate(())
# Runbooks: a main process that lives as long as our attach keeps its stdin open (and
# never longer than 10 minutes without it). Not `cat >/dev/null`: under containerd that
# sees EOF at once; nothing is ever written, so stdout is as quiet.
KEEPALIVE = ("sh", "-c", "exec timeout 600 cat")
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
# Waiting reasons every start goes through: not worth a line on a scripted command's stderr.
ROUTINE_REASONS = {"ContainerCreating", "PodInitializing"}


def config_available(kubeconfig: str | None = None) -> bool:
    if kubeconfig or os.environ.get("KUBECONFIG"):
        return True
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    return os.path.exists(os.path.expanduser("~/.kube/config"))


def load_api(*, kubeconfig: str | None, context: str | None):
    """(KubeAPI, the context's namespace) honouring KUBECONFIG, current context, in-cluster."""
    from kubernetes import config  # lazy: slow to import
    from kubernetes.client.configuration import Configuration
    from kubernetes.config.config_exception import ConfigException

    from debugkit.kubeapi import KubeAPI

    namespace = None
    cfg = Configuration()
    try:
        if kubeconfig or os.environ.get("KUBECONFIG") or os.path.exists(os.path.expanduser("~/.kube/config")):
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
            _contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                active = next((c for c in _contexts if c["name"] == context), active)
            namespace = (active or {}).get("context", {}).get("namespace")
        else:
            config.load_incluster_config(client_configuration=cfg)
            with contextlib.suppress(OSError):
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding="utf-8") as fh:
                    namespace = fh.read().strip()
    except (ConfigException, OSError, TypeError) as exc:
        raise InvalidInput(f"cannot load Kubernetes configuration: {exc}") from exc
    return KubeAPI(cfg), namespace or "default"


def _status_message(exc) -> str:
    try:
        return json.loads(exc.body).get("message") or str(exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(getattr(exc, "reason", exc))


def api_error(exc, *, verb: str, resource: str, namespace: str, name: str = "") -> DebugkitError:
    """One clear error for an ApiException (or a transport failure)."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(exc, ApiException):
        return EngineUnreachable(f"cannot reach the Kubernetes API server: {exc.__class__.__name__}: {exc}")
    if exc.status == 0:  # the websocket client's wrapper around a failed upgrade
        handshake = re.search(r"Handshake status (\d+)", str(exc.reason))
        if not handshake:
            return EngineUnreachable(f"cannot reach the Kubernetes API server: {exc.reason}")
        exc.status = int(handshake.group(1))
    message = _status_message(exc)
    if exc.status == 403 and "violates PodSecurity" in message:
        return PolicyRejected(f"PodSecurity rejected the debug container: {summarize_pod_security(message)}")
    if exc.status == 403:
        user = ""
        if 'User "' in message:
            user = " as " + message.split('User "', 1)[1].split('"', 1)[0]
        return Forbidden(f"forbidden: cannot {verb} {resource} in namespace {namespace}{user}",
                         hint="ask for RBAC that grants this verb on this resource")
    if exc.status == 401:
        return Forbidden("unauthorized: the API server rejected our credentials")
    if exc.status == 404:
        return TargetNotFound(f"{resource.split('/')[0].rstrip('s')} {name!r} not found in namespace {namespace}")
    if exc.status == 422:
        return InvalidInput(f"the API server rejected the debug container as invalid: {message}")
    return DebugkitError(f"Kubernetes API error {exc.status} on {verb} {resource}: {message}")


def summarize_pod_security(message: str) -> str:
    """'... violates PodSecurity "restricted:latest": a (x), b (y)' -> 'restricted: a; b'."""
    if "violates PodSecurity" not in message:
        return message
    tail = message.split("violates PodSecurity", 1)[1].strip()
    match = re.match(r'"([^":]+)(?::[^"]*)?":\s*(.*)', tail, re.S)
    level, reasons = (match.group(1), match.group(2)) if match else ("PodSecurity", tail)
    parts, depth, current = [], 0, ""
    for ch in reasons:  # split on commas outside parentheses, drop the parenthesised detail
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        if depth == 0 and ch not in "()":
            current += ch
    parts.append(current.strip())
    return f"{level}: " + "; ".join(p for p in parts if p)


@dataclass
class PodTarget:
    namespace: str
    pod_name: str
    container: str
    pod: dict  # camelCase, as the API serialises it

    @property
    def container_spec(self) -> dict:
        return next(c for c in self.pod["spec"]["containers"] if c["name"] == self.container)

    @property
    def container_status(self) -> dict:
        for st in self.pod.get("status", {}).get("containerStatuses") or []:
            if st["name"] == self.container:
                return st
        return {}

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.pod_name}/{self.container}"

    @property
    def uid(self) -> str:
        return self.pod["metadata"].get("uid", "")


class KubeBackend:
    runtime = "kubernetes"

    def __init__(self, *, kubeconfig: str | None = None, context: str | None = None, api=None,
                 default_namespace: str = "default"):
        self._kubeconfig = kubeconfig
        self._context = context
        self._api = api
        self._default_namespace = default_namespace

    @property
    def api(self):
        if self._api is None:
            self._api, self._default_namespace = load_api(kubeconfig=self._kubeconfig, context=self._context)
        return self._api

    @property
    def default_namespace(self) -> str:
        self.api  # noqa: B018 - loading the config sets it
        return self._default_namespace

    def _call(self, fn, *args, verb: str, resource: str, namespace: str, name: str = "", **kwargs):
        import urllib3
        from kubernetes.client.exceptions import ApiException

        try:
            return fn(*args, **kwargs)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise api_error(exc, verb=verb, resource=resource, namespace=namespace, name=name) from exc

    # -- the target -------------------------------------------------------------------

    def read_pod(self, namespace: str, name: str) -> dict:
        return self._call(self.api.read_pod, namespace, name, verb="get", resource="pods",
                          namespace=namespace, name=name)

    def find_target(self, target, *, require_running: bool = True) -> PodTarget:
        namespace = target.namespace or self.default_namespace
        pod = self.read_pod(namespace, target.pod)
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = target.container
        if container is None:
            annotated = (pod["metadata"].get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
            if annotated in names:
                container = annotated
            elif len(names) == 1:
                container = names[0]
            else:
                raise InvalidInput(f"pod {target.pod} has several containers; choose one with -c: {', '.join(names)}")
        if container not in names:
            raise TargetNotFound(f"container {container!r} not found in pod {namespace}/{target.pod} "
                                 f"(containers: {', '.join(names)})")
        pt = PodTarget(namespace, target.pod, container, pod)
        if require_running:
            phase = pod.get("status", {}).get("phase")
            state = pt.container_status.get("state") or {}
            if phase != "Running" or "running" not in state:
                why = next(iter(state), phase or "unknown")
                raise TargetNotRunning(f"container {pt.name} is not running ({why})")
        return pt

    # -- identity ---------------------------------------------------------------------

    def security_context_identity(self, pt: PodTarget, etc: dict | None = None) -> ident.Identity:
        ctr_sc = pt.container_spec.get("securityContext") or {}
        pod_sc = pt.pod["spec"].get("securityContext") or {}
        uid = ctr_sc.get("runAsUser", pod_sc.get("runAsUser"))
        gid = ctr_sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        if uid is None:
            raise IdentityUnresolved("no runAsUser in the container's or the pod's securityContext")
        where = "container" if "runAsUser" in ctr_sc else "pod"
        extra = list(pod_sc.get("supplementalGroups") or [])
        if pod_sc.get("fsGroup") is not None:
            extra.append(pod_sc["fsGroup"])
        user = f"{uid}:{gid}" if gid is not None else str(uid)
        passwd = ident.parse_passwd(etc.get("etc/passwd", "")) if etc else {}
        groups = ident.parse_group(etc.get("etc/group", "")) if etc else {}
        resolved = ident.resolve_configured_user(user, passwd=passwd, groups=groups, missing_gid="zero",
                                                 extra_groups=extra, source=ident.SOURCE_CONFIG)
        return resolved.with_note(f"runAsUser from the {where} securityContext")

    def image_identity(self, pt: PodTarget) -> tuple[ident.Identity, dict]:
        user, etc, via = self.image_user(pt)
        if not user:
            raise IdentityUnresolved(f"image {pt.container_spec['image']} sets no USER (it would run as root)")
        passwd = ident.parse_passwd(etc.get("etc/passwd", ""))
        groups = ident.parse_group(etc.get("etc/group", ""))
        resolved = ident.resolve_configured_user(user, passwd=passwd, groups=groups, missing_gid="zero",
                                                 source=ident.SOURCE_IMAGE)
        return resolved.with_note(f"image config User {user!r} read from {via}"), etc

    def image_user(self, pt: PodTarget) -> tuple[str, dict, str]:
        """The image config's User and its /etc files: from the local engine when it
        provably holds the very image the node runs, otherwise from the registry."""
        image = pt.container_spec["image"]
        image_id = pt.container_status.get("imageID") or ""
        local = _local_engine_image(image, image_id)
        if local is not None:
            return local
        from debugkit.registry import RegistryError, image_user_and_etc

        ref = image_id if "@sha256:" in image_id else image
        ref = ref.removeprefix("docker-pullable://")
        arch = (self._node_architecture(pt) or "amd64")
        try:
            user, files = image_user_and_etc(ref, architecture=arch)
        except RegistryError as exc:
            raise IdentityUnresolved(f"cannot read the image config of {image}: {exc}") from exc
        return user, files, f"registry {ref.split('/')[0]}"

    def _node_architecture(self, pt: PodTarget) -> str | None:
        node = pt.pod["spec"].get("nodeName")
        if not node:
            return None
        with contextlib.suppress(Exception):
            return self.api.read_node(node)["status"]["nodeInfo"]["architecture"]
        return None

    def identity_candidates(self, pt: PodTarget, *, stop_at_first: bool = False) -> list:
        from debugkit.backends.docker import Candidate

        out = []
        etc: dict = {}
        sc = pt.container_spec.get("securityContext") or {}
        pod_sc = pt.pod["spec"].get("securityContext") or {}
        has_sc_user = "runAsUser" in sc or "runAsUser" in pod_sc
        image_candidate = None
        # The image is read when the securityContext is silent, or gives a UID with no group
        # (its primary group comes from the image's passwd), or when inspect wants everything.
        needs_image = (not has_sc_user or ("runAsGroup" not in sc and "runAsGroup" not in pod_sc)
                       or not stop_at_first)
        if needs_image:
            try:
                image_ident, etc = self.image_identity(pt)
                image_candidate = Candidate(ident.SOURCE_IMAGE, identity=image_ident)
            except IdentityUnresolved as exc:
                image_candidate = Candidate(ident.SOURCE_IMAGE, error=str(exc))
        try:
            sc_ident = ident.name_identity(self.security_context_identity(pt, etc),
                                           ident.parse_passwd(etc.get("etc/passwd", "")))
            out.append(Candidate(ident.SOURCE_CONFIG, identity=sc_ident))
        except IdentityUnresolved as exc:
            out.append(Candidate(ident.SOURCE_CONFIG, error=str(exc)))
        if image_candidate is not None and not (stop_at_first and out[0].identity is not None):
            out.append(image_candidate)
        return out

    def resolve_identity(self, pt: PodTarget, *, user_flag: str | None = None) -> ident.Identity:
        if user_flag:
            return ident.identity_from_flag(user_flag)
        errors = []
        for candidate in self.identity_candidates(pt, stop_at_first=True):
            if candidate.identity is not None:
                return candidate.identity
            errors.append(f"{candidate.source}: {candidate.error}")
        raise IdentityUnresolved("cannot determine the target's user (" + "; ".join(errors) + ")",
                                 hint="pass --user UID[:GID]")

    # -- policy -----------------------------------------------------------------------

    def enforce_level(self, namespace: str) -> str | None:
        from kubernetes.client.exceptions import ApiException

        try:
            ns = self.api.read_namespace(namespace)
        except ApiException as exc:
            if exc.status == 403:
                return None  # cannot read it: the API server will still enforce; we cannot pre-check
            raise api_error(exc, verb="get", resource="namespaces", namespace=namespace, name=namespace) from exc
        return (ns.get("metadata", {}).get("labels") or {}).get(podsecurity.ENFORCE_LABEL)

    def check_policy(self, pt: PodTarget, container: dict, profile: str) -> str | None:
        level = self.enforce_level(pt.namespace)
        found = podsecurity.violations(level, container, pt.pod["spec"].get("securityContext"))
        if found:
            raise PolicyRejected(
                f"namespace {pt.namespace} enforces PodSecurity {level!r}, which rejects profile "
                f"{profile!r}: " + "; ".join(found),
                hint="use --profile restricted" if profile != "restricted" else None,
            )
        return level

    # -- the debug container ----------------------------------------------------------

    def launch(self, pt: PodTarget, container: dict) -> None:
        existing = pt.pod["spec"].get("ephemeralContainers")
        if existing:
            patch = [{"op": "add", "path": "/spec/ephemeralContainers/-", "value": container}]
        else:
            patch = [{"op": "add", "path": "/spec/ephemeralContainers", "value": [container]}]
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.patch_ephemeral_containers(pt.namespace, pt.pod_name, patch)
        except ApiException as exc:
            if exc.status == 404:
                # The pod was there a moment ago: a bare 404 means the subresource is missing.
                raise EphemeralContainersUnavailable(
                    "ephemeral containers are not available in this cluster (pods/ephemeralcontainers: 404)"
                ) from exc
            raise api_error(exc, verb="patch", resource="pods/ephemeralcontainers",
                            namespace=pt.namespace, name=pt.pod_name) from exc

    def debug_status(self, pod: dict, name: str) -> dict:
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
            except Exception:  # a dropped watch is not fatal: poll again
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
        except Exception as exc:  # noqa: BLE001 - ApiException or websocket errors
            raise api_error(exc, verb="create", resource="pods/exec" if command else "pods/attach",
                            namespace=pt.namespace, name=pt.pod_name) from exc


def _local_engine_image(image: str, image_id: str):
    """(User, etc files, "local engine") when the local Docker engine has exactly the image
    the node runs (same ID or repo digest); None otherwise. Creates, never starts, a
    throwaway container to read /etc through the archive API."""
    if not image_id:
        return None
    try:
        from debugkit.backends.docker import DockerBackend, TargetInfo

        backend = DockerBackend()
        attrs = backend.api.inspect_image(image)
    except Exception:  # no engine, no such image: the registry is the way
        return None
    digest = image_id.split("@", 1)[-1].removeprefix("docker-pullable://")
    matches = attrs.get("Id") == digest or any(d.endswith(digest) for d in attrs.get("RepoDigests") or [])
    if not matches:
        return None
    from debugkit.registry import needs_etc

    user = (attrs.get("Config") or {}).get("User") or ""
    files: dict[str, str] = {}
    if needs_etc(user):
        probe = backend.api.create_container_raw({"Image": image, "Cmd": ["/nonexistent"],
                                                  "Labels": {"io.debugkit.managed": "probe"}})
        try:
            info = TargetInfo(id=probe["Id"], name="probe", image=image, image_id=attrs["Id"], pid=0,
                              status="created", configured_user=user)
            for path in ("/etc/passwd", "/etc/group"):
                text = backend.read_target_file(info, path)
                if text is not None:
                    files[path.lstrip("/")] = text
        finally:
            backend.remove_sidecar(probe["Id"])
    return user, files, "the local engine"


# -- the ephemeral container as plain data ------------------------------------------------

def ephemeral_container(spec: SidecarSpec, *, target_container: str, custom: dict | None = None) -> dict:
    """The EphemeralContainer for this spec. Ephemeral containers cannot carry labels,
    so the session lives in the name (debugkit-<id>) and in the environment."""
    sc: dict = {
        "runAsUser": spec.uid,
        "runAsGroup": spec.gid,
        "runAsNonRoot": spec.run_as_non_root,
        "allowPrivilegeEscalation": not spec.no_new_privileges,
        "capabilities": {"drop": list(spec.cap_drop)} if spec.cap_drop else {},
        "readOnlyRootFilesystem": spec.read_only_root,
    }
    if spec.cap_add:
        sc["capabilities"]["add"] = list(spec.cap_add)
    if not sc["capabilities"]:
        del sc["capabilities"]
    if spec.seccomp_runtime_default:
        sc["seccompProfile"] = {"type": "RuntimeDefault"}
    if spec.privileged:
        sc["privileged"] = True
    container: dict = {
        "name": spec.name,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "targetContainerName": target_container,
        "stdin": spec.stdin,
        "stdinOnce": spec.stdin,
        "tty": spec.tty,
        "env": [{"name": k, "value": v} for k, v in spec.env],
        "securityContext": sc,
        "terminationMessagePolicy": "File",
    }
    if spec.command:
        container["command"] = list(spec.command)
    if custom:
        for key in ("name", "targetContainerName"):
            if key in custom:
                raise InvalidInput(f"--custom may not set {key!r}")
        container = _merge(container, custom)
    return container


def _merge(base: dict, override: dict) -> dict:
    """Recursive merge: mappings merge, everything else (lists included) is replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_custom(path: str | None) -> dict | None:
    if not path:
        return None
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh.read(1 << 20))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read --custom {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"--custom {path} must hold a mapping (a partial container spec)")
    return data


# -- sessions: complete, validate, run ----------------------------------------------------

def prepare(options, *, command=None, stdin=None, tty=None):
    """(backend, pod target, spec, container dict, level). Nothing is changed in the cluster."""
    from debugkit.session import build_spec, _resources

    _resources(options)
    if options.user:
        ident.parse_user_flag(options.user)
    custom = load_custom(options.custom)
    backend = KubeBackend(kubeconfig=options.kubeconfig, context=options.context)
    pt = backend.find_target(options.target)
    identity = backend.resolve_identity(pt, user_flag=options.user)
    spec = build_spec(options, identity=identity, target_name=pt.name, target_id=pt.uid, runtime="kubernetes")
    spec = spec.evolve(
        command=tuple(command if command is not None else spec.command),
        stdin=spec.stdin if stdin is None else stdin,
        tty=spec.tty if tty is None else tty,
    )
    container = ephemeral_container(spec, target_container=pt.container, custom=custom)
    level = backend.check_policy(pt, container, spec.profile)
    return backend, pt, spec, container, level


def attach(options, streams, *, announce=None) -> int:
    from debugkit import session as sess

    scripted = bool(options.command) and not options.tty
    with sess.refusals_audited(options):
        backend, pt, spec, container, _level = prepare(
            options,
            # Scripted commands go through the gate (see GATE) and always attach stdin.
            command=gate(tuple(options.command), seconds=int(options.timeout) + 60) if scripted else None,
            stdin=True,
        )
    if announce:
        announce(spec, _Named(pt.name), [])
    started = sess.audit_start(spec, runtime="kubernetes", target=pt.name, target_id=pt.uid,
                               image={"image_id": None, "image_digest": None},
                               mode="interactive" if spec.tty else "command")
    with sess.audited(spec, started=started) as result:
        backend.launch(pt, container)
        note = (lambda reason: streams.stderr.write(f"debugkit: waiting: {reason}\n".encode()) or
                streams.stderr.flush())
        state = backend.wait_for(pt, spec.name, until="running", timeout=options.timeout, on_reason=note)
        if "running" in state:
            ws = backend.open_stream(pt, spec.name, tty=spec.tty, stdin=True)
            try:
                _pump_ws(ws, tty=spec.tty, gate=scripted,
                         stdin=streams.stdin if (options.stdin or spec.tty) else None,
                         stdout=streams.stdout, stderr=streams.stderr)
            finally:
                ws.close()
        # After the stream ends the container is finishing; the exit code is in its status.
        final = backend.wait_for(pt, spec.name, until="terminated", timeout=max(options.timeout, 30))
        code = int(final["terminated"].get("exitCode", 1))
        if scripted and code == 125 and final["terminated"].get("reason") == "Error" and "running" not in state:
            raise DebugkitError("the debug container ended before debugkit could attach to it")
        result["exit_code"] = code
        result["outcome"] = "exited"
    return result["exit_code"]


class _Named:
    def __init__(self, name: str):
        self.name = name


def _pump_ws(ws, *, tty: bool, gate: bool, stdin, stdout, stderr) -> None:
    """Copy between the websocket and local streams until the container's stream ends."""
    from debugkit.terminal import terminal_size

    if gate:
        ws.write_channel(STDIN, b"\n")
    stdin_fd = stdin.fileno() if stdin is not None else None
    if stdin_fd is None and gate:
        ws.close_channel(STDIN)  # the command sees EOF on stdin, as with docker run without -i
    last_size = None
    while ws.is_open():
        if tty:
            size = terminal_size()
            if size != last_size:
                last_size = size
                ws.write_channel(RESIZE, json.dumps({"Width": size[1], "Height": size[0]}))
        if stdin_fd is not None:
            ready, _, _ = select.select([stdin_fd], [], [], 0)
            if ready:
                data = os.read(stdin_fd, 65536)
                if data:
                    ws.write_channel(STDIN, data)
                else:
                    stdin_fd = None
                    ws.close_channel(STDIN)
        ws.update(timeout=0.05)
        for channel, stream in ((STDOUT, stdout), (STDERR, stderr)):
            data = ws.read_channel(channel)
            if data:
                stream.write(data if isinstance(data, bytes) else data.encode())
                stream.flush()


def inspect(options) -> dict:
    backend = KubeBackend(kubeconfig=options.kubeconfig, context=options.context)
    pt = backend.find_target(options.target)
    candidates = backend.identity_candidates(pt)
    from debugkit.session import build_spec

    winner = None
    if options.user:
        winner = ident.identity_from_flag(options.user)
    else:
        winner = next((c.identity for c in candidates if c.identity is not None), None)
    level = backend.enforce_level(pt.namespace)
    data = {
        "runtime": "kubernetes",
        "namespace": pt.namespace,
        "pod": pt.pod_name,
        "container": pt.container,
        "image": pt.container_spec.get("image"),
        "image_id": pt.container_status.get("imageID"),
        "uid": winner.uid if winner else None,
        "gid": winner.gid if winner else None,
        "groups": list(winner.groups) if winner else [],
        "user_name": winner.user_name if winner else None,
        "source": winner.source if winner else None,
        "notes": list(winner.notes) if winner else [],
        "sources": [c.as_dict() | {"source": c.source} for c in candidates],
        "pod_security_enforce": level,
    }
    if winner is not None:
        spec = build_spec(options, identity=winner, target_name=pt.name, target_id=pt.uid, runtime="kubernetes")
        container = ephemeral_container(spec, target_container=pt.container, custom=load_custom(options.custom))
        data["profile"] = spec.profile
        data["admitted_by_namespace"] = not podsecurity.violations(level, container,
                                                                  pt.pod["spec"].get("securityContext"))
        data["ephemeral_container"] = container
        ctx = f" --context {options.context}" if options.context else ""
        data["attach_command"] = (f"debugkit attach k8s://{pt.namespace}/{pt.pod_name}/{pt.container}{ctx}"
                                  f" --profile {spec.profile}")
    return data


# -- one debug container, many commands (runbooks) ---------------------------------------

class KubeExecSession:
    def __init__(self, backend: KubeBackend, pt: PodTarget, spec: SidecarSpec, container: dict, timeout: float):
        self.backend = backend
        self.pt = pt
        self.spec = spec
        self.container = container
        self.timeout = timeout
        self._keepalive = None

    def __enter__(self) -> "KubeExecSession":
        self.backend.launch(self.pt, self.container)
        state = self.backend.wait_for(self.pt, self.spec.name, until="running", timeout=self.timeout)
        if "running" not in state:
            raise DebugkitError(f"debug container {self.spec.name} ended at once: {state}")
        self._keepalive = self.backend.open_stream(self.pt, self.spec.name, tty=False, stdin=True)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._keepalive is not None:
            with contextlib.suppress(Exception):
                self._keepalive.close_channel(STDIN)
                self._keepalive.close()
            self._keepalive = None

    def exec(self, argv, *, timeout: float, max_output: int = 1 << 20):
        from debugkit.execution import StepRun

        step = StepRun(argv, timeout=timeout, max_output=max_output)
        ws = self.backend.open_stream(self.pt, self.spec.name, tty=False, stdin=False, command=step.wrapped)
        try:
            while ws.is_open():
                if step.remaining() <= 0:
                    step.timed_out = True
                    break
                ws.update(timeout=0.2)
                for channel in (STDOUT, STDERR):
                    data = ws.read_channel(channel)
                    if data:
                        step.add(data if isinstance(data, bytes) else data.encode(), stderr=channel == STDERR)
            try:
                code = None if step.timed_out else ws.returncode
            except (ValueError, KeyError, TypeError) as exc:
                status = ws.read_channel(ERROR)
                raise DebugkitError(f"exec in debug container {self.spec.name} failed: {status or exc}") from exc
        finally:
            ws.close()
        return step.result(code)


def open_exec_session(options):
    from debugkit import session as sess

    with sess.refusals_audited(options):
        backend, pt, spec, container, _level = prepare(options, command=KEEPALIVE, stdin=True, tty=False)
    return sess._audited_exec_session(KubeExecSession(backend, pt, spec, container, options.timeout),
                                      runtime="kubernetes", target=pt.name, target_id=pt.uid,
                                      image={"image_id": None, "image_digest": None})


# -- ps / gc -------------------------------------------------------------------------------

def debug_sessions(*, kubeconfig=None, context=None, namespace=None) -> list:
    """debugkit's ephemeral containers, running or terminated, across namespaces."""
    import datetime as dt

    from debugkit.lifecycle import SessionRow

    backend = KubeBackend(kubeconfig=kubeconfig, context=context)
    api = backend.api
    pods = backend._call(api.list_pods, namespace, verb="list", resource="pods",
                         namespace=namespace or "(all namespaces)")
    rows = []
    now = dt.datetime.now(dt.timezone.utc)
    for pod in pods.get("items") or []:
        for ctr in pod["spec"].get("ephemeralContainers") or []:
            if not ctr["name"].startswith(NAME_PREFIX):
                continue
            env = {e["name"]: e.get("value") for e in ctr.get("env") or []}
            sc = ctr.get("securityContext") or {}
            status = backend.debug_status(pod, ctr["name"])
            state = status.get("state") or {}
            kind = next(iter(state), "pending")
            started = (state.get(kind) or {}).get("startedAt")
            age = int((now - dt.datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds()) \
                if started else 0
            label = kind if kind != "terminated" else f"exited({state[kind].get('exitCode')})"
            rows.append(SessionRow(
                runtime="kubernetes", session=env.get(ENV_SESSION, ctr["name"][len(NAME_PREFIX):]),
                name=ctr["name"], target=f"{pod['metadata']['name']}/{ctr.get('targetContainerName', '')}",
                user=f"{sc.get('runAsUser', '?')}:{sc.get('runAsGroup', '?')}",
                state="running" if kind == "running" else label, age_s=age,
                namespace=pod["metadata"]["namespace"],
            ))
    return rows
