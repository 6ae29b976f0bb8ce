"""What the Engine API client raises, and how it reads an engine's error answers: the
errors are the Docker runtime's vocabulary (a refusal, a missing object, an unreachable
engine, an answer that is not the Engine API's), kept apart from the client that raises them.
"""
from __future__ import annotations

from debugkit.core import jsonsafe


class EngineError(Exception):
    """An answer from the engine that is not a success."""

    def __init__(self, status: int, explanation: str):
        super().__init__(f"{status}: {explanation}")
        self.status_code = status
        self.explanation = explanation


class EngineNotFound(EngineError):
    pass


class EngineConnectionError(OSError):
    """The engine could not be reached at all."""

    def __init__(self, message: str, *, detail: str | None = None):
        super().__init__(message)
        self.detail = detail


class SSHConnectionError(EngineConnectionError):
    """ssh could not connect, authenticate or keep the connection to an ssh:// engine;
    `detail` is ssh's own reason as one line (see sshdial.explain)."""


class EngineAnswerInvalid(Exception):
    """The engine answered, but not with what the Engine API sends: HTML from a web server
    at that address, JSON nested without end, a list for an object, a body past any real
    answer's size. `request` is the call ("GET /containers/x/json"), `what` what came back."""

    def __init__(self, request: str, what: str):
        super().__init__(f"{request}: {what}")
        self.request = request
        self.what = what


# No answer debugkit reads is near this: `containers?all=1` on an engine with thousands
# of containers is a few MB. Bigger is not an engine speaking the API.
MAX_ANSWER_BYTES = 64 << 20
MAX_ERROR_BYTES = 1 << 20


class EngineConfigError(ValueError):
    """The engine's address or TLS settings cannot be used as given (a typo, not an outage)."""


def error_message(payload: bytes) -> str | None:
    """The `message` of an engine's error body ("" for an empty body, as HEAD's); None when
    the body is not the Engine API's JSON at all (HTML from a proxy, text, a bomb)."""
    if not payload.strip():
        return ""
    try:
        found = jsonsafe.loads(payload, max_bytes=MAX_ERROR_BYTES)
    except jsonsafe.Rejected:
        return None
    if isinstance(found, dict):
        message = found.get("message")
        return message.strip() if isinstance(message, str) else " ".join(str(found)[:300].split())
    return None


def checked(doc: dict, request: str, *, required: tuple[str, ...] = (), **fields: type) -> dict:
    """doc, when each named field is absent, null, or of its type (and each `required` one
    is there); EngineAnswerInvalid naming the first one that is not (a string for an
    object, a number for a list)."""
    for name in required:
        if doc.get(name) is None:
            raise EngineAnswerInvalid(request, f"an answer without {name}")
    for name, kind in fields.items():
        value = doc.get(name)
        if value is not None:
            try:
                jsonsafe.expect(value, kind, name)
            except jsonsafe.Rejected as exc:
                raise EngineAnswerInvalid(request, str(exc)) from None
    return doc
