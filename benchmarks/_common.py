"""What the benchmarks share: the debugkit under test, timing, interleaving, reporting,
and cleanup of what they start (containers, namespaces) even when a run fails.

Timing is wall time of a whole subprocess (time.perf_counter around subprocess.run),
so both sides pay their own process start: Python's for debugkit, Go's for the docker,
podman and kubectl CLIs.

With DEBUGKIT_BENCH_VENV=DIR (`benchmarks/scratch_venv.py DIR` makes one), the debugkit
under test is instead DIR's: this checkout installed with a plain `pip install .` (not
editable, byte-compiled by pip), as users have it; children then get neither PYTHONPATH
nor a bytecode cache of ours, and the run checks that DIR's copy of every module is this
checkout's.

Without it, the debugkit under test is this checkout: children get PYTHONPATH=<this repository>
(checked with `python -c 'import debugkit'` before anything is timed), whatever the venv
has installed. They also get a bytecode cache of their own (PYTHONPYCACHEPREFIX, in
~/.cache/debugkit-bench; PYTHONDONTWRITEBYTECODE dropped), warmed before anything is
timed, as an installed debugkit has one: without it every start compiles what it
imports (about +30 ms).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TEST_LABEL = "io.debugkit.test"             # the test suite's sweeps remove what carries it after an hour
RUN_LABEL = "io.debugkit.test-run"
MANAGED_LABEL = "io.debugkit.managed"

# Kept between runs (a .pyc whose source changed is recompiled): every run starts warm.
_PYCACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "debugkit-bench",
                        "pycache")
# Imports every debugkit module (and so what they import), which compiles them into the cache.
_WARM = ("import importlib, pkgutil, debugkit\n"
         "for m in pkgutil.walk_packages(debugkit.__path__, 'debugkit.'):\n"
         "    if not m.name.endswith('__main__'):\n"
         "        importlib.import_module(m.name)\n")


def _sigterm(_signum, _frame):
    raise SystemExit(143)  # so that every `finally` (the cleanup) runs on SIGTERM too


signal.signal(signal.SIGTERM, _sigterm)


def env() -> dict[str, str]:
    """The environment every timed command gets (the same for both sides)."""
    return _ENV


# A scratch virtualenv with this checkout installed by `pip install .` (scratch_venv.py).
VENV = os.environ.get("DEBUGKIT_BENCH_VENV") or None


def _env() -> dict[str, str]:
    out = dict(os.environ)
    out.pop("PYTHONDONTWRITEBYTECODE", None)
    if VENV:
        out.pop("PYTHONPATH", None)
        return out
    out["PYTHONPYCACHEPREFIX"] = _PYCACHE
    out["PYTHONPATH"] = str(REPO) + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    return out


_ENV = _env()


def debugkit() -> list[str]:
    """The debugkit command: the venv's console script (running this checkout's package,
    see env()), or `python -m debugkit`."""
    if VENV:
        return [str(Path(VENV) / "bin" / "debugkit")]
    script = BIN / "debugkit"
    return [str(script)] if script.exists() else [sys.executable, "-m", "debugkit"]


def installed_matches_checkout(venv: str) -> str:
    """Fail unless `venv` imports debugkit from its own site-packages, with every module
    byte-identical to this checkout's (a stale install would measure other code); its path."""
    python = str(Path(venv) / "bin" / "python")
    clean = {k: v for k, v in env().items() if k not in ("PYTHONPATH", "PYTHONPYCACHEPREFIX")}
    out = subprocess.run([python, "-c", "import debugkit; print(debugkit.__file__)"], env=clean, cwd="/",
                         capture_output=True, text=True, check=True).stdout.strip()
    package = Path(out).parent
    if not str(package).startswith(str(Path(venv).resolve())) and not str(package).startswith(venv):
        raise SystemExit(f"{venv} imports debugkit from {out}, not from its own site-packages")
    for source in (REPO / "debugkit").rglob("*.py"):
        copy = package / source.relative_to(REPO / "debugkit")
        if not copy.exists() or copy.read_bytes() != source.read_bytes():
            raise SystemExit(f"{venv} has another {source.relative_to(REPO)}: reinstall with "
                             f"benchmarks/scratch_venv.py {venv}")
    if not any(package.rglob("*.pyc")):
        raise SystemExit(f"{venv} has no bytecode: install it without PYTHONDONTWRITEBYTECODE")
    sys.path.insert(0, str(REPO))
    return out


def scratch_install(where: Path) -> Path:
    """A new virtualenv with this checkout installed by `pip install .` (bytecode
    compiled, PYTHONDONTWRITEBYTECODE dropped); its debugkit."""
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(where)], check=True)
    pip = [str(where / "bin" / "python"), "-m", "pip", "install", "-q", "--no-cache-dir"]
    subprocess.run([*pip, str(REPO)], check=True, env={k: v for k, v in os.environ.items()
                                                     if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")})
    return where / "bin" / "debugkit"


def python() -> str:
    """The interpreter that runs the debugkit under test."""
    return str(Path(VENV) / "bin" / "python") if VENV else sys.executable


def check_code_under_test() -> str:
    """Fail unless the children import debugkit from this checkout (or the scratch
    install of it, DEBUGKIT_BENCH_VENV); its path."""
    if VENV:
        return installed_matches_checkout(VENV)
    out = subprocess.run([sys.executable, "-c", "import debugkit; print(debugkit.__file__)"], env=env(),
                         capture_output=True, text=True, check=True).stdout.strip()
    if not out.startswith(str(REPO) + os.sep):
        raise SystemExit(f"children import debugkit from {out}, not from {REPO}")
    subprocess.run([sys.executable, "-c", _WARM], env=env(), check=True, capture_output=True)
    sys.path.insert(0, str(REPO))
    return out


def run(argv: list[str], *, check: bool = True, input: str | None = None, timeout: float = 300,
        ) -> subprocess.CompletedProcess:
    """An untimed helper command (setup, checks), as text."""
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, env=env())
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def no_bytecode_cache() -> dict[str, str]:
    """env() without the bytecode cache: every start compiles what it imports."""
    out = {k: v for k, v in _ENV.items() if k != "PYTHONPYCACHEPREFIX"}
    out["PYTHONDONTWRITEBYTECODE"] = "1"
    return out


def timed(argv: list[str], *, expect: int | None = 0, want: str | None = None, timeout: float = 300,
          environ: dict[str, str] | None = None) -> float:
    """Seconds of one run of argv (stdin /dev/null, output captured). `expect`: the exit
    code it must have; `want`: a string its stdout must contain (else the run is an error)."""
    environ = environ or _ENV
    start = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=environ, timeout=timeout)
    seconds = time.perf_counter() - start
    if expect is not None and proc.returncode != expect:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}, not {expect}: "
                         f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
    if want is not None and want not in proc.stdout.decode(errors="replace"):
        raise SystemExit(f"{' '.join(argv)} printed {proc.stdout[-200:]!r}, not {want!r}")
    return seconds


def interleave(cases: list[tuple[str, Callable[[], float]]], runs: int, *, warmup: int = 1,
               between: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Run the cases in turn (A B C A B C ...) `runs` times after `warmup` untimed rounds;
    each case returns its own seconds. `between` runs (untimed) after every round."""
    samples: dict[str, list[float]] = {name: [] for name, _ in cases}
    for i in range(warmup + runs):
        for name, case in cases:
            seconds = case()
            if i >= warmup:
                samples[name].append(seconds)
        if between is not None:
            between()
    return samples


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def compare(samples: dict[str, list[float]], ours: str, theirs: str) -> dict:
    """Medians of both sides, the ratio of the medians and the median of pairwise ratios."""
    a, b = samples[ours], samples[theirs]
    return {"debugkit_median_s": round(median(a), 4), "baseline_median_s": round(median(b), 4),
            "ratio": round(median(a) / median(b), 3),
            "median_pairwise_ratio": round(median([x / y for x, y in zip(a, b)]), 3)}


class Machine:
    """Load average before and after a run, and the CPUs."""

    def __init__(self):
        self.cpus = os.cpu_count()
        self.load_before = os.getloadavg()[0]

    def as_dict(self) -> dict:
        return {"cpus": self.cpus, "load_1m_before": round(self.load_before, 2),
                "load_1m_after": round(os.getloadavg()[0], 2)}

    def line(self) -> str:
        d = self.as_dict()
        return f"{d['cpus']} CPUs, load average (1 min) {d['load_1m_before']:.2f} before, {d['load_1m_after']:.2f} after"


def emit(result: dict, rows: list[tuple[str, str]], as_json: bool) -> None:
    """One JSON object, or the rows as `label:  value` lines, aligned."""
    if as_json:
        print(json.dumps(result))
        return
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        print(f"{label + ':':<{width}}{value}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


# -- Docker and Podman ------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read 1 MiB at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


@contextlib.contextmanager
def container(cli: list[str], image: str, *, name: str, args: tuple[str, ...] = (),
              command: tuple[str, ...] = ()) -> Iterator[str]:
    """A detached container (the target, or a sidecar-like one), removed afterwards."""
    run([*cli, "run", "-d", "--name", name, "--label", f"{TEST_LABEL}=1", "--label", f"{RUN_LABEL}=benchmark",
         *args, image, *command])
    try:
        deadline = time.monotonic() + 30
        while run([*cli, "inspect", "-f", "{{.State.Running}}", name], check=False).stdout.strip() != "true":
            if time.monotonic() > deadline:
                raise SystemExit(f"container {name} is not running")
            time.sleep(0.1)
        yield name
    finally:
        run([*cli, "rm", "-f", name], check=False)


def remove_sidecars(cli: list[str], target: str) -> int:
    """Remove debugkit's sidecars of one target (kept-alive ones too); how many."""
    ids = run([*cli, "ps", "-aq", "--filter", f"label={MANAGED_LABEL}=true",
               "--filter", f"label=io.debugkit.target={target}"], check=False).stdout.split()
    if ids:
        run([*cli, "rm", "-f", *ids], check=False)
    return len(ids)


def inspect_target(target: str, *extra: str) -> dict:
    return json.loads(run([*debugkit(), "inspect", *extra, target, "-o", "json"]).stdout)


def equivalent_run(inspected: dict, cli: str, *, command: tuple[str, ...] = ("true",)) -> list[str]:
    """The `docker run` (or `podman run`) line `debugkit inspect` prints (the flags attach
    sends), for `cli`, without its --name (each run gets a fresh container), its labels
    renamed, and with `command` as the command (and entrypoint) instead of debugkit's
    (`debugkit-helper reap ... --`)."""
    import shlex

    argv = shlex.split(inspected["attach_command"])
    if argv[0] not in ("docker", "podman") or "run" not in argv:
        raise SystemExit(f"unexpected attach_command: {inspected['attach_command']}")
    image = inspected["sidecar_image"]
    at = len(argv) - 1 - argv[::-1].index(image)
    flags = argv[argv.index("run") + 1:at]
    for flag in ("--name", "--entrypoint"):
        if flag in flags:
            i = flags.index(flag)
            del flags[i:i + 2]
    # The same labels under another prefix: debugkit's ps and gc (and other people's) must
    # not take these for sidecars.
    flags = [f.replace("io.debugkit.", "io.debugkit-bench.", 1) if f.startswith("io.debugkit.") else f
             for f in flags]
    return [cli, "run", *flags, "--entrypoint", command[0], image, *command[1:]]


# -- Kubernetes -------------------------------------------------------------------------

class Kube:
    """The test node (scripts/k8s-testenv) through its own kubectl."""

    def __init__(self):
        script = str(REPO / "scripts" / "k8s-testenv")
        if subprocess.run([script, "is-up"], capture_output=True).returncode != 0:
            raise SystemExit("the Kubernetes test node is not up: scripts/k8s-testenv up")
        paths = dict(line.split("=", 1) for line in run([script, "paths"]).stdout.split())
        self.script = script
        self.kubeconfig = paths["kubeconfig"]
        self.kubectl = [str(Path(paths["bin_dir"]) / "kubectl"), "--kubeconfig", self.kubeconfig]

    def with_toolbox(self, *images: str) -> str:
        """Load `images` and the default toolbox onto the node; the toolbox's reference."""
        from debugkit.session.defaults import toolbox_image

        toolbox = toolbox_image()
        self.load_images(*images, toolbox)
        return toolbox

    def load_images(self, *images: str) -> None:
        for image in images:
            run([self.script, "load-image", image], timeout=600)

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return run([*self.kubectl, *args], input=input, check=check, timeout=180)

    @contextlib.contextmanager
    def namespace(self, level: str = "baseline") -> Iterator[str]:
        """A new namespace (PodSecurity enforce `level`) with its default ServiceAccount,
        deleted afterwards with its pods (the namespace controller finishes some 5 s later)."""
        ns = f"dk-bench-{uuid.uuid4().hex[:8]}"
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {
            TEST_LABEL: "1", RUN_LABEL: "benchmark", "pod-security.kubernetes.io/enforce": level}}}
        self("create", "-f", "-", input=json.dumps(manifest))
        try:
            deadline = time.monotonic() + 30
            while self("-n", ns, "get", "serviceaccount", "default", check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise SystemExit(f"namespace {ns} got no default ServiceAccount (controller-manager down?)")
                time.sleep(0.2)
            yield ns
        finally:
            self("delete", "namespace", ns, "--wait=false", check=False)
            self("-n", ns, "delete", "pod", "--all", "--grace-period=0", "--force", check=False)

    def start_pods(self, ns: str, names: list[str], image: str, *, args: list[str] | None = None) -> None:
        """Pods with one container `app` (bound to the node; `args`: its arguments), all
        Ready before returning."""
        container = {"name": "app", "image": image, "imagePullPolicy": "IfNotPresent",
                     **({"args": list(args)} if args else {})}
        items = [{"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": name, "namespace": ns, "labels": {TEST_LABEL: "1"}},
                  "spec": {"nodeName": "debugkit-node", "automountServiceAccountToken": False,
                           "enableServiceLinks": False, "terminationGracePeriodSeconds": 1,
                           "containers": [dict(container)]}}
                 for name in names]
        self("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        self("-n", ns, "wait", "--for=condition=Ready", *[f"pod/{n}" for n in names], "--timeout=180s")

    def ephemeral_containers(self, ns: str, pod: str) -> list[dict]:
        data = json.loads(self("-n", ns, "get", "pod", pod, "-o", "json").stdout)
        return data["spec"].get("ephemeralContainers") or []
