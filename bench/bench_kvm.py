"""Benchmark: real guests on /dev/kvm -- PIO exits per second and the engine's share.

Three port handlers serve the same guest:

* ``programs``   -- examples/pc.toml as configured (programs first, models on EXIT);
* ``models``     -- the same machine with every program removed (models only);
* ``unmapped``   -- bpfio.kvm.NullPorts: no engine at all, every IN reads all ones.

For the tiny ``in``-loop guest (``bench_exit_roundtrip``) the rows are ns per
exit round trip; for the example guests they are PIO exits per second.  The
engine's share of the per-exit cost is (t_handler - t_unmapped) / t_handler,
computed from the ns-per-exit of the same run.  ``--quick`` shortens every loop.

Run: ``python bench/bench_kvm.py [--quick]`` (or through ``bpfio bench``).
Rows are empty when /dev/kvm is unusable; guest rows need nasm.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bpfio import kvm  # noqa: E402

PC_TOML = ROOT / "examples" / "pc.toml"
GUESTS = ("hello", "pmtimer", "pcscan", "virtio", "post", "cmos")


def _machine(programs: bool):
    from bpfio.pio.config import load_machine
    m = load_machine(PC_TOML)
    if not programs:
        for b in m.bindings.values():
            b.replace_program(None)
    return m


def _row(group, name, value, unit, baseline=None, base_value=None, goal=""):
    ratio = (value / base_value) if base_value else None
    return {"group": group, "name": name, "value": round(value, 3), "unit": unit,
            "baseline": baseline, "ratio": None if ratio is None else round(ratio, 3),
            "goal": goal}


def _median_ns(fn, repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def roundtrip_rows(quick: bool) -> list[dict]:
    """ns per exit for the in-loop guest on the PM timer port, three handlers."""
    n = 5_000 if quick else 50_000
    repeat = 3 if quick else 5
    rows = []
    null = _median_ns(lambda: kvm.bench_exit_roundtrip(n), repeat)
    rows.append(_row("kvm exit round trip", "unmapped (NullPorts)", null, "ns/exit",
                     goal="cost of KVM_RUN + the Python exit loop"))
    if not PC_TOML.is_file():
        return rows
    for label, programs in (("models only", False), ("programs", True)):
        m = _machine(programs)
        try:
            ns = _median_ns(lambda: kvm.bench_exit_roundtrip(n, m, port=0x608, size=4), repeat)
        finally:
            m.close()
        rows.append(_row("kvm exit round trip", f"{label}: in 0x608 (PM timer)", ns, "ns/exit",
                         "unmapped (NullPorts)", null))
        rows.append(_row("kvm engine share", f"{label}: PM timer", 100.0 * (ns - null) / ns,
                         "% of exit", goal="share of each exit spent in bpfio"))
    return rows


def guest_rows(quick: bool) -> list[dict]:
    """Exits per second for each example guest under the three handlers."""
    if shutil.which("nasm") is None or not PC_TOML.is_file():
        return []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in GUESTS:
            if quick and name == "cmos":
                continue            # waits for an RTC second boundary
            defines = {"KICKS": 2000} if name == "virtio" and quick else {}
            image = kvm.build_guest(ROOT / "examples" / "guests" / f"{name}.asm", tmp,
                                    defines=defines).read_bytes()
            results = {}
            for label, handler in (("unmapped", None), ("models only", False),
                                   ("programs", True)):
                m = None if handler is None else _machine(handler)
                try:
                    r = kvm.run_guest(image, m if m is not None else kvm.NullPorts(),
                                      timeout=60)
                    share = m.stats()["fast_path_share"] if m is not None else 0.0
                except kvm.KvmError:
                    continue        # e.g. a guest that needs a device to finish
                finally:
                    if m is not None:
                        m.close()
                results[label] = (r.exits_per_second, r.seconds * 1e9 / max(r.io_exits, 1),
                                  share)
            if "unmapped" not in results:
                continue
            base_eps, base_ns, _ = results["unmapped"]
            rows.append(_row(f"kvm guest {name}", "unmapped", base_eps, "exits/s"))
            for label in ("models only", "programs"):
                if label in results:
                    eps, ns, share = results[label]
                    rows.append(_row(f"kvm guest {name}", label, eps, "exits/s",
                                     "unmapped", base_eps))
                    rows.append(_row(f"kvm guest {name}", f"{label}: engine share",
                                     100.0 * max(ns - base_ns, 0.0) / ns, "% of exit"))
                    if label == "programs":
                        rows.append(_row(f"kvm guest {name}", "fast-path share",
                                         100.0 * share, "% of accesses"))
    return rows


def offload_rows(quick: bool) -> list[dict]:
    """Exits avoided by --offload on the virtio and POST guests (examples/guests/offload.toml)."""
    cfg = ROOT / "examples" / "guests" / "offload.toml"
    if shutil.which("nasm") is None or not cfg.is_file():
        return []
    from bpfio.pio.config import load_machine
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("virtio", "post"):
            image = kvm.build_guest(ROOT / "examples" / "guests" / f"{name}.asm", tmp,
                                    defines={"KICKS": 2000} if quick else {}).read_bytes()
            exits = {}
            for offload in (False, True):
                m = load_machine(cfg)
                try:
                    r = kvm.run_guest(image, m, offload=offload)
                finally:
                    m.close()
                exits[offload] = (r.io_exits, r.seconds)
            (e0, s0), (e1, s1) = exits[False], exits[True]
            rows.append(_row(f"kvm offload {name}", "PIO exits without offload", e0, "exits"))
            rows.append(_row(f"kvm offload {name}", "PIO exits with offload", e1, "exits",
                             "PIO exits without offload", e0))
            rows.append(_row(f"kvm offload {name}", "wall time with offload", s1 * 1e3, "ms",
                             None, None, goal=f"without: {s0 * 1e3:.1f} ms"))
    return rows


def run(quick: bool) -> list[dict]:
    """All kvm rows (empty when /dev/kvm cannot run guests here)."""
    ok, _why = kvm.available()
    if not ok:
        return []
    return roundtrip_rows(quick) + guest_rows(quick) + offload_rows(quick)


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    ok, why = kvm.available()
    if not ok:
        print(f"skipped: {why}")
    for row in run(quick):
        ratio = "" if row["ratio"] is None else f"  x{row['ratio']}"
        print(f"{row['group']:28} {row['name']:40} {row['value']:>14,.1f} {row['unit']}{ratio}")
