"""debugkit's ephemeral containers as `ps` and `gc` see them, found by their name prefix
in every pod (of a namespace, or of all of them)."""
from __future__ import annotations

import datetime as dt

from debugkit.core.spec import ENV_REASON, ENV_SESSION, LABEL_MANAGED, LABEL_SESSION
from debugkit.runtimes.base import LABEL_COPY_OF, SessionRow
from debugkit.runtimes.kubernetes import copyspec, translate


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
    return found + copy_rows(runtime, pods.get("items") or [], now)


def is_copy(row: SessionRow) -> bool:
    return row.profile == "copy" and copyspec.COPY_MARK in row.name


def copy_rows(runtime, pods: list, now) -> list[SessionRow]:
    """debugkit's held copies (attach --copy): pods labelled as managed copies."""
    found = []
    for pod in pods:
        meta = pod["metadata"]
        labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
        if labels.get(LABEL_MANAGED) != "true" or LABEL_COPY_OF not in labels:
            continue
        created = meta.get("creationTimestamp")
        age = int((now - dt.datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()) \
            if created else 0
        original = notes.get(copyspec.ANNOTATION_ORIGINAL, "?")
        pid = notes.get(copyspec.ANNOTATION_CLI_PID, "")
        container = (pod["spec"].get("containers") or [{}])[0]
        sc = {**(pod["spec"].get("securityContext") or {}), **(container.get("securityContext") or {})}
        found.append(SessionRow(
            runtime=runtime.name, session=labels.get(LABEL_SESSION, "?"), name=meta["name"],
            target=original.split("/", 1)[-1], user=f"{sc.get('runAsUser', '?')}:{sc.get('runAsGroup', '?')}",
            state=(pod.get("status") or {}).get("phase", "Pending").lower(), age_s=max(0, age),
            namespace=meta.get("namespace"), id=meta.get("uid", ""), profile="copy",
            cli_pid=int(pid) if pid.isdigit() else None, cli_host=notes.get(copyspec.ANNOTATION_CLI_HOST),
        ))
    return found
