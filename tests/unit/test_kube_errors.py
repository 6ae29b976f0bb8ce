"""The Kubernetes client's failures become one clear debugkit error each; a bug inside
debugkit stays a bug (exit 70 with --debug's traceback), never an outage."""
from __future__ import annotations

import pytest

from debugkit.core.errors import EngineUnreachable, Forbidden, TargetNotFound
from debugkit.runtimes.kubernetes.kubeclient import ApiError, TransportError
from debugkit.runtimes.kubernetes.runtime import KubernetesRuntime


def call(exc: BaseException):
    def fails():
        raise exc
    return KubernetesRuntime(api=object()).call(fails, verb="get", resource="pods", namespace="shop", name="web")


@pytest.mark.parametrize("exc,kind", [
    (TransportError("connect to 10.0.0.1:6443: connection refused"), EngineUnreachable),
    (ApiError(403, "Forbidden", 'pods "web" is forbidden: User "bob" cannot get'), Forbidden),
    (ApiError(404, "NotFound", 'pods "web" not found'), TargetNotFound),
])
def test_the_clients_failures_are_debugkits_errors(exc, kind):
    with pytest.raises(kind):
        call(exc)


@pytest.mark.parametrize("bug", [KeyError("status"), TypeError("'NoneType' object is not subscriptable"),
                                 AttributeError("x")])
def test_a_bug_is_not_reported_as_an_unreachable_api_server(bug):
    with pytest.raises(type(bug)):
        call(bug)


def test_a_bug_ends_as_an_internal_error_with_exit_70(monkeypatch, capsys, tmp_path):
    """Through the CLI: a KeyError inside the runtime is `internal error`, not exit 69."""
    from debugkit.cli import main
    from debugkit.runtimes.kubernetes import planning

    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context:\n"
                          "    cluster: k\n    user: u\nclusters:\n- name: k\n  cluster:\n"
                          "    server: https://127.0.0.1:1\nusers:\n- name: u\n  user: {token: t}\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("DEBUGKIT_AUDIT_LOG", str(tmp_path / "audit.jsonl"))

    def broken(self, ref, *, require_running=True):
        return self.call(lambda: {}["spec"], verb="get", resource="pods", namespace="shop", name=ref.pod)
    monkeypatch.setattr(planning.KubernetesPlanning, "find_target", broken)
    with pytest.raises(SystemExit) as exited:
        main(["attach", "pod/web", "-n", "shop", "--", "true"])
    assert exited.value.code == 70
    assert "internal error: KeyError: 'spec'" in capsys.readouterr().err
