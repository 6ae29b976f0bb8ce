"""`toolbox build` progress: the legacy builder's output, recorded from the real engine
(tests/unit/data/legacy-build-*.jsonl: the JSON stream `docker build` sends, one item a
line), parsed into stages and steps, and shown as a line per stage, a rewritten line on a
terminal, or the whole log with --verbose; a failure shows the log's last lines."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from debugkit.toolbox.build import _stream_lines
from debugkit.toolbox.progress import BuildProgress, BuildReport, build_log_path, dockerfile_stages, strip_ansi

DATA = Path(__file__).parent / "data"
TOOLBOX_STAGES = ("curl-build", "slim-rootfs", "slim", "rootfs", "full")


def recorded(name: str) -> list[str]:
    """The lines build_toolbox() hands its progress callback for a recorded stream."""
    items = [json.loads(line) for line in (DATA / name).read_text().splitlines()]
    lines: list[str] = []
    for _ in _stream_lines(items, lines.append):
        pass
    return lines


def notes_around(lines: list[str], ref: str = "debugkit/toolbox:0.1.0") -> list[str]:
    """build_toolbox()'s own lines before and after the engine's."""
    return ([f"building {ref} (full) from /src/toolbox-image on base debian:bookworm-slim, revision abc"]
            + lines + [f"built {ref} (272f0d4e1528, 148.2 MB) in 1.3 s"])


def test_dockerfile_stages_up_to_the_target():
    dockerfile = (DATA / "legacy-build-run.Dockerfile").read_text()
    assert dockerfile_stages(dockerfile, "final") == ("build", "final")
    assert dockerfile_stages(dockerfile, "build") == ("build",)
    text = "FROM a AS one\nRUN x\nfrom b\nFROM c as Three\n"
    assert dockerfile_stages(text, "three") == ("one", "stage-1", "three")


def test_the_toolbox_dockerfile_stages():
    from debugkit.toolbox.build import toolbox_context_dir

    text = (toolbox_context_dir() / "Dockerfile").read_text()
    stages = dockerfile_stages(text, "full")
    assert stages[-1] == "full" and "rootfs" in stages and "curl-build" in stages
    assert dockerfile_stages(text, "slim")[-1] == "slim"


def test_parser_follows_stages_steps_and_the_cache():
    progress = BuildProgress(stages=TOOLBOX_STAGES)
    kinds = [(progress.feed(line), line) for line in recorded("legacy-build-toolbox-cached.jsonl")]
    stages = [(line, progress) for kind, line in kinds if kind == "stage"]
    assert [line.split(" AS ")[-1] for line, _ in stages] == list(TOOLBOX_STAGES)
    assert progress.steps == 41 and progress.step == 41 and progress.stage == "full"
    assert progress.stage_number == 5 and progress.finished
    assert progress.cached_steps == 33 and progress.run_steps == 2  # the SHELL and LABEL steps of full ran
    assert {kind for kind, _ in kinds} == {"stage", "step", "cached", "running", "detail", "done"}


def test_parser_status_line_mid_build():
    progress = BuildProgress(stages=TOOLBOX_STAGES)
    for line in recorded("legacy-build-toolbox-cached.jsonl"):
        progress.feed(line)
        if line.startswith("Step 38/41"):
            break
    assert progress.status() == "stage 5/5 full, step 38/41: ARG SOURCE=unknown"
    assert progress.stage_text() == "stage 5/5 full"


def test_parser_keeps_a_running_steps_output_apart():
    progress = BuildProgress(stages=("build", "final"))
    kinds = {}
    for line in recorded("legacy-build-run.jsonl"):
        line = strip_ansi(line)
        if line:
            kinds.setdefault(progress.feed(line), []).append(line)
    assert kinds["output"] == ["warning: something", "compiling", "line 1", "line 2", "line 3"]
    assert kinds["running"] == [" ---> Running in 760da3c94a34", " ---> Running in 84c6d03edc97",
                                " ---> Running in 79b9c053ad07", " ---> Running in 87198069c5a0"]
    assert progress.run_steps == 4 and progress.cached_steps == 0
    assert progress.stage_text() == "stage 2/2 final"


def test_lines_outside_the_engines_output_are_notes():
    progress = BuildProgress()
    assert progress.feed("base image debian:x is not local; pulling it") == "note"
    assert progress.feed("Step 1/2 : FROM debian AS a") == "stage"
    assert progress.feed("hello from a RUN") == "output"
    assert progress.feed("Successfully built pyyaml") == "output"  # pip's words inside a RUN step
    assert progress.feed("Successfully built 0123456789ab") == "done"
    assert progress.feed("Successfully tagged debugkit/toolbox:0.1.0") == "done"
    assert progress.feed("built debugkit/toolbox:0.1.0 (x) in 1 s") == "note"
    assert progress.stage_text() == "stage 1 a"  # no Dockerfile given: no total


def test_ansi_colour_of_a_steps_stderr_is_stripped():
    assert strip_ansi("\x1b[91mwarning: something\n\x1b[0m") == "warning: something\n"


def report(tmp_path, **kwargs) -> tuple[BuildReport, io.StringIO]:
    out = io.StringIO()
    kwargs.setdefault("stages", TOOLBOX_STAGES)
    rep = BuildReport(variant="full", log_path=tmp_path / "build.log", stream=out, **kwargs)
    return rep, out


def test_plain_output_is_a_line_per_stage_and_the_log_has_everything(tmp_path):
    rep, out = report(tmp_path, live=False)
    lines = notes_around(recorded("legacy-build-toolbox-cached.jsonl"))
    for line in lines:
        rep.line(line)
    rep.finished()
    shown = out.getvalue().splitlines()
    assert shown == [
        "debugkit: building debugkit/toolbox:0.1.0 (full) from /src/toolbox-image on base debian:bookworm-slim, "
        "revision abc",
        "debugkit: stage 1/5 curl-build (step 2/41)",
        "debugkit: stage 2/5 slim-rootfs (step 8/41)",
        "debugkit: stage 3/5 slim (step 13/41)",
        "debugkit: stage 4/5 rootfs (step 24/41)",
        "debugkit: stage 5/5 full (step 31/41)",
        f"debugkit: built debugkit/toolbox:0.1.0 (272f0d4e1528, 148.2 MB) in 1.3 s; 33 steps from the cache, "
        f"2 run; log: {tmp_path / 'build.log'}",
    ]
    assert (tmp_path / "build.log").read_text().splitlines() == [strip_ansi(line) for line in lines]


def test_quiet_shows_nothing_but_warnings(tmp_path):
    rep, out = report(tmp_path, quiet=True)
    for line in ["warning: cannot pull x; building from the local debian:bookworm-slim instead",
                 *notes_around(recorded("legacy-build-toolbox-cached.jsonl"))]:
        rep.line(line)
    rep.finished()
    assert out.getvalue() == "debugkit: warning: cannot pull x; building from the local debian:bookworm-slim instead\n"


def test_verbose_shows_every_line(tmp_path):
    rep, out = report(tmp_path, verbose=True)
    lines = notes_around(recorded("legacy-build-run.jsonl"))
    for line in lines:
        rep.line(line)
    rep.finished()
    assert out.getvalue().splitlines()[:-1] == [strip_ansi(line) for line in lines if strip_ansi(line)]
    assert "log:" not in out.getvalue()


def test_up_to_date_is_the_summary(tmp_path):
    rep, out = report(tmp_path, live=False)
    rep.line("debugkit/toolbox:0.1.0 is up to date (inputs 0123456789ab unchanged; found as debugkit/toolbox:0.1.0)")
    rep.finished()
    assert out.getvalue() == ("debugkit: debugkit/toolbox:0.1.0 is up to date (inputs 0123456789ab unchanged; found "
                              "as debugkit/toolbox:0.1.0)\n")


def test_a_failure_shows_the_last_lines_of_the_log_and_names_it(tmp_path):
    rep, out = report(tmp_path, stages=("build", "final"), live=False)
    for line in notes_around(recorded("legacy-build-fails.jsonl"))[:-1]:
        rep.line(line)
    hint = rep.failed()
    assert hint == f"the full log is {tmp_path / 'build.log'}"
    shown = out.getvalue().splitlines()
    failing = shown.index("debugkit: the build failed at stage 1/2 build, step 4/7; the last lines of its log:")
    tail = shown[failing + 1:]
    assert tail[-1] == "  | E: Unable to locate package nosuch"
    assert "  | Step 4/7 : RUN if [ \"$FAIL\" = 1 ]; then echo \"E: Unable to locate package nosuch\"; exit 100; " \
           "fi; echo ok > /out.txt" in tail
    assert not any("Removing intermediate" in line or "--->" in line and "Running" not in line for line in tail)


def test_a_terminal_gets_one_rewritten_line_then_the_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("TERM", "xterm")

    class Terminal(io.StringIO):
        encoding = "utf-8"

        def isatty(self):
            return True

    out = Terminal()
    rep = BuildReport(variant="full", stages=TOOLBOX_STAGES, log_path=tmp_path / "build.log", stream=out)
    assert rep.status.live
    for line in notes_around(recorded("legacy-build-toolbox-cached.jsonl")):
        rep.line(line)
    rep.finished()
    text = out.getvalue()
    assert "debugkit: stage" not in text          # no line per stage on a terminal
    assert text.count("\n") == 2                  # the erased status line, the summary
    assert text.rstrip("\n").rsplit("\n", 1)[-1].endswith(f"log: {tmp_path / 'build.log'}")


def test_an_unwritable_log_place_falls_back_to_a_temporary_file(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    out = io.StringIO()
    rep = BuildReport(variant="full", log_path=blocked / "sub" / "build.log", stream=out, live=False)
    rep.line("Step 1/1 : FROM x AS y")
    rep.finished()
    assert "warning: cannot write" in out.getvalue()
    assert rep.log_path is not None and rep.log_path.read_text() == "Step 1/1 : FROM x AS y\n"
    rep.log_path.unlink()


def test_default_log_place(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert build_log_path("slim") == tmp_path / "debugkit" / "toolbox-build-slim.log"


@pytest.mark.parametrize("name", ["legacy-build-toolbox-cached.jsonl", "legacy-build-run.jsonl"])
def test_following_a_build_costs_little(tmp_path, name):
    """The overhead per line of build output, measured: the parser and the report (log
    file included) must stay far below what the engine takes to produce a line."""
    import time

    lines = notes_around(recorded(name)) * 20
    rep, _ = report(tmp_path, live=False)
    started = time.perf_counter()
    for line in lines:
        rep.line(line)
    rep.finished()
    per_line = (time.perf_counter() - started) / len(lines)
    assert per_line < 200e-6, f"{per_line * 1e6:.0f} µs per line"
