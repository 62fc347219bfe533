"""Cost of proving equivalence with ``bpfio.prove`` (issue 13: a 100-insn pair in < 2 s).

The programs are dense: every instruction is live (no early returns).
Blocks of packet/scratch loads, ALU on A and X, stores and ``jgt``
diamonds that skip one instruction and merge again, ending in ``ret a``.
The second program of a pair is the first after one semantics-preserving
rewrite per 20 instructions (``add #0`` inserted, ``ld #k`` split into
``ld #k-1; add #1``, ``jgt #k`` as ``jge #k+1``), so the prover must really
show "equivalent" (unsat); a "different" row changes one constant near
the end.  Rows:

* ``equivalent N insns``: seconds for :func:`bpfio.prove.equivalent`, N from
  100 to 4096; baseline: the interpreter running the same program on 10,000
  random packets (what sampling costs instead of a proof).
* ``different N insns``: the same with a counterexample to find and check.
* ``tcpdump -O vs optimized``: mean and slowest seconds over the expressions
  of ``tests/golden/tcpdump/exprs.txt`` (tcpdump's unoptimized against its
  optimized output), when tcpdump is installed, and how many pairs differ
  (libpcap's optimizer may skip a load that would abort on a short packet).

    python bench/bench_prove.py [--quick]
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bpfio import isa  # noqa: E402
from bpfio.errors import BpfError  # noqa: E402
from bpfio.insn import Insn, Program  # noqa: E402
from bpfio.exec.interp import Interpreter  # noqa: E402
from bpfio.prove import equivalent  # noqa: E402

GOAL = "< 2 s at 100 insns"
_ALU = (isa.BPF_ADD, isa.BPF_SUB, isa.BPF_XOR, isa.BPF_OR, isa.BPF_AND, isa.BPF_LSH, isa.BPF_RSH)


def dense_program(n: int, seed: int = 1) -> list[Insn]:
    """``n`` live instructions: loads, ALU, stores, merging ``jgt`` diamonds, ``ret a``."""
    rng = random.Random(seed)
    out = [Insn(isa.BPF_ST, 0, 0, i) for i in range(4)]            # M[0..3] = 0
    while len(out) < n - 1:
        r = rng.random()
        if r < 0.2:
            out.append(Insn(isa.BPF_LD | rng.choice((isa.BPF_B, isa.BPF_H)) | isa.BPF_ABS, 0, 0,
                            rng.randrange(0, 60)))
        elif r < 0.3:
            out.append(Insn(isa.BPF_LD | isa.BPF_B | isa.BPF_IND, 0, 0, rng.randrange(0, 40)))
        elif r < 0.5:
            op = rng.choice(_ALU)
            k = rng.randrange(1, 32) if op in (isa.BPF_LSH, isa.BPF_RSH) else rng.getrandbits(16)
            src = isa.BPF_X if rng.random() < 0.3 and op not in (isa.BPF_LSH, isa.BPF_RSH) else 0
            out.append(Insn(isa.BPF_ALU | op | src, 0, 0, 0 if src else k))
        elif r < 0.6:
            out.append(Insn(rng.choice((isa.BPF_ST, isa.BPF_LD | isa.BPF_MEM)), 0, 0,
                            rng.randrange(4)))
        elif r < 0.7:
            out.append(Insn(isa.BPF_MISC | isa.BPF_TAX, 0, 0, 0))
        elif r < 0.8:
            out.append(Insn(isa.BPF_LDX | isa.BPF_B | isa.BPF_MSH, 0, 0, rng.randrange(0, 30)))
        elif len(out) < n - 3:                                     # a diamond: skip one ALU op
            out.append(Insn(isa.BPF_JMP | isa.BPF_JGT | isa.BPF_K, 0, 1, rng.getrandbits(8)))
            out.append(Insn(isa.BPF_ALU | isa.BPF_XOR, 0, 0, rng.getrandbits(32)))
    out.append(Insn(isa.BPF_RET | isa.BPF_A, 0, 0, 0))
    return out[:n - 1] + [out[-1]] if len(out) > n else out


def word_program(n: int) -> list[Insn]:
    """:func:`dense_program` with every input load a word of the first 40 bytes (seccomp, pio)."""
    out = []
    for insn in dense_program(n):
        info = isa.OPCODES[insn.code]
        if info.cls == isa.BPF_LD and info.mode in (isa.BPF_ABS, isa.BPF_IND):
            insn = Insn(isa.BPF_LD | isa.BPF_W | isa.BPF_ABS, 0, 0, 4 * (insn.k % 10))
        elif info.cls == isa.BPF_LDX and info.mode == isa.BPF_MSH:
            insn = Insn(isa.BPF_MISC | isa.BPF_TAX, 0, 0, 0)
        out.append(insn)
    return out


def rewritten(prog, seed: int = 2) -> list[Insn]:
    """``prog`` after one preserving rewrite per 20 instructions (jumps keep their targets)."""
    rng = random.Random(seed)
    out = []
    for pc, insn in enumerate(prog):
        code, jt, jf, k = insn
        if rng.random() < 0.05 and code == isa.BPF_JMP | isa.BPF_JGT | isa.BPF_K:
            out.append(Insn(isa.BPF_JMP | isa.BPF_JGE | isa.BPF_K, jt, jf, k + 1))
        elif rng.random() < 0.05 and isa.OPCODES[code].cls not in (isa.BPF_JMP, isa.BPF_RET) \
                and (pc == 0 or isa.OPCODES[prog[pc - 1].code].cls != isa.BPF_JMP):
            out += [insn, Insn(isa.BPF_ALU | isa.BPF_ADD, 0, 0, 0)]
        else:
            out.append(insn)
    return out


def _interp_10k(prog) -> float:
    rng = random.Random(3)
    packets = [rng.randbytes(rng.randrange(0, 100)) for _ in range(10_000)]
    run = Interpreter(Program(prog))
    t = time.perf_counter()
    for p in packets:
        run(p)
    return time.perf_counter() - t


def _row(name, value, unit="s", baseline=None, ratio=None, goal=None):
    return {"group": "prove", "name": name, "value": round(value, 4), "unit": unit,
            "baseline": baseline, "ratio": None if ratio is None else round(ratio, 3), "goal": goal}


def _timed(a, b, profile="socket"):
    t = time.perf_counter()
    r = equivalent(a, b, profile=profile, timeout=120)
    return r, time.perf_counter() - t


def _tcpdump_pairs(limit: int):
    exprs = (ROOT / "tests/golden/tcpdump/exprs.txt").read_text().splitlines()
    from bpfio.text.formats import parse_program
    pairs = []
    for line in exprs:
        linktype, _, expr = line.partition("\t")
        if not expr or linktype.startswith("IFACE"):
            continue
        progs = []
        for opt in (["-O"], []):
            out = subprocess.run(["tcpdump", "-y", linktype, *opt, "-ddd", expr],
                                 capture_output=True, text=True)
            if out.returncode:
                break
            progs.append(parse_program(out.stdout))
        if len(progs) == 2:
            pairs.append(progs)
        if len(pairs) >= limit:
            break
    return pairs


def run(quick: bool = False) -> list[dict]:
    """The rows described in the module docstring."""
    rows = []
    for n in (100,) if quick else (100, 256, 1024, 2048, 4096):
        a = dense_program(n)
        b = rewritten(a)
        base = f"interpreter 10k packets, {n} insns"
        t_interp = _interp_10k(a)
        rows.append(_row(base, t_interp))
        r, t = _timed(a, b)
        assert r.status == "equivalent", r
        rows.append(_row(f"equivalent {n} insns", t, baseline=base, ratio=t / t_interp,
                         goal=GOAL if n == 100 else None))
        c = list(a)
        c[-3] = Insn(c[-3].code, c[-3].jt, c[-3].jf, c[-3].k ^ 1) if c[-3].k else c[-3]
        c.insert(len(c) - 1, Insn(isa.BPF_ALU | isa.BPF_XOR, 0, 0, 1))
        r, t = _timed(a, c)
        rows.append(_row(f"different {n} insns", t, baseline=base, ratio=t / t_interp))
    for profile in () if quick else ("seccomp", "pio"):
        a = word_program(4096)
        r, t = _timed(a, rewritten(a), profile)
        assert r.status == "equivalent", r
        rows.append(_row(f"{profile}: equivalent 4096 insns", t))
    if shutil.which("tcpdump"):
        pairs = _tcpdump_pairs(5 if quick else 1000)
        times, different = [], 0
        for a, b in pairs:
            try:
                r, t = _timed(a, b)
            except BpfError:       # tcpdump -O emits backward jumps for protochain: not cBPF
                continue
            times.append(t)
            different += r.status == "different"   # libpcap's optimizer vs truncated packets
        if times:
            rows.append(_row("tcpdump -O vs optimized, mean", sum(times) / len(times)))
            rows.append(_row("tcpdump -O vs optimized, slowest", max(times)))
            rows.append(_row("tcpdump -O vs optimized, pairs decided", len(times), unit="pairs"))
            rows.append(_row("tcpdump -O vs optimized, pairs different", different, unit="pairs"))
    return rows


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        print(row)
