"""End-to-end: the real CLI against real distroless-style targets on a real engine."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile

import docker
import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import leaked_sidecars, run_cli, text, wait_for

pytestmark = pytest.mark.docker

STATUS_IDS = "grep -E '^(Uid|Gid|Groups):' /proc/self/status; echo ===; grep -E '^(Uid|Gid|Groups):' /proc/1/status"


def _ids(block: str) -> dict[str, list[str]]:
    return {k: v.split() for k, v in re.findall(r"^(Uid|Gid|Groups):\s*(.*)$", block, re.M)}


@pytest.mark.parametrize("kind,expected", [
    ("named-user", ("65532", "65532")),
    ("numeric-user", ("10001", "0")),     # bare numeric USER: the runtime gives GID 0
    ("drops-privs", ("65532", "65532")),  # configured as root, runs as 65532
])
def test_sidecar_runs_as_the_targets_real_identity(start_target, toolbox_image, kind, expected):
    target = start_target(kind)
    result = run_cli("attach", target.name, "--", "sh", "-c", STATUS_IDS)
    out, errout = text(result)
    assert result.returncode == 0, errout
    mine, theirs = (_ids(part) for part in out.split("==="))
    assert mine["Uid"] == theirs["Uid"] and mine["Gid"] == theirs["Gid"], out
    assert set(mine["Groups"]) == set(theirs["Groups"]), out
    assert (mine["Uid"][1], mine["Gid"][1]) == expected

    info = json.loads(run_cli("inspect", target.name, "-o", "json").stdout)
    assert (info["uid"], info["gid"]) == tuple(int(x) for x in expected)
    assert info["source"] == "process"
    assert info["has_shell"] is False


def test_inspect_reports_every_source(start_target):
    target = start_target("drops-privs")
    result = run_cli("inspect", target.name, "-o", "json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    by_source = {s["source"]: s for s in info["sources"]}
    assert (by_source["process"]["uid"], by_source["config"]["uid"]) == (65532, 0)
    assert info["target_dumpable"] is False
    assert "--pid container:" in info["attach_command"] and "--cap-drop ALL" in info["attach_command"]
    for fmt, probe in (("yaml", "uid: 65532"), ("text", "source:")):
        rendered = run_cli("inspect", target.name, "-o", fmt)
        assert rendered.returncode == 0 and probe in rendered.stdout.decode()


def test_target_filesystem_is_readable_without_privileges(start_target, toolbox_image):
    target = start_target("named-user")
    result = run_cli("attach", target.name, "--", "sh", "-c",
                     'cat "$DEBUGKIT_TARGET_ROOT/home/nonroot/secret.txt"; ls /proc/1/root/server')
    out, errout = text(result)
    assert result.returncode == 0, errout
    assert "only nonroot can read this" in out and "/proc/1/root/server" in out


def test_sidecar_has_no_privileges(start_target, toolbox_image):
    target = start_target("named-user")
    script = ("grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status; "
              "touch /rootfs-write 2>/dev/null && echo ROOT-WRITABLE; touch /tmp/ok && echo TMP-WRITABLE")
    out, errout = text(run_cli("attach", target.name, "--", "sh", "-c", script))
    fields = dict(re.findall(r"^(\w+):\s*(\S+)$", out, re.M))
    assert fields["CapEff"] == fields["CapPrm"] == fields["CapBnd"] == "0000000000000000", out
    assert fields["NoNewPrivs"] == "1"
    assert "ROOT-WRITABLE" not in out and "TMP-WRITABLE" in out


@pytest.mark.parametrize("code", [0, 3, 42, 255])
def test_exit_code_and_separate_streams_pass_through(start_target, toolbox_image, code):
    target = start_target("named-user")
    result = run_cli("attach", target.name, "--", "sh", "-c", f"echo out; echo err >&2; exit {code}")
    assert result.returncode == code
    assert result.stdout == b"out\n" and result.stderr == b"err\n"


def test_targets_port_is_reachable_on_localhost(start_target, toolbox_image):
    target = start_target("named-user")
    result = run_cli("attach", target.name, "--", "curl", "-fsS", "http://127.0.0.1:8080/")
    assert result.returncode == 0, result.stderr
    assert b"hello from debugkit fixture (uid=65532" in result.stdout


def test_piped_stdin_reaches_the_command(start_target, toolbox_image):
    target = start_target("named-user")
    result = run_cli("attach", "-i", target.name, "--", "sh", "-c", "wc -c; cat /proc/1/root/etc/group | wc -l",
                     input=b"x" * 100000)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [b"100000", b"6"]


def test_docker_scheme_and_short_id_are_accepted(start_target, toolbox_image):
    target = start_target("named-user")
    for ref in (f"docker://{target.name}", target.id[:12]):
        result = run_cli("attach", ref, "--", "true")
        assert result.returncode == 0, (ref, result.stderr)


def test_sidecar_is_labelled_and_limited_while_it_runs(docker_client, start_target, toolbox_image):
    target = start_target("named-user")
    proc = subprocess.Popen([sys.executable, "-m", "debugkit", "attach", target.name, "--", "sleep", "60"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sidecars = wait_for(lambda: leaked_sidecars(docker_client, **{"io.debugkit.target": target.name}),
                            timeout=20, what="the sidecar to appear")
        attrs = sidecars[0].attrs
        labels = attrs["Config"]["Labels"]
        assert labels["io.debugkit.target-id"] == target.id
        assert re.fullmatch(r"[0-9a-f]{8}", labels["io.debugkit.session"])
        assert attrs["Name"] == f"/debugkit-{labels['io.debugkit.session']}"
        host = attrs["HostConfig"]
        assert host["PidMode"] == host["NetworkMode"] == f"container:{target.id}"
        assert host["AutoRemove"] and host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
        assert host["Memory"] == 256 * 1024 * 1024 and host["PidsLimit"] == 256 and host["NanoCpus"] == 10**9
        # What a session prints never reaches the engine's log driver (which may ship it away).
        assert host["LogConfig"]["Type"] == "none"
        with pytest.raises(docker.errors.APIError, match="does not support reading"):
            sidecars[0].logs()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == ExitCode.TERMINATED
        assert b"SIGTERM" in proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()


# -- bad input: one line, a distinct code, nothing left behind ---------------------------

def _assert_clean_error(result, code: ExitCode, *needles: str):
    out, errout = text(result)
    assert result.returncode == code, (result.returncode, errout)
    lines = errout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("debugkit: error: "), errout
    assert "Traceback" not in errout
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_target_not_found(docker_client):
    _assert_clean_error(run_cli("attach", "no-such-container-xyz", "--", "true"),
                        ExitCode.TARGET_NOT_FOUND, "no-such-container-xyz")


def test_target_not_running(docker_client, fixture_images):
    from tests.helpers import labels_for_test

    ctr = docker_client.containers.create(fixture_images["named-user"], labels=labels_for_test())
    try:
        _assert_clean_error(run_cli("attach", ctr.name, "--", "true"), ExitCode.TARGET_NOT_RUNNING, "created")
    finally:
        ctr.remove(force=True)


@pytest.mark.parametrize("value", ["nonroot", "1:2:3", "-1", "65532:x", "99999999999"])
def test_invalid_user(start_target, value):
    target = start_target("named-user")
    _assert_clean_error(run_cli("attach", "--user", value, target.name, "--", "true"),
                        ExitCode.INVALID_INPUT, "--user")


def test_user_override_wins(start_target, toolbox_image):
    target = start_target("named-user")
    result = run_cli("attach", "--user", "4242:4343", target.name, "--", "sh", "-c", "id -u; id -g")
    assert result.stdout.split() == [b"4242", b"4343"]


@pytest.fixture(scope="module")
def image_with_an_entrypoint(docker_client, tmp_path_factory):
    """A foreign sidecar image whose ENTRYPOINT is a program of its own (as most are)."""
    context = tmp_path_factory.mktemp("entrypoint-image")
    (context / "Dockerfile").write_text('FROM debian:bookworm-slim\nENTRYPOINT ["/bin/echo", "the image entrypoint ran"]\n')
    tag = "debugkit-test/entrypoint:1"
    docker_client.images.build(path=str(context), tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


@pytest.mark.parametrize("flags", [(), ("--keep-alive", "1m")])
def test_a_foreign_images_entrypoint_does_not_replace_the_command(start_target, toolbox_image,
                                                                   image_with_an_entrypoint, flags):
    target = start_target("named-user")
    result = run_cli("attach", target.name, "--image", image_with_an_entrypoint, *flags, "--", "sh", "-c",
                     "echo ours; exit 5")
    out, err = text(result)
    assert result.returncode == 5 and out == "ours\n", (out, err)
    run_cli("gc", "--runtime", "docker", "--older-than", "0s")


def test_a_toolbox_whose_helper_is_too_old_is_refused_with_the_fix(docker_client, start_target, toolbox_image,
                                                                   tmp_path):
    """An old build would fail every command with exit 125 (its helper lacks reap's newer
    flags): refused before anything starts, with how to rebuild."""
    (tmp_path / "Dockerfile").write_text(f"FROM {toolbox_image}-slim\nLABEL io.debugkit.helper-protocol=2\n")
    tag = "debugkit-test/old-helper:1"
    docker_client.images.build(path=str(tmp_path), tag=tag, rm=True)
    try:
        target = start_target("named-user")
        result = run_cli("attach", target.name, "--image", tag, "--", "true")
        _assert_clean_error(result, ExitCode.IMAGE_MISSING, "older debugkit-helper (protocol 2")
        assert leaked_sidecars(docker_client, **{"io.debugkit.target-id": target.id}) == []
    finally:
        docker_client.images.remove(tag, force=True)


def test_missing_toolbox_image_says_how_to_get_it(start_target):
    target = start_target("named-user")
    _assert_clean_error(run_cli("attach", target.name, "--", "true", env={"DEBUGKIT_IMAGE": "debugkit/toolbox:absent"}),
                        ExitCode.IMAGE_MISSING, "debugkit toolbox build")
    _assert_clean_error(run_cli("attach", "--image", "no/such-image:1", target.name, "--", "true"),
                        ExitCode.IMAGE_MISSING, "no/such-image:1")
    pinned = "127.0.0.1:5000/debugkit-test/absent@sha256:" + "0" * 64  # as toolbox push --set-default writes
    _assert_clean_error(run_cli("attach", target.name, "--", "true", env={"DEBUGKIT_IMAGE": pinned}),
                        ExitCode.IMAGE_MISSING, f"docker pull {pinned}")


def test_command_not_found_in_toolbox(start_target, toolbox_image):
    """The reaper starts the command, so it reports, as a shell does: 127 / 126, one line."""
    target = start_target("named-user")
    for argv, code, needle in ((["no-such-tool"], ExitCode.COMMAND_NOT_FOUND, "no-such-tool: command not found"),
                               (["/etc/passwd"], ExitCode.COMMAND_NOT_EXECUTABLE, "/etc/passwd")):
        result = run_cli("attach", target.name, "--", *argv)
        out, errout = text(result)
        assert result.returncode == code, errout
        assert errout.splitlines() == [errout.strip()] and needle in errout and "Traceback" not in errout, errout


def test_engine_unreachable(tmp_path):
    result = run_cli("attach", "anything", "--", "true", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    _assert_clean_error(result, ExitCode.ENGINE_UNREACHABLE, "none.sock")
    debug = run_cli("--debug", "attach", "anything", "--", "true", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert debug.returncode == ExitCode.ENGINE_UNREACHABLE and b"Traceback" in debug.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/setpriv"), reason="needs root and setpriv")
def test_permission_denied_on_socket():
    # A socket owned by someone else, and a root without CAP_DAC_OVERRIDE: a plain EACCES.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "engine.sock")
        server = socket.socket(socket.AF_UNIX)
        server.bind(path)
        server.listen(1)
        os.chown(path, 65534, 65534)
        os.chmod(path, 0o600)
        try:
            result = run_cli("attach", "anything", "--", "true", env={"DOCKER_HOST": f"unix://{path}"},
                             prefix=["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"])
        finally:
            server.close()
    _assert_clean_error(result, ExitCode.PERMISSION_DENIED, "permission denied")


def test_bad_target_syntax_is_rejected_before_any_engine_call(tmp_path):
    result = run_cli("attach", "bad name!", "--", "true", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    _assert_clean_error(result, ExitCode.INVALID_INPUT, "bad name!")




def test_a_docker_attach_imports_no_other_runtime(start_target, toolbox_image):
    """The hot path stays light: the registry imports only the runtime the target names."""
    target = start_target("named-user")
    result = run_cli("attach", target.name, "--", "true", prefix=[], env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    loaded = set(re.findall(r"\|\s*(debugkit\.runtimes\.\w+)", result.stderr.decode()))
    assert "debugkit.runtimes.docker" in loaded
    assert loaded.isdisjoint({"debugkit.runtimes.kubernetes", "debugkit.runtimes.podman"}), sorted(loaded)
