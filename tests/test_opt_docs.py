"""docs/opt.md stays true: its session's commands print what it shows, its Python runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools import bpfio_env

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "opt.md").read_text()
SECONDS = re.compile(r"\d+\.\d+ s\b")


def session() -> list[tuple[str, str]]:
    """``(command, expected output)`` for every ``$ `` line of the console blocks."""
    out = []
    for block in re.findall(r"```console\n(.*?)```", DOC, re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, expected = chunk.partition("\n")
            out.append((command, expected))
    return out


STEPS = session()


def test_session_is_there():
    assert len(STEPS) >= 5


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
@pytest.mark.parametrize("command,expected", STEPS, ids=[c for c, _ in STEPS])
def test_session_command(command, expected):
    proc = subprocess.run(["bash", "-c", command], cwd=ROOT, env=bpfio_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)
    # Timings vary from run to run; everything else must match exactly.
    assert SECONDS.sub("N s", proc.stdout) == SECONDS.sub("N s", expected)
    assert proc.returncode == (1 if ": error: " in expected else 0)


def test_python_example_runs(capsys):
    (code,) = re.findall(r"```python\n(.*?)```", DOC, re.S)
    exec(compile(code, "docs/opt.md", "exec"), {})
    assert capsys.readouterr().out.strip().endswith(" s")
