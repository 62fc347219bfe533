"""Benchmark: the native vCPU loop (issue 19) on every example guest, against the Python loop.

Exits per second for each guest of examples/guests/ on examples/pc.toml, under
``loop="python"`` and ``loop="native"`` (best of ``repeat`` runs each, run in turn).

The per-exit rows of issue 19 -- (a) the native loop with the PM-timer program, (b) the
Python loop, (c) a bare KVM_RUN loop (in C, and emitted by bpfio: :func:`bare_roundtrip`),
(d) QEMU -- are measured round robin in ``bench/bench_native.py`` (group ``native``),
whose ``KVM_LOOPS`` holds the loops.  Run: ``python -m bench --only native native_loop``.
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
from bench.bench_kvm import guest_images  # noqa: E402

PC_TOML = ROOT / "examples" / "pc.toml"
GUESTS = ("hello", "pmtimer", "pit", "cmos", "pcscan", "virtio", "post", "smp")


def _row(group, name, value, unit, baseline=None, base_value=None, goal=""):
    ratio = (value / base_value) if base_value else None
    return {"group": group, "name": name, "value": round(value, 3), "unit": unit,
            "baseline": baseline, "ratio": None if ratio is None else round(ratio, 3),
            "goal": goal}


def bare_roundtrip(n: int = 50_000, image: bytes | None = None) -> float:
    """ns per exit of the emitted do-nothing KVM_RUN loop on the read-storm guest."""
    from bpfio.kvm.native_code import functions
    bare = functions()["bare"]
    with kvm.Vm() as vm:
        vm.load(image if image is not None else kvm.loop_guest(0x608, 4, n))
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


def guest_rows(quick: bool) -> list[dict]:
    """Exits per second for each example guest (examples/pc.toml) under both loops."""
    if shutil.which("nasm") is None or not PC_TOML.is_file():
        return []
    from bpfio.pio.config import load_machine
    repeat = 2 if quick else 3
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, image in guest_images(GUESTS, tmp, quick):
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
    return guest_rows(quick)


if __name__ == "__main__":
    for row in run("--quick" in sys.argv):
        ratio = "" if row["ratio"] is None else f"  x{row['ratio']}"
        value = "-" if row["value"] is None else f"{row['value']:>14,.1f}"
        print(f"{row['group']:28} {row['name']:40} {value} {row['unit']}{ratio}  {row['goal']}")
