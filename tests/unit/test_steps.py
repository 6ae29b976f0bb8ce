"""The client of `debugkit-helper steps` (runtimes/steps.py) against a scripted helper:
what it sends, and how it treats what a hostile helper (it shares the target's UID) sends."""
from __future__ import annotations

import json
import time

import pytest

from debugkit.core.errors import DebugkitError
from debugkit.runtimes import steps
from debugkit.runtimes.steps import END, ERR, HEADER, OUT, RUN, HelperSteps, StepsBroken


def frame(kind: int, payload: bytes) -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def end(code=0, timed_out=False, truncated=False) -> bytes:
    return frame(END, json.dumps({"exit": code, "timed_out": timed_out, "truncated": truncated}).encode())


class ScriptedChannel:
    """Answers each request with the next script entry: a list of reads, each a list of
    (is_stderr, bytes), or None for the end of the exec's output."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.sent: list[bytes] = []
        self.reads: list = []
        self.closed = False
        self.ended_with: bytes | None = None

    def send(self, data: bytes) -> None:
        self.sent.append(data)
        self.reads = list(self.answers.pop(0))

    def read(self, timeout: float):
        if not self.reads:
            time.sleep(min(timeout, 0.05))
            return []
        return self.reads.pop(0)

    def ended(self, stderr: bytes) -> None:
        self.ended_with = stderr

    def close(self, *, wait: bool = False) -> None:
        self.closed = True


def runner(*channels):
    opened = list(channels)
    return HelperSteps(lambda: opened.pop(0))


def test_steps_share_one_exec_and_each_request_says_what_to_run():
    channel = ScriptedChannel(
        [[(False, frame(OUT, b"hel") + frame(OUT, b"lo\n"))], [(False, frame(ERR, b"warn\n") + end(3))]],
        [[(False, end(0))]])
    steps_ = runner(channel)
    first = steps_.run(["sh", "-c", "echo hello"], timeout=2.5, max_output=100)
    second = steps_.run(["true"], timeout=1, max_output=100)
    assert (first.stdout, first.stderr, first.exit_code, first.timed_out) == (b"hello\n", b"warn\n", 3, False)
    assert second.exit_code == 0 and not channel.closed
    kind, size = HEADER.unpack_from(channel.sent[0])
    assert kind == RUN and size == len(channel.sent[0]) - HEADER.size
    assert json.loads(channel.sent[0][HEADER.size:]) == {"argv": ["sh", "-c", "echo hello"], "timeout": 2.5,
                                                         "max_output": 100}


def test_frames_split_anywhere_are_put_back_together():
    data = frame(OUT, b"abc") + frame(ERR, b"de") + end(0)
    channel = ScriptedChannel([[(False, data[i:i + 1])] for i in range(len(data))])
    result = runner(channel).run(["x"], timeout=1, max_output=10)
    assert (result.stdout, result.stderr, result.exit_code) == (b"abc", b"de", 0)


def test_a_timed_out_step_has_no_exit_code():
    result = runner(ScriptedChannel([[(False, frame(OUT, b"started\n") + end(137, timed_out=True))]])).run(
        ["sleep", "9"], timeout=1, max_output=100)
    assert result.timed_out and result.exit_code is None and result.stdout == b"started\n"


def test_output_is_capped_whatever_the_helper_sends():
    flood = [(False, frame(OUT, b"a" * steps.MAX_CHUNK))] * 40   # 1.25 MiB, though the cap is 1000
    result = runner(ScriptedChannel([*[[f] for f in flood], [(False, end(0))]])).run(["x"], timeout=5,
                                                                                   max_output=1000)
    assert result.stdout == b"a" * 1000 and result.truncated


@pytest.mark.parametrize("bad", [
    frame(b"Z"[0], b""),                                   # a type it never sends
    HEADER.pack(OUT, steps.MAX_CHUNK + 1),                 # a chunk beyond the maximum: refused from its header
    HEADER.pack(END, 1 << 30),                             # a huge end record
    frame(END, b"not json"),
    frame(END, b'{"exit": "0", "timed_out": false, "truncated": false}'),
    frame(END, b'{"exit": 1000, "timed_out": false, "truncated": false}'),
    frame(END, b'{"exit": 0, "timed_out": 1, "truncated": false}'),
    frame(END, b"[0, false, false]"),
    end(0) + frame(OUT, b"after the end"),
])
def test_a_helper_that_breaks_the_protocol_is_refused_and_dropped(bad):
    channel = ScriptedChannel([[(False, bad)]])
    with pytest.raises(StepsBroken):
        runner(channel).run(["x"], timeout=5, max_output=100)
    assert channel.closed


def test_a_helper_that_never_answers_times_out_at_the_backstop_and_the_next_step_gets_a_new_exec(monkeypatch):
    monkeypatch.setattr(steps, "BACKSTOP_SECONDS", 0.2)
    silent = ScriptedChannel([[(False, frame(OUT, b"partial"))]])
    fresh = ScriptedChannel([[(False, end(0))]])
    steps_ = runner(silent, fresh)
    started = time.monotonic()
    result = steps_.run(["x"], timeout=0.1, max_output=100)
    assert time.monotonic() - started < 2
    assert result.timed_out and result.exit_code is None and result.stdout == b"partial"
    assert silent.closed
    assert steps_.run(["y"], timeout=1, max_output=100).exit_code == 0 and len(fresh.sent) == 1


def test_output_that_ends_in_the_middle_of_a_step_is_an_error_with_the_helper_s_words():
    channel = ScriptedChannel([[(True, b"debugkit-helper: unknown command \"steps\"\n")], None])
    with pytest.raises(DebugkitError, match="ended in the middle of a step"):
        runner(channel).run(["x"], timeout=5, max_output=100)
    assert channel.ended_with.startswith(b"debugkit-helper: unknown command") and channel.closed


def test_the_helper_s_own_stderr_is_kept_bounded():
    flood = [[(True, b"e" * 65536)] for _ in range(64)]
    channel = ScriptedChannel([*flood, None])
    with pytest.raises(DebugkitError):
        runner(channel).run(["x"], timeout=5, max_output=100)
    assert len(channel.ended_with) <= 2 * (4 << 10) + 1


class TooOldChannel(ScriptedChannel):
    def ended(self, stderr: bytes) -> None:
        from debugkit.core.errors import ImageMissing

        raise ImageMissing("the sidecar's debugkit-helper does not understand what this debugkit asks of it")


def test_a_helper_without_steps_falls_back_to_one_exec_a_step_when_the_runtime_can():
    from debugkit.runtimes.execution import ExecResult

    ran = []

    def one_exec(argv, *, timeout, max_output):
        ran.append(list(argv))
        return ExecResult(tuple(argv), 0, b"", b"", 0.01)

    old = TooOldChannel([[(True, b'debugkit-helper: unknown command "steps"\n')], None])
    steps_ = HelperSteps(lambda: old, fallback=one_exec)
    assert steps_.run(["a"], timeout=1, max_output=10).exit_code == 0
    assert steps_.run(["b"], timeout=1, max_output=10).exit_code == 0
    assert ran == [["a"], ["b"]] and len(old.sent) == 1   # the helper was asked once

    from debugkit.core.errors import ImageMissing

    with pytest.raises(ImageMissing):   # without a fallback: the error, with its fix
        HelperSteps(lambda: TooOldChannel([[], None])).run(["a"], timeout=1, max_output=10)
