"""Kubernetes API failures as debugkit errors: one clear line each."""
from __future__ import annotations

import re

from debugkit.core.errors import (
    DebugkitError,
    EngineUnreachable,
    FileInvalid,
    Forbidden,
    InvalidInput,
    PolicyRejected,
    TargetNotFound,
)


def client_errors() -> tuple[type[BaseException], ...]:
    """What the API client raises for a failure outside debugkit: the API server's answer,
    the transport, the credentials. Anything else is a bug, and is not caught."""
    from debugkit.runtimes.kubernetes.kubeclient import ApiError, TransportError
    from debugkit.runtimes.kubernetes.kubeconfig import KubeConfigError

    return ApiError, TransportError, KubeConfigError


def status_and_message(exc) -> tuple[int | None, str]:
    """(HTTP status, the Status message) of a client failure; status None: no answer at all."""
    status = getattr(exc, "status", None)
    message = getattr(exc, "message", None)
    if not isinstance(message, str) or not message:
        message = str(exc)
    return (status if isinstance(status, int) and status > 0 else None), message


def api_error(exc, *, verb: str, resource: str, namespace: str, name: str = "") -> DebugkitError:
    from debugkit.runtimes.kubernetes.kubeconfig import KubeConfigError

    if isinstance(exc, KubeConfigError):  # credentials read at request time: a tokenFile, an exec plugin
        return FileInvalid(f"cannot use the Kubernetes configuration: {exc}")
    status, message = status_and_message(exc)
    if status is None:
        return EngineUnreachable(f"cannot reach the Kubernetes API server: {message}")
    if status == 403 and "violates PodSecurity" in message:
        return PolicyRejected(f"PodSecurity rejected the debug container: {summarize_pod_security(message)}")
    if status == 403:
        # The API server names the verb it refused ('cannot create resource "pods/exec"'),
        # which may not be the one asked about: a websocket upgrade is authorized as get and,
        # since 1.35, create. Its 403 for that upgrade sometimes names nothing at all.
        said = re.search(r'cannot (\w+) resource "([^"]+)"', message)
        if said:
            verb, resource = said.group(1), said.group(2)
        elif resource in ("pods/exec", "pods/portforward", "pods/attach"):
            verb = "get and create"
        user = ""
        if 'User "' in message:
            user = " as " + message.split('User "', 1)[1].split('"', 1)[0]
        return Forbidden(f"forbidden: cannot {verb} {resource} in namespace {namespace}{user}",
                         hint="ask for RBAC that grants this verb on this resource")
    if status == 401:
        return Forbidden("unauthorized: the API server rejected our credentials")
    if status == 404:
        kind = resource.split("/")[0].rstrip("s")
        return TargetNotFound(f"{kind} {name!r} not found in namespace {namespace}")
    if status == 422:
        return InvalidInput(f"the API server rejected the debug container as invalid: {message}")
    return DebugkitError(f"Kubernetes API error {status} on {verb} {resource}: {message}")


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
