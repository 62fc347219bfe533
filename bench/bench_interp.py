"""Per-packet cost of the interpreter, the compiled path and libpcap's bpf_filter.

Corpus: every tcpdump-compiled filter in ``tests/golden/tcpdump/*.ddd`` that
the socket verifier accepts, run on a fixed mix of synthetic Ethernet frames
(IPv4 TCP/UDP/ICMP, ARP, IPv6, 802.1Q, truncated).  Each engine runs the
whole (program x packet) grid in one timed loop; the value is ns per packet
per program.  libpcap is called through ctypes (``bpf_filter(insns, pkt,
wirelen, buflen)`` with argtypes set once) when ``libpcap.so.0.8`` loads.
That row is what a Python caller pays per call (mostly the ctypes call
itself), not libpcap's own speed: libpcap timed natively, from C, is
``bench_native``'s ``libpcap bpf_filter, native C loop``.

Goals (issue 4): compiled <= 0.5 x libpcap-via-ctypes, interpreter <= 1.5 x.

    python bench/bench_interp.py          # full run, prints the rows
    python bench/bench_interp.py --quick
"""

from __future__ import annotations

import ctypes
import ctypes.util
import random
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bpfio.exec.compiler import compile as compile_program  # noqa: E402
from bpfio.text.formats import parse_program  # noqa: E402
from bpfio.exec.interp import Interpreter, pio_runner  # noqa: E402
from bpfio.check.verifier import verify  # noqa: E402

CORPUS = ROOT / "tests" / "golden" / "tcpdump"


def corpus() -> list:
    """The verified tcpdump programs.

    Skipped: backward-jump ones (``protochain``; the kernel refuses them) and
    those with ancillary loads (``vlan``), which libpcap's userspace
    ``bpf_filter`` cannot evaluate as the kernel does (it returns 0).
    """
    programs = []
    for path in sorted(CORPUS.glob("*.ddd")):
        prog = parse_program(path.read_bytes(), filename=str(path))
        try:
            verify(prog, lints=False)
        except Exception:
            continue
        if any(i.code in (0x20, 0x28, 0x30) and i.k >= 0xfffff000 for i in prog):
            continue
        programs.append(prog)
    return programs


def _eth(ethertype: int, payload: bytes, vlan: int | None = None) -> bytes:
    head = bytes.fromhex("ffffffffffff001122334455")
    if vlan is not None:
        head += struct.pack(">HH", 0x8100, vlan)
    return head + struct.pack(">H", ethertype) + payload


def _ipv4(proto: int, l4: bytes, src="10.0.0.1", dst="192.168.1.2", frag=0) -> bytes:
    s = bytes(int(x) for x in src.split("."))
    d = bytes(int(x) for x in dst.split("."))
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, frag, 64, proto, 0, s, d) + l4


def packets(seed: int = 4) -> list[bytes]:
    """A fixed, varied mix of frames."""
    rng = random.Random(seed)
    out = []
    for _ in range(8):
        sport, dport = rng.choice((80, 443, 22, 53, 8080, rng.randrange(1024, 65535))), rng.choice((80, 53, 22, 123))
        tcp = struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 0x50, rng.choice((0x02, 0x10, 0x18)), 512, 0, 0)
        udp = struct.pack(">HHHH", sport, dport, 8 + 20, 0) + bytes(20)
        out.append(_eth(0x0800, _ipv4(6, tcp + bytes(rng.randrange(0, 200)))))
        out.append(_eth(0x0800, _ipv4(17, udp)))
        out.append(_eth(0x0800, _ipv4(1, b"\x08\x00" + bytes(30), dst="8.8.8.8")))
        out.append(_eth(0x0806, bytes.fromhex("0001080006040001") + bytes(20)))
        ip6 = struct.pack(">IHBB16s16s", 0x60000000, len(tcp), 6, 64, bytes(15) + b"\x01", bytes(15) + b"\x02") + tcp
        out.append(_eth(0x86dd, ip6))
        out.append(_eth(0x0800, _ipv4(6, tcp), vlan=rng.randrange(1, 4095)))
        out.append(_eth(0x0800, _ipv4(6, tcp, frag=0x2000 | rng.randrange(1, 100))))
        out.append(_eth(0x0800, _ipv4(6, tcp))[:rng.randrange(10, 40)])   # truncated
    return out


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


def libpcap_filters(programs):
    """``[callable(pkt) -> verdict]`` through libpcap's bpf_filter, or None without libpcap."""
    name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    fn = lib.bpf_filter
    fn.argtypes = [ctypes.POINTER(_Insn), ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint]
    fn.restype = ctypes.c_uint
    arrays = [(_Insn * len(p))(*[_Insn(*i) for i in p]) for p in programs]
    return fn, arrays


# CPU time of this process, not wall time: the numbers stay meaningful on a
# shared, busy machine (preemption is not counted).
_clock = time.process_time_ns

#: The ctypes row's name: the cost for a Python caller, not libpcap's speed.
CTYPES = "libpcap bpf_filter via ctypes (what a Python caller pays per call)"


def _time_grid(calls, pkts, repeat) -> float:
    """Best-of-3 CPU ns per (program, packet) call."""
    best = float("inf")
    for _ in range(3):
        start = _clock()
        for _ in range(repeat):
            for f in calls:
                for p in pkts:
                    f(p)
        best = min(best, (_clock() - start) / (repeat * len(calls) * len(pkts)))
    return best


def _time_pcap(fn, arrays, pkts, repeat) -> float:
    """Best-of-3 CPU ns per bare ctypes call (lengths precomputed, no wrapper frame)."""
    sized = [(p, len(p)) for p in pkts]
    best = float("inf")
    for _ in range(3):
        start = _clock()
        for _ in range(repeat):
            for arr in arrays:
                for p, n in sized:
                    fn(arr, p, n, n)
        best = min(best, (_clock() - start) / (repeat * len(arrays) * len(pkts)))
    return best


def _row(name, value, unit="ns", baseline=None, ratio=None, goal=None, group="interp"):
    return {"group": group, "name": name, "value": round(value, 1), "unit": unit,
            "baseline": baseline, "ratio": None if ratio is None else round(ratio, 3), "goal": goal}


def run(quick: bool = False) -> list[dict]:
    """Benchmark rows: ns per packet for libpcap (ctypes), the interpreter and compiled code."""
    programs = corpus()
    pkts = packets()
    if quick:
        programs, pkts = programs[:20], pkts[:24]
    repeat = 1 if quick else 4
    interps = [Interpreter(p) for p in programs]
    t0 = time.perf_counter()
    compiled = [compile_program(p) for p in programs]
    compile_us = (time.perf_counter() - t0) / len(programs) * 1e6

    rows = []
    pcap = libpcap_filters(programs)
    mismatches = 0
    for p_i, (it, cp) in enumerate(zip(interps, compiled)):
        for pkt in pkts:
            a, b = it(pkt), cp(pkt)
            c = a if pcap is None else pcap[0](pcap[1][p_i], pkt, len(pkt), len(pkt))
            mismatches += not (a == b == c)
    base = None
    if pcap is not None:
        base = _time_pcap(*pcap, pkts, repeat)
        rows.append(_row(CTYPES, base))
    t_interp = _time_grid(interps, pkts, repeat)
    t_comp = _time_grid(compiled, pkts, repeat)
    rows.append(_row("interpreter", t_interp, baseline=base and CTYPES,
                     ratio=base and t_interp / base, goal="ratio <= 1.5"))
    rows.append(_row("compiled", t_comp, baseline=base and CTYPES,
                     ratio=base and t_comp / base, goal="ratio <= 0.5"))
    rows.append(_row("compiled vs interpreter", t_comp, baseline="interpreter",
                     ratio=t_comp / t_interp))
    rows.append(_row("compile time per program", compile_us, unit="us"))
    rows.append(_row("verdict disagreements (interp/compiled/libpcap)", mismatches, unit="count",
                     goal="== 0"))
    rows.append(_row("corpus", len(programs) * len(pkts), unit="program x packet pairs"))
    rows += _pio_rows(quick)
    return rows


def _pio_rows(quick: bool) -> list[dict]:
    """Per-event cost of the pio entry points on the PM timer program."""
    from bpfio import assemble
    prog = assemble((ROOT / "asm" / "pmtimer.asm").read_text(), filename="pmtimer.asm",
                    include_path=[str(ROOT / "asm")])
    fast = compile_program(prog, profile="pio").pio
    slow = pio_runner(prog).pio
    mem = [0] * 16
    n = 2000 if quick else 20000
    out = {}
    for name, fn in (("pio interp", slow), ("pio compiled", fast)):
        best = float("inf")
        for _ in range(3):
            start = _clock()
            for i in range(n):
                fn(0x608, 4, 0, 0, 8, 0, i * 3, i * 1000, mem)
            best = min(best, (_clock() - start) / n)
        out[name] = best
    return [_row("pio interp", out["pio interp"], group="pio"),
            _row("pio compiled", out["pio compiled"], baseline="pio interp",
                 ratio=out["pio compiled"] / out["pio interp"], group="pio")]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
