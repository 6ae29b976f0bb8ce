"""Defaults that depend on this machine: the environment (and, later, the config file).

Precedence everywhere: a flag typed by the person > the environment > the config file >
the built-in default.
"""
from __future__ import annotations

import os

from debugkit.core.imageref import toolbox_ref


def toolbox_image() -> str:
    """The sidecar image when no --image is given: $DEBUGKIT_IMAGE, else the toolbox."""
    return os.environ.get("DEBUGKIT_IMAGE") or toolbox_ref()
