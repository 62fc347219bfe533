"""The JIT's batch paths: ``run_many(..., out=)`` (verdicts into a caller's u32 buffer) and
``Grid`` / ``run_grid`` (many socket programs over one Batch in one native call), each
against the interpreter."""

from __future__ import annotations

import random
from array import array

import pytest

from bpfio import assemble
from bpfio.abi.pio import PioEvent
from bpfio.abi.seccomp import SeccompData
from bpfio.exec.gen import random_packet, random_program
from bpfio.exec.interp import run
from bpfio.exec.jit import mem as jmem
from bpfio.exec.jit.program import Batch, Grid, jit, run_grid

pytestmark = pytest.mark.skipif(jmem.unavailable_reason() is not None,
                                reason=f"JIT unavailable: {jmem.unavailable_reason()}")

ARP = "ldh [12]\njne #0x806, drop\nld len\nret a\ndrop: ret #0"


def _packets(n, seed=1):
    rng = random.Random(seed)
    return [random_packet(rng) for _ in range(n)]


def _programs(n, seed=2):
    rng = random.Random(seed)
    return [random_program(rng, length=rng.randrange(2, 60)) for _ in range(n)]


def test_run_many_out_is_filled_and_returned_as_is():
    j = jit(assemble(ARP))
    pkts = [bytes(12) + b"\x08\x06" + bytes(i) for i in range(5)] + [b"", bytes(20)]
    want = [run(j.program, p) for p in pkts]
    for inputs in (pkts, Batch(pkts)):
        out = array("I", [7] * (len(pkts) + 2))
        assert j.run_many(inputs, out=out) is out
        assert list(out) == want + [7, 7]       # only the first n items are written
        view = memoryview(bytearray(4 * len(pkts))).cast("I")
        assert j.run_many(inputs, out=view) is view and view.tolist() == want
    assert j.run_many(Batch(pkts)) == want       # without out: a list of ints


def test_run_many_out_for_seccomp_pio_and_a_context():
    sec = jit(assemble("ld [0]\nret a"), profile="seccomp")
    out = array("I", bytes(8))
    assert list(sec.run_many([SeccompData(39), SeccompData(7)], out=out)) == [39, 7]
    pio = jit(assemble("ld M[0]\nadd #1\nst M[0]\nret a"), profile="pio")
    mem = [0] * 16
    out = array("I", bytes(12))
    assert list(pio.run_many([PioEvent(1, 1, 0)] * 3, out=out, mem=mem)) == [1, 2, 3]
    assert mem[0] == 3
    ctx = jit(assemble("ld mark\nret a"))
    out = array("I", bytes(8))
    assert list(ctx.run_many(Batch([b"x", b"yy"]), out=out, mark=9)) == [9, 9]


@pytest.mark.parametrize("bad, message", [
    (array("I", bytes(8)), "out holds 2 verdicts, the batch has 3"),
    (array("H", bytes(12)), "u32"),
    (bytes(12), "writable"),
    (memoryview(bytearray(12)), "u32"),
    (memoryview(bytearray(8)).cast("I"), "out holds 2 verdicts"),
])
def test_run_many_refuses_a_bad_out(bad, message):
    j = jit(assemble(ARP))
    with pytest.raises(ValueError, match=message):
        j.run_many(Batch([b"a", b"b", b"c"]), out=bad)
    with pytest.raises(ValueError, match=message):
        j.run_many([b"a", b"b", b"c"], out=bad)


def test_a_grid_equals_the_interpreter_on_every_pair():
    progs, pkts = _programs(30), _packets(40)
    jitted = [jit(p) for p in progs]
    want = [[run(p, pkt) for pkt in pkts] for p in progs]
    grid = Grid(jitted)
    batch = Batch(pkts)
    assert grid.run(batch) == want == run_grid(jitted, pkts)
    out = array("I", bytes(4 * len(progs) * len(pkts)))
    assert grid.run(batch, out=out) is out
    assert [list(out[i * 40:(i + 1) * 40]) for i in range(30)] == want
    small = Batch(pkts[:3])         # another batch size: the rows move
    assert grid.run(small) == [row[:3] for row in want]
    assert grid.run(batch) == want


def test_a_grid_mixes_native_rows_with_programs_that_draw_rand():
    rand = jit(assemble("ld rand\nret a"))
    arp = jit(assemble(ARP))
    pkts = [bytes(12) + b"\x08\x06", b"", bytes(30)]
    got = Grid([arp, rand, arp]).run(pkts)
    assert got[0] == got[2] == [run(arp.program, p) for p in pkts]
    assert len(got[1]) == 3


def test_a_grid_of_nothing_and_over_nothing():
    arp = jit(assemble(ARP))
    assert Grid([]).run([b"x"]) == []
    assert Grid([arp, arp]).run([]) == [[], []]


def test_a_grid_refuses_other_profiles():
    sec = jit(assemble("ret #0"), profile="seccomp")
    with pytest.raises(ValueError, match="program 1 is not one"):
        Grid([jit(assemble(ARP)), sec])


def test_a_batch_takes_any_bytes_like_item_and_any_iterable():
    j = jit(assemble("ld len\nret a"))
    wide = memoryview(array("I", [1, 2]))       # len() is 2 items, the packet is 8 bytes
    items = [b"ab", bytearray(b"xyz"), wide, b"", memoryview(b"12345")]
    assert j.run_many(items) == [2, 3, 8, 0, 5] == j.run_many(Batch(iter(items)))
    with pytest.raises(TypeError):
        Batch(["not bytes"])


def test_a_context_with_head_bytes_gives_the_interpreters_verdicts():
    # ld [SKF_NET_OFF + n] with the network header before the data reads `head`, which the
    # native code does not model: the JIT answers through the compiled path instead.
    prog = assemble("ldb [0xfff00000]\njeq #0x45, ok, no\nok: ld [0xfff00001]\nret a\n"
                    "no: ret #0\n")
    ctx = dict(net_off=-2, head=b"\x45\x01")
    pkts = [b"", b"\x02\x03", b"\x02\x03\x04\x05"]
    want = [run(prog, p, **ctx) for p in pkts]
    assert want == [0, 0, 0x01020304]      # 45 01 | 02 03 04 05: the word spans both
    j = jit(prog)
    assert [j(p, **ctx) for p in pkts] == want
    assert j.run_many(pkts, **ctx) == want == j.run_many(Batch(pkts), **ctx)
    out = array("I", bytes(12))
    assert j.run_many(Batch(pkts), out=out, **ctx) is out and out.tolist() == want
    assert j.run_many(pkts, net_off=-2, head=b"\x46\x01") == [0, 0, 0]
