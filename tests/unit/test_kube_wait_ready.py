"""How often a new debug container is probed: eagerly for one person, gently for a fleet."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from debugkit.runtimes.kubernetes import start as kube_start
from debugkit.runtimes.kubernetes.runtime import KubernetesRuntime
from debugkit.runtimes.kubernetes.stream import ContainerNotReady


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 4))
        self.now += seconds + 0.005  # each probe costs a few ms


class RanStream:
    def recv(self, _timeout):
        return None

    def close(self, wait):
        pass

    def exit_code(self):
        return 0

    def exec_failure_code(self):
        return None


def probe_sleeps(monkeypatch, *, concurrency: int, ready_after_s: float, command: bool = False) -> list[float]:
    clock = Clock()
    monkeypatch.setattr(kube_start.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(kube_start.time, "sleep", clock.sleep)
    rt = object.__new__(KubernetesRuntime)
    rt.concurrency = concurrency

    def stream(*_args, **_kwargs):
        if clock.now < ready_after_s:
            raise ContainerNotReady("container not found")
        return RanStream()

    rt.stream = stream
    rt.waiting_state = lambda _pt, _name: {"waiting": {"reason": "ContainerCreating"}}
    plan = SimpleNamespace(helper=True, details=SimpleNamespace(pod_target=object(), timeout=60),
                           spec=SimpleNamespace(name="debugger-x", image="toolbox"))
    if not command:
        assert rt.wait_ready(plan, name="debugger-x") is None
        return clock.sleeps
    # The command's own exec as the probe: retried while it fails at the handshake, and
    # what it opened is returned; no no-op exec is sent.
    rt.stream = lambda *_a, **_k: pytest.fail("a no-op probe was sent")
    opened = []

    def open_command():
        stream(None)
        opened.append(clock.now)
        return "the command's stream"

    assert rt.wait_ready(plan, name="debugger-x", probe=open_command) == "the command's stream"
    assert len(opened) == 1
    return clock.sleeps


def test_the_command_exec_is_the_probe_when_given(monkeypatch):
    sleeps = probe_sleeps(monkeypatch, concurrency=1, ready_after_s=1.0, command=True)
    assert set(sleeps) == {kube_start.PROBE_FIRST_S} and probes_in(1.0) - 2 <= len(sleeps) <= probes_in(1.0) + 2


def probes_in(seconds: float) -> int:
    return round(seconds / (kube_start.PROBE_FIRST_S + 0.005))  # each probe costs the Clock 5 ms


def test_one_session_probes_often_while_a_container_usually_starts(monkeypatch):
    sleeps = probe_sleeps(monkeypatch, concurrency=1, ready_after_s=1.0)
    assert set(sleeps) == {kube_start.PROBE_FIRST_S} and kube_start.PROBE_FIRST_S <= 0.025
    assert probes_in(1.0) - 2 <= len(sleeps) <= probes_in(1.0) + 2  # ready within one probe interval of 1.0 s


def test_one_session_backs_off_after_the_usual_start_time(monkeypatch):
    sleeps = probe_sleeps(monkeypatch, concurrency=1, ready_after_s=5.0)
    steady = [s for s in sleeps if s == kube_start.PROBE_FIRST_S]
    assert probes_in(1.5) - 2 <= len(steady) <= probes_in(1.5) + 2  # the first 1.5 s
    assert sleeps[-1] == kube_start.PROBE_MAX_S and sorted(sleeps) == sleeps


@pytest.mark.parametrize("concurrency", [2, 10])
def test_a_fleet_backs_off_from_the_first_probe(monkeypatch, concurrency):
    sleeps = probe_sleeps(monkeypatch, concurrency=concurrency, ready_after_s=1.0)
    assert sleeps[:4] == [0.05, 0.075, 0.1125, 0.1688]
    assert len(sleeps) <= 8
