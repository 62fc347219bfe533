"""The x86-64 JIT (issue 18): JIT time, cost per executed instruction, and one call.

Rows:
* ``jit_time_4096`` -- ms to verify, translate and map a 4096-instruction program
  (best of a few; goal <= 50 ms);
* ``jit_len_N`` -- ns per *executed* instruction of a straight-line program of N
  instructions (N = 10 ... 4096), run over a batch of packets by ``run_many`` (one
  native call, verdicts into a reused ``array('I')``); baseline: N = 10 (flat
  means linear cost; at N = 10 the driver's per-packet call dominates);
* ``jit_one_call`` / ``compiled_one_call`` -- ns for one ``prog(pkt)`` from Python
  on a tcpdump filter: the JIT pays a ctypes call (~0.3-1 us) that dwarfs its
  native work, so for single calls the compiled path can be as fast; baseline
  compiled.  The batch row against libpcap called natively from C is the
  bench-anchors harness's (``run_many``), not this module's.

    python -m bench --quick --only jit
"""

from __future__ import annotations

import random
import sys
import time
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_scaling import _straight_line  # noqa: E402
from bpfio import assemble  # noqa: E402
from bpfio.exec.compiler import compile as compile_program  # noqa: E402
from bpfio.exec.gen import random_program  # noqa: E402
from bpfio.exec.jit.mem import unavailable_reason  # noqa: E402
from bpfio.exec.jit.program import Batch, jit  # noqa: E402

GROUP = "jit"
# tcpdump -d 'tcp port 80' (IPv4 and IPv6), a typical one-call filter
TCP80 = """
ldh [12]
jeq #0x86dd, v6, v4
v6: ldb [20]
jeq #0x6, v6p, drop
v6p: ldh [54]
jeq #0x50, keep, v6d
v6d: ldh [56]
jeq #0x50, keep, drop
v4: jeq #0x800, ip, drop
ip: ldb [23]
jeq #0x6, frag, drop
frag: ldh [20]
jset #0x1fff, drop, hdr
hdr: ldxb 4*([14]&0xf)
ldh [x + 14]
jeq #0x50, keep, dst
dst: ldh [x + 16]
jeq #0x50, keep, drop
keep: ret #262144
drop: ret #0
"""


def _row(name, value, unit, baseline=None, ratio=None, goal=None):
    return {"group": GROUP, "name": name, "value": value, "unit": unit, "baseline": baseline,
            "ratio": ratio, "goal": goal}


def _best(fn, reps: int, rounds: int) -> float:
    """Best seconds per call of ``fn`` over ``rounds`` rounds of ``reps`` calls."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def _jit_time(quick: bool) -> list[dict]:
    prog = random_program(random.Random(4096), length=4096)
    secs = _best(lambda: jit(prog), 1, 2 if quick else 5)
    return [_row("jit_time_4096", secs * 1e3, "ms", goal="<= 50 ms")]


def _length_rows(quick: bool) -> list[dict]:
    rows = []
    packet = bytes(range(64))
    batch = Batch([packet] * (64 if quick else 512))
    out = array("I", bytes(4 * len(batch)))     # verdicts stay u32: no Python int each
    lengths = (10, 100, 1000) if quick else (10, 100, 1000, 4096)
    first = None
    for n in lengths:
        native = jit(_straight_line(n))
        secs = _best(lambda: native.run_many(batch, out=out), 1 if quick else 3, 3 if quick else 9)
        value = secs / len(batch) / n * 1e9
        first = first or value
        rows.append(_row(f"jit_len_{n}", value, "ns/insn", baseline=f"jit_len_{lengths[0]}",
                         ratio=value / first, goal="flat: cost per executed insn"))
    return rows


def _one_call_rows(quick: bool) -> list[dict]:
    prog = assemble(TCP80)
    pkt = bytes.fromhex("ffffffffffff001122334455" "0800" "45000028000040004006" "0000"
                        "0a0000010a000002" "c0000050") + bytes(20)
    native, compiled = jit(prog), compile_program(prog)
    assert native(pkt) == compiled(pkt) == 262144
    reps, rounds = (2000, 3) if quick else (20000, 7)
    t_comp = _best(lambda: compiled(pkt), reps, rounds) * 1e9
    t_jit = _best(lambda: native(pkt), reps, rounds) * 1e9
    return [_row("compiled_one_call", t_comp, "ns/call", goal="tcp port 80, one packet"),
            _row("jit_one_call", t_jit, "ns/call", baseline="compiled_one_call",
                 ratio=t_jit / t_comp, goal="report only (a ctypes call per packet)")]


def run(quick: bool = False) -> list[dict]:
    """Rows for ``python -m bench --only jit``."""
    reason = unavailable_reason()
    if reason:
        return [_row("jit_unavailable", 0, "rows", goal=f"skipped: {reason}")]
    return _jit_time(quick) + _length_rows(quick) + _one_call_rows(quick)


if __name__ == "__main__":
    from bench.__main__ import table
    print(table(run("--quick" in sys.argv)))
