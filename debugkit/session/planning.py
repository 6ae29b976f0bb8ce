"""The plan, written once for every runtime: from validated options to a `Plan` that starts
nothing.

    locate the target -> its identity sources -> the identity (--user wins) -> the sidecar
    image -> the base spec -> the profile and the limits -> --target-env -> the keep-alive
    -> the reuse key -> the runtime's request (a pure translation) -> a sidecar to reuse
    (one that is exactly that request) -> its policy's verdict -> (thorough) the report ->
    the warnings

Each step that needs a runtime calls one of its hooks (runtimes/base.py, in this order);
everything else is decided here, the same way for all of them.
"""
from __future__ import annotations

import os
import socket

from debugkit.core.errors import IdentityUnresolved, InvalidInput
from debugkit.core.identity import Identity
from debugkit.core.options import SidecarOptions
from debugkit.core.profiles import apply_profile
from debugkit.core.spec import base_spec
from debugkit.runtimes.base import Draft, IdentitySource, Plan, Runtime, local_user, with_target_env


def plan(runtime: Runtime, options: SidecarOptions, *, mode: str, thorough: bool = False) -> Plan:
    """Resolve and translate; start and change nothing. `thorough` (inspect, doctor) also
    gathers what only a report needs: every identity source, the target's processes, a
    policy's verdict even for a reused sidecar."""
    located = runtime.locate(options, mode=mode, thorough=thorough)
    sources = runtime.identity_sources(located, thorough=thorough)
    identity = runtime.user_identity(located, options.user) if options.user is not None else first_answer(sources)
    image = runtime.sidecar_image(options.sidecar_image, toolbox=options.image is None)
    me = local_user()
    target = located.target
    spec = base_spec(
        image=image.ref, identity=identity, target_name=target.name, target_id=target.id, runtime=runtime.name,
        command=options.command, stdin=options.stdin, tty=options.tty, session_id=options.session_id,
        cli_pid=os.getpid(), cli_host=socket.gethostname(), local_user=me, reason=options.reason,
    )
    spec = apply_profile(spec, options.profile).evolve(resources=options.resources)
    if options.target_env:
        if not image.helper:
            raise InvalidInput("--target-env needs debugkit-helper in the sidecar image: use the toolbox")
        spec = spec.evolve(command=with_target_env(spec.command or image.default_command))
    keep_alive = runtime.default_keep_alive if options.keep_alive is None else options.keep_alive
    draft = Draft(located=located, spec=spec, image=image, mode=mode, options=options, keep_alive=keep_alive,
                  reuse_key=None, reuse=None, local_user=me, thorough=thorough)
    draft = draft._replace(reuse_key=runtime.reuse_key(draft))
    built = runtime.translate(draft)
    refused = None
    if draft.reuse_key is not None and not options.new:
        reuse, refused = runtime.reusable(draft, built)
        draft = draft._replace(reuse=reuse)
    admission = runtime.admit(draft, built)
    return Plan(
        runtime=runtime.name, mode=mode, target=target, spec=built.spec, request=built.request,
        sources=tuple(sources), warnings=image.warnings + built.warnings + ((refused,) if refused else ()),
        image_id=image.image_id,
        image_digest=image.image_digest, helper=image.helper, keep_alive=keep_alive, reuse=draft.reuse,
        engine=built.engine, security_context=built.security_context, admission=admission,
        report=runtime.report(draft, built) if thorough else None, details=built.details, ref=options.target,
    )


def first_answer(sources: list[IdentitySource]) -> Identity:
    """The most trusted source that answered, or why none did (with the --user hint)."""
    for source in sources:
        if source.identity is not None:
            return source.identity
    errors = "; ".join(f"{s.source}: {s.error}" for s in sources)
    raise IdentityUnresolved(f"cannot determine the target's user ({errors})", hint="pass --user UID[:GID]")
