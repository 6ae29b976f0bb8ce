"""What every doctor check returns, and what the checks share."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from debugkit.core.errors import DebugkitError

OK, FAIL, WARN, SKIP, NOT_CONFIGURED = "ok", "fail", "warn", "skip", "not configured"
ENGINE_TIMEOUT = 5.0
KUBE_TIMEOUT = 5.0
REGISTRY_TIMEOUT = 10.0
EXAMPLE_UID = 65532  # distroless nonroot: what PodSecurity is judged for when no TARGET is given


@dataclass(frozen=True)
class Result:
    name: str
    status: str          # ok | fail | warn | skip | not configured
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        """Only a failure fails the run: warnings, skips and missing runtimes do not."""
        return self.status != FAIL

    def as_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def passed(results: Iterable[Result]) -> bool:
    return all(r.ok for r in results)


def guard(name: str, check: Callable[[], list[Result]]) -> list[Result]:
    """A check that breaks (a bug, an answer nobody expected) is one failed line, not a crash."""
    try:
        return check()
    except DebugkitError as exc:
        return [Result(name, FAIL, exc.message, exc.hint or "")]
    except Exception as exc:  # noqa: BLE001
        return [Result(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                       "rerun with --debug and report it")]


def toolbox_setting(runtime: str, kube_context: str | None = None):
    """The sidecar image a target on `runtime` gets without --image, and where it comes from
    (environment > the config file's context, runtime and global entries > built-in)."""
    from debugkit.session import config

    return config.current().effective("image", runtime=runtime, kube_context=kube_context)
