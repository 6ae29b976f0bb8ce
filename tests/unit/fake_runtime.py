"""A fourth runtime that exists only in the tests: an in-memory engine behind the Runtime
protocol, with nothing of it in session/ or cli/. Registered by test_fourth_runtime.py.

Its targets are `fake://NAME`; a sidecar "runs" a command by writing what it would do
and exiting with the code the command names (`exit N`), so every capability written over
the protocol can be driven through it without an engine.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from debugkit.core.errors import DebugkitError, TargetNotFound, TargetNotRunning
from debugkit.core.identity import Identity, identity_from_flag
from debugkit.core.targets import ContainerRef, ContainerSetRef
from debugkit.runtimes.base import (OK, CheckResult, CopyPlan, ExecResult, ExecSession, Expansion, HeldCopy,
                                    IdentitySource, Located, Member, Plan, Preferences, ResolvedTarget, Runtime,
                                    RuntimeEntry, SessionRow, SidecarImage, Translation)


@dataclass
class Container:
    name: str
    uid: int = 10001
    labels: dict = field(default_factory=dict)
    running: bool = True


@dataclass
class Engine:
    """What the fake runtime's "engine" holds: targets and debugkit's sidecars."""

    containers: dict[str, Container] = field(default_factory=dict)
    sidecars: dict[str, SessionRow] = field(default_factory=dict)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    copies: dict[str, dict] = field(default_factory=dict)   # held copies: name -> what was asked

    def add(self, name: str, **kwargs) -> Container:
        self.containers[name] = Container(name, **kwargs)
        return self.containers[name]


ENGINE = Engine()


def entry() -> RuntimeEntry:
    return RuntimeEntry(name="fake", title="Fake", runtime=FakeRuntime, configured=lambda connection: True,
                        schemes=("fake://",), label_sets=True, sidecar_flags=frozenset({"memory"}),
                        refusals=(("custom", "a fake has no container spec"),))


class FakeExec(ExecSession):
    def __init__(self, plan: Plan):
        self.plan = plan

    def exec(self, argv, *, timeout, max_output=1 << 20):
        return ExecResult(tuple(argv), 0, f"{' '.join(argv)}\n".encode(), b"", 0.0)

    def exec_io(self, argv, *, stdin_fd, stdout, stderr):
        return 0

    def alive(self):
        return True

    def close(self):
        pass


class FakeRuntime(Runtime):
    name = "fake"

    @classmethod
    def for_connection(cls, entry, connection, preferences: Preferences | None = None):
        runtime = cls()
        runtime.entry = entry
        if preferences is not None:
            runtime.preferences = preferences
        return runtime

    # -- the plan's hooks ------------------------------------------------------------------------

    def locate(self, options, *, mode, thorough):
        ref = options.target
        found = ENGINE.containers.get(ref.name)
        if found is None:
            raise TargetNotFound(f"no fake container {ref.name!r}")
        if not found.running:
            raise TargetNotRunning(f"fake container {ref.name!r} is stopped")
        return Located(ResolvedTarget(runtime=self.name, name=found.name, id=f"id-{found.name}", image="fake/app"),
                       details=found)

    def identity_sources(self, located, *, thorough):
        uid = located.details.uid
        return [IdentitySource("config", Identity(uid=uid, gid=uid, groups=(uid,), source="config"))]

    def user_identity(self, located, user):
        return identity_from_flag(user.text, passwd={})

    def sidecar_image(self, ref, *, toolbox):
        return SidecarImage(ref=ref, helper=True, default_command=("sh",), image_id="sha256:fake")

    def translate(self, draft):
        spec = draft.spec
        request = {"name": spec.name, "user": f"{spec.uid}:{spec.gid}", "target": draft.located.target.id,
                   "command": list(spec.command), "memory": spec.resources.memory_bytes}
        return Translation(spec=spec, request=request, engine="fake://engine")

    # -- running ---------------------------------------------------------------------------------

    def run(self, plan, streams):
        sidecar_id = f"sidecar-{next(ENGINE.ids)}"
        spec = plan.spec
        ENGINE.sidecars[sidecar_id] = SessionRow(
            runtime=self.name, session=spec.session_id, name=spec.name, target=plan.target.name,
            user=f"{spec.uid}:{spec.gid}", state="exited", age_s=0, profile=spec.profile, id=sidecar_id)
        if self.on_created is not None:
            self.on_created(plan, sidecar_id)
        argv = list(spec.command)
        if argv[:1] == ["vanish"]:  # the target is deleted while the command runs
            del ENGINE.containers[plan.target.name]
            if argv[1:] == ["killed"]:
                return 143  # the command died of the SIGTERM that ended its target
            raise DebugkitError("debugkit-helper: the stream ended without an exit status")
        streams.stdout.write(f"{' '.join(argv)} as {spec.uid}:{spec.gid} next to {plan.target.name}\n".encode())
        return int(argv[1]) if argv[:1] == ["exit"] else 0

    def open_exec(self, plan):
        return FakeExec(plan)

    def inspect(self, plan):
        return {"runtime": self.name, "target": plan.target.name, "uid": plan.spec.identity.uid,
                "request": plan.request}

    # -- held copies: a running container named after the original, that the session attaches to --

    def plan_copy(self, request):
        found = ENGINE.containers.get(request.ref.name)
        if found is None:
            raise TargetNotFound(f"no fake container {request.ref.name!r}")
        kept = next((name for name, asked in ENGINE.copies.items()
                     if asked["of"] == found.name and asked["keep"] and request.keep), None)
        name = f"{found.name}-copy-{request.session_id}"
        return CopyPlan(runtime=self.name, original=found.name, original_id=f"id-{found.name}", name=name,
                        request={"of": found.name, "uid": found.uid, "writable": request.writable,
                                 "keep": request.keep, "toolbox": request.toolbox},
                        program=("/app",), dropped=("published ports 80/tcp",), reuse=kept)

    def hold_copy(self, plan):
        name = plan.reuse or plan.name
        if plan.reuse is None:
            ENGINE.copies[name] = plan.request
            ENGINE.add(name, uid=plan.request["uid"])
        return HeldCopy(runtime=self.name, original=plan.original, original_id=plan.original_id, name=name,
                        id=f"id-{name}", target=f"fake://{name}", reused=plan.reuse is not None)

    def remove_copy(self, copy):
        ENGINE.copies.pop(copy.name, None)
        ENGINE.containers.pop(copy.name, None)

    # -- fleets, ps, gc, doctor, completion ----------------------------------------------------------

    def expand(self, many):
        if not isinstance(many, ContainerSetRef):
            return super().expand(many)
        wanted = dict(label.partition("=")[::2] for label in many.labels)
        members, skipped = [], []
        for ctr in sorted(ENGINE.containers.values(), key=lambda c: c.name):
            if any(ctr.labels.get(k) != v for k, v in wanted.items()):
                continue
            if not ctr.running:
                skipped.append((ctr.name, "stopped"))
                continue
            members.append(Member(ContainerRef(ctr.name, runtime=many.runtime, scheme=many.scheme), label=ctr.name))
        return Expansion(tuple(members), tuple(skipped))

    def why_gone(self, ref):
        return None if ref.name in ENGINE.containers else "was deleted while it was debugged"

    def sessions(self, *, namespace=None):
        return [SessionRow(**{**row.as_dict(), "age_s": 100_000}) for row in ENGINE.sidecars.values()]

    def remove(self, row):
        del ENGINE.sidecars[row.id]

    def doctor(self, *, target=None, namespace=None):
        found = [CheckResult("fake-engine", OK, f"{len(ENGINE.containers)} fake container(s)")]
        if target is not None:
            found.append(CheckResult("fake-target", OK, f"{target.target.name} seen by the fake engine"))
        return found

    def complete_targets(self, word, *, namespace=None, timeout):
        return [f"fake://{name}" for name, ctr in sorted(ENGINE.containers.items()) if ctr.running]

    def complete_namespaces(self, word, *, timeout):
        return ["fake-space"]
