"""Benchmark: the native vCPU loop (issue 19) against the Python loop and the machine's limit.

The PM-timer read storm (``kvm.loop_guest(0x608, 4, n)``: ``in eax, dx; dec ecx; jnz``)
with the PM-timer program of examples/pc.toml, ns per PIO exit:

* (a) ``native loop + program`` -- ``run_guest(loop="native")``: KVM_RUN, the port table,
  the event header, the clock and the program all in machine code;
* (b) ``python loop + program`` -- ``run_guest(loop="python")``: the same exits through
  bpfio's Python loop and fused fast path;
* (c) ``bare native KVM_RUN`` -- an emitted loop that only re-enters KVM_RUN and answers
  every IN with a counter (``native_code.bare_code``): the round-trip cost of an exit on
  this machine, the floor for (a);
* (d) ``QEMU`` -- from the bench-anchors rows (``bench/bench_native.py``) when they exist.

Goals: (a) <= 1.15 x (c); (a) < (d); (b) / (a) >= 2.5.  Then exits per second for every
example guest under both loops.  Each configuration keeps its best of ``repeat`` runs
(the machine is shared).  Run: ``python -m bench --only native_loop [--quick]``.
"""

from __future__ import annotations

import ctypes
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bpfio import kvm  # noqa: E402

PC_TOML = ROOT / "examples" / "pc.toml"
GROUP = "native loop"
GUESTS = ("hello", "pmtimer", "pit", "cmos", "pcscan", "virtio", "post", "smp")


def _row(group, name, value, unit, baseline=None, base_value=None, goal=""):
    ratio = (value / base_value) if base_value else None
    return {"group": group, "name": name, "value": round(value, 3), "unit": unit,
            "baseline": baseline, "ratio": None if ratio is None else round(ratio, 3),
            "goal": goal}


def bare_roundtrip(n: int) -> float:
    """ns per exit of the emitted do-nothing KVM_RUN loop on the read-storm guest."""
    from bpfio.kvm.native_code import functions
    bare = functions()["bare"]
    with kvm.Vm() as vm:
        vm.load(kvm.loop_guest(0x608, 4, n))
        vcpu = vm.vcpus[0]
        vcpu.enter("real", kvm.DEFAULT_LOAD, 1)
        run = ctypes.c_char.from_buffer(vcpu.run_map)
        try:
            t0 = time.perf_counter()
            exits = bare(ctypes.addressof(run), vcpu.fd)
            seconds = time.perf_counter() - t0
        finally:
            del run
    return seconds * 1e9 / max(exits, 1)


def _pm_machine():
    from bpfio.pio.machine import Machine
    from bpfio.pio.config import load_machine
    pc = load_machine(PC_TOML)
    try:
        pm = pc.binding_at(0x608)
        m = Machine()
        m.attach(pm.base, pm.length, program=pm.program, mem_words=len(pm.mem),
                 clock_hz=pm.clock_hz, name="pmtimer")
        return m
    finally:
        pc.close()


def storm(loop: str, n: int) -> float:
    """ns per exit of the read storm with the PM-timer program under ``loop``."""
    m = _pm_machine()
    try:
        r = kvm.run_guest(kvm.loop_guest(0x608, 4, n), m, loop=loop)
    finally:
        m.close()
    return r.seconds * 1e9 / max(r.io_exits, 1)


def qemu_ns() -> tuple[float | None, str]:
    """QEMU's ns per exit on the same loop, from the bench-anchors module when present."""
    try:
        from bench import bench_native
    except ImportError:
        return None, "bench/bench_native.py (the bench-anchors rows) is not in this tree"
    fn = getattr(bench_native, "kvm_anchor_ns", None)
    if fn is None:
        return None, "bench_native has no kvm_anchor_ns()"
    value, why = fn("qemu")
    return value, why


def roundtrip_rows(quick: bool) -> list[dict]:
    """Rows (a)-(d) and the three goal ratios."""
    n = 20_000 if quick else 200_000
    repeat = 2 if quick else 5
    # Interleaved, best of each: the load of a shared machine drifts over seconds.
    bare = native = python = float("inf")
    for _ in range(repeat):
        bare = min(bare, bare_roundtrip(n))
        native = min(native, storm("native", n))
        python = min(python, storm("python", n))
    qemu, why = qemu_ns()
    rows = [
        _row(GROUP, "(c) bare native KVM_RUN round trip", bare, "ns/exit",
             goal="the limit here: KVM_RUN and nothing else"),
        _row(GROUP, "(a) native loop + PM-timer program", native, "ns/exit",
             "(c) bare native KVM_RUN round trip", bare, goal="<= 1.15x (c)"),
        _row(GROUP, "(b) python loop + PM-timer program", python, "ns/exit",
             "(a) native loop + PM-timer program", native, goal="(b)/(a) >= 2.5"),
    ]
    if qemu is not None:
        rows.append(_row(GROUP, "(a) against (d) QEMU", native, "ns/exit", "(d) QEMU", qemu,
                         goal="< 1 (faster than QEMU)"))
        rows.append(_row(GROUP, "(d) QEMU -enable-kvm, same loop", qemu, "ns/exit"))
    else:
        rows.append({**_row(GROUP, "(d) QEMU -enable-kvm, same loop", 0.0, "ns/exit"),
                     "value": None, "goal": f"absent: {why}"})
    return rows


def guest_rows(quick: bool) -> list[dict]:
    """Exits per second for each example guest (examples/pc.toml) under both loops."""
    if shutil.which("nasm") is None or not PC_TOML.is_file():
        return []
    from bpfio.pio.config import load_machine
    repeat = 2 if quick else 3
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in GUESTS:
            defines = {"KICKS": 2000} if name == "virtio" and quick else {}
            image = kvm.build_guest(ROOT / "examples" / "guests" / f"{name}.asm", tmp,
                                    defines=defines).read_bytes()
            vcpus = 2 if name == "smp" else 1
            best = {}
            for loop in ("python", "native"):
                for _ in range(repeat):
                    m = load_machine(PC_TOML)
                    if name == "smp":
                        m.attach(0x510, 2, name="smp", program="ld #0x10000\nret a")
                    try:
                        r = kvm.run_guest(image, m, timeout=60, loop=loop, vcpus=vcpus)
                    finally:
                        m.close()
                    best[loop] = max(best.get(loop, 0.0), r.exits_per_second)
            rows.append(_row(f"native loop guest {name}", "python loop", best["python"],
                             "exits/s"))
            rows.append(_row(f"native loop guest {name}", "native loop", best["native"],
                             "exits/s", "python loop", best["python"]))
    return rows


def run(quick: bool) -> list[dict]:
    """All rows (empty when /dev/kvm or native code cannot run here)."""
    ok, _why = kvm.available()
    loop, _notice = kvm.choose_loop(None)
    if not ok or loop != "native":
        return []
    return roundtrip_rows(quick) + guest_rows(quick)


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        ratio = "" if row["ratio"] is None else f"  x{row['ratio']}"
        value = "-" if row["value"] is None else f"{row['value']:>14,.1f}"
        print(f"{row['group']:28} {row['name']:40} {value} {row['unit']}{ratio}  {row['goal']}")
