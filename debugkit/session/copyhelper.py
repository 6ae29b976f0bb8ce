"""What `debugkit cp` hears from the sidecar's debugkit-helper besides the archive: its
`stat` answers, its exit codes and its stderr, turned into debugkit's errors (with the
profile that could read a file), and its warnings summed up. All of it is hostile input:
a target runs as the sidecar's user. See copy.py."""
from __future__ import annotations

import json
import posixpath
import re

from debugkit.core.errors import DebugkitError, DestinationExists, NotADirectory, PathForbidden, PathNotFound, SpecialFile
from debugkit.core.escape import safe
from debugkit.runtimes.base import HELPER_PATH, ExecSession, helper_mismatch

# The helper's exit codes (toolbox-image/helper): what each means here.
HELPER_NOT_FOUND, HELPER_FORBIDDEN, HELPER_NOT_DIR, HELPER_EXISTS, HELPER_SPECIAL = 2, 3, 4, 5, 6


def remote_path(path: str) -> str:
    """Absolute and normalised, inside the root the helper resolves against."""
    return posixpath.normpath("/" + path.lstrip("/")) if path else "/"


def remote_stat(session: ExecSession, root: str, path: str, *, follow: bool = False) -> dict:
    """The helper's stat of PATH inside ROOT (a final symlink unfollowed unless `follow`)."""
    argv = [HELPER_PATH, "stat", "--root", root] + (["--follow"] if follow else []) + [path]
    result = session.exec(argv, timeout=30, max_output=MAX_STAT)
    mismatch = helper_mismatch(result.exit_code, result.stderr)
    if mismatch is not None:
        raise mismatch
    if result.exit_code != 0:
        detail = last_line(result.stderr) or f"exit {result.exit_code}"
        if result.exit_code == HELPER_FORBIDDEN or "permission denied" in detail:
            return {"path": path, "exists": False, "error": "permission denied", "root": True}
        raise DebugkitError(f"cp: cannot examine {safe(path)} in the sidecar: {safe(detail)}")
    return parse_stat(result.stdout, path, truncated=result.truncated)


MAX_STAT = 64 << 10   # the helper's stat line: a path and a link target of PATH_MAX each, JSON-escaped
STAT_TYPES = ("file", "dir", "symlink", "other")
_OCTAL_MODE = re.compile(r"[0-7]{1,6}", re.ASCII)


def parse_stat(data: bytes, path: str, *, truncated: bool = False) -> dict:
    """The helper's stat line, checked as hostile input (the target can write into the
    helper's output): bounded, one JSON object of the shape the helper writes, with the
    right types; only the fields used are kept, and `path` is ours, not theirs."""
    def unusable(why: str) -> DebugkitError:
        return DebugkitError(f"cp: the sidecar's answer about {safe(path)} is unusable: {why}")

    if truncated or len(data) > MAX_STAT:
        raise unusable(f"more than {MAX_STAT} bytes")
    try:
        info = json.loads(data)
    except (ValueError, RecursionError):
        raise unusable("not JSON") from None
    if not isinstance(info, dict) or not isinstance(info.get("exists"), bool):
        raise unusable("not a stat object")
    if not info["exists"]:
        error = info.get("error")
        if not isinstance(error, str):
            raise unusable("no error for a missing path")
        return {"path": path, "exists": False, "error": error[:200]}
    out = {"path": path, "exists": True}
    for key, kind, check in (("type", str, lambda v: v in STAT_TYPES),
                             ("mode", str, lambda v: _OCTAL_MODE.fullmatch(v) is not None),
                             ("uid", int, lambda v: 0 <= v < 1 << 32), ("gid", int, lambda v: 0 <= v < 1 << 32),
                             ("size", int, lambda v: 0 <= v < 1 << 63)):
        value = info.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or not check(value):
            raise unusable(f"a wrong {key}")
        out[key] = value
    link = info.get("link")
    if out["type"] == "symlink":
        if not isinstance(link, str) or len(link) > 4096:
            raise unusable("a wrong link")
        out["link"] = link
    return out


def last_line(stderr: bytes) -> str:
    """The helper's last line on stderr (its error), without its prefix."""
    lines = stderr.decode(errors="replace").strip().splitlines()
    return lines[-1].removeprefix("debugkit-helper: ") if lines else ""


def who(session: ExecSession) -> str:
    """Whose rights the sidecar uses, as a person reads it."""
    spec = session.plan.spec
    if spec.run_as_root:
        return f"the sidecar (root, --profile {spec.profile})"
    whose = "the sidecar's user" if spec.identity.source == "flag" else "the target's user"
    return f"{whose} ({spec.uid}:{spec.gid})"


def profile_that_reads(info: dict) -> str:
    """The least profile whose sidecar could read (a file) or list (a directory) what the
    target's user cannot: `ptrace` runs as root with only CAP_SYS_PTRACE, so it reads what
    root's owner, group or other bits allow (no CAP_DAC_OVERRIDE); anything else takes
    `sysadmin`. Without the owner and mode (the target's root itself was refused): ptrace,
    which may open /proc/1/root of a process of another user."""
    try:
        uid, gid, mode = int(info["uid"]), int(info["gid"]), int(str(info["mode"]), 8)
    except (KeyError, TypeError, ValueError):
        return "ptrace"
    need = 0o5 if info.get("type") == "dir" else 0o4
    bits = (mode >> 6) if uid == 0 else (mode >> 3) if gid == 0 else mode
    return "ptrace" if bits & need == need else "sysadmin"


PROFILE_HINTS = {
    "ptrace": "--profile ptrace (root with only CAP_SYS_PTRACE) can read it",
    "sysadmin": "only --profile sysadmin (privileged root) can read it",
}


def forbidden(session: ExecSession, path: str, *, where: str, writing: bool, root: str) -> PathForbidden:
    """Permission denied, with the owner and mode when the helper can see them, and, for a
    read, the profile that could do it."""
    info = remote_stat(session, root, path) if root else {}
    owner = ""
    if info.get("exists"):
        owner = f" (owner {info.get('uid')}:{info.get('gid')}, mode {info.get('mode')})"
    if writing:
        return PathForbidden(f"cp: {who(session)} cannot write to {safe(path)} in {where}{owner}",
                             hint="cp --write writes with the target's user's rights, no more")
    if info.get("root") or (not info.get("exists") and "permission" in str(info.get("error"))):
        # The root itself (a target that is not dumpable or runs as another user), or a
        # directory on the way: the helper cannot even look at it.
        info = {}
    hint = PROFILE_HINTS[profile_that_reads(info)]
    return PathForbidden(f"cp: {who(session)} cannot read {safe(path)} in {where}{owner}", hint=hint)


_FAILED_PATH = re.compile(r"^(/.*?): (?:permission denied|cannot list it: permission denied|read error: "
                          r"permission denied)$")


def helper_failure(code: int, stderr: bytes, session: ExecSession, *, path: str, where: str, writing: bool,
                   root: str) -> DebugkitError:
    detail = last_line(stderr)
    shown = safe(detail or path)
    mismatch = helper_mismatch(code, stderr)
    if mismatch is not None:
        return mismatch
    if code == HELPER_NOT_FOUND:
        return PathNotFound(f"cp: no such file or directory in {where}: {safe(path)}")
    if code == HELPER_FORBIDDEN:
        failed = _FAILED_PATH.match(detail)
        return forbidden(session, failed.group(1) if failed else path, where=where, writing=writing, root=root)
    if code == HELPER_NOT_DIR:
        return NotADirectory(f"cp: {where}: {shown}")
    if code == HELPER_EXISTS:
        return DestinationExists(f"cp: {where}: {shown}", hint="pass --force to replace it")
    if code == HELPER_SPECIAL:
        return SpecialFile(f"cp: {where}: {shown}", hint="cp copies regular files, directories and symlinks")
    return DebugkitError(f"cp failed in {where} (exit {code}): {shown}")


_SKIPPED_SPECIAL = re.compile(r"^skipping (/.*): an? (socket|FIFO|character device|block device)$")
_SKIPPED_PSEUDO = re.compile(r"^skipping the contents of (/.*): an? (\S+) filesystem$")


def helper_warnings(stderr: bytes) -> list[str]:
    """The helper's warnings (a file that changed while it was read, ...), with the skipped
    special files and kernel filesystems (a copy of /) summed up in a line each."""
    lines = [line.removeprefix("debugkit-helper: warning: ")
             for line in stderr.decode(errors="replace").splitlines()
             if line.startswith("debugkit-helper: warning: ")]
    special, pseudo, other = [], [], []
    for line in lines:
        if match := _SKIPPED_SPECIAL.match(line):
            special.append(match.group(1))
        elif match := _SKIPPED_PSEUDO.match(line):
            pseudo.append(f"{match.group(1)} ({match.group(2)})")
        else:
            other.append(line)
    if special:
        shown = ", ".join(special[:3]) + (f" and {len(special) - 3} more" if len(special) > 3 else "")
        other.append(f"not copied: {len(special)} socket(s), device(s) or FIFO(s): {shown}")
    if pseudo:
        other.append(f"copied empty: {', '.join(pseudo)} (kernel filesystems, not files)")
    return other
