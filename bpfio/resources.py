"""Where the files shipped beside the code live (the ``asm/`` include folder)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=None)
def asm_dir() -> Path:
    """Return the folder holding ``pio.inc`` and the example programs.

    In a source checkout (and an editable install) that is the repository's
    ``asm/``; an installed wheel carries the same files as ``bpfio/asm``.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "asm", here / "asm"):
        if (candidate / "pio.inc").is_file():
            return candidate
    raise FileNotFoundError("bpfio's asm/ include folder is missing from this installation")
