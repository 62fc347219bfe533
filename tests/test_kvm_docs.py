"""docs/kvm.md stays runnable: its Python example and its `bpfio vm` command lines."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from test_kvm_helpers import ROOT, needs_kvm, needs_nasm, needs_pc
from devtools import bpfio_exe

pytestmark = [needs_kvm, needs_nasm, needs_pc, pytest.mark.usefixtures("kvm_loop")]

DOC = (ROOT / "docs" / "kvm.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, re.S)


def test_python_example_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.chdir(ROOT)
    (code,) = blocks("python")
    code = code.replace('"/tmp"', repr(str(tmp_path)))
    exec(compile(code, "docs/kvm.md", "exec"), {})
    out = capsys.readouterr().out.split()
    assert int(out[0]) > 100 and out[1].endswith("/s")


COMMANDS = [line for block in blocks("sh") for line in block.splitlines()
            if line.startswith("bpfio vm ")]


@pytest.mark.parametrize("line", COMMANDS)
def test_documented_vm_commands_run(line):
    argv = shlex.split(line)
    proc = subprocess.run([bpfio_exe(), *argv[1:]], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    if "--offload" in line:
        assert re.search(r"offload: [1-9]\d* ioeventfd writes", proc.stdout)
    if "--stats" in line:
        assert "fast path served" in proc.stdout


def test_documented_error_lines_match_the_tool(tmp_path):
    spin = tmp_path / "spin.bin"
    spin.write_bytes(b"\xEB\xFE")
    proc = subprocess.run([bpfio_exe(), "vm", str(spin), "--machine", "examples/pc.toml",
                           "--timeout", "0.2"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == f"{spin}: error: guest did not halt within 0.2 s\n"
    assert "spin.bin: error: guest did not halt within 0.2 s" in DOC
