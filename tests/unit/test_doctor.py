"""doctor's pure parts: results, grants, PodSecurity per profile, the audit log and config
checks on local files, and text output that never carries a control character. The
runtimes' own checks live in their packages (runtimes/*/doctor.py)."""
from __future__ import annotations

import os

import pytest

from debugkit.core.identity import Identity
from debugkit.runtimes.kubernetes import doctor as kube_doctor
from debugkit.runtimes.kubernetes import podsecurity
from debugkit.session import doctor
from debugkit.session.doctor import Result


def test_only_a_failure_fails():
    assert [Result("x", s, "").ok for s in ("ok", "warn", "skip", "not configured", "fail")] == \
        [True, True, True, True, False]
    assert doctor.passed([Result("a", "ok", ""), Result("b", "warn", "")])
    assert not doctor.passed([Result("a", "ok", ""), Result("b", "fail", "")])


def test_grants_name_users_and_service_accounts():
    assert kube_doctor.grant_command("shop", "alice", "get", "pods", "exec") == (
        "ask an admin for: kubectl -n shop create role debugkit-get-exec --verb=get --resource=pods/exec "
        "&& kubectl -n shop create rolebinding debugkit-get-exec --role=debugkit-get-exec --user=alice")
    sa = kube_doctor.grant_command("shop", "system:serviceaccount:ci:deployer", "get", "namespaces", "")
    assert "--resource=namespaces --resource-name=shop" in sa and sa.endswith("--serviceaccount=ci:deployer")


@pytest.mark.parametrize("level, uid, admitted", [
    ("restricted", 65532, ["restricted"]),
    ("restricted", 0, []),
    ("baseline", 65532, ["restricted"]),
    ("baseline", 0, ["restricted"]),
    ("privileged", 0, ["restricted", "netadmin", "ptrace", "sysadmin"]),
    (None, 65532, ["restricted", "netadmin", "ptrace", "sysadmin"]),
])
def test_profiles_against_each_level(level, uid, admitted):
    identity = Identity(uid=uid, gid=uid)
    found = [p for p in ("restricted", "netadmin", "ptrace", "sysadmin")
             if not podsecurity.violations(level, kube_doctor.profile_container(p, identity))]
    assert found == admitted


def test_the_rbac_table_is_what_debugkit_uses():
    def needed(action):
        return [(v, r, s) for v, r, s, need, *_ in kube_doctor.RBAC if need and action in need]

    assert needed(kube_doctor.POD) == [("get", "pods", ""), ("patch", "pods", "ephemeralcontainers"),
                                       ("get", "pods", "exec"), ("create", "pods", "exec")]
    # Node debugging creates, execs into (websocket: get and create since 1.35) and deletes a pod.
    assert needed(kube_doctor.NODE) == [("get", "pods", ""), ("get", "pods", "exec"), ("create", "pods", "exec"),
                                        ("create", "pods", ""), ("delete", "pods", "")]
    unused = [(v, r, s) for v, r, s, need, *_ in kube_doctor.RBAC if need is None]
    assert unused == [("get", "pods", "attach")]


def test_webhooks_that_check_pods_but_not_debug_containers_are_named():
    def hook(name, resources, operations=("CREATE",), groups=("",)):
        return {"name": name, "rules": [{"apiGroups": list(groups), "apiVersions": ["v1"],
                                         "operations": list(operations), "resources": list(resources)}]}

    config = {"metadata": {"name": "policies"}, "webhooks": [
        hook("pods-only.example.com", ["pods"]),
        hook("every-resource.example.com", ["*"], operations=("*",)),            # `*` has no subresources
        hook("sees-debug.example.com", ["pods", "pods/ephemeralcontainers"], operations=("CREATE", "UPDATE")),
        hook("everything.example.com", ["*/*"], operations=("*",), groups=("*",)),
        hook("pods-star.example.com", ["pods", "pods/*"], operations=("*",)),
        hook("apps-only.example.com", ["deployments"], groups=("apps",)),
        hook("debug-create-only.example.com", ["pods", "pods/ephemeralcontainers"], operations=("CREATE",)),
    ]}
    found = kube_doctor.webhook_blind_spots(config, "validatingwebhookconfiguration")
    named = [line.split("webhook ", 1)[1].split(" ", 1)[0] for line in found]
    # An ephemeral container is added by an UPDATE of pods/ephemeralcontainers.
    assert named == ["pods-only.example.com", "every-resource.example.com", "debug-create-only.example.com"]
    assert found[0] == ("validatingwebhookconfiguration policies: webhook pods-only.example.com checks pods (CREATE) "
                        "but not pods/ephemeralcontainers, so it never sees a debug container")


def test_audit_log_checks(tmp_path, monkeypatch):
    monkeypatch.setenv("DEBUGKIT_AUDIT_LOG", str(tmp_path / "a" / "b" / "audit.jsonl"))
    assert doctor.check_audit_log().status == "ok"
    assert not (tmp_path / "a").exists()  # checked by making it, then taken back
    (tmp_path / "log").write_text("")
    monkeypatch.setenv("DEBUGKIT_AUDIT_LOG", str(tmp_path / "log"))
    assert doctor.check_audit_log().detail.endswith("is writable")
    os.symlink(tmp_path / "log", tmp_path / "link")
    monkeypatch.setenv("DEBUGKIT_AUDIT_LOG", str(tmp_path / "link"))
    assert doctor.check_audit_log().status == "fail"
    monkeypatch.setenv("DEBUGKIT_AUDIT_LOG", str(tmp_path / "log" / "under-a-file"))
    result = doctor.check_audit_log()
    assert result.status == "fail" and "DEBUGKIT_AUDIT_LOG" in result.fix


def test_config_check_names_file_line_and_variables(tmp_path, monkeypatch):
    from debugkit.session import config

    path = tmp_path / "config.yaml"
    path.write_text("image: debugkit/toolbox:0.1.0\nprofile: root\n")
    monkeypatch.setenv("DEBUGKIT_CONFIG", str(path))
    config.use(None)
    try:
        result = doctor.check_config()
        assert result.status == "fail" and f"{path}:2" in result.detail
        path.write_text("image: debugkit/toolbox:0.1.0\n")
        config.use(None)
        assert doctor.check_config().status == "ok"
        monkeypatch.setenv("DEBUGKIT_TIMEOUT", "soon")
        result = doctor.check_config()
        assert result.status == "fail" and result.detail.startswith("environment DEBUGKIT_TIMEOUT")
    finally:
        config.use(None)


def test_text_output_escapes_what_came_from_a_target(capsys):
    from debugkit.cli.doctor import render_text

    render_text([Result("target-identity", "ok", "0:0 \x1b]0;owned\x07root from process"),
                 Result("target", "fail", "no container named 'x\x1b[2J'", "see `docker ps`")])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;owned\\x07root" in out and "(fix: see `docker ps`)" in out
    assert out.splitlines()[1].startswith("FAIL  target ")


class _Engine:
    """An engine that answers inspect_image with these labels (a fault injected: a toolbox
    built before debugkit-helper existed cannot be made on the shared test engine)."""

    def __init__(self, labels):
        self.labels = labels

    def inspect_image(self, image):
        return {"Id": "sha256:" + "0" * 64, "Config": {"Labels": self.labels}}


def test_an_old_toolbox_without_the_helper_is_a_warning(monkeypatch, tmp_path):
    from debugkit import runtimes
    from debugkit.runtimes.docker.doctor import check_toolbox_image
    from debugkit.runtimes.docker.translate import HELPER, HELPER_LABEL, HELPER_PROTOCOL, HELPER_PROTOCOL_LABEL
    from debugkit.session import config, defaults

    docker = runtimes.get("docker", preferences=defaults.PREFERENCES)
    podman = runtimes.get("podman", preferences=defaults.PREFERENCES)

    monkeypatch.delenv("DEBUGKIT_IMAGE", raising=False)
    monkeypatch.delenv("DEBUGKIT_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no config file: the bundled toolbox's tag
    config.use(None)
    try:
        current = {HELPER_LABEL: HELPER, HELPER_PROTOCOL_LABEL: str(HELPER_PROTOCOL)}
        assert check_toolbox_image(_Engine(current), docker).status == "ok"
        # A helper from before reap's newer flags: attach refuses the image, so doctor fails it.
        older = check_toolbox_image(_Engine({HELPER_LABEL: HELPER}), docker)
        assert older.status == "fail" and "protocol 1" in older.detail and older.fix.startswith("rebuild it")
        old = check_toolbox_image(_Engine({}), docker)
        assert old.status == "warn" and "old build without debugkit-helper" in old.detail
        assert old.fix == "rebuild it: debugkit toolbox build"
        assert check_toolbox_image(_Engine({}), podman).fix.endswith("| podman load")
    finally:
        config.use(None)
