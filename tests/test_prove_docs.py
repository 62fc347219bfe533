"""docs/prove.md's sessions, run for real: each shell block, then the transcript it prints.

The mechanism of ``tests/test_dbg_docs.py``: a ``sh`` block followed by a plain
block; the plain block's lines (minus ``...`` elisions) must appear in order in
what the shell block prints.  A counterexample line (``bpfio run OPTIONS PROG
-> RESULT``) matches when the program and the result are the same: which input
the solver picks may change with the solver's version, what it shows may not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from devtools import bpfio_env

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "prove.md"
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def sessions():
    blocks = BLOCK.findall(DOC.read_text())
    return [pytest.param(code, transcript, id=f"session{i + 1}")
            for i, ((lang, code), (lang2, transcript)) in enumerate(zip(blocks, blocks[1:]))
            if lang == "sh" and lang2 == ""]


CEX = re.compile(r"^(\s*)bpfio run (.*) (\S+)\s+->\s+(.*)$")


def _key(line: str) -> str:
    m = CEX.match(line)
    return f"{m.group(1)}bpfio run ... {m.group(3)} -> {m.group(4)}" if m else line


def test_the_doc_has_sessions():
    assert len(sessions()) >= 5


@pytest.mark.parametrize("code, transcript", sessions())
def test_doc_session(code, transcript, tmp_path):
    if "tcpdump" in code and shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed")
    for name in ("examples", "asm"):
        (tmp_path / name).symlink_to(ROOT / name)
    lines = [ln.rstrip() for ln in transcript.splitlines() if ln.strip() and ln.strip() != "..."]
    proc = subprocess.run(["bash", "-e", "-c", code], cwd=tmp_path, text=True,
                          capture_output=True, timeout=120, env=bpfio_env(LC_ALL="C"))
    assert proc.returncode == 0, proc.stderr
    got = [_key(ln.rstrip()) for ln in proc.stdout.splitlines()]
    pos = 0
    for want in map(_key, lines):
        while pos < len(got) and got[pos] != want:
            pos += 1
        assert pos < len(got), f"documented line not printed (in order): {want!r}\n{proc.stdout}"
        pos += 1
