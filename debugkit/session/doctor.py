"""`debugkit doctor`: can debugkit work here, and if not, what to do about it.

Each check is a small function that returns one `Result` (name, status, detail, fix).
Checks read; they never start a sidecar, patch a pod or write an audit record (but
for the TARGET checks, which plan exactly as `inspect` does, and like inspect leave a
`refused` record when the target cannot be planned). A runtime that is not set up
here (no kubeconfig, no Podman) is reported as "not configured" and fails nothing.
Every engine and API call has its own time limit, so doctor finishes even when an
engine hangs. docs/doctor.md describes every check and its fix.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from debugkit.core.errors import DebugkitError, IdentityUnresolved

OK, FAIL, WARN, SKIP, NOT_CONFIGURED = "ok", "fail", "warn", "skip", "not configured"
ENGINE_TIMEOUT = 5.0
KUBE_TIMEOUT = 5.0
REGISTRY_TIMEOUT = 10.0
EXAMPLE_UID = 65532  # distroless nonroot: what PodSecurity is judged for when no TARGET is given


@dataclass(frozen=True)
class Result:
    name: str
    status: str          # ok | fail | warn | skip | not configured
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        """Only a failure fails the run: warnings, skips and missing runtimes do not."""
        return self.status != FAIL

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def passed(results: Iterable[Result]) -> bool:
    return all(r.ok for r in results)


def _guard(name: str, check: Callable[[], list[Result]]) -> list[Result]:
    """A check that breaks (a bug, an answer nobody expected) is one failed line, not a crash."""
    try:
        return check()
    except DebugkitError as exc:
        return [Result(name, FAIL, exc.message, exc.hint or "")]
    except Exception as exc:  # noqa: BLE001
        return [Result(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                       "rerun with --debug and report it")]


# -- the config file and the audit log ---------------------------------------------------------

def check_config() -> Result:
    """The configuration file parses, and every DEBUGKIT_* variable holds a valid value."""
    from debugkit.core.errors import ConfigInvalid
    from debugkit.session import config

    try:
        cfg = config.current()
    except ConfigInvalid as exc:
        return Result("config", FAIL, exc.message,
                      "correct the file at the line named (or point --config / DEBUGKIT_CONFIG at another file)")
    for key, env in config.ENV.items():
        value = os.environ.get(env)
        if value is None:
            continue
        try:
            config.check(key, value)
        except DebugkitError as exc:
            return Result("config", FAIL, f"environment {env}: {exc.message}", f"correct or unset {env}")
    if not cfg.exists:
        return Result("config", OK, f"{cfg.path} does not exist: the built-in defaults apply")
    count = len(cfg.values) + sum(len(v) for v in cfg.runtimes.values()) + sum(len(v) for v in cfg.contexts.values())
    return Result("config", OK, f"{cfg.path} parses ({count} setting(s), {len(cfg.runbook_paths)} runbook path(s))")


def check_audit_log() -> Result:
    """The audit log can be appended to (or created): nothing is launched without its record."""
    from debugkit.session import audit

    path = audit.audit_path()
    fix = "set DEBUGKIT_AUDIT_LOG (or XDG_STATE_HOME) to a writable place"
    if path.is_symlink():
        return Result("audit-log", FAIL, f"{path} is a symbolic link, which debugkit does not write through",
                      f"replace the link with the file itself, or {fix}")
    if path.exists():
        if not path.is_file():
            return Result("audit-log", FAIL, f"{path} is not a regular file", fix)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)  # the flags append() uses
            os.close(fd)
        except OSError as exc:
            return Result("audit-log", FAIL, f"cannot write {path}: {exc.strerror or exc}",
                          f"give {_me()} write permission on it, or {fix}")
        return Result("audit-log", OK, f"{path} is writable")
    # Not there yet: make it the way the first session will (directories 0700, the file
    # 0600, no symlink followed), then take back exactly what was made.
    made: list[Path] = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        made.append(parent)
        parent = parent.parent
    try:
        for directory in reversed(made):
            directory.mkdir(mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        path.unlink()
    except OSError as exc:
        return Result("audit-log", FAIL, f"cannot create {path}: {exc.strerror or exc}", fix)
    finally:
        for directory in made:
            try:
                directory.rmdir()
            except OSError:
                pass
    return Result("audit-log", OK, f"{path} does not exist yet and can be created")


def _me() -> str:
    from debugkit.runtimes.base import local_user

    return local_user()


# -- Docker and Podman -------------------------------------------------------------------------

ENGINES = {"docker": "Docker", "podman": "Podman"}


def engine_checks(runtime: str, *, docker_host: str | None = None, docker_context: str | None = None) -> list[Result]:
    """The engine answers, its socket lets us in, and the toolbox image is there."""
    from debugkit.runtimes.docker.engine import EngineConfigError
    from debugkit.session import probes

    engine = ENGINES[runtime]
    if not probes.engine_configured(runtime, docker_host, docker_context):
        where = ("CONTAINER_HOST is not set and /run/podman/podman.sock does not exist" if runtime == "podman"
                 else "no -H, DOCKER_HOST or Docker context is set and /var/run/docker.sock does not exist")
        return [Result(f"{runtime}-engine", NOT_CONFIGURED, f"{engine} is not configured here ({where})")]
    try:
        api = probes.engine_client(runtime, timeout=ENGINE_TIMEOUT, docker_host=docker_host,
                                   docker_context=docker_context)
    except EngineConfigError as exc:
        var = "CONTAINER_HOST" if runtime == "podman" else "-H, DOCKER_HOST or the Docker context"
        return [Result(f"{runtime}-engine", FAIL, str(exc), f"correct {var} (unix:///path, tcp://host:port, "
                                                             f"ssh://user@host)")]
    try:
        results = [check_engine(api, runtime), check_socket(api, runtime)]
        if results[0].ok:
            results.append(check_toolbox_image(api, runtime))
        else:
            results.append(Result(f"{runtime}-toolbox", SKIP, f"not checked: the {engine} engine did not answer"))
        return results
    finally:
        api.close()


def check_engine(api, runtime: str) -> Result:
    from debugkit.runtimes.docker.engine import EngineConnectionError, EngineError

    engine = ENGINES[runtime]
    try:
        version = api.version() or {}
    except PermissionError:
        return Result(f"{runtime}-engine", FAIL, f"permission denied on the {engine} socket {api.host}",
                      "see the socket line below")
    except EngineConnectionError as exc:
        detail = f": {exc.detail}" if exc.detail else ""
        if runtime == "podman":
            fix = ("start it (systemctl start podman.socket, or podman system service --time=0 &), "
                   "or point CONTAINER_HOST at a running one")
        else:
            fix = ("start it (systemctl start docker; in a debugkit checkout, scripts/docker-testenv up), or "
                   "point DOCKER_HOST at a running engine")
        return Result(f"{runtime}-engine", FAIL, f"cannot reach the {engine} engine at {api.host}{detail}", fix)
    except EngineError as exc:
        return Result(f"{runtime}-engine", FAIL, f"the {engine} engine at {api.host} answered {exc.status_code}: "
                                                 f"{exc.explanation}", f"check the {engine} service's log")
    return Result(f"{runtime}-engine", OK, f"{engine} {version.get('Version', '?')} (API "
                                           f"{version.get('ApiVersion', '?')}) at {api.host}")


def check_socket(api, runtime: str) -> Result:
    """Who may use the engine: the unix socket's owner, group and mode; TLS for TCP."""
    import grp
    import pwd

    name = f"{runtime}-socket"
    address = api.address
    if address.scheme != "unix":
        if address.tls is not None:
            return Result(name, OK, f"{api.host}: TCP with TLS ({'verified' if address.tls.verify else 'unverified'})")
        return Result(name, WARN, f"{api.host}: plain TCP without TLS, not a local socket",
                      "anyone who reaches that port controls the engine: use TLS (DOCKER_TLS_VERIFY, "
                      "DOCKER_CERT_PATH) or ssh://")
    path = address.path
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Result(name, FAIL, f"{path} does not exist", "start the engine: it creates its socket")
    except OSError as exc:
        return Result(name, FAIL, f"cannot look at {path}: {exc.strerror or exc}",
                      "a parent directory is closed to you: run with sudo, or fix its permissions")
    if not stat.S_ISSOCK(st.st_mode):
        return Result(name, FAIL, f"{path} is not a socket", "point the address at the engine's socket")
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    described = f"{path} {stat.filemode(st.st_mode)} {owner}:{group}"
    me = _me()
    if not os.access(path, os.R_OK | os.W_OK):
        return Result(name, FAIL, f"{described}: {me} (uid {os.getuid()}) may not connect",
                      f"add {me} to the group {group} (sudo usermod -aG {group} {me}, then log in again), "
                      f"or run debugkit with sudo")
    if st.st_mode & stat.S_IWOTH:
        return Result(name, WARN, f"{described}: writable by every local user, who can all control the engine",
                      f"sudo chmod o-rw {path} (and use the group {group})")
    return Result(name, OK, f"{described}: {me} may connect")


def toolbox_setting(runtime: str, kube_context: str | None = None):
    """The sidecar image a target on `runtime` gets without --image, and where it comes from
    (environment > the config file's context, runtime and global entries > built-in)."""
    from debugkit.session import config

    return config.current().effective("image", runtime=runtime, kube_context=kube_context)


def check_toolbox_image(api, runtime: str) -> Result:
    from debugkit.core.imageref import toolbox_ref
    from debugkit.runtimes.docker.engine import EngineError, EngineNotFound

    name = f"{runtime}-toolbox"
    engine = ENGINES[runtime]
    setting = toolbox_setting(runtime)
    image = setting.value
    origin = "" if setting.source == "built-in" else f", from {setting.source}"
    try:
        attrs = api.inspect_image(image)
    except EngineNotFound:
        standard = image == toolbox_ref()
        if runtime == "podman":
            fix = (f"copy it from Docker: docker save {image} | podman load" if standard
                   else f"podman pull {image}")
        else:
            fix = "debugkit toolbox build" + ("" if standard else f" --tag {image} (or docker pull {image})")
        return Result(name, FAIL, f"the sidecar image {image}{origin} is not in the local {engine} engine", fix)
    except EngineError as exc:
        return Result(name, FAIL, f"{engine} could not inspect {image}: {exc.explanation}", "")
    from debugkit.runtimes.docker.translate import HELPER_LABEL, HELPER_PROTOCOL, helper_protocol

    present = f"{image}{origin} is present ({str(attrs.get('Id', '?'))[:19]})"
    protocol = helper_protocol((attrs.get("Config") or {}).get("Labels") or {})
    fix = "rebuild it: debugkit toolbox build" + ("" if runtime == "docker" else
                                                  f", then docker save {image} | podman load")
    if image == toolbox_ref() and protocol is None:
        # A toolbox built before the helper existed: no reaper, and cp and port-forward refuse.
        return Result(name, WARN, f"{present}, but it is an old build without debugkit-helper "
                                  f"(no {HELPER_LABEL} label): no reaper, and cp and port-forward refuse", fix)
    if protocol is not None and protocol < HELPER_PROTOCOL:
        return Result(name, FAIL, f"{present}, but its debugkit-helper is older than this debugkit (protocol "
                                  f"{protocol}, {HELPER_PROTOCOL} needed): attach refuses it", fix)
    return Result(name, OK, present)


# -- Kubernetes ----------------------------------------------------------------------------------

# What debugkit asks the API server for: (verb, resource, subresource, required, what it
# is for, what happens without it). required True fails the run when denied; False warns;
# None is not used at all (shown because people ask). On the 1.32 API server a websocket
# exec, attach or portforward is authorized as `get` on the subresource, and debugkit
# speaks only websockets: `get pods/exec` is what it needs (`create` alone is refused).
RBAC = (
    ("get", "pods", "", True, "read the target pod", ""),
    ("patch", "pods", "ephemeralcontainers", True, "add the debug container", ""),
    ("get", "pods", "exec", True, "run every command in the debug container (websocket exec)", ""),
    ("get", "pods", "portforward", False, "port-forward straight to the pod",
     "port-forward relays through a debug container instead"),
    ("get", "pods", "attach", None, "not used: debugkit runs every command through exec", ""),
    ("get", "namespaces", "", False, "read the namespace's PodSecurity level before adding the debug container",
     "a profile the level rejects is refused by the API server instead of beforehand"),
    ("list", "pods", "", False, "list pods: ps, -l SELECTOR, deploy/ sts/ ds/ rs/ job/ targets, completion",
     "ps, -l SELECTOR, deploy/ sts/ ds/ rs/ job/ targets and pod completion do not work here"),
)


class Cluster:
    """One kube context, connected once for all the checks."""

    def __init__(self, client, auth, namespace: str):
        self.client = client
        self.auth = auth
        self.namespace = namespace
        self.username: str | None = None

    def get(self, path: str) -> dict:
        return self.client.request("GET", path, timeout=KUBE_TIMEOUT)

    def allowed(self, verb: str, resource: str, subresource: str = "", name: str = "") -> bool:
        attrs = {"verb": verb, "resource": resource, "group": "", "namespace": self.namespace}
        if subresource:
            attrs["subresource"] = subresource
        if name:
            attrs["name"] = name
        answer = self.client.request(
            "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", timeout=KUBE_TIMEOUT,
            body={"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": attrs}})
        return bool((answer.get("status") or {}).get("allowed"))


def kube_checks(*, kubeconfig: str | None, context: str | None, namespace: str | None,
                identity=None, pod_security_context: dict | None = None) -> list[Result]:
    """The context, the API server, ephemeral containers, RBAC, PodSecurity and the image."""
    from debugkit.runtimes.kubernetes.kubeconfig import KubeConfigError
    from debugkit.session import probes

    if not probes.kube_configured(kubeconfig):
        return [Result("kube-context", NOT_CONFIGURED,
                       "no kubeconfig here (KUBECONFIG is not set, ~/.kube/config does not exist) and this is not "
                       "a pod: Kubernetes targets need one")]
    try:
        client, auth = probes.kube_client(kubeconfig, context)
    except KubeConfigError as exc:
        return [Result("kube-context", FAIL, str(exc),
                       "choose a context that exists (--context NAME; kubectl config get-contexts) or correct "
                       "the kubeconfig")]
    try:
        try:
            ns = probes.kube_namespace(namespace, auth)
        except DebugkitError:  # a broken config file: the config line says so
            ns = namespace or auth.namespace
        cluster = Cluster(client, auth, ns)
        results = [check_kube_api(cluster)]
        if not results[0].ok:
            return [_context_line(cluster)] + results + [
                Result("kube-access", SKIP, "ephemeral containers, RBAC, PodSecurity: not checked, the API server "
                                            "did not answer")]
        results.insert(0, _context_line(cluster))
        results += _guard("ephemeral-containers", lambda: [check_ephemeral_containers(cluster)])
        results += _guard("rbac", lambda: check_rbac(cluster))
        results += _guard("pod-security", lambda: [check_pod_security(cluster, identity, pod_security_context)])
        results += _guard("cluster-toolbox", lambda: [check_cluster_toolbox(cluster)])
        return results
    finally:
        client.close()


def _context_line(cluster: Cluster) -> Result:
    auth = cluster.auth
    who = f" as {cluster.username}" if cluster.username else ""
    where = "in-cluster service account" if auth.in_cluster else f"context {auth.context} in {auth.source}"
    return Result("kube-context", OK, f"{where}: cluster {auth.cluster or '-'} at {auth.server}{who}, "
                                      f"namespace {cluster.namespace}")


def check_kube_api(cluster: Cluster) -> Result:
    from debugkit.runtimes.kubernetes.kubeclient import ApiError, TransportError
    from debugkit.runtimes.kubernetes.kubeconfig import KubeConfigError

    server = cluster.auth.server
    try:
        version = cluster.get("/version")
    except TransportError as exc:
        return Result("kube-api", FAIL, f"no answer from {server}: {exc}",
                      "is the API server up and reachable from here (VPN, proxy, firewall)? "
                      "`kubectl version` tries the same")
    except ApiError as exc:
        if exc.status == 401:
            return Result("kube-api", FAIL, f"{server} rejected the credentials of user {cluster.auth.user} (401)",
                          "renew them (an expired token or certificate?); kubectl auth whoami shows who you are")
        return Result("kube-api", FAIL, f"{server} answered {exc}", "")
    except KubeConfigError as exc:
        return Result("kube-api", FAIL, str(exc), "correct the kubeconfig's credentials or certificates")
    try:
        review = cluster.client.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                        timeout=KUBE_TIMEOUT,
                                        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        cluster.username = ((review.get("status") or {}).get("userInfo") or {}).get("username")
    except Exception:  # noqa: BLE001 - before 1.28 the API has no SelfSubjectReview: the name is a nicety
        pass
    return Result("kube-api", OK, f"{server} answers: Kubernetes {version.get('gitVersion', '?')}")


def check_ephemeral_containers(cluster: Cluster) -> Result:
    resources = {r.get("name") for r in cluster.get("/api/v1").get("resources") or []}
    if "pods/ephemeralcontainers" in resources:
        return Result("ephemeral-containers", OK, "the API serves pods/ephemeralcontainers")
    return Result("ephemeral-containers", FAIL, "the API server does not serve pods/ephemeralcontainers",
                  "ephemeral containers are on by default since Kubernetes 1.23 and GA since 1.25: upgrade the "
                  "cluster, or enable the EphemeralContainers feature gate")


def check_rbac(cluster: Cluster) -> list[Result]:
    ns = cluster.namespace
    who = cluster.username or cluster.auth.user or "you"
    out = []
    for verb, resource, sub, required, purpose, without in RBAC:
        full = f"{resource}/{sub}" if sub else resource
        name = f"rbac {verb} {full}"
        allowed = cluster.allowed(verb, resource, sub, name=ns if resource == "namespaces" else "")
        if required is None:
            out.append(Result(name, OK, f"{'allowed' if allowed else 'denied'} in {ns}; {purpose}"))
        elif allowed:
            out.append(Result(name, OK, f"allowed in {ns}: to {purpose}"))
        elif required:
            out.append(Result(name, FAIL, f"denied in {ns} to {who}: debugkit needs it to {purpose}",
                              grant_command(ns, who, verb, resource, sub)))
        else:
            out.append(Result(name, WARN, f"denied in {ns} to {who}: {without}",
                              grant_command(ns, who, verb, resource, sub)))
    return out


def grant_command(namespace: str, who: str, verb: str, resource: str, sub: str) -> str:
    """What to ask a cluster admin for, as commands that can be run as they are."""
    role = f"debugkit-{verb}-{sub or resource}"
    full = f"{resource}/{sub}" if sub else resource
    names = f" --resource-name={namespace}" if resource == "namespaces" else ""
    if who.startswith("system:serviceaccount:"):
        subject = "--serviceaccount=" + ":".join(who.split(":")[2:4])
    else:
        subject = f"--user={who}"
    return (f"ask an admin for: kubectl -n {namespace} create role {role} --verb={verb} --resource={full}{names} "
            f"&& kubectl -n {namespace} create rolebinding {role} --role={role} {subject}")


def profile_container(profile: str, identity) -> dict:
    """The ephemeral container debugkit would send for `profile` (pure: nothing is sent)."""
    from debugkit.core.profiles import apply_profile
    from debugkit.core.spec import base_spec
    from debugkit.runtimes.kubernetes import translate

    spec = base_spec(image="toolbox", identity=identity, target_name="doctor", target_id="doctor",
                     runtime="kubernetes", cli_pid=0, cli_host="doctor", local_user="doctor")
    return translate.ephemeral_container(apply_profile(spec, profile), target_container="app")


def check_pod_security(cluster: Cluster, identity=None, pod_security_context: dict | None = None) -> Result:
    """The namespace's enforce level, and which profiles it admits."""
    from debugkit.core.identity import Identity
    from debugkit.core.profiles import PROFILES
    from debugkit.runtimes.kubernetes import podsecurity
    from debugkit.runtimes.kubernetes.kubeclient import ApiError

    ns = cluster.namespace
    try:
        found = cluster.get(f"/api/v1/namespaces/{ns}")
    except ApiError as exc:
        if exc.status == 403:
            return Result("pod-security", WARN, f"cannot read namespace {ns}: its PodSecurity level is unknown "
                                                f"(the API server still enforces it when the debug container is "
                                                f"added, and debugkit reports the reason)",
                          f"ask for get on namespaces/{ns} to have it checked beforehand")
        if exc.status == 404:
            return Result("pod-security", FAIL, f"namespace {ns} does not exist",
                          "choose one with -n (kubectl get namespaces)")
        raise
    level = ((found.get("metadata") or {}).get("labels") or {}).get(podsecurity.ENFORCE_LABEL)
    example = identity is None
    identity = identity or Identity(uid=EXAMPLE_UID, gid=EXAMPLE_UID, source="example")
    admitted, rejected = [], []
    for profile in PROFILES:
        reasons = podsecurity.violations(level, profile_container(profile, identity), pod_security_context)
        if reasons:
            rejected.append(f"{profile} ({reasons[0]})")
        else:
            admitted.append(profile)
    shown = level or "no enforce label: the cluster's default (privileged unless its admission configuration " \
                     "says otherwise)"
    whom = f"a target running as {identity.uid}" if not example else f"a non-root target (UID {EXAMPLE_UID})"
    detail = (f"namespace {ns} enforces {shown}; for {whom} it admits {', '.join(admitted) or 'no profile'}"
              + (f"; rejects {', '.join(rejected)}" if rejected else ""))
    if "restricted" not in admitted:
        return Result("pod-security", FAIL, detail,
                      "the default profile would be refused: give the sidecar a non-root UID (--user UID:GID) or "
                      "debug in a namespace with a laxer level")
    return Result("pod-security", OK, detail)


def check_cluster_toolbox(cluster: Cluster) -> Result:
    """The image debug containers use on this context, when one is configured, exists in
    its registry (the manifest answers), so the nodes can pull it."""
    from debugkit.runtimes.kubernetes.registry import RegistryClient, RegistryError, parse_ref

    setting = toolbox_setting("kubernetes", cluster.auth.context)
    if setting.source == "built-in":
        return Result("cluster-toolbox", NOT_CONFIGURED,
                      f"no image configured for the cluster: debug containers use {setting.value}, which the "
                      f"nodes must already have", "push the toolbox to a registry the nodes pull from and set "
                                                  "`image:` (for this context) in the config file")
    ref = setting.value
    try:
        RegistryClient(parse_ref(ref), timeout=REGISTRY_TIMEOUT).manifest()
    except RegistryError as exc:
        return Result("cluster-toolbox", FAIL, f"{ref} (from {setting.source}): {exc.message}",
                      f"push the toolbox there (docker tag IMAGE {ref} && docker push {ref}), or correct the "
                      f"image at {setting.source}")
    return Result("cluster-toolbox", OK, f"{ref} (from {setting.source}) is in its registry")


# -- the target -----------------------------------------------------------------------------------

def target_checks(raw: dict) -> tuple[list[Result], dict]:
    """Who TARGET runs as (as inspect resolves it), whether it is dumpable, whether the
    default profile reads its files, its zombies. Also returns what kube_checks wants to
    know about a pod target (its namespace, identity and pod securityContext)."""
    from debugkit.session import flow

    try:
        runtime, plan = flow.plan(raw, mode="command", thorough=True)
        info = runtime.inspect(plan)
    except IdentityUnresolved as exc:
        return [Result("target-identity", FAIL, exc.message, "pass --user UID[:GID]")], {}
    except DebugkitError as exc:
        return [Result("target", FAIL, exc.message, exc.hint or "")], {}
    context: dict = {}
    spec = plan.spec
    results = [Result("target", OK, f"{plan.runtime} {plan.target.name} (image {plan.target.image})")]
    notes = f" ({'; '.join(spec.identity.notes)})" if spec.identity.notes else ""
    name = f" {spec.identity.user_name}" if spec.identity.user_name else ""
    results.append(Result("target-identity", OK, f"{spec.identity.uid}:{spec.identity.gid}{name} from "
                                                 f"{spec.identity.source}{notes}"))
    if plan.runtime == "kubernetes":
        pt = plan.facts["pod_target"]
        context = {"namespace": pt.namespace, "identity": spec.identity,
                   "pod_security_context": pt.pod_security_context}
    results.append(_dumpable(info.get("target_dumpable")))
    results.append(_filesystem(plan, info))
    results.append(_zombies(info.get("zombies"), info.get("pid")))
    return results, context


PTRACE_FIX = ("use --profile ptrace (root with only CAP_SYS_PTRACE) to read /proc/1/root and /proc/1/environ; "
              "on Kubernetes that needs a namespace whose PodSecurity level allows it")


def _dumpable(dumpable) -> Result:
    if dumpable is None:
        return Result("target-dumpable", SKIP, "unknown: only a local Docker or Podman engine shows the target's "
                                               "/proc here")
    if dumpable:
        return Result("target-dumpable", OK, "yes: its /proc entries belong to the user it runs as")
    return Result("target-dumpable", FAIL, "no: it changed UID at runtime (started as root, then dropped), so "
                                           "the kernel gives its /proc entries to root only", PTRACE_FIX)


def _filesystem(plan, info: dict) -> Result:
    spec = plan.spec
    who = f"{spec.uid}:{spec.gid}"
    if plan.runtime == "kubernetes":
        if info.get("admitted_by_namespace") is False:
            return Result("target-filesystem", FAIL,
                          f"namespace {info.get('namespace')} ({info.get('pod_security_enforce')}) would refuse "
                          f"the debug container of profile {spec.profile}",
                          "see the pod-security line: a non-root --user, or a namespace with a laxer level")
        return Result("target-filesystem", SKIP, f"not checked for pods (it would take a debug container): "
                                                 f"profile {spec.profile} runs as {who}, the target's own user; "
                                                 f"`ls $DEBUGKIT_TARGET_ROOT` in an attach shows it")
    dumpable = info.get("target_dumpable")
    if spec.run_as_root:
        return Result("target-filesystem", OK, f"profile {spec.profile} runs as root")
    if dumpable is None:
        return Result("target-filesystem", SKIP, f"unknown: profile {spec.profile} runs as {who}; whether the "
                                                 f"target's /proc/1/root is open to it needs a local engine")
    if dumpable:
        return Result("target-filesystem", OK, f"profile {spec.profile} reads /proc/1/root as {who}, the "
                                               f"target's own user, with no capability")
    return Result("target-filesystem", FAIL, f"profile {spec.profile} cannot read /proc/1/root as {who}: the "
                                             f"target is not dumpable", PTRACE_FIX)


def _zombies(count, pid) -> Result:
    if count is None:
        return Result("target-zombies", SKIP, "not counted: needs the target's PID on this machine (a local engine)")
    if count == 0:
        return Result("target-zombies", OK, f"its PID 1 (host PID {pid}) holds no zombie processes")
    return Result("target-zombies", WARN, f"its PID 1 (host PID {pid}) holds {count} zombie process(es): it does "
                                          f"not reap its children",
                  "only restarting the target removes them (their parent must reap them, and the sidecar cannot); "
                  "run it under an init (docker run --init, tini) so new ones are reaped")


# -- everything ------------------------------------------------------------------------------------

def run(*, raw: dict | None = None, namespace: str | None = None, kube_context: str | None = None,
        kubeconfig: str | None = None, docker_host: str | None = None,
        docker_context: str | None = None) -> list[Result]:
    """Every check, in order; `raw` (raw_options for a TARGET) adds the target's."""
    results = _guard("config", lambda: [check_config()]) + _guard("audit-log", lambda: [check_audit_log()])
    results += _guard("docker-engine", lambda: engine_checks("docker", docker_host=docker_host,
                                                             docker_context=docker_context))
    results += _guard("podman-engine", lambda: engine_checks("podman"))
    target_results, target_facts = [], {}
    if raw is not None:
        target_results, target_facts = _guard_target(raw)
    results += _guard("kube-context", lambda: kube_checks(
        kubeconfig=kubeconfig, context=kube_context, namespace=target_facts.get("namespace") or namespace,
        identity=target_facts.get("identity"), pod_security_context=target_facts.get("pod_security_context")))
    return results + target_results


def _guard_target(raw: dict) -> tuple[list[Result], dict]:
    holder: dict = {}

    def check() -> list[Result]:
        results, facts = target_checks(raw)
        holder.update(facts)
        return results
    return _guard("target", check), holder
