"""cp and port-forward: the pure parts (syntax, the local plan, the hint's profile) and the
streaming tar parser, fed archives in pieces of every size, and hostile ones."""
from __future__ import annotations

import hashlib
import io
import os
import random
import stat
import tarfile
from pathlib import Path

import pytest

from debugkit.core.errors import (DebugkitError, DestinationExists, InvalidInput, NotADirectory, PathForbidden,
                                  PathNotFound, SpecialFile)
from debugkit.session import copy, copyhelper, copylocal, progress, tarsink
from debugkit.session.forward import Mapping, parse_mappings


@pytest.mark.parametrize("text, target, path", [
    ("web:/etc/app.yaml", "web", "/etc/app.yaml"),
    ("docker://web:/x", "docker://web", "/x"),
    ("podman://web:x", "podman://web", "x"),
    ("pod/api/app:/tmp/heap.pprof", "pod/api/app", "/tmp/heap.pprof"),
    ("k8s://shop/api/app:/tmp/a:b", "k8s://shop/api/app", "/tmp/a:b"),
    ("web:", "web", "/"),
    ("./a:b", None, "./a:b"),
    ("/abs/a:b", None, "/abs/a:b"),
    ("plain", None, "plain"),
])
def test_endpoints(text, target, path):
    assert copy.parse_endpoint(text) == copy.Endpoint(target, path)


def test_exactly_one_side_is_remote():
    with pytest.raises(InvalidInput):
        copy.endpoints("./a", "./b")
    with pytest.raises(InvalidInput):
        copy.endpoints("web:/a", "db:/b")
    with pytest.raises(InvalidInput):
        copy.parse_endpoint(":/x")


def test_remote_paths_are_absolute_and_normal():
    assert copyhelper.remote_path("etc//passwd") == "/etc/passwd"
    assert copyhelper.remote_path("/data/../../etc") == "/etc"
    assert copyhelper.remote_path("") == "/"


def test_plan_out(tmp_path):
    (tmp_path / "file").write_text("x")
    assert copylocal.plan_out("/srv/app.log", str(tmp_path), force=False) == copylocal.OutPlan(
        "/srv/app.log", tmp_path / "app.log", False, False)
    assert copylocal.plan_out("/", str(tmp_path), force=False).dest == tmp_path / "root"
    assert copylocal.plan_out("/a", str(tmp_path / "file"), force=True).exists
    with pytest.raises(PathNotFound):
        copylocal.plan_out("/a", str(tmp_path / "missing" / "x"), force=False)
    with pytest.raises(PathNotFound):
        copylocal.plan_out("/a", str(tmp_path / "missing") + "/", force=False)
    with pytest.raises(NotADirectory):
        copylocal.plan_out("/a", str(tmp_path / "file") + "/", force=False)


@pytest.mark.parametrize("uid, gid, mode, kind, profile", [
    (0, 0, "0600", "file", "ptrace"),        # root's own file: root without DAC_OVERRIDE reads it
    (0, 0, "0200", "file", "sysadmin"),
    (1234, 0, "0640", "file", "ptrace"),     # group root may read
    (1234, 1234, "0600", "file", "sysadmin"),
    (1234, 1234, "0604", "file", "ptrace"),  # others may read (a parent directory stopped the user)
    (0, 0, "0700", "dir", "ptrace"),
    (0, 0, "0600", "dir", "sysadmin"),       # a directory needs x too
])
def test_the_profile_that_could_read(uid, gid, mode, kind, profile):
    assert copyhelper.profile_that_reads({"uid": uid, "gid": gid, "mode": mode, "type": kind}) == profile


def test_without_owner_and_mode_the_hint_is_ptrace():
    assert copyhelper.profile_that_reads({}) == "ptrace"


# -- the streaming tar parser -----------------------------------------------------------------------------------


def archive(entries, fmt=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, kind, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = 1_600_000_000, mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def feed(data: bytes, staging: Path, *, pieces: int | None = None, seed: int = 0, hashing=True, check_top=None):
    sink = tarsink.TarSink(staging, progress.Progress(None, enabled=False), hashing=hashing, check_top=check_top)
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        size = rng.randint(1, 3000) if pieces is None else pieces
        sink.write(data[pos:pos + size])
        pos += size
    try:
        sink.close()
    finally:
        sink.release()
    return sink


BIG = hashlib.sha256(b"x").digest() * 3000   # 96000 bytes: not a block multiple
LONG = "d/" + "n" * 150 + "/" + "f" * 120    # needs PAX (or GNU) long names
TREE = [
    ("d", "dir", None, 0o750),
    ("d/a.txt", "file", b"hello\n", 0o640),
    ("d/empty", "file", b"", 0o600),
    ("d/big.bin", "file", BIG, 0o755),
    ("d/sub", "dir", None, 0o700),
    ("d/sub/deep", "file", b"deep\n", 0o644),
    ("d/link", "sym", "/etc/passwd", 0o777),
    ("d/" + "n" * 150, "dir", None, 0o755),
    (LONG, "file", b"long\n", 0o644),
    ("d/setuid", "file", b"s", 0o4755),
]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
@pytest.mark.parametrize("pieces", [None, 1, 511, 512, 513, 16384, 1 << 20])
def test_a_tree_in_pieces_of_any_size(tmp_path, fmt, pieces):
    sink = feed(archive(TREE, fmt), tmp_path, pieces=pieces, seed=pieces or 7)
    d = tmp_path / "d"
    assert sink.top == "d" and sink.files == 6
    assert (d / "a.txt").read_bytes() == b"hello\n" and (d / "big.bin").read_bytes() == BIG
    assert (d / "empty").read_bytes() == b"" and (tmp_path / LONG).read_bytes() == b"long\n"
    assert os.readlink(d / "link") == "/etc/passwd"
    modes = {p: (d / p).lstat().st_mode & 0o7777 for p in ("", "a.txt", "big.bin", "sub", "setuid")}
    assert modes == {"": 0o750, "a.txt": 0o640, "big.bin": 0o755, "sub": 0o700, "setuid": 0o755}
    assert {int((d / p).lstat().st_mtime) for p in ("", "a.txt", "sub", "link")} == {1_600_000_000}
    sums = dict((name, digest) for digest, name in sink.sums("copy"))
    assert sums["copy/big.bin"] == hashlib.sha256(BIG).hexdigest()
    assert set(sums) == {"copy/a.txt", "copy/empty", "copy/big.bin", "copy/sub/deep", "copy/" + LONG[2:],
                         "copy/setuid"}


def test_a_single_file_sets_the_total_and_no_hash_unless_asked(tmp_path):
    sink = tarsink.TarSink(tmp_path, progress.Progress(None, enabled=False))
    sink.write(archive([("server", "file", BIG, 0o755)]))
    sink.close()
    assert sink.meter.total == len(BIG) == sink.meter.done and sink.sums("server") == []


def test_the_root_of_a_target_is_named_by_the_destination(tmp_path):
    sink = feed(archive([("./", "dir", None, 0o755), ("./etc", "dir", None, 0o755),
                         ("./etc/passwd", "file", b"root\n", 0o644)]), tmp_path)
    assert sink.top == "." and sink.sums("out") == [(hashlib.sha256(b"root\n").hexdigest(), "out/etc/passwd")]


@pytest.mark.parametrize("entries, words", [
    ([("/etc/passwd", "file", b"x", 0o644)], "outside the copy"),
    ([("../x", "file", b"x", 0o644)], "outside the copy"),
    ([("d", "dir", None, 0o755), ("d/../../x", "file", b"x", 0o644)], "outside the copy"),
    ([("d", "dir", None, 0o755), ("d/l", "sym", "/", 0o777), ("d/l/etc/x", "file", b"x", 0o644)],
     "below .or over. a symlink"),
    ([("d", "dir", None, 0o755), ("d/l", "sym", "..", 0o777), ("d/l/x", "file", b"x", 0o644)],
     "below .or over. a symlink"),
    ([("a", "file", b"x", 0o644), ("b", "file", b"x", 0o644)], "second top-level"),
    ([("d", "dir", None, 0o755), ("d/x", "file", b"1", 0o644), ("d/x", "file", b"2", 0o644)], "second archive entry"),
    ([("d", "dir", None, 0o755), ("d/fifo", "fifo", None, 0o644)], "is a FIFO"),
])
def test_hostile_archives_are_refused(tmp_path, entries, words):
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(DebugkitError, match=words):
        feed(archive(entries), staging)
    assert not (tmp_path / "x").exists() and not Path("/etc/x").exists()


def test_a_truncated_archive_is_not_complete(tmp_path):
    data = archive([("big.bin", "file", BIG, 0o644)])
    sink = tarsink.TarSink(tmp_path, progress.Progress(None, enabled=False))
    sink.write(data[:50_000])
    with pytest.raises(DebugkitError, match="ended early"):
        sink.close()
    empty = tarsink.TarSink(tmp_path, progress.Progress(None, enabled=False))
    with pytest.raises(DebugkitError, match="ended early"):
        empty.close()


def test_garbage_and_oversized_headers_are_refused(tmp_path):
    sink = tarsink.TarSink(tmp_path, progress.Progress(None, enabled=False))
    with pytest.raises(DebugkitError, match="unusable"):
        sink.write(b"this is not a tar archive" * 40)
    header = tarfile.TarInfo("x")
    header.type, header.size = tarfile.XHDTYPE, 1 << 30
    sink = tarsink.TarSink(tmp_path, progress.Progress(None, enabled=False))
    with pytest.raises(DebugkitError, match="extended header"):
        sink.write(header.tobuf(tarfile.USTAR_FORMAT))


def test_the_destination_check_sees_the_top_entry(tmp_path):
    seen = []
    feed(archive([("d", "dir", None, 0o755)]), tmp_path, check_top=seen.append)
    assert seen == ["dir"]
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectory):
        copylocal.check_dest(tmp_path / "f", "dir", "/d")
    with pytest.raises(DestinationExists):
        copylocal.check_dest(tmp_path, "file", "/f")
    copylocal.check_dest(tmp_path / "f", "file", "/f")  # replaced by --force


# -- port mappings ----------------------------------------------------------------------------------------------


def test_port_mappings():
    assert parse_mappings(["8080", "9000:8080", ":6060"]) == [Mapping(8080, 8080), Mapping(9000, 8080),
                                                               Mapping(0, 6060)]
    for bad in ("0", "70000", "a:80", "80:", "1:2:3", ""):
        with pytest.raises(InvalidInput):
            parse_mappings([bad])
    with pytest.raises(InvalidInput):
        parse_mappings([])


def test_helper_warnings_are_summed_up():
    stderr = b"".join(f"debugkit-helper: warning: {line}\n".encode() for line in (
        "skipping /dev/null: a character device", "skipping /dev/zero: a character device",
        "skipping /run/app.sock: a socket", "skipping /dev/loop0: a block device",
        "skipping the contents of /proc: a proc filesystem", "skipping the contents of /sys: a sysfs filesystem",
        "/var/log/app.log grew while it was archived; cut to its size of 10"))
    assert copyhelper.helper_warnings(stderr + b"debugkit-helper: not a warning\n") == [
        "/var/log/app.log grew while it was archived; cut to its size of 10",
        "not copied: 4 socket(s), device(s) or FIFO(s): /dev/null, /dev/zero, /run/app.sock and 1 more",
        "copied empty: /proc (proc), /sys (sysfs) (kernel filesystems, not files)",
    ]


def test_local_errors_are_one_line_with_their_code():
    from debugkit.core.errors import ExitCode

    denied = copylocal.local_error(PermissionError(13, "Permission denied", "/x"), "write in", "/x")
    assert (denied.exit_code, str(denied)) == (ExitCode.PATH_FORBIDDEN, "cp: cannot write in /x here: Permission denied")
    assert copylocal.local_error(FileNotFoundError(2, "No such file or directory"), "read", "a").exit_code == \
        ExitCode.PATH_NOT_FOUND


def test_a_helper_that_does_not_understand_its_arguments_is_not_a_missing_file():
    """The helper's usage error (64) and its `no such file` (2) are distinct: an old or new
    helper's unknown flag says the toolbox does not match, not that the path is absent."""
    from debugkit.core.errors import ExitCode
    from debugkit.runtimes.base import HELPER_USAGE

    args = dict(session=None, path="/etc/app", where="the target", writing=False, root="/proc/1/root")
    refused = copyhelper.helper_failure(HELPER_USAGE, b"debugkit-helper: usage: debugkit-helper tar-out [--follow]\n",
                                  **args)
    assert refused.exit_code == ExitCode.IMAGE_MISSING and "debugkit toolbox build" in str(refused)
    assert "does not understand" in str(refused)
    missing = copyhelper.helper_failure(copyhelper.HELPER_NOT_FOUND, b"debugkit-helper: /etc/app: not found\n", **args)
    assert missing.exit_code == ExitCode.PATH_NOT_FOUND
    assert copyhelper.HELPER_NOT_FOUND != HELPER_USAGE


# -- the local side of cp: only regular files, directories, symlinks and new paths (issue 27) ------------------

class ArchiveSession:
    """The helper as a compromised target could make it answer: a given tar stream for
    tar-out, a given line for stat (fault injection; the real helper is tested against
    the real engines)."""

    def __init__(self, archive: bytes, stat_line: bytes = b'{"path": "/x", "exists": true, "type": "dir", '
                                                          b'"size": 0, "mode": "0755", "uid": 0, "gid": 0}\n'):
        self.archive, self.stat_line, self.calls = archive, stat_line, []

    def exec_io(self, argv, *, stdin_fd, stdout, stderr):
        self.calls.append(argv)
        stdout.write(self.archive)
        return 0

    def exec(self, argv, *, timeout, max_output=1 << 20):
        from debugkit.runtimes.execution import ExecResult

        self.calls.append(argv)
        data = self.stat_line[:max_output]
        return ExecResult(tuple(argv), 0, data, b"", 0.0, truncated=len(self.stat_line) > max_output)


def entries_beside(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


@pytest.mark.parametrize("special", ["/dev/null", "/dev/zero", "fifo", "socket"])
def test_a_special_destination_is_refused_even_with_force(tmp_path, special):
    import socket as socketlib

    if special == "fifo":
        os.mkfifo(tmp_path / "fifo")
        special = str(tmp_path / "fifo")
    elif special == "socket":
        sock = socketlib.socket(socketlib.AF_UNIX)
        sock.bind(str(tmp_path / "sock"))
        special = str(tmp_path / "sock")
    for force in (False, True):
        with pytest.raises(SpecialFile, match="cp writes only to a regular file, a directory or a new path"):
            copylocal.plan_out("/x", special, force=force)
    with pytest.raises(SpecialFile):  # DIR/NAME that is one
        copylocal.plan_out("/" + Path(special).name, str(Path(special).parent), force=True)


def test_a_destination_that_became_a_device_is_not_replaced(tmp_path):
    """Checked again just before the rename: a FIFO put there during the transfer stays."""
    plan = copylocal.plan_out("/x", str(tmp_path / "x"), force=True)
    os.mkfifo(tmp_path / "x")
    with pytest.raises(SpecialFile):
        copy.copy_out(ArchiveSession(archive([("x", "file", b"data", 0o644)])), plan, from_sidecar=False,
                      progress=False)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "x").st_mode)
    assert entries_beside(tmp_path) == ["x"]


def test_a_trailing_slash_follows_a_local_symlink_to_a_directory(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    assert copylocal.plan_out("/etc/hosts", str(tmp_path / "link") + "/", force=False).dest == tmp_path / "link" / "hosts"
    # Without the slash the link is the destination itself (replaced as a link with --force).
    assert copylocal.plan_out("/etc/hosts", str(tmp_path / "link"), force=True).dest == tmp_path / "link"
    (tmp_path / "file").write_text("x")
    (tmp_path / "flink").symlink_to("file")
    with pytest.raises(NotADirectory, match="is not a local directory"):
        copylocal.plan_out("/etc/hosts", str(tmp_path / "flink") + "/", force=False)
    assert copylocal.plan_in(str(tmp_path / "link") + "/") == copylocal.InPlan(str(tmp_path / "link") + "/", "link", "dir")
    assert copylocal.plan_in(str(tmp_path / "link")).kind == "symlink"
    with pytest.raises(NotADirectory):
        copylocal.plan_in(str(tmp_path / "flink") + "/")


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "fifo"])
def test_a_special_source_is_refused(tmp_path, special):
    if special == "fifo":
        os.mkfifo(tmp_path / "fifo")
        special = str(tmp_path / "fifo")
    with pytest.raises(SpecialFile, match="cp copies regular files, directories and symlinks"):
        copylocal.plan_in(special)
    with pytest.raises(PathNotFound):
        copylocal.plan_in(str(tmp_path / "absent"))


def test_special_files_inside_a_directory_are_skipped_and_named(tmp_path):
    import socket as socketlib

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a").write_text("a")
    os.mkfifo(tree / "fifo")
    sock = socketlib.socket(socketlib.AF_UNIX)
    sock.bind(str(tree / "sock"))
    buf, skipped, sums = io.BytesIO(), [], []
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        count = copylocal.add_tree(tar, str(tree), "tree", progress.Progress(None, enabled=False), sums, False, skipped)
    buf.seek(0)
    assert count == 1 and sorted(tarfile.open(fileobj=buf).getnames()) == ["tree", "tree/a"]
    assert sorted(skipped) == [str(tree / "fifo"), str(tree / "sock")]
    assert copylocal.skipped_warning(skipped)[0].startswith("not copied: 2 local socket(s), device(s) or FIFO(s): ")


def test_a_name_of_250_bytes_copies_out(tmp_path):
    name = "n" * 250
    plan = copylocal.plan_out("/data/" + name, str(tmp_path), force=False)
    done = copy.copy_out(ArchiveSession(archive([(name, "file", b"long\n", 0o644)])), plan, from_sidecar=False,
                         progress=False)
    assert (tmp_path / name).read_bytes() == b"long\n" and done.count == 1
    assert entries_beside(tmp_path) == [name]


def test_a_directory_is_replaced_through_an_unpredictable_aside(tmp_path, monkeypatch):
    """The old directory is renamed onto an empty directory that mkdtemp made before the
    transfer: a name prepared in advance by someone else (the old predictable
    `.NAME.debugkit-old-PID`) changes nothing, and nothing is left beside the copy."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old").write_text("old")
    planted = tmp_path / f".d.debugkit-old-{os.getpid()}"
    planted.mkdir()
    (planted / "keep").write_text("someone else's")
    made = []
    real_mkdtemp = copylocal.tempfile.mkdtemp

    def watching(*args, **kwargs):
        made.append((kwargs.get("prefix"), real_mkdtemp(*args, **kwargs)))
        return made[-1][1]

    monkeypatch.setattr(copylocal.tempfile, "mkdtemp", watching)
    session = ArchiveSession(archive([("d", "dir", None, 0o755), ("d/new", "file", b"new", 0o644)]))
    plan = copylocal.plan_out("/d", str(tmp_path), force=True)
    copy.copy_out(session, plan, from_sidecar=False, progress=False)
    assert entries_beside(tmp_path / "d") == ["new"]
    assert (planted / "keep").read_text() == "someone else's"
    assert [prefix for prefix, _ in made] == [".debugkit-cp-", ".debugkit-old-"]
    assert all(len(Path(path).name) == len(".debugkit-old-") + 8 or len(Path(path).name) == len(".debugkit-cp-") + 8
               for _, path in made)
    assert entries_beside(tmp_path) == [planted.name, "d"]


def test_a_directory_where_the_aside_cannot_be_made_fails_before_the_transfer(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    session = ArchiveSession(archive([("d", "dir", None, 0o755)]))
    plan = copylocal.plan_out("/d", str(tmp_path), force=True)
    real_mkdtemp = copylocal.tempfile.mkdtemp

    def refusing(*args, prefix=None, **kwargs):  # as a directory full or not ours would
        if prefix == ".debugkit-old-":
            raise PermissionError(13, "Permission denied")
        return real_mkdtemp(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(copylocal.tempfile, "mkdtemp", refusing)
    with pytest.raises(PathForbidden, match="cannot write in"):
        copy.copy_out(session, plan, from_sidecar=False, progress=False)
    assert session.calls == [] and entries_beside(tmp_path) == ["d"]


@pytest.mark.parametrize("line, words", [
    (b"[1, 2]", "not a stat object"),
    (b"not json", "not JSON"),
    (b"[" * 100000 + b"]" * 100000, "not JSON|more than"),
    (b'{"exists": "yes"}', "not a stat object"),
    (b'{"exists": false}', "no error"),
    (b'{"exists": true, "type": "dir"}', "a wrong mode"),
    (b'{"exists": true, "type": "weird", "mode": "0755", "uid": 0, "gid": 0, "size": 0}', "a wrong type"),
    (b'{"exists": true, "type": "file", "mode": "rwx", "uid": 0, "gid": 0, "size": 0}', "a wrong mode"),
    (b'{"exists": true, "type": "file", "mode": "0644", "uid": -1, "gid": 0, "size": 0}', "a wrong uid"),
    (b'{"exists": true, "type": "file", "mode": "0644", "uid": true, "gid": 0, "size": 0}', "a wrong uid"),
    (b'{"exists": true, "type": "file", "mode": "0644", "uid": 0, "gid": 1e99, "size": 0}', "a wrong gid"),
    (b'{"exists": true, "type": "file", "mode": "0644", "uid": 0, "gid": 0, "size": -5}', "a wrong size"),
    (b'{"exists": true, "type": "symlink", "mode": "0777", "uid": 0, "gid": 0, "size": 0}', "a wrong link"),
    (b'{"exists": true, "pad": "' + b"x" * (70 << 10) + b'"}', "more than"),
])
def test_a_hostile_stat_answer_is_one_line(line, words):
    with pytest.raises(DebugkitError, match=words) as caught:
        copyhelper.remote_stat(ArchiveSession(b"", stat_line=line), "/proc/1/root", "/x")
    assert type(caught.value) is DebugkitError and "\n" not in str(caught.value)


def test_a_stat_answer_keeps_only_what_is_used():
    line = (b'{"path": "/elsewhere", "exists": true, "type": "symlink", "size": 4, "mode": "0777", "uid": 1, '
            b'"gid": 2, "mtime": 5, "link": "/etc", "extra": {"a": [1]}}')
    assert copyhelper.parse_stat(line, "/x") == {"path": "/x", "exists": True, "type": "symlink", "mode": "0777", "uid": 1,
                                           "gid": 2, "size": 4, "link": "/etc"}


def test_a_flood_on_the_helpers_stderr_is_bounded():
    from debugkit.runtimes.execution import BoundedCapture

    capture = BoundedCapture(limit=1000)
    for _ in range(10000):
        capture.write(b"x" * 999 + b"\n")
    capture.write(b"debugkit-helper: the last word\n")
    value = capture.getvalue()
    assert len(value) <= 2001 and value.startswith(b"x" * 999) and value.endswith(b"the last word\n")
    assert copyhelper.last_line(value) == "the last word"


@pytest.mark.parametrize("address, warned", [("127.0.0.1", False), ("127.0.0.2", False), ("::1", False),
                                             ("localhost", False), ("0.0.0.0", True), ("::", True),
                                             ("192.0.2.7", True), ("fe80::1", True)])
def test_a_non_loopback_address_is_warned_about(address, warned):
    from debugkit.session.forward import check_address

    warning = check_address(address)
    assert bool(warning) == warned
    if address in ("0.0.0.0", "::"):
        assert "every interface" in warning


@pytest.mark.parametrize("address", ["", " ", "example.com", "127.0.0.1 ", "1.2.3.4.5", "[::1]", "\x1b[2J"])
def test_an_empty_or_unusable_address_is_refused(address):
    from debugkit.session.forward import check_address

    with pytest.raises(InvalidInput, match="--address must be an IP address or localhost") as caught:
        check_address(address)
    assert "\x1b" not in str(caught.value)


def test_an_execs_reaper_carries_its_marker_on_its_command_line():
    """The helper is not dumpable, so its environment (where DEBUGKIT_EXEC is) cannot be
    read by the sidecar's user: STOP_EXECS finds the reaper by its command line."""
    from debugkit.runtimes.docker import translate

    argv = translate.exec_command("sc", ["debugkit-helper", "tar-out", "/x"], helper=True, watch_stdin=True,
                                  mark="DEBUGKIT_EXEC=abcd1234.0a0b")
    assert argv[:6] == [translate.HELPER, "reap", "--hold", "sc", "--watch-stdin", "--mark=DEBUGKIT_EXEC=abcd1234.0a0b"]
    assert argv[6:] == ["--", "debugkit-helper", "tar-out", "/x"]
    assert '"$p/cmdline"' in translate.STOP_EXECS and "kill -TERM" in translate.STOP_EXECS


def test_a_relay_that_does_not_understand_mux_says_the_toolbox_does_not_match():
    """The port-forward relay's exec ending with the helper's usage code at once (a helper
    without `relay --mux`) is the toolbox mismatch, not a generic relay failure."""
    from debugkit.core.errors import ExitCode
    from debugkit.runtimes.base import HELPER_USAGE
    from debugkit.session import relaymux

    relay = relaymux.MuxRelay.__new__(relaymux.MuxRelay)
    relay._ended = [HELPER_USAGE]
    relay._errors = relaymux.BoundedCapture()
    relay._errors.write(b"debugkit-helper: usage: debugkit-helper relay [--probe] PORT\n")
    relay._sidecar_gone = lambda: False
    with pytest.raises(DebugkitError) as raised:
        relay._raise_ended()
    assert raised.value.exit_code == ExitCode.IMAGE_MISSING and "debugkit toolbox build" in str(raised.value)
