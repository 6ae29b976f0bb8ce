"""--context a,b,c and --all-contexts, the pure parts: what was asked for, the fan-out's
error handling and the fleet's exit rules over contexts."""
from __future__ import annotations

import threading

import pytest

from debugkit.core.errors import EngineUnreachable, ExitCode, Forbidden, InvalidInput
from debugkit.session import contexts


def test_one_context_is_not_a_fan_out():
    assert contexts.requested(None, False) is None
    assert contexts.requested("prod", False) is None  # today's path, exactly


def test_several_contexts_are_named_once_each_in_order():
    assert contexts.requested("a,b,c", False) == ("a", "b", "c")
    assert contexts.requested(" a , b,a", False) == ("a", "b")
    assert contexts.requested(None, True) == contexts.ALL


@pytest.mark.parametrize("value,all_contexts,message", [
    ("a,", False, "none empty"),
    (",", False, "none empty"),
    ("a", True, "contradict"),
    (",".join(f"c{i}" for i in range(contexts.MAX_CONTEXTS + 1)), False, "at most"),
])
def test_bad_context_lists_are_refused(value, all_contexts, message):
    with pytest.raises(InvalidInput, match=message):
        contexts.requested(value, all_contexts)


def test_a_runtime_without_contexts_is_refused():
    with pytest.raises(InvalidInput, match="not to a Docker target"):
        contexts.check_runtime("docker", "--all-contexts")
    contexts.check_runtime("kubernetes", "--all-contexts")


def test_fan_out_runs_every_context_at_once_and_keeps_each_ones_error():
    barrier = threading.Barrier(3, timeout=5)  # all three must be running together to pass it

    def work(context):
        barrier.wait()
        if context == "dead":
            raise EngineUnreachable("cannot reach the Kubernetes API server: connection refused")
        return context.upper()

    results = contexts.fan_out(["a", "dead", "b"], work)
    assert [r.context for r in results] == ["a", "dead", "b"]
    assert [r.value for r in results] == ["A", None, "B"]
    assert isinstance(results[1].error, EngineUnreachable)


def test_a_bug_is_not_a_context_failure():
    def work(context):
        raise KeyError(context)

    with pytest.raises(KeyError):
        contexts.fan_out(["a"], work)


def test_exit_status_follows_the_fleet_rules():
    ok, dead = contexts.ContextResult("a", 1), contexts.ContextResult("b", error=EngineUnreachable("x"))
    denied = contexts.ContextResult("c", error=Forbidden("y"))
    assert contexts.exit_status([ok, ok]) == 0
    assert contexts.exit_status([ok, dead]) == 1
    assert contexts.exit_status([dead, dead, denied]) == ExitCode.ENGINE_UNREACHABLE
    assert contexts.exit_status([ok], passed=lambda value: value == 2) == 1
