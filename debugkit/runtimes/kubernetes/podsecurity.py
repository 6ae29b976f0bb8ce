"""Would a PodSecurity level admit this container? Pure checks, before any PATCH.

Mirrors the Pod Security Standards' checks that a debug container can trip
(k8s.io/pod-security-admission policy checks), so debugkit refuses with the reason
instead of letting the API server reject a half-made change.
"""
from __future__ import annotations

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
LEVELS = ("privileged", "baseline", "restricted")
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}
RESTRICTED_CAPABILITIES = {"NET_BIND_SERVICE"}


def violations(level: str | None, container: dict, pod_security_context: dict | None = None) -> list[str]:
    """Reasons `level` would reject `container` (a camelCase container dict); [] if admitted."""
    level = (level or "privileged").lower()
    if level not in LEVELS:
        level = "restricted"  # an unknown level is treated as the strictest, as the admission does
    if level == "privileged":
        return []
    sc = container.get("securityContext") or {}
    pod_sc = pod_security_context or {}
    found: list[str] = []
    caps = sc.get("capabilities") or {}
    added = {c.upper().removeprefix("CAP_") for c in caps.get("add") or []}

    # baseline
    if sc.get("privileged"):
        found.append("privileged: true is not allowed")
    extra = sorted(added - BASELINE_CAPABILITIES)
    if extra:
        found.append(f"capabilities.add {extra} are not allowed")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp == "Unconfined":
        found.append("seccompProfile Unconfined is not allowed")
    if level == "baseline":
        return found

    # restricted
    if sc.get("allowPrivilegeEscalation") is not False:
        found.append("allowPrivilegeEscalation must be false")
    drops = {c.upper() for c in caps.get("drop") or []}
    if "ALL" not in drops:
        found.append("capabilities.drop must include ALL")
    extra = sorted(added - RESTRICTED_CAPABILITIES - set(extra))
    if extra:
        found.append(f"capabilities.add {extra} are not allowed (only NET_BIND_SERVICE)")
    run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    if run_as_non_root is not True:
        found.append("runAsNonRoot must be true")
    if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
        found.append("runAsUser must not be 0")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        found.append("seccompProfile must be RuntimeDefault or Localhost")
    return found


def pod_violations(level: str | None, pod: dict) -> list[str]:
    """Reasons `level` would reject a whole pod (a node debugging pod): the host namespaces and
    hostPath volumes that even `baseline` forbids, then each container's own checks."""
    level = (level or "privileged").lower()
    if level == "privileged":
        return []
    spec = pod.get("spec") or {}
    found = [f"{field}: true is not allowed" for field in ("hostPID", "hostNetwork", "hostIPC") if spec.get(field)]
    paths = [v.get("hostPath", {}).get("path") for v in spec.get("volumes") or [] if "hostPath" in v]
    if paths:
        found.append(f"hostPath volumes ({', '.join(str(p) for p in paths)}) are not allowed")
    for container in spec.get("containers") or []:
        found += violations(level, container, spec.get("securityContext"))
    return found
