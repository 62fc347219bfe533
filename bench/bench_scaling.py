"""Scaling benchmarks (issue 9): program length, event count, and the example workloads.

Rows:
* ``interp_len_N`` / ``compiled_len_N`` -- ns per *executed* instruction for a
  straight-line program of N instructions (N = 10 ... 4096) that runs every
  instruction; baseline: the same engine at N = 10 (flat means linear cost).
* ``rss_after_N_events`` -- resident-memory growth (KiB) after N fast-path events
  (N = 10^4 ... 10^7); baseline: the smallest N.
* ``workload_<name>_programs`` / ``_models`` -- ns per event replaying an
  ``examples/`` workload through its config with the programs, and with the
  programs removed (every access served by the Python models); baseline: models.
"""

from __future__ import annotations

import gc
import time
import tomllib
from pathlib import Path

from bpfio import Program, assemble
from bpfio.exec.compiler import compile as compile_program
from bpfio.exec.interp import Interpreter
from bpfio.exec.trace import trace as interp_trace

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _straight_line(n: int) -> Program:
    """n-1 ALU/load instructions that all execute, then ``ret a``."""
    body = []
    kinds = ["add #3", "ld [x + 2]", "ldx #4", "xor #0x55", "ldb [1]", "lsh #1", "or x", "st M[1]"]
    for i in range(n - 1):
        body.append(kinds[i % len(kinds)])
    return assemble("\n".join(body + ["ret a"]))


def _per_insn(fn, executed: int, budget_s: float) -> float:
    """Best ns per executed instruction over repeated calls within a time budget."""
    fn()
    best = float("inf")
    deadline = time.perf_counter() + budget_s
    reps = max(1, int(20000 / executed))
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
        if time.perf_counter() > deadline:
            break
    return best * 1e9 / executed


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _program_length_rows(quick: bool) -> list[dict]:
    rows = []
    packet = bytes(range(64))
    lengths = (10, 100, 1000) if quick else (10, 100, 1000, 4096)
    budget = 0.05 if quick else 0.4
    for engine in ("interp", "compiled"):
        base = f"{engine}_len_{lengths[0]}"
        first = None
        for n in lengths:
            prog = _straight_line(n)
            steps = interp_trace(prog, packet)[1]
            assert len(steps) == n, f"benchmark program stopped after {len(steps)} of {n}"
            if engine == "interp":
                fn = lambda i=Interpreter(prog): i(packet)  # noqa: E731  pre-decoded once
            else:
                compiled = compile_program(prog)
                fn = lambda c=compiled: c(packet)  # noqa: E731
            value = _per_insn(fn, n, budget)
            first = first or value
            rows.append({"group": "scaling: program length", "name": f"{engine}_len_{n}",
                         "value": value, "unit": "ns/insn", "baseline": base,
                         "ratio": value / first, "goal": "flat: cost per executed insn"})
    return rows


def _event_rows(quick: bool) -> list[dict]:
    from bpfio.pio.machine import Machine
    prog = assemble("#include <pio.inc>\nld [PIO_TICKS]\nand #0xffffff\nret #PIO_DONE")
    ns = [0]
    machine = Machine(clock=lambda: ns[0])
    machine.attach(0x608, 4, program=prog, clock_hz=3579545, mem_words=1, name="pm")
    pio_in = machine.pio_in
    counts = (10**4, 10**5) if quick else (10**4, 10**5, 10**6, 10**7)
    gc.collect()
    start = _rss_kib()
    done, rows = 0, []
    for target in counts:
        while done < target:
            ns[0] += 279
            pio_in(0x608, 4)
            done += 1
        gc.collect()
        rows.append({"group": "scaling: events", "name": f"rss_after_{target:.0e}_events",
                     "value": _rss_kib() - start, "unit": "KiB growth",
                     "baseline": None, "ratio": None, "goal": "flat (no per-event memory)"})
    machine.close()
    return rows


def _models_only_config(path: Path, tmp: Path) -> Path:
    """The same config with every 'program' key dropped (paths made absolute)."""
    data = tomllib.loads(path.read_text())
    lines = []
    for key, value in data.get("machine", {}).items():
        lines.append(f"[machine]\n{key} = {_toml(value)}") if not lines else lines.append(
            f"{key} = {_toml(value)}")
    for name, spec in data.get("bindings", {}).items():
        lines.append(f"[bindings.{name}]")
        for key, value in spec.items():
            if key != "program":
                lines.append(f"{key} = {_toml(value)}")
    out = tmp / path.name
    out.write_text("\n".join(lines) + "\n")
    return out


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(value)


def _workload_rows(quick: bool) -> list[dict]:
    import tempfile
    from bpfio.pio.config import load_machine
    from bpfio.pio.events import EventReader
    from bpfio.pio.replay import replay
    from bpfio.pio.state import FakeClock
    rows = []
    names = ("pc",) if quick else ("pc", "pmtimer", "pit", "rtc", "debugport")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            cfg, ev = EXAMPLES / f"{name}.toml", EXAMPLES / f"{name}.jsonl"
            if not (cfg.is_file() and ev.is_file()):
                continue
            events = list(EventReader(str(ev)))
            results = {}
            for variant, path in (("models", _models_only_config(cfg, Path(tmp))),
                                  ("programs", cfg)):
                best = float("inf")
                for _ in range(1 if quick else 3):
                    clock = FakeClock()
                    machine = load_machine(path, clock=clock)
                    t0 = time.perf_counter()
                    report = replay(machine, events, clock)
                    best = min(best, time.perf_counter() - t0)
                    machine.close()
                results[variant] = (best * 1e9 / max(report.accesses, 1), report)
            base = f"workload_{name}_models"
            for variant in ("models", "programs"):
                value, report = results[variant]
                rows.append({"group": "scaling: example workloads",
                             "name": f"workload_{name}_{variant}", "value": value,
                             "unit": "ns/access", "baseline": base,
                             "ratio": value / results["models"][0],
                             "goal": f"{report.accesses} accesses, "
                                     f"{report.total_mismatches} mismatches"})
    return rows


def run(quick: bool = False) -> list[dict]:
    return _program_length_rows(quick) + _event_rows(quick) + _workload_rows(quick)


if __name__ == "__main__":
    import sys
    from bench.__main__ import table
    print(table(run("--quick" in sys.argv)))
