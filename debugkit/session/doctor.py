"""`debugkit doctor`: can debugkit work here, and if not, what to do about it.

Each check is a small function that returns one `Result` (name, status, detail, fix).
Checks read; they never start a sidecar, patch a pod or write an audit record (but
for the TARGET checks, which plan exactly as `inspect` does, and like inspect leave a
`refused` record when the target cannot be planned). A runtime that is not set up
here (no kubeconfig, no Podman) is reported as "not configured" and fails nothing.
Every engine and API call has its own time limit, so doctor finishes even when an
engine hangs. docs/doctor.md describes every check and its fix.
"""
from __future__ import annotations

import os
from pathlib import Path

from typing import Iterable

from debugkit import runtimes
from debugkit.core.errors import DebugkitError, IdentityUnresolved
from debugkit.core.options import Connection, Flags
from debugkit.runtimes.base import FAIL, OK, SKIP, WARN, Plan, Runtime, checked, local_user
from debugkit.runtimes.base import CheckResult as Result


def passed(results: Iterable[Result]) -> bool:
    return all(r.ok for r in results)


# -- the config file and the audit log ---------------------------------------------------------

def check_config() -> Result:
    """The configuration file parses, and every DEBUGKIT_* variable holds a valid value."""
    from debugkit.core.errors import ConfigInvalid
    from debugkit.session import config

    try:
        cfg = config.current()
    except ConfigInvalid as exc:
        return Result("config", FAIL, exc.message,
                      "correct the file at the line named (or point --config / DEBUGKIT_CONFIG at another file)")
    for key, env in config.ENV.items():
        value = os.environ.get(env)
        if value is None:
            continue
        try:
            config.check(key, value)
        except DebugkitError as exc:
            return Result("config", FAIL, f"environment {env}: {exc.message}", f"correct or unset {env}")
    if not cfg.exists:
        return Result("config", OK, f"{cfg.path} does not exist: the built-in defaults apply")
    count = len(cfg.values) + sum(len(v) for v in cfg.runtimes.values()) + sum(len(v) for v in cfg.contexts.values())
    return Result("config", OK, f"{cfg.path} parses ({count} setting(s), {len(cfg.runbook_paths)} runbook path(s))")


def check_audit_log() -> Result:
    """The audit log can be appended to (or created): nothing is launched without its record."""
    from debugkit.session import audit

    path = audit.audit_path()
    fix = "set DEBUGKIT_AUDIT_LOG (or XDG_STATE_HOME) to a writable place"
    if path.is_symlink():
        return Result("audit-log", FAIL, f"{path} is a symbolic link, which debugkit does not write through",
                      f"replace the link with the file itself, or {fix}")
    if path.exists():
        if not path.is_file():
            return Result("audit-log", FAIL, f"{path} is not a regular file", fix)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)  # the flags append() uses
            os.close(fd)
        except OSError as exc:
            return Result("audit-log", FAIL, f"cannot write {path}: {exc.strerror or exc}",
                          f"give {_me()} write permission on it, or {fix}")
        return Result("audit-log", OK, f"{path} is writable")
    # Not there yet: make it the way the first session will (directories 0700, the file
    # 0600, no symlink followed), then take back exactly what was made.
    made: list[Path] = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        made.append(parent)
        parent = parent.parent
    try:
        for directory in reversed(made):
            directory.mkdir(mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        path.unlink()
    except OSError as exc:
        return Result("audit-log", FAIL, f"cannot create {path}: {exc.strerror or exc}", fix)
    finally:
        for directory in made:
            try:
                directory.rmdir()
            except OSError:
                pass
    return Result("audit-log", OK, f"{path} does not exist yet and can be created")


def _me() -> str:
    return local_user()


# -- the target -----------------------------------------------------------------------------------

def target_checks(flags: Flags) -> tuple[list[Result], Runtime | None, Plan | None]:
    """Who TARGET runs as (as inspect resolves it), whether it is dumpable, whether the
    default profile reads its files, its zombies; and the runtime and plan, for that
    runtime's own checks to use."""
    from debugkit.session import flow

    try:
        runtime, plan = flow.plan(flags, mode="command", thorough=True)
    except IdentityUnresolved as exc:
        return [Result("target-identity", FAIL, exc.message, "pass --user UID[:GID]")], None, None
    except DebugkitError as exc:
        return [Result("target", FAIL, exc.message, exc.hint or "")], None, None
    spec = plan.spec
    report = plan.report
    results = [Result("target", OK, f"{plan.runtime} {plan.target.name} (image {plan.target.image})")]
    notes = f" ({'; '.join(spec.identity.notes)})" if spec.identity.notes else ""
    name = f" {spec.identity.user_name}" if spec.identity.user_name else ""
    results.append(Result("target-identity", OK, f"{spec.identity.uid}:{spec.identity.gid}{name} from "
                                                 f"{spec.identity.source}{notes}"))
    results.append(_dumpable(report))
    results.append(_filesystem(plan))
    results.append(_zombies(report))
    return results, runtime, plan


PTRACE_FIX = ("use --profile ptrace (root with only CAP_SYS_PTRACE) to read /proc/1/root and /proc/1/environ; "
              "on Kubernetes that needs a namespace whose PodSecurity level allows it")


def _dumpable(report) -> Result:
    if report.dumpable is None:
        return Result("target-dumpable", SKIP, f"unknown: {report.unseen}")
    if report.dumpable:
        return Result("target-dumpable", OK, "yes: its /proc entries belong to the user it runs as")
    return Result("target-dumpable", FAIL, "no: it changed UID at runtime (started as root, then dropped), so "
                                           "the kernel gives its /proc entries to root only", PTRACE_FIX)


def _filesystem(plan: Plan) -> Result:
    spec, report, admission = plan.spec, plan.report, plan.admission
    who = f"{spec.uid}:{spec.gid}"
    if admission is not None and not admission.admitted:
        return Result("target-filesystem", FAIL,
                      f"{admission.where} ({admission.level}) would refuse the debug container of profile "
                      f"{spec.profile}",
                      "see the pod-security line: a non-root --user, or a namespace with a laxer level")
    if spec.run_as_root:
        return Result("target-filesystem", OK, f"profile {spec.profile} runs as root")
    if report.dumpable is None:
        return Result("target-filesystem", SKIP, f"unknown: profile {spec.profile} runs as {who}, the target's own "
                                                 f"user; whether its /proc/1/root is open to it is not known here "
                                                 f"({report.unseen}); `ls $DEBUGKIT_TARGET_ROOT` in an attach shows "
                                                 f"it")
    if report.dumpable:
        return Result("target-filesystem", OK, f"profile {spec.profile} reads /proc/1/root as {who}, the "
                                               f"target's own user, with no capability")
    return Result("target-filesystem", FAIL, f"profile {spec.profile} cannot read /proc/1/root as {who}: the "
                                             f"target is not dumpable", PTRACE_FIX)


def _zombies(report) -> Result:
    count, pid = report.zombies, report.pid
    if count is None:
        return Result("target-zombies", SKIP, f"not counted: {report.unseen}")
    if count == 0:
        return Result("target-zombies", OK, f"its PID 1 (host PID {pid}) holds no zombie processes")
    return Result("target-zombies", WARN, f"its PID 1 (host PID {pid}) holds {count} zombie process(es): it does "
                                          f"not reap its children",
                  "only restarting the target removes them (their parent must reap them, and the sidecar cannot); "
                  "run it under an init (docker run --init, tini) so new ones are reaped")


# -- everything ------------------------------------------------------------------------------------

def run(*, flags: Flags | None = None, connection: Connection | None = None,
        namespace: str | None = None) -> list[Result]:
    """Every check, in order: the config file, the audit log, each runtime's own checks
    (those of TARGET's runtime sharpened by its plan), then TARGET's."""
    connection = connection or Connection()
    results = checked("config", lambda: [check_config()]) + checked("audit-log", lambda: [check_audit_log()])
    target_results: list[Result] = []
    target_runtime = target_plan = None
    if flags is not None:
        holder: list = []

        def check_target() -> list[Result]:
            found, runtime, plan = target_checks(flags)
            holder.extend((runtime, plan))
            return found
        target_results = checked("target", check_target)
        if holder:
            target_runtime, target_plan = holder
    for name in runtimes.names():
        runtime = target_runtime if target_plan is not None and target_plan.runtime == name else None
        results += checked(name, lambda name=name, runtime=runtime: _runtime_checks(
            name, runtime, connection=connection, plan=target_plan if runtime is not None else None,
            namespace=namespace))
    return results + target_results


def _runtime_checks(name: str, runtime: Runtime | None, *, connection: Connection, plan: Plan | None,
                    namespace: str | None) -> list[Result]:
    from debugkit.session import defaults

    own = runtime is None
    if own:
        runtime = runtimes.get(name, connection, preferences=defaults.PREFERENCES)
    try:
        return runtime.doctor(target=plan, namespace=namespace)
    finally:
        if own:
            runtime.close()
