"""Building the bundled toolbox image from toolbox-image/.

`build_toolbox()` is the library entry point behind `debugkit toolbox build`; it raises
`debugkit.errors` exceptions and never exits. It builds on the engine attach uses (-H,
DOCKER_HOST, --docker-context, DOCKER_CONTEXT, the current context), through debugkit's
own engine client (runtimes/docker/images.py), imported inside the functions that need it
so that importing this module (and `debugkit --help`) stays fast.
"""
from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Literal, Sequence

from debugkit.core.errors import (
    DebugkitError,
    ImageMissing,
    InvalidInput,
)

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from debugkit.runtimes.docker.images import ImageEngine

# hashlib, json, pathlib, subprocess and time are imported inside the functions that use
# them: the CLI imports this module for its option choices and must stay fast.

from debugkit.core.imageref import toolbox_ref  # noqa: E402
# The build context's facts are their own module; callers name them from here.
from debugkit.toolbox.context import (  # noqa: E402,F401
    inputs_digest, pinned_base_image, source_metadata, toolbox_context_dir)

#: Intermediate build stages are tagged here (`debugkit/toolbox-cache:curl-build`, ...):
#: tagged, they survive `docker image prune`, so the layer cache stays warm, and CI can
#: `docker save` them for a fresh machine.
CACHE_REPOSITORY = "debugkit/toolbox-cache"

#: The command that builds the default toolbox; `attach` names it when the image is missing.
BUILD_COMMAND = "debugkit toolbox build"

#: The local tag an offline machine has (scripts/docker-testenv imports it from debootstrap).
OFFLINE_BASE_IMAGE = "debian:bookworm-slim"

#: Where the statically linked curl lives in both variants (documented in docs/toolbox.md).
STATIC_CURL_PATH = "/usr/local/bin/curl"

#: The numeric user the image runs as (distroless's `nonroot`).
TOOLBOX_USER = "65532:65532"

Variant = Literal["full", "slim"]
VARIANTS: tuple[Variant, ...] = ("full", "slim")

#: The label holding the digest of everything that went into a build (see inputs_digest).
INPUTS_LABEL = "io.debugkit.toolbox.inputs"

#: How long one read of the build stream may stay silent (a compile step can be quiet).
BUILD_READ_TIMEOUT = 1800

ProgressFn = Callable[[str], None]


def variant_ref(variant: Variant = "full") -> str:
    """The standard local tag of a variant: `debugkit/toolbox:<version>[-slim]`."""
    return toolbox_ref(variant)


def missing_toolbox_error(ref: str | None = None) -> ImageMissing:
    """The error `attach` raises when the toolbox image is not present locally."""
    ref = ref or toolbox_ref()
    return ImageMissing(
        f"toolbox image {ref} is not present locally; build it with: {BUILD_COMMAND}"
    )


def _split_ref(ref: str) -> tuple[str, str | None]:
    """repository and tag for docker's tag API ("a/b:1" -> ("a/b", "1"); a port is no tag)."""
    name, _, tag = ref.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return ref, None


def _stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _labels(api: Any, ref: str) -> dict[str, str]:
    info = api.inspect_image(ref)
    return ((info or {}).get("Config") or {}).get("Labels") or {}


def connect_engine(engine: Any | None = None, *, docker_host: str | None = None,
                   docker_context: str | None = None) -> Any:
    """The image engine to use: `engine` as given, else the engine attach would use, pinged
    (EngineUnreachable, PermissionDenied or InvalidInput when it cannot be)."""
    if engine is not None:
        return engine
    from debugkit.runtimes.docker.images import connect

    return connect(host=docker_host, context=docker_context)


def _engine_error(exc: BaseException, host: str = "the Docker engine") -> DebugkitError:
    """A connection to the engine that failed mid-call, as the matching debugkit error."""
    from debugkit.runtimes.docker.errors import engine_error

    return engine_error(exc, engine="Docker", host=host)


def _engine_calls():
    """The exceptions an engine call may raise, imported when a call is made."""
    from debugkit.runtimes.docker.engine import EngineConnectionError, EngineError
    from debugkit.runtimes.docker.registryauth import RegistryAuthError

    return EngineConnectionError, EngineError, RegistryAuthError


def _image_present(api: Any, ref: str) -> bool:
    return api.inspect_image(ref) is not None


def _pull(api: Any, ref: str, progress: ProgressFn) -> str | None:
    """Pull ref; None on success, else the reason it failed."""
    connection_error, engine_error, auth_error = _engine_calls()
    last = ""
    try:
        for item in api.pull(ref):
            if "error" in item:
                return str(item["error"]).strip()
            status = item.get("status", "")
            if status and status != last and "id" not in item:
                progress(status)
                last = status
    except engine_error as exc:
        return exc.explanation
    except (auth_error, connection_error, OSError, ValueError) as exc:
        return str(exc)
    return None


def resolve_base_image(
    *, api: Any, base_image: str | None, context: Path, progress: ProgressFn
) -> str:
    """Decide which base image the build uses, pulling it when it is not local.

    An explicit `base_image` is used as given, or fails. With none, the Dockerfile's
    digest-pinned default is used when it is local or can be pulled; when it cannot
    (offline, air-gapped), a local `debian:bookworm-slim` is used instead, with a warning,
    and the image's `org.opencontainers.image.base.name` label records the tag.
    """
    pinned = pinned_base_image(context)
    wanted = base_image or pinned
    if _image_present(api, wanted):
        return wanted
    progress(f"base image {wanted} is not local; pulling it")
    reason = _pull(api, wanted, progress)
    if reason is None and _image_present(api, wanted):
        return wanted
    if base_image is None and _image_present(api, OFFLINE_BASE_IMAGE):
        progress(
            f"warning: cannot pull {pinned} ({reason}); building from the local "
            f"{OFFLINE_BASE_IMAGE} instead, which is not pinned by digest "
            f"(pass --base-image to choose the base explicitly)"
        )
        return OFFLINE_BASE_IMAGE
    raise ImageMissing(
        f"base image {wanted} is not available locally and cannot be pulled: {reason}",
        hint=(
            f"pass --base-image with a local Debian bookworm image, or load one as {OFFLINE_BASE_IMAGE} "
            f"(on a machine without a registry: debootstrap --variant=minbase bookworm DIR && tar -C DIR -c . | "
            f"docker import - {OFFLINE_BASE_IMAGE})"
        ),
    )


_STEP_FROM = re.compile(r"^Step \d+/\d+ : FROM \S+(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)
_STEP_RESULT = re.compile(r"^ ---> ([0-9a-f]{12,64})$")


class _StageTracker:
    """Follows the legacy builder's output to learn each named stage's final image ID."""

    def __init__(self) -> None:
        self.stages: dict[str, str] = {}
        self._current: str | None = None
        self._last: str | None = None

    def feed(self, line: str) -> None:
        started = _STEP_FROM.match(line)
        if started:
            self._close()
            self._current, self._last = (started.group(1) or "").lower() or None, None
            return
        result = _STEP_RESULT.match(line)
        if result:
            self._last = result.group(1)

    def _close(self) -> None:
        if self._current and self._last:
            self.stages[self._current] = self._last

    def finish(self) -> dict[str, str]:
        self._close()
        return dict(self.stages)


def _stream_lines(items: Iterable[dict[str, Any]], progress: ProgressFn) -> Iterator[dict[str, Any]]:
    for item in items:
        text = item.get("stream")
        if text:
            for line in text.splitlines():
                if line.strip():
                    progress(line.rstrip())
        elif item.get("status"):
            progress(str(item["status"]))
        yield item


def build_toolbox(
    *,
    tag: str | None = None,
    base_image: str | None = None,
    variant: Variant = "full",
    progress: ProgressFn = _stderr_progress,
    engine: "ImageEngine | None" = None,
    docker_host: str | None = None,
    docker_context: str | None = None,
    cache_from: Sequence[str] = (),
    no_cache: bool = False,
    if_changed: bool = False,
) -> str:
    """Build the toolbox image and return the reference it was tagged with.

    tag         defaults to `variant_ref(variant)`, the standard local tag.
    base_image  the Debian bookworm image to build FROM; see `resolve_base_image`.
    variant     "full" (the debug tools) or "slim" (static busybox + static curl).
    progress    called with each line of build output (the CLI prints them on stderr).
    engine      an ImageEngine (runtimes/docker/images.py); when None, the engine attach
                uses for `docker_host` (-H) and `docker_context` (--docker-context), else
                DOCKER_HOST, DOCKER_CONTEXT or the current context.
    cache_from  images whose layers the engine may reuse (for CI caches that were
                `docker load`ed on a fresh machine). With the legacy builder this
                replaces the local cache: offer every stage (`CACHE_REPOSITORY` tags)
                and the previous results, or the build runs cold.
    no_cache    build every step again.
    if_changed  skip the build when `tag` (or one of `cache_from`) already has the
                `INPUTS_LABEL` digest of this build's inputs: the fast path for a fresh
                CI machine that `docker load`ed the previous result. Its revision
                label then names the commit that built it.

    On success the intermediate stages are tagged `CACHE_REPOSITORY:<stage>`.

    Raises EngineUnreachable / PermissionDenied when the engine does not answer,
    ImageMissing when no base image is usable, InvalidInput for a bad variant or tag,
    and DebugkitError when a build step fails (the message carries the step's error).
    """
    import time

    if variant not in VARIANTS:
        raise InvalidInput(f"unknown toolbox variant {variant!r}", hint="use one of: full, slim")
    ref = tag or variant_ref(variant)
    if not ref or any(c.isspace() for c in ref):
        raise InvalidInput(f"invalid image tag {ref!r}")

    api = connect_engine(engine, docker_host=docker_host, docker_context=docker_context)
    connection_error, engine_error, auth_error = _engine_calls()
    try:
        context = toolbox_context_dir()
        base = resolve_base_image(api=api, base_image=base_image, context=context, progress=progress)
        buildargs = {"BASE_IMAGE": base, **source_metadata(context)}
        inputs = inputs_digest(
            context=context, variant=variant, base_id=api.inspect_image(base)["Id"], buildargs=buildargs
        )
        if if_changed and not no_cache:
            for candidate in (ref, *cache_from):
                if _labels(api, candidate).get(INPUTS_LABEL) == inputs:
                    if candidate != ref:
                        api.tag(candidate, *_split_ref(ref))
                    progress(f"{ref} is up to date (inputs {inputs[7:19]} unchanged; found as {candidate})")
                    return ref
        buildargs["INPUTS"] = inputs
        progress(
            f"building {ref} ({variant}) from {context} on base {base}, "
            f"revision {buildargs['REVISION']}"
        )
        started = time.monotonic()
        error: str | None = None
        image_id: str | None = None
        tracker = _StageTracker()

        def track(line: str) -> None:
            tracker.feed(line)
            progress(line)

        try:
            stream = api.build(str(context), tag=ref, target=variant, buildargs=buildargs, nocache=no_cache,
                               cache_from=cache_from, timeout=BUILD_READ_TIMEOUT)
            for item in _stream_lines(stream, track):
                if "error" in item:
                    detail = item.get("errorDetail") or {}
                    error = str(detail.get("message") or item["error"]).strip()
                aux = item.get("aux") or {}
                if isinstance(aux, dict) and aux.get("ID"):
                    image_id = aux["ID"]
        except engine_error as exc:
            error = exc.explanation
        except auth_error as exc:
            error = str(exc)
        except (connection_error, OSError, ValueError) as exc:  # dropped or timed out mid-build
            raise _engine_error(exc, api.host) from exc
        if error:
            raise DebugkitError(f"toolbox build failed: {error}", hint="the build output above shows the failing step")
        info = api.inspect_image(ref)
        if info is None:
            raise DebugkitError(f"the build finished but {ref} cannot be inspected")
        if image_id and info.get("Id") != image_id:  # pragma: no cover - engine race
            raise DebugkitError(f"{ref} does not point at the image just built ({image_id})")
        for stage, stage_id in tracker.finish().items():
            if stage != variant:
                try:
                    api.tag(stage_id, CACHE_REPOSITORY, stage)
                except engine_error as exc:  # the image is built; a missing cache tag is not fatal
                    progress(f"warning: cannot tag stage {stage} ({stage_id}): {exc.explanation}")
        size_mb = info.get("Size", 0) / 1e6
        progress(f"built {ref} ({info['Id'][7:19]}, {size_mb:.1f} MB) in {time.monotonic() - started:.1f} s")
        return ref
    except connection_error as exc:
        raise _engine_error(exc, api.host) from exc
    except engine_error as exc:
        raise DebugkitError(f"the Docker engine at {api.host} said: {exc.explanation}") from exc
    finally:
        if engine is None:
            api.close()
