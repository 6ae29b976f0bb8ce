"""Identity from the running process on Kubernetes, the pure parts: when the process is the
source, what the debug container then is (a minimal identity probe), and how each command
drops to the process's identity."""
from __future__ import annotations

import subprocess

import pytest

from debugkit.core import userdb
from debugkit.core.identity import Identity
from debugkit.core.profiles import apply_profile
from debugkit.core.spec import base_spec
from debugkit.runtimes.kubernetes import identity, podsecurity, translate


def pod_identity(monkeypatch, *, image_user="", run_as_user=None):
    monkeypatch.setattr(identity, "_IMAGES", {})
    monkeypatch.setattr(identity, "_IMAGE_LOCKS", {})
    monkeypatch.setattr(identity.PodIdentity, "_read_image_now",
                        lambda self: identity.ImageFacts(image_user, userdb.EMPTY, "registry r"))
    ctr = {"name": "app", "image": "reg/db:1"}
    if run_as_user is not None:
        ctr["securityContext"] = {"runAsUser": run_as_user, "runAsGroup": run_as_user}
    raw = {"metadata": {"name": "db"}, "spec": {"containers": [ctr]},
           "status": {"containerStatuses": [{"name": "app", "imageID": "sha256:abc"}]}}
    return identity.PodIdentity(None, identity.PodTarget("ns", "db", "app", raw))


@pytest.mark.parametrize("image_user,run_as_user", [("", None), ("0", None), ("", 0), ("root", None)])
def test_the_process_answers_when_spec_and_image_say_root_or_nothing(monkeypatch, image_user, run_as_user):
    found = pod_identity(monkeypatch, image_user=image_user, run_as_user=run_as_user).sources(stop_at_first=True)
    assert found[0].source == "process" and found[0].identity == identity.AS_PROCESS


@pytest.mark.parametrize("image_user,run_as_user,winner", [("1000", None, "image-config"), ("", 2000, "config"),
                                                           ("1000", 2000, "config")])
def test_a_non_root_spec_or_image_needs_no_probe(monkeypatch, image_user, run_as_user, winner):
    found = pod_identity(monkeypatch, image_user=image_user, run_as_user=run_as_user).sources()
    assert [s.source for s in found] == ["process", "config", "image-config"]
    assert found[0].identity is None and "cannot leave" in found[0].error
    assert next(s for s in found if s.identity is not None).source == winner


def probe_container():
    spec = base_spec(image="toolbox", identity=identity.AS_PROCESS, target_name="ns/db/app", target_id="u",
                     runtime="kubernetes", cli_pid=1, cli_host="h", local_user="ana")
    spec = apply_profile(spec, "restricted")
    spec = spec.evolve(cap_add=translate.AS_PROCESS_CAPABILITIES)
    return translate.ephemeral_container(spec, target_container="app"), spec


def test_the_probe_container_is_root_with_two_capabilities_which_baseline_admits():
    container, _spec = probe_container()
    sc = container["securityContext"]
    assert (sc["runAsUser"], sc["runAsNonRoot"], sc["allowPrivilegeEscalation"]) == (0, False, False)
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SETUID", "SETGID"]}
    assert podsecurity.violations("baseline", container) == []
    assert "runAsNonRoot must be true" in podsecurity.violations("restricted", container)


def test_the_reuse_key_keeps_a_probe_apart_from_a_root_sidecar():
    _container, spec = probe_container()
    args = dict(target_container="app", custom=None, local_user="ana", keep_alive=600)
    assert translate.reuse_key(spec, **args, as_process=True) != translate.reuse_key(spec, **args)


def test_each_command_drops_to_the_process_identity(tmp_path):
    """With the toolbox, the helper's `as-target` (tested in Go, and on the real node by
    the integration tests). With a foreign image, the wrapper's script, run here by a real
    sh with /proc/1/status replaced by a file and setpriv by a stand-in that prints what it
    was asked; without util-linux's setpriv it says so."""
    status = tmp_path / "status"
    status.write_text("Name:\tserver\nUid:\t0\t7777\t7777\t7777\nGid:\t0\t7777\t7777\t7777\nGroups:\t7777 8888 \n")
    fake = tmp_path / "setpriv"
    fake.write_text("#!/bin/sh\necho setpriv \"$@\"\n")
    fake.chmod(0o755)
    script = translate.AS_TARGET_SCRIPT.replace("/proc/1/status", str(status)).replace("/usr/bin/setpriv", str(fake))
    assert translate.as_target(["id", "-u"], helper=True) == [translate.HELPER, "as-target", "--", "id", "-u"]
    argv = translate.as_target(["id", "-u"], helper=False)
    assert argv[:2] == ["sh", "-c"] and argv[-2:] == ["id", "-u"]
    out = subprocess.run(["sh", "-c", script, "x", "id", "-u"], capture_output=True, text=True, check=True).stdout
    # The effective IDs win, as in identity_from_status.
    assert out.split() == ["setpriv", "--reuid=7777", "--regid=7777", "--groups=7777,8888", "--inh-caps=-all", "--",
                           "id", "-u"]
    status.write_text("Uid:\t5\t5\t5\t5\nGid:\t6\t6\t6\t6\nGroups:\t\n")
    out = subprocess.run(["sh", "-c", script, "x", "true"], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["setpriv", "--reuid=5", "--regid=6", "--clear-groups", "--inh-caps=-all", "--", "true"]
    status.write_text("Name:\tgone\n")
    failed = subprocess.run(["sh", "-c", script, "x", "true"], capture_output=True, text=True)
    assert failed.returncode == 125 and "cannot read the target's user" in failed.stderr
    status.write_text("Uid:\t5\t5\t5\t5\nGid:\t6\t6\t6\t6\n")
    fake.unlink()
    missing = subprocess.run(["sh", "-c", script, "x", "true"], capture_output=True, text=True)
    assert missing.returncode == 125 and "needs util-linux's setpriv" in missing.stderr and "--user" in missing.stderr
    assert "toolbox" in missing.stderr


def test_the_deferred_identity_is_never_a_guess():
    assert identity.AS_PROCESS.source == "process"
    assert Identity(0, 0, source="process") != identity.AS_PROCESS  # only the planned marker means "read at start"
