"""doctor's checks of a Docker-API engine (Docker, or Podman's service): it answers, its
socket lets us in, and the sidecar image is there and current. Every call gives up after
ENGINE_TIMEOUT seconds, so doctor finishes even when an engine hangs."""
from __future__ import annotations

import os
import stat

from debugkit.runtimes.base import FAIL, NOT_CONFIGURED, OK, SKIP, WARN, CheckResult, local_user

ENGINE_TIMEOUT = 5.0


def engine_checks(runtime) -> list[CheckResult]:
    """`runtime`: a DockerRuntime (or Podman's), for the address it would dial."""
    from debugkit.runtimes.docker.clients import short_client
    from debugkit.runtimes.docker.engine import EngineConfigError

    name, engine = runtime.name, runtime.engine
    if not runtime.entry.is_configured(runtime.connection):
        return [CheckResult(f"{name}-engine", NOT_CONFIGURED, f"{engine} is not configured here "
                                                               f"({runtime.unconfigured})")]
    try:
        api = short_client(runtime.resolve().address, timeout=ENGINE_TIMEOUT, engine=runtime.engine)
    except EngineConfigError as exc:
        return [CheckResult(f"{name}-engine", FAIL, str(exc), f"correct {runtime.address_setting} (unix:///path, "
                                                               f"tcp://host:port, ssh://user@host)")]
    try:
        results = [check_engine(api, runtime), check_socket(api, runtime)]
        if results[0].ok:
            results.append(check_toolbox_image(api, runtime))
        else:
            results.append(CheckResult(f"{name}-toolbox", SKIP, f"not checked: the {engine} engine did not answer"))
        return results
    finally:
        api.close()


def check_engine(api, runtime) -> CheckResult:
    """The engine answers GET /version and speaks an Engine API version debugkit speaks."""
    from debugkit.core.errors import EngineIncompatible
    from debugkit.runtimes.docker.apiversion import NEWEST_TESTED, OLDEST_SUPPORTED, negotiate
    from debugkit.runtimes.docker.engine import EngineConnectionError, EngineError
    from debugkit.runtimes.docker.errors import start_hint

    name, engine = f"{runtime.name}-engine", runtime.engine
    try:
        # GET /version rather than the ping attach settles for: it also states the minimum.
        found = negotiate(api.version(), engine=engine, host=api.host)
    except PermissionError:
        return CheckResult(name, FAIL, f"permission denied on the {engine} socket {api.host}",
                           "see the socket line below")
    except EngineConnectionError as exc:
        detail = f": {exc.detail}" if exc.detail else ""
        return CheckResult(name, FAIL, f"cannot reach the {engine} engine at {api.host}{detail}",
                           start_hint(engine, api.host))
    except EngineError as exc:
        return CheckResult(name, FAIL, f"the {engine} engine at {api.host} answered {exc.status_code}: "
                                       f"{exc.explanation}", f"check the {engine} service's log")
    except EngineIncompatible as exc:
        return CheckResult(name, FAIL, exc.message, exc.hint or "")
    return CheckResult(name, OK, f"{engine} {found.engine_version or '?'} at {api.host}: Engine API "
                                 f"{found.version} (the engine speaks {found.engine_range()}, debugkit "
                                 f"{OLDEST_SUPPORTED} to {NEWEST_TESTED})")


def check_socket(api, runtime) -> CheckResult:
    """Who may use the engine: the unix socket's owner, group and mode; TLS for TCP."""
    import grp
    import pwd

    name = f"{runtime.name}-socket"
    address = api.address
    if address.scheme != "unix":
        if address.tls is not None:
            return CheckResult(name, OK, f"{api.host}: TCP with TLS "
                                         f"({'verified' if address.tls.verify else 'unverified'})")
        return CheckResult(name, WARN, f"{api.host}: plain TCP without TLS, not a local socket",
                           "anyone who reaches that port controls the engine: use TLS (DOCKER_TLS_VERIFY, "
                           "DOCKER_CERT_PATH) or ssh://")
    path = address.path
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return CheckResult(name, FAIL, f"{path} does not exist", "start the engine: it creates its socket")
    except OSError as exc:
        return CheckResult(name, FAIL, f"cannot look at {path}: {exc.strerror or exc}",
                           "a parent directory is closed to you: run with sudo, or fix its permissions")
    if not stat.S_ISSOCK(st.st_mode):
        return CheckResult(name, FAIL, f"{path} is not a socket", "point the address at the engine's socket")
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    described = f"{path} {stat.filemode(st.st_mode)} {owner}:{group}"
    me = local_user()
    if not os.access(path, os.R_OK | os.W_OK):
        return CheckResult(name, FAIL, f"{described}: {me} (uid {os.getuid()}) may not connect",
                           f"add {me} to the group {group} (sudo usermod -aG {group} {me}, then log in again), "
                           f"or run debugkit with sudo")
    if st.st_mode & stat.S_IWOTH:
        return CheckResult(name, WARN, f"{described}: writable by every local user, who can all control the engine",
                           f"sudo chmod o-rw {path} (and use the group {group})")
    return CheckResult(name, OK, f"{described}: {me} may connect")


def check_toolbox_image(api, runtime) -> CheckResult:
    from debugkit.core.imageref import toolbox_ref
    from debugkit.runtimes.docker.engine import EngineError, EngineNotFound
    from debugkit.runtimes.docker.translate import HELPER_LABEL, HELPER_PROTOCOL, helper_protocol

    name, engine = f"{runtime.name}-toolbox", runtime.engine
    image, source = runtime.preferences.image(runtime.name)
    origin = "" if source == "built-in" else f", from {source}"
    standard = image == toolbox_ref()
    try:
        attrs = api.inspect_image(image)
    except EngineNotFound:
        return CheckResult(name, FAIL, f"the sidecar image {image}{origin} is not in the local {engine} engine",
                           runtime.toolbox_missing_fix(image, standard=standard))
    except EngineError as exc:
        return CheckResult(name, FAIL, f"{engine} could not inspect {image}: {exc.explanation}", "")
    present = f"{image}{origin} is present ({str(attrs.get('Id', '?'))[:19]})"
    protocol = helper_protocol((attrs.get("Config") or {}).get("Labels") or {})
    fix = runtime.toolbox_rebuild_fix(image)
    if standard and protocol is None:
        # A toolbox built before the helper existed: no reaper, and cp and port-forward refuse.
        return CheckResult(name, WARN, f"{present}, but it is an old build without debugkit-helper "
                                       f"(no {HELPER_LABEL} label): no reaper, and cp and port-forward refuse", fix)
    if protocol is not None and protocol < HELPER_PROTOCOL:
        return CheckResult(name, FAIL, f"{present}, but its debugkit-helper is older than this debugkit (protocol "
                                       f"{protocol}, {HELPER_PROTOCOL} needed): attach refuses it", fix)
    return CheckResult(name, OK, present)
