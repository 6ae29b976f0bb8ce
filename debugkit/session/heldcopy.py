"""Debugging what is not running, through a held copy, written once over the protocol:
attach --copy TARGET, attach image/REF, runbook run --copy.

    validate -> the runtime -> plan_copy (pure: what the copy keeps and drops) ->
    hold_copy (created, or a kept one of this person's reused) -> audit "copy" ->
    the usual session against the copy -> remove_copy (unless --keep-alive) -> audit

The copy's main process is the toolbox's debugkit-helper `hold`: the original program
starts only when the sidecar's `target start` asks. The original is only read.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Iterator, NamedTuple

from debugkit import runtimes
from debugkit.core.errors import DebugkitError, InvalidInput, TargetNotFound
from debugkit.core.options import Flags
from debugkit.core.spec import new_session_id
from debugkit.core.targets import ImageRef, PodRef
from debugkit.runtimes.base import CopyRequest, HeldCopy, Runtime, local_user
from debugkit.session import audit, defaults, flow


class CopyChoice(NamedTuple):
    """The copy's own flags, as typed."""

    copy: bool = False        # --copy (implied by an image/REF target)
    writable: bool = False    # --copy-writable
    same_node: bool = False   # --same-node (Kubernetes)


def wanted(flags: Flags, choice: CopyChoice) -> bool:
    """Whether this session runs against a held copy: --copy, or an image (no container)."""
    if choice.copy:
        return True
    if choice.writable or choice.same_node:
        raise InvalidInput(f"{'--copy-writable' if choice.writable else '--same-node'} applies to a held copy: "
                           f"add --copy")
    from debugkit.core.targets import parse_target

    try:
        return isinstance(parse_target(flags.target, runtimes.syntax()), ImageRef)
    except DebugkitError:
        return False  # the session's own validation says why, in its own words


@contextlib.contextmanager
def held(flags: Flags, choice: CopyChoice, *, warn=None) -> Iterator[tuple[Runtime, Flags, HeldCopy]]:
    """A held copy of flags.target for the length of the block: (the runtime, the flags of
    the session against the copy, the copy). Removed at the end unless --keep-alive."""
    flags = flags.evolve(session_id=flags.session_id or new_session_id())
    with flow.refusals_audited(flags):
        flags = one_of_many(flags)
        options = flow.validate(flags)
        if choice.same_node and not isinstance(options.target, PodRef):
            raise InvalidInput("--same-node applies to a pod's copy (the node it runs on)")
        runtime = runtimes.for_target(options.target, options.connection, preferences=defaults.PREFERENCES)
        keep = bool(options.keep_alive)
        request = CopyRequest(ref=options.target, session_id=options.session_id, local_user=local_user(),
                              toolbox=defaults.toolbox_for(runtime.name, runtime.context_name),
                              writable=choice.writable, same_node=choice.same_node, keep=keep,
                              timeout=options.timeout)
        plan = runtime.plan_copy(request)
        for line in plan.warnings:
            (warn or _warn)(line)
        copy = runtime.hold_copy(plan)
    audit.append({
        "event": "copy", "session": options.session_id, "runtime": runtime.name,
        "original": plan.original, "original_id": plan.original_id, "copy": copy.name, "copy_id": copy.id,
        "reused": copy.reused, "writable": choice.writable, "same_node": choice.same_node, "kept": keep,
        "program": list(plan.program), "dropped": list(plan.dropped), **audit.who(),
    })
    if not copy.reused:  # what debugkit itself created: gc collects nothing else by default
        audit.append({"event": "created", "session": options.session_id, "runtime": runtime.name,
                      "container_id": copy.id, "name": copy.name})
    session_flags = flags.evolve(target=copy.target, namespace=None, container=None)
    try:
        yield runtime, session_flags, copy
    finally:
        if not keep:
            outcome = "removed"
            try:
                runtime.remove_copy(copy)
            except DebugkitError as exc:
                outcome = f"not removed: {exc}"
                (warn or _warn)(f"the held copy {copy.name} could not be removed ({exc}): debugkit gc collects it")
            audit.append({"event": "copy end", "session": options.session_id, "runtime": runtime.name,
                          "copy": copy.name, "copy_id": copy.id, "outcome": outcome})


def one_of_many(flags: Flags) -> Flags:
    """--copy deploy/NAME (any workload): one of its pods, preferring one that is not
    running (crash-looping, pending), else the first running one. Any other reference
    that names many is refused: a copy is of one target."""
    from debugkit.core.targets import WorkloadRef, parse_many

    many = parse_many(flags.target, runtimes.syntax(), namespace=flags.namespace, container=flags.container)
    if many is None:
        return flags
    if not isinstance(many, WorkloadRef):
        raise InvalidInput(f"--copy takes one target, not {many}: name one pod or container")
    runtime = runtimes.for_target(many, flags.connection, preferences=defaults.PREFERENCES)
    try:
        expansion = runtime.expand(many)
    finally:
        runtime.close()
    not_running = [label for label, why in expansion.skipped if why.startswith(("phase ", "container "))]
    candidates = not_running + [member.label for member in expansion.members]
    if not candidates:
        why = "; ".join(f"{label}: {reason}" for label, reason in expansion.skipped) or "no pods"
        raise TargetNotFound(f"{many} has no pod to copy ({why})")
    return flags.evolve(target=candidates[0])


def _warn(line: str) -> None:
    from debugkit.core.escape import safe

    sys.stderr.write(f"debugkit: warning: {safe(line)}\n")


def attach(flags: Flags, choice: CopyChoice, streams, *, announce=None) -> int:
    """attach against a held copy of flags.target: its exit code."""
    with held(flags, choice) as (runtime, session_flags, _copy):
        return flow.attach(session_flags, streams, announce=announce, runtime=runtime)
