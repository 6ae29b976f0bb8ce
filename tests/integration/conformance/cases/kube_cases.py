"""Kubeconfig cases: kubectl is the oracle.

Each case writes a kubeconfig (and whatever files it names), then runs
`kubectl get --raw /api/v1/namespaces/default/pods/web` (or `kubectl get pod web`, which
takes the namespace from the context) and `debugkit inspect pod/web [-n default]` with the
same environment and flags, against the fakes. The fake API server answers 404 to the pod,
so each client makes one request for it. What is compared (KubeCase.summarize): whether
that request arrived and where, its path, Authorization, Impersonate-* headers, client
certificate and SNI; what the proxies were asked; what the exec plugin was given; and for
the oidc auth-provider, the tokens in the kubeconfig afterwards.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from tests.integration.conformance.cases.base import Case, Difference

TARGET = "/api/v1/namespaces/{ns}/pods/web"
FIELDS = ("hangs", "reached", "server", "path", "authorization", "impersonate", "client_cert", "sni", "proxy", "plugin",
          "tokens")
CA = "    certificate-authority: {pki}/ca.crt\n"
TOKEN = "    token: tok-1\n"
PROXY_CREDENTIALS = "pxuser:px%3Apass%401"


def kubeconfig(server: str = "https://kube.example", *, cluster: str = CA, user: str = TOKEN, context: str = "",
               extra: str = "") -> str:
    return ("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
            f"clusters:\n- name: k\n  cluster:\n    server: {server}\n{cluster}"
            f"users:\n- name: u\n  user:\n{user}"
            f"contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n{context}{extra}")


def plugin(*args: str, api: str = "client.authentication.k8s.io/v1", mode: str | None = "Never",
           extra: str = "") -> str:
    text = f"    exec:\n      apiVersion: {api}\n      command: {{plugin}}\n"
    if args:
        text += "      args:\n" + "".join(f"      - \"{a}\"\n" for a in args)
    if mode:
        text += f"      interactiveMode: {mode}\n"
    return text + extra


@dataclass(frozen=True)
class KubeCase(Case):
    kubeconfig: str | None = kubeconfig()
    namespaced: bool = False          # True: the namespace comes from the configuration
    namespace: str = "default"        # the namespace the request is expected in

    def argv(self, side: str, *, oracle: str, python: str, subs: dict) -> list[str]:
        config = ["--kubeconfig", f"{subs['dir']}/kubeconfig"] if self.kubeconfig is not None else []
        if side == "oracle":
            what = ["get", "pod", "web"] if self.namespaced else ["get", "--raw", TARGET.format(ns="default")]
            return [oracle, *config, *what, *self.flags]
        ns = [] if self.namespaced else ["-n", "default"]
        return [python, "-m", "debugkit", "inspect", "pod/web", *ns, *config, *self.flags]

    @property
    def files_with_kubeconfig(self) -> dict:
        return self.files

    def summarize(self, records: list, plugin_runs: list, workdir) -> dict:
        target = next((r for r in records if r.get("path", "").split("?")[0].endswith("/pods/web")), None)
        obs = {"reached": target is not None, "plugin": [_plugin_view(run) for run in plugin_runs],
               "proxy": [_proxy_view(r) for r in records if "proxy" in r]}
        if target is not None:
            headers = [(k.lower(), v) for k, v in target["headers"]]
            auth = next((v for k, v in headers if k == "authorization"), None)
            obs.update(server=target["server"], path=target["path"].split("?")[0], authorization=_jwt_view(auth),
                       impersonate=sorted([k, v] for k, v in headers if k.startswith("impersonate-")),
                       client_cert=target["client_cert"], sni=target["sni"])
        kc = workdir / "kubeconfig"
        if kc.exists() and "auth-provider" in kc.read_text():
            import yaml

            users = (yaml.safe_load(kc.read_text()) or {}).get("users") or []
            cfg = ((users[0].get("user") or {}).get("auth-provider") or {}).get("config") or {} if users else {}
            obs["tokens"] = [_jwt_view("Bearer " + str(cfg.get("id-token"))), cfg.get("refresh-token")]
        return obs


def _jwt_view(auth: str | None) -> str | None:
    """A Bearer JWT made by the fakes, as 'jwt serial N' (its exp differs between runs)."""
    if not auth or not auth.startswith("Bearer ") or auth.count(".") != 2:
        return auth
    try:
        claims = json.loads(base64.urlsafe_b64decode(auth.split(".")[1] + "=="))
        return f"Bearer jwt serial {claims['n']}"
    except (ValueError, KeyError):
        return auth


def _plugin_view(run: dict) -> dict:
    return {"exec_info": run.get("exec_info"), "stdin_tty": run.get("stdin_tty"), "args": run.get("args"),
            "env": run.get("env")}


def _proxy_view(record: dict) -> dict:
    return {k: record.get(k) for k in ("proxy", "kind", "target", "proxy_authorization", "address_type", "user")
            if record.get(k) is not None}


def reach(**changed) -> dict:
    """The observation of a plain GET of the pod over TLS with the default token, changed."""
    return {"reached": True, "server": "kube-tls", "path": "/api/v1/namespaces/default/pods/web",
            "authorization": "Bearer tok-1", "impersonate": [], "client_cert": None, "sni": "kube.example",
            **changed}


def case(id: str, *, fails: bool = False, **kwargs) -> KubeCase:
    """fails: kubectl does not get the request to the server (an error, or it hangs)."""
    files = dict(kwargs.pop("files", {}))
    config = kwargs.pop("kubeconfig", kubeconfig())
    if config is not None:
        files["kubeconfig"] = config
    return KubeCase(id=id, files=files, kubeconfig=config, reached_expected=not fails, **kwargs)


def _proxy(url: str) -> str:
    return f"    proxy-url: {url}\n"


EXEC_EXT = ("    extensions:\n    - name: client.authentication.k8s.io/exec\n      extension:\n"
            "        audience: conformance\n        tier: gold\n")
OIDC = ("    auth-provider:\n      name: oidc\n      config:\n        client-id: kubectl\n        client-secret: s3cret\n"
        "        idp-issuer-url: https://issuer.example\n        idp-certificate-authority: {pki}/ca.crt\n")
IN_CLUSTER = {"/run/secrets/kubernetes.io/serviceaccount/token": "sa-token\n",
              "/run/secrets/kubernetes.io/serviceaccount/ca.crt": "{ca_pem}",
              "/run/secrets/kubernetes.io/serviceaccount/namespace": "shop"}
IN_CLUSTER_ENV = {"KUBERNETES_SERVICE_HOST": "kube.example", "KUBERNETES_SERVICE_PORT": "443"}

CASES: list[KubeCase] = [
    # -- the server and TLS -------------------------------------------------------------------------
    case("ca-file-token"),
    case("ca-data", kubeconfig=kubeconfig(cluster="    certificate-authority-data: {ca_data}\n")),
    case("ca-file-and-ca-data", fails=True, kubeconfig=kubeconfig(cluster=CA + "    certificate-authority-data: {ca_data}\n"),
         differs=Difference(reach(), "a cluster with both certificate-authority and certificate-authority-data")),
    case("insecure-skip-tls-verify", kubeconfig=kubeconfig(cluster="    insecure-skip-tls-verify: true\n")),
    case("no-ca-system-roots", fails=True, kubeconfig=kubeconfig(cluster="")),
    case("wrong-ca", fails=True, kubeconfig=kubeconfig(cluster="    certificate-authority: {pki}/other-ca.crt\n")),
    case("tls-server-name", kubeconfig=kubeconfig("https://10.99.0.1", cluster=CA + "    tls-server-name: alt.example\n")),
    case("tls-server-name-not-in-certificate", fails=True,
         kubeconfig=kubeconfig("https://10.99.0.1", cluster=CA + "    tls-server-name: wrong.example\n")),
    case("ip-address-server", kubeconfig=kubeconfig("https://10.99.0.1")),
    case("explicit-port", kubeconfig=kubeconfig("https://kube.example:6443")),
    case("ipv6-server", kubeconfig=kubeconfig("https://[::1]:6443")),
    case("path-prefix", kubeconfig=kubeconfig("https://kube.example/prefix")),
    case("path-prefix-trailing-slash", kubeconfig=kubeconfig("https://kube.example/prefix/")),
    case("query-and-fragment-dropped", kubeconfig=kubeconfig("\"https://kube.example/a/b?x=1#frag\"")),
    case("bare-host-is-plain-http", kubeconfig=kubeconfig("kube.example:80")),
    case("bare-host-with-ca-is-still-http", fails=True, kubeconfig=kubeconfig("10.99.0.1:443")),
    case("http-server-gets-no-token", kubeconfig=kubeconfig("http://kube.example")),
    case("http-server-gets-no-basic-auth",
         kubeconfig=kubeconfig("http://kube.example", user="    username: alice\n    password: pw\n")),
    case("http-server-gets-no-client-certificate",
         kubeconfig=kubeconfig("http://kube.example", user="    client-certificate: {pki}/client-a.crt\n"
                                                          "    client-key: {pki}/client-a.key\n")),
    case("http-server-runs-no-exec-plugin", kubeconfig=kubeconfig("http://kube.example", user=plugin("--token", "x"))),
    case("http-server-still-gets-impersonation",
         kubeconfig=kubeconfig("http://kube.example", user=TOKEN + "    as: bob\n")),
    case("server-userinfo-is-basic-auth", kubeconfig=kubeconfig(
        "https://alice:pw@kube.example", user="    client-certificate: {pki}/client-a.crt\n"
                                            "    client-key: {pki}/client-a.key\n")),
    case("server-userinfo-beats-a-token", kubeconfig=kubeconfig("https://alice:pw@kube.example")),
    case("user-without-credentials", fails=True, kubeconfig=kubeconfig(user="    {{}}\n"),
         differs=Difference(reach(authorization=None), "never prompts for a user name and password")),
    case("server-userinfo-over-http", kubeconfig=kubeconfig("http://alice:pw@kube.example", user="    {{}}\n"),
         differs=Difference({"authorization": None},
                            "the user:password of an http:// server URL is not sent")),
    case("malformed-ipv6-server", fails=True, kubeconfig=kubeconfig("\"http://[::1\"")),
    case("port-out-of-range", fails=True, kubeconfig=kubeconfig("https://127.0.0.1:99999")),
    case("control-character-in-server", fails=True, kubeconfig=kubeconfig("\"https://kube\\texample\"")),
    case("unsupported-server-scheme", fails=True, kubeconfig=kubeconfig("ftp://kube.example")),
    # -- credentials ---------------------------------------------------------------------------------------
    case("token-with-trailing-newline", fails=True, kubeconfig=kubeconfig(user="    token: |\n      tok-1\n"),
         differs=Difference(reach(), "strips the whitespace around a token")),
    case("token-file", files={"token": "tok-file"}, kubeconfig=kubeconfig(user="    tokenFile: {dir}/token\n")),
    case("token-file-trailing-newline", files={"token": "tok-file\n"},
         kubeconfig=kubeconfig(user="    tokenFile: {dir}/token\n")),
    case("token-file-relative-to-the-kubeconfig", files={"sub/token": "tok-rel"},
         kubeconfig=kubeconfig(user="    tokenFile: sub/token\n")),
    case("token-and-token-file", files={"token": "tok-file"},
         kubeconfig=kubeconfig(user="    token: tok-1\n    tokenFile: {dir}/token\n")),
    case("token-file-missing-but-token", kubeconfig=kubeconfig(user="    token: tok-1\n    tokenFile: {dir}/nope\n")),
    case("token-file-missing", fails=True, kubeconfig=kubeconfig(user="    tokenFile: {dir}/nope\n")),
    case("token-file-is-a-fifo", fails=True, files={"token": "<fifo>"},
         kubeconfig=kubeconfig(user="    tokenFile: {dir}/token\n"),
         differs=Difference({"hangs": False}, "a tokenFile, certificate-authority, client certificate or key that is not a regular file")),
    case("basic-auth", kubeconfig=kubeconfig(user="    username: alice\n    password: pw\n")),
    case("token-and-basic-auth", fails=True, kubeconfig=kubeconfig(user="    token: tok-1\n    username: alice\n    password: pw\n"),
         differs=Difference(reach(), "a token and basic auth in one user")),
    case("client-certificate-files", kubeconfig=kubeconfig(user="    client-certificate: {pki}/client-a.crt\n"
                                                              "    client-key: {pki}/client-a.key\n")),
    case("client-certificate-data", kubeconfig=kubeconfig(user="    client-certificate-data: {client_cert_data}\n"
                                                             "    client-key-data: {client_key_data}\n")),
    case("client-certificate-and-token", kubeconfig=kubeconfig(user=TOKEN + "    client-certificate: {pki}/client-a.crt\n"
                                                                    "    client-key: {pki}/client-a.key\n")),
    case("client-certificate-without-key", fails=True, kubeconfig=kubeconfig(user="    client-certificate: {pki}/client-a.crt\n")),
    case("relative-certificate-paths", files={"certs/ca.crt": "{ca_pem}", "certs/a.crt": "{client_a_crt}",
                                              "certs/a.key": "{client_a_key}"},
         kubeconfig=kubeconfig(cluster="    certificate-authority: certs/ca.crt\n",
                               user="    client-certificate: certs/a.crt\n    client-key: certs/a.key\n")),
    case("tilde-in-a-path", fails=True, files={"home/ca.crt": "{ca_pem}"},
         kubeconfig=kubeconfig(cluster="    certificate-authority: ~/ca.crt\n"),
         differs=Difference(reach(), "`~` at the start of a path")),
    case("certificate-authority-is-a-fifo", fails=True, files={"ca-fifo": "<fifo>"},
         kubeconfig=kubeconfig(cluster="    certificate-authority: {dir}/ca-fifo\n"),
         differs=Difference({"hangs": False}, "a tokenFile, certificate-authority, client certificate or key that is not a regular file")),
    # -- exec credential plugins -----------------------------------------------------------------------
    case("exec-v1-token", kubeconfig=kubeconfig(user=plugin("--token", "exec-tok"))),
    case("exec-v1beta1-token", kubeconfig=kubeconfig(user=plugin("--token", "exec-tok",
                                                                  api="client.authentication.k8s.io/v1beta1",
                                                                  mode=None))),
    case("exec-v1-without-interactive-mode", fails=True, kubeconfig=kubeconfig(user=plugin("--token", "exec-tok", mode=None)),
         differs=Difference({**reach(authorization="Bearer exec-tok"), "plugin": [{
             "exec_info": {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                           "spec": {"interactive": False}},
             "stdin_tty": False, "args": ["--token", "exec-tok"], "env": {}}]},
             "an exec plugin of apiVersion v1 without interactiveMode")),
    case("exec-client-certificate", kubeconfig=kubeconfig(user=plugin("--cert"))),
    case("exec-args-and-env", kubeconfig=kubeconfig(user=plugin("--token", "t", "--show-env", "FOO,BAR", extra=(
        "      env:\n      - name: FOO\n        value: foo-value\n      - name: BAR\n        value: \"\"\n")))),
    case("exec-provide-cluster-info", kubeconfig=kubeconfig(
        cluster=CA + "    tls-server-name: kube.example\n" + EXEC_EXT,
        user=plugin("--token", "t", extra="      provideClusterInfo: true\n"))),
    case("exec-cluster-info-not-asked-for", kubeconfig=kubeconfig(cluster=CA + EXEC_EXT, user=plugin("--token", "t"))),
    case("exec-if-available-without-a-terminal", kubeconfig=kubeconfig(user=plugin("--token", "t", mode="IfAvailable"))),
    case("exec-always-without-a-terminal", fails=True, kubeconfig=kubeconfig(user=plugin("--token", "t", mode="Always"))),
    case("exec-command-missing", fails=True, kubeconfig=kubeconfig(
        user="    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: no-such-plugin\n"
             "      interactiveMode: Never\n")),
    case("exec-fails", fails=True, kubeconfig=kubeconfig(user=plugin("--exit", "3"))),
    case("exec-prints-garbage", fails=True, kubeconfig=kubeconfig(user=plugin("--garbage"))),
    case("exec-answers-another-api-version", fails=True, kubeconfig=kubeconfig(
        user=plugin("--token", "t", "--api", "client.authentication.k8s.io/v1beta1"))),
    case("exec-and-token", kubeconfig=kubeconfig(user=TOKEN + plugin("--token", "exec-tok"))),
    case("exec-relative-command", kubeconfig=kubeconfig(user=plugin("--token", "rel").replace("{plugin}", "./plugin"))),
    case("exec-command-from-path", files={"bin/conformance-plugin": "#!/bin/sh\nexec {plugin} \"$@\"\n"},
         kubeconfig=kubeconfig(user=plugin("--token", "on-path").replace("{plugin}", "conformance-plugin"))),
    # -- auth-provider ------------------------------------------------------------------------------------
    case("oidc-valid-id-token", kubeconfig=kubeconfig(user=OIDC + "        id-token: {valid_jwt}\n"
                                                                 "        refresh-token: refresh-1\n")),
    case("oidc-refresh", kubeconfig=kubeconfig(user=OIDC + "        id-token: {expired_jwt}\n"
                                                          "        refresh-token: refresh-1\n")),
    case("oidc-expired-without-refresh-token", fails=True, kubeconfig=kubeconfig(user=OIDC + "        id-token: {expired_jwt}\n")),
    case("oidc-refresh-refused", fails=True, kubeconfig=kubeconfig(user=OIDC + "        id-token: {expired_jwt}\n"
                                                                  "        refresh-token: revoked\n")),
    case("oidc-without-client-id", fails=True, kubeconfig=kubeconfig(
        user="    auth-provider:\n      name: oidc\n      config:\n        idp-issuer-url: https://issuer.example\n"
             "        id-token: {valid_jwt}\n")),
    case("oidc-and-token", kubeconfig=kubeconfig(user=TOKEN + OIDC + "        id-token: {valid_jwt}\n")),
    case("auth-provider-gcp", fails=True, kubeconfig=kubeconfig(user="    auth-provider:\n      name: gcp\n")),
    case("auth-provider-azure", fails=True, kubeconfig=kubeconfig(user="    auth-provider:\n      name: azure\n")),
    # -- impersonation ------------------------------------------------------------------------------------
    case("impersonate-user", kubeconfig=kubeconfig(user=TOKEN + "    as: bob\n")),
    case("impersonate-uid-and-groups", kubeconfig=kubeconfig(
        user=TOKEN + "    as: bob\n    as-uid: \"42\"\n    as-groups:\n    - devs\n    - ops\n")),
    case("impersonate-user-extra", kubeconfig=kubeconfig(
        user=TOKEN + "    as: bob\n    as-user-extra:\n      scopes:\n      - read\n      - write\n"
                     "      \"example.com/team name\":\n      - blue\n")),
    case("as-flag", flags=("--as", "carol")),
    case("as-flags-over-the-kubeconfig", flags=("--as", "carol", "--as-group", "g3", "--as-uid", "7"),
         kubeconfig=kubeconfig(user=TOKEN + "    as: bob\n    as-groups:\n    - devs\n")),
    case("as-group-flag-without-as", fails=True, flags=("--as-group", "g3")),
    case("as-groups-without-as-in-the-kubeconfig", fails=True, kubeconfig=kubeconfig(user=TOKEN + "    as-groups:\n    - devs\n")),
    # -- proxies ---------------------------------------------------------------------------------------------
    case("proxy-url-http", kubeconfig=kubeconfig(cluster=CA + _proxy("http://proxy.example:3128"))),
    case("proxy-url-http-with-credentials",
         kubeconfig=kubeconfig(cluster=CA + _proxy(f"http://{PROXY_CREDENTIALS}@proxy.example:3129"))),
    case("proxy-url-http-credentials-missing", fails=True, kubeconfig=kubeconfig(cluster=CA + _proxy("http://proxy.example:3129"))),
    case("proxy-url-socks5", kubeconfig=kubeconfig(cluster=CA + _proxy("socks5://proxy.example:1080"))),
    case("proxy-url-socks5-with-credentials",
         kubeconfig=kubeconfig(cluster=CA + _proxy(f"socks5://{PROXY_CREDENTIALS}@proxy.example:1081"))),
    case("proxy-url-https-is-refused", fails=True, kubeconfig=kubeconfig(cluster=CA + _proxy("https://proxy.example:3128")),
         differs=Difference({"proxy": []}, "an https:// proxy is refused")),
    case("https-proxy-env", env={"HTTPS_PROXY": "http://proxy.example:3128"}),
    case("https-proxy-env-lower-case", env={"https_proxy": "http://proxy.example:3128"}),
    case("https-proxy-env-without-scheme", env={"HTTPS_PROXY": "proxy.example:3128"}),
    case("https-proxy-env-socks5", env={"HTTPS_PROXY": "socks5://proxy.example:1080"}),
    case("https-proxy-env-with-credentials", env={"HTTPS_PROXY": f"http://{PROXY_CREDENTIALS}@proxy.example:3129"}),
    case("http-proxy-env-is-not-for-https", env={"HTTP_PROXY": "http://proxy.example:3128"}),
    case("http-proxy-env-for-an-http-server", env={"HTTP_PROXY": "http://proxy.example:3128"},
         kubeconfig=kubeconfig("http://kube.example")),
    case("http-proxy-env-refused-under-cgi", fails=True, env={"HTTP_PROXY": "http://proxy.example:3128", "REQUEST_METHOD": "GET"},
         kubeconfig=kubeconfig("http://kube.example")),
    case("no-proxy-exact-name", env={"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "kube.example"}),
    case("no-proxy-leading-dot", env={"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": ".example"}),
    case("no-proxy-parent-domain", env={"HTTPS_PROXY": "http://proxy.example:3128", "no_proxy": "example"}),
    case("no-proxy-another-name", env={"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "other.example"}),
    case("no-proxy-cidr", env={"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "10.99.0.0/24"},
         kubeconfig=kubeconfig("https://10.99.0.1")),
    case("no-proxy-ip", env={"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "10.99.0.1"},
         kubeconfig=kubeconfig("https://10.99.0.1")),
    case("no-proxy-star", env={"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "*"}),
    case("no-proxy-other-port", env={"HTTPS_PROXY": "http://proxy.example:3128", "NO_PROXY": "kube.example:6443"}),
    case("loopback-is-never-proxied", env={"HTTPS_PROXY": "http://proxy.example:3128"},
         kubeconfig=kubeconfig("https://127.0.0.1:6443")),
    case("localhost-is-never-proxied", env={"HTTPS_PROXY": "http://proxy.example:3128"},
         kubeconfig=kubeconfig("https://localhost:6443")),
    case("proxy-url-beats-the-environment", env={"HTTPS_PROXY": "http://proxy.example:3128"},
         kubeconfig=kubeconfig(cluster=CA + _proxy("socks5://proxy.example:1080"))),
    # -- which configuration, which namespace -----------------------------------------------------------------
    case("kubeconfig-env-merge-first-file-wins", kubeconfig=None,
         files={"a.yaml": kubeconfig(user="    token: tok-a\n"), "b.yaml": kubeconfig(user="    token: tok-b\n")},
         env={"KUBECONFIG": "{dir}/a.yaml:{dir}/b.yaml"}),
    case("context-flag", flags=("--context", "other"), kubeconfig=(
        kubeconfig() + "- name: other\n  context:\n    cluster: k\n    user: u2\n").replace(
        "users:\n", "users:\n- name: u2\n  user:\n    token: tok-other\n")),
    case("namespace-from-the-context", namespaced=True, namespace="shop",
         kubeconfig=kubeconfig(context="    namespace: shop\n")),
    case("namespace-defaults-to-default", namespaced=True),
    case("in-cluster", kubeconfig=None, namespaced=True, namespace="shop", env=IN_CLUSTER_ENV, root_files=IN_CLUSTER),
    case("in-cluster-pod-namespace", kubeconfig=None, namespaced=True, namespace="other",
         env={**IN_CLUSTER_ENV, "POD_NAMESPACE": "other"}, root_files=IN_CLUSTER),
    case("in-cluster-as-flag", kubeconfig=None, env=IN_CLUSTER_ENV, root_files=IN_CLUSTER, flags=("--as", "bob"),
         differs=Difference({"server": "kube-tls", "authorization": "Bearer sa-token", "sni": "kube.example"},
                            "`--as` (or `--request-timeout`) in a pod")),
]
