"""`debugkit doctor`'s Kubernetes checks: the context, the API server, ephemeral
containers, RBAC (one SelfSubjectAccessReview each), PodSecurity and the toolbox image.
Every request gives up after KUBE_TIMEOUT seconds (the registry's after REGISTRY_TIMEOUT)."""
from __future__ import annotations

from debugkit.core.errors import DebugkitError
from debugkit.runtimes.base import FAIL, NOT_CONFIGURED, OK, SKIP, WARN, checked
from debugkit.runtimes.base import CheckResult as Result
from debugkit.runtimes.kubernetes.errors import client_errors

KUBE_TIMEOUT = 5.0
REGISTRY_TIMEOUT = 10.0
EXAMPLE_UID = 65532  # distroless nonroot: what PodSecurity is judged for when no TARGET is given


# What debugkit asks the API server for: (verb, resource, subresource, needed by, what it is
# for, what happens without it). `needed by`: the actions that fail without it (POD: a
# debug container in a pod; NODE: node debugging, node/NAME); denied for the action at hand
# it fails the run, denied otherwise it warns; None is not used at all (shown because people
# ask). A websocket exec, attach or portforward is authorized as `get` on the subresource
# and, since Kubernetes 1.35 (AuthorizePodWebsocketUpgradeCreatePermission), as `create`
# too; debugkit speaks only websockets, so it needs both on pods/exec (before 1.35, `get`
# was enough).
POD, NODE = "pod", "node"
RBAC = (
    ("get", "pods", "", {POD, NODE}, "read the target pod (node/NAME: its debugging pod)", ""),
    ("patch", "pods", "ephemeralcontainers", {POD}, "add the debug container",
     "debug containers cannot be added: only node/NAME works here"),
    ("get", "pods", "exec", {POD, NODE}, "run every command in the debug container (websocket exec)", ""),
    ("create", "pods", "exec", {POD, NODE},
     "run every command in the debug container (websocket exec, Kubernetes 1.35 and later)", ""),
    ("create", "pods", "", {NODE}, "create a node debugging pod (node/NAME) or a held copy (--copy)",
     "node/NAME and --copy are refused here"),
    ("delete", "pods", "", {NODE}, "delete a node debugging pod or a copy when its session ends, and in gc",
     "node debugging pods and copies stay until someone who may delete pods does"),
    ("get", "nodes", "", set(), "check that the node of node/NAME exists before its pod is created",
     "node/NAME with a wrong name waits for its pod until --timeout"),
    ("get", "pods", "portforward", set(), "port-forward straight to the pod",
     "port-forward relays through a debug container instead"),
    ("create", "pods", "portforward", set(), "port-forward straight to the pod (Kubernetes 1.35 and later)",
     "port-forward relays through a debug container instead"),
    ("get", "pods", "attach", None, "not used: debugkit runs every command through exec", ""),
    ("get", "namespaces", "", set(), "read the namespace's PodSecurity level before adding the debug container",
     "a profile the level rejects is refused by the API server instead of beforehand"),
    ("list", "pods", "", set(), "list pods: ps, gc, -l SELECTOR, deploy/ sts/ ds/ rs/ job/ targets, completion",
     "ps, gc, -l SELECTOR, deploy/ sts/ ds/ rs/ job/ targets and pod completion do not work here"),
)
CLUSTER_SCOPED = {"nodes"}


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
        attrs = {"verb": verb, "resource": resource, "group": ""}
        if resource not in CLUSTER_SCOPED:
            attrs["namespace"] = self.namespace
        if subresource:
            attrs["subresource"] = subresource
        if name:
            attrs["name"] = name
        answer = self.client.request(
            "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", timeout=KUBE_TIMEOUT,
            body={"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                  "spec": {"resourceAttributes": attrs}})
        return bool((answer.get("status") or {}).get("allowed"))


def kube_checks(runtime, *, target=None, namespace: str | None = None) -> list[Result]:
    """The context, the API server, ephemeral containers, RBAC, PodSecurity and the image.
    `target`: a thorough plan of a pod, whose namespace and identity the checks use."""
    from debugkit.runtimes.kubernetes.clients import namespace_for, quiet_client
    from debugkit.runtimes.kubernetes.kubeconfig import KubeConfigError

    from debugkit.runtimes.kubernetes.nodepod import is_node_plan

    identity = pod_security_context = None
    action = POD
    if target is not None and is_node_plan(target):
        namespace, action = target.details.pod_target.namespace, NODE
    elif target is not None:
        pt = target.details.pod_target
        namespace, identity, pod_security_context = pt.namespace, target.spec.identity, pt.pod_security_context
    connection = runtime.connection
    if not runtime.entry.is_configured(connection):
        return [Result("kube-context", NOT_CONFIGURED,
                       "no kubeconfig here (KUBECONFIG is not set, ~/.kube/config does not exist) and this is not "
                       "a pod: Kubernetes targets need one")]
    try:
        # An exec plugin gets doctor's own time limit, and no terminal for a login.
        client, auth = quiet_client(connection.kubeconfig, connection.kube_context,
                                    impersonate=connection.kube_impersonate, exec_timeout=KUBE_TIMEOUT)
    except KubeConfigError as exc:
        return [Result("kube-context", FAIL, str(exc),
                       "choose a context that exists (--context NAME; kubectl config get-contexts) or correct "
                       "the kubeconfig")]
    try:
        try:
            ns = namespace_for(namespace, auth, runtime.preferences)
        except DebugkitError:  # a broken config file: the config line says so
            ns = namespace or auth.namespace
        cluster = Cluster(client, auth, ns)
        results = [check_kube_api(cluster)]
        if not results[0].ok:
            return [_context_line(cluster)] + results + [
                Result("kube-access", SKIP, "ephemeral containers, RBAC, PodSecurity: not checked, the API server "
                                            "did not answer")]
        results.insert(0, _context_line(cluster))
        results += checked("ephemeral-containers", lambda: [check_ephemeral_containers(cluster)])
        results += checked("rbac", lambda: check_rbac(cluster, action=action))
        results += checked("admission-webhooks", lambda: check_webhooks(cluster))
        results += checked("pod-security", lambda: [check_pod_security(cluster, identity, pod_security_context)])
        results += checked("cluster-toolbox", lambda: [check_cluster_toolbox(cluster, runtime)])
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
    except client_errors():  # before 1.28 the API has no SelfSubjectReview: the name is a nicety
        pass
    return Result("kube-api", OK, f"{server} answers: Kubernetes {version.get('gitVersion', '?')}")


def check_ephemeral_containers(cluster: Cluster) -> Result:
    resources = {r.get("name") for r in cluster.get("/api/v1").get("resources") or []}
    if "pods/ephemeralcontainers" in resources:
        return Result("ephemeral-containers", OK, "the API serves pods/ephemeralcontainers")
    return Result("ephemeral-containers", FAIL, "the API server does not serve pods/ephemeralcontainers",
                  "ephemeral containers are on by default since Kubernetes 1.23 and GA since 1.25: upgrade the "
                  "cluster, or enable the EphemeralContainers feature gate")


def check_rbac(cluster: Cluster, *, action: str = POD) -> list[Result]:
    """One line per verb debugkit uses: failed when the action at hand (a debug container in a
    pod, or node debugging) needs it, warned when only another action does."""
    ns = cluster.namespace
    who = cluster.username or cluster.auth.user or "you"
    out = []
    for verb, resource, sub, needed_by, purpose, without in RBAC:
        full = f"{resource}/{sub}" if sub else resource
        name = f"rbac {verb} {full}"
        allowed = cluster.allowed(verb, resource, sub, name=ns if resource == "namespaces" else "")
        required = None if needed_by is None else action in needed_by
        if not without and required is False:
            without = f"{', '.join(sorted(needed_by))} debugging does not work here"
        where = "cluster-wide" if resource in CLUSTER_SCOPED else f"in {ns}"
        if required is None:
            out.append(Result(name, OK, f"{'allowed' if allowed else 'denied'} {where}; {purpose}"))
        elif allowed:
            out.append(Result(name, OK, f"allowed {where}: to {purpose}"))
        elif required:
            out.append(Result(name, FAIL, f"denied {where} to {who}: debugkit needs it to {purpose}",
                              grant_command(ns, who, verb, resource, sub)))
        else:
            out.append(Result(name, WARN, f"denied {where} to {who}: {without}",
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
    if resource in CLUSTER_SCOPED:
        return (f"ask an admin for: kubectl create clusterrole {role} --verb={verb} --resource={full} "
                f"&& kubectl create clusterrolebinding {role}-{who.replace(':', '-')} --clusterrole={role} {subject}")
    return (f"ask an admin for: kubectl -n {namespace} create role {role} --verb={verb} --resource={full}{names} "
            f"&& kubectl -n {namespace} create rolebinding {role} --role={role} {subject}")


# Rules name resources as `pods`, `pods/ephemeralcontainers`, `pods/*`, `*` (every resource,
# no subresource) or `*/*` (every resource and subresource).
def _rule_matches(rule: dict, resource: str, operations: tuple[str, ...]) -> bool:
    """Whether one webhook rule matches `resource` (RESOURCE or RESOURCE/SUB) of the core API
    group for any of `operations`."""
    groups, ops = rule.get("apiGroups") or [], rule.get("operations") or []
    if not ("" in groups or "*" in groups) or not ("*" in ops or any(op in ops for op in operations)):
        return False
    base, _, sub = resource.partition("/")
    for pattern in rule.get("resources") or []:
        p_base, _, p_sub = pattern.partition("/")
        if p_base not in ("*", base):
            continue
        if (sub and p_sub in ("*", sub)) or (not sub and not p_sub):
            return True
    return False


def webhook_blind_spots(configuration: dict, kind: str) -> list[str]:
    """The webhooks of one Validating/MutatingWebhookConfiguration whose rules match pods but
    not pods/ephemeralcontainers: their policy never sees a debug container (it is added by
    an UPDATE of that subresource). Pure."""
    found = []
    name = (configuration.get("metadata") or {}).get("name", "?")
    for hook in configuration.get("webhooks") or []:
        rules = hook.get("rules") or []
        sees_pods = [op for op in ("CREATE", "UPDATE") if any(_rule_matches(r, "pods", (op,)) for r in rules)]
        sees_debug = any(_rule_matches(r, "pods/ephemeralcontainers", ("UPDATE",)) for r in rules)
        if sees_pods and not sees_debug:
            found.append(f"{kind} {name}: webhook {hook.get('name', '?')} checks pods ({', '.join(sees_pods)}) but "
                         f"not pods/ephemeralcontainers, so it never sees a debug container")
    return found


def check_webhooks(cluster: Cluster) -> list[Result]:
    """Admission webhooks whose policies never see a debug container (Gatekeeper, Kyverno
    and deckhouse#22398 report policies that miss them)."""
    from debugkit.runtimes.kubernetes.kubeclient import ApiError

    blind: list[str] = []
    for kind in ("validating", "mutating"):
        try:
            found = cluster.get(f"/apis/admissionregistration.k8s.io/v1/{kind}webhookconfigurations")
        except ApiError as exc:
            if exc.status == 403:
                return [Result("admission-webhooks", SKIP, f"cannot list {kind}webhookconfigurations: which "
                                                         f"policies see debug containers is unknown",
                               f"ask for list on {kind}webhookconfigurations.admissionregistration.k8s.io to "
                               f"have it checked")]
            raise
        for configuration in found.get("items") or []:
            blind += webhook_blind_spots(configuration, f"{kind}webhookconfiguration")
    if not blind:
        return [Result("admission-webhooks", OK, "no admission webhook checks pods while missing "
                                                 "pods/ephemeralcontainers")]
    return [Result("admission-webhooks", WARN, line,
                   "add pods/ephemeralcontainers (operation UPDATE) to its rules, or know that its policy does "
                   "not apply to debug containers") for line in blind]


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
    from debugkit.core.profiles import NODE_ONLY, PROFILES
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
    for profile in (p for p in PROFILES if p not in NODE_ONLY):
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


def check_cluster_toolbox(cluster: Cluster, runtime) -> Result:
    """The image debug containers use on this context, when one is configured, exists in
    its registry (the manifest answers), so the nodes can pull it."""
    from debugkit.runtimes.kubernetes.registry import RegistryClient, RegistryError, parse_ref

    ref, source = runtime.preferences.image(runtime.name, cluster.auth.context)
    if source == "built-in":
        return Result("cluster-toolbox", NOT_CONFIGURED,
                      f"no image configured for the cluster: debug containers use {ref}, which the "
                      f"nodes must already have", "push the toolbox to a registry the nodes pull from and set "
                                                  "`image:` (for this context) in the config file")
    try:
        RegistryClient(parse_ref(ref), timeout=REGISTRY_TIMEOUT).manifest()
    except RegistryError as exc:
        return Result("cluster-toolbox", FAIL, f"{ref} (from {source}): {exc.message}",
                      f"push the toolbox there (docker tag IMAGE {ref} && docker push {ref}), or correct the "
                      f"image at {source}")
    return Result("cluster-toolbox", OK, f"{ref} (from {source}) is in its registry")
