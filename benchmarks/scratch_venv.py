#!/usr/bin/env python3
"""Install this checkout into a new virtualenv DIR as a user would (`pip install .`: not
editable, byte-compiled), for the benchmarks: DEBUGKIT_BENCH_VENV=DIR then makes every
script time that install (see _common.py).

    .venv/bin/python benchmarks/scratch_venv.py DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

import _common as c


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 64
    where = Path(sys.argv[1]).resolve()
    print(c.scratch_install(where))
    c.installed_matches_checkout(str(where))
    return 0


if __name__ == "__main__":
    sys.exit(main())
