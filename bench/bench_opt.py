"""``bpfio opt`` against libpcap's optimizer on real tcpdump filters (issue 13 item 3).

Corpus: every expression in ``bench/data/tcpdump_exprs.txt`` compiled with
``tcpdump -ddd -y EN10MB EXPR`` (libpcap's optimizer on) and accepted by the
socket verifier (``protochain`` loops backwards and is refused).  Each
program goes through :func:`bpfio.opt.optimize` (passes, a 0.2 s window
search, then the proof).  Rows:

* ``corpus expressions``; ``shorter than libpcap`` (% of them; goal >= 25%);
  ``longer than libpcap`` and ``not proved`` (goal 0: the proof never failed
  or timed out, and nothing was ever longer);
* ``mean insns libpcap`` / ``mean insns opt``;
* ``executed per packet libpcap`` / ``... opt``: mean instructions the
  interpreter executes, over every (program, packet) pair of a pcap of
  generated frames (:func:`packets`, written with :func:`bpfio.exec.pcap.write_pcap`
  and read back);
* ``opt+proof time``: total seconds for the corpus;
* the same with ``--prefer speed`` (no rewrite that adds an executed
  instruction to any path): share shorter, mean insns, executed per packet;
* ``device asm/*.asm``: the shipped device programs (pio profile, mem_words
  and notifiers from ``examples/pc.toml``), instructions before and after.

Quick mode takes the first 15 expressions and skips the device programs.

    python bench/bench_opt.py [--quick]
    python bench/bench_opt.py --per-expression     # one Markdown row per expression
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bpfio.errors import VerifierError  # noqa: E402
from bpfio.text.formats import load_program, parse_program  # noqa: E402
from bpfio.exec.interp import outcome  # noqa: E402
from bpfio.opt import optimize  # noqa: E402
from bpfio.exec.pcap import read_packets, write_pcap  # noqa: E402
from bpfio.check.verifier import verify  # noqa: E402

EXPRESSIONS = ROOT / "bench" / "data" / "tcpdump_exprs.txt"
QUICK = 15
SEARCH = 0.2


def expressions() -> list[str]:
    """The corpus expressions, in file order."""
    lines = EXPRESSIONS.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def compile_expr(expr: str):
    """``tcpdump -ddd -y EN10MB expr`` as a Program, or None when tcpdump is missing/refuses."""
    exe = shutil.which("tcpdump")
    if exe is None:
        return None
    proc = subprocess.run([exe, "-ddd", "-y", "EN10MB", expr], capture_output=True, text=True,
                          timeout=30)
    if proc.returncode != 0:
        return None
    return parse_program(proc.stdout, filename=f"tcpdump {expr!r}")


def corpus(limit: int | None = None) -> list[tuple[str, object]]:
    """``[(expression, program)]`` for the verifiable compiled expressions."""
    out = []
    for expr in expressions():
        prog = compile_expr(expr)
        if prog is None:
            continue
        try:
            verify(prog, lints=False)
        except VerifierError:
            continue          # protochain: backward jumps
        out.append((expr, prog))
        if limit is not None and len(out) >= limit:
            break
    return out


def _eth(ethertype: int, payload: bytes, vlan=None) -> bytes:
    head = bytes.fromhex("00112233445566778899aabb")
    if vlan is not None:
        head += struct.pack(">HH", 0x8100, vlan)
    return head + struct.pack(">H", ethertype) + payload


def _ipv4(proto, l4, src, dst, frag=0, ihl=5) -> bytes:
    opts = bytes(4 * (ihl - 5))
    return struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(opts) + len(l4), 1, frag, 64,
                       proto, 0, src, dst) + opts + l4


def _ipv6(nxt, l4, src, dst) -> bytes:
    return struct.pack(">IHBB16s16s", 0x60000000, len(l4), nxt, 64, src, dst) + l4


def packets(seed: int = 13, count: int = 400) -> list[bytes]:
    """Generated frames like a LAN capture: TCP/UDP/ICMP over IPv4 and IPv6, ARP, VLAN, junk."""
    rng = random.Random(seed)
    addrs4 = [bytes([10, 0, 0, 1]), bytes([192, 168, 1, 1]), bytes([1, 2, 3, 4]),
              bytes([172, 16, 5, 4]), bytes([8, 8, 8, 8]), bytes([224, 0, 0, 251])]
    addrs6 = [bytes(15) + b"\x01", bytes.fromhex("fe80") + bytes(13) + b"\x05",
              bytes.fromhex("ff02") + bytes(13) + b"\xfb"]
    ports = (80, 443, 22, 53, 123, 8080, 5353, 67, 68, 1024, 4789, 6001, 33434)
    out = []
    for _ in range(count):
        sport = rng.choice(ports + (rng.randrange(1, 65536),))
        dport = rng.choice(ports + (rng.randrange(1, 65536),))
        flags = rng.choice((0x02, 0x12, 0x10, 0x18, 0x11, 0x04))
        tcp = struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 512, 0, 0)
        tcp += rng.choice((b"", b"GET / HTTP/1.1\r\n", bytes(rng.randrange(0, 100))))
        udp = struct.pack(">HHHH", sport, dport, 8 + 12, 0)
        udp += bytes(rng.randrange(0, 3) for _ in range(12))
        icmp = bytes([rng.choice((0, 3, 8, 11)), rng.choice((0, 4))]) + bytes(30)
        l4, proto = rng.choice(((tcp, 6), (udp, 17), (icmp, 1), (bytes(8), 132)))
        kind = rng.random()
        src, dst = rng.choice(addrs4), rng.choice(addrs4)
        if kind < 0.5:
            frag = 0x2000 | 5 if rng.random() < 0.05 else 0
            out.append(_eth(0x0800, _ipv4(proto, l4, src, dst, frag, rng.choice((5, 5, 6)))))
        elif kind < 0.75:
            nxt = {1: 58}.get(proto, proto)
            out.append(_eth(0x86dd, _ipv6(nxt, l4, rng.choice(addrs6), rng.choice(addrs6))))
        elif kind < 0.85:
            out.append(_eth(0x0800, _ipv4(proto, l4, src, dst), vlan=rng.choice((10, 100, 200))))
        elif kind < 0.93:
            out.append(_eth(0x0806, bytes.fromhex("0001080006040001") + bytes(8) + src
                            + bytes(6) + dst))
        else:
            frame = _eth(0x0800, _ipv4(proto, l4, src, dst))
            out.append(frame[:rng.randrange(0, 40)])       # truncated capture
    return out


def capture() -> list[bytes]:
    """:func:`packets` through a pcap file image (what ``bpfio run --pcap`` reads)."""
    return [p.data for p in read_packets(write_pcap(packets()))]


def executed(prog, pkts) -> float:
    """Mean instructions executed per packet by the reference interpreter."""
    return sum(outcome(prog, p)[2] for p in pkts) / len(pkts)


def measure(items, pkts, per_expr=None, prefer: str = "size") -> dict:
    """Optimize every program; return the totals the rows are made of.

    ``per_expr`` (a list) receives ``(expr, before, after, executed before,
    executed after, status)`` for each expression.
    """
    stats = {"n": 0, "shorter": 0, "longer": 0, "unproved": 0, "before": 0, "after": 0,
             "exec_before": 0.0, "exec_after": 0.0, "seconds": 0.0}
    for expr, prog in items:
        start = time.perf_counter()
        result = optimize(prog, search_budget=SEARCH, prefer=prefer)
        stats["seconds"] += time.perf_counter() - start
        out = result.program
        stats["n"] += 1
        stats["shorter"] += len(out) < len(prog)
        stats["longer"] += len(out) > len(prog)
        stats["unproved"] += result.status in ("unknown", "different")
        stats["before"] += len(prog)
        stats["after"] += len(out)
        eb, ea = executed(prog, pkts), executed(out, pkts)
        stats["exec_before"] += eb
        stats["exec_after"] += ea
        if per_expr is not None:
            per_expr.append((expr, len(prog), len(out), eb, ea, result.status))
    return stats


def expression_table() -> str:
    """A Markdown table: every corpus expression, instructions and executed, before/after."""
    lines = ["| expression | insns libpcap | insns opt | executed libpcap | executed opt |",
             "|---|---|---|---|---|"]
    per: list = []
    measure(corpus(), capture(), per)
    for expr, b, a, eb, ea, _ in per:
        lines.append(f"| `{expr}` | {b} | {a} | {eb:.2f} | {ea:.2f} |")
    return "\n".join(lines)


def device_rows() -> list[dict]:
    """One row per shipped device program: instructions after (vs before)."""
    config = ROOT / "examples" / "pc.toml"
    bindings = tomllib.loads(config.read_text())["bindings"]
    rows, seen = [], set()
    for spec in bindings.values():
        path = (config.parent / spec["program"]).resolve()
        if path in seen:
            continue
        seen.add(path)
        prog = load_program(str(path), include_path=(config.parent, ROOT / "asm"),
                            defines=spec.get("defines", {}))
        result = optimize(prog, profile="pio", mem_words=spec.get("mem_words", 4),
                          notifiers=spec.get("notifiers", 0), timeout=60, search_budget=SEARCH)
        name = f"device {path.name}"
        rows.append(_row(f"{name} before", len(prog), "insns"))
        rows.append(_row(f"{name} after", len(result.program), "insns", f"{name} before",
                         len(result.program) / len(prog), f"not longer; {result.status}"))
    return rows


def _row(name, value, unit, baseline=None, ratio=None, goal=None) -> dict:
    return {"group": "opt", "name": name, "value": value, "unit": unit, "baseline": baseline,
            "ratio": ratio, "goal": goal}


def run(quick: bool) -> list[dict]:
    """The benchmark rows (see the module docstring)."""
    items = corpus(QUICK if quick else None)
    if not items:
        return [_row("corpus expressions", 0, "exprs", goal="tcpdump not installed")]
    pkts = capture()
    s = measure(items, pkts)
    f = measure(items, pkts, prefer="speed")
    n = s["n"]
    rows = [
        _row("corpus expressions", n, "exprs"),
        _row("shorter than libpcap", 100 * s["shorter"] / n, "%", goal=">= 25%"),
        _row("longer than libpcap", s["longer"], "exprs", goal="0"),
        _row("not proved", s["unproved"], "exprs", goal="0"),
        _row("mean insns libpcap", s["before"] / n, "insns"),
        _row("mean insns opt", s["after"] / n, "insns", "mean insns libpcap",
             s["after"] / s["before"]),
        _row("executed per packet libpcap", s["exec_before"] / n, "insns"),
        _row("executed per packet opt", s["exec_after"] / n, "insns",
             "executed per packet libpcap", s["exec_after"] / s["exec_before"]),
        _row("opt+proof time", s["seconds"], "s"),
        _row("shorter, --prefer speed", 100 * f["shorter"] / n, "%"),
        _row("mean insns opt --prefer speed", f["after"] / n, "insns", "mean insns libpcap",
             f["after"] / s["before"]),
        _row("executed per packet opt --prefer speed", f["exec_after"] / n, "insns",
             "executed per packet libpcap", f["exec_after"] / s["exec_before"]),
        _row("pcap packets", len(pkts), "packets"),
    ]
    if not quick:
        rows += device_rows()
    return rows


if __name__ == "__main__":
    if "--per-expression" in sys.argv:
        print(expression_table())
    else:
        from bench.__main__ import table
        print(table(run("--quick" in sys.argv)))
