"""What a conformance case is: files to write, an environment, how each client is run,
which observations must match the oracle's, and (for a deliberate difference) what
debugkit does instead and where the documentation says so."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Difference:
    """debugkit differs from the oracle on purpose: `expect` is what debugkit's observation
    holds for each differing field, `doc` a phrase the documentation page must contain."""

    expect: dict
    doc: str
    page: str = "docs/kubernetes.md"


@dataclass(frozen=True)
class Case:
    id: str
    files: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    root_files: dict = field(default_factory=dict)
    flags: tuple = ()
    compare: tuple = ()
    differs: Difference | None = None
    reached_expected: bool | None = None   # what the oracle does: the request reaches the server, or not
    note: str = ""
