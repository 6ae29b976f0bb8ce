"""Read an image's config and files from an OCI/Docker v2 registry, without running it.

Used by the Kubernetes backend: a pod spec often says nothing about the user, the
image config does (`USER nonroot:nonroot`), and the names need the image's own
/etc/passwd and /etc/group, which live in its layers. Anonymous bearer-token flow,
and credentials from the docker config (`~/.docker/config.json` auths) when present.
"""
from __future__ import annotations

import base64
import json
import os
import re
import tarfile
from dataclasses import dataclass

from debugkit.core.errors import DebugkitError

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
MAX_LAYER_BYTES = 512 << 20    # give up on /etc files in layers bigger than this
MAX_FILE_BYTES = 1 << 20
DOCKER_HUB = "registry-1.docker.io"


class RegistryError(DebugkitError):
    pass


@dataclass(frozen=True)
class ImageRef:
    registry: str
    repository: str
    reference: str  # tag or digest

    @property
    def insecure(self) -> bool:
        host = self.registry.split(":")[0]
        extra = os.environ.get("DEBUGKIT_INSECURE_REGISTRIES", "").split(",")
        return host in ("localhost", "127.0.0.1", "::1") or self.registry in extra


def parse_ref(image: str) -> ImageRef:
    """`nginx`, `ghcr.io/o/r:tag`, `127.0.0.1:5000/x/y@sha256:...` -> registry, repository, ref."""
    name, digest = (image.split("@", 1) + [None])[:2]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, name
    tag = None
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return ImageRef(registry, path, digest or tag or "latest")


def _docker_config_auth(registry: str) -> tuple[str, str] | None:
    path = os.path.join(os.environ.get("DOCKER_CONFIG", os.path.expanduser("~/.docker")), "config.json")
    try:
        with open(path, encoding="utf-8") as fh:
            auths = json.load(fh).get("auths", {})
    except (OSError, ValueError):
        return None
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == DOCKER_HUB:
        keys += ["https://index.docker.io/v1/", "index.docker.io"]
    for key in keys:
        entry = auths.get(key)
        if entry and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, password
    return None


class RegistryClient:
    def __init__(self, ref: ImageRef, *, timeout: float = 20):
        import requests  # lazy

        self.ref = ref
        self.timeout = timeout
        self.session = requests.Session()
        self.base = f"{'http' if ref.insecure else 'https'}://{ref.registry}/v2/{ref.repository}"
        self._token: str | None = None

    def _get(self, url: str, *, accept: str | None = None, stream: bool = False):
        import requests

        headers = {"Accept": accept} if accept else {}
        for attempt in range(2):
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            try:
                resp = self.session.get(url, headers=headers, timeout=self.timeout, stream=stream)
            except requests.RequestException as exc:
                raise RegistryError(f"registry {self.ref.registry} unreachable: {exc.__class__.__name__}") from exc
            if resp.status_code == 401 and attempt == 0 and self._authenticate(resp):
                continue
            if resp.status_code >= 400:
                raise RegistryError(f"registry {self.ref.registry} answered {resp.status_code} for "
                                    f"{self.ref.repository}:{self.ref.reference}")
            return resp
        raise RegistryError(f"registry {self.ref.registry} refused our credentials")

    def _authenticate(self, resp) -> bool:
        challenge = resp.headers.get("WWW-Authenticate", "")
        if challenge.lower().startswith("basic"):
            auth = _docker_config_auth(self.ref.registry)
            if auth is None or self.session.auth is not None:
                return False
            self.session.auth = auth
            return True
        if not challenge.lower().startswith("bearer"):
            return False
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            return False
        params.setdefault("scope", f"repository:{self.ref.repository}:pull")
        auth = _docker_config_auth(self.ref.registry)
        token_resp = self.session.get(realm, params=params, auth=auth, timeout=self.timeout)
        if token_resp.status_code >= 400:
            return False
        body = token_resp.json()
        self._token = body.get("token") or body.get("access_token")
        return bool(self._token)

    def manifest(self, *, architecture: str = "amd64", os_name: str = "linux") -> dict:
        doc = self._get(f"{self.base}/manifests/{self.ref.reference}", accept=MANIFEST_TYPES).json()
        if "manifests" in doc:  # an index: pick the node's platform
            for entry in doc["manifests"]:
                plat = entry.get("platform", {})
                if plat.get("architecture") == architecture and plat.get("os") == os_name:
                    return self._get(f"{self.base}/manifests/{entry['digest']}", accept=MANIFEST_TYPES).json()
            raise RegistryError(f"image index has no {os_name}/{architecture} manifest")
        return doc

    def config(self, manifest: dict) -> dict:
        return self._get(f"{self.base}/blobs/{manifest['config']['digest']}").json()

    def read_files(self, manifest: dict, wanted: tuple[str, ...]) -> dict[str, str]:
        """The newest version of each wanted file (e.g. etc/passwd) across the layers,
        honouring whiteouts; only layers up to MAX_LAYER_BYTES are read."""
        found: dict[str, str] = {}
        deleted: set[str] = set()
        for layer in reversed(manifest.get("layers", [])):
            missing = [w for w in wanted if w not in found and w not in deleted]
            if not missing:
                break
            if layer.get("size", 0) > MAX_LAYER_BYTES:
                continue
            resp = self._get(f"{self.base}/blobs/{layer['digest']}", stream=True)
            with tarfile.open(fileobj=resp.raw, mode="r|*") as tar:
                for member in tar:
                    name = member.name.lstrip("./")
                    base = os.path.basename(name)
                    if base.startswith(".wh."):
                        hidden = os.path.join(os.path.dirname(name), base[4:])
                        if hidden in missing:
                            deleted.add(hidden)
                        continue
                    if name in missing and member.isfile() and member.size <= MAX_FILE_BYTES:
                        fh = tar.extractfile(member)
                        if fh:
                            found[name] = fh.read().decode("utf-8", "replace")
            resp.close()
        return found


def image_user_and_etc(image: str, *, architecture: str = "amd64") -> tuple[str, dict[str, str]]:
    """(config User, {"etc/passwd": ..., "etc/group": ...}) straight from the registry."""
    client = RegistryClient(parse_ref(image))
    manifest = client.manifest(architecture=architecture)
    config = client.config(manifest)
    user = (config.get("config") or {}).get("User") or ""
    files = client.read_files(manifest, ("etc/passwd", "etc/group")) if needs_etc(user) else {}
    return user, files


def needs_etc(user: str) -> bool:
    """Names need passwd/group; so does a bare UID (its primary group is in passwd)."""
    return bool(user) and not re.fullmatch(r"\d+:\d+", user)
