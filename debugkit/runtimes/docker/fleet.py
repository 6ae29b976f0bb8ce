"""Fleets on Docker and Podman: containers chosen by labels (--filter label=K=V, compose/),
and stopping what a fleet started when it is interrupted."""
from __future__ import annotations

import time

from debugkit.core.spec import LABEL_MANAGED
from debugkit.core.targets import ContainerRef, ContainerSetRef
from debugkit.runtimes.base import Expansion, Member

# How long an interrupted fleet waits for each stopped sidecar to be gone.
GONE_TIMEOUT_S = 5.0


def expand(runtime, many: ContainerSetRef) -> Expansion:
    """The running containers carrying every label, in name order; the others with why."""
    with runtime.calls():
        found = runtime.api.containers(all=True, filters={"label": list(many.labels)})
    members, skipped = [], []
    for ctr in sorted(found, key=lambda c: (c.get("Names") or ["?"])[0]):
        name = (ctr.get("Names") or ["?"])[0].lstrip("/")
        if (ctr.get("Labels") or {}).get(LABEL_MANAGED) == "true":
            continue  # debugkit's own sidecars are never targets
        if ctr.get("State") != "running":
            skipped.append((name, f"not running ({ctr.get('State', '?')})"))
            continue
        ref = ContainerRef(name, runtime=many.runtime, scheme=many.scheme)
        members.append(Member(ref, label=name, container=name))
    return Expansion(members=tuple(members), skipped=tuple(skipped))


def stop(runtime, container_id: str, *, grace: float) -> None:
    """A graceful SIGTERM (the reaper ends the command's tree) up to `grace` seconds, then the
    removal, and a wait until it is gone (the engine's own AutoRemove may have begun first:
    then the removal returns at once)."""
    runtime.stop_container(container_id, graceful=True, grace=grace)
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while time.monotonic() < deadline and runtime.api.containers(all=True, filters={"id": [container_id]}):
        time.sleep(0.05)
