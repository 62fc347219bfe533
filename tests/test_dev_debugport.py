"""POST port 0x80 and debugcon 0xE9: model facts, differential, fast-path share."""

from __future__ import annotations

import os

import pytest

from hypothesis import given, settings, strategies as st

from bpfio.devices.base import LocalBinding, device_program, replay
from bpfio.devices.debugport import RING_BYTES, DebugCon, PostPort
from bpfio.pio.machine import FakeClock, Machine

# Every test here runs once per engine: the compiled path and native code (the JIT).
pytestmark = pytest.mark.usefixtures("pio_engine")


def machine(clock, program=True):
    m = Machine(clock=clock)
    prog = device_program("debugport") if program else None
    post, con = PostPort(), DebugCon()
    m.attach(0x80, 1, name="post", program=prog, device=post, mem_words=38)
    m.attach(0xe9, 1, name="debugcon", program=prog, device=con, mem_words=38)
    return m, post, con


def test_qemu_read_values():
    m, _, _ = machine(FakeClock())
    assert m.pio_in(0x80, 1) == 0xff
    assert m.pio_in(0xe9, 1) == 0xe9            # the Bochs "E9 hack" presence test
    assert m.pio_in(0xe9, 2) == 0xffe9          # port 0xea is not ours
    assert m.pio_in(0x80, 4) == 0xffffffff


def test_post_code_and_count():
    b = LocalBinding(38)
    dev = PostPort()
    dev.attach(b)
    assert dev.post_code is None
    for code in (0x01, 0x55, 0xaa):
        dev.io_write(0, 1, code)
    assert dev.post_code == 0xaa and dev.state()["count"] == 3
    assert dev.output() == b""                   # QEMU ignores port 0x80 writes


def test_debugcon_keeps_order_across_full_ring():
    m, _, con = machine(FakeClock())
    text = bytes(range(256)) * 3
    for b in text:
        m.pio_out(0xe9, 1, b)
    m.pio_out(0xe9, 2, 0x4241)                   # wide: low byte is ours
    assert con.output() == text + b"A"
    s = m.stats()["bindings"]["debugcon"]
    # one exit per full ring (plus the wide write), not one per byte
    assert s["exits"] == len(text) // (RING_BYTES + 1) + 1


def test_post_writes_are_all_fast():
    clock = FakeClock()
    m, post, _ = machine(clock)
    for i in range(2000):                         # Linux io_delay storm + POST codes
        m.pio_out(0x80, 1, i & 0xff)
    s = m.stats()["bindings"]["post"]
    assert s["exits"] == 0 and s["handled"] == 2000
    assert post.post_code == 1999 & 0xff


steps = st.lists(st.tuples(st.just(0), st.sampled_from([0x80, 0xe9]), st.sampled_from([1, 1, 1, 2, 4]),
                           st.one_of(st.none(), st.integers(0, 0xffffffff)),
                           st.one_of(st.just(1), st.integers(1, 200))), max_size=40)


@settings(max_examples=int(os.environ.get('BPFIO_DEV_EXAMPLES', 150)), deadline=None)
@given(trace=steps)
def test_differential(trace):
    """Bursts (repeat counts up to 200) fill the 128-byte ring, so full-ring exits are covered."""
    trace = [(dt, p, s, None if v is None else (v + i) & ((1 << (8 * s)) - 1))
             for dt, p, s, v, n in trace for i in range(n)]
    ca, cb = FakeClock(), FakeClock()
    ma, pa, qa = machine(ca, program=True)
    mb, pb, qb = machine(cb, program=False)
    assert replay(ma, ca, trace) == replay(mb, cb, trace)
    assert pa.state() == pb.state()
    assert qa.state() == qb.state()
    assert qa.output() == qb.output()
