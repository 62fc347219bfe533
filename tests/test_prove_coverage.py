"""What the socket proofs quantify over: every length a kernel delivers, every header offset.

Two holes of issue 17: lengths stopped at 65,535 (so ``ld len; jgt #0xffff`` was "equal" to
its small branch), and ``context="free"`` kept the AF_UNIX header offsets (so
``ldb [SKF_NET_OFF]`` was "equal" to ``ldb [0]``).  Each reproduction must now come out
"different" with a counterexample the interpreter, the compiled path, ``bpfio run`` and the
live kernel (AF_UNIX datagrams past 64 KiB; a UDP socket on loopback) all confirm.
"""

from __future__ import annotations

import random
import shlex
import socket

import pytest
import z3

from bpfio.exec import kernel
from bpfio.exec.compiler import compile as compile_program
from bpfio.exec.gen import random_packet, random_program
from bpfio.exec.interp import SocketContext, run
from bpfio.exec.kernel_run import UDP_VARYING, SocketOracle, UdpOracle
from bpfio.exec.skb import hex_text, parse_hex, skb_load
from bpfio.prove import equivalent
from bpfio.prove.encode import encode
from bpfio.prove.equiv import observation, run_observed
from bpfio.prove.inputs import CONTEXT_FIELDS, HEAD_MAX, LEN_MAX, SocketInputs
from bpfio.text.assembler import assemble

SOCKET_SKIP = kernel.available("socket")
needs_kernel = pytest.mark.skipif(SOCKET_SKIP is not None, reason=SOCKET_SKIP or "")

LEN_BIG = assemble("ld len\njgt #0xffff, big, small\nbig: ret #1\nsmall: ret #2\n")
RET_2 = assemble("ret #2\n")
FAR = assemble("ldb [70000]\nret a\n")
RET_0 = assemble("ret #0\n")
NLA_KS = {0xfffff000 + 12, 0xfffff000 + 16}
NET_45 = assemble("ldb [0xfff00000]\njeq #0x45, ok, no\nok: ret #-1\nno: ret #0\n")
DATA_45 = assemble("ldb [0]\njeq #0x45, ok, no\nok: ret #-1\nno: ret #0\n")


def _confirmed(r, a, b):
    """The counterexample of ``r`` replays: interpreter and compiled path, both programs."""
    assert r.status == "different", r
    ctx = SocketContext(**r.context)
    got = [run(p, r.counterexample, context=ctx) for p in (a, b)]
    assert got == [int(v) for v in r.results] and got[0] != got[1]
    compiled = [compile_program(p).outcome(r.counterexample, context=ctx)[0] or 0 for p in (a, b)]
    assert compiled == got
    return got


@pytest.mark.parametrize("context", ["default", "free"])
@pytest.mark.parametrize("a, b, shortest", [(LEN_BIG, RET_2, 65536), (FAR, RET_0, 70001)])
def test_lengths_past_64k_are_quantified(a, b, shortest, context):
    r = equivalent(a, b, context=context)
    _confirmed(r, a, b)
    assert shortest <= len(r.counterexample) <= 1 << 17    # the preferred ladder keeps it short
    assert "*" in r.cex_text and len(r.cex_text) < 200     # runs of equal bytes are compressed


def test_max_len_still_narrows_the_question():
    assert equivalent(LEN_BIG, RET_2, max_len=0xffff).status == "equivalent"
    assert equivalent(FAR, RET_0, max_len=70000).status == "equivalent"


def test_header_offsets_are_free_under_the_free_context():
    # The default socket is AF_UNIX: its network header is the data, so the two agree there.
    assert equivalent(NET_45, DATA_45).status == "equivalent"
    r = equivalent(NET_45, DATA_45, context="free")
    _confirmed(r, NET_45, DATA_45)
    assert r.context.get("net_off", 0) != 0


def test_link_layer_header_present_or_not_under_the_free_context():
    ll = assemble("ldb [0xffe00000]\nret #1\n")   # faults without a link-layer header
    assert equivalent(ll, RET_0).status == "equivalent"
    r = equivalent(ll, RET_0, context="free")
    _confirmed(r, ll, RET_0)
    assert r.context["ll_off"] is not None
    # Only the header offsets' windows resolve: any other negative offset faults on every socket.
    gap = assemble("ldb [0xffd00000]\nret #1\n")
    assert equivalent(gap, RET_0, context="free").status == "equivalent"


def test_counterexamples_run_through_the_cli(runner, cli, tmp_path):
    names = {}
    for name, prog in (("len", LEN_BIG), ("two", RET_2), ("net", NET_45), ("data", DATA_45)):
        path = tmp_path / f"{name}.bpf"
        path.write_text(f"{len(prog)}\n" + "".join(f"{c} {jt} {jf} {k}\n" for c, jt, jf, k in prog))
        names[name] = str(path)
    for pair, extra in ((("len", "two"), []), (("net", "data"), ["--context", "free"])):
        r = runner.invoke(cli, ["equiv", *extra, names[pair[0]], names[pair[1]]])
        assert r.exit_code == 1, r.output
        seen = []
        for line in r.stdout.splitlines():
            if line.strip().startswith("bpfio run "):
                cmd, _, want = line.strip().partition("  ->  ")
                out = runner.invoke(cli, shlex.split(cmd)[1:])
                assert out.exit_code == 0 and out.stdout.strip() == want.strip(), (cmd, out.output)
                seen.append(want)
        assert len(set(seen)) == 2


def test_hex_runs_round_trip():
    rng = random.Random(1701)
    for _ in range(200):
        data = b"".join(bytes([rng.choice((0, 1, 0xff))]) * rng.choice((1, 2, 7, 8, 9, 300))
                        for _ in range(rng.randrange(6)))
        text = hex_text(data)
        assert parse_hex("" if text == "''" else text) == data
    assert parse_hex("0x45:00*3 01") == b"\x45\x00\x00\x00\x01"
    for bad in ("00*", "0*3", "00*x", "00*9999999999", "zz", "00*67108865"):
        with pytest.raises(ValueError):
            parse_hex(bad)


def test_skb_load_reads_the_head_before_the_data():
    head, pkt = bytes(range(0x10, 0x20)), b"\xaa\xbb"
    assert skb_load(pkt, -0x100000, 4, -4, None, head) == 0x1c1d1e1f
    assert skb_load(pkt, -0x100000 + 2, 4, -4, None, head) == 0x1e1faabb
    assert skb_load(pkt, -0x100000 + 3, 4, -4, None, head) is None     # past the end
    assert skb_load(pkt, -0x200000, 1, -4, -16, head) == 0x10
    assert skb_load(pkt, -0x200000, 1, -4, -17, head) is None         # before the head
    assert skb_load(pkt, -0x200000, 1, -4, None, head) is None        # no link-layer header
    assert skb_load(b"", -0x100000, 2, -2, None, b"\x45\x00") == 0x4500
    with pytest.raises(TypeError, match="head must be bytes"):
        SocketContext(head=0x45)


def _random_context(rng) -> dict:
    """Random ancillary fields and header offsets, with the head they need."""
    ctx = {name: rng.randrange(mask + 1) if rng.random() < 0.7 else rng.choice((0, mask))
           for name, (_, mask) in CONTEXT_FIELDS.items()}
    if rng.random() < 0.5:
        ctx["ifindex"] = ctx["hatype"] = None
    ctx["net_off"] = rng.choice((0, 0, -20, -40, 14, rng.randrange(-64, 65)))
    ctx["ll_off"] = rng.choice((None, None, -34, 0, rng.randrange(-64, 65)))
    low = min(0, ctx["net_off"], ctx["ll_off"] or 0)
    ctx["head"] = bytes(rng.getrandbits(8) for _ in range(-low))
    return ctx


def _substitution(inputs, data, ctx):
    val = lambda v: z3.BitVecVal(v & 0xffffffff, 32)   # noqa: E731
    arr = z3.K(z3.BitVecSort(32), z3.BitVecVal(0, 8))
    for i, byte in enumerate(ctx["head"]):
        arr = z3.Store(arr, val(i - len(ctx["head"])), z3.BitVecVal(byte, 8))
    for i, byte in enumerate(data):
        arr = z3.Store(arr, val(i), z3.BitVecVal(byte, 8))
    pairs = [(inputs.pkt, arr), (inputs.length, val(len(data))),
             (inputs.net_off, val(ctx["net_off"])), (inputs.ll_off, val(ctx["ll_off"] or 0)),
             (inputs.ll_set, z3.BoolVal(ctx["ll_off"] is not None)),
             (inputs.device, z3.BoolVal(ctx["ifindex"] is not None))]
    return pairs + [(var, val(ctx[name] or 0)) for name, var in inputs.ctx.items()]


def test_free_encoding_evaluates_to_the_interpreters_result():
    # The free context's loads (header offsets, head bytes, a device or none) against the
    # interpreter, on random programs that read the network and link-layer windows.
    rng = random.Random(1702)
    checked = 0
    for _ in range(80):
        prog = random_program(rng)
        if any(insn.k in NLA_KS and insn.code & 7 == 0 for insn in prog):
            continue     # nla/nlan are an uninterpreted function in the prover
        inputs = SocketInputs(context="free")
        term = observation("socket", inputs, encode(prog, inputs))[0]
        for _ in range(6):
            data, ctx = random_packet(rng), _random_context(rng)
            got = term if isinstance(term, int) else \
                z3.simplify(z3.substitute(term, *_substitution(inputs, data, ctx))).as_long()
            assert got == run(prog, data, context=SocketContext(**ctx)), (list(prog), data, ctx)
            checked += 1
    assert checked >= 300


def test_free_proofs_hold_under_random_header_offsets():
    # "equivalent" under the free context: the programs agree on random sockets of every shape.
    rng = random.Random(1703)
    proved = 0
    for _ in range(30):
        a = random_program(rng, length=rng.randrange(4, 24))
        b = random_program(rng, length=rng.randrange(4, 24)) if rng.random() < 0.2 else a
        if equivalent(a, b, context="free").status != "equivalent":
            continue
        proved += 1
        for _ in range(300):
            data, ctx = random_packet(rng), SocketContext(**_random_context(rng))
            assert run(a, data, context=ctx) == run(b, data, context=ctx)
    assert proved >= 20


def test_bounds_are_documented_constants():
    assert LEN_MAX == 0x7fffffff and HEAD_MAX == 0x100000
    with pytest.raises(Exception, match="max_len"):
        SocketInputs(max_len=1 << 31)


# --- the live kernel --------------------------------------------------------------

@needs_kernel
def test_kernel_tells_the_length_pairs_apart():
    with SocketOracle() as oracle:
        for a, b, sizes in ((LEN_BIG, RET_2, (65535, 65536)), (FAR, RET_0, (70000, 70001))):
            r = equivalent(a, b, context="free")
            packets = [bytes(n - 1) + b"\x07" for n in sizes] + [r.counterexample]
            for prog in (a, b):
                want = [run(prog, p) for p in packets]
                assert [v or 0 for v in oracle.run(prog, packets)] == want
            assert oracle.run(a, packets[1:]) != oracle.run(b, packets[1:])


@needs_kernel
def test_filter_sees_the_whole_length_of_a_long_datagram():
    # An AF_UNIX datagram can be far longer than 64 KiB (4,263,616 bytes on Linux 6.18 with
    # the buffers raised); ld len reads all of it: no packet-length cap below LEN_MAX.
    size = 300_000
    rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with rx, tx:
        for sock in (rx, tx):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        SocketOracle._attach(rx, assemble(f"ld len\njeq #{size}, ok, no\nok: ret #-1\nno: ret #0\n"))
        tx.send(bytes(size))
        assert len(rx.recv(size + 1, socket.MSG_DONTWAIT)) == size
    assert size <= LEN_MAX


def _udp_delivers(oracle, prog, payload):
    data, ctx = oracle.view(payload)
    return bool(run(prog, data, context=SocketContext(**ctx))), oracle.delivers(prog, payload)


@needs_kernel
def test_kernel_udp_socket_tells_the_header_pair_apart():
    r = equivalent(NET_45, DATA_45, context="free")
    assert r.status == "different"
    with UdpOracle() as oracle:
        for payload in (b"hello", bytes(range(0x40, 0x60)), b"\x45" * 3):
            model, real = zip(*[_udp_delivers(oracle, p, payload) for p in (NET_45, DATA_45)])
            assert model == real == (True, False), payload


@needs_kernel
def test_udp_view_matches_the_kernel_byte_by_byte():
    # Every header and payload byte the interpreter's UDP context holds is the kernel's.
    with UdpOracle() as oracle:
        payload = b"byte by byte"
        data, ctx = oracle.view(payload)
        whole = ctx["head"] + data
        for i, byte in enumerate(whole):
            if i in UDP_VARYING:
                continue
            prog = assemble(f"ldb [{0xffe00000 + i:#x}]\njeq #{byte}, ok, no\nok: ret #-1\nno: ret #0\n")
            assert _udp_delivers(oracle, prog, payload) == (True, True), i


@needs_kernel
def test_udp_view_has_the_kernels_ancillary_values():
    with UdpOracle() as oracle:
        payload = b"ancillary"
        _, ctx = oracle.view(payload)
        fields = SocketContext(**ctx)
        for name, field in (("proto", "protocol"), ("type", "pkt_type"), ("ifidx", "ifindex"),
                            ("hatype", "hatype"), ("mark", "mark"), ("queue", "queue"),
                            ("vlan_tci", "vlan_tci"), ("vlan_avail", "vlan_present"),
                            ("vlan_tpid", "vlan_tpid"), ("poff", "poff")):
            want = getattr(fields, field)
            prog = assemble(f"ld {name}\njeq #{want}, ok, no\nok: ret #-1\nno: ret #0\n")
            assert _udp_delivers(oracle, prog, payload) == (True, True), name


@needs_kernel
def test_udp_load_bounds_match_the_kernel():
    # In bounds or faulting, at each edge: data, network and link-layer windows, [x + k].
    with UdpOracle() as oracle:
        payload = bytes(5)
        n = 8 + len(payload)
        offsets = [0, n - 4, n - 2, n - 1, n, 0xfff00000, 0xfff00000 + 20 + n - 4,
                   0xfff00000 + 20 + n - 1, 0xfff00000 + 20 + n, 0xffe00000,
                   0xffe00000 + 34 + n - 1, 0xffe00000 + 34 + n, 0xffd00000, 0xffdfffff]
        for off in offsets:
            for size in ("b", "h", ""):
                for text in (f"ld{size} [{off:#x}]\nret #-1\n",
                             f"ldx #{off:#x}\nld{size} [x + 0]\nret #-1\n"):
                    prog = assemble(text)
                    model, real = _udp_delivers(oracle, prog, payload)
                    assert model == real, text


def test_a_difference_only_past_the_replay_limit_is_unknown():
    # Beyond 64 MiB the interpreter cannot build the packet: never "different" without one.
    from bpfio.prove import prove_property, verdict_classes
    huge = assemble("ld len\njgt #0x4000000, big, small\nbig: ret #1\nsmall: ret #2\n")
    r = equivalent(huge, RET_2)
    assert r.status == "unknown" and "longer than the 67108864" in r.reason
    p = prove_property(huge, "ret == 2")
    assert p.status == "unknown" and "longer than" in p.reason
    classes, complete = verdict_classes(huge)
    assert complete and dict(classes)[1].startswith("(") and dict(classes)[2] == "--packet ''"


@needs_kernel
def test_random_programs_on_a_udp_socket_match_the_interpreter():
    # Random verified programs (their loads reach into the network and link-layer windows)
    # delivered or dropped by the kernel as the interpreter's UDP context predicts.  A case
    # whose verdict depends on the bytes that vary per datagram (IP id and checksums) is
    # recognised by running it with those bytes as 0x00 and as 0xff, and left out.
    from bpfio.check.verifier import verify
    from bpfio.errors import BpfError
    rng = random.Random(1704)
    checked = 0
    with UdpOracle() as oracle:
        while checked < 300:
            prog = random_program(rng, length=rng.randrange(3, 16))
            try:
                verify(prog, lints=False)
            except BpfError:
                continue
            payload = random_packet(rng)[:200]
            data, ctx = oracle.view(payload)
            verdicts = set()
            for fill in (0, 0xff):
                whole = bytearray(ctx["head"] + data)
                for i in UDP_VARYING:
                    whole[i] = fill
                head, pkt = bytes(whole[:34]), bytes(whole[34:])
                verdicts.add(bool(run(prog, pkt, context=SocketContext(**{**ctx, "head": head}))))
            if len(verdicts) != 1:
                continue
            assert oracle.delivers(prog, payload) == verdicts.pop(), (list(prog), payload)
            checked += 1
