"""The bundled toolbox image: its default reference, and building it from toolbox-image/."""
from __future__ import annotations

import os

from debugkit import __version__

TOOLBOX_REPOSITORY = "debugkit/toolbox"


def default_ref() -> str:
    """The image `attach` uses when no --image is given (DEBUGKIT_IMAGE overrides)."""
    return os.environ.get("DEBUGKIT_IMAGE") or f"{TOOLBOX_REPOSITORY}:{__version__}"
