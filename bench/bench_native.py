"""Native anchors: what bpfio's numbers should be compared with, measured in the same run.

Group ``jit`` (issue 18), per (program, packet) on bench_interp's tcpdump corpus:

* ``libpcap bpf_filter, native C loop`` -- ``c/pcap_grid.c``, compiled here with
  ``cc`` and linked with libpcap (``-lpcap``, or the loaded library's full path
  when the development symlink is absent), times ``bpf_filter`` over the whole
  grid in C (CPU time, best of 5).  Its verdicts are compared with bpfio's
  interpreter (a sanity row, not an assertion);
* ``jit run_many`` -- ``bpfio.jit(prog).run_many(batch, out=buf)``: one native
  call per program over the 64 packets packed once (``Batch``, as the C harness
  loads them once), verdicts written into a reused ``array('I')`` (no Python int
  per verdict); the ctypes call (~0.5-1 us here) is included.  Against libpcap
  native (goal <= 0.5).  ``..., verdicts as a list`` returns them as a list;
  ``... 16x the packets per call`` spreads the fixed cost per call;
* ``jit Grid.run`` -- every program over every packet in ONE native call
  (``Grid(programs).run(batch, out=buf)``), program-outer and packet-inner like
  the C harness's loop, both prepared once (goal <= 0.5);
* ``jit run_many, packets packed per call`` -- ``run_many(list of bytes)`` ->
  list of ints: everything a Python caller pays.  "jit unavailable" until
  ``bpfio.jit`` exists (or when it raises ``JitUnavailable`` here).  One call
  ``bpfio.jit(p)(pkt)`` against the compiled path is bench_jit's row.

Group ``native`` (issue 19), ns per PIO exit on the PM-timer read-storm guest
(``bpfio.kvm.loop_guest(0x608, 4, n)``: ``in eax, dx; dec ecx; jnz``, then HLT):

* ``bare KVM_RUN loop in C`` -- ``c/kvm_loop.c`` runs that very image and
  answers every IN with a counter: the physical limit on this machine;
* ``QEMU ...`` -- ``qemu-system-x86_64 -enable-kvm -M pc`` running the same
  loop as a boot sector (``native_tools.boot_sector``; port 0x608 is QEMU's ACPI
  PM timer model there, checked by the guest on every run).  Two rows: the wall
  time with start-up subtracted (a 1-iteration run timed too), and the guest's
  own measurement on the PM timer's clock (start-up cannot leak into it);
* one row per entry of :data:`KVM_LOOPS` -- bpfio's Python and native vCPU loops with
  ``examples/pc.toml`` (the PM-timer program answers every read), and the bare loop
  emitted by bpfio's native-loop emitter (a cross-check of the C one).

**Adding another vCPU loop next to these:** append to ``KVM_LOOPS`` a
``(name, measure, goal)`` tuple, where ``measure(image: bytes)`` runs that
image once and returns ns per PIO exit (or a string saying why it cannot run).
The loops run round robin with the bare C loop, ``repeat`` times, best kept.
:func:`time_run_guest` does the usual case::

    KVM_LOOPS.append(("bpfio vm, native loop, offload on",
                      lambda image: time_run_guest(image, loop="native", offload=True),
                      "-"))

Each such row gets ``baseline = "bare KVM_RUN loop in C"`` and its ratio.  Under
the name :data:`NATIVE_LOOP`, ``bench/readme_table.py`` also shows issue 19's
goals: (a) <= 1.15 x bare C, (a) < QEMU, Python loop / (a) >= 2.5.

Every tool may be missing (CI has no ``cc``, KVM or QEMU): the row is then kept
with ``value`` None and says why in its ``goal`` column.  ``--quick`` runs
every harness with small counts (and QEMU once, guest clock only).

    python -m bench --only native [--quick]
"""

from __future__ import annotations

import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import native_tools as nt  # noqa: E402
from bench.bench_interp import corpus, packets  # noqa: E402

PCAP_NATIVE = "libpcap bpf_filter, native C loop"
BARE = "bare KVM_RUN loop in C"
QEMU_WALL = "QEMU -M pc, PM timer model (wall, start-up subtracted)"
QEMU_GUEST = "QEMU -M pc, PM timer model (guest's PM-timer clock)"
PY_LOOP = "bpfio vm, Python loop, PM-timer program"
#: The name issue 19's native-loop row should use: bench/readme_table.py
#: checks its goals against BARE, QEMU_WALL and PY_LOOP when it is present.
NATIVE_LOOP = "bpfio vm, native loop, PM-timer program"
_clock = time.process_time_ns


def _row(group, name, value, unit="ns", baseline=None, base_value=None, goal=""):
    ratio = value / base_value if value is not None and base_value else None
    return {"group": group, "name": name, "value": None if value is None else round(value, 1),
            "unit": unit, "baseline": baseline,
            "ratio": None if ratio is None else round(ratio, 3), "goal": goal}


# --- group "jit": libpcap native and the JIT ---------------------------------

def _pcap_native(programs, pkts, repeat, tmp: Path):
    """(ns per pair, verdicts, how linked) from the C harness, or (None, None, why)."""
    exe, how = nt.build_pcap_grid(tmp)
    if exe is None:
        return None, None, how
    nt.write_programs(tmp / "programs.bin", programs)
    nt.write_packets(tmp / "packets.bin", pkts)
    out, why = nt.run_tool([exe, tmp / "programs.bin", tmp / "packets.bin", repeat,
                            tmp / "verdicts.bin"])
    if out is None:
        return None, None, why
    raw = (tmp / "verdicts.bin").read_bytes()
    return out["ns_per_pair"], list(struct.unpack(f"<{len(raw) // 4}I", raw)), how


def _jit_programs(programs):
    """``[bpfio.jit(p)]`` or the reason the JIT cannot run here."""
    import bpfio
    jit = getattr(bpfio, "jit", None)
    if jit is None:
        return "jit unavailable (no bpfio.jit in this tree)"
    try:
        return [jit(p, profile="socket") for p in programs]
    except bpfio.BpfError as exc:
        return f"jit unavailable: {exc}"


def _best(fn, passes=3) -> int:
    """The least CPU ns of ``passes`` calls of ``fn``."""
    best = None
    for _ in range(passes):
        start = _clock()
        fn()
        spent = _clock() - start
        best = spent if best is None else min(best, spent)
    return best


def jit_rows(quick: bool) -> list[dict]:
    """libpcap native, the JIT in batch (run_many), and their verdict checks."""
    from bpfio.exec.interp import Interpreter
    programs, pkts = corpus(), packets()
    if quick:
        programs, pkts = programs[:20], pkts[:24]
    pairs = len(programs) * len(pkts)
    oracle = [Interpreter(p)(pkt) for p in programs for pkt in pkts]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bpfio-bench-") as tmp:
        ns, verdicts, how = _pcap_native(programs, pkts, 5 if quick else 200, Path(tmp))
    linked = f"anchor: libpcap's C, no Python (linked {how})"
    rows.append(_row("jit", PCAP_NATIVE, ns, goal=linked if ns is not None else how))
    if verdicts is not None:
        bad = sum(a != b for a, b in zip(verdicts, oracle)) + abs(len(verdicts) - pairs)
        if bad:
            print(f"bench_native: libpcap native disagrees with the interpreter on {bad} of "
                  f"{pairs} pairs", file=sys.stderr)
        rows.append(_row("jit", "verdict disagreements (libpcap native vs interpreter)", bad,
                         "count", goal="== 0 (sanity check, not asserted)"))

    jitted = _jit_programs(programs)
    repeat = 1 if quick else 20
    if isinstance(jitted, str):
        rows.append(_row("jit", "jit run_many", None, baseline=PCAP_NATIVE, goal=jitted))
        return rows

    from array import array
    try:    # packets packed once, as the C harness loads them once
        from bpfio.exec.jit.program import Batch, Grid
    except ImportError:
        Batch = Grid = None
    if Batch is None:
        rows.append(_row("jit", "jit run_many", None, baseline=PCAP_NATIVE,
                         goal="no jit Batch in this tree"))
        return rows
    n = len(pkts)
    prepared = Batch(pkts, "socket")
    out = array("I", bytes(4 * n * 16))

    def sweep(inputs, **kw):
        def run():
            for _ in range(repeat):
                for j in jitted:
                    j.run_many(inputs, **kw)
        return run

    def per_pair(fn, packets_per_call=n):
        return _best(fn) / (repeat * len(jitted) * packets_per_call)

    def add(name, value, goal):
        rows.append(_row("jit", name, value, baseline=PCAP_NATIVE, base_value=ns, goal=goal))

    add("jit run_many", per_pair(sweep(prepared, out=out)),
        f"ratio <= 0.5 (issue 18): one run_many per program, {n} packets per call, Batch "
        "packed once, verdicts into a reused u32 buffer (out=); the ctypes call included")
    add("jit run_many, verdicts as a list", per_pair(sweep(prepared)),
        f"the same, {n} packets per call, returning a list of Python ints")
    big = Batch(pkts * 16, "socket")
    add("jit run_many, 16x the packets per call", per_pair(sweep(big, out=out), 16 * n),
        f"out=, {16 * n} packets per call: the fixed cost per call spread")
    grid, grid_out = Grid(jitted), array("I", bytes(4 * pairs))

    def whole():
        for _ in range(repeat):
            grid.run(prepared, out=grid_out)
    add("jit Grid.run, the whole grid in one native call", per_pair(whole),
        f"ratio <= 0.5 (issue 18): libpcap's loop shape, {len(jitted)} programs x {n} packets "
        "per call, prepared once as the C harness's, out=")
    add("jit run_many, packets packed per call", per_pair(sweep(pkts)),
        "everything a Python caller pays: run_many(list of bytes) -> list of ints")
    got = [v for j in jitted for v in j.run_many(pkts)]
    rows.append(_row("jit", "verdict disagreements (jit run_many vs interpreter)",
                     sum(a != b for a, b in zip(got, oracle)) + abs(len(got) - pairs), "count",
                     goal="== 0"))
    got = grid.run(prepared, out=grid_out).tolist()
    rows.append(_row("jit", "verdict disagreements (jit Grid.run vs interpreter)",
                     sum(a != b for a, b in zip(got, oracle)) + abs(len(got) - pairs), "count",
                     goal="== 0"))
    return rows


# --- group "native": KVM exits -----------------------------------------------

def _kvm_ready() -> str:
    """'' when this process can run KVM guests, else why not."""
    from bpfio import kvm
    ok, why = kvm.available()
    return "" if ok else f"absent: {why}"


def time_run_guest(image: bytes, config: Path = ROOT / "examples" / "pc.toml",
                   **kwargs) -> float | str:
    """ns per PIO exit of one ``kvm.run_guest(image, machine, **kwargs)`` run.

    The machine is loaded fresh from ``config`` (programs as configured).
    Returns a string saying why when the run fails.
    """
    from bpfio import kvm
    from bpfio.errors import BpfError
    from bpfio.pio.config import load_machine
    machine = load_machine(config)
    try:
        result = kvm.run_guest(image, machine, **kwargs)
    except BpfError as exc:
        return f"failed: {exc}"
    finally:
        machine.close()
    return result.seconds * 1e9 / max(result.io_exits, 1)


#: (row name, measure(image) -> ns per exit of one run | reason, goal) -- see
#: the module docstring; issue 19's native loop adds its entry here.
KVM_LOOPS: list = [
    (PY_LOOP, lambda image: time_run_guest(image, loop="python"), "the Python vCPU loop"),
    (NATIVE_LOOP, lambda image: time_run_guest(image, loop="native"),
     "<= 1.15 x bare C; < QEMU"),
]


def _emitted_bare(image: bytes) -> float | str:
    """The bare loop emitted by bpfio (bench_native_loop.bare_roundtrip): cross-checks C's."""
    from bench.bench_native_loop import bare_roundtrip
    try:
        return bare_roundtrip(image=image)
    except Exception as exc:        # JitUnavailable, KvmError: the row says why
        return f"absent: {exc}"


KVM_LOOPS.append(("bare KVM_RUN loop, emitted by bpfio", _emitted_bare,
                  "the same limit, from the native loop's emitter"))


def _bare_loop(tmp: Path):
    """measure(image) for c/kvm_loop.c (built once into ``tmp``), or why it cannot run."""
    from bpfio import kvm
    exe, why = nt.build_kvm_loop(tmp)
    if exe is None:
        return why

    def measure(image: bytes) -> float | str:
        (tmp / "guest.bin").write_bytes(image)
        out, why = nt.run_tool([exe, tmp / "guest.bin", hex(kvm.DEFAULT_LOAD), 1])
        return why if out is None else out["ns_per_exit"]
    return measure


def _round_robin(image: bytes, measures: list, repeat: int) -> list:
    """The best of ``repeat`` runs of each measure, run in turn (a reason string sticks).

    Interleaving spreads the shared machine's noise over every row alike;
    keeping the best drops the runs another process preempted.
    """
    best = [m if isinstance(m, str) else None for m in measures]
    for _ in range(repeat):
        for i, m in enumerate(measures):
            if isinstance(best[i], str):
                continue
            value = m(image)
            best[i] = value if isinstance(value, str) or best[i] is None else min(best[i], value)
    return best


def _qemu_once(exe: str, chunks: int, per_chunk: int, tmp: Path):
    """One QEMU run: (wall s, guest ticks, exits) or a string saying why it failed."""
    import subprocess
    disk, log = tmp / "boot.img", tmp / "debugcon.bin"
    disk.write_bytes(nt.boot_sector(chunks, per_chunk) + bytes(65536 - 512))
    log.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(nt.qemu_command(exe, disk, log), capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        return "failed: QEMU did not finish in 120 s"
    wall = time.perf_counter() - start
    if proc.returncode == 3:
        return f"failed: port 0x608 is not the PM timer on -M {nt.QEMU_MACHINE}"
    if proc.returncode != 1:
        lines = proc.stderr.strip().splitlines()
        return f"failed: QEMU exit status {proc.returncode}: {lines[-1] if lines else ''}"
    data = log.read_bytes() if log.exists() else b""
    if len(data) < 4:
        return "failed: the guest reported no tick count"
    return wall, int.from_bytes(data[-4:], "little"), chunks * (per_chunk + 1)


def _qemu(quick: bool) -> tuple[float | str, float | str]:
    """(wall ns per exit with start-up subtracted, guest-clock ns per exit), or reasons."""
    exe = shutil.which("qemu-system-x86_64")
    if exe is None:
        return ("absent: qemu-system-x86_64 not installed",) * 2
    chunks, per_chunk = (1, 20_000) if quick else (10, 100_000)
    repeat = 1 if quick else 2
    with tempfile.TemporaryDirectory(prefix="bpfio-bench-") as t:
        tmp = Path(t)
        runs, ones = [], []
        for _ in range(repeat):     # long and 1-iteration runs in turn, best of each kept
            runs.append(_qemu_once(exe, chunks, per_chunk, tmp))
            if isinstance(runs[-1], str):
                return runs[-1], runs[-1]
            if not quick:
                ones.append(_qemu_once(exe, 1, 1, tmp))
                if isinstance(ones[-1], str):
                    return ones[-1], ones[-1]
    guest = min(ticks / nt.PM_HZ * 1e9 / (chunks * per_chunk) for _, ticks, _ in runs)
    if quick:
        return "not measured in --quick (needs a 1-iteration run too)", guest
    wall = min(w for w, _, _ in runs) - min(w for w, _, _ in ones)
    return wall * 1e9 / (runs[0][2] - ones[0][2]), guest


def kvm_rows(quick: bool) -> list[dict]:
    """ns per exit on the PM-timer read-storm guest: bare C, QEMU, and every KVM_LOOPS entry."""
    from bpfio import kvm
    # Many short runs, best kept: on a shared machine a short run has a chance
    # to go unpreempted (QEMU's rows are averages over 10 x 100k; see _qemu).
    n = 10_000 if quick else 50_000
    repeat = 2 if quick else 10
    image = kvm.loop_guest(0x608, 4, n)
    why = _kvm_ready()
    loops = []
    for entry in KVM_LOOPS:     # the first entry of a name wins
        if entry[0] not in {name for name, _, _ in loops}:
            loops.append(entry)
    with tempfile.TemporaryDirectory(prefix="bpfio-bench-") as tmp:
        measures = [why or _bare_loop(Path(tmp))] + [why or m for _, m, _ in loops]
        bare, *measured = _round_robin(image, measures, repeat)
    bare_v = bare if isinstance(bare, float) else None
    rows = [_row("native", BARE, bare_v, "ns/exit",
                 goal=bare if bare_v is None else "the physical limit here")]
    wall, guest = (why, why) if why else _qemu(quick)
    results = [(QEMU_WALL, wall, "QEMU's C PM-timer model"),
               (QEMU_GUEST, guest, "cross-check: no start-up in it")]
    results += [(name, value, goal) for (name, _, goal), value in zip(loops, measured)]
    for name, value, goal in results:
        ok = isinstance(value, float)
        rows.append(_row("native", name, value if ok else None, "ns/exit", BARE, bare_v,
                         goal if ok else value))
    return rows


def run(quick: bool = False) -> list[dict]:
    """All rows of both groups."""
    return jit_rows(quick) + kvm_rows(quick)


if __name__ == "__main__":
    from bench.__main__ import table
    print(table(run(quick="--quick" in sys.argv)))
