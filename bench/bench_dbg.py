"""Debugger and CFG benchmark: what stepping costs over the plain interpreter.

Rows (ns per executed instruction unless said otherwise):
* ``interp_outcome``   -- ``bpfio.exec.interp.outcome`` over the packets (the baseline).
* ``dbg_run``          -- ``run`` in a :class:`bpfio.dbg.debugger.Debugger`: one ``Execution.step``
  per instruction plus the undo/path bookkeeping that ``step -N`` and ``path`` need.
* ``dbg_step_trace``   -- ``step N``: the same plus one explained trace line per instruction.
* ``dbg_machine_event`` -- ns per *event* of ``run`` in machine mode (program stepped, then the
  event dispatched through the engine), on a synthetic latch binding.
* ``cfg_dot_4096``     -- µs to build the CFG and DOT text of a 4096-instruction program.

Run: ``python -m bench --only dbg`` (or ``--quick``).
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile

from bench import best_of

FILTER = """
    ldh [12]
    jeq #0x800, ip, drop
ip: ldb [23]
    jeq #6, tcp, drop
tcp: ldxb 4*([14]&0xf)
    ldh [x + 16]
    jeq #80, keep, drop
keep: ret #0x40000
drop: ret #0
"""
LATCH = """#include <pio.inc>
    ld [PIO_DIR]
    jeq #PIO_OUT, write, read
write: ld [PIO_DATA]
    st M[0]
    ret #PIO_DONE
read: ld M[0]
    ret #PIO_DONE
"""


def _packets():
    eth = bytes(12) + b"\x08\x00"
    ip = bytes([0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2])
    tcp = struct.pack(">HHIIBBHHH", 12345, 80, 1, 0, 0x50, 2, 1024, 0, 0)
    return [eth + ip + tcp, bytes(12) + b"\x08\x06" + bytes(28)]



def run(quick: bool) -> list[dict]:
    """Measure and return the rows."""
    from bpfio.text.assembler import assemble
    from bpfio.dbg.cfg import build_cfg, to_dot
    from bpfio.dbg.debugger import Debugger
    from bpfio.insn import Insn
    from bpfio.exec.interp import outcome
    from bpfio.exec.trace import trace

    prog = assemble(FILTER)
    packets = _packets() * (200 if quick else 2000)
    insns = sum(len(trace(prog, p)[1]) for p in packets[:2]) * (len(packets) // 2)
    repeat = 3 if quick else 5
    rows = []

    def row(name, seconds, per, unit="ns/insn", baseline="interp_outcome", goal=""):
        rows.append({"group": "dbg", "name": name, "value": seconds / per * 1e9 if unit.startswith("ns")
                     else seconds / per * 1e6, "unit": unit, "baseline": baseline, "ratio": None,
                     "goal": goal})

    row("interp_outcome", best_of(lambda: [outcome(prog, p) for p in packets], repeat), insns,
        baseline=None, goal="reference")

    d = Debugger("socket")
    d.set_program(prog)
    for p in packets:
        d.source.packets.append((p, len(p)))
    row("dbg_run", best_of(lambda: d.execute("run"), repeat), insns,
        goal="interactive: a 100k-instruction run well under a second")

    def stepping():
        d.execute("select 1")
        for _ in range(len(packets) // 10):
            d.execute("step 64")
    steps = insns // 10
    row("dbg_step_trace", best_of(stepping, repeat), steps, goal="a screenful of trace in microseconds")

    with tempfile.TemporaryDirectory() as tmp:
        n_events = 500 if quick else 5000
        with open(os.path.join(tmp, "latch.asm"), "w") as f:
            f.write(LATCH)
        with open(os.path.join(tmp, "m.toml"), "w") as f:
            f.write('[bindings.latch]\nbase = 0x300\nlength = 1\nprogram = "latch.asm"\n')
        with open(os.path.join(tmp, "e.jsonl"), "w") as f:
            for i in range(n_events):
                op = {"op": "out", "value": i & 0xff} if i % 2 else {"op": "in"}
                f.write(json.dumps({**op, "port": 0x300, "size": 1, "t_ns": i}) + "\n")
        m = Debugger("pio")
        m.attach_machine(os.path.join(tmp, "m.toml"), "latch")
        m.execute(f"load events {os.path.join(tmp, 'e.jsonl')}")
        row("dbg_machine_event", best_of(lambda: m.execute("run"), repeat), n_events,
            unit="ns/event", baseline=None, goal="a recorded trace of 10k events in seconds")
        m.close()

    big = [Insn(0x15, 0, 1, i) if i % 3 == 0 else Insn(0x04, 0, 0, 1) for i in range(4095)]
    big.append(Insn(0x06, 0, 0, 0))
    row("cfg_dot_4096", best_of(lambda: to_dot(big, cfg=build_cfg(big)), repeat), 1,
        unit="us/program", baseline=None, goal="the largest program in well under a second")

    base = {r["name"]: r["value"] for r in rows}
    for r in rows:
        if r["baseline"]:
            r["ratio"] = r["value"] / base[r["baseline"]]
    return rows


if __name__ == "__main__":
    for r in run(quick="--quick" in sys.argv):
        ratio = "" if r["ratio"] is None else f"x{r['ratio']:.1f}"
        print(f"{r['name']:<20} {r['value']:12.1f} {r['unit']:<11} {ratio}")
