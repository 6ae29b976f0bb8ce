"""The user stories every runtime must pass alike (issue 10): identity, the target's files and
localhost, exit codes, a missing or stopped target, and nothing left behind."""
from __future__ import annotations

import json
import time

import pytest

from debugkit.core.errors import ExitCode
from tests.helpers import run_cli, text, wait_for
from tests.integration.contract.targets import TARGET_ENV

MISSING = {"docker": "dk-contract-no-such-target", "podman": "podman://dk-contract-no-such-target"}


def test_the_sidecar_runs_as_the_targets_own_user_with_no_privileges(target):
    result = target.attach("sh", "-c", "id -u; id -g; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; "
                                       "touch /root-is-writable 2>/dev/null && echo writable || echo read-only")
    out, err = text(result)
    assert result.returncode == 0, err
    lines = out.split()
    assert lines[:2] == ["65532", "65532"], out
    assert "0000000000000000" in out and "NoNewPrivs:\t1" in out.replace("NoNewPrivs: ", "NoNewPrivs:\t"), out
    assert out.rstrip().endswith("read-only"), out


def test_inspect_names_the_identity_and_where_it_came_from(target):
    result = target.cli("inspect", target.ref, "-o", "json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["uid"], info["gid"]) == (65532, 65532), info
    assert info["source"] in ("process", "image-config"), info


def test_the_targets_files_are_under_proc_1_root(target):
    result = target.attach("sh", "-c", 'cat "$DEBUGKIT_TARGET_ROOT/home/nonroot/secret.txt"; ls /proc/1/root/server')
    out, err = text(result)
    assert result.returncode == 0, err
    secret = (__import__("pathlib").Path(__file__).resolve().parents[2] / "fixtures/targets/home/secret.txt")
    assert secret.read_text().strip() in out and "/proc/1/root/server" in out, out


def test_the_targets_localhost_port_answers(target):
    result = target.attach("curl", "-sS", "--max-time", "5", "http://127.0.0.1:8080/")
    out, err = text(result)
    assert result.returncode == 0, err
    assert "hello from debugkit fixture (uid=65532 gid=65532)" in out


@pytest.mark.parametrize("code", [0, 3, 42])
def test_the_commands_exit_code_is_debugkits(target, code):
    result = target.attach("sh", "-c", f"echo out; echo err >&2; exit {code}")
    out, err = text(result)
    assert result.returncode == code, err
    assert out == "out\n" and err.endswith("err\n"), (out, err)


def test_stdin_reaches_the_command(target):
    result = target.cli("attach", target.ref, "-i", "--", "sh", "-c", "tr a-z A-Z", input="piped in\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"PIPED IN\n"


@pytest.mark.parametrize("command, code", [(("/etc/passwd",), 126), (("no-such-command",), 127),
                                           (("sh", "-c", "kill -9 $$"), 137), (("sh", "-c", "kill -15 $$"), 143)])
def test_failures_to_run_and_deaths_by_signal_keep_their_shell_codes(target, command, code):
    result = target.attach(*command)
    assert result.returncode == code, result.stderr


def test_a_missing_target_is_not_found(runtime, request, k8s_namespace):
    if runtime == "kubernetes":
        env = {"KUBECONFIG": request.getfixturevalue("k8s_cluster").kubeconfig}
        ref = f"k8s://{k8s_namespace}/dk-contract-no-such-pod"
    else:
        if runtime == "podman":
            request.getfixturevalue("podman_service")
        env, ref = {}, MISSING[runtime]
    result = run_cli("attach", ref, "--", "true", env=env)
    out, err = text(result)
    assert result.returncode == ExitCode.TARGET_NOT_FOUND, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_a_stopped_target_is_refused_and_left_stopped(runtime, make_target, request):
    if runtime == "kubernetes":
        # A pod whose only container has exited (restartPolicy Never): nothing runs to attach to.
        cluster = request.getfixturevalue("k8s_cluster")
        target = make_target()
        pod = cluster.api.read_namespaced_pod(target.pod, target.namespace)
        manifest = cluster.pod_manifest(target.namespace, pod.spec.containers[0].image, command=["/server", "-drop", "1:1"],
                                        restartPolicy="Never")
        cluster.api.create_namespaced_pod(target.namespace, manifest)
        name = manifest["metadata"]["name"]
        wait_for(lambda: cluster.api.read_namespaced_pod(name, target.namespace).status.phase == "Failed",
                 timeout=60, what=f"pod {name} to fail")
        ref = f"k8s://{target.namespace}/{name}/app"
    else:
        target = make_target()
        target.stop()
        ref = target.ref
    result = run_cli("attach", ref, "--", "true", env=target.env)
    out, err = text(result)
    assert result.returncode == ExitCode.TARGET_NOT_RUNNING, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    if runtime != "kubernetes":
        time.sleep(1)
        assert target.sidecars() == []


def test_nothing_is_left_running_after_a_command(runtime, target):
    flags = ("--keep-alive", "0") if runtime == "kubernetes" else ()
    result = target.attach("sh", "-c", "echo done", flags=flags)
    assert result.returncode == 0, result.stderr
    # Docker and Podman remove the sidecar; a Kubernetes debug container cannot be removed,
    # so with --keep-alive 0 it must at least have ended.
    wait_for(lambda: target.sidecars() == [], timeout=20, what=f"the sidecars of {target.ref} to end")
    ps = target.cli("ps", "-o", "json", "--runtime", runtime)
    assert ps.returncode == 0, ps.stderr
    mine = [row for row in json.loads(ps.stdout) if row["target"].startswith(target.name)]
    assert all(row["state"] != "running" for row in mine), mine


def test_a_kept_alive_sidecar_is_reused_listed_with_its_idle_time_and_collected(runtime, target):
    first = target.attach("sh", "-c", "echo $PPID", flags=("--keep-alive", "5m"))
    assert first.returncode == 0, first.stderr
    second = target.attach("true", flags=("--keep-alive", "5m"))
    assert second.returncode == 0, second.stderr
    sidecars = target.sidecars()
    assert len(sidecars) == 1, sidecars
    time.sleep(1.1)
    ps = target.cli("ps", "-o", "json", "--runtime", runtime)
    rows = [row for row in json.loads(ps.stdout) if row["target"].startswith(target.name) and row["state"] == "running"]
    assert len(rows) == 1 and rows[0]["reusable"] and rows[0]["keep_alive_s"] == 300, rows
    assert rows[0]["idle_s"] is not None and rows[0]["idle_s"] >= 1, rows
    records = [json.loads(line) for line in open(__import__("os").environ["DEBUGKIT_AUDIT_LOG"])]
    starts = [r for r in records if r["event"] == "start"]
    assert [r["reused"] for r in starts] == [False, True] and len({r["sidecar"] for r in starts}) == 1
    # --new starts a second one next to it.
    third = target.attach("true", flags=("--keep-alive", "5m", "--new"))
    assert third.returncode == 0, third.stderr
    assert len(target.sidecars()) == 2
    if runtime != "kubernetes":
        # Not stale while idle within its keep-alive, although the CLIs that made it are gone...
        kept = target.cli("gc", "--runtime", runtime, "-o", "json")
        assert not [a for a in json.loads(kept.stdout) if a["action"] == "removed"], kept.stdout
        # ...but collected by age like any other.
        time.sleep(1.1)
        gone = target.cli("gc", "--runtime", runtime, "--older-than", "1s", "-o", "json")
        removed = [a for a in json.loads(gone.stdout) if a["action"] == "removed"]
        assert len(removed) == 2, gone.stdout
        wait_for(lambda: target.sidecars() == [], timeout=20, what="the kept-alive sidecars to go")


def test_the_command_can_run_with_the_targets_environment(target):
    show = 'echo "$DEBUGKIT_CONTRACT"; echo "$PATH"'
    plain = target.attach("sh", "-c", show)
    with_env = target.attach("sh", "-c", show, flags=("--target-env",))
    assert plain.returncode == 0 and with_env.returncode == 0, (plain.stderr, with_env.stderr)
    assert plain.stdout.decode().splitlines()[0] == ""
    value, path = with_env.stdout.decode().splitlines()
    assert value == TARGET_ENV[1]
    # The target's PATH first, the sidecar's after it: the toolbox's tools still resolve.
    assert "/usr/local/bin" in path.split(":"), path
