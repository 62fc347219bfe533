"""The Python examples in docs/interpreter.md run and their assertions hold."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "interpreter.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_example(index, capsys):
    exec(compile(BLOCKS[index], f"{DOC.name} block {index}", "exec"), {})


def test_doc_has_examples():
    assert len(BLOCKS) >= 3
