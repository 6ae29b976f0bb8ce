"""Whether a kept-alive sidecar may run this session's commands: a pure decision.

A reuse key (a label on Docker, an environment variable on Kubernetes) says what a
sidecar was made for, but anyone who may create containers, or patch a pod's ephemeral
containers, can write one: a look-alike with the key, another image and another user
would then run the operator's next command. So the key only finds candidates. A
candidate is reused when this person's debugkit recorded starting it (a file in their
own state directory, which nobody else writes) and when what it really is, read back
from the engine or the pod, is exactly what the plan would start: the image by digest,
the user, the security settings and the helper's keep-alive command. Otherwise a new
sidecar starts, and `reuse_refusal` says why in a few words.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# A kept-alive sidecar's states: running, or starting (a debug container the API has not
# reported running yet, for a routine reason: the first exec finds out). Anything else is
# a reason it will not run (ErrImagePull, exited, ...).
RUNNING, STARTING = "running", "starting"
NOT_RECORDED = "this debugkit has no record of starting it (a look-alike carries its reuse key)"


@dataclass(frozen=True)
class SidecarFacts:
    """What decides whether a sidecar may run a session's commands, as plain data: read
    from the engine for a candidate, derived from the plan for what it should be."""

    name: str
    image: str                        # Docker: the image ID; Kubernetes: the image reference
    user: str                         # "UID:GID"
    security: dict = field(default_factory=dict)   # each runtime's security fields, normalised
    command: tuple[str, ...] = ()
    state: str = RUNNING
    digest: str | None = None         # Kubernetes: the image digest the node ran it from, once known


def reuse_refusal(found: SidecarFacts, wanted: SidecarFacts, *, recorded: bool,
                  recorded_digest: str | None = None) -> str | None:
    """None when `found` may run this session's commands; otherwise why not, for one line
    ("it runs as 0:0, not 65532:65532"). `recorded`: this person's debugkit wrote down
    starting exactly this container; `recorded_digest`: the image digest it ran from then."""
    if not recorded:
        return NOT_RECORDED
    if found.state not in (RUNNING, STARTING):
        return f"it is not running ({found.state})"
    if found.image != wanted.image:
        return f"its image is {found.image}, not {wanted.image}"
    if recorded_digest and found.digest and found.digest != recorded_digest:
        return f"its image digest is {found.digest}, not {recorded_digest}"
    if wanted.digest and found.digest and found.digest != wanted.digest:
        return f"its image digest is {found.digest}, not {wanted.digest}"
    if found.user != wanted.user:
        return f"it runs as {found.user}, not {wanted.user}"
    differ = sorted(k for k in set(found.security) | set(wanted.security)
                    if found.security.get(k) != wanted.security.get(k))
    if differ:
        return f"its security settings differ from the plan's ({', '.join(differ)})"
    if tuple(found.command) != tuple(wanted.command):
        return "it runs another command than debugkit's keep-alive"
    return None


def refusal_line(name: str, why: str) -> str:
    """The one line a session says when it does not reuse a candidate."""
    return f"not reusing {name}: {why}; starting a new one"
