"""Image references: the bundled toolbox's name, and what a valid reference looks like.

The grammar is the distribution project's (docker/distribution `reference`): an optional
registry host[:port], lower-case path components, an optional tag and an optional
digest. An image ID (`sha256:<64 hex>` or its hex prefix) is accepted too, as `docker
run` accepts it. Checked before any engine is contacted, so a typo is exit 64 with the
reason, not an engine error.
"""
from __future__ import annotations

import re

from debugkit import __version__
from debugkit.core.errors import InvalidInput

TOOLBOX_REPOSITORY = "debugkit/toolbox"
VARIANTS = ("full", "slim")

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII)
_IMAGE_ID = re.compile(r"(?:sha256:)?[0-9a-f]{12,64}", re.ASCII)
MAX_NAME = 255


def toolbox_ref(variant: str = "full", *, version: str = __version__) -> str:
    """The bundled toolbox's local tag: `debugkit/toolbox:<version>[-slim]`."""
    if variant not in VARIANTS:
        raise InvalidInput(f"unknown toolbox variant {variant!r}", hint="use one of: full, slim")
    return f"{TOOLBOX_REPOSITORY}:{version}" + ("" if variant == "full" else f"-{variant}")


def validate_image_ref(ref: str, *, flag: str = "--image") -> str:
    """`ref` unchanged when it is a valid reference or image ID; InvalidInput otherwise."""
    if not ref:
        raise InvalidInput(f"{flag} must not be empty")
    if any(ch.isspace() or not ch.isprintable() for ch in ref):
        raise InvalidInput(f"invalid {flag} {ref!r}: an image reference has no spaces or control characters")
    if _IMAGE_ID.fullmatch(ref):
        return ref
    match = _REFERENCE.fullmatch(ref)
    if not match:
        raise InvalidInput(f"invalid {flag} {ref!r}: expected [REGISTRY/]NAME[:TAG][@DIGEST] "
                           f"with a lower-case name, e.g. debugkit/toolbox:0.1.0")
    if len(match.group(1)) > MAX_NAME:
        raise InvalidInput(f"invalid {flag} {ref!r}: the name is longer than {MAX_NAME} characters")
    return ref


def split_ref(ref: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of a valid reference; a registry port is not a tag."""
    name, _, digest = ref.partition("@")
    repo, sep, tag = name.rpartition(":")
    if sep and "/" not in tag:
        return repo, tag, digest or None
    return name, None, digest or None
