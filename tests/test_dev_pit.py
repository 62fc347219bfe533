"""i8254 PIT + port 0x61: QEMU facts, Linux sequences, differential, fast-path share."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from bpfio.devices.base import device_program, replay
from bpfio.devices.pit import HZ, PIT, Port61, count_at, out_at
from bpfio.pio.machine import FakeClock, Machine

# Every test here runs once per engine: the compiled path and native code (the JIT).
pytestmark = pytest.mark.usefixtures("pio_engine")

NS = 1_000_000_000


def ns_for_ticks(t: int) -> int:
    return -(-t * NS // HZ)


def machine(clock, program=True):
    m = Machine(clock=clock)
    pit, p61 = PIT(), Port61("pit")
    m.attach(0x40, 4, name="pit", program=device_program("pit") if program else None,
             device=pit, clock_hz=HZ, mem_words=48)
    m.attach(0x61, 1, name="port61", program=device_program("port61") if program else None,
             device=p61, clock_hz=HZ, mem_words=8)
    return m, pit, p61


def pit_mode(m):
    return m.bindings["pit"].device.state()["ch2.MODE"]


def read16(m, port):
    lo = m.pio_in(port, 1)
    return lo | m.pio_in(port, 1) << 8


# -- formulas and reset state ----------------------------------------------------

def test_count_formulas():
    assert count_at(0x10000, 0, 0) == 0            # count 0 = 65536 reads 0 in mode 0
    assert count_at(0x10000, 0, 1) == 0xffff
    assert count_at(0x10000, 2, 0) == 0x10000      # mode 2 never reads 0 (QEMU: 65536)
    assert count_at(100, 2, 100) == 100 and count_at(100, 2, 99) == 1
    assert count_at(100, 3, 1) == 98               # mode 3 counts down by two
    assert count_at(100, 3, 50) == 100
    assert count_at(5, 0, 7) == 0xfffe             # mode 0 keeps wrapping below 0


def test_out_formulas():
    assert [out_at(4, 0, d) for d in range(6)] == [0, 0, 0, 0, 1, 1]
    assert [out_at(4, 2, d) for d in range(9)] == [0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert [out_at(4, 3, d) for d in range(8)] == [1, 1, 0, 0, 1, 1, 0, 0]
    assert [out_at(5, 3, d) for d in range(5)] == [1, 1, 1, 0, 0]   # ceil(5/2) high
    assert [out_at(3, 4, d) for d in range(5)] == [0, 0, 0, 1, 0]


def test_reset_state_and_write_only_control():
    clock = FakeClock(10 * NS)
    m, pit, _ = machine(clock)
    s = pit.state()
    assert [s[f"ch{c}.MODE"] for c in range(3)] == [3, 3, 3]
    assert [s[f"ch{c}.GATE"] for c in range(3)] == [1, 1, 0]
    assert [s[f"ch{c}.COUNT"] for c in range(3)] == [0x10000] * 3
    assert m.pio_in(0x43, 1) == 0
    assert m.pio_in(0x61, 1) & 0x03 == 0           # gate 2 low, speaker off


def test_latch_holds_value_and_second_latch_is_ignored():
    clock = FakeClock(0)
    m, _, _ = machine(clock)
    m.pio_out(0x43, 1, 0x34)                      # ch0, LSB/MSB, mode 2
    m.pio_out(0x40, 1, 1000 & 0xff)
    m.pio_out(0x40, 1, 1000 >> 8)
    clock.ns += ns_for_ticks(100)
    m.pio_out(0x43, 1, 0x00)                      # latch: 900
    clock.ns += ns_for_ticks(300)
    m.pio_out(0x43, 1, 0x00)                      # ignored: latch still pending
    assert read16(m, 0x40) == 900
    assert read16(m, 0x40) == 600                 # live again


def test_flip_flop_and_lsb_msb_modes():
    clock = FakeClock(0)
    m, _, _ = machine(clock)
    m.pio_out(0x43, 1, 0x90)                      # ch2, MSB only, mode 0
    m.pio_out(0x42, 1, 0x12)                      # count 0x1200
    assert m.pio_in(0x42, 1) == 0x12 and m.pio_in(0x42, 1) == 0x12
    m.pio_out(0x43, 1, 0xa0)                      # ch2, MSB only again: count unchanged
    m.pio_out(0x43, 1, 0x50)                      # ch1, LSB only, mode 0
    m.pio_out(0x41, 1, 0x34)
    assert m.pio_in(0x41, 1) == 0x34
    m.pio_out(0x43, 1, 0xb0)                      # ch2, LSB then MSB
    m.pio_out(0x42, 1, 0xff)
    m.pio_out(0x42, 1, 0xff)
    assert m.pio_in(0x42, 1) == 0xff              # LSB
    m.pio_out(0x43, 1, 0x80)                      # latch ch2 between the two bytes
    assert m.pio_in(0x42, 1) == 0xff              # latched LSB (latch read first)
    assert m.pio_in(0x42, 1) == 0xff              # latched MSB
    assert m.pio_in(0x42, 1) == 0xff              # live MSB: the read flip-flop kept its place


def test_read_back_status_then_count():
    clock = FakeClock(0)
    m, _, _ = machine(clock)
    m.pio_out(0x43, 1, 0xb0)                      # ch2 mode 0 LSB/MSB
    m.pio_out(0x42, 1, 10)
    m.pio_out(0x42, 1, 0)
    clock.ns += ns_for_ticks(3)
    exits = m.stats()["bindings"]["pit"]["exits"]
    m.pio_out(0x43, 1, 0xc8)                      # read-back ch2: count and status
    assert m.pio_in(0x42, 1) == 0x30              # OUT 0, RW 3, mode 0, binary
    assert read16(m, 0x42) == 7
    clock.ns += ns_for_ticks(10)
    m.pio_out(0x43, 1, 0xe8)                      # status only
    assert m.pio_in(0x42, 1) == 0xb0              # OUT 1 now
    m.pio_out(0x43, 1, 0xde)                      # count of all three channels
    m.pio_out(0x43, 1, 0xee)                      # status of all three: count stays first
    assert m.pio_in(0x40, 1) == 0x86              # ch0 as reset: OUT 1, RW 0, mode 3
    assert m.pio_in(0x42, 1) == 0xb0              # ch2: status first, then
    assert read16(m, 0x42) == 0xffff & (10 - 13)  # the count latched by 0xde
    assert m.stats()["bindings"]["pit"]["exits"] == exits   # read-back is fast path


def test_port61_gate_restart_and_out2():
    clock = FakeClock(0)
    m, pit, _ = machine(clock)
    m.pio_out(0x43, 1, 0xb6)                      # ch2 mode 3 (speaker square wave)
    m.pio_out(0x42, 1, 100)
    m.pio_out(0x42, 1, 0)
    clock.ns += ns_for_ticks(70)
    m.pio_out(0x61, 1, 0x03)                      # gate rising edge: restart mode 3
    assert read16(m, 0x42) == 100
    assert m.pio_in(0x61, 1) & 0x23 == 0x23       # OUT2 high, data on, gate
    clock.ns += ns_for_ticks(60)
    assert m.pio_in(0x61, 1) & 0x20 == 0          # second half-period: low
    clock.ns = (clock.ns | 0x7fff) + 1            # ns bit 14 flips the refresh bit
    a = m.pio_in(0x61, 1) & 0x10
    clock.ns += 1 << 14
    assert m.pio_in(0x61, 1) & 0x10 != a


def test_wide_access_splits_per_port():
    clock = FakeClock(0)
    m, _, _ = machine(clock)
    m.pio_out(0x42, 2, 0xb0 << 8 | 0x00)          # 0x42 <- 0x00 (LSB mode), 0x43 <- 0xb0
    assert m.pio_in(0x42, 4) >> 8 == 0xffff00     # 0x42 LSB, 0x43 reads 0, 0x44/0x45 unmapped
    assert pit_mode(m) == 0
    assert m.pio_in(0x43, 2) == 0xff00            # control reads 0; 0x44 is not ours


# -- Linux driver sequences ------------------------------------------------------

def test_linux_i8253_read_is_fast():
    """drivers/clocksource/i8253.c: outb(0x00, 0x43); inb(0x40) x2, 1000 times."""
    clock = FakeClock(1 << 45)                    # 9.7 h of uptime: TICKS_HI != 0
    m, _, _ = machine(clock)
    latch = (HZ + 500) // 1000
    m.pio_out(0x43, 1, 0x34)                      # setup_pit_timer: mode 2, LSB/MSB
    m.pio_out(0x40, 1, latch & 0xff)
    m.pio_out(0x40, 1, latch >> 8)
    start = m.stats()["bindings"]["pit"]
    for i in range(1000):
        clock.ns += 7919
        m.pio_out(0x43, 1, 0x00)
        count = read16(m, 0x40)
        assert 1 <= count <= latch
    end = m.stats()["bindings"]["pit"]
    handled = end["handled"] - start["handled"]
    events = end["events"] - start["events"]
    assert handled / events >= 0.99
    assert events == 3000


def test_linux_quick_pit_calibrate():
    """arch/x86/kernel/tsc.c quick_pit_calibrate: gate ch2, mode 0, 0xffff, poll MSB."""
    clock = FakeClock(2 * NS)
    m, _, _ = machine(clock)
    m.pio_out(0x61, 1, (m.pio_in(0x61, 1) & ~0x02) | 0x01)
    m.pio_out(0x43, 1, 0xb0)
    m.pio_out(0x42, 1, 0xff)
    m.pio_out(0x42, 1, 0xff)
    m.pio_in(0x42, 1)
    m.pio_in(0x42, 1)                             # pit_verify_msb(0)
    base = m.stats()["bindings"]["pit"]["events"]
    msb_seen = []
    for i in range(0, 40):                        # pit_expect_msb(0xff - i)
        for _ in range(50_000):
            clock.ns += 1000                      # ~1.19 PIT ticks per inb
            m.pio_in(0x42, 1)
            msb = m.pio_in(0x42, 1)
            if msb != 0xff - i:
                break
        msb_seen.append(msb)
    assert msb_seen == [0xff - i - 1 for i in range(0, 40)]
    s = m.stats()["bindings"]["pit"]
    assert s["exits"] <= 4                        # only the setup writes
    assert (s["handled"] - 0) / s["events"] >= 0.99 and s["events"] - base > 10_000


def test_linux_pit_calibrate_tsc_polls_port61():
    """pit_calibrate_tsc: mode 0 on ch2, spin until OUT2 (port 0x61 bit 5) goes high."""
    clock = FakeClock(3 * NS)
    m, _, _ = machine(clock)
    latch = HZ // 20                              # 50 ms
    m.pio_out(0x61, 1, (m.pio_in(0x61, 1) & ~0x02) | 0x01)
    m.pio_out(0x43, 1, 0xb0)
    m.pio_out(0x42, 1, latch & 0xff)
    m.pio_out(0x42, 1, latch >> 8)
    polls = 0
    while not m.pio_in(0x61, 1) & 0x20:
        clock.ns += 10_000
        polls += 1
    assert abs(polls - 5000) <= 2                 # 50 ms in 10 us steps
    s = m.stats()["bindings"]["port61"]
    assert s["exits"] <= 2 and s["handled"] >= polls


# -- differential ----------------------------------------------------------------

PORTS = [0x40, 0x41, 0x42, 0x43, 0x61]
CONTROL = st.one_of(st.integers(0, 0xff),
                    st.sampled_from([0x00, 0x40, 0x80, 0x34, 0x36, 0xb0, 0xb6, 0x30, 0x90,
                                     0xa0, 0x70, 0xc2, 0xc8, 0xde, 0xe4, 0xd2]))
step = st.one_of(
    st.tuples(st.integers(0, 5000), st.sampled_from([0x40, 0x41, 0x42]), st.just(1), st.none()),
    st.tuples(st.integers(0, 5000), st.just(0x43), st.just(1), CONTROL),
    st.tuples(st.integers(0, 10 ** 7), st.sampled_from(PORTS), st.sampled_from([1, 1, 2, 4]),
              st.one_of(st.none(), st.integers(0, 0xffffffff))),
    st.tuples(st.sampled_from([0, 1 << 32, 3_600_000_000_000, 1 << 45]), st.sampled_from(PORTS),
              st.just(1), st.none()))


@settings(max_examples=int(os.environ.get('BPFIO_DEV_EXAMPLES', 120)), deadline=None)
@given(start=st.integers(0, 1 << 60), trace=st.lists(step, max_size=80))
def test_differential(start, trace):
    trace = [(dt, p, s, None if v is None else v & ((1 << (8 * s)) - 1)) for dt, p, s, v in trace]
    ca, cb = FakeClock(start), FakeClock(start)
    ma, pa, qa = machine(ca, program=True)
    mb, pb, qb = machine(cb, program=False)
    assert replay(ma, ca, trace) == replay(mb, cb, trace)
    assert pa.state() == pb.state()
    assert qa.state() == qb.state()
    assert not ma.faults() and not mb.faults()


# -- wiring and errors -------------------------------------------------------------

def test_port61_needs_the_pit_first():
    m = Machine(clock=FakeClock(0))
    with pytest.raises(Exception, match="no PIT binding named 'pit'"):
        m.attach(0x61, 1, device=Port61("pit"), clock_hz=HZ, mem_words=8)
    assert m.binding_at(0x61) is None


def test_wrong_clock_rate_is_refused():
    m = Machine(clock=FakeClock(0))
    with pytest.raises(Exception, match="clock_hz=1193182"):
        m.attach(0x40, 4, device=PIT(), clock_hz=1000, mem_words=48)
    with pytest.raises(Exception, match="mem_words >= 48"):
        m.attach(0x40, 4, device=PIT(), clock_hz=HZ, mem_words=16)


def test_two_vcpus_on_pit_and_port61_do_not_deadlock():
    """Port 0x61's model takes the PIT lock inside its own; the PIT never takes 0x61's."""
    import threading
    clock = FakeClock(0)
    m, _, _ = machine(clock)
    errors = []

    def speaker():
        try:
            for i in range(3000):
                m.pio_out(0x61, 1, i & 3, vcpu=1)
                m.pio_in(0x61, 1, vcpu=1)
        except Exception as exc:    # pragma: no cover - reported below
            errors.append(exc)

    def timer():
        try:
            for i in range(3000):
                m.pio_out(0x43, 1, 0xb6 if i % 2 else 0x80)
                m.pio_out(0x42, 1, i & 0xff)
                m.pio_in(0x42, 1)
        except Exception as exc:    # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=speaker), threading.Thread(target=timer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "deadlock"
    assert errors == [] and m.faults() == []
