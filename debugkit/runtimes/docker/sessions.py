"""Docker's and Podman's sidecars as `ps` and `gc` see them: listed by debugkit's label,
removed with the execs they still run."""
from __future__ import annotations

import contextlib
import time

from debugkit.core import identity as ident
from debugkit.core.spec import (LABEL_CLI_HOST, LABEL_CLI_PID, LABEL_MANAGED, LABEL_PROFILE, LABEL_REASON,
                                LABEL_SESSION, LABEL_TARGET, LABEL_TARGET_ID, LABEL_USER)
from debugkit.runtimes.base import SessionRow
from debugkit.runtimes.docker import copyspec, translate


def rows(runtime) -> list[SessionRow]:
    """Every container carrying debugkit's label, running or not."""
    with runtime.calls():
        containers = runtime.api.containers(all=True, filters={"label": [f"{LABEL_MANAGED}=true"]})
    found = []
    now = time.time()
    for ctr in containers:
        labels = ctr.get("Labels") or {}
        pid = labels.get(LABEL_CLI_PID, "")
        keep = labels.get(translate.LABEL_KEEP_ALIVE, "")
        found.append(SessionRow(
            runtime=runtime.name,
            session=labels.get(LABEL_SESSION, "?"),
            name=(ctr.get("Names") or ["?"])[0].lstrip("/"),
            target=labels.get(LABEL_TARGET, "?"),
            user=labels.get(LABEL_USER, "?"),
            state=ctr.get("State", "?"),
            age_s=max(0, int(now - (ctr.get("Created") or now))),
            profile=labels.get(LABEL_PROFILE, ""),
            cli_pid=int(pid) if ident.is_decimal(pid) else None,
            cli_host=labels.get(LABEL_CLI_HOST),
            id=ctr.get("Id", ""),
            reusable=translate.LABEL_REUSE in labels,
            keep_alive_s=int(keep) if ident.is_decimal(keep) else None,
            reason=labels.get(LABEL_REASON),
        ))
    return found


def stop_execs(runtime, container_id: str, marker: str) -> None:
    """SIGKILL the execs marked `marker` in a running sidecar, before it is ended: the
    engine closes an exec's stream only when it sees the exec exit, which it does not
    when the sidecar (sharing the target's PID namespace) ends first. Best effort and
    bounded (3 s); a sidecar without sh, tr and kill keeps the old behaviour. (Podman 4.3
    answers the detached start with a bare newline, which the client cannot parse: the exec
    runs all the same, and nothing here may stop the removal that follows.)"""
    api = runtime.api
    deadline = time.monotonic() + 3
    with contextlib.suppress(Exception):
        killer = api.exec_create(container_id, ["sh", "-c", translate.STOP_EXECS, "debugkit-stop", marker],
                                 stdout=False, stderr=False)["Id"]
        api.exec_start_detached(killer)
        while time.monotonic() < deadline and api.exec_inspect(killer).get("Running"):
            time.sleep(0.02)


def remove(runtime, row: SessionRow) -> None:
    if copyspec.COPY_MARK in row.name:
        # A held copy: its sidecars first (they joined its namespaces; Podman refuses to
        # remove a container others depend on), its helper volume after it.
        with runtime.calls():
            sidecars = runtime.api.containers(all=True, filters={"label": [f"{LABEL_MANAGED}=true",
                                                                           f"{LABEL_TARGET_ID}={row.id}"]})
        for ctr in sidecars:
            runtime.remove_container(ctr["Id"])
    elif row.state == "running" and row.session != "?":
        stop_execs(runtime, row.id, f"{row.session}.")
    runtime.remove_container(row.id)
    if copyspec.COPY_MARK in row.name:
        from debugkit.runtimes.base import HeldCopy
        from debugkit.runtimes.docker.heldcopy import volume_name

        runtime.remove_copy(HeldCopy(runtime=row.runtime, original=row.target, original_id="", name=row.name,
                                     id=row.id, target="", details={"volume": volume_name(row.session)}))
