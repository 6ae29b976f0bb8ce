"""Read an image's config and files from an OCI/Docker v2 registry, without running it.

Used by the Kubernetes backend: a pod spec often says nothing about the user, the
image config does (`USER nonroot:nonroot`), and the names need the image's own
/etc/passwd and /etc/group, which live in its layers. Anonymous bearer-token flow,
and credentials from the docker config (`~/.docker/config.json` auths) when present.
"""
from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass

from debugkit.core import jsonsafe, userdb
from debugkit.core.errors import DebugkitError

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
MAX_LAYER_BYTES = 512 << 20    # /etc files in a layer bigger than this are uncertain
# Real manifests are a few KB (registries refuse ones over 4 MiB), configs tens of KB.
MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 8 << 20
MAX_TOKEN_BYTES = 1 << 20
MAX_DOCKER_CONFIG_BYTES = 4 << 20
DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
ETC_FILES = ("etc/passwd", "etc/group")
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
    """The docker CLI's credentials for a registry (`auths` in config.json), if any. A file
    that is missing, not a regular file, too large or malformed gives none."""
    from debugkit.core.files import read_regular

    path = os.path.join(os.environ.get("DOCKER_CONFIG", os.path.expanduser("~/.docker")), "config.json")
    try:
        data = jsonsafe.loads(read_regular(path, MAX_DOCKER_CONFIG_BYTES), max_bytes=MAX_DOCKER_CONFIG_BYTES)
    except (OSError, ValueError):
        return None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    keys = [registry, f"https://{registry}", f"http://{registry}"]
    if registry == DOCKER_HUB:
        keys += ["https://index.docker.io/v1/", "index.docker.io"]
    for key in keys:
        entry = auths.get(key)
        encoded = entry.get("auth") if isinstance(entry, dict) else None
        if isinstance(encoded, str) and encoded:
            try:
                user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
            except ValueError:  # not base64, not UTF-8
                return None
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

    def _get(self, url: str, *, accept: str | None = None):
        """A streamed answer (the caller reads it within its bound and closes it)."""
        import requests

        headers = {"Accept": accept} if accept else {}
        for attempt in range(2):
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            try:
                resp = self.session.get(url, headers=headers, timeout=self.timeout, stream=True)
            except requests.RequestException as exc:
                raise RegistryError(f"registry {self.ref.registry} unreachable: {exc.__class__.__name__}") from exc
            if resp.status_code == 401 and attempt == 0:
                resp.close()
                if self._authenticate(resp):
                    continue
            if resp.status_code >= 400:
                resp.close()
                raise RegistryError(f"registry {self.ref.registry} answered {resp.status_code} for "
                                    f"{self.ref.repository}:{self.ref.reference}")
            return resp
        raise RegistryError(f"registry {self.ref.registry} refused our credentials")

    def _json(self, url: str, *, what: str, max_bytes: int, accept: str | None = None,
              resp=None) -> dict:
        """A JSON object the registry sends for `what` (a manifest, a config), read to at
        most max_bytes: a 3 GB "manifest" is refused after max_bytes, not read whole."""
        import requests

        resp = resp if resp is not None else self._get(url, accept=accept)
        try:
            declared = resp.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise RegistryError(f"registry {self.ref.registry} sent a {what} of {int(declared)} bytes "
                                    f"(more than {max_bytes}): not an image's {what}")
            body = resp.raw.read(max_bytes + 1, decode_content=True)
        except (requests.RequestException, OSError) as exc:
            raise RegistryError(f"registry {self.ref.registry} unreachable: {exc.__class__.__name__}") from exc
        finally:
            resp.close()
        try:
            return jsonsafe.expect(jsonsafe.loads(body, max_bytes=max_bytes), dict, f"the {what}")
        except jsonsafe.Rejected as exc:
            raise RegistryError(f"registry {self.ref.registry} sent {exc} for {what} of "
                                f"{self.ref.repository}:{self.ref.reference}") from None

    def _authenticate(self, resp) -> bool:
        import requests

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
        try:
            token_resp = self.session.get(realm, params=params, auth=auth, timeout=self.timeout, stream=True)
        except requests.RequestException as exc:
            raise RegistryError(f"registry {self.ref.registry}'s token service unreachable: "
                                f"{exc.__class__.__name__}") from exc
        if token_resp.status_code >= 400:
            token_resp.close()
            return False
        body = self._json(realm, what="token", max_bytes=MAX_TOKEN_BYTES, resp=token_resp)
        token = body.get("token") or body.get("access_token")
        self._token = token if isinstance(token, str) and token else None
        return self._token is not None

    def manifest(self, *, architecture: str = "amd64", os_name: str = "linux") -> dict:
        doc = self._json(f"{self.base}/manifests/{self.ref.reference}", what="manifest",
                         max_bytes=MAX_MANIFEST_BYTES, accept=MANIFEST_TYPES)
        if "manifests" in doc:  # an index: pick the node's platform
            for entry in self._list(doc, "manifests", "index"):
                plat = entry.get("platform")
                if isinstance(plat, dict) and plat.get("architecture") == architecture and plat.get("os") == os_name:
                    digest = self._digest(entry, "index entry")
                    return self._json(f"{self.base}/manifests/{digest}", what="manifest",
                                      max_bytes=MAX_MANIFEST_BYTES, accept=MANIFEST_TYPES)
            raise RegistryError(f"image index has no {os_name}/{architecture} manifest")
        return doc

    def config(self, manifest: dict) -> dict:
        config = manifest.get("config")
        if not isinstance(config, dict):
            raise RegistryError(f"registry {self.ref.registry} sent a manifest without a config for "
                                f"{self.ref.repository}:{self.ref.reference}")
        return self._json(f"{self.base}/blobs/{self._digest(config, 'config')}", what="image config",
                          max_bytes=MAX_CONFIG_BYTES)

    def _list(self, doc: dict, key: str, what: str) -> list[dict]:
        items = doc.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise RegistryError(f"registry {self.ref.registry} sent a {what} whose {key} is not a list of objects")
        return items

    def _digest(self, entry: dict, what: str) -> str:
        digest = entry.get("digest")
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
            raise RegistryError(f"registry {self.ref.registry} sent a {what} without a valid digest")
        return digest

    def read_etc(self, manifest: dict, wanted: userdb.Wanted) -> userdb.UserDb:
        """The wanted entries of the newest /etc/passwd and /etc/group across the layers,
        honouring whiteouts, streamed and never held whole. userdb.Unreadable when a file
        or a layer is past its bound, or /etc/passwd is a link (the layers alone cannot say
        where it leads): the identity is then uncertain, not guessed."""
        import tarfile

        files: dict[str, object] = {}     # path -> scanned entries
        hidden: set[str] = set()
        for layer in reversed(self._list(manifest, "layers", "manifest")):
            missing = [w for w in ETC_FILES if w not in files and w not in hidden]
            if not missing:
                break
            size = layer.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise RegistryError(f"registry {self.ref.registry} sent a layer without a valid size")
            if size > MAX_LAYER_BYTES:
                raise userdb.Unreadable(f"a layer of {size >> 20} MiB may hold /etc/passwd, and debugkit reads "
                                        f"layers up to {MAX_LAYER_BYTES >> 20} MiB")
            resp = self._get(f"{self.base}/blobs/{self._digest(layer, 'layer')}")
            try:
                stream = Bounded(resp.raw, size + 1, what=f"a layer of {self.ref.repository}")
                with tarfile.open(fileobj=stream, mode="r|*") as tar:
                    for member in tar:
                        self._etc_member(tar, member, missing, files, hidden, wanted)
                        if all(w in files or w in hidden for w in missing):
                            break  # the rest of the layer holds nothing wanted
            except tarfile.TarError as exc:
                raise RegistryError(f"registry {self.ref.registry} sent a layer that is not a tar archive: "
                                    f"{exc}") from None
            finally:
                resp.close()
        users = files.get("etc/passwd")
        groups = files.get("etc/group")
        names = {u.name for u in users or ()}
        return userdb.UserDb(users or (), userdb.narrow_groups(groups or (), wanted, names),
                             users is not None, groups is not None, wanted)

    @staticmethod
    def _etc_member(tar, member, missing, files, hidden, wanted) -> None:
        name = member.name.lstrip("./")
        base = os.path.basename(name)
        directory = os.path.dirname(name)
        if base == ".wh..wh..opq" and directory == "etc":  # an opaque /etc hides every older one
            hidden.update(w for w in missing if w not in files)
            return
        if base.startswith(".wh."):
            gone = os.path.join(directory, base[4:])
            if gone in missing:
                hidden.add(gone)
            return
        if name not in missing or name in files:
            return
        if member.issym() or member.islnk():
            raise userdb.Unreadable(f"/{name} is a link in the image's layers, which debugkit does not follow")
        if not member.isfile():
            hidden.add(name)  # a directory there: the runtimes read no such file
            return
        fh = tar.extractfile(member)
        chunks = iter(lambda: fh.read(1 << 16), b"")
        files[name] = (userdb.scan_passwd(chunks, wanted) if name == "etc/passwd"
                       else userdb.scan_group(chunks, wanted, None))


class Bounded:
    """A stream that ends in userdb.Unreadable once more than `limit` bytes came from it:
    a registry that sends more than the manifest declared is not trusted to end."""

    def __init__(self, raw, limit: int, *, what: str):
        self.raw = raw
        self.left = limit
        self.what = what

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.left + 1
        data = self.raw.read(min(size, self.left + 1))
        self.left -= len(data)
        if self.left < 0:
            raise userdb.Unreadable(f"{self.what} is larger than the manifest says")
        return data


def image_user_and_etc(image: str, *, architecture: str = "amd64",
                       uids=()) -> tuple[str, userdb.UserDb | None, str | None]:
    """(config User, the entries of /etc/passwd and /etc/group resolving it and `uids` need,
    None and why when those files are past debugkit's bounds) straight from the registry.
    RegistryError when the registry fails or answers with what an image is not."""
    client = RegistryClient(parse_ref(image))
    manifest = client.manifest(architecture=architecture)
    config = client.config(manifest)
    settings = config.get("config") or {}
    user = settings.get("User") if isinstance(settings, dict) else None
    if not isinstance(user, str):
        user = ""
    if not needs_etc(user, uids):
        return user, userdb.EMPTY, None
    try:
        return user, client.read_etc(manifest, userdb.Wanted.for_user(user, uids=uids)), None
    except userdb.Unreadable as exc:
        return user, None, str(exc)


def needs_etc(user: str, uids=()) -> bool:
    """Names need passwd/group; so does a bare UID (its primary group is in passwd), and
    so do other UIDs a lookup asks about (a securityContext's, --user's)."""
    return bool(uids) or (bool(user) and not re.fullmatch(r"\d+:\d+", user))
