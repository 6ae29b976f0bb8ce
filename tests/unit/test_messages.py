"""What debugkit says to an installed user names nothing of this repository's own: no
`scripts/...` (an installed user has none), but what to start."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from debugkit.runtimes.docker.errors import engine_error

PACKAGE = Path(__file__).resolve().parents[2] / "debugkit"


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_no_string_in_the_product_names_the_repositorys_scripts():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                    and "scripts/" in node.value):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value[:80]!r}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("engine, host, says", [
    ("Docker", "unix:///var/run/docker.sock", "start the Docker engine: systemctl start docker; or point -H, "
                                              "DOCKER_HOST or the Docker context at a running one"),
    ("Docker", "tcp://build-1:2376", "start the Docker engine on that host: systemctl start docker"),
    ("Podman", "unix:///run/podman/podman.sock", "start Podman's API service: systemctl start podman.socket, or "
                                                 "podman system service --time=0; or point CONTAINER_HOST at a "
                                                 "running one"),
])
def test_an_engine_that_does_not_answer_is_told_what_to_start(engine, host, says):
    error = engine_error(FileNotFoundError(2, "No such file or directory"), engine=engine, host=host)
    assert error.exit_code == 69 and error.message.startswith(f"cannot reach the {engine} engine at {host}")
    assert says in error.hint
