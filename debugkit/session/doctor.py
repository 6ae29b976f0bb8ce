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
import stat
from pathlib import Path

from debugkit.core.errors import DebugkitError, IdentityUnresolved

from debugkit.session.doctor_kube import kube_checks
from debugkit.session.doctor_result import (  # noqa: F401 - Result and passed are doctor's API
    ENGINE_TIMEOUT,
    FAIL,
    NOT_CONFIGURED,
    OK,
    SKIP,
    WARN,
    Result,
    guard,
    passed,
    toolbox_setting,
)


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
    from debugkit.runtimes.base import local_user

    return local_user()


# -- Docker and Podman -------------------------------------------------------------------------

ENGINES = {"docker": "Docker", "podman": "Podman"}


def engine_checks(runtime: str, *, docker_host: str | None = None, docker_context: str | None = None) -> list[Result]:
    """The engine answers, its socket lets us in, and the toolbox image is there."""
    from debugkit.runtimes.docker.engine import EngineConfigError
    from debugkit.session import probes

    engine = ENGINES[runtime]
    if not probes.engine_configured(runtime, docker_host, docker_context):
        where = ("CONTAINER_HOST is not set and /run/podman/podman.sock does not exist" if runtime == "podman"
                 else "no -H, DOCKER_HOST or Docker context is set and /var/run/docker.sock does not exist")
        return [Result(f"{runtime}-engine", NOT_CONFIGURED, f"{engine} is not configured here ({where})")]
    try:
        api = probes.engine_client(runtime, timeout=ENGINE_TIMEOUT, docker_host=docker_host,
                                   docker_context=docker_context)
    except EngineConfigError as exc:
        var = "CONTAINER_HOST" if runtime == "podman" else "-H, DOCKER_HOST or the Docker context"
        return [Result(f"{runtime}-engine", FAIL, str(exc), f"correct {var} (unix:///path, tcp://host:port, "
                                                             f"ssh://user@host)")]
    try:
        results = [check_engine(api, runtime), check_socket(api, runtime)]
        if results[0].ok:
            results.append(check_toolbox_image(api, runtime))
        else:
            results.append(Result(f"{runtime}-toolbox", SKIP, f"not checked: the {engine} engine did not answer"))
        return results
    finally:
        api.close()


def check_engine(api, runtime: str) -> Result:
    """The engine answers GET /version and speaks an Engine API version debugkit speaks."""
    from debugkit.core.errors import EngineIncompatible
    from debugkit.runtimes.docker.apiversion import NEWEST_TESTED, OLDEST_SUPPORTED, negotiate
    from debugkit.runtimes.docker.engine import EngineConnectionError, EngineError
    from debugkit.runtimes.docker.errors import start_hint

    engine = ENGINES[runtime]
    try:
        # GET /version rather than the ping attach settles for: it also states the minimum.
        found = negotiate(api.version(), engine=engine, host=api.host)
    except PermissionError:
        return Result(f"{runtime}-engine", FAIL, f"permission denied on the {engine} socket {api.host}",
                      "see the socket line below")
    except EngineConnectionError as exc:
        detail = f": {exc.detail}" if exc.detail else ""
        return Result(f"{runtime}-engine", FAIL, f"cannot reach the {engine} engine at {api.host}{detail}",
                      start_hint(engine, api.host))
    except EngineError as exc:
        return Result(f"{runtime}-engine", FAIL, f"the {engine} engine at {api.host} answered {exc.status_code}: "
                                                 f"{exc.explanation}", f"check the {engine} service's log")
    except EngineIncompatible as exc:
        return Result(f"{runtime}-engine", FAIL, exc.message, exc.hint or "")
    return Result(f"{runtime}-engine", OK, f"{engine} {found.engine_version or '?'} at {api.host}: Engine API "
                                           f"{found.version} (the engine speaks {found.engine_range()}, debugkit "
                                           f"{OLDEST_SUPPORTED} to {NEWEST_TESTED})")


def check_socket(api, runtime: str) -> Result:
    """Who may use the engine: the unix socket's owner, group and mode; TLS for TCP."""
    import grp
    import pwd

    name = f"{runtime}-socket"
    address = api.address
    if address.scheme != "unix":
        if address.tls is not None:
            return Result(name, OK, f"{api.host}: TCP with TLS ({'verified' if address.tls.verify else 'unverified'})")
        return Result(name, WARN, f"{api.host}: plain TCP without TLS, not a local socket",
                      "anyone who reaches that port controls the engine: use TLS (DOCKER_TLS_VERIFY, "
                      "DOCKER_CERT_PATH) or ssh://")
    path = address.path
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return Result(name, FAIL, f"{path} does not exist", "start the engine: it creates its socket")
    except OSError as exc:
        return Result(name, FAIL, f"cannot look at {path}: {exc.strerror or exc}",
                      "a parent directory is closed to you: run with sudo, or fix its permissions")
    if not stat.S_ISSOCK(st.st_mode):
        return Result(name, FAIL, f"{path} is not a socket", "point the address at the engine's socket")
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    described = f"{path} {stat.filemode(st.st_mode)} {owner}:{group}"
    me = _me()
    if not os.access(path, os.R_OK | os.W_OK):
        return Result(name, FAIL, f"{described}: {me} (uid {os.getuid()}) may not connect",
                      f"add {me} to the group {group} (sudo usermod -aG {group} {me}, then log in again), "
                      f"or run debugkit with sudo")
    if st.st_mode & stat.S_IWOTH:
        return Result(name, WARN, f"{described}: writable by every local user, who can all control the engine",
                      f"sudo chmod o-rw {path} (and use the group {group})")
    return Result(name, OK, f"{described}: {me} may connect")


def check_toolbox_image(api, runtime: str) -> Result:
    from debugkit.core.imageref import toolbox_ref
    from debugkit.runtimes.docker.engine import EngineError, EngineNotFound

    name = f"{runtime}-toolbox"
    engine = ENGINES[runtime]
    setting = toolbox_setting(runtime)
    image = setting.value
    origin = "" if setting.source == "built-in" else f", from {setting.source}"
    try:
        attrs = api.inspect_image(image)
    except EngineNotFound:
        standard = image == toolbox_ref()
        if runtime == "podman":
            fix = (f"copy it from Docker: docker save {image} | podman load" if standard
                   else f"podman pull {image}")
        else:
            fix = "debugkit toolbox build" + ("" if standard else f" --tag {image} (or docker pull {image})")
        return Result(name, FAIL, f"the sidecar image {image}{origin} is not in the local {engine} engine", fix)
    except EngineError as exc:
        return Result(name, FAIL, f"{engine} could not inspect {image}: {exc.explanation}", "")
    from debugkit.runtimes.docker.translate import HELPER_LABEL, HELPER_PROTOCOL, helper_protocol

    present = f"{image}{origin} is present ({str(attrs.get('Id', '?'))[:19]})"
    protocol = helper_protocol((attrs.get("Config") or {}).get("Labels") or {})
    fix = "rebuild it: debugkit toolbox build" + ("" if runtime == "docker" else
                                                  f", then docker save {image} | podman load")
    if image == toolbox_ref() and protocol is None:
        # A toolbox built before the helper existed: no reaper, and cp and port-forward refuse.
        return Result(name, WARN, f"{present}, but it is an old build without debugkit-helper "
                                  f"(no {HELPER_LABEL} label): no reaper, and cp and port-forward refuse", fix)
    if protocol is not None and protocol < HELPER_PROTOCOL:
        return Result(name, FAIL, f"{present}, but its debugkit-helper is older than this debugkit (protocol "
                                  f"{protocol}, {HELPER_PROTOCOL} needed): attach refuses it", fix)
    return Result(name, OK, present)


# -- the target -----------------------------------------------------------------------------------

def target_checks(raw: dict) -> tuple[list[Result], dict]:
    """Who TARGET runs as (as inspect resolves it), whether it is dumpable, whether the
    default profile reads its files, its zombies. Also returns what kube_checks wants to
    know about a pod target (its namespace, identity and pod securityContext)."""
    from debugkit.session import flow

    try:
        runtime, plan = flow.plan(raw, mode="command", thorough=True)
        info = runtime.inspect(plan)
    except IdentityUnresolved as exc:
        return [Result("target-identity", FAIL, exc.message, "pass --user UID[:GID]")], {}
    except DebugkitError as exc:
        return [Result("target", FAIL, exc.message, exc.hint or "")], {}
    context: dict = {}
    spec = plan.spec
    results = [Result("target", OK, f"{plan.runtime} {plan.target.name} (image {plan.target.image})")]
    notes = f" ({'; '.join(spec.identity.notes)})" if spec.identity.notes else ""
    name = f" {spec.identity.user_name}" if spec.identity.user_name else ""
    results.append(Result("target-identity", OK, f"{spec.identity.uid}:{spec.identity.gid}{name} from "
                                                 f"{spec.identity.source}{notes}"))
    if plan.runtime == "kubernetes":
        pt = plan.facts["pod_target"]
        context = {"namespace": pt.namespace, "identity": spec.identity,
                   "pod_security_context": pt.pod_security_context}
    results.append(_dumpable(info.get("target_dumpable")))
    results.append(_filesystem(plan, info))
    results.append(_zombies(info.get("zombies"), info.get("pid")))
    return results, context


PTRACE_FIX = ("use --profile ptrace (root with only CAP_SYS_PTRACE) to read /proc/1/root and /proc/1/environ; "
              "on Kubernetes that needs a namespace whose PodSecurity level allows it")


def _dumpable(dumpable) -> Result:
    if dumpable is None:
        return Result("target-dumpable", SKIP, "unknown: only a local Docker or Podman engine shows the target's "
                                               "/proc here")
    if dumpable:
        return Result("target-dumpable", OK, "yes: its /proc entries belong to the user it runs as")
    return Result("target-dumpable", FAIL, "no: it changed UID at runtime (started as root, then dropped), so "
                                           "the kernel gives its /proc entries to root only", PTRACE_FIX)


def _filesystem(plan, info: dict) -> Result:
    spec = plan.spec
    who = f"{spec.uid}:{spec.gid}"
    if plan.runtime == "kubernetes":
        if info.get("admitted_by_namespace") is False:
            return Result("target-filesystem", FAIL,
                          f"namespace {info.get('namespace')} ({info.get('pod_security_enforce')}) would refuse "
                          f"the debug container of profile {spec.profile}",
                          "see the pod-security line: a non-root --user, or a namespace with a laxer level")
        return Result("target-filesystem", SKIP, f"not checked for pods (it would take a debug container): "
                                                 f"profile {spec.profile} runs as {who}, the target's own user; "
                                                 f"`ls $DEBUGKIT_TARGET_ROOT` in an attach shows it")
    dumpable = info.get("target_dumpable")
    if spec.run_as_root:
        return Result("target-filesystem", OK, f"profile {spec.profile} runs as root")
    if dumpable is None:
        return Result("target-filesystem", SKIP, f"unknown: profile {spec.profile} runs as {who}; whether the "
                                                 f"target's /proc/1/root is open to it needs a local engine")
    if dumpable:
        return Result("target-filesystem", OK, f"profile {spec.profile} reads /proc/1/root as {who}, the "
                                               f"target's own user, with no capability")
    return Result("target-filesystem", FAIL, f"profile {spec.profile} cannot read /proc/1/root as {who}: the "
                                             f"target is not dumpable", PTRACE_FIX)


def _zombies(count, pid) -> Result:
    if count is None:
        return Result("target-zombies", SKIP, "not counted: needs the target's PID on this machine (a local engine)")
    if count == 0:
        return Result("target-zombies", OK, f"its PID 1 (host PID {pid}) holds no zombie processes")
    return Result("target-zombies", WARN, f"its PID 1 (host PID {pid}) holds {count} zombie process(es): it does "
                                          f"not reap its children",
                  "only restarting the target removes them (their parent must reap them, and the sidecar cannot); "
                  "run it under an init (docker run --init, tini) so new ones are reaped")


# -- everything ------------------------------------------------------------------------------------

def run(*, raw: dict | None = None, namespace: str | None = None, kube_context: str | None = None,
        kubeconfig: str | None = None, docker_host: str | None = None,
        docker_context: str | None = None, impersonate=None) -> list[Result]:
    """Every check, in order; `raw` (raw_options for a TARGET) adds the target's."""
    results = guard("config", lambda: [check_config()]) + guard("audit-log", lambda: [check_audit_log()])
    results += guard("docker-engine", lambda: engine_checks("docker", docker_host=docker_host,
                                                             docker_context=docker_context))
    results += guard("podman-engine", lambda: engine_checks("podman"))
    target_results, target_facts = [], {}
    if raw is not None:
        target_results, target_facts = _guard_target(raw)
    results += guard("kube-context", lambda: kube_checks(
        kubeconfig=kubeconfig, context=kube_context, namespace=target_facts.get("namespace") or namespace,
        identity=target_facts.get("identity"), pod_security_context=target_facts.get("pod_security_context"),
        impersonate=impersonate))
    return results + target_results


def _guard_target(raw: dict) -> tuple[list[Result], dict]:
    holder: dict = {}

    def check() -> list[Result]:
        results, facts = target_checks(raw)
        holder.update(facts)
        return results
    return guard("target", check), holder
