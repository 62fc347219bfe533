"""libpcap's filter test corpus (testprogs/TESTrun), run through bpfio against libpcap itself (issue 12 items 3-4).

Data: ``tests/peers/libpcap_filters.json`` (``tests/peers/extract_libpcap.py``):
2,350 filter expressions with their DLT from TESTrun's accept and apply
blocks, plus the apply blocks' savefile packets and expected results.

Per filter, at test time: the installed ``tcpdump -ddd -y DLT [-s SNAPLEN]``
compiles the expression twice, optimized and with ``-O`` (unoptimized), as
TESTrun checks both (one it rejects is a skip with the reason); for each
program ``bpfio check`` (the CLI, in-process) must accept it exactly when the
kernel's SO_ATTACH_FILTER does; then bpfio's interpreter and compiled path must
return what libpcap's own ``bpf_filter`` (ctypes) returns on every packet:
the savefile packets of that link type plus generated ones (random, shaped
Ethernet/IPv4/IPv6/TCP/UDP, and copies patched with the constants the
program compares loads against, so that deep branches are reached).  Where
libpcap differs from bpfio, the kernel decides (:data:`EXPLAIN`).  For apply
blocks bpfio must also give TESTrun's expected result per packet.

The default run takes a fixed sample of :data:`SAMPLE` filters; the full set
(and the check of the docs/peers.md row) is ``@pytest.mark.slow``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import random
import re
import shutil
import struct
import subprocess

import pytest

from bench.bench_interp import libpcap_filters
from bpfio.exec.compiler import compile as compile_program
from bpfio.text.formats import parse_program
from bpfio.isa import SKF_AD_OFF
from bpfio.exec.interp import Interpreter
from bpfio.exec.trace import trace
from bpfio.exec.kernel import available, socket_attach_errno
from bpfio.exec.kernel_run import SocketOracle
from bpfio.exec.gen import random_packet
from peers_common import Tally, doc_row, load, native, render_row

DATA = load("libpcap_filters.json")
FILTERS = DATA["filters"]
SAVEFILES = DATA["savefiles"]
SUITE = "libpcap filters"
SOURCE = f"the-tcpdump-group/libpcap `testprogs/TESTrun` @{DATA['header']['commit'][:8]}"
SAMPLE = 150          # filters in the default run
PACKETS = 16          # generated packets per filter (default run); the slow run uses 4x
TCPDUMP = shutil.which("tcpdump")
KERNEL = available("socket")

_name = ctypes.util.find_library("pcap")
LIBPCAP = ctypes.CDLL(_name) if _name else None
if LIBPCAP is not None:
    LIBPCAP.pcap_datalink_val_to_name.restype = ctypes.c_char_p
    LIBPCAP.pcap_datalink_val_to_name.argtypes = [ctypes.c_int]

pytestmark = [
    pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed"),
    pytest.mark.skipif(LIBPCAP is None, reason="libpcap (libpcap.so) is not installed"),
    pytest.mark.skipif(KERNEL is not None, reason=f"kernel oracle unavailable: {KERNEL}"),
]

# Skip reasons (docs/peers.md explains each).
SKIP_HOSTS = "tcpdump: TESTrun's test host names not installed"
SKIP_OLD = "tcpdump (libpcap 1.10.3) rejects a HEAD-only feature"
SKIP_KERNEL = "kernel refuses the program, bpfio check too"
SKIP_HEAD = "expected results are for HEAD's program, 1.10.3 compiles another"

# libpcap's bpf_filter semantics the kernel does not share; each is recognised
# in the trace of the packet where the two differ, and confirmed by the kernel.
EXPLAIN = {
    "shift": "libpcap's bpf_filter gives 0 for lsh/rsh by X >= 32; the kernel shifts by X & 31",
    "wrap": "libpcap treats [x + k] past 2^32 as out of bounds; the kernel wraps the offset at 32 bits",
    "ancillary": ("libpcap's bpf_filter has no Linux ancillary loads: `ldh [type]` (SKF_AD_PKTTYPE, "
                  "which tcpdump emits for inbound/outbound) is an out-of-bounds packet load there "
                  "and the filter returns 0; the kernel reads the packet type (PACKET_HOST = 0 on "
                  "an AF_UNIX socket), as bpfio does"),
}


def dlt_name(dlt) -> str:
    """A DLT name for ``tcpdump -y``: TESTrun's name, or libpcap's name for a savefile's link type."""
    if isinstance(dlt, int):
        name = LIBPCAP.pcap_datalink_val_to_name(dlt)
        return name.decode() if name else str(dlt)
    return dlt


def snaplen(f: dict) -> int | None:
    return f.get("snaplen") or (SAVEFILES[f["savefile"]]["snaplen"] if f["kind"] == "apply" else None)


def tcpdump_ddd(f: dict, optimize: bool = True) -> tuple[str | None, str]:
    """(tcpdump -ddd text, "") or (None, skip reason); ``optimize=False`` adds ``-O``."""
    argv = [TCPDUMP, "-ddd", "-y", dlt_name(f["dlt"])] + ([] if optimize else ["-O"])
    if snaplen(f):
        argv += ["-s", str(snaplen(f))]
    res = subprocess.run(argv + ["--", f["expr"]], capture_output=True, text=True, timeout=30)
    if res.returncode == 0:
        return res.stdout, ""
    if re.search(r"unknown (host|network|ether host)", res.stderr):
        return None, SKIP_HOSTS
    return None, SKIP_OLD


def programs(f: dict) -> tuple[list[tuple[str, str]], str]:
    """([(variant, -ddd text)], skip reason): the optimized and the unoptimized (-O) program.

    TESTrun checks both; where it expects the optimizer to reject the
    expression (``opt => undef``) only the unoptimized one exists.
    """
    out = []
    for variant, optimize in (("opt", True), ("unopt", False)):
        if optimize and f.get("optimizer_rejects"):
            continue
        text, why = tcpdump_ddd(f, optimize)
        if text is None:
            return [], why
        out.append((variant, text))
    return out, ""


# -- packets --------------------------------------------------------------------

_PORTS = (20, 21, 22, 23, 25, 53, 67, 68, 80, 123, 161, 443, 500, 4500, 4789, 6081, 8080)
_ADDRS = ("0a000001", "0a000002", "c0a80101", "7f000001", "e0000001", "ffffffff", "01020304")


def _l4(rng, proto: int) -> bytes:
    if proto == 6:
        return struct.pack(">HHIIBBHHH", rng.choice(_PORTS), rng.choice(_PORTS), rng.getrandbits(32), 0,
                           0x50, rng.getrandbits(8), 512, 0, 0) + rng.randbytes(rng.randrange(0, 40))
    if proto == 17:
        body = rng.randbytes(rng.randrange(0, 40))
        return struct.pack(">HHHH", rng.choice(_PORTS), rng.choice(_PORTS), 8 + len(body), 0) + body
    return rng.randbytes(rng.randrange(4, 40))


def _ipv4(rng) -> bytes:
    proto = rng.choice((6, 17, 1, 2, 47, 50, 51, 58, 103, 112, 132, rng.getrandbits(8)))
    l4 = _l4(rng, proto)
    frag = rng.choice((0, 0, 0x4000, 0x2000 | rng.randrange(1, 100), rng.getrandbits(13)))
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), rng.getrandbits(16), frag, 64, proto, 0,
                       bytes.fromhex(rng.choice(_ADDRS)), bytes.fromhex(rng.choice(_ADDRS))) + l4


def _ipv6(rng) -> bytes:
    nxt = rng.choice((6, 17, 58, 0, 43, 44, 51, 60, rng.getrandbits(8)))
    l4 = _l4(rng, nxt)
    return struct.pack(">IHBB", 0x60000000, len(l4), nxt, 64) + rng.randbytes(16) + \
        bytes.fromhex("ff02" + "00" * 13 + "01" if rng.random() < 0.3 else "fe80" + "00" * 14) + l4


def _l3(rng) -> tuple[int, bytes]:
    kind = rng.random()
    if kind < 0.5:
        return 0x0800, _ipv4(rng)
    if kind < 0.8:
        return 0x86dd, _ipv6(rng)
    return rng.choice((0x0806, 0x8035, 0x8100, 0x88a8, 0x8863, 0x8864, 0x8847, 0x6003, 0x809b)), rng.randbytes(40)


def shaped(rng, dlt) -> bytes:
    """A plausible frame for the link type: Ethernet, raw IP, Linux cooked; random bytes otherwise."""
    ethertype, l3 = _l3(rng)
    name = dlt_name(dlt)
    if name == "EN10MB":
        mac = rng.choice(("ffffffffffff", "01005e000001", "333300000001", rng.randbytes(6).hex()))
        return bytes.fromhex(mac) + rng.randbytes(6) + struct.pack(">H", ethertype) + l3
    if name in ("RAW", "IPV4", "IPV6", "LOOP", "NULL"):
        ip = _ipv6(rng) if name == "IPV6" or (name == "RAW" and rng.random() < 0.4) else _ipv4(rng)
        return (struct.pack("<I", 2 if ip[0] >> 4 == 4 else 24) if name in ("LOOP", "NULL") else b"") + ip
    if name == "LINUX_SLL":
        return struct.pack(">HHH", rng.randrange(5), 1, 6) + rng.randbytes(8) + struct.pack(">H", ethertype) + l3
    if name == "LINUX_SLL2":
        return struct.pack(">HHIHBB", ethertype, 0, 1, 1, rng.randrange(5), 6) + rng.randbytes(8) + l3
    return rng.randbytes(rng.randrange(1, 16)) + l3


_ABS = {0x20: 4, 0x28: 2, 0x30: 1}


def constraints(prog) -> list[tuple[int, int, int]]:
    """(offset, size, value) pairs: an absolute load followed by a compare with a constant."""
    out = []
    for i, insn in enumerate(prog[:-1]):
        if insn.code not in _ABS or insn.k >= 0x10000:
            continue
        nxt, value = prog[i + 1], None
        if nxt.code == 0x54 and i + 2 < len(prog):       # and #mask; then the compare
            nxt = prog[i + 2]
        if nxt.code in (0x15, 0x35, 0x45):               # jeq / jge / jset #v
            value = nxt.k
        elif nxt.code == 0x25:                           # jgt #v
            value = nxt.k + 1
        if value is not None:
            out.append((insn.k, _ABS[insn.code], value & ((1 << (8 * _ABS[insn.code])) - 1)))
    return out


def packets_for(f: dict, prog, n: int, rng) -> list[bytes]:
    """Savefile packets of the filter's link type, then ``n`` generated ones."""
    out = []
    for name, sf in SAVEFILES.items():
        if sf["linktype"] == (f["dlt"] if isinstance(f["dlt"], int) else None) or \
                (isinstance(f["dlt"], str) and dlt_name(sf["linktype"]) == f["dlt"]):
            out += [bytes.fromhex(h) for h, _ in sf["packets"]]
    if len(out) > 2 * n:
        out = rng.sample(out, 2 * n)
    cons = constraints(prog)
    for i in range(n):
        r = rng.random()
        if r < 0.2:
            out.append(random_packet(rng, max_len=200))
            continue
        pkt = bytearray(shaped(rng, f["dlt"]))
        if r >= 0.45 and cons:
            for off, size, value in cons:
                if rng.random() < 0.7:
                    if len(pkt) < off + size:
                        pkt += rng.randbytes(off + size - len(pkt) + rng.randrange(0, 20))
                    pkt[off:off + size] = value.to_bytes(size, "big")
        out.append(bytes(pkt))
    return out


# -- one filter -------------------------------------------------------------------

def _why(prog, pkt) -> str | None:
    """Which known libpcap-vs-kernel difference this packet's run hits (None: none known)."""
    _, steps = trace(prog, pkt)
    for s in steps:
        code = s.insn.code
        if code in (0x6c, 0x7c) and s.x >= 32:
            return "shift"
        if code in (0x40, 0x48, 0x50) and s.x + s.insn.k >= 1 << 32:
            return "wrap"
        if code in _ABS and s.insn.k >= SKF_AD_OFF:
            return "ancillary"
    return None


def classify(f: dict, runner, cli, oracle, n: int, seed: int = 0) -> tuple[str, str]:
    """(outcome, detail) for one filter of the corpus (both of its programs)."""
    progs, reason = programs(f)
    if not progs:
        return "skip", reason
    results = [classify_program(f, variant, text, runner, cli, oracle, n, seed) for variant, text in progs]
    for kind in ("disagree", "skip", "explained"):
        hits = [detail for outcome, detail in results if outcome == kind]
        if hits:
            return kind, "; ".join(dict.fromkeys(hits))
    return "agree", ""


def classify_program(f, variant, text, runner, cli, oracle, n, seed) -> tuple[str, str]:
    """(outcome, detail) for one compiled program of a filter."""
    res = runner.invoke(cli, ["check", "--json", "-"], input=text)
    if res.exit_code not in (0, 1):
        return "disagree", f"{variant}: bpfio check exit {res.exit_code}: {res.output}"
    verdict = json.loads(res.stdout)
    ours = 0 if verdict["accepted"] else verdict["error"]["errno"]
    prog = parse_program(text, filename="tcpdump -ddd")
    kernel = socket_attach_errno(prog)
    if ours != kernel:
        return "disagree", f"{variant}: bpfio check errno {ours}, kernel errno {kernel}"
    if ours:
        return "skip", SKIP_KERNEL
    rng = random.Random(f"{seed}:{f['dlt']}:{f['expr']}")
    interp, comp, jitted = Interpreter(prog), compile_program(prog), native(prog)
    fn, arrays = libpcap_filters([prog])
    whys = set()
    pkts = list(packets_for(f, prog, n, rng))
    batch = jitted.run_many(pkts) if jitted is not None else [None] * len(pkts)
    for pkt, nat in zip(pkts, batch):
        mine, fast = interp(pkt), comp(pkt)
        theirs = fn(arrays[0], pkt, len(pkt), len(pkt))
        if mine != fast:
            return "disagree", f"{variant}: interpreter {mine} != compiled {fast} on {pkt.hex()}"
        if nat is not None and nat != mine:
            return "disagree", f"{variant}: interpreter {mine} != jit {nat} on {pkt.hex()}"
        if theirs != mine:
            kernel = oracle.run(prog, [pkt])[0] or 0
            why = _why(prog, pkt)
            if kernel != mine or why is None:
                return "disagree", f"{variant}: libpcap {theirs}, bpfio {mine}, kernel {kernel} on {pkt.hex()}"
            whys.add(why)
    if f["kind"] == "apply":
        outcome = _check_expected(f, prog, interp, fn, arrays[0], oracle)
        if outcome:
            return outcome
    if whys:
        return "explained", "; ".join(EXPLAIN[w] for w in sorted(whys))
    return "agree", ""


def _check_expected(f, prog, interp, fn, arr, oracle):
    """TESTrun's expected result per savefile packet (packets captured whole only).

    A different result is a skip when the installed libpcap's program is not
    HEAD's: then libpcap 1.10.3's own bpf_filter gives bpfio's result, or --
    for a program with an ancillary load, which only the kernel can run --
    the kernel does.
    """
    ancillary = any(i.code in _ABS and i.k >= SKF_AD_OFF for i in prog)
    for (hexdata, wirelen), want in zip(SAVEFILES[f["savefile"]]["packets"], f["results"]):
        pkt = bytes.fromhex(hexdata)
        if wirelen != len(pkt):
            continue          # bpfio, like the kernel, has no separate wire length
        mine = interp(pkt)
        if mine != want:
            if fn(arr, pkt, wirelen, len(pkt)) == mine or \
                    (ancillary and (oracle.run(prog, [pkt])[0] or 0) == mine):
                return "skip", SKIP_HEAD
            return "disagree", f"TESTrun expects {want}, bpfio {mine} on packet {hexdata}"
    return None


def tally(indices, runner, cli, n: int) -> Tally:
    t = Tally(SUITE, SOURCE)
    with SocketOracle() as oracle:
        for i in indices:
            f = FILTERS[i]
            t.add(f"#{i} {f['block']} ({dlt_name(f['dlt'])}): {f['expr']}", *classify(f, runner, cli, oracle, n))
    return t


SAMPLED = sorted(random.Random(12).sample(range(len(FILTERS)), SAMPLE))


@pytest.mark.parametrize("i", SAMPLED, ids=[f"{i}-{FILTERS[i]['expr'][:30]}" for i in SAMPLED])
def test_filter(i, runner, cli):
    with SocketOracle() as oracle:
        outcome, detail = classify(FILTERS[i], runner, cli, oracle, PACKETS)
    assert outcome != "disagree", detail


def test_generated_packets_reach_both_verdicts():
    """The packet generator is useful: on most sampled accepted filters some packet passes and some fails."""
    both = total = 0
    for i in SAMPLED[:60]:
        text, _ = tcpdump_ddd(FILTERS[i], optimize=not FILTERS[i].get("optimizer_rejects"))
        if text is None:
            continue
        prog = parse_program(text)
        if socket_attach_errno(prog):
            continue
        verdicts = {bool(Interpreter(prog)(p)) for p in packets_for(FILTERS[i], prog, PACKETS, random.Random(i))}
        total += 1
        both += verdicts == {True, False}
    assert total and both / total >= 0.5, f"both verdicts on {both} of {total} filters"


def test_docs_case_count():
    """The docs/peers.md row counts every filter of the data file."""
    row = doc_row(SUITE)
    assert row is not None
    assert int(row.strip("|").split("|")[2]) == len(FILTERS)


@pytest.mark.slow
def test_all_filters_and_docs_row(runner, cli):
    """Every filter, 4x the packets; docs/peers.md shows exactly this tally."""
    t = tally(range(len(FILTERS)), runner, cli, 4 * PACKETS)
    assert not t.disagree, t.disagree
    assert doc_row(SUITE) == render_row(t), "docs/peers.md row is stale; expected:\n" + render_row(t)
