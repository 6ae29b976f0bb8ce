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
from debugkit.core import userdb
from debugkit.core.errors import IdentityUnresolved
from debugkit.core.spec import LABEL_MANAGED
from debugkit.runtimes.base import IdentitySource
from debugkit.runtimes.kubernetes import imagecache
from debugkit.runtimes.kubernetes.imagecache import ImageFacts


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


# The identity of a target whose spec and image say root or nothing: its process's, read
# by the debug container from /proc/1/status (world-readable: any process of the shared
# PID namespace may read it) as each command starts. The container starts as a minimal
# identity probe (root with only CAP_SETUID and CAP_SETGID, which `baseline` admits), and
# every command drops to exactly that process's user, group and groups before it runs
# (setpriv), so it runs with no capability at all. No second container, no extra request.
AS_PROCESS = ident.Identity(uid=0, gid=0, source=ident.SOURCE_PROCESS, notes=(
    "read from the target's /proc/1/status as each command starts: the debug container starts as root with only "
    "CAP_SETUID and CAP_SETGID, and every command runs as that process's user, group and groups, with no "
    "capability",))


# An image's facts, by the image ID the node reports (content addressed: the same ID is
# the same files) and the UIDs asked about. A fleet's pods mostly run one image: it is
# read once per process, not once per pod, and a failure to read it is not retried for
# every pod either. One lock per image, so that parallel targets wait for the first read.
# What was read is also kept between commands (imagecache.py), keyed the same way.
_IMAGES: dict[tuple, tuple] = {}
_IMAGE_LOCKS: dict[tuple, threading.Lock] = {}
_IMAGES_LOCK = threading.Lock()


class PodIdentity:
    """Identity sources of one pod's container; reads the image at most once (per image
    ID, per process). `uids`: more UIDs whose passwd entries matter (--user's)."""

    def __init__(self, api, pt: PodTarget, *, uids=()):
        self.api = api
        self.pt = pt
        self.uids = tuple(sorted(set(uids) | set(self._run_as_users())))
        self._image: ImageFacts | None = None
        self._image_error: str | None = None

    def _run_as_users(self) -> list[int]:
        ctr_sc = self.pt.container_spec.get("securityContext") or {}
        uid = ctr_sc.get("runAsUser", self.pt.pod_security_context.get("runAsUser"))
        return [uid] if isinstance(uid, int) and not isinstance(uid, bool) and 0 <= uid <= ident.MAX_ID else []

    # -- the image ----------------------------------------------------------------------

    def image_user(self) -> ImageFacts:
        """The image's facts; IdentityUnresolved when its config cannot be read."""
        if self._image is None and self._image_error is None:
            try:
                self._image = self._read_image()
            except IdentityUnresolved as exc:
                self._image_error = str(exc)
        if self._image_error is not None:
            raise IdentityUnresolved(self._image_error)
        return self._image

    def _read_image(self) -> ImageFacts:
        image_id = self.pt.container_status.get("imageID") or ""
        if not image_id:
            return self._read_image_now()
        # A repo digest may name a multi-platform index: then what it resolves to depends on
        # the node's architecture, so the node is part of the key. A bare sha256: is the
        # image's own config digest, the same everywhere.
        where = self.pt.pod["spec"].get("nodeName") or "" if "@" in image_id else ""
        key = (self.pt.container_spec["image"], image_id, where, self.uids)
        with _IMAGES_LOCK:
            lock = _IMAGE_LOCKS.setdefault(key, threading.Lock())
        with lock:
            if key not in _IMAGES:
                kept = imagecache.recall(key) if imagecache.content_addressed(image_id) else None
                if kept is not None:
                    _IMAGES[key] = ("ok", kept)
                else:
                    try:
                        _IMAGES[key] = ("ok", self._read_image_now())
                        if imagecache.content_addressed(image_id):
                            imagecache.remember(key, _IMAGES[key][1])
                    except IdentityUnresolved as exc:
                        _IMAGES[key] = ("error", str(exc))
            kind, value = _IMAGES[key]
        if kind == "error":
            raise IdentityUnresolved(value)
        return value

    def _read_image_now(self) -> ImageFacts:
        image = self.pt.container_spec["image"]
        image_id = self.pt.container_status.get("imageID") or ""
        local = local_engine_image(image, image_id, uids=self.uids)
        if local is not None:
            return local
        from debugkit.runtimes.kubernetes.registry import RegistryError, image_user_and_etc

        ref = image_id if "@sha256:" in image_id else image
        ref = ref.removeprefix("docker-pullable://")
        via = f"registry {ref.split('/')[0]}"
        try:
            user, etc, problem = image_user_and_etc(ref, architecture=self._node_architecture() or "amd64",
                                                    uids=self.uids)
        except RegistryError as exc:
            raise IdentityUnresolved(f"cannot read the image config of {image}: {exc}") from exc
        return ImageFacts(user, etc, via, problem)

    def etc(self) -> userdb.UserDb:
        """The image's passwd and group entries; IdentityUnresolved when they cannot be read
        (then the runtime's choice from them is unknown, and never guessed)."""
        facts = self.image_user()
        if facts.etc is None:
            raise IdentityUnresolved(f"{facts.etc_error}, so the group the runtime chose from it is uncertain",
                                     hint="pass --user UID:GID")
        return facts.etc

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
        arch = ((found.get("status") or {}).get("nodeInfo") or {}).get("architecture")
        return arch if isinstance(arch, str) else None

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
        # containerd runs UID:GID as given; a UID alone takes its primary group from the
        # image's passwd, else 0 (oci.WithUserID), so that passwd must be readable.
        db = self.etc() if gid is None else userdb.EMPTY
        resolved = ident.runtime_user(user, db, extra_groups=extra, source=ident.SOURCE_CONFIG)
        return ident.name_identity(resolved.with_note(f"runAsUser from the {where} securityContext"), db)

    def image_identity(self) -> ident.Identity:
        facts = self.image_user()
        if not facts.user:
            raise IdentityUnresolved(f"image {self.pt.container_spec['image']} sets no USER (it would run as root)")
        from debugkit.runtimes.kubernetes.registry import needs_etc

        db = self.etc() if needs_etc(facts.user) else userdb.EMPTY
        resolved = ident.runtime_user(facts.user, db, source=ident.SOURCE_IMAGE)
        return resolved.with_note(f"image config User {facts.user!r} read from {facts.via}")

    def sources(self, *, stop_at_first: bool = False) -> list[IdentitySource]:
        """process, then config, then image, as on Docker. Here the process is read by the
        debug container itself (see AS_PROCESS): it answers when the spec and the image say
        root or nothing, the images that start as root and drop privileges at runtime."""
        out = []
        for name, fn in ((ident.SOURCE_CONFIG, self.security_context_identity),
                         (ident.SOURCE_IMAGE, self.image_identity)):
            try:
                out.append(IdentitySource(name, identity=fn()))
            except IdentityUnresolved as exc:
                out.append(IdentitySource(name, error=str(exc)))
            if stop_at_first and out[-1].identity is not None:
                break
        configured = next((s.identity for s in out if s.identity is not None), None)
        if configured is None or configured.uid == 0:
            process = IdentitySource(ident.SOURCE_PROCESS, identity=AS_PROCESS)
        else:
            process = IdentitySource(ident.SOURCE_PROCESS, error=(
                f"not read: the {configured.source} names the non-root user {configured.uid}, which a process cannot "
                f"leave without capabilities it was not given"))
        return [process, *out]

    def user_identity(self, user) -> ident.Identity:
        """--user, as resolve() gives it."""
        return self.resolve(user, [])

    def resolve(self, user, sources: list[IdentitySource]) -> ident.Identity:
        """--user wins (a bare UID takes the group the runtime would give it: its passwd
        entry's, else 0); otherwise the first source that answered."""
        if user is not None:
            if user.gid is not None:
                return ident.identity_from_flag(user.text)
            try:
                db = self.etc()
            except IdentityUnresolved:
                db = None
            return ident.name_identity(ident.identity_from_flag(user.text, db=db), db)
        for source in sources:
            if source.identity is not None:
                return source.identity
        errors = "; ".join(f"{s.source}: {s.error}" for s in sources)
        raise IdentityUnresolved(f"cannot determine the target's user ({errors})", hint="pass --user UID[:GID]")


# How much of `docker save` config_digests reads before it gives up (the registry is the way then).
MAX_EXPORT_BYTES = 256 << 20
MAX_MANIFEST_BYTES = 1 << 20


def config_digests(api, image: str, image_id: str, *, wanted: str | None = None) -> set[str]:
    """The config digests of an image the local engine holds, read from its `docker save`
    stream. The node reports an image by its config digest; an engine that keeps images
    in containerd (Docker 29's default) names them by their manifest (or index) digest, so
    proving "the very image the node runs" takes the manifest, which only the export holds.
    The export lists its blobs by digest, so the manifest may come after every layer: with
    `wanted` (the node's config digest) reading stops as soon as a manifest of this image
    names it. Read once, up to MAX_EXPORT_BYTES, keeping only small blobs (indexes and
    manifests); empty when anything is off."""
    import tarfile

    if not image_id.startswith("sha256:"):
        return set()
    small: dict[str, bytes] = {}
    found: set[str] = set()
    try:
        resp, conn = api.export_stream(image)
    except engine_failures():  # no export: no proof
        return set()
    try:
        from debugkit.runtimes.kubernetes.registry import Bounded

        with tarfile.open(fileobj=Bounded(resp, MAX_EXPORT_BYTES, what=f"the export of {image}"), mode="r|") as tar:
            for member in tar:
                name = member.name
                if member.isfile() and name.startswith("blobs/sha256/") and member.size <= MAX_MANIFEST_BYTES:
                    fh = tar.extractfile(member)
                    small["sha256:" + name.rsplit("/", 1)[1]] = fh.read() if fh else b""
                    if wanted is not None:
                        found = _configs(small, image_id)
                        if wanted in found:
                            return found  # proven: the rest of the export (its layers) is not read
    except (tarfile.TarError, userdb.Unreadable, *engine_failures()):  # a broken or endless export proves nothing
        return set()
    finally:
        conn.close()
    return _configs(small, image_id)


def _configs(blobs: dict[str, bytes], image_id: str) -> set[str]:
    """The config digests reachable from `image_id` (an index or a manifest) in `blobs`."""
    from debugkit.core import jsonsafe

    found: set[str] = set()
    pending, seen = [image_id], set()
    while pending and len(seen) < 64:
        digest = pending.pop()
        if digest in seen or digest not in blobs:
            continue
        seen.add(digest)
        try:
            doc = jsonsafe.loads(blobs[digest], max_bytes=MAX_MANIFEST_BYTES)
        except jsonsafe.Rejected:
            continue
        if not isinstance(doc, dict):
            continue
        config = doc.get("config")
        if isinstance(config, dict) and isinstance(config.get("digest"), str):
            found.add(config["digest"])
        for entry in doc.get("manifests") or []:
            if isinstance(entry, dict) and isinstance(entry.get("digest"), str):
                pending.append(entry["digest"])
    return found


def exportable(attrs: dict) -> bool:
    """Whether the image's export fits in what config_digests reads: a larger one cannot
    prove anything past its bound, and would only cost its streaming (seconds for a GB)."""
    size = attrs.get("Size")
    return not isinstance(size, int) or size <= MAX_EXPORT_BYTES


def engine_failures() -> tuple[type[BaseException], ...]:
    """What the local engine's client raises when the engine is not there or will not help
    (then the registry is the way); anything else is a bug and is not caught."""
    from debugkit.runtimes.docker.engine import EngineAnswerInvalid, EngineConfigError, EngineError

    return EngineConfigError, EngineError, EngineAnswerInvalid, OSError


def local_engine_image(image: str, image_id: str, *, uids=()) -> ImageFacts | None:
    """The image's facts when the local Docker engine holds exactly the image the node runs
    (same ID or repo digest); None otherwise. Creates, never starts, a throwaway container
    to stream /etc through the archive API."""
    if not image_id:
        return None
    from debugkit.runtimes.docker.engine import EngineClient
    from debugkit.runtimes.docker.probe import ContainerProbe

    unusable = engine_failures()  # no engine, no such image, a bad DOCKER_HOST: the registry is the way
    try:
        api = EngineClient()
        attrs = api.inspect_image(image)
    except unusable:
        return None
    digest = image_id.split("@", 1)[-1].removeprefix("docker-pullable://")
    if not (attrs.get("Id") == digest or any(d.endswith(digest) for d in attrs.get("RepoDigests") or [])
            or (exportable(attrs) and digest in config_digests(api, image, attrs.get("Id") or "", wanted=digest))):
        return None
    from debugkit.runtimes.kubernetes.registry import needs_etc

    user = (attrs.get("Config") or {}).get("User") or ""
    if not isinstance(user, str):
        user = ""
    if not needs_etc(user, uids):
        return ImageFacts(user, userdb.EMPTY, "the local engine")
    wanted = userdb.Wanted.for_user(user, uids=uids)
    try:
        created = api.create_container({"Image": image, "Cmd": ["/nonexistent"], "Labels": {LABEL_MANAGED: "probe"}})
    except unusable:
        return None
    try:
        probe = ContainerProbe(api)
        users = probe.scan_file(created["Id"], "/etc/passwd", lambda chunks: userdb.scan_passwd(chunks, wanted))
        names = {u.name for u in users or ()}
        groups = probe.scan_file(created["Id"], "/etc/group", lambda chunks: userdb.scan_group(chunks, wanted, names))
    except userdb.Unreadable as exc:
        return ImageFacts(user, None, "the local engine", str(exc))
    except unusable:  # the engine failed half-way: the registry is the way
        return None
    finally:
        with contextlib.suppress(*unusable):
            api.remove_container(created["Id"], force=True)
    return ImageFacts(user, userdb.UserDb(users or (), groups or (), users is not None, groups is not None, wanted),
                      "the local engine")


def local_engine_config(image: str, image_id: str) -> dict | None:
    """The image's config (Entrypoint, Cmd...) when the local Docker engine holds exactly the
    image the node runs; None otherwise (then the registry is the way)."""
    if not image_id:
        return None
    from debugkit.runtimes.docker.engine import EngineClient

    try:
        api = EngineClient()
        attrs = api.inspect_image(image)
    except engine_failures():
        return None
    digest = image_id.split("@", 1)[-1].removeprefix("docker-pullable://")
    if not (attrs.get("Id") == digest or any(d.endswith(digest) for d in attrs.get("RepoDigests") or [])
            or digest in config_digests(api, image, attrs.get("Id") or "")):
        return None
    config = attrs.get("Config") or {}
    return config if isinstance(config, dict) else None
