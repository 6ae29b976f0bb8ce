"""The exit codes the README promises are the ones debugkit uses, and every error class
exits with one of them. (This replaces a test that iterated an @enum.unique IntEnum,
which cannot fail: issue 27, item 19.)"""
from __future__ import annotations

import importlib
import pkgutil
import re

import debugkit
from debugkit.core.errors import DebugkitError, ExitCode
from tests.helpers import REPO


def documented_codes() -> dict[int, str]:
    """code -> meaning, from the README's exit code table (two code/meaning pairs a row)."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("### Exit codes"):]
    table = table[:table.index("\n## ")]
    found: dict[int, str] = {}
    for row in table.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
        for code_cell, meaning in zip(cells[0::2], cells[1::2]):
            if re.fullmatch(r"[0-9]+( / [0-9]+)*", code_cell):
                meanings = meaning.split(" / ")
                for i, code in enumerate(code_cell.split(" / ")):
                    found[int(code)] = meanings[min(i, len(meanings) - 1)]
    return found


def test_the_readme_table_lists_exactly_the_codes_debugkit_uses():
    documented = documented_codes()
    used = {int(code) for code in ExitCode if code is not ExitCode.OK}
    assert set(documented) == used, (f"documented but unused: {sorted(set(documented) - used)}; "
                                     f"used but undocumented: {sorted(used - set(documented))}")
    assert "internal error" in documented[int(ExitCode.INTERNAL)]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_error_class_exits_with_a_documented_code():
    for info in pkgutil.walk_packages(debugkit.__path__, "debugkit."):
        if not info.name.endswith("__main__"):  # that one runs the CLI
            importlib.import_module(info.name)
    documented = documented_codes()
    classes = list(_subclasses(DebugkitError))
    assert len(classes) > 20  # the walk found them all, not just core.errors'
    wrong = {cls.__qualname__: cls.exit_code for cls in classes
             if isinstance(cls.__dict__.get("exit_code"), int) and int(cls.exit_code) not in documented}
    assert wrong == {}
