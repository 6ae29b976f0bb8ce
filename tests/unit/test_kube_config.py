"""kubeconfig loading: kubectl's discovery and merge rules, and every way a file can be bad."""
from __future__ import annotations

import base64
import os
import textwrap

import pytest

from debugkit.runtimes.kubernetes import kubeconfig as kc
from debugkit.runtimes.kubernetes.kubeconfig import KubeConfigError


def write(path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def config(server="https://10.0.0.1:6443", *, cluster="c1", user="u1", context="ctx1", current="ctx1",
           namespace=None, user_body="token: t1", cluster_extra="") -> str:
    ns = f"\n    namespace: {namespace}" if namespace else ""
    cur = f"current-context: {current}\n" if current else ""
    return (f"apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n{cluster_extra}"
            f"users:\n- name: {user}\n  user:\n    {user_body}\n"
            f"contexts:\n- name: {context}\n  context:\n    cluster: {cluster}\n    user: {user}{ns}\n"
            f"{cur}")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(kc, "SERVICE_ACCOUNT_DIR", str(tmp_path / "no-sa"))
    return home


def test_explicit_file_with_namespace_and_relative_paths(tmp_path):
    d = tmp_path / "cfg"
    d.mkdir()
    path = write(d / "config", config(namespace="team", cluster_extra="    certificate-authority: pki/ca.crt\n",
                                      user_body="client-certificate: c.crt\n    client-key: /abs/c.key"))
    auth = kc.load(path)
    assert auth.server == "https://10.0.0.1:6443"
    assert auth.namespace == "team"
    assert auth.context == "ctx1" and auth.cluster == "c1" and auth.user == "u1"
    assert auth.ca_file == str(d / "pki" / "ca.crt")
    assert auth.client_cert_file == str(d / "c.crt")
    assert auth.client_key_file == "/abs/c.key"
    assert auth.token is None


def test_namespace_defaults_to_default_and_token(tmp_path):
    auth = kc.load(write(tmp_path / "c", config()))
    assert auth.namespace == "default"
    assert auth.token == "t1"
    assert "t1" not in repr(auth)


def test_context_argument_selects_another_context(tmp_path):
    text = config() + textwrap.dedent("""\
        """)
    path = write(tmp_path / "c", text.replace("contexts:\n", "contexts:\n- name: other\n  context:\n"
                                                           "    cluster: c1\n    user: u1\n    namespace: o\n"))
    assert kc.load(path, context="other").namespace == "o"
    with pytest.raises(KubeConfigError, match="context 'nope' not found"):
        kc.load(path, context="nope")


def test_base64_data_fields(tmp_path):
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n").decode()
    path = write(tmp_path / "c", config(cluster_extra=f"    certificate-authority-data: {ca}\n"
                                                      "    insecure-skip-tls-verify: true\n"
                                                      "    tls-server-name: kubernetes\n",
                                        user_body=f"client-certificate-data: {base64.b64encode(b'CERT').decode()}\n"
                                                  f"    client-key-data: {base64.b64encode(b'KEY').decode()}"))
    auth = kc.load(path)
    assert auth.ca_data.startswith(b"-----BEGIN CERTIFICATE-----")
    assert auth.insecure is True and auth.tls_server_name == "kubernetes"
    assert auth.client_cert_data == b"CERT" and auth.client_key_data == b"KEY"


def test_bad_base64_is_a_clear_error(tmp_path):
    path = write(tmp_path / "c", config(cluster_extra="    certificate-authority-data: '%%%not base64'\n"))
    with pytest.raises(KubeConfigError, match="certificate-authority-data.*not valid base64"):
        kc.load(path)


def test_kubeconfig_env_merge_first_file_wins(tmp_path, monkeypatch):
    first = write(tmp_path / "a", config(server="https://first:6443", context="shared", current="",
                                         cluster="c1", user="u1"))
    second = write(tmp_path / "b", config(server="https://second:6443", context="shared", current="shared",
                                          cluster="c1", user="u1", namespace="from-b"))
    third = write(tmp_path / "c", config(server="https://third:6443", context="ctx3", current="ctx3",
                                         cluster="c3", user="u3"))
    missing = str(tmp_path / "missing")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([missing, first, second, third, ""]))
    auth = kc.load()
    # current-context: the first file that sets it (b); the context and cluster: the first that defines them (a)
    assert auth.context == "shared"
    assert auth.server == "https://first:6443"
    assert auth.namespace == "default"  # a's definition of "shared" wins over b's
    assert auth.source == first
    # a context defined only in the third file still resolves
    assert kc.load(context="ctx3").server == "https://third:6443"


def test_kubeconfig_env_current_context_from_first_file_that_sets_it(tmp_path, monkeypatch):
    a = write(tmp_path / "a", config(server="https://a:1", context="ca", current="cb", cluster="x", user="y"))
    b = write(tmp_path / "b", config(server="https://b:1", context="cb", current="ca", cluster="z", user="w"))
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([a, b]))
    assert kc.load().context == "cb"
    assert kc.load().server == "https://b:1"


def test_relative_paths_resolve_against_the_defining_file(tmp_path, monkeypatch):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    a = write(tmp_path / "one" / "config", config(cluster_extra="    certificate-authority: ca.crt\n",
                                                  context="x", current="").replace("- name: u1", "- name: other"))
    b = write(tmp_path / "two" / "config", "users:\n- name: u1\n  user:\n    tokenFile: tok\n")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([a, b]))
    auth = kc.load(context="x")
    assert auth.ca_file == str(tmp_path / "one" / "ca.crt")
    assert auth.token is None and auth.token_file == str(tmp_path / "two" / "tok")


def test_home_config_is_the_default(clean_env):
    (clean_env / ".kube").mkdir()
    write(clean_env / ".kube" / "config", config(server="https://home:6443"))
    assert kc.config_available()
    assert kc.load().server == "https://home:6443"


def test_nothing_to_load(clean_env, tmp_path, monkeypatch):
    assert not kc.config_available()
    with pytest.raises(KubeConfigError, match="no Kubernetes configuration"):
        kc.load()
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "gone"))
    assert not kc.config_available()
    with pytest.raises(KubeConfigError, match="none of the KUBECONFIG files exist"):
        kc.load()


def test_explicit_missing_file(tmp_path):
    with pytest.raises(KubeConfigError, match=r"missing: kubeconfig file does not exist"):
        kc.load(str(tmp_path / "missing"))
    assert kc.config_available(str(tmp_path / "missing"))  # named explicitly: load() will say why


def test_in_cluster(tmp_path, monkeypatch):
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token\n")
    (sa / "ca.crt").write_text("CA")
    (sa / "namespace").write_text("pods-ns\n")
    monkeypatch.setattr(kc, "SERVICE_ACCOUNT_DIR", str(sa))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert kc.config_available()
    auth = kc.load()
    assert auth.in_cluster and auth.server == "https://[fd00::1]:443"
    assert auth.token_file == str(sa / "token") and auth.ca_file == str(sa / "ca.crt")
    assert auth.namespace == "pods-ns"


def test_kubeconfig_wins_over_in_cluster(tmp_path, monkeypatch):
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("x")
    monkeypatch.setattr(kc, "SERVICE_ACCOUNT_DIR", str(sa))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("KUBECONFIG", write(tmp_path / "c", config()))
    assert not kc.load().in_cluster


@pytest.mark.parametrize("text, match", [
    ("clusters: [\n  - name: a\n", r"invalid YAML at line \d"),
    ("a: b\n c: d: e\n", r"invalid YAML at line 2"),
    ("- just\n- a list\n", "top level is a list"),
    ("clusters: {a: b}\n", "'clusters' must be a list"),
    ("clusters:\n- cluster: {server: x}\n", "needs a name"),
    ("current-context: [a]\n", "current-context must be a string"),
])
def test_malformed_files(tmp_path, text, match):
    path = write(tmp_path / "bad", text)
    with pytest.raises(KubeConfigError, match=match) as info:
        kc.load(path)
    assert str(tmp_path / "bad") in str(info.value)
    assert "\n" not in str(info.value)


def test_binary_file(tmp_path):
    path = tmp_path / "bin"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + os.urandom(200))
    with pytest.raises(KubeConfigError, match="binary data"):
        kc.load(str(path))
    path.write_bytes(b"\xff\xfe\xfa invalid utf8")
    with pytest.raises(KubeConfigError, match="not UTF-8"):
        kc.load(str(path))


def test_directory(tmp_path):
    with pytest.raises(KubeConfigError, match="is a directory"):
        kc.load(str(tmp_path))


def test_aliases_are_refused(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 10):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 9) + "]\n"
    path = write(tmp_path / "bomb", bomb)
    with pytest.raises(KubeConfigError, match="aliases"):
        kc.load(path)


def test_size_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(kc, "MAX_KUBECONFIG_BYTES", 1024)
    path = write(tmp_path / "big", config() + "# " + "x" * 2000 + "\n")
    with pytest.raises(KubeConfigError, match="larger than"):
        kc.load(path)


def test_missing_references(tmp_path):
    with pytest.raises(KubeConfigError, match="cluster 'c9' not found"):
        kc.load(write(tmp_path / "a", config().replace("cluster: c1\n    user", "cluster: c9\n    user")))
    with pytest.raises(KubeConfigError, match="user 'u9' not found"):
        kc.load(write(tmp_path / "b", config().replace("user: u1", "user: u9")))
    with pytest.raises(KubeConfigError, match="no current-context"):
        kc.load(write(tmp_path / "c", config(current="")))
    with pytest.raises(KubeConfigError, match="has no server"):
        kc.load(write(tmp_path / "d", config(server="''")))


def test_empty_file_named_explicitly(tmp_path):
    with pytest.raises(KubeConfigError, match="no current-context"):
        kc.load(write(tmp_path / "empty", ""))


@pytest.mark.parametrize("provider, replacement", [("gcp", "gke-gcloud-auth-plugin"), ("azure", "kubelogin")])
def test_removed_auth_providers_name_their_replacement(tmp_path, provider, replacement):
    path = write(tmp_path / "c", config(user_body=f"auth-provider:\n      name: {provider}\n      config: {{}}"))
    with pytest.raises(KubeConfigError, match=f"the {provider} auth-provider was removed from kubectl; use the "
                                              f"{replacement} exec credential plugin"):
        kc.load(path)


def test_unknown_auth_provider_is_refused(tmp_path):
    path = write(tmp_path / "c", config(user_body="auth-provider:\n      name: openstack\n      config: {}"))
    with pytest.raises(KubeConfigError, match="auth-provider 'openstack' is not supported"):
        kc.load(path)


@pytest.mark.parametrize("cfg, match", [("{}", "idp-issuer-url is missing"),
                                        ("{idp-issuer-url: https://i}", "client-id is missing")])
def test_oidc_needs_an_issuer_and_a_client(tmp_path, cfg, match):
    path = write(tmp_path / "c", config(user_body=f"auth-provider:\n      name: oidc\n      config: {cfg}"))
    with pytest.raises(KubeConfigError, match=match):
        kc.load(path)


def test_exec_config(tmp_path):
    body = ("exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: ./bin/get-token\n"
            "      args: [--cluster, c1]\n      env:\n      - {name: FOO, value: bar}\n"
            "      installHint: install get-token\n      provideClusterInfo: true")
    auth = kc.load(write(tmp_path / "c", config(user_body=body)))
    ec = auth.exec_config
    assert ec.command == str(tmp_path / "bin" / "get-token")
    assert ec.args == ("--cluster", "c1") and ec.env == (("FOO", "bar"),)
    assert ec.api_version.endswith("v1beta1") and ec.provide_cluster_info and ec.install_hint
    # a bare command name is looked up on PATH, not against the file's directory
    bare = kc.load(write(tmp_path / "d", config(user_body=body.replace("./bin/get-token", "get-token"))))
    assert bare.exec_config.command == "get-token"


def test_exec_config_needs_a_known_api_version(tmp_path):
    body = "exec:\n      apiVersion: client.authentication.k8s.io/v1alpha1\n      command: x"
    with pytest.raises(KubeConfigError, match="v1alpha1.*not supported"):
        kc.load(write(tmp_path / "c", config(user_body=body)))


def test_cert_without_key(tmp_path):
    with pytest.raises(KubeConfigError, match="needs a client key"):
        kc.load(write(tmp_path / "c", config(user_body="client-certificate: a.crt")))


def test_bare_host_server_is_plain_http_without_credentials_as_in_kubectl(tmp_path):
    # client-go's DefaultServerURL: no scheme and (at that point) no CA known -> http://; and
    # an http:// server gets none of the user's credentials.
    auth = kc.load(write(tmp_path / "c", config(server="10.0.0.1:6443")))
    assert auth.server == "http://10.0.0.1:6443"
    assert auth.token is None and auth.withheld == ("token",)
    with pytest.raises(KubeConfigError, match="must be an http"):
        kc.load(write(tmp_path / "d", config(server="ftp://x")))


def test_json_kubeconfig_needs_no_yaml(tmp_path):
    import json
    import sys

    data = {"clusters": [{"name": "c", "cluster": {"server": "https://j:1"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}], "current-context": "x"}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    yaml = sys.modules.pop("yaml", None)
    try:
        assert kc.load(str(path)).server == "https://j:1"
        assert "yaml" not in sys.modules
    finally:
        if yaml is not None:
            sys.modules["yaml"] = yaml
    path.write_text('{"clusters": [}')  # not JSON: YAML reports it with its line
    with pytest.raises(KubeConfigError, match="invalid YAML at line 1"):
        kc.load(str(path))
