"""No test leans on the machine's leftovers: the CLI under test is the one next to sys.executable.

A bare ``bpfio`` (or ``shutil.which("bpfio")``) finds whatever some earlier install left on
PATH, so a suite could pass on one machine and fail on a fresh clone.  These checks read every
test and benchmark module's syntax tree and fail on such a call; ``.ci/run`` backs them up with
a tripwire ``bpfio`` first on PATH.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import BIN, bpfio_env, bpfio_exe

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/**/*.py")])
RUNNERS = {"run", "Popen", "call", "check_call", "check_output"}


def _bare_bpfio_calls(tree: ast.AST) -> list[int]:
    """Line numbers of subprocess calls whose argv starts with the word bpfio/python, and of which()."""
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        args = node.args
        if name == "which" and args and isinstance(args[0], ast.Constant) and args[0].value == "bpfio":
            bad.append(node.lineno)
        if name in RUNNERS and args and isinstance(args[0], (ast.List, ast.Tuple)) and args[0].elts:
            first = args[0].elts[0]
            if isinstance(first, ast.Constant) and first.value in ("bpfio", "python", "python3"):
                bad.append(node.lineno)
    return bad


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_bare_bpfio_or_python_from_path(path):
    lines = _bare_bpfio_calls(ast.parse(path.read_text(), str(path)))
    assert not lines, f"{path.name}: lines {lines} run bpfio/python from PATH; use devtools.bpfio_exe()"


def test_the_checker_sees_the_patterns_it_forbids():
    src = ('import shutil, subprocess\nsubprocess.run(["bpfio", "asm"])\n'
           'shutil.which("bpfio")\nsubprocess.Popen(["python3", "-c", ""])\n')
    assert sorted(_bare_bpfio_calls(ast.parse(src))) == [2, 3, 4]


def test_bpfio_exe_is_next_to_the_interpreter():
    exe = Path(bpfio_exe())
    assert exe.parent == Path(sys.executable).parent == BIN
    done = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "version" in done.stdout


def test_documented_shell_lines_resolve_to_the_project_under_test(tmp_path):
    # What a doc session's `bpfio` resolves to, whatever PATH held before.
    decoy = tmp_path / "bpfio"
    decoy.write_text("#!/bin/sh\nexit 42\n")
    decoy.chmod(0o755)
    env = bpfio_env()
    env["PATH"] = env["PATH"].replace(str(BIN), f"{BIN}{os.pathsep}{tmp_path}", 1)
    done = subprocess.run(["sh", "-c", "command -v bpfio"], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == str(BIN / "bpfio")
