"""Every module path the docs name exists: the stage layout moved modules, docs must follow.

A file path ``bpfio/.../x.py`` must be a file of the checkout; a dotted name ``bpfio.a.b``
must import, as a module or as an attribute of the longest module prefix.  An old path
(one in :data:`bpfio._moved.MOVED`) only counts as right on a line that says it is old,
as the README's layout section and ``CHANGELOG.md`` do.
"""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import pytest

from bpfio import _moved

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
FILE_PATH = re.compile(r"\bbpfio/[\w/]+\.py\b")
DOTTED = re.compile(r"(?<![\w./-])bpfio(?:\.[A-Za-z_]\w*)+")


def _resolves(dotted: str) -> bool:
    """True if ``dotted`` is a module, or a chain of attributes of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _wrong_names(doc: Path) -> list[str]:
    wrong = []
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        says_old = "old" in line.lower() or doc.name == "CHANGELOG.md"
        for path in FILE_PATH.findall(line):
            if not (ROOT / path).is_file():
                wrong.append(f"{doc.name}:{number}: {path} does not exist")
        for name in DOTTED.findall(line):
            name = name.rstrip(".")
            if name in _moved.MOVED and not says_old:
                wrong.append(f"{doc.name}:{number}: {name} is now {_moved.MOVED[name]}")
            elif name not in _moved.MOVED and not _resolves(name):
                wrong.append(f"{doc.name}:{number}: {name} does not import")
    return wrong


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_modules_that_exist(doc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert _wrong_names(doc) == []


def test_the_check_catches_a_stale_path(tmp_path):
    stale = tmp_path / "stale.md"
    stale.write_text("See `bpfio/interp.py` and `bpfio.kvm_offload`.\n"
                     "Old paths such as `bpfio.kvm_offload` still import.\n"
                     "`bpfio.exec.interp.run` and `bpfio.nosuch` too.\n")
    assert _wrong_names(stale) == [
        "stale.md:1: bpfio/interp.py does not exist",
        "stale.md:1: bpfio.kvm_offload is now bpfio.kvm.offload",
        "stale.md:3: bpfio.nosuch does not import",
    ]
