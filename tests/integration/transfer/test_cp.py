"""`debugkit cp` on Docker, Podman and Kubernetes: out of a distroless target, into it with
--write, as the target's own user; errors, interruptions and symlinks."""
from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import audit_records, wait_for
from tests.fixtures.transfer.image import MTIME
from tests.integration.transfer.helpers import sha256_file, tree_of_local, tree_of_tar

pytestmark = pytest.mark.transfer


def one_line(result) -> str:
    err = result.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err


def left_behind(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- out of the target -------------------------------------------------------------------------------------


def test_binary_and_tree_match_the_image(shared, image_archive, out):
    result = shared.cli("cp", "--checksum", shared.spec("/server"), str(out / "server"))
    assert result.returncode == 0, result.stderr
    expected = tree_of_tar(image_archive("/server"))["."]
    assert tree_of_local(out / "server")["."] == expected
    assert result.stdout.decode() == f"{expected[3]}  server\n"

    result = shared.cli("cp", "--checksum", shared.spec("/data"), str(out))
    assert result.returncode == 0, result.stderr
    image = tree_of_tar(image_archive("/data"))
    ours = tree_of_local(out / "data")
    # Files, directories (modes, mtimes) and symlinks (as links, with their own text) alike.
    assert ours == image
    assert ours["passwd-link"] == ("link", None, MTIME, "/etc/passwd")
    assert ours["private"][1] == 0o700 and ours["bin/tool"][1] == 0o755
    printed = dict(reversed(line.split("  ", 1)) for line in result.stdout.decode().splitlines())
    assert printed == {f"data/{rel}": entry[3] for rel, entry in image.items() if entry[0] == "file"}
    assert left_behind(out) == ["data", "server"]


def test_a_directory_into_an_existing_directory_and_onto_a_file(shared, out):
    (out / "file").write_text("x")
    onto_file = shared.cli("cp", shared.spec("/data/nested"), str(out / "file"))
    assert onto_file.returncode == ExitCode.NOT_A_DIRECTORY, onto_file.stderr
    assert "is a directory" in one_line(onto_file)
    into = shared.cli("cp", shared.spec("/data/nested"), str(out))
    assert into.returncode == 0, into.stderr
    assert (out / "nested/a/b/c/deep.txt").read_bytes() == b"deep\n" * 1000
    again = shared.cli("cp", shared.spec("/data/nested"), str(out))
    assert again.returncode == ExitCode.DESTINATION_EXISTS, again.stderr
    assert "--force" in one_line(again)
    (out / "nested" / "stale").write_text("old")
    forced = shared.cli("cp", "--force", shared.spec("/data/nested"), str(out))
    assert forced.returncode == 0, forced.stderr
    assert not (out / "nested" / "stale").exists()  # replaced, not merged
    assert left_behind(out) == ["file", "nested"]


def test_the_whole_filesystem(rt, out):
    """A copy of / (the target's root, here one with nothing its user cannot read): /proc and
    /sys come empty, devices are left out, and the warnings say so in two lines."""
    target = rt.target(image=rt.fixture_image)
    result = target.cli("cp", "--checksum", target.spec("/"), str(out / "root"))
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if line.startswith("debugkit: warning:")]
    assert len(warnings) == 2 and "/proc (proc), /sys (sysfs)" in warnings[1], err
    assert "/dev/null" in warnings[0], err
    root = out / "root"
    assert sorted(p.name for p in (root / "proc").iterdir()) == [] and (root / "sys").is_dir()
    assert (root / "home/nonroot/secret.txt").read_text().startswith("only nonroot")
    assert tree_of_local(root / "server")["."][3] == hashlib.sha256((root / "server").read_bytes()).hexdigest()
    assert "  root/server" in result.stdout.decode()


def test_errors_are_one_line_with_their_own_exit_code(shared, out):
    missing = shared.cli("cp", shared.spec("/no/such/file"), str(out))
    assert missing.returncode == ExitCode.PATH_NOT_FOUND
    assert "/no/such/file" in one_line(missing)
    (out / "readme.txt").write_text("mine")
    exists = shared.cli("cp", shared.spec("/data/readme.txt"), str(out))
    assert exists.returncode == ExitCode.DESTINATION_EXISTS
    assert "--force" in one_line(exists)
    assert (out / "readme.txt").read_text() == "mine"
    # A source that does not exist is what is said, whatever the destination.
    missing_onto = shared.cli("cp", shared.spec("/nope/readme.txt"), str(out))
    assert missing_onto.returncode == ExitCode.PATH_NOT_FOUND and "/nope/readme.txt" in one_line(missing_onto)
    forced = shared.cli("cp", "--force", shared.spec("/data/readme.txt"), str(out))
    assert forced.returncode == 0 and (out / "readme.txt").read_text() == "a readme\n"
    no_parent = shared.cli("cp", shared.spec("/data/readme.txt"), str(out / "nope" / "x"))
    assert no_parent.returncode == ExitCode.PATH_NOT_FOUND
    one_line(no_parent)
    both_local = shared.cli("cp", "./a", "./b")
    assert both_local.returncode == ExitCode.INVALID_INPUT
    one_line(both_local)
    assert left_behind(out) == ["readme.txt"]


def test_a_file_the_target_user_cannot_read(shared, out):
    """Exit 82, one line that says who cannot read it and which profile could."""
    root_only = shared.cli("cp", shared.spec("/locked/root-only.txt"), str(out))
    assert root_only.returncode == ExitCode.PATH_FORBIDDEN
    line = one_line(root_only)
    assert "the target's user (65532:65532) cannot read /locked/root-only.txt" in line, line
    assert "(owner 0:0, mode 0600)" in line and "--profile ptrace" in line, line
    other = shared.cli("cp", shared.spec("/locked/other-user.txt"), str(out))
    assert other.returncode == ExitCode.PATH_FORBIDDEN
    line = one_line(other)
    assert "(owner 1234:1234, mode 0600)" in line and "--profile sysadmin" in line, line
    # A directory with one such file is refused as a whole, naming the first one.
    tree = shared.cli("cp", shared.spec("/locked"), str(out))
    assert tree.returncode == ExitCode.PATH_FORBIDDEN
    assert "cannot read /locked/other-user.txt" in one_line(tree)
    assert left_behind(out) == []


def test_the_profile_named_in_the_hint_can_read_it(docker_rt, out):
    """What the hints say is true (Docker: the profiles that run as root need no namespace
    level; Kubernetes' restricted namespaces refuse them)."""
    target = docker_rt.target()
    ptrace = target.cli("cp", "--profile", "ptrace", target.spec("/locked/root-only.txt"), str(out))
    assert ptrace.returncode == 0, ptrace.stderr
    assert (out / "root-only.txt").read_text() == "only root may read this\n"
    still = target.cli("cp", "--profile", "ptrace", target.spec("/locked/other-user.txt"), str(out))
    assert still.returncode == ExitCode.PATH_FORBIDDEN
    line = one_line(still)
    assert "the sidecar (root, --profile ptrace) cannot read" in line and "--profile sysadmin" in line, line
    # (sysadmin, a privileged container, cannot start on the test machines: root there
    # lacks capabilities a privileged container asks for.)


def test_from_sidecar_reads_the_sidecar(shared, out, rt):
    """--from-sidecar: the sidecar's own files (its static curl, here), not the target's.
    (Not the helper: it is execute-only, so that its process is never dumpable.)"""
    result = shared.cli("cp", "--from-sidecar", shared.spec("/usr/local/bin/curl"), str(out))
    assert result.returncode == 0, result.stderr
    assert (out / "curl").stat().st_size > 1 << 20
    in_target = shared.cli("cp", shared.spec("/usr/local/bin/curl"), str(out / "x"))
    assert in_target.returncode == ExitCode.PATH_NOT_FOUND
    if rt.name != "kubernetes":
        # The capture use case: a file the sidecar wrote to its /tmp (a tmpfs on Docker and Podman).
        # One sidecar for both steps, the way a person does it: --keep-alive.
        keep = ("--keep-alive", "1m")
        wrote = shared.cli("attach", *keep, shared.ref, "--", "sh", "-c", "echo capture > /tmp/capture.pcap")
        assert wrote.returncode == 0, wrote.stderr
        got = shared.cli("cp", *keep, "--from-sidecar", shared.spec("/tmp/capture.pcap"), str(out))
        assert got.returncode == 0, got.stderr
        assert (out / "capture.pcap").read_text() == "capture\n"


def test_from_sidecar_on_kubernetes_takes_a_volume(rt, out, tmp_path):
    """A debug container's root is read-only and has no /tmp of its own: a capture goes to a
    volume of the pod, mounted with --custom (the same --custom reuses the same container)."""
    if rt.name != "kubernetes":
        pytest.skip("Docker and Podman sidecars have a tmpfs /tmp (tested above)")
    target = rt.target(volumes=[{"name": "scratch", "emptyDir": {"sizeLimit": "64Mi"}}])
    custom = tmp_path / "scratch.yaml"
    custom.write_text("volumeMounts: [{name: scratch, mountPath: /tmp}]\n")
    plain = target.cli("attach", target.ref, "--", "sh", "-c", "echo capture > /tmp/capture.pcap")
    assert plain.returncode != 0 and b"Read-only file system" in plain.stderr, plain.stderr
    wrote = target.cli("attach", "--custom", str(custom), target.ref, "--", "sh", "-c",
                       "echo capture > /tmp/capture.pcap")
    assert wrote.returncode == 0, wrote.stderr
    got = target.cli("cp", "--custom", str(custom), "--from-sidecar", target.spec("/tmp/capture.pcap"), str(out))
    assert got.returncode == 0, got.stderr
    assert (out / "capture.pcap").read_text() == "capture\n"


def test_the_audit_log_records_a_copy_but_not_its_bytes(shared, out, audit_log):
    result = shared.cli("cp", shared.spec("/home/nonroot/secret.txt"), str(out))
    assert result.returncode == 0, result.stderr
    records = audit_records(audit_log)
    events = [r["event"] for r in records]
    assert events in (["start", "created", "end"], ["start", "end"]), events  # Kubernetes: no container ID
    start, end = records[0], records[-1]
    assert start["mode"] == "cp" and start["cp"] == {"direction": "out", "remote_path": "/home/nonroot/secret.txt",
                                                     "local_path": str(out), "from_sidecar": False}
    assert start["sidecar_user"] == "65532:65532" and start["privileges"]["cap_add"] == []
    assert (end["exit_code"], end["outcome"]) == (0, "closed")
    assert b"only nonroot" not in audit_log.read_bytes()
    refused = shared.cli("cp", str(out / "secret.txt"), shared.spec("/home/nonroot/again.txt"))
    assert refused.returncode == ExitCode.INVALID_INPUT
    assert audit_records(audit_log)[-1]["outcome"] == "refused"


# -- large files: streaming, interruption ------------------------------------------------------------------


def test_interrupted_copy_leaves_nothing(fresh, rt, out):
    fresh.sh("truncate -s 1G /proc/1/root/home/nonroot/big")
    extra = ("--keep-alive", "0") if rt.name == "kubernetes" else ()
    proc = fresh.popen("cp", *extra, fresh.spec("/home/nonroot/big"), str(out))

    def staged():
        for path in out.rglob("*"):
            if path.is_file() and path.stat().st_size > 16 << 20:
                return path
        return None

    try:
        wait_for(lambda: staged() or proc.poll() is not None, timeout=120, interval=0.01,
                 what="the copy to be under way")
        assert proc.poll() is None, "the copy ended before it could be interrupted: make the file larger"
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode(errors="replace")
    assert code == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err
    assert left_behind(out) == []  # no partial file, no staging directory
    wait_for(lambda: not fresh.sidecars(), timeout=60, what="the sidecar to end")


# What a compromised target does: its processes run as the sidecar's user, so it looks
# for the helper that writes the copy and opens that process's stdout, to write an archive
# of its own into it. A control: the same open of a process of its own (a dumpable one)
# succeeds, so a refusal is the helper's doing.
HIJACK = r"""
sleep 120 | cat >/dev/null &
control=$(pgrep -n -x sleep)
( exec 3>>"/proc/$control/fd/1" ) 2>/dev/null && echo "control opened" || echo "control denied"
h=/usr/local/bin/debugkit-helper; t=tar-; t="${t}out"  # (this script's own text must not match)
seen=0; i=0
while [ $i -lt 3000 ] && [ $seen -lt 20 ]; do
  for p in /proc/[0-9]*; do
    case "$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null)" in
      "$h $t "*|"$h reap "*"-- $h $t "*)   # tar-out, and its reaper: both hold the copy's stdout
        seen=$((seen + 1))
        if ( exec 3>>"$p/fd/1" ) 2>/dev/null; then echo "helper opened ${p#/proc/}"; else echo "helper denied"; fi;;
    esac
  done
  i=$((i + 1))
done
kill %1 2>/dev/null
"""


def test_a_target_cannot_write_into_the_helpers_output(docker_rt, out):
    """issue 27, 3.1: the helper is not dumpable, so a process of the target's user cannot
    open its stdout (the review reproduced a chmod of the operator's directory that way)."""
    target = docker_rt.target()
    target.sh("truncate -s 1G /proc/1/root/home/nonroot/big")
    attacker = target.popen("attach", target.ref, "--", "sh", "-c", HIJACK)
    try:
        time.sleep(1)  # the attacker is looking before the copy starts
        copied = target.cli("cp", target.spec("/home/nonroot/big"), str(out))
        seen = attacker.communicate(timeout=120)[0].decode()
    finally:
        if attacker.poll() is None:
            attacker.kill()
            attacker.wait()
    assert copied.returncode == 0, copied.stderr
    assert (out / "big").stat().st_size == 1 << 30
    lines = seen.splitlines()
    assert lines[0] == "control opened", seen  # the method works on a dumpable process
    assert "helper denied" in lines, seen      # it saw the helper at work
    assert not [line for line in lines if line.startswith("helper opened")], seen


def test_interrupted_copy_into_the_target_leaves_nothing(fresh, rt, out):
    big = out / "big"
    with open(big, "wb") as fh:
        fh.truncate(1 << 30)
    extra = ("--keep-alive", "0") if rt.name == "kubernetes" else ()
    proc = fresh.popen("cp", "--write", *extra, str(big), fresh.spec("/home/nonroot/"))

    def writing():
        out = fresh.sh("ls -a /proc/1/root/home/nonroot")
        return ".debugkit-helper-" in out

    try:
        wait_for(lambda: writing() or proc.poll() is not None, timeout=120, interval=0.2,
                 what="the copy to be under way")
        if proc.poll() is not None:
            raise AssertionError(f"the copy ended ({proc.returncode}) before it could be interrupted: "
                                 f"{proc.stderr.read().decode(errors='replace')}")
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read().decode(errors="replace")
    assert code == ExitCode.INTERRUPTED, err
    wait_for(lambda: fresh.sh("ls -a /proc/1/root/home/nonroot").split() == [".", "..", "secret.txt"],
             timeout=30, what="nothing half-written in the target")


# -- into the target -----------------------------------------------------------------------------------------


def test_write_needs_the_flag_and_writes_as_the_target_user(shared, out, audit_log):
    local = out / "fix.json"
    local.write_text('{"fixed": true}\n')
    local.chmod(0o640)
    os.utime(local, (MTIME, MTIME))
    refused = shared.cli("cp", str(local), shared.spec("/home/nonroot/fix.json"))
    assert refused.returncode == ExitCode.INVALID_INPUT
    assert "--write" in one_line(refused)
    assert "fix.json" not in shared.sh("ls /proc/1/root/home/nonroot")
    written = shared.cli("cp", "--write", "--checksum", str(local), shared.spec("/home/nonroot/fix.json"))
    assert written.returncode == 0, written.stderr
    assert written.stdout.decode() == f"{sha256_file(local)}  fix.json\n"
    info = shared.sh("cd /proc/1/root/home/nonroot && stat -c '%u:%g %a %Y' fix.json && sha256sum fix.json")
    owner, digest = info.splitlines()
    assert owner == f"65532:65532 640 {MTIME}"
    assert digest.split()[0] == sha256_file(local)
    again = shared.cli("cp", "--write", str(local), shared.spec("/home/nonroot/fix.json"))
    assert again.returncode == ExitCode.DESTINATION_EXISTS and "--force" in one_line(again)
    # A directory, recursively; where the target's user may not write: 82.
    tree = out / "conf.d"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "a.conf").write_text("a=1\n")
    (tree / "sub").chmod(0o750)
    assert shared.cli("cp", "--write", str(tree), shared.spec("/home/nonroot")).returncode == 0
    assert shared.sh("stat -c '%u:%g %a' /proc/1/root/home/nonroot/conf.d/sub "
                     "/proc/1/root/home/nonroot/conf.d/sub/a.conf").split("\n")[:2] == ["65532:65532 750",
                                                                                        "65532:65532 644"]
    denied = shared.cli("cp", "--write", str(local), shared.spec("/etc/"))
    assert denied.returncode == ExitCode.PATH_FORBIDDEN
    assert "cannot write" in one_line(denied)
    onto_file = shared.cli("cp", "--write", str(tree), shared.spec("/data/readme.txt"))
    assert onto_file.returncode == ExitCode.NOT_A_DIRECTORY
    one_line(onto_file)


# -- symlinks and escapes ------------------------------------------------------------------------------------


def test_symlinks_are_copied_as_links_and_never_followed_out(shared, out):
    link = shared.cli("cp", shared.spec("/data/passwd-link"), str(out / "l"))
    assert link.returncode == 0, link.stderr
    assert os.readlink(out / "l") == "/etc/passwd"
    # A path through a symlink resolves inside the target's root: /data/dir-link is the
    # target's /etc, and the sidecar's /usr/local/bin (where the helper is) is not there.
    through = shared.cli("cp", shared.spec("/data/dir-link/passwd"), str(out / "passwd"))
    assert through.returncode == 0, through.stderr
    assert (out / "passwd").read_bytes() == (Path(__file__).parents[2] / "fixtures/targets/passwd").read_bytes()
    for escape in ("/data/abs-bin/debugkit-helper", "/data/up-bin/debugkit-helper", "/proc/1/root/etc/hostname"):
        result = shared.cli("cp", shared.spec(escape), str(out / "escaped"))
        assert result.returncode in (ExitCode.PATH_NOT_FOUND, ExitCode.NOT_A_DIRECTORY), (escape, result.stderr)
        one_line(result)
    assert not (out / "escaped").exists()
    # Writing: through a symlink to a directory outside the target? Not found in the target.
    local = out / "payload"
    local.write_text("payload\n")
    into_link = shared.cli("cp", "--write", str(local), shared.spec("/data/abs-bin/"))
    assert into_link.returncode == ExitCode.PATH_NOT_FOUND, into_link.stderr
    # Onto a symlink to a file: the link itself is replaced (with --force), never written through.
    onto = shared.cli("cp", "--write", str(local), shared.spec("/home/nonroot/p-link"))
    assert onto.returncode == 0, onto.stderr
    shared.sh("ln -sf /etc/passwd /proc/1/root/home/nonroot/p-link")
    kept = shared.cli("cp", "--write", str(local), shared.spec("/home/nonroot/p-link"))
    assert kept.returncode == ExitCode.DESTINATION_EXISTS, kept.stderr
    forced = shared.cli("cp", "--write", "--force", str(local), shared.spec("/home/nonroot/p-link"))
    assert forced.returncode == 0, forced.stderr
    assert shared.sh("cd /proc/1/root && stat -c %F home/nonroot/p-link && cat home/nonroot/p-link && "
                     "head -1 etc/passwd") == "regular file\npayload\nroot:x:0:0:root:/root:/sbin/nologin\n"


def test_a_crafted_archive_writes_nothing_outside(shared, out):
    """The helper that cp --write runs, fed an archive that tries every way out."""
    def archive(*entries):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, kind, data in entries:
                info = tarfile.TarInfo(name)
                if kind == "sym":
                    info.type, info.linkname = tarfile.SYMTYPE, data
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    attempts = {
        "dotdot": archive(("../escaped-dotdot", "file", b"x")),
        "absolute": archive(("/home/nonroot/escaped-absolute", "file", b"x")),
        "via-link": archive(("out", "sym", "/home/nonroot"), ("out/escaped-link", "file", b"x")),
        "via-rel-link": archive(("up", "sym", "../.."), ("up/home/nonroot/escaped-rel", "file", b"x")),
    }
    shared.sh("mkdir -p /proc/1/root/home/nonroot/jail")
    for name, data in attempts.items():
        result = shared.cli("attach", "-i", shared.ref, "--", "debugkit-helper", "tar-in",
                            "/home/nonroot/jail", input=data)
        assert result.returncode != 0, (name, result.stderr)
    listing = shared.sh("cd /proc/1/root/home/nonroot && find . -name 'escaped*'; ls -a jail")
    assert "escaped" not in listing.split("jail")[0], listing


# -- terminal progress -----------------------------------------------------------------------------------------


def test_progress_on_a_terminal(docker_rt, out):
    from tests.helpers import Pty

    target = docker_rt.target()
    target.sh("truncate -s 300M /proc/1/root/home/nonroot/big")
    term = Pty(["cp", target.spec("/home/nonroot/big"), str(out)])
    try:
        screen = term.expect(b"copied 1 file(s)", timeout=120)
        assert term.proc.wait(timeout=30) == 0
    finally:
        term.close()
    assert b"MiB of 300.0 MiB" in screen and b"/s)" in screen, screen[-500:]
    assert (out / "big").stat().st_size == 300 << 20
