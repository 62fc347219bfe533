"""Benchmark: real guests on /dev/kvm -- PIO exits per second and the engine's share.

Three port handlers serve the same guest:

* ``programs``   -- examples/pc.toml as configured (programs first, models on EXIT);
* ``models``     -- the same machine with every program removed (models only);
* ``unmapped``   -- bpfio.kvm.NullPorts: no engine at all, every IN reads all ones
  (not for pmtimer and pit, which wait for a clock that NullPorts never moves).

For the tiny ``in``-loop guest (``bench_exit_roundtrip``) the rows are ns per
exit round trip; for the example guests they are PIO exits per second.  The
engine's share of the per-exit cost is measured inside each guest run: the
time spent in the port handler (engine and models) over the wall time.
``--quick`` shortens every loop.

Every row runs the Python exit loop (``loop="python"``), so the engine's share is
measured as before; ``bench/bench_native_loop.py`` has the native loop's rows.

Run: ``python bench/bench_kvm.py [--quick]`` (or through ``bpfio bench``).
Rows are empty when /dev/kvm is unusable; guest rows need nasm.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bpfio import kvm  # noqa: E402

PC_TOML = ROOT / "examples" / "pc.toml"
GUESTS = ("hello", "pmtimer", "pit", "pcscan", "virtio", "post")


def guest_images(names, tmp, quick: bool):
    """(name, image) of each example guest, built in ``tmp`` (a shorter virtio storm if quick)."""
    for name in names:
        defines = {"KICKS": 2000} if name == "virtio" and quick else {}
        yield name, kvm.build_guest(ROOT / "examples" / "guests" / f"{name}.asm", tmp,
                                    defines=defines).read_bytes()
# Guests that wait for a device to move (a clock) never finish on NullPorts:
# their baseline is the models-only run.
NEEDS_DEVICES = {"pmtimer", "pit"}


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


def roundtrip_rows(quick: bool) -> list[dict]:
    """ns per exit for the in-loop guest on the PM timer port, three handlers.

    The unmapped row is ``bench_exit_roundtrip`` itself (best of ``repeat``);
    the engine rows come from timed runs of the same guest, so the time
    inside bpfio is measured, not inferred from two noisy totals.
    """
    n = 5_000 if quick else 50_000
    repeat = 3 if quick else 5
    null = min(kvm.bench_exit_roundtrip(n) for _ in range(repeat))
    rows = [_row("kvm exit round trip", "unmapped (NullPorts)", null, "ns/exit",
                 goal="cost of KVM_RUN + the Python exit loop")]
    if not PC_TOML.is_file():
        return rows
    image = kvm.loop_guest(0x608, 4, n)
    for label, programs in (("models only", False), ("programs", True)):
        best = None
        for _ in range(repeat):
            m = _machine(programs)
            try:
                r = kvm.run_guest(image, m, timed=True, loop="python")
            finally:
                m.close()
            if best is None or r.seconds < best.seconds:
                best = r
        ns = best.seconds * 1e9 / best.io_exits
        rows.append(_row("kvm exit round trip", f"{label}: in 0x608 (PM timer)", ns, "ns/exit",
                         "unmapped (NullPorts)", null))
        rows.append(_row("kvm exit round trip", f"{label}: bpfio per exit",
                         best.handler_seconds * 1e9 / best.io_exits, "ns/exit"))
        rows.append(_row("kvm exit round trip", f"{label}: engine share",
                         100.0 * best.handler_share, "% of exit",
                         goal="share of each exit spent in bpfio"))
    return rows


def guest_rows(quick: bool) -> list[dict]:
    """Exits per second for each example guest under the three handlers.

    Each configuration runs ``repeat`` times and keeps its fastest run (the
    machine is shared; the slow runs are other processes' noise).  The time
    spent inside bpfio is measured directly (``run_guest(timed=True)``), so
    the engine's share of an exit does not depend on two noisy runs agreeing.
    """
    if shutil.which("nasm") is None or not PC_TOML.is_file():
        return []
    repeat = 2 if quick else 3
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, image in guest_images(GUESTS, tmp, quick):
            best = {}
            configs = (("unmapped", None), ("models only", False), ("programs", True))
            for label, handler in configs[1:] if name in NEEDS_DEVICES else configs:
                for _ in range(repeat):
                    m = None if handler is None else _machine(handler)
                    try:
                        r = kvm.run_guest(image, m if m is not None else kvm.NullPorts(),
                                          timeout=60, timed=True, loop="python")
                        share = m.stats()["fast_path_share"] if m is not None else 0.0
                    except kvm.KvmError:
                        break       # e.g. a guest that needs a device to finish
                    finally:
                        if m is not None:
                            m.close()
                    per_exit = r.handler_seconds / max(r.io_exits, 1)
                    if label in best:
                        per_exit = min(per_exit, best[label][2])
                    if label not in best or r.exits_per_second > best[label][0].exits_per_second:
                        best[label] = (r, share, per_exit)
                    else:
                        best[label] = best[label][:2] + (per_exit,)
            base_label = "models only" if name in NEEDS_DEVICES else "unmapped"
            if base_label not in best:
                continue
            base = best[base_label][0].exits_per_second
            if base_label == "unmapped":
                rows.append(_row(f"kvm guest {name}", "unmapped", base, "exits/s",
                                 goal="no engine: KVM + the exit loop"))
            for label in ("models only", "programs"):
                if label not in best:
                    continue
                r, share, in_bpfio = best[label]
                rows.append(_row(f"kvm guest {name}", label, r.exits_per_second, "exits/s",
                                 None if label == base_label else base_label,
                                 None if label == base_label else base))
                # The least time inside bpfio over the runs, against the fastest
                # run's exit cost: preemption inside the handler is not engine cost.
                rows.append(_row(f"kvm guest {name}", f"{label}: bpfio per exit",
                                 in_bpfio * 1e6, "us/exit"))
                rows.append(_row(f"kvm guest {name}", f"{label}: engine share",
                                 100.0 * in_bpfio * r.exits_per_second, "% of exit"))
                if label == "programs":
                    rows.append(_row(f"kvm guest {name}", "fast-path share", 100.0 * share,
                                     "% of accesses"))
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
                    r = kvm.run_guest(image, m, offload=offload, loop="python")
                finally:
                    m.close()
                exits[offload] = (r.io_exits, r.seconds)
            (e0, s0), (e1, s1) = exits[False], exits[True]
            rows.append(_row(f"kvm offload {name}", "PIO exits without offload", e0, "exits"))
            rows.append(_row(f"kvm offload {name}", "PIO exits with offload", e1, "exits",
                             "PIO exits without offload", e0))
            rows.append(_row(f"kvm offload {name}", "wall time without offload", s0 * 1e3, "ms"))
            rows.append(_row(f"kvm offload {name}", "wall time with offload", s1 * 1e3, "ms",
                             "wall time without offload", s0 * 1e3))
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
