"""Issue 27 on every runtime: the primary group each runtime chooses (items 8, 9), and
reuse that trusts only what this person's debugkit started (item 3). Real Docker, Podman
and Kubernetes; the look-alikes are planted the way the review planted them."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

from tests.helpers import RUN_ID, RUN_LABEL, TEST_LABEL
from tests.integration.contract.targets import Target

ROOT_OF_TARGET = 'id -u; id -g; ls /proc/1/root/server'


def attach_as(target: Target, user: str):
    return target.attach("sh", "-c", ROOT_OF_TARGET, flags=("--user", user))


# -- 8. USER 10001 and no /etc/passwd: the runtime runs it as 10001:0 ---------------------------------------

def test_a_bare_uid_without_a_passwd_entry_is_gid_0_as_the_runtime_runs_it(runtime, make_target):
    target = make_target("numeric-user")
    shown = target.cli("inspect", target.ref, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert (info["uid"], info["gid"]) == (10001, 0), info
    answered = {s["source"]: (s.get("uid"), s.get("gid")) for s in info["sources"] if "uid" in s}
    assert set(answered.values()) == {(10001, 0)}, info["sources"]
    # --user with the UID alone takes the group the runtime gives it (0), so the sidecar
    # passes the ptrace access check on /proc/1/root, which compares GIDs too.
    ran = attach_as(target, "10001")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.decode().split() == ["10001", "0", "/proc/1/root/server"]


# -- 9. a 4 MiB /etc/passwd whose nonroot entry comes last ---------------------------------------------------

def test_a_huge_passwd_gives_the_group_the_runtime_read_from_it(runtime, make_target):
    target = make_target("huge-passwd")
    shown = target.cli("inspect", target.ref, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    by_source = {s["source"]: s for s in info["sources"]}
    configured = by_source["image-config" if runtime == "kubernetes" else "config"]
    assert (configured.get("uid"), configured.get("gid"), configured.get("user_name")) == (65532, 65532, "nonroot"), \
        configured
    ran = attach_as(target, "65532")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.decode().split() == ["65532", "65532", "/proc/1/root/server"]


# -- 3. reuse trusts only the sidecar this person's debugkit recorded starting --------------------------------

def other_person(tmp_path, name: str) -> dict:
    """The environment of another debugkit: its own state directory (and so its own record
    of what it started) and audit log."""
    return {"XDG_STATE_HOME": str(tmp_path / name), "DEBUGKIT_AUDIT_LOG": str(tmp_path / f"{name}.jsonl")}


def plant_engine_lookalike(cli: str, target: Target, tmp_path) -> str:
    """What the review did on Docker: a container with a real sidecar's labels (its reuse
    key), running as root with another command. The real sidecar is gone."""
    made = target.attach("true", flags=("--keep-alive", "5m"), env=other_person(tmp_path, "someone"))
    assert made.returncode == 0, made.stderr
    (real,) = target.sidecars()
    labels = json.loads(subprocess.run([cli, "inspect", "--format", "{{json .Config.Labels}}", real],
                                       capture_output=True, text=True, check=True).stdout)
    image = subprocess.run([cli, "inspect", "--format", "{{.Config.Image}}", real], capture_output=True, text=True,
                           check=True).stdout.strip()
    subprocess.run([cli, "rm", "-f", real], capture_output=True, check=True)
    name = f"debugkit-planted{uuid.uuid4().hex[:6]}"
    flags = [arg for key, value in {**labels, TEST_LABEL: "1", RUN_LABEL: RUN_ID}.items()
             for arg in ("--label", f"{key}={value}")]
    target_id = labels["io.debugkit.target-id"]
    subprocess.run([cli, "run", "-d", "--name", name, "--user", "0:0", "--pid", f"container:{target_id}",
                    "--network", f"container:{target_id}", *flags, "--entrypoint", "sleep", image, "600"],
                   capture_output=True, text=True, check=True, timeout=60)
    return name


def plant_ephemeral(target: Target, cluster, *, like: str, name: str, **changes) -> None:
    """What the review did on Kubernetes: an ephemeral container added by someone allowed to
    patch pods/ephemeralcontainers, with a real debug container's environment (its reuse
    key) and another user or image."""
    pod = cluster.api.read_namespaced_pod(target.pod, target.namespace)
    original = next(c for c in cluster.api.api_client.sanitize_for_serialization(pod.spec.ephemeral_containers)
                    if c["name"] == like)
    planted = {**original, "name": name, **{k: v for k, v in changes.items() if k != "securityContext"}}
    planted["securityContext"] = {**original.get("securityContext", {}), **changes.get("securityContext", {})}
    planted["command"] = ["sleep", "600"]
    # A JSON patch appends it after the real one, newest last.
    cluster.api.patch_namespaced_pod_ephemeralcontainers(
        target.pod, target.namespace, [{"op": "add", "path": "/spec/ephemeralContainers/-", "value": planted}])


def warnings_of(result) -> list[str]:
    return [line for line in result.stderr.decode().splitlines() if line.startswith("debugkit: warning:")]


def test_a_lookalike_with_the_reuse_key_never_runs_the_command(runtime, make_target, request, tmp_path):
    target = make_target()
    if runtime == "kubernetes":
        # Ephemeral containers cannot be removed: someone's real one stays beside the planted one.
        cluster = request.getfixturevalue("k8s_cluster")
        made = target.attach("true", flags=("--keep-alive", "5m"), env=other_person(tmp_path, "someone"))
        assert made.returncode == 0, made.stderr
        (real,) = target.sidecars()
        planted = f"debugkit-planted{uuid.uuid4().hex[:6]}"
        plant_ephemeral(target, cluster, like=real, name=planted,
                        securityContext={"runAsUser": 4242, "runAsGroup": 4242})
        lookalikes = {real, planted}
    else:
        planted = plant_engine_lookalike(runtime, target, tmp_path)
        lookalikes = {planted}
    first = target.attach("id", "-u", flags=("--keep-alive", "5m"))
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().split() == ["65532"]  # not 0 (Docker's look-alike), not 4242 (the pod's)
    (line,) = warnings_of(first)
    named = line.removeprefix("debugkit: warning: not reusing ").partition(":")[0]
    assert named in lookalikes and line.endswith(": this debugkit has no record of starting it (a look-alike "
                                                 "carries its reuse key); starting a new one"), line
    # The sidecar this debugkit started and recorded is reused, without a word.
    before = set(target.sidecars())
    second = target.attach("id", "-u", flags=("--keep-alive", "5m"))
    assert second.returncode == 0 and warnings_of(second) == [], second.stderr
    assert second.stdout.decode().split() == ["65532"] and set(target.sidecars()) == before
    records = [json.loads(line) for line in open(os.environ["DEBUGKIT_AUDIT_LOG"])]
    starts = [r for r in records if r["event"] == "start"]
    assert [r["reused"] for r in starts] == [False, True] and starts[0]["sidecar"] == starts[1]["sidecar"] != planted

