"""The declared dependencies are what the product imports: every runtime dependency is
imported by debugkit/, and nothing in debugkit/ imports a package that only the test extra
installs (docker-py, the kubernetes client): a user installs no package that is not used."""
from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "debugkit"
# distribution name -> the module it provides
MODULES = {"click": "click", "pyyaml": "yaml", "google-re2": "re2", "rich": "rich", "pytest": "pytest",
           "docker": "docker", "kubernetes": "kubernetes"}


def declared() -> tuple[list[str], list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(specs):
        return [re.split(r"[<>=!~ \[;]", spec, maxsplit=1)[0].lower() for spec in specs]

    return names(project["dependencies"]), names(project["optional-dependencies"]["test"])


def imported_top_level() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return found


def test_every_runtime_dependency_is_imported_by_the_product():
    runtime, _test = declared()
    imported = imported_top_level()
    unknown = [name for name in runtime if name not in MODULES]
    assert unknown == [], f"add the module name of {unknown} to MODULES"
    unused = [name for name in runtime if MODULES[name] not in imported]
    assert unused == [], f"declared but never imported by debugkit/: {unused} (move them to the test extra)"


def test_the_product_imports_no_test_only_package():
    runtime, test = declared()
    imported = imported_top_level()
    test_only = [name for name in test if name not in runtime]
    wrong = [name for name in test_only if MODULES.get(name, name) in imported]
    assert wrong == [], f"debugkit/ imports {wrong}, which only the test extra installs"
    assert {"docker", "kubernetes"} <= set(test_only), "the reference clients are test-only"
