"""A thin, dict-based view of the Kubernetes API for the debugkit backend.

It reuses the kubernetes client's kubeconfig loading, its REST transport (TLS, client
certificates, bearer tokens, exec credential plugins) and its websocket client, but
not its generated API classes: in client 37 those build some 800 pydantic models on
import, about 0.9 s of every `debugkit attach pod/...`. Every call here returns the
JSON the API server sent, as plain dicts, and raises the client's ApiException on
an error status, exactly as the generated methods would.
"""
from __future__ import annotations

import contextlib
import json
import os
import urllib.parse
from typing import Iterator

from debugkit import __version__
from debugkit.core.errors import InvalidInput

JSON_PATCH = "application/json-patch+json"


class KubeAPI:
    def __init__(self, configuration):
        from kubernetes.client.rest import RESTClientObject

        self.configuration = configuration
        self.rest = RESTClientObject(configuration)
        self.host = configuration.host.rstrip("/")

    # -- transport --------------------------------------------------------------------

    def _headers(self, content_type: str | None = None) -> dict:
        cfg = self.configuration
        if getattr(cfg, "refresh_api_key_hook", None):
            cfg.refresh_api_key_hook(cfg)  # exec plugins and expiring tokens
        headers = {"Accept": "application/json", "User-Agent": f"debugkit/{__version__}"}
        bearer = cfg.auth_settings().get("BearerToken")
        if bearer and bearer.get("value"):
            headers["authorization"] = bearer["value"]
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _url(self, path: str, query: dict | None = None) -> str:
        clean = {k: v for k, v in (query or {}).items() if v is not None}
        return self.host + path + ("?" + urllib.parse.urlencode(clean, doseq=True) if clean else "")

    def request(self, method: str, path: str, *, query: dict | None = None, body=None,
                content_type: str | None = None, timeout: float | None = 60, stream: bool = False):
        from kubernetes.client.exceptions import ApiException

        if body is not None and content_type is None:
            content_type = "application/json"
        resp = self.rest.request(method, self._url(path, query), headers=self._headers(content_type),
                                 body=body, _request_timeout=timeout)
        if not 200 <= resp.status < 300:
            raise ApiException(http_resp=resp.response if hasattr(resp, "response") else resp)
        if stream:
            return resp.response
        data = resp.read()
        return json.loads(data) if data else {}

    # -- the calls the backend makes ------------------------------------------------------

    def read_pod(self, namespace: str, name: str) -> dict:
        return self.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")

    def read_node(self, name: str) -> dict:
        return self.request("GET", f"/api/v1/nodes/{name}")

    def read_namespace(self, name: str) -> dict:
        return self.request("GET", f"/api/v1/namespaces/{name}")

    def list_pods(self, namespace: str | None = None) -> dict:
        path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
        return self.request("GET", path)

    def patch_ephemeral_containers(self, namespace: str, name: str, patch: list) -> dict:
        return self.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/ephemeralcontainers",
                            body=patch, content_type=JSON_PATCH)

    def watch_pod(self, namespace: str, name: str, *, resource_version: str, timeout_seconds: int) -> Iterator[dict]:
        """Watch events for one pod, until the server ends the watch or the caller stops."""
        resp = self.request("GET", f"/api/v1/namespaces/{namespace}/pods", stream=True, timeout=timeout_seconds + 5,
                            query={"watch": "true", "fieldSelector": f"metadata.name={name}",
                                   "resourceVersion": resource_version, "timeoutSeconds": timeout_seconds,
                                   "allowWatchBookmarks": "false"})
        buffer = b""
        try:
            for chunk in resp.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            resp.close()  # a watch cut short must not go back to the pool half-read
            resp.release_conn()

    def websocket(self, path: str, query: list[tuple[str, str]]):
        """attach or exec over the websocket (v5.channel.k8s.io, v4 fallback), binary channels."""
        from kubernetes.stream.ws_client import websocket_call

        return websocket_call(self.configuration, "GET", self.host + path, query_params=query,
                              headers=self._headers(), _preload_content=False, binary=True)


def connect(*, kubeconfig: str | None, context: str | None):
    """(KubeAPI, the context's namespace) honouring KUBECONFIG, current context, in-cluster."""
    import yaml
    from kubernetes import config  # lazy: slow to import
    from kubernetes.client.configuration import Configuration
    from kubernetes.config.config_exception import ConfigException

    
    namespace = None
    cfg = Configuration()
    try:
        if kubeconfig or os.environ.get("KUBECONFIG") or os.path.exists(os.path.expanduser("~/.kube/config")):
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
            _contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                active = next((c for c in _contexts if c["name"] == context), active)
            namespace = (active or {}).get("context", {}).get("namespace")
        else:
            config.load_incluster_config(client_configuration=cfg)
            with contextlib.suppress(OSError):
                with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace", encoding="utf-8") as fh:
                    namespace = fh.read().strip()
    except (ConfigException, OSError, TypeError, ValueError, KeyError, AttributeError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot load Kubernetes configuration: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return KubeAPI(cfg), namespace or "default"


def config_available(kubeconfig: str | None = None) -> bool:
    if kubeconfig or os.environ.get("KUBECONFIG"):
        return True
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    return os.path.exists(os.path.expanduser("~/.kube/config"))
