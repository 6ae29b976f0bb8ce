"""debugkit's ephemeral containers as `ps` and `gc` see them, found by their name prefix
in every pod (of a namespace, or of all of them)."""
from __future__ import annotations

import datetime as dt

from debugkit.core.spec import ENV_REASON, ENV_SESSION
from debugkit.runtimes.base import SessionRow
from debugkit.runtimes.kubernetes import translate


def rows(runtime, namespace: str | None) -> list[SessionRow]:
    """debugkit's ephemeral containers, running or terminated."""
    pods = runtime.call(runtime.api.list_pods, namespace, verb="list", resource="pods",
                        namespace=namespace or "(all namespaces)")
    found = []
    now = dt.datetime.now(dt.timezone.utc)
    for pod in pods.get("items") or []:
        for ctr in pod["spec"].get("ephemeralContainers") or []:
            if not ctr["name"].startswith(translate.NAME_PREFIX):
                continue
            env = {e["name"]: e.get("value") for e in ctr.get("env") or []}
            sc = ctr.get("securityContext") or {}
            state = runtime.debug_status(pod, ctr["name"]).get("state") or {}
            kind = next(iter(state), "pending")
            started = (state.get(kind) or {}).get("startedAt")
            age = int((now - dt.datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds()) \
                if started else 0
            label = kind if kind != "terminated" else f"exited({state[kind].get('exitCode')})"
            keep_alive = env.get(translate.ENV_KEEP_ALIVE)
            found.append(SessionRow(
                runtime=runtime.name, session=env.get(ENV_SESSION, ctr["name"][len(translate.NAME_PREFIX):]),
                name=ctr["name"], target=f"{pod['metadata']['name']}/{ctr.get('targetContainerName', '')}",
                user=f"{sc.get('runAsUser', '?')}:{sc.get('runAsGroup', '?')}",
                state="running" if kind == "running" else label, age_s=age,
                namespace=pod["metadata"]["namespace"], reusable=keep_alive not in (None, "0"),
                profile=env.get(translate.ENV_PROFILE) or "",
                keep_alive_s=int(keep_alive) if keep_alive and keep_alive.isdigit() else None,
                reason=env.get(ENV_REASON),
            ))
    return found
