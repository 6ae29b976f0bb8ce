"""Which Engine API version to speak, chosen as the docker CLI and docker-py (version="auto") do.

Pure: the engine client (engine.py) asks `GET /version` on the unversioned path, which
every engine answers whatever its range, once per process, and hands the answer here.
debugkit speaks the engine's newest version, capped at the newest one it is tested
against, and never below the engine's `MinAPIVersion` nor below the oldest it can speak.

When a call is refused as too old or too new (an engine upgraded, or restarted with
another DOCKER_MIN_API_VERSION, under a long session), the refusal says the engine's
limit; the client asks again and retries once. An engine whose range does not meet
ours is an `EngineIncompatible` error (its own exit code) that names both ranges and
what to upgrade, never "cannot reach".
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from debugkit.core.errors import EngineIncompatible

#: The newest Engine API version debugkit is tested against (Docker 29.0 speaks 1.52; later
#: 29.x engines offer up to 1.55 and still speak 1.52). debugkit never speaks a newer one:
#: a newer version may leave out or change fields nobody here has seen.
NEWEST_TESTED = "1.52"
#: The oldest version debugkit speaks: Docker 20.10 and Podman 4, the oldest engines it is
#: tested on, offer 1.41 (every call debugkit makes exists since 1.30).
OLDEST_SUPPORTED = "1.41"

# moby, daemon/server/middleware/version.go (the same words since Docker 1.13):
#   client version 1.41 is too old. Minimum supported API version is 1.44, please upgrade your client to a newer version
#   client version 1.55 is too new. Maximum supported API version is 1.41
_REFUSAL = re.compile(r"client version (\d+\.\d+) is too (old|new)\. (?:Minimum|Maximum) supported API version is "
                      r"(\d+\.\d+)")


def parse(text) -> tuple[int, int] | None:
    """"1.41" -> (1, 41); None for anything else (compared as numbers: 1.9 < 1.41)."""
    if not isinstance(text, str):
        return None
    major, dot, minor = text.strip().partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        return None
    return int(major), int(minor)


def _text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


@dataclass(frozen=True)
class Refusal:
    """An engine refused a call for its API version: `spoke` was too old (below `limit`,
    its minimum) or too new (above `limit`, its maximum)."""

    spoke: str
    too: str     # "old" | "new"
    limit: str


def refusal(status: int, message: str) -> Refusal | None:
    """The refusal in an error answer, or None when the answer is about something else."""
    if status != 400:
        return None
    match = _REFUSAL.search(message or "")
    return Refusal(*match.groups()) if match else None


@dataclass(frozen=True)
class Negotiated:
    """The version debugkit speaks to one engine, and what the engine said about itself."""

    version: str                      # what every call's /vX.Y prefix carries
    engine_max: str | None            # the engine's ApiVersion
    engine_min: str | None            # its MinAPIVersion (None: it did not say)
    engine_version: str | None        # the engine's own release ("29.1.3", Podman's "4.3.1")

    def engine_range(self) -> str:
        if self.engine_max is None:
            return "an unstated range"
        return f"{self.engine_min} to {self.engine_max}" if self.engine_min else f"up to {self.engine_max}"

    def describe(self) -> str:
        """`1.52 (engine 29.1.3 speaks 1.44 to 1.55)`: for inspect, doctor and --debug."""
        release = f"engine {self.engine_version}" if self.engine_version else "the engine"
        return f"{self.version} ({release} speaks {self.engine_range()})"


class VersionMismatch(EngineIncompatible):
    """The engine speaks no Engine API version this debugkit speaks."""

    def __init__(self, *, engine: str, host: str, engine_min: str | None, engine_max: str | None,
                 engine_version: str | None = None):
        self.engine_min, self.engine_max, self.engine_version = engine_min, engine_max, engine_version
        theirs = Negotiated(NEWEST_TESTED, engine_max, engine_min, engine_version).engine_range()
        release = f" ({engine} {engine_version})" if engine_version else ""
        message = (f"the {engine} engine at {host}{release} speaks Engine API {theirs}, and this debugkit speaks "
                   f"{OLDEST_SUPPORTED} to {NEWEST_TESTED}")
        old_engine = (parse(engine_max) or (0, 0)) < parse(OLDEST_SUPPORTED)
        if old_engine and engine_max is not None:
            hint = (f"upgrade the engine to one that speaks API {OLDEST_SUPPORTED} or later "
                    f"(Docker 20.10, Podman 4.3 or later)")
        elif engine == "Docker":
            hint = f"upgrade debugkit, or start dockerd with DOCKER_MIN_API_VERSION={NEWEST_TESTED}"
        else:
            hint = "upgrade debugkit"
        super().__init__(message, hint=hint)


def negotiate(answer: dict, *, engine: str, host: str, refused: Refusal | None = None) -> Negotiated:
    """The version to speak, from a `GET /version` answer (and the refusal that made us
    ask again, whose limit the engine has just stated). Raises VersionMismatch when the
    ranges do not meet."""
    answer = answer if isinstance(answer, dict) else {}
    high = parse(answer.get("ApiVersion"))
    low = parse(answer.get("MinAPIVersion"))
    if refused is not None:
        limit = parse(refused.limit)
        if refused.too == "old":
            low = max(low, limit) if low else limit
        else:
            high = min(high, limit) if high else limit
    release = answer.get("Version") if isinstance(answer.get("Version"), str) else None
    stated_max = _text(high) if high else None
    stated_min = _text(low) if low else None
    if high:
        chosen = min(high, parse(NEWEST_TESTED))
    else:
        # An engine that does not state its newest version (a proxy that hides it) gets the
        # oldest we speak, or its minimum: a refusal then states its limit.
        chosen = max(low, parse(OLDEST_SUPPORTED)) if low else parse(OLDEST_SUPPORTED)
    if not parse(OLDEST_SUPPORTED) <= chosen <= parse(NEWEST_TESTED) or (low is not None and chosen < low):
        raise VersionMismatch(engine=engine, host=host, engine_min=stated_min, engine_max=stated_max,
                              engine_version=release)
    return Negotiated(_text(chosen), stated_max, stated_min, release)
