"""The cp receiver fed crafted tar streams, as a compromised target can write them into
the helper's output (issue 27, 3.1): symlink then directory, `..`, absolute names, hard
links out of the tree, device nodes, huge headers, negative sizes. Each case shows that
nothing outside the destination is created, changed, chmodded or followed, and that the
stream is refused (or, for what is harmless, written inside the destination only)."""
from __future__ import annotations

import os
import signal
import stat
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from debugkit.core.errors import DebugkitError
from debugkit.session import progress, tarsink

MTIME = 1_600_000_000


def entry(name, kind="file", data=b"", mode=0o644, *, linkname="", mtime=MTIME, fmt=tarfile.PAX_FORMAT,
          size=None, pax=None) -> bytes:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = mode, mtime
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                 "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE,
                 "cont": tarfile.CONTTYPE, "sparse": tarfile.GNUTYPE_SPARSE}[kind]
    info.linkname = linkname
    info.size = len(data) if size is None else size
    if kind in ("chr", "blk"):
        info.devmajor, info.devminor = 1, 3   # /dev/null's numbers
    head = (pax_header(pax) if pax else b"") + info.tobuf(fmt, "utf-8", "surrogateescape")
    return head + data + b"\0" * (-len(data) % 512)


def pax_header(records: dict, *, declared: int | None = None) -> bytes:
    payload = b""
    for key, value in records.items():
        body = f" {key}={value}\n".encode("utf-8", "surrogateescape")
        length = len(body) + 1
        length = len(body) + len(str(length))
        payload += str(length).encode() + body
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, len(payload) if declared is None else declared
    fmt = tarfile.GNU_FORMAT if info.size < 0 else tarfile.USTAR_FORMAT  # GNU: base-256, negative numbers too
    return info.tobuf(fmt) + payload + b"\0" * (-len(payload) % 512)


def end() -> bytes:
    return b"\0" * 1024


@pytest.fixture
def world(tmp_path):
    """An operator's machine in miniature: things outside the destination that a hostile
    archive would like to change, and the destination's staging directory."""
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o755)
    (victim / "file").write_text("precious\n")
    (victim / "file").chmod(0o600)
    (victim / "sub").mkdir(mode=0o700)
    os.utime(victim / "sub", (1000, 1000))
    os.utime(victim, (1000, 1000))
    dest = tmp_path / "dest"
    dest.mkdir()
    staging = dest / ".debugkit-cp-test"
    staging.mkdir(mode=0o700)
    return tmp_path, victim, staging


def snapshot(root: Path, *, skip: Path) -> dict:
    """Every entry under root except `skip`, with its type, mode, times, inode and content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path == skip or skip in path.parents:
                continue
            st = os.lstat(path)
            body = path.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(path) \
                if stat.S_ISLNK(st.st_mode) else None
            out[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, st.st_ino, st.st_nlink, body)
    st = os.lstat(root)
    out["."] = (st.st_mode, st.st_mtime_ns, st.st_ino)
    return out


class Spinning(Exception):
    pass


def feed(staging: Path, stream: bytes, *, pieces: int = 700) -> tarsink.TarSink:
    """Feed the stream in pieces and close; a parser that spins is stopped after 10 s."""
    def alarm(_signum, _frame):
        raise Spinning("the parser did not come back within 10 s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 10)
    sink = tarsink.TarSink(staging, progress.Progress(None, enabled=False))
    try:
        for pos in range(0, len(stream), pieces):
            sink.write(stream[pos:pos + pieces])
        sink.close()
        return sink
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sink.release()


def refused(world, stream: bytes, words: str) -> None:
    root, victim, staging = world
    before = snapshot(root, skip=staging)
    with pytest.raises(DebugkitError, match=words):
        feed(staging, stream)
    assert snapshot(root, skip=staging) == before
    assert (victim / "file").read_text() == "precious\n"


V = "{victim}"  # replaced by the victim directory's absolute path

CASES = [
    # The review's own: loot/a a symlink to any directory, then a directory entry loot/a/
    # with mode 0777 and mtime 0 (it made `debugkit cp T:/loot .`, as root, chmod it).
    ("symlink then directory", [("loot", "dir", b"", 0o755, ""), ("loot/a", "sym", b"", 0o777, V),
                                ("loot/a/", "dir", b"", 0o777, "")], "below .or over. a symlink"),
    ("symlink then directory below it", [("loot", "dir", b"", 0o755, ""), ("loot/a", "sym", b"", 0o777, V),
                                         ("loot/a/sub/", "dir", b"", 0o777, "")], "below .or over. a symlink"),
    ("symlink then file below it", [("loot", "dir", b"", 0o755, ""), ("loot/a", "sym", b"", 0o777, V),
                                    ("loot/a/file", "file", b"owned\n", 0o666, "")], "below .or over. a symlink"),
    ("symlink to a file, then that file", [("loot", "dir", b"", 0o755, ""),
                                           ("loot/b", "sym", b"", 0o777, V + "/file"),
                                           ("loot/b", "file", b"owned\n", 0o666, "")], "second archive entry"),
    ("relative symlink up, then below it", [("loot", "dir", b"", 0o755, ""), ("loot/up", "sym", b"", 0o777, "../.."),
                                            ("loot/up/victim/file", "file", b"owned\n", 0o666, "")],
     "below .or over. a symlink"),
    ("symlink as the top, then below it", [("loot", "sym", b"", 0o777, V), ("loot/file", "file", b"x", 0o644, "")],
     "below .or over. a symlink"),
    ("dotdot", [("../victim/file", "file", b"owned\n", 0o666, "")], "outside the copy"),
    ("dotdot inside", [("loot", "dir", b"", 0o755, ""), ("loot/../../victim/file", "file", b"owned\n", 0o666, "")],
     "outside the copy"),
    ("dotdot directory", [("loot", "dir", b"", 0o755, ""), ("loot/../../victim/", "dir", b"", 0o777, "")],
     "outside the copy"),
    ("absolute", [(V + "/file", "file", b"owned\n", 0o666, "")], "outside the copy"),
    ("absolute directory", [(V + "/", "dir", b"", 0o777, "")], "outside the copy"),
    ("absolute second entry", [("loot", "dir", b"", 0o755, ""), (V + "/new", "file", b"x", 0o644, "")],
     "outside the copy"),
    ("hard link out of the tree", [("loot", "dir", b"", 0o755, ""), ("loot/h", "hard", b"", 0o644, V + "/file")],
     "a hard link"),
    ("hard link, relative", [("loot", "dir", b"", 0o755, ""), ("loot/h", "hard", b"", 0o644, "../victim/file")],
     "a hard link"),
    ("character device", [("loot", "dir", b"", 0o755, ""), ("loot/null", "chr", b"", 0o666, "")],
     "a character device"),
    ("block device", [("loot", "dir", b"", 0o755, ""), ("loot/sda", "blk", b"", 0o666, "")], "a block device"),
    ("fifo", [("loot", "dir", b"", 0o755, ""), ("loot/fifo", "fifo", b"", 0o666, "")], "a FIFO"),
    ("contiguous file", [("loot", "cont", b"x", 0o644, "")], "type b'7'"),
    ("a second top level", [("loot", "dir", b"", 0o755, ""), ("other", "file", b"x", 0o644, "")],
     "second top-level"),
    ("a directory over a file", [("loot", "dir", b"", 0o755, ""), ("loot/f", "file", b"x", 0o644, ""),
                                 ("loot/f", "dir", b"", 0o777, "")], "below .or over. a symlink or a file"),
    ("an entry before its directory", [("loot", "dir", b"", 0o755, ""), ("loot/no/x", "file", b"x", 0o644, "")],
     "directory came before it in no entry"),
]


@pytest.mark.parametrize("entries, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_crafted_archive_changes_nothing_outside(world, entries, words):
    _root, victim, _staging = world
    stream = b"".join(entry(name.replace(V, str(victim)), kind, data, mode, linkname=link.replace(V, str(victim)))
                      for name, kind, data, mode, link in entries) + end()
    refused(world, stream, words)


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_long_absolute_and_dotdot_names_in_extended_headers(world, fmt):
    _root, victim, _staging = world
    deep = str(victim) + "/" + "x" * 120 + "/../file"   # needs a PAX or GNU long name
    refused(world, entry(deep, "file", b"owned\n", 0o666, fmt=fmt) + end(), "outside the copy")
    link = "loot/" + "l" * 120
    stream = entry("loot", "dir", fmt=fmt) + entry(link, "sym", linkname=str(victim) + "/" + "y" * 120, fmt=fmt) \
        + entry(link + "/z", "file", b"owned\n", fmt=fmt) + end()
    refused(world, stream, "below .or over. a symlink")


def test_a_pax_path_overrides_a_harmless_header_name(world):
    _root, victim, _staging = world
    stream = entry("loot/harmless", "file", b"owned\n", pax={"path": str(victim / "file")}) + end()
    refused(world, stream, "outside the copy")
    stream = entry("loot", "dir") + entry("loot/x", "sym", linkname="y", pax={"linkpath": "a\0b"}) + end()
    refused(world, stream, "unusable target")


@pytest.mark.parametrize("stream, words", [
    # The review's spin: a negative PAX size made the CLI loop at 100% CPU.
    (entry("loot", "file", b"", pax={"size": "-1"}) + end(), "a size of -1"),
    (entry("loot", "file", b"", pax={"size": "-99999999999999999999"}) + end(), "a size of"),
    (entry("loot", "file", b"", fmt=tarfile.GNU_FORMAT, size=-1) + end(), "a size of -1"),
    (entry("loot", "file", b"", pax={"size": "1e3"}) + end(), "not a number"),
    (entry("loot", "file", b"", pax={"size": "99999999999999999999999"}) + end(), "a size of"),
    (entry("loot", "dir", b"", size=4096) + end(), "a size of 4096"),
    (entry("loot", "file", b"", pax={"mtime": "nan"}) + end(), "not a number"),
    (entry("loot", "file", b"", pax={"mtime": "inf"}) + end(), "not a number"),
    (entry("loot", "file", b"", pax={"mtime": "1e300"}) + end(), "a time of"),
    (entry("loot", "file", b"", mtime=-(1 << 45), fmt=tarfile.GNU_FORMAT) + end(), "a time of"),
    (pax_header({"path": "x"}, declared=1 << 30) + end(), "extended header of 1073741824 bytes"),
    (pax_header({"path": "x"}, declared=-5) + end(), "unusable|extended header of -5"),
    (pax_header({"path": "loot"})[:512] + b"99999 path=x\n".ljust(512, b"\0") + end(),
     "does not fit"),
    (pax_header({"path": "loot"})[:512] + b"0 path=x\n".ljust(512, b"\0") + end(), "does not fit"),
    (pax_header({"path": "loot"})[:512] + b"12345678901234567890123 path=x\n".ljust(512, b"\0") + end(),
     "unusable"),
    (entry("loot", "file", b"", pax={"path": "a" * 5000}) + end(), "unusable name"),
    (entry("loot", "file", b"", pax={"path": "lo\0ot"}) + end(), "unusable name"),
    (b"\x00" * 100 + b"garbage" * 100, "unusable"),
])
def test_numbers_and_headers_are_bounded(world, stream, words):
    refused(world, stream, words)


def test_extended_headers_do_not_accumulate(world):
    """Many large extended headers of keys the parser does not use: memory stays flat."""
    _root, _victim, staging = world
    junk = "j" * (512 << 10)
    headers = b"".join(pax_header({f"junk{i}": junk}) for i in range(48))
    tracemalloc.start()
    try:
        with pytest.raises(DebugkitError, match="ended early"):
            sink = tarsink.TarSink(staging, progress.Progress(None, enabled=False))
            try:
                for pos in range(0, len(headers), 1 << 16):
                    sink.write(headers[pos:pos + (1 << 16)])
                peak = tracemalloc.get_traced_memory()[1]
                sink.close()
            finally:
                sink.release()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes traced"


def test_entries_and_depth_are_bounded(world, monkeypatch):
    monkeypatch.setattr(tarsink, "MAX_ENTRIES", 5)
    stream = entry("loot", "dir") + b"".join(entry(f"loot/{i}", "file", b"x") for i in range(10)) + end()
    refused(world, stream, "more than 5 entries")
    monkeypatch.setattr(tarsink, "MAX_ENTRIES", 1000)
    monkeypatch.setattr(tarsink, "MAX_DEPTH", 3)
    names = ["loot", "loot/a", "loot/a/b", "loot/a/b/c", "loot/a/b/c/d"]
    refused(world, b"".join(entry(n, "dir") for n in names) + end(), "more than 3 directories deep")


def test_a_symlink_swapped_in_by_someone_else_is_not_followed(world):
    """Anyone who can write in the destination's directory (the operator's other
    processes) replaces a directory of the copy with a symlink before the modes are set:
    the modes are not set through it."""
    root, victim, staging = world
    before = snapshot(root, skip=staging)
    sink = tarsink.TarSink(staging, progress.Progress(None, enabled=False))
    try:
        sink.write(entry("loot", "dir", mode=0o755) + entry("loot/sub", "dir", mode=0o777, mtime=0) + end())
        os.rename(staging / "loot" / "sub", staging / "loot" / "moved")
        os.symlink(victim, staging / "loot" / "sub")
        with pytest.raises(DebugkitError, match="below .or over. a symlink"):
            sink.close()
    finally:
        sink.release()
    assert snapshot(root, skip=staging) == before


def test_what_is_harmless_is_written_inside_only(world):
    """Symlinks pointing anywhere are created as links (never followed), modes lose
    setuid, and the directory modes are set on the copy's own directories."""
    root, victim, staging = world
    before = snapshot(root, skip=staging)
    stream = entry("loot", "dir", mode=0o777, mtime=0) + entry("loot/a", "sym", linkname=str(victim)) \
        + entry("loot/b", "sym", linkname="../../victim/file") + entry("loot/s", "file", b"x", 0o6755) + end()
    sink = feed(staging, stream)
    assert sink.files == 1
    assert os.readlink(staging / "loot" / "a") == str(victim)
    assert stat.S_IMODE(os.lstat(staging / "loot" / "s").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(staging / "loot").st_mode) == 0o777
    assert os.lstat(staging / "loot").st_mtime == 0
    assert snapshot(root, skip=staging) == before


def test_a_pax_reader_survives_every_cut(world):
    """The same hostile stream refused whichever way it is cut into pieces."""
    _root, victim, staging = world
    stream = entry("loot", "dir") + entry("loot/a", "sym", linkname=str(victim)) + entry("loot/a/", "dir", mode=0o777)
    for pieces in (1, 511, 512, 513, 4096):
        with pytest.raises(DebugkitError, match="below .or over. a symlink"):
            feed(staging, stream + end(), pieces=pieces)
        for child in sorted(staging.rglob("*"), reverse=True):
            child.unlink() if child.is_symlink() or not child.is_dir() else child.rmdir()
    assert stat.S_IMODE(os.lstat(victim).st_mode) == 0o755


def test_io_is_relative_to_descriptors(world, monkeypatch):
    """No path-based call that could follow a link: the parser uses only *at() calls with
    a directory descriptor (checked by making the path-based ones fail)."""
    _root, _victim, staging = world

    def forbidden(*_args, **_kwargs):
        raise AssertionError("a path-based call")

    monkeypatch.setattr(os, "chmod", forbidden)
    for name in ("mkdir", "symlink", "open", "utime"):
        real = getattr(os, name)

        def checked(*args, _real=real, **kwargs):
            if "dir_fd" not in kwargs and not (args and isinstance(args[0], int)) and not (
                    _real.__name__ == "open" and os.fspath(args[0]) == os.fspath(staging)):
                raise AssertionError(f"{_real.__name__}{args} without a directory descriptor")
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, checked)
    stream = entry("loot", "dir") + entry("loot/d", "dir") + entry("loot/d/f", "file", b"data") \
        + entry("loot/l", "sym", linkname="d/f") + end()
    sink = feed(staging, stream)
    assert sink.files == 1
