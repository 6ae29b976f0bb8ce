"""Fleets without an engine: references that name many, expansion against recorded API
answers (the runtimes' own, runtimes/*/fleet.py), the parallel runner (bound, isolation,
--fail-fast, Ctrl-C), cleanup, exit status, the plain output and the fleet report."""
from __future__ import annotations

import _thread
import json
import threading
import time

import pytest

from debugkit.core.errors import (
    DebugkitError,
    ExitCode,
    Interrupted,
    InvalidInput,
    PolicyRejected,
    TargetNotFound,
    TargetNotRunning,
)
from debugkit import runtimes
from debugkit.core.targets import ContainerRef, ContainerSetRef, PodRef, SelectorRef, WorkloadRef
from debugkit.core.targets import parse_many as parse_with
from debugkit.runtimes.docker import fleet as docker_fleet
from debugkit.runtimes.kubernetes import fleet as kube_fleet
from debugkit.session import fleet

K8S, DOCKER = "kubernetes", "docker"


def parse_many(ref, **kwargs):
    return parse_with(ref, runtimes.syntax(), **kwargs)

# -- references -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ref,kwargs,expected", [
    ("deploy/web", {}, WorkloadRef("deployments", "web", runtime=K8S)),
    ("deployment/web", {"namespace": "shop"}, WorkloadRef("deployments", "web", namespace="shop", runtime=K8S)),
    ("sts/db", {"container": "pg"}, WorkloadRef("statefulsets", "db", container="pg", runtime=K8S)),
    ("ds/agent", {}, WorkloadRef("daemonsets", "agent", runtime=K8S)),
    ("rs/web-5d4f", {}, WorkloadRef("replicasets", "web-5d4f", runtime=K8S)),
    ("job/migrate", {}, WorkloadRef("jobs", "migrate", runtime=K8S)),
    (None, {"selector": "app=web,tier in (a,b)"}, SelectorRef("app=web,tier in (a,b)", runtime=K8S)),
    (None, {"selector": "app=web", "all_namespaces": True}, SelectorRef("app=web", all_namespaces=True, runtime=K8S)),
    (None, {"filters": ("label=team=pay",)}, ContainerSetRef(("team=pay",), runtime=DOCKER,
                                                             description="label=team=pay")),
    (None, {"filters": ("label=team",), "filter_runtime": "podman"},
     ContainerSetRef(("team",), runtime="podman", description="podman: label=team", scheme="podman://")),
    ("compose/shop", {}, ContainerSetRef(("com.docker.compose.project=shop",), runtime=DOCKER,
                                         description="compose/shop")),
    ("podman://compose/shop/web", {}, ContainerSetRef(
        ("com.docker.compose.project=shop", "com.docker.compose.service=web"), runtime="podman",
        description="podman://compose/shop/web", scheme="podman://")),
    ("web", {}, None),
    ("pod/web", {}, None),
    ("k8s://shop/web", {}, None),
])
def test_references_that_name_many(ref, kwargs, expected):
    assert parse_many(ref, **kwargs) == expected


@pytest.mark.parametrize("ref,kwargs,message", [
    ("deploy/web", {"selector": "a=b"}, "one of"),
    (None, {"selector": "a=b", "filters": ("label=x",)}, "one of"),
    (None, {"all_namespaces": True}, "goes with -l"),
    (None, {"selector": "a=b", "all_namespaces": True, "namespace": "x"}, "contradict"),
    (None, {"selector": "a=(b"}, "invalid label selector"),
    (None, {"selector": " "}, "must not be empty"),
    (None, {"filters": ("name=x",)}, "label=KEY"),
    (None, {"filters": ("label=x",), "filter_runtime": "kubernetes"}, "--filter needs a container runtime"),
    (None, {"filters": ("label=bad key",)}, "invalid label key"),
    (None, {"filters": ("label=x",), "namespace": "shop"}, "Kubernetes targets"),
    ("web", {"filter_runtime": "podman"}, "--runtime goes with --filter"),
    ("compose/", {}, "compose/PROJECT"),
    ("compose/a/b/c", {}, "compose/PROJECT"),
    ("compose/a b", {}, "not a Compose project"),
    ("compose/shop", {"namespace": "x"}, "Kubernetes targets"),
    ("deploy/Web", {}, "invalid deploy name"),
    ("deploy/a/b", {}, "deploy/NAME"),
    ("deploy/web", {"namespace": "a.b"}, "invalid namespace"),
])
def test_bad_references_that_name_many(ref, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        parse_many(ref, **kwargs)


def test_a_workload_selector_as_kubectl_writes_it():
    workload = {"spec": {"selector": {"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["x", "y"]},
        {"key": "env", "operator": "NotIn", "values": ["dev"]},
        {"key": "canary", "operator": "DoesNotExist"},
        {"key": "team", "operator": "Exists"}]}}}
    assert kube_fleet.selector_of(workload, "deployments", "web") == \
        "a=1,b=2,tier in (x,y),env notin (dev),!canary,team"
    with pytest.raises(InvalidInput, match="empty selector"):
        kube_fleet.selector_of({"spec": {"selector": {}}}, "deployments", "web")


# -- expansion --------------------------------------------------------------------------------------------

def pod(name, *, namespace="shop", phase="Running", containers=("app",), states=None, annotations=None,
        deleting=False):
    states = states or {c: {"running": {}} for c in containers}
    meta = {"name": name, "namespace": namespace, "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"containers": [{"name": c} for c in containers]},
            "status": {"phase": phase, "containerStatuses": [{"name": c, "state": s} for c, s in states.items()]}}


class FakeKubeApi:
    def __init__(self, pods, workload=None):
        self.pods = pods
        self.workload = workload
        self.calls = []

    def read_workload(self, kind, namespace, name):
        self.calls.append(("read_workload", kind, namespace, name))
        if self.workload is None:
            raise TargetNotFound(f"{kind} {name!r} not found")
        return self.workload

    def list_pods(self, namespace=None, label_selector=None, field_selector=None, *, limit=None):
        self.calls.append(("list_pods", namespace, label_selector, field_selector))
        return {"items": [p for p in self.pods if namespace is None or p["metadata"]["namespace"] == namespace]}


class FakeKubeRuntime:
    """What runtimes/kubernetes/fleet.py uses of its runtime, over recorded API answers."""

    default_namespace = "shop"

    def __init__(self, api, pods_now=None):
        self.api = api
        self.pods_now = pods_now or {}

    def call(self, fn, *args, verb, resource, namespace, name="", **kwargs):
        return fn(*args, **kwargs)

    def read_pod(self, namespace, name):
        found = self.pods_now.get(name)
        if found is None:
            raise TargetNotFound(f"pod {name!r} not found")
        return found

    def expand(self, many):
        return kube_fleet.expand(self, many)

    def why_gone(self, ref):
        return kube_fleet.why_gone(self, ref)


def test_a_workloads_running_pods_are_the_targets_and_the_others_are_reported_with_why():
    api = FakeKubeApi([
        pod("web-b"), pod("web-a"),
        pod("web-pending", phase="Pending"),
        pod("web-done", phase="Succeeded"),
        pod("web-going", deleting=True),
        pod("web-two", containers=("app", "proxy")),
        pod("web-annotated", containers=("app", "proxy"),
            annotations={"kubectl.kubernetes.io/default-container": "proxy"}),
        pod("web-starting", states={"app": {"waiting": {"reason": "ContainerCreating"}}}),
    ], workload={"spec": {"selector": {"matchLabels": {"app": "web"}}}})
    members, skipped = fleet.expand(WorkloadRef("deployments", "web", runtime=K8S), FakeKubeRuntime(api))
    assert [(m.label, m.namespace, m.container, m.ref) for m in members] == [
        ("pod/web-a", "shop", "app", PodRef("web-a", "app", "shop", runtime=K8S)),
        ("pod/web-annotated", "shop", "proxy", PodRef("web-annotated", "proxy", "shop", runtime=K8S)),
        ("pod/web-b", "shop", "app", PodRef("web-b", "app", "shop", runtime=K8S)),
    ]
    assert dict(skipped) == {
        "pod/web-pending": "phase Pending",
        "pod/web-done": "phase Succeeded",
        "pod/web-going": "terminating",
        "pod/web-two": "several containers and no -c (app, proxy)",
        "pod/web-starting": "container app is waiting",
    }
    # The workload once, then ONE list by its own selector: no more than needed.
    assert api.calls == [("read_workload", "deployments", "shop", "web"), ("list_pods", "shop", "app=web", None)]


def test_dash_c_picks_the_container_and_a_pod_without_it_is_skipped():
    api = FakeKubeApi([pod("a", containers=("app", "proxy")), pod("b")])
    members, skipped = fleet.expand(SelectorRef("app=web", container="proxy", runtime=K8S), FakeKubeRuntime(api))
    assert [(m.label, m.container) for m in members] == [("pod/a", "proxy")]
    assert skipped == [("pod/b", "no container 'proxy'")]


def test_all_namespaces_lists_once_across_them_and_names_each_pod_with_its_namespace():
    api = FakeKubeApi([pod("web", namespace="b"), pod("web", namespace="a")])
    members, _ = fleet.expand(SelectorRef("app=web", all_namespaces=True, runtime=K8S), FakeKubeRuntime(api))
    assert [m.label for m in members] == ["k8s://a/web", "k8s://b/web"]
    assert [str(m.ref) for m in members] == ["k8s://a/web/app", "k8s://b/web/app"]
    assert api.calls == [("list_pods", None, "app=web", None)]


def test_a_missing_workload_is_its_own_error():
    with pytest.raises(TargetNotFound):
        fleet.expand(WorkloadRef("deployments", "nope", runtime=K8S), FakeKubeRuntime(FakeKubeApi([])))


class FakeEngine:
    def __init__(self, containers):
        self.found = containers
        self.filters = None

    def containers(self, *, all=False, filters=None):  # noqa: A002
        self.filters = (all, filters)
        return self.found


class FakeDockerRuntime:
    """What runtimes/docker/fleet.py uses of its runtime, over a recorded engine answer."""

    def __init__(self, api):
        self.api = api

    def calls(self):
        import contextlib

        return contextlib.nullcontext()

    def expand(self, many):
        return docker_fleet.expand(self, many)


def test_containers_by_label_leave_out_debugkits_sidecars_and_report_stopped_ones():
    engine = FakeEngine([
        {"Names": ["/b"], "State": "running", "Labels": {}},
        {"Names": ["/a"], "State": "running", "Labels": {}},
        {"Names": ["/sidecar"], "State": "running", "Labels": {"io.debugkit.managed": "true"}},
        {"Names": ["/stopped"], "State": "exited", "Labels": {}},
    ])
    members, skipped = fleet.expand(ContainerSetRef(("team=pay",), runtime="podman", scheme="podman://"),
                                    FakeDockerRuntime(engine))
    assert [(m.label, m.container, m.ref) for m in members] == [
        ("a", "a", ContainerRef("a", runtime="podman", scheme="podman://")),
        ("b", "b", ContainerRef("b", runtime="podman", scheme="podman://"))]
    assert str(members[0].ref) == "podman://a"  # what each member's own session plans
    assert skipped == [("stopped", "not running (exited)")]
    assert engine.filters == (True, {"label": ["team=pay"]})


def test_nothing_to_run_on_is_66_and_nothing_running_is_67():
    with pytest.raises(TargetNotFound, match="deploy/web matches no pods") as caught:
        fleet.require_members(WorkloadRef("deployments", "web"), [], [])
    assert caught.value.exit_code == 66
    with pytest.raises(TargetNotRunning, match=r"none of the 1 .*pod/a: phase Pending") as caught:
        fleet.require_members(WorkloadRef("deployments", "web"), [], [("pod/a", "phase Pending")])
    assert caught.value.exit_code == 67


# -- the runner -----------------------------------------------------------------------------------------------

def members(n):
    return [fleet.Member(PodRef(f"p{i}", "app", "ns", runtime=K8S), label=f"pod/p{i}", namespace="ns",
                         container="app") for i in range(n)]


def test_at_most_parallel_at_a_time_and_each_target_keeps_its_own_result():
    lock, running, peak = threading.Lock(), [0], [0]

    def work(member, outcome):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        if member.label == "pod/p3":
            raise PolicyRejected("rejected by PodSecurity")
        if member.label == "pod/p5":
            raise KeyError("a bug")
        outcome.exit_code = 1 if member.label == "pod/p7" else 0
        outcome.status = "passed" if outcome.exit_code == 0 else "failed"

    changes = []
    runner = fleet.Fleet(members(10), parallel=3, on_change=lambda o: changes.append((o.target, o.status)))
    outcomes = runner.run(work, cancel=lambda: None)
    assert peak[0] == 3
    assert [o.target for o in outcomes] == [f"pod/p{i}" for i in range(10)]
    by = {o.target: o for o in outcomes}
    assert by["pod/p3"].status == "error" and by["pod/p3"].error == {"message": "rejected by PodSecurity",
                                                                      "exit_code": 80}
    assert by["pod/p5"].status == "error" and by["pod/p5"].error["exit_code"] == 70
    assert by["pod/p7"].status == "failed" and by["pod/p7"].exit_code == 1
    assert sum(o.status == "passed" for o in outcomes) == 7
    assert all(o.duration_s >= 0.05 for o in outcomes)
    assert ("pod/p0", "running") in changes and ("pod/p0", "passed") in changes
    assert fleet.exit_status(outcomes) == 1


def test_fail_fast_starts_nothing_new_after_the_first_failure():
    started = []

    def work(member, outcome):
        started.append(member.label)
        outcome.exit_code = 2 if member.label == "pod/p1" else 0
        outcome.status = "failed" if outcome.exit_code else "passed"

    outcomes = fleet.Fleet(members(6), parallel=1, fail_fast=True).run(work, cancel=lambda: None)
    assert started == ["pod/p0", "pod/p1"]
    assert [o.status for o in outcomes] == ["passed", "failed"] + ["not started"] * 4
    assert fleet.exit_status(outcomes) == 1


def test_ctrl_c_cancels_the_running_targets_starts_no_more_and_is_raised():
    release, third = threading.Event(), threading.Event()
    cancelled = []

    def work(member, outcome):
        if member.label == "pod/p0":
            outcome.status, outcome.exit_code = "passed", 0
            return
        if member.label == "pod/p3":
            third.set()
        if member.label == "pod/p2":
            third.wait(10)
            _thread.interrupt_main()  # as Ctrl-C does
        release.wait(10)  # until cancel() ends it, as a stopped sidecar ends its stream
        outcome.status, outcome.exit_code = "failed", 143

    def cancel():
        cancelled.append(time.monotonic())
        release.set()

    reported = []
    runner = fleet.Fleet(members(8), parallel=3, on_change=lambda o: reported.append((o.target, o.status)))
    with pytest.raises(KeyboardInterrupt):
        runner.run(work, cancel=cancel)
    assert len(cancelled) == 1
    # Every target that was running reported its own end before the interruption was raised
    # (a Ctrl-C inside Thread.join would have lost the one being joined).
    assert sorted(t for t, status in reported if status == "interrupted") == ["pod/p1", "pod/p2", "pod/p3"]
    statuses = [o.status for o in runner.outcomes]
    assert statuses[0] == "passed"
    assert statuses[1:4] == ["interrupted"] * 3
    assert statuses[4:] == ["not started"] * 4
    assert runner.outcomes[1].error == {"message": "interrupted before it finished", "exit_code": 130}


def test_a_target_that_fails_because_its_pod_went_away_says_so():
    runtime = FakeKubeRuntime(FakeKubeApi([]), pods_now={"p1": pod("p1", namespace="ns", deleting=True),
                                                          "p2": pod("p2", namespace="ns")})

    def work(member, outcome):
        if member.label == "pod/p0":
            raise DebugkitError("the stream ended without an exit status")
        outcome.exit_code = 143
        outcome.status = "failed"

    outcomes = fleet.Fleet(members(3), parallel=3).run(
        work, cancel=lambda: None, review=lambda m, o: fleet.explain_failure(runtime, m, o))
    assert [(o.status, o.exit_code) for o in outcomes] == [("error", None), ("error", 143), ("failed", 143)]
    assert outcomes[0].error == {"message": "pod/p0 was deleted while it was debugged (the stream ended without an "
                                            "exit status)", "exit_code": 67}
    assert outcomes[1].error["message"] == ("pod/p1 was being deleted while it was debugged (the command ended "
                                            "with exit 143)")
    assert outcomes[2].error is None  # still there: a 143 of the command's own


def test_a_command_that_simply_failed_costs_no_extra_request():
    class Counting(FakeKubeRuntime):
        reads = 0

        def read_pod(self, namespace, name):
            Counting.reads += 1
            return super().read_pod(namespace, name)

    outcome = fleet.Outcome("pod/p0", "ns", "app", status="failed", exit_code=1)
    fleet.explain_failure(Counting(FakeKubeApi([])), members(1)[0], outcome)
    assert Counting.reads == 0 and outcome.status == "failed"


@pytest.mark.parametrize("statuses,errors,expected", [
    (["passed", "passed"], [], 0),
    (["passed", "failed"], [], 1),
    (["passed", "error"], [80], 1),
    (["error", "error", "error"], [80, 69, 69], 69),
    (["error", "not started"], [78], 78),
    ([], [], 66),
])
def test_exit_status(statuses, errors, expected):
    outcomes = []
    codes = iter(errors)
    for status in statuses:
        o = fleet.Outcome("t", None, None, status=status)
        if status == "error":
            o.error = {"message": "x", "exit_code": next(codes)}
        outcomes.append(o)
    assert fleet.exit_status(outcomes) == expected


# -- cleanup ------------------------------------------------------------------------------------------------------

class FakeStream:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


class StoppingRuntime:
    on_created = None
    on_stream = None

    def __init__(self):
        self.stopped = []
        self.lock = threading.Lock()

    def stop(self, container_id, *, grace):
        time.sleep(0.2)
        with self.lock:
            self.stopped.append((container_id, grace))


def test_cancel_stops_what_running_targets_started_in_parallel_and_ends_what_comes_after():
    runtime = StoppingRuntime()
    recorded = []
    cleanup = fleet.Cleanup(runtime, record_created=lambda plan, cid: recorded.append(cid))
    assert runtime.on_created == cleanup.on_created and runtime.on_stream == cleanup.on_stream
    finished_stream = FakeStream()

    def finished_target():
        runtime.on_created(None, "done-1")
        runtime.on_stream(finished_stream)
        cleanup.forget()

    thread = threading.Thread(target=finished_target)
    thread.start()
    thread.join()
    live = [FakeStream(), FakeStream()]
    for i, stream in enumerate(live):
        runtime.on_created(None, f"live-{i}")
        runtime.on_stream(stream)
    started = time.monotonic()
    cleanup.cancel()
    assert time.monotonic() - started < 0.35  # the two stops ran side by side
    assert sorted(runtime.stopped) == [("live-0", 3.0), ("live-1", 3.0)]
    assert all(s.closed for s in live) and not finished_stream.closed
    late = FakeStream()
    runtime.on_stream(late)
    assert late.closed
    with pytest.raises(Interrupted):
        runtime.on_created(None, "late")  # the runtime removes a container whose hook raised
    assert recorded == ["done-1", "live-0", "live-1", "late"]  # every creation is still audited


# -- output ---------------------------------------------------------------------------------------------------------

def test_plain_output_prefixes_each_line_stdout_on_stdout_the_rest_on_stderr(capsys):
    from debugkit.cli.fleet import Display

    display = Display(output="text", what="attach deploy/web")
    assert display.terminal is False  # pytest's stdout is no terminal
    ok = fleet.Outcome("pod/a", "ns", "app", status="passed", exit_code=0, duration_s=0.5,
                       stdout="65532\n", stderr="warn\x1b[31m\n")
    bad = fleet.Outcome("pod/b\x1b]0;x\x07", "ns", "app", status="error",
                        error={"message": "rejected", "exit_code": 80})
    display.start([ok, bad], [("pod/c", "phase Pending")])
    display.changed(ok)
    display.changed(bad)
    display.finish([ok, bad])
    out, err = capsys.readouterr()
    assert out == "pod/a: 65532\n"
    lines = err.splitlines()
    assert lines[0] == "debugkit: skipped pod/c: phase Pending"
    assert "pod/a: [stderr] warn" in lines  # click drops colour codes when it writes to no terminal
    assert "pod/a: passed, exit 0 (0.50s)" in lines
    assert "pod/b\\x1b]0;x\\x07: error (80): rejected" in lines  # a name from a target is escaped
    assert lines[-1].startswith("debugkit: attach deploy/web: 2 target(s): 1 passed, 1 error in ")


def test_json_output_is_one_object_per_target(capsys):
    from debugkit.cli.fleet import Display

    display = Display(output="json", what="attach deploy/web")
    outcomes = [fleet.Outcome("pod/a", "ns", "app", status="passed", exit_code=0, duration_s=1.23456,
                              stdout="x\n"),
                fleet.Outcome("pod/b", "ns", "app", status="error", error={"message": "gone", "exit_code": 67})]
    display.start(outcomes, [])
    for o in outcomes:
        display.changed(o)
    display.finish(outcomes)
    data = json.loads(capsys.readouterr().out)
    assert data == [
        {"target": "pod/a", "namespace": "ns", "container": "app", "status": "passed", "exit_code": 0,
         "duration_s": 1.235, "stdout": "x\n", "stderr": "", "output_truncated": False, "error": None},
        {"target": "pod/b", "namespace": "ns", "container": "app", "status": "error", "exit_code": None,
         "duration_s": 0.0, "stdout": "", "stderr": "", "output_truncated": False,
         "error": {"message": "gone", "exit_code": 67}},
    ]


def test_capture_keeps_the_first_64k_and_says_it_dropped_the_rest():
    cap = fleet.Capture()
    cap.write(b"a" * 60000)
    cap.write(b"b" * 10000)
    assert len(cap.data) == fleet.MAX_CAPTURE and cap.truncated
    assert cap.text().endswith("b" * (fleet.MAX_CAPTURE - 60000))


def test_the_fleet_report_has_a_summary_table_then_each_targets_steps():
    from debugkit.core.identity import Identity
    from debugkit.core.spec import base_spec
    from debugkit.runbook import execute, load, render
    from debugkit.runtimes.base import Plan, ResolvedTarget
    from debugkit.runtimes.execution import ExecResult

    book = load.load_text("name: two\ndescription: Two checks.\nsteps:\n  - name: first\n    run: id -u\n"
                          "  - name: second\n    run: [\"true\"]\n", "two")

    spec = base_spec(image="tb", identity=Identity(uid=65532, gid=65532, source="config"), target_name="ns/a/app",
                     target_id="u", runtime="kubernetes", command=(), stdin=False, tty=False, session_id="s1",
                     cli_pid=1, cli_host="h", local_user="me")

    class Session:
        plan = Plan(runtime="kubernetes", mode="exec", target=ResolvedTarget("kubernetes", "ns/a/app", "u", "img"),
                    spec=spec, request={})

        def exec(self, argv, *, timeout, max_output):
            return ExecResult(tuple(argv), 0, b"65532\n", b"", 0.01)

    done = execute.execute(book, {}, Session())
    entries = [
        {"target": "pod/a", "namespace": "ns", "container": "app", "status": "passed", "duration_s": 1.0,
         "error": None, "report": done},
        {"target": "pod/b", "namespace": "ns", "container": "app", "status": "error", "duration_s": 0.2,
         "error": {"message": "PodSecurity rejected it | twice", "exit_code": 80}, "report": None},
        {"target": "pod/c", "namespace": "ns", "container": "app", "status": "not started", "duration_s": 0,
         "error": None, "report": None},
    ]
    md = render.render_fleet_markdown(book, entries)
    assert md.startswith("# Runbook `two` over 3 targets: 1 passed\n")
    table = md.split("\n## ")[0]
    assert "| pod/a | PASSED | 2 | 0 | 1.00s |  |" in table
    assert "| pod/b | ERROR | - | - | 0.20s | PodSecurity rejected it \\| twice |" in table
    assert "| pod/c | NOT STARTED | - | - | 0.00s |  |" in table
    sections = md.split("\n## ")[1:]
    assert [s.splitlines()[0] for s in sections] == ["pod/a: PASSED", "pod/b: ERROR", "pod/c: NOT STARTED"]
    assert "### 1. first: PASS" in sections[0] and "65532" in sections[0]
    assert md.count("Two checks.") == 1  # the description once, at the top
    assert "Not run: PodSecurity rejected it | twice (exit 80)" in sections[1]
    assert "Not started" in sections[2]
    data = json.loads(render.render_fleet_json(book, entries))
    assert (data["targets"], data["passed"]) == (3, 1)
    assert [r["status"] for r in data["results"]] == ["passed", "error", "not started"]
    assert data["results"][0]["report"]["steps"][0]["stdout"] == "65532\n"
    assert data["results"][1]["error"]["exit_code"] == 80


# -- a fleet's pods share their image -------------------------------------------------------------------------------

def test_each_image_is_read_once_per_process_not_once_per_pod(monkeypatch):
    from debugkit.core.errors import IdentityUnresolved
    from debugkit.runtimes.kubernetes import identity

    monkeypatch.setattr(identity, "_IMAGES", {})
    monkeypatch.setattr(identity, "_IMAGE_LOCKS", {})
    reads = []

    def read_now(self):
        reads.append(self.pt.pod_name)
        time.sleep(0.05)
        if self.pt.container_spec["image"] == "broken":
            raise IdentityUnresolved("cannot read the image config of broken: 503")
        from debugkit.core import userdb

        return identity.ImageFacts("nonroot", userdb.from_text("nonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n"),
                                   "registry r")

    monkeypatch.setattr(identity.PodIdentity, "_read_image_now", read_now)

    def target(name, image="reg/app:1", image_id="sha256:abc", node="n1"):
        raw = {"metadata": {"name": name}, "spec": {"nodeName": node, "containers": [{"name": "app", "image": image}]},
               "status": {"containerStatuses": [{"name": "app", "imageID": image_id}]}}
        return identity.PodIdentity(None, identity.PodTarget("ns", name, "app", raw))

    same = [target(f"p{i}") for i in range(8)]
    threads = [threading.Thread(target=t.image_user) for t in same]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reads) == 1  # eight pods in parallel, one read
    assert same[3].image_identity().uid == 65532
    # A repo digest may be a multi-platform index: once per node then.
    for node in ("n1", "n2", "n1"):
        target("q", image_id="reg/app@sha256:def", node=node).image_user()
    assert len(reads) == 3
    # A failure is the same answer for every pod of that image, without asking again.
    for name in ("b1", "b2"):
        with pytest.raises(IdentityUnresolved, match="503"):
            target(name, image="broken", image_id="sha256:bad").image_user()
    assert reads.count("b1") == 1 and "b2" not in reads
