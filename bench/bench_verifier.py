"""Cost of verifying programs in-process (issue 3: 4096 instructions in <= 20 ms).

The main program is 4096 instructions that every profile accepts (16 stores,
then a seeded mix of word loads, ALU, scratch loads/stores, forward
conditional jumps and returns), so each row walks every rule and every lint.
Rows:

* ``<profile> 4096 insns``: ``verify()`` with lints (the CLI's work);
  ``... no lints``: the classic checks only (what the PIO engine needs).
* ``uninit-mem rejection``: a 4096-instruction program whose last load is
  uninitialised on one path, including building the path explanation.
* ``tcpdump corpus``: mean per program over ``tests/golden/tcpdump/*.ddd``.
* ``kernel SO_ATTACH_FILTER``: the live kernel checking (and converting and
  JIT-compiling) the same 4096-instruction program, for scale.

    python bench/bench_verifier.py [--quick]
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import best_of
from bpfio.errors import VerifierError  # noqa: E402
from bpfio.insn import Insn, Program  # noqa: E402
from bpfio.check.verifier import verify  # noqa: E402

GOAL = "<= 20 ms"


def big_program(n: int = 4096, seed: int = 1) -> Program:
    """A valid program for all three profiles, exercising every check."""
    rng = random.Random(seed)
    insns = [Insn(0x02, 0, 0, i) for i in range(16)]          # st M[0..15]
    alu = [0x04, 0x0c, 0x14, 0x24, 0x34, 0x44, 0x54, 0x64, 0x74, 0x84, 0xa4, 0xac]
    jumps = [0x15, 0x1d, 0x25, 0x2d, 0x35, 0x3d, 0x45, 0x4d]
    while len(insns) < n - 2:
        pc, r = len(insns), rng.random()
        room = min(255, n - pc - 2)
        if r < 0.25:
            insns.append(Insn(0x20, 0, 0, 4 * rng.randrange(16)))     # ld [k], seccomp-sized
        elif r < 0.45:
            code = rng.choice(alu)
            k = rng.randrange(1, 31)
            insns.append(Insn(code, 0, 0, k))
        elif r < 0.55:
            insns.append(Insn(rng.choice((0x60, 0x61, 0x02, 0x03)), 0, 0, rng.randrange(16)))
        elif r < 0.85:
            insns.append(Insn(rng.choice(jumps), rng.randint(0, room), rng.randint(0, room),
                              rng.randrange(256)))
        elif r < 0.9:
            insns.append(Insn(rng.choice((0x07, 0x87, 0x80, 0x81)), 0, 0, 0))
        else:
            insns.append(Insn(0x06, 0, 0, 0x10000) if r < 0.95 else Insn(0x16, 0, 0, 0))
    insns += [Insn(0x16, 0, 0, 0), Insn(0x06, 0, 0, 0x10000)]
    return Program(insns)


def uninit_program(n: int = 4096) -> Program:
    """Valid until the very end, where M[5] is unset on the jf path of pc n-4."""
    body = [Insn(0x00, 0, 0, i) for i in range(n - 5)]
    return Program(body + [Insn(0x15, 0, 1, 7), Insn(0x02, 0, 0, 5), Insn(0x60, 0, 0, 5),
                           Insn(0x16, 0, 0, 0), Insn(0x06, 0, 0, 0)])


def _best_ms(func, repeat: int) -> float:
    return best_of(func, repeat) * 1000


def _row(name, value, unit="ms", baseline=None, ratio=None, goal=None):
    return {"group": "verifier", "name": name, "value": round(value, 3), "unit": unit,
            "baseline": baseline, "ratio": None if ratio is None else round(ratio, 3),
            "goal": goal}


def _tcpdump_corpus() -> list[Program]:
    from bpfio.text.formats import parse_program
    out = []
    for path in sorted((ROOT / "tests" / "golden" / "tcpdump").glob("*.ddd")):
        out.append(parse_program(path.read_bytes(), filename=str(path)))
    return out


def run(quick: bool = False) -> list[dict]:
    """Benchmark rows (see the module docstring)."""
    repeat = 3 if quick else 15
    prog = big_program()
    rows = []
    for profile in ("socket", "seccomp", "pio"):
        verify(prog, profile=profile)                           # must be accepted
        full = _best_ms(lambda: verify(prog, profile=profile), repeat)
        bare = _best_ms(lambda: verify(prog, profile=profile, lints=False), repeat)
        rows.append(_row(f"{profile} 4096 insns", full, goal=GOAL))
        rows.append(_row(f"{profile} 4096 insns, no lints", bare,
                         baseline=f"{profile} 4096 insns", ratio=bare / full, goal=GOAL))
    bad = uninit_program()

    def reject():
        try:
            verify(bad)
        except VerifierError:
            return
        raise AssertionError("uninit_program was accepted")
    rows.append(_row("uninit-mem rejection, 4096 insns", _best_ms(reject, repeat), goal=GOAL))
    corpus = _tcpdump_corpus()
    if corpus:
        def all_of_them():
            for p in corpus:
                try:
                    verify(p)
                except VerifierError:
                    pass
        per = _best_ms(all_of_them, max(1, repeat // 3)) * 1000 / len(corpus)
        rows.append(_row(f"tcpdump corpus ({len(corpus)} programs), per program", per, "us"))
    from bpfio.exec import kernel
    if kernel.available("socket") is None:
        ker = _best_ms(lambda: kernel.socket_attach_errnos([prog]), repeat)
        rows.append(_row("kernel SO_ATTACH_FILTER, same 4096 insns", ker))
        rows.append(_row("socket 4096 insns vs kernel", rows[0]["value"],
                         baseline="kernel SO_ATTACH_FILTER, same 4096 insns",
                         ratio=rows[0]["value"] / ker))
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(f"{row['name']:48} {row['value']:>10} {row['unit']:3} "
              f"{'' if row['ratio'] is None else 'x%s vs %s' % (row['ratio'], row['baseline'])}"
              f" {row['goal'] or ''}")
