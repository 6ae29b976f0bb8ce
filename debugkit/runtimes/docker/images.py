"""Image operations on a Docker engine, for the toolbox: inspect, tag, pull, build, push.

They go through debugkit's own EngineClient, so they use the engine attach uses (-H,
DOCKER_HOST, --docker-context, DOCKER_CONTEXT, the current context, TLS and ssh://), and
they send registry credentials as the docker CLI does (registryauth.py). The engine's
progress streams (JSON messages, one after the other) are decoded incrementally, each
message bounded; a message with "error" is handed to the caller like any other.
"""
from __future__ import annotations

import io
import json
import os
import urllib.parse

from debugkit.runtimes.docker import registryauth
from debugkit.runtimes.docker.engine import EngineClient, EngineNotFound

MAX_MESSAGE = 1 << 20
READ_SIZE = 64 << 10


class ImageEngine:
    """The image calls the toolbox makes, named as docker-py's APIClient names them."""

    def __init__(self, client: EngineClient, *, environ=None):
        self.client = client
        self.environ = environ

    @property
    def host(self) -> str:
        return self.client.host

    def close(self) -> None:
        self.client.close()
        self.client.release()

    def inspect_image(self, ref: str) -> dict | None:
        """The image's inspect data, or None when the engine does not have it."""
        try:
            return self.client._json("GET", f"/images/{_quote(ref)}/json")
        except EngineNotFound:
            return None

    def tag(self, source: str, repository: str, tag: str | None) -> None:
        self.client._json("POST", f"/images/{_quote(source)}/tag", params={"repo": repository, "tag": tag})

    def pull(self, ref: str, *, timeout: float | None = 600):
        """The pull's progress messages (X-Registry-Auth: the image's registry's credentials)."""
        name, tag = _split(ref)
        headers = {"X-Registry-Auth": self._auth_for(name)}
        return self._stream("POST", "/images/create", params={"fromImage": name, "tag": tag}, headers=headers,
                            timeout=timeout)

    def push(self, repository: str, tag: str, *, timeout: float | None = 600):
        headers = {"X-Registry-Auth": self._auth_for(repository)}
        return self._stream("POST", f"/images/{_quote(repository)}/push", params={"tag": tag}, headers=headers,
                            timeout=timeout)

    def build(self, context_dir: str, *, tag: str, target: str | None = None, buildargs: dict | None = None,
              nocache: bool = False, cache_from=(), timeout: float | None = None):
        """A legacy-builder build of context_dir (its .dockerignore applied); the progress
        messages. X-Registry-Config carries every configured registry's credentials, as
        the docker CLI sends them."""
        params = {"t": tag, "target": target, "buildargs": buildargs or None, "rm": True, "forcerm": True,
                  "pull": False, "nocache": nocache, "cachefrom": list(cache_from) or None, "q": False}
        headers = {"Content-Type": "application/x-tar",
                   "X-Registry-Config": registryauth.encode(registryauth.all_credentials(environ=self.environ))}
        return self._stream("POST", "/build", params=params, headers=headers, data=context_tar(context_dir),
                            timeout=timeout)

    # -- plumbing ------------------------------------------------------------------------

    def _auth_for(self, repository: str) -> str:
        return registryauth.encode(registryauth.credentials(registryauth.auth_key(repository), environ=self.environ))

    def _stream(self, method: str, path: str, *, params, headers, timeout, data: bytes | None = None):
        resp, conn = self.client._request(method, path, params=params, headers=headers, stream=True,
                                          timeout=timeout, data=data)
        return _messages(resp, conn)


def _quote(ref: str) -> str:
    return urllib.parse.quote(ref, safe="/:@")


def _split(ref: str) -> tuple[str, str | None]:
    name, _, tag = ref.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return ref, None


def _messages(resp, conn):
    """Decode the engine's JSON messages as they come; close the connection at the end."""
    decoder = json.JSONDecoder()
    buf = ""
    try:
        while True:
            chunk = resp.read1(READ_SIZE) if hasattr(resp, "read1") else resp.read(READ_SIZE)
            if not chunk:
                break
            buf += chunk.decode("utf-8", "replace")
            while True:
                stripped = buf.lstrip()
                if not stripped:
                    buf = ""
                    break
                try:
                    item, end = decoder.raw_decode(stripped)
                except ValueError:
                    if len(stripped) > MAX_MESSAGE:
                        raise ValueError("the engine sent a progress message larger than 1 MiB") from None
                    buf = stripped
                    break
                buf = stripped[end:]
                if isinstance(item, dict):
                    yield item
    finally:
        conn.close()


def _ignore_rules(context_dir: str) -> list[tuple[bool, str]]:
    """.dockerignore: (negated, pattern) in order; comments and blank lines skipped."""
    try:
        with open(os.path.join(context_dir, ".dockerignore"), encoding="utf-8") as fh:
            lines = fh.read(1 << 20).splitlines()
    except OSError:
        return []
    rules = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line[1:].strip() if negated else line).lstrip("/")
        rules.append((negated, pattern))
    return rules


def _ignored(rel: str, rules) -> bool:
    """The docker CLI's rule: the last matching pattern decides; a pattern that matches a
    parent directory matches everything under it."""
    import fnmatch

    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for negated, pattern in rules:
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            ignored = not negated
    return ignored


def context_tar(context_dir: str) -> bytes:
    """The build context as an uncompressed tar (what `docker build DIR` uploads)."""
    import tarfile

    rules = _ignore_rules(context_dir)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, dirs, files in os.walk(context_dir):
            dirs.sort()
            for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
                path = os.path.join(root, name)
                rel = os.path.relpath(path, context_dir).replace(os.sep, "/")
                if _ignored(rel, rules):
                    continue
                info = tar.gettarinfo(path, arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(path, "rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
    return out.getvalue()


def connect(*, host: str | None = None, context: str | None = None) -> ImageEngine:
    """The engine attach would use, pinged; DebugkitError (69, 77, 64) when it cannot be."""
    from debugkit.runtimes.docker.runtime import DockerRuntime

    return ImageEngine(DockerRuntime(host=host, context=context).connect())
