"""Differential fuzzing of bpfio's assembler against the real kernel bpf_asm.

Seeded mutations of the golden sources (tests/golden/asm/*.bpf): delete, repeat
or swap pieces, insert tokens that sit on the lexer's edges (``+5``, ``-0``,
``08``, ``0b``, one-letter labels, ``/*``, ``#`` ...).  For every mutant the
rebuilt ``bpf_asm`` and ``bpfio.assemble`` must agree on accept/reject and, when
both accept, on every instruction.

    pytest tests/test_golden_fuzz.py                       # 300 mutants (default)
    BPFIO_GOLDEN_FUZZ_N=20000 pytest tests/test_golden_fuzz.py --run-slow
    BPFIO_GOLDEN_FUZZ_SEED=7 ...                           # another seed
    pytest tests/test_golden_fuzz.py --run-slow -k lines   # also compare error lines

Skips when the rebuilt bpf_asm is not installed (see tests/golden/README.md).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
from pathlib import Path

import pytest

import bpfio
from bpfio.errors import BpfError
from bpfio.insn import Insn

GOLDEN = Path(__file__).resolve().parent / "golden"
BPF_ASM = os.environ.get("BPF_ASM", "/opt/bpf_asm/bpf_asm")
SEED = int(os.environ.get("BPFIO_GOLDEN_FUZZ_SEED", "1"))

pytestmark = pytest.mark.skipif(not os.access(BPF_ASM, os.X_OK),
                                reason=f"no rebuilt bpf_asm at {BPF_ASM}")

# Pieces that sit on lexer/grammar edges.  No word that bpfio's preprocessor
# treats as a directive after a column-0 '#' (bpf_asm has no preprocessor).
INSERTS = [",", ":", "#", "%", "[", "]", "(", ")", "x", "a", "X", "+", "M", "*", "&", "-",
           "0", "00", "08", "019", "0b", "0b2", "0x", "0xg", "+5", "-0", "-5", "+0x1", "4",
           "015", "4294967296", "-4294967297", "99999999999999999999", "ld", "ldb", "ldxb",
           "ret", "jmp", "ja", "jeq", "jne", "len", "#len", "proto", "#proto", "rand", "lbl",
           "zz", "b", "_", "__", "\n", " ", "\t", "/*", "*/", "**/", ";", "\r", "M[1]",
           "[x+1]", "[x + 1]", "4*([14]&0xf)", "drop:", "L1:", "ret a", "ret #0", "tax"]
_PIECE = re.compile(r"\s+|[A-Za-z_][A-Za-z0-9_]*|0[xXbB][0-9A-Fa-f]*|[-+]?\d+|.", re.S)


def mutate(text: str, r: random.Random) -> str:
    """One to three random edits of ``text``."""
    for _ in range(r.choice([1, 1, 2, 3])):
        pieces = _PIECE.findall(text) or [""]
        i = r.randrange(len(pieces))
        op = r.randrange(6)
        if op == 0:                                   # delete a piece
            del pieces[i]
        elif op == 1:                                 # insert an edge token
            pieces.insert(i, r.choice(INSERTS))
        elif op == 2 and i + 1 < len(pieces):         # swap neighbours
            pieces[i], pieces[i + 1] = pieces[i + 1], pieces[i]
        elif op == 3:                                 # replace a piece
            pieces[i] = r.choice(INSERTS)
        elif op == 4:                                 # repeat a line
            lines = "".join(pieces).split("\n")
            j = r.randrange(len(lines))
            lines.insert(j, lines[j])
            pieces = ["\n".join(lines)]
        else:                                         # glue: drop the whitespace after a piece
            if i + 1 < len(pieces) and pieces[i + 1].isspace():
                del pieces[i + 1]
        text = "".join(pieces)
    return text


_LINE = re.compile(rb"at line (\d+)")


def kernel_bpf_asm(source: bytes) -> tuple[list[Insn] | None, int | None]:
    """The kernel tool's program (None when it rejects the source) and its error line."""
    res = subprocess.run([BPF_ASM], input=source, capture_output=True, timeout=30)
    if res.returncode != 0 or res.stderr:
        m = _LINE.search(res.stderr)
        return None, int(m.group(1)) if m else None
    parts = res.stdout.decode().strip().rstrip(",").split(",")
    return [Insn(*map(int, p.split())) for p in parts[1:]], None


def bpfio_assemble(source: bytes) -> tuple[list[Insn] | None | str, int | None]:
    """bpfio's program (None when rejected, a string for a non-BpfError) and error line."""
    try:
        return list(bpfio.assemble(source, filename="<fuzz>")), None
    except BpfError as exc:
        return None, getattr(exc, "line", None)
    except Exception as exc:  # anything else is a bug: bad input must give a BpfError
        return f"{type(exc).__name__}: {exc}", None


def run_fuzz(n: int, seed: int, *, lines: bool = False) -> list[str]:
    """Mutate and compare; with ``lines``, also compare the error line bpf_asm names."""
    r = random.Random(seed)
    sources = [p.read_text() for p in sorted((GOLDEN / "asm").glob("*.bpf"))
               if not p.name.startswith("big_")]
    problems = []
    for case in range(n):
        src = mutate(r.choice(sources), r).encode()
        want, want_line = kernel_bpf_asm(src)
        got, got_line = bpfio_assemble(src)
        if lines:
            if want is None and got is None and want_line is not None and got_line != want_line:
                problems.append(f"case {case}: bpf_asm error at line {want_line}, bpfio at "
                                f"line {got_line}\n  source: {src[:300]!r}")
            continue
        if isinstance(got, str):
            problems.append(f"case {case}: bpfio raised {got}\n  source: {src[:300]!r}")
        elif (want is None) != (got is None):
            verdict = "accepts" if got is not None else "rejects"
            problems.append(f"case {case}: bpf_asm {'rejects' if want is None else 'accepts'}, "
                            f"bpfio {verdict}\n  source: {src[:300]!r}")
        elif want is not None and want != got:
            pc = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b),
                      min(len(want), len(got)))
            problems.append(f"case {case}: programs differ at pc {pc}: bpf_asm "
                            f"{want[pc] if pc < len(want) else None} bpfio "
                            f"{got[pc] if pc < len(got) else None}\n  source: {src[:300]!r}")
    return problems


def test_fuzz_against_bpf_asm():
    n = int(os.environ.get("BPFIO_GOLDEN_FUZZ_N", "300"))
    problems = run_fuzz(n, SEED)
    assert not problems, f"{len(problems)} of {n} mutants disagree:\n" + "\n".join(problems[:12])


@pytest.mark.slow
def test_fuzz_against_bpf_asm_long():
    n = int(os.environ.get("BPFIO_GOLDEN_FUZZ_N", "20000"))
    problems = run_fuzz(n, SEED + 1000)
    assert not problems, f"{len(problems)} of {n} mutants disagree:\n" + "\n".join(problems[:12])


@pytest.mark.slow
def test_fuzz_error_lines():
    """Where both reject and bpf_asm names a line, bpfio names the same line."""
    n = int(os.environ.get("BPFIO_GOLDEN_FUZZ_N", "3000"))
    problems = run_fuzz(n, SEED + 2000, lines=True)
    assert not problems, f"{len(problems)} error lines differ:\n" + "\n".join(problems[:12])
