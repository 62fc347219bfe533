"""docs/debugger.md's sessions, run for real: each shell block followed by a transcript.

A transcript's lines (minus ``...`` elisions) must appear in order in what the shell
block prints; lines starting with ``> `` are commands, and when the block ends in an
interactive ``bpfio dbg`` (no pipe, no -x) they are fed to it on standard input.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from devtools import bpfio_env

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "debugger.md"
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def sessions():
    blocks = BLOCK.findall(DOC.read_text())
    out = []
    for (lang, code), (lang2, transcript) in zip(blocks, blocks[1:]):
        if lang == "sh" and lang2 == "" and "bpfio dbg" in code:
            out.append(pytest.param(code, transcript, id=f"session{len(out) + 1}"))
    return out


def test_the_doc_has_sessions():
    assert len(sessions()) >= 3


@pytest.mark.parametrize("code, transcript", sessions())
def test_doc_session(code, transcript, tmp_path):
    for tool in re.findall(r"^(?:\S+=\$\()?(\w+)", code, re.M):
        if tool in ("tcpdump", "dot") and shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    for name in ("examples", "asm"):
        if (ROOT / name).is_dir():
            (tmp_path / name).symlink_to(ROOT / name)
    lines = [ln.rstrip() for ln in transcript.splitlines() if ln.strip() and ln.strip() != "..."]
    last = code.strip().splitlines()[-1]
    interactive = last.startswith("bpfio dbg") and " -x " not in last
    stdin = "".join(ln[2:] + "\n" for ln in lines if ln.startswith("> ")) if interactive else ""
    proc = subprocess.run(["bash", "-e", "-c", code], cwd=tmp_path, input=stdin, text=True,
                          capture_output=True, timeout=120, env=bpfio_env(LC_ALL="C"))
    assert proc.returncode == 0, proc.stderr
    got = [ln.rstrip() for ln in proc.stdout.splitlines()]
    pos = 0
    for want in lines:
        while pos < len(got) and got[pos] != want:
            pos += 1
        assert pos < len(got), f"documented line not printed (in order): {want!r}\n{proc.stdout}"
        pos += 1
