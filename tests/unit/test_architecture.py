"""The layering of the package, checked from the source: layers only look down, runtimes
do not reach into each other (but for the few edges allowed below), the session layer and
the CLI know runtimes only through the registry and the protocol and never by name, and no
two modules import each other, even through imports placed inside functions."""
from __future__ import annotations

import ast
from pathlib import Path

from debugkit import runtimes

PACKAGE = Path(__file__).resolve().parents[2] / "debugkit"

# Lower ranks are lower layers. A module may import its own package and lower ranks.
RANKS = {
    "debugkit.core": 0,
    "debugkit.runtimes": 1,
    "debugkit.runbook": 2,
    "debugkit.toolbox": 2,
    "debugkit.session": 3,
    "debugkit.cli": 4,
}
# Every package under debugkit/runtimes/ is a runtime's own.
RUNTIME_PACKAGES = tuple(sorted(p.name for p in (PACKAGE / "runtimes").iterdir() if (p / "__init__.py").exists()))
# Podman is Docker pointed at another socket; Kubernetes reads an image from the local
# Docker engine when it holds the very image the node runs.
ALLOWED_SIBLINGS = {("podman", "docker"), ("kubernetes", "docker")}
# What the session layer and the CLI may import of the runtimes: the registry and the protocol.
PROTOCOL = {"debugkit.runtimes", "debugkit.runtimes.base"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """Every debugkit module this file imports, at the top or inside functions."""
    return imports_in(path.read_text(), module_name(path), known, is_package=path.name == "__init__.py")


def imports_in(source: str, this: str, known: set[str], *, is_package: bool = False) -> set[str]:
    """Every debugkit module that `source`, the text of module `this`, imports."""
    tree = ast.parse(source, filename=this)
    package = this if is_package else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(n for n in names if n.startswith("debugkit.") and n in known)
    found.discard(this)
    return found


def layer(module: str) -> str | None:
    for prefix in RANKS:
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    return None


def runtime_package(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == "runtimes" and parts[2] in RUNTIME_PACKAGES:
        return parts[2]
    return None


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(path, known) for name, path in mods.items()}


def test_every_module_belongs_to_a_layer():
    loose = [m for m in modules() if layer(m) is None and m not in ("debugkit", "debugkit.__main__")]
    assert loose == [], f"modules outside the layers: {loose}"


def test_layers_only_look_down():
    wrong = looking_up(graph())
    assert wrong == [], "imports that look up or sideways:\n" + "\n".join(sorted(wrong))


def looking_up(edges: dict[str, set[str]]) -> list[str]:
    """Every import of a module from its own layer's rank or above (another package of
    the same rank is sideways)."""
    wrong = []
    for source, targets in edges.items():
        src_layer = layer(source)
        if src_layer is None:
            continue
        for target in targets:
            dst_layer = layer(target)
            if dst_layer is None or dst_layer == src_layer:
                continue
            if RANKS[dst_layer] >= RANKS[src_layer]:
                wrong.append(f"{source} -> {target}")
    return wrong


def test_runtimes_keep_to_themselves():
    wrong = []
    for source, targets in graph().items():
        src = runtime_package(source)
        # debugkit.runtimes itself is the factory that picks a runtime: it knows them all.
        if layer(source) != "debugkit.runtimes" or source == "debugkit.runtimes":
            continue
        for target in targets:
            dst = runtime_package(target)
            if dst is None or dst == src:
                continue
            if src is None or (src, dst) not in ALLOWED_SIBLINGS:
                wrong.append(f"{source} -> {target}")
    assert wrong == [], "runtime modules reaching into another runtime:\n" + "\n".join(sorted(wrong))


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles():
    assert find_cycles(graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_checks_see_imports_inside_functions():
    """The cycle the old layout had (a backend importing the session inside a function)
    must be visible to these checks: they are only as good as the import scan. The probe
    module exists only as text: nothing is written into the package (it may be read-only,
    and other test runs read it at the same time)."""
    probe = "debugkit.core._probe_for_test"
    known = set(modules()) | {probe}
    source = 'def f():\n    from debugkit.session import flow\n    from . import spec\n'
    found = imports_in(source, probe, known)
    assert found == {"debugkit.session.flow", "debugkit.core.spec"}
    # ... and the layer check, fed that scan, reports the import that looks up.
    assert looking_up({probe: found}) == [f"{probe} -> debugkit.session.flow"]
    assert find_cycles({**graph(), probe: found, "debugkit.session.flow": {probe}}) != []


def test_session_and_cli_know_runtimes_only_through_the_registry_and_the_protocol():
    wrong = []
    for source, targets in graph().items():
        if layer(source) not in ("debugkit.session", "debugkit.cli"):
            continue
        wrong += [f"{source} -> {target}" for target in targets
                  if layer(target) == "debugkit.runtimes" and target not in PROTOCOL]
    assert wrong == [], "session/cli importing a runtime's own modules:\n" + "\n".join(sorted(wrong))


def runtime_words() -> set[str]:
    """The registered runtimes' names and target schemes."""
    return {e.name for e in runtimes.entries()} | {s for e in runtimes.entries() for s in e.schemes}


def named_runtimes(source: str) -> list[str]:
    """Every string in the code that is exactly a runtime's name or scheme: a comparison with
    one, a lookup by one, a default of one. (Text that merely mentions one, in a help line or a
    docstring, is not exactly one.)"""
    words = runtime_words()
    return [f"line {node.lineno}: {node.value!r}" for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and node.value in words]


def test_session_and_cli_never_name_a_runtime():
    found = []
    for layer_dir in ("session", "cli"):
        for path in sorted((PACKAGE / layer_dir).rglob("*.py")):
            found += [f"{path.relative_to(PACKAGE.parent)}: {hit}" for hit in named_runtimes(path.read_text())]
    assert found == [], "runtime names or schemes in session/ or cli/:\n" + "\n".join(found)


def test_the_name_check_sees_a_branch_on_a_name():
    assert named_runtimes('if plan.runtime == "kubernetes":\n    pass\n') == ["line 1: 'kubernetes'"]
    assert named_runtimes('x = ref.startswith("podman://")\n') == ["line 1: 'podman://'"]
    assert named_runtimes('"""Works on docker and podman."""\n') == []


def test_every_runtime_package_is_registered_and_every_entry_has_its_package():
    assert set(RUNTIME_PACKAGES) == set(runtimes.names())
    for entry in runtimes.entries():
        for where in (entry.runtime, entry.configured):
            assert where.startswith(f"debugkit.runtimes.{entry.name}."), (entry.name, where)


def imported_by(*argv: str) -> set[str]:
    """The debugkit.runtimes modules a fresh `debugkit ARGV...` imports."""
    import subprocess
    import sys

    code = ("import runpy, sys\nsys.argv = ['debugkit', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('debugkit', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print('loaded:', *(m for m in sys.modules if m.startswith('debugkit.')), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("loaded:")]
    return {m for m in line.split()[1:] if m.startswith("debugkit.runtimes")}


def test_help_imports_no_runtime():
    """`debugkit --help` and `attach --help` build their choices from the registry's entries,
    which are data: no runtime package is imported (runtimes.get() is lazy)."""
    for argv in (["--help"], ["attach", "--help"], ["ps", "--help"]):
        loaded = imported_by(*argv)
        assert {runtime_package(m) for m in loaded} <= {None}, (argv, sorted(loaded))
