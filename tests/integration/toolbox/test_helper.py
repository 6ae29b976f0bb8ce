"""debugkit-helper in both toolbox variants, on a real engine, against a real target.

The target is `debugkit-fixture/named-user`: a static Go server as PID 1 that never
reaps. Sidecars run the way debugkit's `restricted` profile runs them (65532:65532,
every capability dropped, no-new-privileges, read-only root, tmpfs /tmp) in the
target's PID and network namespaces. Zombies are counted from the host: processes in
state Z whose parent is the target's PID 1 as the host sees it.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import subprocess
import tarfile
import time
import uuid

import pytest

from tests.helpers import wait_for
from tests.integration.toolbox.helpers import RESTRICTED, SUITE_LABELS, image_members, tar_of

pytestmark = [pytest.mark.docker, pytest.mark.toolbox]

HELPER = "/usr/local/bin/debugkit-helper"
REAP_SCRIPT = "sleep 100 & sleep 300 & echo started"
# The same shape with orphans that end by themselves within seconds. Docker 29 (containerd 2.4,
# runc 1.5) does not always kill what is left in a container that shares another's PID
# namespace when its main process exits: the container then runs until its last orphan ends
# (seen: 300 s for REAP_SCRIPT, one run in three). Either way the orphans end as the target's
# zombies, which is what the unreaped run shows.
BARE_SCRIPT = "sleep 2 & sleep 3 & echo started"


@pytest.fixture(params=["full", "slim"])
def image(request, toolbox_ref, slim_ref) -> str:
    return toolbox_ref if request.param == "full" else slim_ref


@pytest.fixture
def target(started, fixture_images):
    """A fresh named-user target (so zombie counts start from its own baseline)."""
    ctr = started(fixture_images["named-user"], None, name=f"dk-tb-target-{uuid.uuid4().hex[:8]}")
    wait_for(lambda: b"listening on" in ctr.logs(), timeout=20, what="the target to listen")
    ctr.reload()
    return ctr


def sidecar_options(target) -> dict:
    return {**RESTRICTED, "pid_mode": f"container:{target.id}", "network_mode": f"container:{target.id}"}


def host_pid(ctr) -> int:
    ctr.reload()
    pid = ctr.attrs["State"]["Pid"]
    assert pid > 0, ctr.attrs["State"]
    return pid


def zombies_of(ppid: int) -> list[int]:
    """PIDs (host view) in state Z whose parent is ppid."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2:].split()
        if fields[0] == b"Z" and int(fields[1]) == ppid:
            found.append(int(entry))
    return found


def docker_run(image: str, args: list[str], *, target=None, stdin: bytes = b"", timeout: float = 120,
               extra: list[str] | None = None) -> subprocess.CompletedProcess:
    """`docker run -i --rm` with the restricted options, binary stdin and stdout (the CLI
    keeps both streams apart and byte-exact, as debugkit's own attach does)."""
    labels = [arg for k, v in SUITE_LABELS.items() for arg in ("--label", f"{k}={v}")]
    cmd = ["docker", "run", "-i", "--rm", *labels, "--user", RESTRICTED["user"], "--cap-drop", "ALL",
           "--security-opt", "no-new-privileges", "--read-only", "--tmpfs", "/tmp:rw,nosuid,nodev,size=64m"]
    if target is not None:
        cmd += ["--pid", f"container:{target.id}", "--network", f"container:{target.id}"]
    cmd += [*(extra or []), image, *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)


def file_from(ctr, path: str) -> bytes:
    """A file's bytes from a container (docker cp, nothing executed in it)."""
    chunks, _ = ctr.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
        member = tar.next()
        return tar.extractfile(member).read()


def plant(ctr, name: str, *, data: bytes = b"", mode: int = 0o644, uid: int = 0, link: str | None = None):
    """Put a file or a symlink into a running container (docker cp), owned by uid."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.uid = info.gid = uid
        info.mode = mode
        info.mtime = int(time.time())
        if link is not None:
            info.type, info.linkname = tarfile.SYMTYPE, link
            tar.addfile(info)
        else:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert ctr.put_archive("/", buf.getvalue())


def members_of(data: bytes) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            body = tar.extractfile(member).read() if member.isreg() else None
            out[member.name] = (member, body)
    return out


# --------------------------------------------------------------------------- the binary


@pytest.mark.parametrize("variant", ["full", "slim"])
def test_helper_is_static_root_owned_and_not_setuid(docker_client, toolbox_ref, slim_ref, variant):
    ref = toolbox_ref if variant == "full" else slim_ref
    ctr = docker_client.containers.create(ref, "true", labels=SUITE_LABELS)
    try:
        chunks, stat = ctr.get_archive(HELPER)
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tar:
            member = tar.next()
            elf = tar.extractfile(member).read()
    finally:
        ctr.remove(force=True)
    listed = {m.name: m for m in image_members(docker_client, ref) if m.name == HELPER.lstrip("/")}
    info = listed[HELPER.lstrip("/")]
    assert (info.uid, info.gid) == (0, 0), (info.uid, info.gid)
    assert info.mode & 0o7777 == 0o711, oct(info.mode)  # execute-only: non-dumpable from execve
    assert not info.mode & 0o6000
    assert _elf_program_header_types(elf).isdisjoint({2, 3}), "PT_DYNAMIC or PT_INTERP: not static"
    print(f"\n{variant}: debugkit-helper is {len(elf)} bytes ({len(elf) / 1e6:.2f} MB)")


def _elf_program_header_types(elf: bytes) -> set[int]:
    assert elf[:4] == b"\x7fELF" and elf[4] == 2, "not a 64-bit ELF file"
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return {struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)}


def test_helper_runs_as_65532_without_capabilities(run, image):
    # The reaper's own status, read by its child: $PPID is debugkit-helper itself.
    result = run([HELPER, "reap", "--", "sh", "-c",
                  'grep -E "^(Name|Uid|Gid|CapPrm|CapEff|NoNewPrivs):" /proc/$PPID/status; '
                  f"{HELPER} --version"], image=image)
    assert result.exit_code == 0, result
    status = dict(line.split(":\t", 1) for line in result.stdout.splitlines() if ":\t" in line)
    assert status["Name"] == "debugkit-helper", status
    assert status["Uid"].split()[:2] == ["65532", "65532"] and status["Gid"].split()[0] == "65532", status
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, status
    assert status["NoNewPrivs"].strip() == "1", status
    assert re.search(r"^debugkit-helper \S+ \(go1\.19", result.stdout, re.MULTILINE), result


# --------------------------------------------------------------------------- reap


def test_reap_leaves_no_zombie_in_the_target(run, image, target):
    pid1 = host_pid(target)
    before = len(zombies_of(pid1))
    result = run([HELPER, "reap", "--", "sh", "-c", REAP_SCRIPT], image=image, **sidecar_options(target))
    assert result.exit_code == 0 and result.stdout.strip() == "started", result
    time.sleep(1)  # what the sidecar left would have been reparented to the target by now
    assert len(zombies_of(pid1)) == before

    # The same command without the reaper: its two orphans end as the target's zombies.
    bare = run(["sh", "-c", BARE_SCRIPT], image=image, **sidecar_options(target))
    assert bare.exit_code == 0 and bare.stdout.strip() == "started", bare
    wait_for(lambda: len(zombies_of(pid1)) == before + 2, timeout=20, what="the target's two new zombies")

    # debugkit-helper zombies, inside the sidecar, sees the same two.
    listed = run([HELPER, "zombies"], image=image, **sidecar_options(target))
    assert listed.exit_code == 0, listed
    lines = listed.stdout.splitlines()
    assert lines[0] == f"zombies: {before + 2}", listed
    # Each with its PID and name (the slim toolbox's shell runs `sleep` as a builtin in a fork,
    # so its zombies carry the shell's name, not sleep's).
    assert sum(1 for line in lines[1:] if re.fullmatch(r"\d+ \S+", line)) >= 2, listed


def test_reap_exit_codes(run, image):
    script = (
        f"h={HELPER}; "
        "for c in 'exit 0' 'exit 3' 'exit 42' 'kill -INT $$' 'kill -TERM $$'; do $h reap -- sh -c \"$c\"; echo \"rc=$?\"; done; "
        "$h reap -- no-such-command; echo \"rc=$?\"; "
        "$h reap -- /etc/passwd; echo \"rc=$?\"; "
        "$h reap -- sh -c 'sleep 100 & exit 7'; echo \"rc=$?\""
    )
    result = run(["sh", "-c", script], image=image)
    codes = re.findall(r"rc=(\d+)", result.stdout)
    assert codes == ["0", "3", "42", "130", "143", "127", "126", "7"], result
    errors = result.stderr.splitlines()
    assert errors == ["debugkit-helper: no-such-command: command not found",
                      "debugkit-helper: /etc/passwd: permission denied (not executable)"], result


def test_docker_kill_term_ends_the_tree_through_the_reaper(started, image, target):
    pid1 = host_pid(target)
    before = len(zombies_of(pid1))
    sidecar = started(image, [HELPER, "reap", "--", "sh", "-c", REAP_SCRIPT + "; wait"], **sidecar_options(target))
    wait_for(lambda: b"started" in sidecar.logs(), timeout=30, what="the sidecar's command to start")
    sidecar.kill(signal="SIGTERM")
    status = sidecar.wait(timeout=30)
    assert status["StatusCode"] == 143, (status, sidecar.logs())
    time.sleep(1)
    assert len(zombies_of(pid1)) == before


def test_reap_as_pid_1_of_its_own_container(started, image):
    # PID 1 only gets the signals it has a handler for: docker stop's SIGTERM must reach
    # CMD at once (not the SIGKILL after stop's timeout: that would be 137 after 30 s).
    ctr = started(image, [HELPER, "reap", "--", "sh", "-c", "echo started; sleep 100 & sleep 200 & wait"],
                  **RESTRICTED)
    wait_for(lambda: b"started" in ctr.logs(), timeout=30, what="the command to start")
    top = ctr.top(ps_args="-o pid,ppid,comm")["Processes"]
    assert len(top) == 4, top  # the reaper, sh and the two sleeps
    began = time.monotonic()
    ctr.stop(timeout=30)
    assert ctr.wait(timeout=60)["StatusCode"] == 143
    assert time.monotonic() - began < 20


def docker_exec(ctr, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", ctr.id, *args], capture_output=True, timeout=timeout)


def test_reap_in_docker_exec_into_a_keepalive_sidecar(started, image, target):
    pid1 = host_pid(target)
    before = len(zombies_of(pid1))
    name = f"debugkit-test-{uuid.uuid4().hex[:8]}"
    # --idle 1, not 0: a container that stops while `docker exec` is still being
    # completed has been seen to leave the exec hanging on this engine (see the report
    # of the helper-binary branch); the --idle 0 behaviour is tested in one container.
    sidecar = started(image, [HELPER, "keepalive", "--socket", name, "--idle", "1", "--first", "120"],
                      **sidecar_options(target))
    wait_for(lambda: sidecar.reload() or sidecar.status == "running", timeout=20, what="the keepalive")

    # Without the reaper, what an exec leaves behind is reparented to the target's PID 1
    # (the engine's shim is outside the namespace) and ends there as a zombie.
    bare = docker_exec(sidecar, ["sh", "-c", "sleep 1 & sleep 1 & echo started"])
    assert bare.returncode == 0 and bare.stdout.strip() == b"started", bare
    wait_for(lambda: len(zombies_of(pid1)) == before + 2, timeout=20, what="two zombies from the bare exec")

    reaped = docker_exec(sidecar, [HELPER, "reap", "--hold", name, "--", "sh", "-c", REAP_SCRIPT])
    assert reaped.returncode == 0 and reaped.stdout.strip() == b"started", reaped
    time.sleep(1)
    assert len(zombies_of(pid1)) == before + 2, "the reaped exec added zombies"
    # The reaper's --hold connection was the keepalive's first; a second after it closed,
    # the keepalive ends the sidecar.
    assert sidecar.wait(timeout=30)["StatusCode"] == 0
    assert sidecar.logs() == b"", "keepalive must write nothing"


# --------------------------------------------------------------------------- keepalive


def test_keepalive_idle_expiry_and_first(run, image):
    started_at = time.monotonic()
    result = run([HELPER, "keepalive", "--socket", f"dk-{uuid.uuid4().hex[:8]}", "--idle", "1"], image=image)
    elapsed = time.monotonic() - started_at
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == "", result
    assert elapsed < 30, elapsed
    # A connection keeps it; --idle seconds after the last one closed, it exits (well
    # before --first, which only applies while no connection has come yet).
    script = (f"{HELPER} keepalive --socket k --idle 1 --first 60 & k=$!; sleep 1; "
              f"{HELPER} reap --hold k -- sleep 2; "
              "kill -0 $k && echo alive-after-hold; wait $k; echo keepalive-rc=$?")
    started_at = time.monotonic()
    result = run(["sh", "-c", script], image=image)
    elapsed = time.monotonic() - started_at
    assert "alive-after-hold" in result.stdout and "keepalive-rc=0" in result.stdout, result
    assert elapsed < 30, f"took {elapsed:.1f}s: the hold did not count as a connection"


def test_keepalive_idle_zero_ends_with_the_last_hold(run, image):
    # Two overlapping holds: it stays while either runs, and exits as the last one ends.
    script = (f"{HELPER} keepalive --socket k --idle 0 --first 60 & k=$!; sleep 1; "
              f"{HELPER} reap --hold k -- sleep 3 & a=$!; sleep 1; "
              f"{HELPER} reap --hold k -- sleep 1; "
              "kill -0 $k && echo alive-while-first-holds; wait $a; "
              "for i in $(seq 50); do kill -0 $k 2>/dev/null || break; sleep 0.1; done; "
              "kill -0 $k 2>/dev/null && echo still-running; wait $k; echo keepalive-rc=$?")
    result = run(["sh", "-c", script], image=image)
    assert result.exit_code == 0, result
    assert result.stdout.split() == ["alive-while-first-holds", "keepalive-rc=0"], result


def test_keepalive_exits_on_stdin_eof(image):
    proc = subprocess.Popen(
        ["docker", "run", "-i", "--rm", *[a for k, v in SUITE_LABELS.items() for a in ("--label", f"{k}={v}")],
         "--user", "65532:65532", "--cap-drop", "ALL", "--read-only", image,
         HELPER, "keepalive", "--socket", f"dk-{uuid.uuid4().hex[:8]}", "--stdin", "--idle", "300"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(2)
        assert proc.poll() is None, proc.communicate()
        out, err = proc.communicate(input=b"", timeout=60)  # closes stdin
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and out == b"", (proc.returncode, out, err)


# --------------------------------------------------------------------------- tar-out, stat


def test_tar_out_of_the_targets_files_as_65532(image, target):
    result = docker_run(image, [HELPER, "tar-out", "/server"], target=target)
    assert result.returncode == 0, result.stderr
    members = members_of(result.stdout)
    info, body = members["server"]
    expected = file_from(target, "/server")
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert info.mode & 0o777 == 0o755 and info.uid == 0

    home = docker_run(image, [HELPER, "tar-out", "/home/nonroot"], target=target)
    assert home.returncode == 0, home.stderr
    members = members_of(home.stdout)
    assert members["nonroot"][0].isdir() and members["nonroot"][0].uid == 65532
    secret, body = members["nonroot/secret.txt"]
    assert body == file_from(target, "/home/nonroot/secret.txt")
    assert secret.uid == 65532 and secret.mode & 0o777 == 0o600


def test_tar_out_permission_denied_and_missing(image, target):
    plant(target, "root-only.txt", data=b"for root\n", mode=0o600, uid=0)
    denied = docker_run(image, [HELPER, "tar-out", "/root-only.txt"], target=target)
    assert denied.returncode == 3 and denied.stdout == b"", denied
    assert denied.stderr.decode() == "debugkit-helper: /root-only.txt: permission denied\n"
    missing = docker_run(image, [HELPER, "tar-out", "/no/such/file"], target=target)
    assert missing.returncode == 2 and missing.stderr.decode().startswith("debugkit-helper: /no/such/file: not found")


def test_symlinks_resolve_inside_the_targets_root(image, target):
    plant(target, "link-passwd", link="/etc/passwd")
    targets_passwd = file_from(target, "/etc/passwd")
    assert b"/sbin/nologin" in targets_passwd

    stored = docker_run(image, [HELPER, "tar-out", "/link-passwd"], target=target)
    assert stored.returncode == 0, stored.stderr
    info, _ = members_of(stored.stdout)["link-passwd"]
    assert info.issym() and info.linkname == "/etc/passwd"

    followed = docker_run(image, [HELPER, "tar-out", "--follow", "/link-passwd"], target=target)
    assert followed.returncode == 0, followed.stderr
    info, body = members_of(followed.stdout)["link-passwd"]
    # The target's passwd, not the sidecar's (whose nonroot has a real shell).
    assert info.isreg() and body == targets_passwd
    sidecars_passwd = docker_run(image, ["cat", "/etc/passwd"]).stdout
    assert sidecars_passwd != targets_passwd and b"nonroot:x:65532" in sidecars_passwd

    stat = docker_run(image, [HELPER, "stat", "/link-passwd"], target=target)
    assert stat.returncode == 0
    assert stat.stdout.decode().startswith('{"path":"/link-passwd","exists":true,"type":"symlink",')
    assert stat.stdout.decode().rstrip().endswith('"link":"/etc/passwd"}')
    stat = docker_run(image, [HELPER, "stat", "--follow", "/link-passwd"], target=target)
    assert f'"size":{len(targets_passwd)},' in stat.stdout.decode(), stat


def test_tar_in_writes_into_the_targets_root(image, target):
    archive = tar_of({"copied/notes.txt": b"from the sidecar\n"}, mode=0o640)
    result = docker_run(image, [HELPER, "tar-in", "/home/nonroot"], target=target, stdin=archive)
    assert result.returncode == 0 and result.stdout == b"", result
    assert file_from(target, "/home/nonroot/copied/notes.txt") == b"from the sidecar\n"
    stat = docker_run(image, [HELPER, "stat", "/home/nonroot/copied/notes.txt"], target=target)
    assert '"mode":"0640"' in stat.stdout.decode() and '"uid":65532' in stat.stdout.decode(), stat
    again = docker_run(image, [HELPER, "tar-in", "/home/nonroot"], target=target, stdin=archive)
    assert again.returncode == 5, again
    assert again.stderr.decode() == "debugkit-helper: exists: copied/notes.txt\n"
    # The sidecar's user cannot write to the target's /etc (root's).
    denied = docker_run(image, [HELPER, "tar-in", "/etc"], target=target, stdin=tar_of({"x": b"x"}))
    assert denied.returncode == 3, denied


# --------------------------------------------------------------------------- relay


def test_relay_to_the_targets_port(image, target):
    result = docker_run(image, [HELPER, "relay", "8080"], target=target,
                        stdin=b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    assert result.returncode == 0, result.stderr
    assert b"200 OK" in result.stdout and b"hello from debugkit fixture" in result.stdout, result.stdout
    refused = docker_run(image, [HELPER, "relay", "8081"], target=target)
    assert refused.returncode == 2
    assert refused.stderr.decode() == (
        "debugkit-helper: nothing is listening on 127.0.0.1:8081 (connection refused)\n")

