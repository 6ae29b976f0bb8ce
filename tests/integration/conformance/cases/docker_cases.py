"""Docker endpoint cases: the docker CLI is the oracle.

Each case sets flags, environment variables, certificates, a context store or a
config.json, then runs `docker inspect --type container web` and `debugkit inspect web`
(or `docker push` and `debugkit toolbox push`, `docker build` and `debugkit toolbox build`
for the registry-auth cases) against the fake engines. What is compared
(DockerCase.summarize): which fake engine got a connection and the request, the path prefix
in front of /vX.Y, the TLS server name and client certificate, what ssh was asked to run,
and the registry credentials the engine was handed (X-Registry-Auth, X-Registry-Config).
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from tests.integration.conformance.cases.base import Case, Difference

FIELDS = ("hangs", "connected", "reached", "server", "prefix", "sni", "client_cert", "ssh", "registry_auth", "registry_config")
PAGE = "docs/remote-engines.md"
CERTS = {"certs/ca.pem": "{ca_pem}", "certs/cert.pem": "{client_a_crt}", "certs/key.pem": "{client_a_key}"}
TLS_ENV = {"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": "{dir}/certs"}
SOCK = "unix://{dir}/docker.sock"


@dataclass(frozen=True)
class DockerCase(Case):
    host: str | None = None          # -H (debugkit -H too)
    context: str | None = None       # --context (debugkit --docker-context)
    action: str = "inspect"          # inspect | push | build

    def argv(self, side: str, *, oracle: str, python: str, subs: dict) -> list[str]:
        flags = []
        if self.host is not None:
            flags += ["-H", self.host.format(**subs)]
        if side == "oracle":
            if self.context is not None:
                flags += ["--context", self.context]
            what = {"inspect": ["inspect", "--type", "container", "web"],
                    "push": ["push", "registry.example:5000/tools/toolbox:1.0"],
                    "build": ["build", "-q", "-t", "conformance/x", f"{subs['dir']}/context"]}[self.action]
            return [oracle, *flags, *what]
        if self.context is not None:
            flags += ["--docker-context", self.context]
        what = {"inspect": ["inspect", "web"],
                "push": ["toolbox", "push", "registry.example:5000/tools/toolbox:1.0"],
                "build": ["toolbox", "build", "--variant", "slim", "--tag", "conformance/x"]}[self.action]
        return [python, "-m", "debugkit", *what, *flags]

    def summarize(self, records: list, plugin_runs: list, workdir) -> dict:
        interesting = ("/containers/web/json", "/push", "/build")
        target = next((r for r in records if "path" in r and r["path"].split("?")[0].endswith(interesting)), None)
        connected = list(dict.fromkeys(r["server"] for r in records if r.get("connection")))
        obs: dict = {"reached": target is not None, "ssh": [_ssh_view(argv) for argv in _ssh_runs(workdir)],
                     "connected": connected}
        if target is not None:
            path = target["path"]
            headers = {k.lower(): v for k, v in target["headers"]}
            obs.update(server=target["server"], prefix=path[:path.find("/v1.")] if "/v1." in path else path,
                       sni=target["sni"], client_cert=target["client_cert"],
                       registry_auth=_decode(headers.get("x-registry-auth")),
                       registry_config=_decode(headers.get("x-registry-config")))
        return obs


def _ssh_runs(workdir) -> list:
    log = workdir / "ssh.log"
    if not log.exists():
        return []
    runs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    log.unlink()
    return runs[:1]


def _ssh_view(argv: list) -> dict:
    """What matters of an ssh command line: where to, as whom, and what to run there."""
    cut = argv.index("--") if "--" in argv else None
    opts, rest = (argv[:cut], argv[cut + 1:]) if cut is not None else (argv[:-4], argv[-4:])
    view = {"host": rest[0] if rest else None, "remote": " ".join(rest[1:]).replace("'", ""),
            "user": opts[opts.index("-l") + 1] if "-l" in opts else None,
            "port": opts[opts.index("-p") + 1] if "-p" in opts else None}
    return view


def _decode(value: str | None):
    if not value:
        return value
    try:
        data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except ValueError:
        return f"undecodable: {value[:40]}"
    if isinstance(data, dict):  # empty fields are the same as absent ones
        data = {k: v for k, v in data.items() if v not in ("", None, {})}
        for key, value in list(data.items()):
            if isinstance(value, dict):
                data[key] = {k: v for k, v in value.items() if v not in ("", None)}
    return data


def _template(data) -> str:
    """JSON with its braces escaped for str.format, the runner's {placeholders} kept."""
    text = json.dumps(data).replace("{", "{{").replace("}", "}}")
    for name in ("dir", "pki"):
        text = text.replace("{{" + name + "}}", "{" + name + "}")
    return text


def context_files(name: str, host: str, *, skip_verify: bool = False, tls: dict | None = None) -> dict:
    """A context as `docker context create` stores it, under the runner's HOME."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_verify}}}
    files = {f"home/.docker/contexts/meta/{digest}/meta.json": _template(meta)}
    for kind, content in (tls or {}).items():
        files[f"home/.docker/contexts/tls/{digest}/docker/{kind}.pem"] = content
    return files


def config_json(data: dict) -> dict:
    return {"home/.docker/config.json": _template(data)}


def helper(name: str, answer: dict) -> dict:
    """A docker-credential-NAME on PATH that answers `get` with `answer` (and records the URL)."""
    body = _template(answer)
    return {f"bin/docker-credential-{name}": f"#!/bin/sh\nread url\necho \"$url\" >> {{dir}}/helper.log\n"
                                            f"[ \"$1\" = get ] || exit 1\necho '{body}'\n"}


def case(id: str, *, fails: bool = False, **kwargs) -> DockerCase:
    """fails: the docker CLI does not get the request to an engine."""
    return DockerCase(id=id, reached_expected=not fails, **kwargs)


AUTH = base64.b64encode(b"pushy:s3cret").decode()
TLS_FILES = {"ca": "{ca_pem}", "cert": "{client_a_crt}", "key": "{client_a_key}"}
BUILD_CONTEXT = {"context/Dockerfile": "FROM scratch\n"}

CASES: list[DockerCase] = [
    # -- where the engine is ------------------------------------------------------------------------------
    case("unix-socket-from-docker-host", env={"DOCKER_HOST": SOCK}),
    case("unix-socket-from-the-flag", host=SOCK),
    case("tcp-plain", env={"DOCKER_HOST": "tcp://docker.example:2375"}),
    case("tcp-without-a-port", env={"DOCKER_HOST": "tcp://docker.example"}),
    case("host-port-without-a-scheme", env={"DOCKER_HOST": "docker.example:2375"}),
    case("tcp-with-a-path-prefix", env={"DOCKER_HOST": "tcp://docker.example:2375/prefix"}),
    case("tcp-ip-address", env={"DOCKER_HOST": "tcp://10.99.0.4:2375"}),
    case("tcp-localhost", host="tcp://localhost:2375"),
    case("tcp-ipv6", env={"DOCKER_HOST": "tcp://[::1]:2375"}),
    case("tcp-empty-host", env={"DOCKER_HOST": "tcp://"}),
    case("empty-docker-host-is-the-default-socket", fails=True, env={"DOCKER_HOST": ""}),
    case("unsupported-scheme", fails=True, env={"DOCKER_HOST": "ftp://docker.example"}),
    case("npipe-on-linux", fails=True, env={"DOCKER_HOST": "npipe:////./pipe/docker_engine"}),
    case("malformed-ipv6", fails=True, env={"DOCKER_HOST": "tcp://[::1"}),
    case("port-out-of-range", fails=True, env={"DOCKER_HOST": "tcp://docker.example:99999"}),
    # -- TLS from the environment -------------------------------------------------------------------------
    case("tls-verify", files=CERTS, env={**TLS_ENV, "DOCKER_HOST": "tcp://docker.example:2376"}),
    case("tls-verify-ca-only", files={"certs/ca.pem": "{ca_pem}"},
         env={**TLS_ENV, "DOCKER_HOST": "tcp://docker.example:2376"}),
    case("tls-verify-without-ca", fails=True, files={"certs/cert.pem": "{client_a_crt}", "certs/key.pem": "{client_a_key}"},
         env={**TLS_ENV, "DOCKER_HOST": "tcp://docker.example:2376"}),
    case("tls-verify-wrong-ca", fails=True, files={"certs/ca.pem": "{other_ca_pem}"},
         env={**TLS_ENV, "DOCKER_HOST": "tcp://docker.example:2376"}),
    case("tls-without-verification", files={"certs/ca.pem": "{other_ca_pem}"},
         env={"DOCKER_TLS": "1", "DOCKER_CERT_PATH": "{dir}/certs", "DOCKER_HOST": "tcp://docker.example:2376"}),
    case("tls-without-verification-or-ca", fails=True, files={"certs/.keep": ""},
         env={"DOCKER_TLS": "1", "DOCKER_CERT_PATH": "{dir}/certs", "DOCKER_HOST": "tcp://docker.example:2376"}),
    case("tls-verify-and-no-port", fails=True, files=CERTS, env={**TLS_ENV, "DOCKER_HOST": "tcp://docker.example"}),
    case("tls-verify-without-docker-host", files=CERTS, env=TLS_ENV),
    case("tls-certificates-from-the-config-directory",
         files={f"home/.docker/{k}.pem": v for k, v in (("ca", "{ca_pem}"), ("cert", "{client_a_crt}"),
                                                          ("key", "{client_a_key}"))},
         env={"DOCKER_TLS_VERIFY": "1", "DOCKER_HOST": "tcp://docker.example:2376"}),
    case("tls-certificates-from-docker-config",
         files={f"cfg/{k}.pem": v for k, v in (("ca", "{ca_pem}"), ("cert", "{client_a_crt}"), ("key", "{client_a_key}"))},
         env={"DOCKER_TLS_VERIFY": "1", "DOCKER_CONFIG": "{dir}/cfg", "DOCKER_HOST": "tcp://docker.example:2376"}),
    case("tls-is-ignored-for-a-unix-socket", files=CERTS, env={**TLS_ENV, "DOCKER_HOST": SOCK}),
    case("https-scheme", fails=True, files=CERTS, env={**TLS_ENV, "DOCKER_HOST": "https://docker.example"},
         differs=Difference({"connected": ["docker-https"], "reached": True, "server": "docker-https", "prefix": "",
                             "sni": "docker.example", "client_cert": "alice"}, "`DOCKER_HOST=https://HOST` is TLS",
                            PAGE)),
    case("http-scheme", fails=True, env={"DOCKER_HOST": "http://docker.example:2375"},
         differs=Difference({"connected": ["docker-plain"], "reached": True, "server": "docker-plain", "prefix": "",
                             "sni": None, "client_cert": None}, "`http://HOST` is plain TCP", PAGE)),
    # -- contexts --------------------------------------------------------------------------------------------
    case("context-flag", context="remote", files=context_files("remote", "tcp://docker.example:2375")),
    case("context-env", env={"DOCKER_CONTEXT": "remote"}, files=context_files("remote", "tcp://docker.example:2375")),
    case("current-context", files={**context_files("remote", "tcp://docker.example:2375"),
                                   **config_json({"currentContext": "remote"})}),
    case("docker-host-beats-docker-context", env={"DOCKER_HOST": "tcp://docker.example:2375", "DOCKER_CONTEXT": "sock"},
         files=context_files("sock", SOCK)),
    case("context-flag-beats-docker-host", context="sock", env={"DOCKER_HOST": "tcp://docker.example:2375"},
         files=context_files("sock", SOCK)),
    case("context-with-tls-material", context="secure",
         files=context_files("secure", "tcp://docker.example:2376", tls=TLS_FILES)),
    case("context-with-a-ca-only", context="secure",
         files=context_files("secure", "tcp://docker.example:2376", tls={"ca": "{ca_pem}"})),
    case("context-skip-tls-verify", context="insecure",
         files=context_files("insecure", "tcp://docker.example:2376", skip_verify=True)),
    case("context-with-a-path-prefix", context="prefixed",
         files=context_files("prefixed", "tcp://docker.example:2375/prefix")),
    case("context-named-default", context="default", env={"DOCKER_HOST": "tcp://docker.example:2375"}),
    case("context-missing", fails=True, context="nowhere"),
    case("context-and-host-together", fails=True, context="remote", host="tcp://docker.example:2375",
         files=context_files("remote", "tcp://docker.example:2375")),
    case("context-with-an-empty-host", fails=True, context="blank", files=context_files("blank", "")),
    case("tls-environment-is-ignored-for-a-context", context="remote",
         files={**context_files("remote", "tcp://docker.example:2375"), "certs/ca.pem": "{other_ca_pem}"},
         env=TLS_ENV),
    # -- ssh -------------------------------------------------------------------------------------------------
    case("ssh-user-and-port", env={"DOCKER_HOST": "ssh://deploy@docker.example:2222"}),
    case("ssh-host-only", host="ssh://docker.example"),
    case("ssh-socket-path", env={"DOCKER_HOST": "ssh://docker.example/run/other.sock"}),
    case("ssh-password-in-the-url", fails=True, env={"DOCKER_HOST": "ssh://deploy:pw@docker.example"}),
    case("ssh-query-string", fails=True, env={"DOCKER_HOST": "ssh://docker.example?x=1"}),
    # -- registry credentials --------------------------------------------------------------------------------
    case("push-without-credentials", action="push", env={"DOCKER_HOST": SOCK}),
    case("push-auths-entry", action="push", env={"DOCKER_HOST": SOCK},
         files=config_json({"auths": {"registry.example:5000": {"auth": AUTH}}})),
    case("push-auths-entry-with-scheme", action="push", env={"DOCKER_HOST": SOCK},
         files=config_json({"auths": {"https://registry.example:5000": {"auth": AUTH}}})),
    case("push-identity-token", action="push", env={"DOCKER_HOST": SOCK},
         files=config_json({"auths": {"registry.example:5000": {"auth": base64.b64encode(b"<token>:").decode(),
                                                               "identitytoken": "id-tok"}}})),
    case("push-credential-store", action="push", env={"DOCKER_HOST": SOCK},
         files={**config_json({"credsStore": "fake", "auths": {"registry.example:5000": {}}}),
                **helper("fake", {"ServerURL": "registry.example:5000", "Username": "helped", "Secret": "pw"})}),
    case("push-credential-helper-for-the-registry", action="push", env={"DOCKER_HOST": SOCK},
         files={**config_json({"credHelpers": {"registry.example:5000": "fake"}}),
                **helper("fake", {"ServerURL": "registry.example:5000", "Username": "<token>", "Secret": "tok"})}),
    case("push-credential-helper-beats-auths", action="push", env={"DOCKER_HOST": SOCK},
         files={**config_json({"credHelpers": {"registry.example:5000": "fake"},
                               "auths": {"registry.example:5000": {"auth": AUTH}}}),
                **helper("fake", {"ServerURL": "registry.example:5000", "Username": "helped", "Secret": "pw"})}),
    case("build-sends-every-credential", action="build", env={"DOCKER_HOST": SOCK, "DOCKER_BUILDKIT": "0"},
         files={**BUILD_CONTEXT, **config_json({"auths": {"registry.example:5000": {"auth": AUTH},
                                                         "https://index.docker.io/v1/": {"auth": AUTH}}})}),
]
