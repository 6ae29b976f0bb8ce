"""Readable progress for `debugkit toolbox build`: the legacy builder's output, followed.

`build_toolbox()` hands every line to its `progress` callback: its own notes (the base
image, warnings, the result) and, in between, the engine's raw build output, hundreds of
lines of it. `BuildProgress` parses that output (`Step 38/41 : RUN ...`, ` ---> Using
cache`, ` ---> Running in ...`, the commands' own output, `Successfully built ...`) into
the stage, the step and whether it came from the cache. `BuildReport` shows that to a
person: on a terminal one line, rewritten, with the elapsed time; elsewhere one short line
per stage. The full log goes to a file (`build_log_path()`), or to stderr with verbose.
On failure the last lines of the log and its path are shown.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Sequence

from debugkit.core.files import state_dir, state_home

STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_FROM = re.compile(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)
_CACHED = " ---> Using cache"
_RUNNING = re.compile(r"^ ---> Running in [0-9a-f]+$")
_RESULT = re.compile(r"^ --->(?: [0-9a-f]{12,64})?\s*$")
_REMOVING = re.compile(r"^Removing intermediate container [0-9a-f]+$")
# (a RUN step's own "Successfully built foo", as pip prints, is no image ID)
_DONE = re.compile(r"^Successfully built [0-9a-f]{12,64}$|^Successfully tagged \S+$")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_DOCKERFILE_FROM = re.compile(r"^\s*FROM\s+\S+(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE | re.MULTILINE)

#: How many lines of the log a failed build shows.
TAIL_LINES = 25


def strip_ansi(line: str) -> str:
    """The engine colours a RUN step's stderr (ESC[91m ... ESC[0m): plain text for the log."""
    return _ANSI.sub("", line)


def dockerfile_stages(dockerfile_text: str, target: str | None) -> tuple[str, ...]:
    """The stages the legacy builder builds for `target`: every stage up to and including
    it, in order (it builds them all, used or not). Unnamed stages are `stage-N`."""
    names = []
    for index, match in enumerate(_DOCKERFILE_FROM.finditer(dockerfile_text)):
        names.append((match.group(1) or f"stage-{index}").lower())
        if target and names[-1] == target.lower():
            break
    return tuple(names)


@dataclass
class BuildProgress:
    """The state of a legacy-builder build, from its output lines (`feed`).

    kinds feed() returns: "note" (a line of debugkit's own, outside the engine's build
    output), "stage" (a FROM step: a stage begins), "step", "cached", "running",
    "output" (a command's own output), "detail" (bookkeeping: image IDs, removed
    containers), "done" (Successfully built/tagged).
    """

    stages: tuple[str, ...] = ()
    stage: str | None = None
    stage_number: int = 0
    step: int = 0
    steps: int = 0
    instruction: str = ""
    cached_steps: int = 0
    run_steps: int = 0
    in_build: bool = False
    finished: bool = False

    def feed(self, line: str) -> str:
        line = strip_ansi(line.rstrip("\n"))
        step = STEP.match(line)
        if step:
            self.in_build = True
            self.step, self.steps, self.instruction = int(step.group(1)), int(step.group(2)), step.group(3).strip()
            start = _FROM.match(self.instruction)
            if start:
                self.stage_number += 1
                self.stage = (start.group(2) or f"stage-{self.stage_number - 1}").lower()
                return "stage"
            return "step"
        if not self.in_build:
            return "note"
        if _DONE.match(line):  # only at the very end: "Successfully built ID", "... tagged REF"
            self.finished = True
            return "done"
        if self.finished:
            return "note"
        if line == _CACHED:
            self.cached_steps += 1
            return "cached"
        if _RUNNING.match(line):
            self.run_steps += 1
            return "running"
        if _RESULT.match(line) or _REMOVING.match(line):
            return "detail"
        return "output"

    @property
    def stage_total(self) -> int:
        return max(len(self.stages), self.stage_number)

    def stage_text(self) -> str:
        """`stage 4/5 rootfs` (the total when the Dockerfile's stages are known)."""
        if self.stage is None:
            return ""
        total = f"/{self.stage_total}" if self.stages else ""
        return f"stage {self.stage_number}{total} {self.stage}"

    def status(self) -> str:
        """One line: `stage 4/5 rootfs, step 38/41: RUN apt-get ...`."""
        if not self.in_build:
            return "preparing"
        if self.finished:
            return "tagging"
        instruction = " ".join(self.instruction.split())
        return f"{self.stage_text()}, step {self.step}/{self.steps}: {instruction}"


def build_log_path(variant: str) -> Path:
    """Where a build's full log goes: $XDG_STATE_HOME/debugkit/toolbox-build-VARIANT.log
    (~/.local/state when XDG_STATE_HOME is unset); the next build of the variant replaces it."""
    return state_home() / "debugkit" / f"toolbox-build-{variant}.log"


def _open_log(path: Path) -> tuple[IO[str] | None, Path | None, str | None]:
    """The log file opened for writing, or a temporary one when that place is not writable."""
    import tempfile

    try:
        if path.parent == state_home() / "debugkit":
            state_dir()  # 0700, whichever command comes first
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8", errors="replace"), path, None  # noqa: SIM115
    except OSError as exc:
        problem = f"cannot write {path} ({exc.strerror or exc})"
    try:
        fd, name = tempfile.mkstemp(prefix="debugkit-toolbox-build-", suffix=".log")
        return os.fdopen(fd, "w", encoding="utf-8", errors="replace"), Path(name), problem
    except OSError as exc:
        return None, None, f"{problem}; no temporary file either ({exc.strerror or exc})"


class BuildReport:
    """Shows a build to a person and keeps its log. `line` is build_toolbox's progress
    callback; call `finished()` or `failed()` at the end (both close the log).

    quiet     nothing but warnings (and, on failure, the log's path).
    verbose   every line of the build on stderr, as the engine sends it.
    live      None: a rewritten line when stderr is a terminal.
    """

    def __init__(self, *, variant: str, stages: Sequence[str] = (), log_path: Path | None = None,
                 quiet: bool = False, verbose: bool = False, live: bool | None = None,
                 stream: IO[str] | None = None):
        import sys

        from debugkit.core.statusline import StatusLine

        self.progress = BuildProgress(stages=tuple(stages))
        self.label = f"building the {variant} toolbox"
        self.quiet, self.verbose = quiet, verbose
        self.stream = stream if stream is not None else sys.stderr
        self.wanted_log = log_path or build_log_path(variant)
        self.log: IO[str] | None = None
        self.log_path: Path | None = None   # set once the first line is written
        self._log_tried = False
        self.tail: list[str] = []
        self.what = ""  # debugkit's last "building ..." / "built ..." / "... is up to date" note
        show_live = False if (quiet or verbose) else live
        self.status = StatusLine(self.stream, live=show_live)

    def _write_log(self, text: str) -> None:
        if not self._log_tried:  # the first line: open the file
            self._log_tried = True
            self.log, self.log_path, problem = _open_log(self.wanted_log)
            if problem:
                self.status.print(f"debugkit: warning: {problem}" + (f"; the build log is {self.log_path}"
                                                                     if self.log_path else ""))
        if self.log is not None:
            self.log.write(text + "\n")
            self.log.flush()

    # -- the progress callback -------------------------------------------------------------

    def line(self, raw: str) -> None:
        text = strip_ansi(raw.rstrip("\n"))
        if not text.strip():  # the engine's colour reset after a step's stderr, on its own
            return
        kind = self.progress.feed(text)
        self._write_log(text)
        if kind not in ("detail", "done"):
            self.tail.append(text)
            del self.tail[:-TAIL_LINES]
        if self.verbose:
            self.status.print(text)
            return
        if kind == "note":
            self._note(text)
            return
        if kind == "stage" and not self.status.live and not self.quiet:
            self.status.print(f"debugkit: {self.progress.stage_text()} (step {self.progress.step}/"
                              f"{self.progress.steps})")
        self.status.update(f"{self.label}: {self.progress.status()}")

    def _note(self, text: str) -> None:
        """debugkit's own lines: warnings always, the rest as the status (or a plain line)."""
        if text.startswith("warning:"):
            self.status.print(f"debugkit: {text}")
        elif text.startswith(("built ", "building ")) or " is up to date " in text:
            self.what = text
            if not self.quiet and not self.status.live and text.startswith("building "):
                self.status.print(f"debugkit: {text}")
        elif not self.status.live and not self.quiet:
            self.status.print(f"debugkit: {text}")
        else:
            self.status.update(f"{self.label}: {text}")

    # -- the end ----------------------------------------------------------------------------

    def _close(self) -> None:
        self.status.close()
        if self.log is not None:
            self.log.close()
            self.log = None

    def finished(self) -> None:
        """Success: the summary (what build_toolbox said last, the cache, the log)."""
        self._close()
        if self.quiet:
            return
        summary = self.what if self.what.startswith("built ") or " is up to date " in self.what else "built"
        p = self.progress
        if p.steps:
            summary += f"; {p.cached_steps} steps from the cache, {p.run_steps} run"
        if self.log_path and not self.verbose and p.steps:  # (nothing built: nothing worth a log)
            summary += f"; log: {self.log_path}"
        self.status.print(f"debugkit: {summary}")

    def failed(self) -> str | None:
        """Failure: the last lines of the log on stderr; returns a hint naming the log
        (None when nothing was logged: the error's own hint says more then)."""
        self._close()
        p = self.progress
        if not self.quiet and not self.verbose and self.tail:
            where = f" at {p.stage_text()}, step {p.step}/{p.steps}" if p.in_build else ""
            self.status.print(f"debugkit: the build failed{where}; the last lines of its log:")
            for text in self.tail:
                self.status.print(f"  | {text}")
        if self.log_path is None:
            return None
        return f"the full log is {self.log_path}"
