"""Pushing the built toolbox to a registry, and what a cluster then pins: `REPO@sha256:...`.

A real cluster's node cannot use an image that exists only in the local Docker engine.
`push_toolbox()` tags the local full and slim images as `REPO:TAG` and `REPO:TAG-slim`,
pushes them through the engine (so the engine's network, TLS and insecure-registry
settings apply), with the credentials the docker CLI would send (the docker config's
auths, credsStore and credHelpers: runtimes/docker/registryauth.py), and returns the
digest the registry stored for each: the reference to pin. The engine is the one attach
uses (runtimes/docker/images.py), imported when a push is made (`debugkit --help` stays fast).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from debugkit import __version__
from debugkit.core.errors import DebugkitError, ExitCode, ImageMissing, InvalidInput
from debugkit.core.imageref import split_ref, validate_image_ref

BUILD_COMMAND = "debugkit toolbox build"
SLIM_SUFFIX = "-slim"
MAX_TAG = 128


class RegistryUnreachable(DebugkitError):
    """The registry did not answer: no route, refused connection, DNS, TLS."""

    exit_code = ExitCode.ENGINE_UNREACHABLE


class RegistryRefused(DebugkitError):
    """The registry answered and said no: credentials missing or wrong, no push access."""

    exit_code = ExitCode.FORBIDDEN


@dataclass(frozen=True)
class Destination:
    """Where a variant goes: `repository` (as typed, registry included) and `tag`."""

    variant: str
    source: str          # the local image pushed (`debugkit/toolbox:0.1.0`)
    repository: str
    tag: str

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class Pushed:
    destination: Destination
    digest: str          # sha256:... of the manifest the registry stored
    image_id: str        # the local image's ID
    seconds: float
    uploaded: int        # layers sent
    present: int         # layers the registry already had (or mounted)

    @property
    def pinned(self) -> str:
        """`REPO@sha256:...`: what a pod spec or the config file pins."""
        return f"{self.destination.repository}@{self.digest}"


def parse_destination(text: str) -> tuple[str, str]:
    """`REPO[:TAG]` -> (repository, tag); the tag defaults to debugkit's version. A digest
    is refused: the registry decides it, and the push prints it."""
    validate_image_ref(text, flag="REPO[:TAG]")
    repository, tag, digest = split_ref(text)
    if digest:
        raise InvalidInput(f"invalid REPO[:TAG] {text!r}: give a tag, not a digest "
                           f"(the push prints the digest the registry stored)")
    if re.fullmatch(r"(?:sha256:)?[0-9a-f]{12,64}", repository) and "/" not in repository:
        raise InvalidInput(f"invalid REPO[:TAG] {text!r}: that is an image ID, not a repository")
    tag = tag or __version__
    if len(tag) + len(SLIM_SUFFIX) > MAX_TAG:
        raise InvalidInput(f"invalid REPO[:TAG] {text!r}: the tag is too long for the slim variant's "
                           f"{tag}{SLIM_SUFFIX} (at most {MAX_TAG} characters)")
    return repository, tag


def destinations(text: str, sources: dict[str, str]) -> list[Destination]:
    """One destination per variant in `sources` ({variant: local ref}), full first."""
    repository, tag = parse_destination(text)
    out = []
    for variant in ("full", "slim"):
        if variant in sources:
            out.append(Destination(variant, sources[variant], repository,
                                   tag if variant == "full" else f"{tag}{SLIM_SUFFIX}"))
    return out


def local_image_id(api: Any, ref: str) -> str | None:
    info = api.inspect_image(ref)
    return info["Id"] if info else None


def missing_variant_error(variant: str, ref: str) -> ImageMissing:
    command = BUILD_COMMAND + ("" if variant == "full" else f" --variant {variant}")
    return ImageMissing(f"the {variant} toolbox {ref} is not built in the local Docker engine",
                        hint=f"build it first with: {command}")


# The engine's words for a registry it could not reach, and for one that said no.
_UNREACHABLE = re.compile(
    r"dial tcp|connection refused|no such host|i/o timeout|network is unreachable|no route to host|"
    r"server gave HTTP response to HTTPS client|x509:|tls:|certificate|connection reset|EOF|"
    r"Client\.Timeout|context deadline exceeded|TLS handshake timeout|service unavailable|"
    r"\b50[234]\b|Bad Gateway|Gateway Time-?out", re.IGNORECASE)
_REFUSED = re.compile(
    r"denied|unauthori[sz]ed|authentication required|no basic auth credentials|forbidden|"
    r"insufficient_scope|access to the resource|incorrect username or password|\b40[13]\b", re.IGNORECASE)


def push_error(message: str, destination: Destination) -> DebugkitError:
    """An engine push error as the debugkit error that fits (69 unreachable, 78 refused)."""
    registry = registry_of(destination.repository)
    where = f"pushing {destination.ref}"
    if _REFUSED.search(message):
        return RegistryRefused(
            f"{where}: the registry {registry} refused it: {message}",
            hint=f"log in with: docker login {registry}, and check that this account may push to "
                 f"{destination.repository}")
    if _UNREACHABLE.search(message):
        return RegistryUnreachable(
            f"{where}: cannot reach the registry {registry}: {message}",
            hint="check the address, that the registry runs, and the Docker engine's network and TLS "
                 "settings; a registry without TLS must be in the engine's insecure-registries")
    return RegistryUnreachable(f"{where}: the registry {registry} did not take it: {message}")


def registry_of(repository: str) -> str:
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


ProgressFn = Callable[[str, dict], None]


def _push_one(api: Any, destination: Destination, progress: ProgressFn) -> Pushed:
    from debugkit.toolbox.build import _engine_calls, _engine_error

    connection_error, engine_error, auth_error = _engine_calls()
    image_id = local_image_id(api, destination.source)
    if image_id is None:
        raise missing_variant_error(destination.variant, destination.source)
    started = time.monotonic()
    try:
        api.tag(destination.source, destination.repository, destination.tag)
    except engine_error as exc:
        raise DebugkitError(f"cannot tag {destination.source} as {destination.ref}: {exc.explanation}") from exc
    digest = None
    layers: dict[str, dict] = {}
    progress("start", {"destination": destination, "image_id": image_id})
    try:
        for item in api.push(destination.repository, destination.tag):
            if "error" in item:
                detail = item.get("errorDetail") or {}
                raise push_error(str(detail.get("message") or item["error"]).strip(), destination)
            aux = item.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
            elif digest is None:
                # An engine with the containerd image store (Docker 29's default) sends no
                # aux record, only the docker CLI's line: "TAG: digest: sha256:... size: N".
                said = re.fullmatch(r"\S+: digest: (sha256:[0-9a-f]{64}) size: \d+", str(item.get("status") or ""))
                digest = said.group(1) if said else None
            layer = item.get("id")
            if layer and item.get("status"):
                state = layers.setdefault(layer, {})
                state["status"] = item["status"]
                detail = item.get("progressDetail") or {}
                if detail.get("total"):
                    state["current"], state["total"] = detail.get("current", 0), detail["total"]
                progress("layer", {"destination": destination, "layers": layers})
    except DebugkitError:
        raise
    except engine_error as exc:
        raise push_error(exc.explanation, destination) from exc
    except auth_error as exc:
        raise RegistryRefused(f"pushing {destination.ref}: no credentials for {registry_of(destination.repository)}: "
                              f"{exc}") from exc
    except (connection_error, OSError, ValueError) as exc:  # the engine's connection dropped mid-push
        raise _engine_error(exc, api.host) from exc
    if not digest or not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise DebugkitError(f"pushing {destination.ref}: the engine reported no digest for it")
    present = sum(1 for s in layers.values() if s.get("status", "").startswith(("Layer already exists", "Mounted")))
    uploaded = sum(1 for s in layers.values() if s.get("status") == "Pushed")
    return Pushed(destination, digest, image_id, time.monotonic() - started, uploaded, present)


def push_toolbox(targets: Sequence[Destination], *, engine: Any | None = None,
                 progress: ProgressFn = lambda kind, data: None) -> list[Pushed]:
    """Push each destination's local image (full first) and return what the registry stored.

    engine: an ImageEngine (runtimes/docker/images.py); None: the engine attach uses.
    progress(kind, data) is called with "start" and "layer" (the per-layer status, bytes
    pushed and total) while a push runs, and "pushed" (data: {"pushed": Pushed}) after.
    Raises ImageMissing (71) before anything is pushed when a local image is not built,
    RegistryUnreachable (69) / RegistryRefused (78) when the registry cannot be reached or
    says no, EngineUnreachable / PermissionDenied when the Docker engine does not answer.
    """
    from debugkit.toolbox.build import _engine_calls, _engine_error, connect_engine

    api = connect_engine(engine)
    connection_error, engine_error, _auth_error = _engine_calls()
    try:
        for destination in targets:  # every image must be there before anything is pushed
            if local_image_id(api, destination.source) is None:
                raise missing_variant_error(destination.variant, destination.source)
        done = []
        for destination in targets:
            pushed = _push_one(api, destination, progress)
            progress("pushed", {"pushed": pushed})
            done.append(pushed)
        return done
    except connection_error as exc:
        raise _engine_error(exc, api.host) from exc
    except engine_error as exc:
        raise DebugkitError(f"the Docker engine at {api.host} said: {exc.explanation}") from exc
    finally:
        if engine is None:
            api.close()
