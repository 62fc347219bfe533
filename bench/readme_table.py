"""Write the README's performance table and docs/benchmarks.md from one benchmark run.

    python -m bench --json > bench/results/latest.json
    python -m bench.readme_table bench/results/latest.json

The README table puts each issue's goal beside the ratio measured in that run
and says plainly whether it is met.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.__main__ import table
from bench.bench_interp import CTYPES
from bench.bench_native import BARE, NATIVE_LOOP, PCAP_NATIVE, PY_LOOP, QEMU_GUEST, QEMU_WALL

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

def native_summary(rows: dict) -> str:
    """What the issue 18/19 rows say, or "" when the run has no native rows."""
    try:
        pn = rows[("jit", PCAP_NATIVE)]
        grid = rows[("jit", "jit Grid.run, the whole grid in one native call")]
        per_call = rows[("jit", "jit run_many")]
        bare, nat, py = (rows[("native", n)] for n in (BARE, NATIVE_LOOP, PY_LOOP))
        qemu = rows[("native", QEMU_WALL)]
    except KeyError:
        return ""
    if not all((pn, grid, per_call, bare, nat, py, qemu)):
        return ""
    return f"""
Native execution: JIT-ed filters run a batch at {grid:.1f} ns per (program, packet) against
{pn:.1f} ns for libpcap's `bpf_filter` in C ({grid / pn:.2f}×) when a whole capture goes through
one native call; at 64 packets per `run_many` call the ctypes call dominates ({per_call:.1f} ns,
{per_call / pn:.2f}×). One PM-timer read served by a program in the native vCPU loop costs
{nat / 1000:.1f} µs per exit: {nat / bare:.2f}× a bare C `KVM_RUN` loop ({bare / 1000:.1f} µs),
{nat / qemu:.2f}× QEMU's C model ({qemu / 1000:.1f} µs), and 1/{py / nat:.1f} of the Python loop.
"""


def summary(d: dict) -> str:
    """Paragraphs saying what the run's numbers mean (figures taken from the run)."""
    rows = {(r["group"], r["name"]): r["value"] for r in d["rows"]}
    fast, model, kvm = (rows[("pio", n)] for n in ("fast_path_in", "model_in", "kvm_exit"))
    rr = [r for r in d["rows"] if r["group"] == "pio-scaling" and r["name"].endswith("_rr")]
    worst = max(r["ratio"] for r in rr) if rr else 1
    return f"""
What the numbers say: in this userspace engine a verified program answers an access in
{fast:.0f} ns, {fast / model:.2f}× the cost of the smallest Python device model ({model:.0f} ns)
and {100 * fast / kvm:.1f}% of a real KVM exit ({kvm / 1000:.1f} µs). The benefit the 2012 idea is
about is the exit itself. The offload rows show it: where a program's semantics match
`KVM_IOEVENTFD` or coalesced PIO, bpfio registers them with KVM and those writes never exit.
Dispatch cost does not depend on the number of bindings (a flat table); round robin over many
bindings costs up to {worst:.2f}× one hot binding in this run (cache working set: each binding
has its own lock, counters and closure cells; 1.09-1.11 across runs, so the ±10% goal is
borderline).
""" + native_summary(rows)


def native_goal_rows(rows: dict, row, *, compiled: float, ctypes_ns: float) -> None:
    """Issue 18 and 19 rows: bpfio against libpcap in C, a bare C KVM_RUN loop and QEMU.

    A row whose tool was absent in the run (value None) shows the reason it
    gave instead of a number; a missing bench_native module adds nothing.
    """
    def get(group, name):
        r = rows.get((group, name))
        return (None, "not run") if r is None else (r["value"], r.get("goal") or "absent")

    if ("jit", PCAP_NATIVE) not in rows:
        return
    pn, why = get("jit", PCAP_NATIVE)
    base = f"libpcap `bpf_filter` in C {pn:.1f} ns" if pn else f"libpcap in C: {why}"
    jb, jwhy = get("jit", "jit run_many")
    row("per packet, tcpdump corpus, JIT `run_many(batch, out=)`, 64 per call (#18)", f"{jb:.1f} ns" if jb else jwhy, base,
        f"{jb / pn:.2f}" if jb and pn else "-", "<= 0.5", jb / pn <= 0.5 if jb and pn else None)
    jg, _ = get("jit", "jit Grid.run, the whole grid in one native call")
    if jg:
        row("per packet, tcpdump corpus, JIT `Grid.run`: the whole grid in one call (#18)",
            f"{jg:.1f} ns", base, f"{jg / pn:.2f}" if pn else "-", "<= 0.5",
            jg / pn <= 0.5 if pn else None)
    jx, _ = get("jit", "jit run_many, 16x the packets per call")
    if jx:
        row("JIT `run_many`, 16x the packets per call: its fixed call cost spread (#18)",
            f"{jx:.1f} ns", base, f"{jx / pn:.2f}" if pn else "-", "-", None)
    if pn:
        row("per packet, compiled Python path against libpcap in C (#18)", f"{compiled:.0f} ns",
            base, f"{compiled / pn:.1f}", "-", None)
        row("libpcap via ctypes against libpcap in C: the Python call (#18)", f"{ctypes_ns:.0f} ns",
            base, f"{ctypes_ns / pn:.1f}", "-", None)
    jt, _ = get("jit", "jit_time_4096")
    if jt:
        row("JIT a 4096-insn program: verify, translate, map (#18)", f"{jt:.1f} ms", "-", "-",
            "<= 50 ms", jt <= 50)
    lens = [rows.get(("jit", f"jit_len_{n}")) for n in (10, 100, 1000, 4096)]
    if all(lens):
        row("JIT: ns per executed insn, length 10 → 4096 (#18)",
            " / ".join(f"{r['value']:.2f}" for r in lens), "jit_len_10",
            f"{lens[-1]['value'] / lens[0]['value']:.2f}", "flat",
            lens[-1]["value"] <= lens[0]["value"] * 1.1)
    jc, _ = get("jit", "jit_one_call")         # bench_jit's rows
    cc, _ = get("jit", "compiled_one_call")
    if jc and cc:
        row("one call `bpfio.jit(p)(pkt)` (#18)", f"{jc:.0f} ns", f"compiled path {cc:.0f} ns",
            f"{jc / cc:.2f}", "report", None)
    c_ns, c_why = get("native", BARE)
    c_txt = f"bare C `KVM_RUN` loop {c_ns / 1000:.1f} µs" if c_ns else f"bare C loop: {c_why}"
    for name, what in ((QEMU_WALL, "QEMU with KVM, its PM-timer model, start-up subtracted (#19)"),
                       (QEMU_GUEST, "QEMU, timed by the guest on the PM timer (#19)"),
                       (PY_LOOP, "`bpfio vm`, Python loop, PM-timer program (#19)")):
        val, vwhy = get("native", name)
        row(what, f"{val / 1000:.1f} µs/exit" if val else vwhy, c_txt,
            f"{val / c_ns:.2f}" if val and c_ns else "-", "-", None)
    a, awhy = get("native", NATIVE_LOOP)
    b, _ = get("native", PY_LOOP)
    d, _ = get("native", QEMU_WALL)
    if ("native", NATIVE_LOOP) in rows:
        row("`bpfio vm`, native loop, PM-timer program (#19)",
            f"{a / 1000:.1f} µs/exit" if a else awhy, c_txt,
            f"{a / c_ns:.2f}" if a and c_ns else "-", "<= 1.15", a / c_ns <= 1.15 if a and c_ns else None)
        row("native loop against QEMU (#19)", f"{a / 1000:.1f} µs" if a else awhy,
            f"QEMU {d / 1000:.1f} µs" if d else "QEMU absent", f"{a / d:.2f}" if a and d else "-",
            "< 1", a < d if a and d else None)
        row("Python loop over native loop (#19)", f"{b / 1000:.1f} µs" if b else "-",
            f"native loop {a / 1000:.1f} µs" if a else awhy, f"{b / a:.2f}" if a and b else "-",
            ">= 2.5", b / a >= 2.5 if a and b else None)
    guests = sorted({g.removeprefix("native loop guest ") for g, _ in rows
                     if g.startswith("native loop guest ")})
    for g in guests:
        py, nat = rows.get((f"native loop guest {g}", "python loop")), rows.get(
            (f"native loop guest {g}", "native loop"))
        if py and nat and py["value"] and nat["value"]:
            row(f"guest `{g}`, exits/s, native loop (#19)", f"{nat['value']:,.0f}",
                f"Python loop {py['value']:,.0f}", f"{nat['value'] / py['value']:.2f}", "-", None)


def goal_rows(d: dict) -> list[str]:
    """Markdown rows: what, measured, baseline, ratio, goal, met."""
    rows = {(r["group"], r["name"]): r for r in d["rows"]}
    v = lambda g, n: rows[(g, n)]["value"]  # noqa: E731
    out = ["| what (issue) | measured | baseline, same run | ratio | goal | met |",
           "|---|---|---|---|---|---|"]

    def row(what, meas, base, ratio, goal, met):
        mark = "-" if met is None else ("yes" if met else "**no**")
        out.append(f"| {what} | {meas} | {base} | {ratio} | {goal} | {mark} |")

    a = v("asm", "asm_4096")
    row("assemble a 4096-insn file in-process (#2)", f"{a:.1f} ms", "-", "-", "<= 50 ms", a <= 50)
    p, py = v("asm", "bpfio_asm_process"), v("asm", "python_startup")
    row("`bpfio asm` whole process, 4096 insns (#2)", f"{p:.0f} ms",
        f"`python3 -c pass` {py:.0f} ms; `bpfc` {v('asm', 'bpfc_process'):.1f} ms",
        f"python + {p - py:.0f} ms", "<= python + 150 ms", p - py <= 150)
    s, k = v("verifier", "socket 4096 insns"), v("verifier", "kernel SO_ATTACH_FILTER, same 4096 insns")
    row("verify 4096 insns, socket profile, lints on (#3)", f"{s:.1f} ms",
        f"kernel SO_ATTACH_FILTER {k:.1f} ms", f"{s / k:.2f}", "<= 20 ms", s <= 20)
    c, i = v("interp", "compiled"), v("interp", "interpreter")
    lp = next(rows[k]["value"] for k in (("interp", CTYPES), ("interp", "libpcap bpf_filter via ctypes"))
              if k in rows)
    row("per packet, tcpdump corpus, compiled (#4)", f"{c:.0f} ns",
        f"libpcap `bpf_filter` via ctypes, what a Python caller pays per call: {lp:.0f} ns",
        f"{c / lp:.2f}", "<= 0.5", c / lp <= 0.5)
    row("per packet, tcpdump corpus, interpreter (#4)", f"{i:.0f} ns",
        f"libpcap via ctypes {lp:.0f} ns", f"{i / lp:.2f}", "<= 1.5", i / lp <= 1.5)
    native_goal_rows(rows, row, compiled=c, ctypes_ns=lp)
    f, x = v("pio", "fast_path_in"), v("pio", "kvm_exit")
    row("fast-path `pio_in` (PM timer program) (#5)", f"{f:.0f} ns", f"real KVM PIO exit {x / 1000:.1f} µs",
        f"{f / x:.3f}", "<= 1/8 (stretch 1/10)", f / x <= 0.125)
    for name, what in (("model_in", "same register, Python model only (#5)"),
                       ("unmapped_in", "unmapped access (#5)")):
        row(what, f"{v('pio', name):.0f} ns", "real KVM PIO exit", f"{v('pio', name) / x:.3f}", "-", None)
    for n, what in (("bindings_1000", "one hot binding"), ("bindings_1000_rr", "round robin")):
        r = rows[("pio-scaling", n)]
        base = rows[("pio-scaling", r["baseline"])]["value"]
        row(f"1000 bindings vs 1, {what} (#5)", f"{r['value']:.0f} ns", f"1 binding {base:.0f} ns",
            f"{r['ratio']:.2f}", "flat ±10%", abs(r["ratio"] - 1) <= 0.1)
    growth = [r for r in d["rows"] if r["group"] == "scaling: events"]
    if growth:
        row("memory growth after 1e4 ... 1e7 events (#5, #9)",
            " / ".join(f"{r['value']:.0f}" for r in growth) + " KiB", "-", "-", "flat",
            max(r["value"] for r in growth) < 1024)
    for engine in ("interp", "compiled"):
        lens = [r for r in d["rows"] if r["group"] == "scaling: program length"
                and r["name"].startswith(engine)]
        if lens:
            row(f"{engine}: ns per executed insn, length 10 → 4096 (#9)",
                " / ".join(f"{r['value']:.0f}" for r in lens), lens[0]["name"],
                f"{lens[-1]['ratio']:.2f}", "flat", lens[-1]["ratio"] <= 1.1)
    wl = [r for r in d["rows"] if r["group"] == "scaling: example workloads" and r["name"].endswith("_programs")]
    for r in wl:
        row(f"replay `examples/{r['name'][9:-9]}.jsonl` with programs (#9)", f"{r['value']:.0f} ns/access",
            "models only", f"{r['ratio']:.2f}", "-", None)
    for g in ("hello", "pmtimer", "pit", "pcscan", "virtio", "post"):
        ex = rows.get((f"kvm guest {g}", "programs"))
        if ex is None:
            continue
        sh = v(f"kvm guest {g}", "fast-path share")
        es = v(f"kvm guest {g}", "programs: engine share")
        row(f"guest `{g}` on /dev/kvm (#7)", f"{ex['value']:,.0f} exits/s", "docs/benchmarks.md", "-",
            f"fast path {sh:.1f}% of accesses; bpfio {es:.1f}% of each exit", None)
    for g, what in (("virtio", "virtio kick storm"), ("post", "POST writes")):
        key = (f"kvm offload {g}", "PIO exits with offload")
        if key in rows:
            row(f"offload: {what}, exits (#7 stretch)", f"{rows[key]['value']:.0f}",
                f"without offload {v(f'kvm offload {g}', 'PIO exits without offload'):.0f}",
                f"{rows[key]['ratio']:.3f}", "fewer exits", rows[key]["ratio"] < 1)
    if rows.get(("opt", "corpus expressions"), {}).get("value"):
        n = v("opt", "corpus expressions")
        row(f"`bpfio opt` vs libpcap's optimizer, {n} tcpdump filters: shorter (#13)",
            f"{v('opt', 'shorter than libpcap'):.1f}%",
            f"longer {v('opt', 'longer than libpcap')}, not proved {v('opt', 'not proved')}",
            "-", ">= 25%, never longer", v("opt", "shorter than libpcap") >= 25
            and v("opt", "longer than libpcap") == 0 and v("opt", "not proved") == 0)
        row("`bpfio opt`: mean insns; executed per packet (#13)",
            f"{v('opt', 'mean insns opt'):.2f}; {v('opt', 'executed per packet opt'):.2f}",
            f"libpcap {v('opt', 'mean insns libpcap'):.2f}; "
            f"{v('opt', 'executed per packet libpcap'):.2f}",
            f"{rows[('opt', 'mean insns opt')]['ratio']:.3f}; "
            f"{rows[('opt', 'executed per packet opt')]['ratio']:.3f}", "-", None)
    if ("prove", "equivalent 100 insns") in rows:
        t = rows[("prove", "equivalent 100 insns")]
        row("prove a 100-insn pair equivalent (#13)", f"{t['value']:.2f} s",
            f"interpreter, 10k packets {v('prove', t['baseline']):.2f} s", f"{t['ratio']:.2f}",
            "< 2 s", t["value"] < 2)
        sizes = [r for r in d["rows"] if r["group"] == "prove" and r["name"].startswith("equivalent ")]
        row("prove equivalent, 100 → 4096 insns (#13)",
            " / ".join(f"{r['value']:.2f}" for r in sizes) + " s", "-", "-", "-", None)
    if ("prove", "tcpdump -O vs optimized, mean") in rows:
        row("prove tcpdump -O == optimized, corpus (#13)",
            f"{v('prove', 'tcpdump -O vs optimized, mean') * 1000:.0f} ms mean over "
            f"{v('prove', 'tcpdump -O vs optimized, pairs decided'):.0f} pairs; "
            f"{v('prove', 'tcpdump -O vs optimized, pairs different'):.0f} differ (docs/prove.md)",
            "-", "-", "-", None)
    return out


def main(argv=None) -> int:
    path = Path((argv or sys.argv[1:] or ["bench/results/latest.json"])[0])
    d = json.loads(path.read_text())
    m = d["machine"]
    head = (f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores, a nested KVM guest), Python "
            f"{m['python']}, Linux {m['kernel']}, by `python -m bench --json` (raw: `{path}`, full "
            "table: [docs/benchmarks.md](docs/benchmarks.md)). This shared VM varies 2-3x between "
            "runs; every figure is a ratio to a baseline from the same run.\n")
    readme = (ROOT / "README.md").read_text()
    i0, i1 = readme.index(START) + len(START), readme.index(END)
    body = "\n" + head + "\n" + "\n".join(goal_rows(d)) + "\n" + summary(d)
    (ROOT / "README.md").write_text(readme[:i0] + body + readme[i1:])
    (ROOT / "docs" / "benchmarks.md").write_text(
        f"# Benchmark results\n\nOne run of `python -m bench --json` on {m['date']}: {m['cpu']}, "
        f"{m['cores']} cores, Python {m['python']}, Linux {m['kernel']}.\nRaw data: `{path}`. "
        "Regenerate: `python -m bench --json > bench/results/latest.json && "
        "python -m bench.readme_table`.\n\n" + table(d["rows"], markdown=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
