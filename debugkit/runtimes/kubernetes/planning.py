"""The Kubernetes runtime's hooks for the plan that session/planning.py writes once: find
the pod and its container, who it runs as (identity.py: securityContext, the image), a
debug container to reuse (its reuse key in its environment), the pure translation into an
EphemeralContainer (translate.py), and the namespace's PodSecurity verdict before anything
is sent. Mixed into KubernetesRuntime, whose API client it uses.
"""
from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from debugkit.core.errors import IdentityUnresolved, InvalidInput, PolicyRejected, TargetNotFound, TargetNotRunning
from debugkit.core.reuse import NOT_RECORDED, refusal_line, reuse_refusal
from debugkit.core.targets import NodeRef
from debugkit.runtimes import reuse_records
from debugkit.runtimes.base import (Admission, Draft, Located, ResolvedTarget, SidecarImage, TargetReport,
                                    Translation)
from debugkit.runtimes.kubernetes import podsecurity, translate
from debugkit.runtimes.kubernetes.errors import api_error, client_errors, status_and_message
from debugkit.runtimes.kubernetes.identity import AS_PROCESS, PodIdentity, PodTarget
from debugkit.runtimes.kubernetes.nodepod import NodeTarget

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
INTERACTIVE_SHELL = ("sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh")


class KubePlan(NamedTuple):
    """What a Kubernetes plan decided beyond the request (Plan.details)."""

    pod_target: PodTarget
    timeout: float                  # seconds for the debug container to start
    reuse_key: str                  # what the debug container carries, for the record of it (reuse_records)
    as_process: bool = False        # it runs every command as the target's process does (identity.AS_PROCESS)


def as_process(draft: Draft) -> bool:
    """Whether the plan's identity is the target's process, read by the debug container; a
    profile that runs as root does not need it."""
    return draft.spec.identity == AS_PROCESS and not draft.spec.run_as_root


def default_container(pod: dict) -> str | None:
    """kubectl's choice: the annotated default container, else the only one."""
    names = [c["name"] for c in pod["spec"]["containers"]]
    annotated = (pod["metadata"].get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION)
    if annotated in names:
        return annotated
    return names[0] if len(names) == 1 else None


class KubernetesPlanning:
    """The plan's hooks, in the order session/planning.py calls them."""

    default_keep_alive = 600.0   # a reusable debug container stays this long once idle

    def find_target(self, ref, *, require_running: bool = True) -> PodTarget:
        namespace = ref.namespace or self.default_namespace
        pod = self.read_pod(namespace, ref.pod)
        names = [c["name"] for c in pod["spec"]["containers"]]
        container = ref.container or default_container(pod)
        if container is None:
            raise InvalidInput(f"pod {ref.pod} has several containers; choose one with -c: {', '.join(names)}")
        if container not in names:
            raise TargetNotFound(f"container {container!r} not found in pod {namespace}/{ref.pod} "
                                 f"(containers: {', '.join(names)})")
        pt = PodTarget(namespace, ref.pod, container, pod)
        if require_running:
            phase = pod.get("status", {}).get("phase")
            state = pt.container_status.get("state") or {}
            if phase != "Running" or "running" not in state:
                why = (state.get("waiting") or {}).get("reason") or next(iter(state), phase or "unknown")
                raise TargetNotRunning(f"container {pt.name} is not running ({why})",
                                       hint=f"debug it through a held copy: debugkit attach --copy "
                                            f"k8s://{pt.namespace}/{pt.pod_name}/{pt.container}")
        return pt

    def locate(self, options, *, mode: str, thorough: bool) -> Located:
        if isinstance(options.target, NodeRef):
            return self.locate_node(options)
        pt = self.find_target(options.target)
        target = ResolvedTarget(runtime=self.name, name=pt.name, id=pt.uid, image=pt.container_spec.get("image", ""),
                                namespace=pt.namespace, pod=pt.pod_name, container=pt.container)
        flag = options.user  # a bare --user UID takes its group from the image's passwd
        uids = (flag.uid,) if flag is not None and flag.gid is None else ()
        return Located(target=target, details=PodIdentity(self.api, pt, uids=uids))

    def identity_sources(self, located: Located, *, thorough: bool) -> list:
        if isinstance(located.details, NodeTarget):
            return self.node_identity_sources()
        return located.details.sources(stop_at_first=not thorough)

    def user_identity(self, located: Located, user):
        return located.details.user_identity(user)

    def sidecar_image(self, ref: str, *, toolbox: bool) -> SidecarImage:
        # The toolbox carries debugkit-helper; a foreign image may not. The node pulls the
        # image: nothing here can look at it.
        return SidecarImage(ref=ref, helper=toolbox, default_command=INTERACTIVE_SHELL)

    def reuse_key(self, draft: Draft) -> str | None:
        if isinstance(draft.located.details, NodeTarget):
            return None  # a node debugging pod ends with its session
        return translate.reuse_key(draft.spec, target_container=draft.located.details.pt.container,
                                   custom=draft.options.custom, local_user=draft.local_user,
                                   keep_alive=draft.keep_alive, as_process=as_process(draft))

    def translate(self, draft: Draft) -> Translation:
        if isinstance(draft.located.details, NodeTarget):
            return self.node_translate(draft)
        pt, spec, keep_alive, helper = draft.located.details.pt, draft.spec, draft.keep_alive, draft.image.helper
        # The container this plan would start (also when a reused one has ended by the time
        # of the exec): its keep-alive listens on its own name, which its execs hold.
        probing = as_process(draft)
        if probing:  # a minimal identity probe: root with only what dropping to the target's user takes
            spec = spec.evolve(cap_add=tuple(dict.fromkeys(spec.cap_add + translate.AS_PROCESS_CAPABILITIES)))
        container_spec = spec.evolve(
            command=tuple(translate.keepalive_command(spec.name, idle=keep_alive, helper=helper)), stdin=False,
            tty=False,
        ).with_env(**{translate.ENV_REUSE: draft.reuse_key, translate.ENV_KEEP_ALIVE: str(int(keep_alive)),
                      translate.ENV_LOCAL_USER: draft.local_user, translate.ENV_PROFILE: spec.profile})
        container = translate.ephemeral_container(container_spec, target_container=pt.container,
                                                  custom=draft.options.custom)
        warnings = []
        if not helper:
            warnings.append(f"the image {spec.image} may lack debugkit-helper: without it the debug container "
                            f"lives a fixed {max(60, int(keep_alive))} s and orphaned processes go to the target's "
                            f"PID 1")
        return Translation(spec=spec, request=container, warnings=tuple(warnings),
                           security_context=container.get("securityContext"),
                           details=KubePlan(pod_target=pt, timeout=draft.options.timeout,
                                            reuse_key=draft.reuse_key, as_process=probing))

    def reusable(self, draft: Draft, translation: Translation) -> tuple[str | None, str | None]:
        """Only the container this person's debugkit recorded adding to this very pod (its
        UID) for this key is a candidate, and only when its spec and status are exactly the
        plan's: image (and digest), user, securityContext, target and keep-alive command
        (core/reuse.py). A look-alike that merely carries the key in its environment, planted
        by anyone who may patch pods/ephemeralcontainers, is named and skipped; so is one
        that cannot start. --keep-alive 0 makes a container end with its command: never one
        to reuse."""
        return self.trusted_reuse(draft.located.details.pt, draft.reuse_key, translation.request,
                                  keep_alive=draft.keep_alive, helper=draft.image.helper)

    def trusted_reuse(self, pt, key: str, planned: dict, *, keep_alive: float,
                      helper: bool) -> tuple[str | None, str | None]:
        """reusable() for the plan's ephemeral container `planned` in the pod `pt`."""
        if not keep_alive:
            return None, None
        specs = {c.get("name"): c for c in pt.pod["spec"].get("ephemeralContainers") or []}
        record = reuse_records.recall(self.name, pt.uid, key)
        if record is not None:
            found_spec = specs.get(record.name)
            if found_spec is not None:
                found = translate.found_facts(found_spec, self.debug_status(pt.pod, record.name))
                wanted = translate.planned_facts(planned, name=record.name,
                                                 command=translate.keepalive_command(record.name,
                                                                                     idle=keep_alive,
                                                                                     helper=helper))
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

    def admit(self, draft: Draft, translation: Translation) -> Admission | None:
        """The namespace's PodSecurity level, checked before the debug container is sent (a
        reused one passed it already, unless a report wants the verdict)."""
        if isinstance(draft.located.details, NodeTarget):
            return self.node_admit(draft, translation)
        if draft.reuse is not None and not draft.thorough:
            return None
        pt, spec = draft.located.details.pt, draft.spec
        level = self.enforce_level(pt.namespace)
        found = podsecurity.violations(level, translation.request, pt.pod_security_context)
        if found and not draft.thorough and translation.details.as_process:
            raise IdentityUnresolved(
                f"the spec and the image of {pt.name} say root or nothing, and reading its process's user takes a "
                f"debug container that starts as root with CAP_SETUID and CAP_SETGID, which namespace {pt.namespace}'s "
                f"PodSecurity {level!r} rejects: " + "; ".join(found), hint="pass --user UID[:GID]")
        if found and not draft.thorough:
            raise PolicyRejected(
                f"namespace {pt.namespace} enforces PodSecurity {level!r}, which rejects profile "
                f"{spec.profile!r}: " + "; ".join(found),
                hint="use --profile restricted" if spec.profile != "restricted" else None,
            )
        return Admission(where=f"namespace {pt.namespace}", level=level, reasons=tuple(found))

    def enforce_level(self, namespace: str) -> str | None:
        """The namespace's PodSecurity enforce label; None when there is none, or when we
        may not read the namespace (the API server still enforces it: we cannot pre-check)."""
        try:
            ns = self.api.read_namespace(namespace)
        except client_errors() as exc:
            if status_and_message(exc)[0] == 403:
                return None
            raise api_error(exc, verb="get", resource="namespaces", namespace=namespace, name=namespace) from exc
        return (ns.get("metadata", {}).get("labels") or {}).get(podsecurity.ENFORCE_LABEL)

    def report(self, draft: Draft, translation: Translation) -> TargetReport:
        if isinstance(draft.located.details, NodeTarget):
            return self.node_report(draft)
        return TargetReport(image_id=draft.located.details.pt.container_status.get("imageID"),
                            unseen="a pod's processes run on its node, not on this machine (it would take a debug "
                                   "container)")


def lookalikes(pod: dict, key: str) -> list[str]:
    """Debug containers of this pod that carry the reuse key and have not ended, newest
    first: candidates only in name (see KubernetesPlanning.reusable)."""
    statuses = pod.get("status", {}).get("ephemeralContainerStatuses") or []
    states = {st["name"]: (st.get("state") or {}) for st in statuses}
    found = []
    for ctr in reversed(pod["spec"].get("ephemeralContainers") or []):
        env = {e.get("name"): e.get("value") for e in ctr.get("env") or []}
        if str(ctr.get("name", "")).startswith(translate.NAME_PREFIX) and env.get(translate.ENV_REUSE) == key \
                and "terminated" not in states.get(ctr["name"], {}):
            found.append(ctr["name"])
    return found
