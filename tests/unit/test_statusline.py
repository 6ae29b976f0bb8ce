"""The one-line status (core.statusline) and how the Kubernetes runtime uses it for its
waits: one rewritten line on a terminal, the old `debugkit: waiting: REASON` lines
elsewhere, and a start timeout that names the image the node could not pull."""
from __future__ import annotations

import io
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from debugkit.core.errors import Timeout
from debugkit.core.statusline import StatusLine, elapsed_text, is_live_terminal
from debugkit.runtimes.kubernetes import start as kube_start
from debugkit.runtimes.kubernetes.runtime import KubernetesRuntime


class FakeTerminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


class FakeBinaryTerminal(io.BytesIO):
    def isatty(self) -> bool:
        return True


def test_elapsed_text():
    assert [elapsed_text(s) for s in (0, 7.9, 151, 3723)] == ["0:00", "0:07", "2:31", "1:02:03"]


def test_plain_stream_gets_plain_lines_and_no_updates():
    out = io.StringIO()
    with StatusLine(out) as status:
        assert status.live is False
        status.update("not shown")
        status.print("debugkit: stage 1/5 curl-build")
        status.print("escape \x1b[2J here")
    assert out.getvalue() == "debugkit: stage 1/5 curl-build\nescape \\x1b[2J here\n"


def test_dumb_terminal_is_not_live(monkeypatch):
    monkeypatch.setenv("TERM", "dumb")
    assert is_live_terminal(FakeTerminal()) is False
    monkeypatch.setenv("TERM", "xterm")
    assert is_live_terminal(FakeTerminal()) is True
    assert is_live_terminal(io.StringIO()) is False


def test_terminal_line_is_rewritten_then_erased_and_never_markup(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    out = FakeTerminal()
    with StatusLine(out) as status:
        assert status.live
        status.update("waiting: [bold]ErrImagePull[/bold] \x1b]0;title\x07")
        time.sleep(0.4)  # at least one refresh (4 a second)
        status.print("a line that stays")
    text = out.getvalue()
    assert "waiting: [bold]ErrImagePull[/bold] \\x1b]0;title\\x07" in text  # literal, escaped
    assert "\x1b]0;" not in text
    assert "a line that stays\n" in text
    assert "\r\x1b[2K" in text                       # the line is redrawn in place
    assert text.endswith("\x1b[?25h\r\x1b[1A\x1b[2K")  # cursor back, the line erased
    assert "0:00" in text


def test_over_binary_writes_bytes():
    raw = FakeBinaryTerminal()
    with StatusLine.over_binary(raw, live=False) as status:
        status.print("héllo")
    assert raw.getvalue() == "héllo\n".encode()


def test_importing_statusline_does_not_import_rich():
    code = "import sys, debugkit.core.statusline; print('rich' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


# -- the Kubernetes waits ------------------------------------------------------------------------

def plan(*, helper=True, reuse=None, image="debugkit/toolbox:0.1.0", timeout=20.0):
    spec = SimpleNamespace(name="debugkit-abc123", image=image)
    return SimpleNamespace(spec=spec, reuse=reuse, helper=helper, details=SimpleNamespace(timeout=timeout))


def runtime(context="kind-debugkit"):
    rt = KubernetesRuntime.__new__(KubernetesRuntime)
    rt._context, rt._auth, rt._api = context, None, object()
    return rt


def test_timeout_without_a_pull_problem_keeps_its_old_message():
    exc = runtime().start_timeout(plan(), "ContainerCreating", {})
    assert isinstance(exc, Timeout)
    assert str(exc) == "debug container debugkit-abc123 did not start within 20s (last state: ContainerCreating)"


def test_timeout_on_a_pull_failure_names_the_image_and_what_to_do():
    why = 'failed to pull and unpack image "docker.io/debugkit/toolbox:0.1.0": pull access denied'
    exc = runtime().start_timeout(plan(), "ImagePullBackOff",
                                  {"ErrImagePull": why, "ImagePullBackOff": 'Back-off pulling image "x"'})
    assert exc.message == ("debug container debugkit-abc123 did not start within 20s: the node cannot pull the "
                           f"image debugkit/toolbox:0.1.0 (last state: ImagePullBackOff; the last pull failed "
                           f"with: {why})")
    assert "debugkit toolbox push REGISTRY/REPOSITORY --set-default --context kind-debugkit" in exc.hint
    assert "imagePullSecrets" in exc.hint


def test_timeout_on_a_pull_failure_of_a_foreign_image_does_not_suggest_the_toolbox():
    exc = runtime(context=None).start_timeout(plan(helper=False, image="my/tools:1"), "ErrImagePull",
                                              {"ErrImagePull": "not found"})
    assert "image my/tools:1 (last state: ErrImagePull: not found)" in exc.message
    assert "toolbox push" not in exc.hint and "check that the image exists" in exc.hint


def _waiting_runtime(reasons):
    rt = runtime()

    def ensure_container(the_plan, *, on_waiting=None, open_first=None):
        for reason in reasons:
            on_waiting(reason)
        return the_plan.spec.name, open_first(the_plan.spec.name) if open_first else None

    rt.ensure_container = ensure_container
    return rt


def test_waits_are_plain_lines_when_stderr_is_not_a_terminal():
    err = io.BytesIO()
    name = _waiting_runtime(["ErrImagePull: x", "ImagePullBackOff: y"]).start_showing_waits(plan(), err)
    assert name == ("debugkit-abc123", None)
    opened = _waiting_runtime([]).start_showing_waits(plan(), err, open_first=lambda name: f"exec in {name}")
    assert opened == ("debugkit-abc123", "exec in debugkit-abc123")
    assert err.getvalue() == b"debugkit: waiting: ErrImagePull: x\ndebugkit: waiting: ImagePullBackOff: y\n"


def test_waits_are_one_rewritten_line_on_a_terminal(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    err = FakeBinaryTerminal()

    def slow(reasons):
        rt = _waiting_runtime([])

        def ensure_container(the_plan, *, on_waiting=None, open_first=None):
            for reason in reasons:
                on_waiting(reason)
                time.sleep(0.3)
            return the_plan.spec.name, open_first(the_plan.spec.name) if open_first else None

        rt.ensure_container = ensure_container
        return rt

    slow(["ErrImagePull: x", "ImagePullBackOff: y"]).start_showing_waits(plan(), err)
    text = err.getvalue().decode()
    assert "debugkit: waiting: ErrImagePull: x" in text and "debugkit: waiting: ImagePullBackOff: y" in text
    assert text.count("\n") == 1 and text.endswith("\n\x1b[?25h\r\x1b[1A\x1b[2K")  # one line, erased


def test_a_reused_container_shows_no_status_line(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    err = FakeBinaryTerminal()
    _waiting_runtime([]).start_showing_waits(plan(reuse="debugkit-old"), err)
    assert err.getvalue() == b""


@pytest.mark.parametrize("reason", sorted(kube_start.PULL_FAILURES))
def test_every_pull_failure_reason_gets_the_image_hint(reason):
    assert "cannot pull the image" in runtime().start_timeout(plan(), reason, {}).message


def test_a_long_waiting_message_keeps_its_end_on_the_terminal_line():
    from debugkit.runtimes.kubernetes.start import short_reason

    long = ('ErrImagePull: failed to pull and unpack image "127.0.0.1:5001/x@sha256:' + "0" * 64 + '": failed to '
            'resolve reference: dial tcp 127.0.0.1:5001: connect: connection refused')
    assert short_reason(long) == "ErrImagePull: …" + long[-70:]
    assert short_reason(long).endswith("connect: connection refused")
    assert short_reason("ImagePullBackOff: short") == "ImagePullBackOff: short"
    assert short_reason("ContainerCreating") == "ContainerCreating"
