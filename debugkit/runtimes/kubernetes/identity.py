"""Who a pod's container runs as, without running anything in it.

Sources, most trusted first: the container's securityContext, then the pod's; the image
config's User (from the local Docker engine when it provably holds the very image the node
runs, otherwise from the registry). Names and a bare UID's primary group come from the
image's own /etc/passwd and /etc/group, read from its layers.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

from debugkit.core import identity as ident
from debugkit.core.errors import IdentityUnresolved
from debugkit.core.spec import LABEL_MANAGED
from debugkit.runtimes.base import IdentitySource


@dataclass
class PodTarget:
    namespace: str
    pod_name: str
    container: str
    pod: dict  # camelCase, as the API serialises it

    @property
    def container_spec(self) -> dict:
        return next(c for c in self.pod["spec"]["containers"] if c["name"] == self.container)

    @property
    def container_status(self) -> dict:
        for st in self.pod.get("status", {}).get("containerStatuses") or []:
            if st["name"] == self.container:
                return st
        return {}

    @property
    def pod_security_context(self) -> dict:
        return self.pod["spec"].get("securityContext") or {}

    @property
    def name(self) -> str:
        return f"{self.namespace}/{self.pod_name}/{self.container}"

    @property
    def uid(self) -> str:
        return self.pod["metadata"].get("uid", "")


# An image's User, /etc/passwd and /etc/group, by the image ID the node reports (content
# addressed: the same ID is the same files). A fleet's pods mostly run one image: it is
# read once per process, not once per pod, and a failure to read it is not retried for
# every pod either. One lock per image, so that parallel targets wait for the first read.
_IMAGES: dict[tuple[str, str, str], tuple] = {}
_IMAGE_LOCKS: dict[tuple[str, str, str], threading.Lock] = {}
_IMAGES_LOCK = threading.Lock()


class PodIdentity:
    """Identity sources of one pod's container; reads the image at most once (per image
    ID, per process)."""

    def __init__(self, api, pt: PodTarget):
        self.api = api
        self.pt = pt
        self._image: tuple[str, dict, str] | None = None
        self._image_error: str | None = None

    # -- the image ----------------------------------------------------------------------

    def image_user(self) -> tuple[str, dict, str]:
        """(User, {etc/passwd, etc/group}, where it was read); IdentityUnresolved if unreadable."""
        if self._image is None and self._image_error is None:
            try:
                self._image = self._read_image()
            except IdentityUnresolved as exc:
                self._image_error = str(exc)
        if self._image_error is not None:
            raise IdentityUnresolved(self._image_error)
        return self._image

    def _read_image(self) -> tuple[str, dict, str]:
        image_id = self.pt.container_status.get("imageID") or ""
        if not image_id:
            return self._read_image_now()
        # A repo digest may name a multi-platform index: then what it resolves to depends on
        # the node's architecture, so the node is part of the key. A bare sha256: is the
        # image's own config digest, the same everywhere.
        where = self.pt.pod["spec"].get("nodeName") or "" if "@" in image_id else ""
        key = (self.pt.container_spec["image"], image_id, where)
        with _IMAGES_LOCK:
            lock = _IMAGE_LOCKS.setdefault(key, threading.Lock())
        with lock:
            if key not in _IMAGES:
                try:
                    _IMAGES[key] = ("ok", self._read_image_now())
                except IdentityUnresolved as exc:
                    _IMAGES[key] = ("error", str(exc))
            kind, value = _IMAGES[key]
        if kind == "error":
            raise IdentityUnresolved(value)
        return value

    def _read_image_now(self) -> tuple[str, dict, str]:
        image = self.pt.container_spec["image"]
        image_id = self.pt.container_status.get("imageID") or ""
        local = local_engine_image(image, image_id)
        if local is not None:
            return local
        from debugkit.runtimes.kubernetes.registry import RegistryError, image_user_and_etc

        ref = image_id if "@sha256:" in image_id else image
        ref = ref.removeprefix("docker-pullable://")
        try:
            user, files = image_user_and_etc(ref, architecture=self._node_architecture() or "amd64")
        except RegistryError as exc:
            raise IdentityUnresolved(f"cannot read the image config of {image}: {exc}") from exc
        return user, files, f"registry {ref.split('/')[0]}"

    def etc(self) -> tuple[dict, dict]:
        """(passwd, group) of the image, empty when it cannot be read."""
        try:
            _user, files, _via = self.image_user()
        except IdentityUnresolved:
            return {}, {}
        return ident.parse_passwd(files.get("etc/passwd", "")), ident.parse_group(files.get("etc/group", ""))

    def _node_architecture(self) -> str | None:
        """The node's architecture, for a multi-platform image; None when we may not read
        the node (a common RBAC choice) or it does not say."""
        from debugkit.runtimes.kubernetes.errors import client_errors

        node = self.pt.pod["spec"].get("nodeName")
        if not node:
            return None
        try:
            found = self.api.read_node(node)
        except client_errors():
            return None
        return ((found.get("status") or {}).get("nodeInfo") or {}).get("architecture")

    # -- sources --------------------------------------------------------------------------

    def security_context_identity(self) -> ident.Identity:
        ctr_sc = self.pt.container_spec.get("securityContext") or {}
        pod_sc = self.pt.pod_security_context
        uid = ctr_sc.get("runAsUser", pod_sc.get("runAsUser"))
        gid = ctr_sc.get("runAsGroup", pod_sc.get("runAsGroup"))
        if uid is None:
            raise IdentityUnresolved("no runAsUser in the container's or the pod's securityContext")
        where = "container" if "runAsUser" in ctr_sc else "pod"
        extra = list(pod_sc.get("supplementalGroups") or [])
        if pod_sc.get("fsGroup") is not None:
            extra.append(pod_sc["fsGroup"])
        user = f"{uid}:{gid}" if gid is not None else str(uid)
        # A UID without a group takes its primary group from the image's passwd.
        passwd, groups = self.etc() if gid is None else ({}, {})
        resolved = ident.resolve_configured_user(user, passwd=passwd, groups=groups, missing_gid="zero",
                                                 extra_groups=extra, source=ident.SOURCE_CONFIG)
        return ident.name_identity(resolved.with_note(f"runAsUser from the {where} securityContext"), passwd)

    def image_identity(self) -> ident.Identity:
        user, files, via = self.image_user()
        if not user:
            raise IdentityUnresolved(f"image {self.pt.container_spec['image']} sets no USER (it would run as root)")
        passwd = ident.parse_passwd(files.get("etc/passwd", ""))
        groups = ident.parse_group(files.get("etc/group", ""))
        resolved = ident.resolve_configured_user(user, passwd=passwd, groups=groups, missing_gid="zero",
                                                 source=ident.SOURCE_IMAGE)
        return resolved.with_note(f"image config User {user!r} read from {via}")

    def sources(self, *, stop_at_first: bool = False) -> list[IdentitySource]:
        out = []
        for name, fn in ((ident.SOURCE_CONFIG, self.security_context_identity),
                         (ident.SOURCE_IMAGE, self.image_identity)):
            try:
                out.append(IdentitySource(name, identity=fn()))
            except IdentityUnresolved as exc:
                out.append(IdentitySource(name, error=str(exc)))
            if stop_at_first and out[-1].identity is not None:
                break
        return out

    def user_identity(self, user) -> ident.Identity:
        """--user: a bare UID takes its group from the image's passwd, else GID = UID, as on
        every runtime."""
        passwd = self.etc()[0] if user.gid is None else {}
        return ident.name_identity(ident.identity_from_flag(user.text, passwd=passwd), passwd)


def local_engine_image(image: str, image_id: str) -> tuple[str, dict[str, str], str] | None:
    """(User, {etc/passwd, etc/group}, via) when the local Docker engine holds exactly the
    image the node runs (same ID or repo digest); None otherwise. Creates, never starts, a
    throwaway container to read /etc through the archive API."""
    if not image_id:
        return None
    from debugkit.runtimes.docker.engine import EngineClient, EngineConfigError, EngineError
    from debugkit.runtimes.docker.probe import ContainerProbe

    unusable = (EngineConfigError, EngineError, OSError)  # no engine, no such image, a bad DOCKER_HOST
    try:
        api = EngineClient()
        attrs = api.inspect_image(image)
    except unusable:  # the registry is the way then
        return None
    digest = image_id.split("@", 1)[-1].removeprefix("docker-pullable://")
    if not (attrs.get("Id") == digest or any(d.endswith(digest) for d in attrs.get("RepoDigests") or [])):
        return None
    from debugkit.runtimes.kubernetes.registry import needs_etc

    user = (attrs.get("Config") or {}).get("User") or ""
    files: dict[str, str] = {}
    if needs_etc(user):
        try:
            created = api.create_container({"Image": image, "Cmd": ["/nonexistent"],
                                            "Labels": {LABEL_MANAGED: "probe"}})
        except unusable:
            return None
        try:
            probe = ContainerProbe(api)
            for path in ("/etc/passwd", "/etc/group"):
                text = probe.read_file(created["Id"], path)
                if text is not None:
                    files[path.lstrip("/")] = text
        finally:
            with contextlib.suppress(*unusable):
                api.remove_container(created["Id"], force=True)
    return user, files, "the local engine"
