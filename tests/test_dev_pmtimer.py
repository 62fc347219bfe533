"""ACPI PM timer: model facts, program-vs-model differential, fast-path share."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from bpfio.devices.base import LocalBinding, device_program, replay
from bpfio.devices.pmtimer import HZ, PMTimer
from bpfio.pio.machine import FakeClock, Machine

# Every test here runs once per engine: the compiled path and native code (the JIT).
pytestmark = pytest.mark.usefixtures("pio_engine")

PORT = 0x608
WRAP_TICKS = 1 << 24


def ns_for_ticks(t: int) -> int:
    """The smallest ns whose tick count is t (ceil(t * 1e9 / HZ))."""
    return -(-t * 1_000_000_000 // HZ)


def machine(clock, program=True, port=PORT):
    m = Machine(clock=clock)
    dev = PMTimer()
    m.attach(port, 4, name="pmtimer", program=device_program("pmtimer") if program else None,
             device=dev, clock_hz=HZ, mem_words=1)
    return m, dev


# -- the model against the datasheet / QEMU facts ------------------------------

def test_value_is_floor_of_scaled_time():
    clock = FakeClock(0)
    b = LocalBinding(1, HZ, clock)
    dev = PMTimer()
    dev.attach(b)
    for ns in (0, 1, 279, 280, 1_000_000_000, 4_000_000_000):
        clock.ns = ns
        assert dev.io_read(0, 4) == (ns * HZ // 1_000_000_000) & 0xffffff


def test_wraps_after_2_pow_24_ticks():
    clock = FakeClock(0)
    b = LocalBinding(1, HZ, clock)
    dev = PMTimer()
    dev.attach(b)
    clock.ns = ns_for_ticks(WRAP_TICKS) - 1
    assert dev.io_read(0, 4) == 0xffffff
    clock.ns = ns_for_ticks(WRAP_TICKS)
    assert dev.io_read(0, 4) == 0
    assert 4.68 < WRAP_TICKS / HZ < 4.69          # the 4.687 s period


def test_counts_from_vm_start_and_ignores_writes():
    clock = FakeClock(123_456_789_000)
    b = LocalBinding(1, HZ, clock)
    dev = PMTimer()
    dev.attach(b)
    assert dev.io_read(0, 4) == 0
    dev.io_write(0, 4, 0xdeadbeef)
    clock.ns += 1_000_000_000
    assert dev.io_read(0, 4) == HZ


def test_narrow_reads_are_low_bytes_and_legacy_mode_reads_zero():
    clock = FakeClock(0)
    b = LocalBinding(1, HZ, clock)
    dev, legacy = PMTimer(), PMTimer(legacy_sizes=True)
    dev.attach(b)
    legacy.attach(LocalBinding(1, HZ, clock))
    clock.ns = 3_000_000_000
    full = dev.io_read(0, 4)
    assert full & 0xffff == dev.io_read(0, 2) & 0xffff
    assert legacy.io_read(0, 2) == 0 and legacy.io_read(0, 4) == full


def test_needs_its_clock_rate():
    with pytest.raises(Exception, match="clock_hz=3579545"):
        PMTimer().attach(LocalBinding(1, None))


# -- differential: program + model fallback vs model alone -----------------------

steps = st.lists(st.tuples(
    st.one_of(st.integers(0, 2000), st.integers(0, 10 ** 10),
              st.sampled_from([ns_for_ticks(WRAP_TICKS) - 1, ns_for_ticks(WRAP_TICKS)]),
              st.integers(0, 1 << 50)),
    st.sampled_from([PORT, PORT + 1, PORT + 2, PORT + 3]),
    st.sampled_from([1, 2, 4]),
    st.one_of(st.none(), st.integers(0, 0xff))), max_size=60)


@settings(max_examples=int(os.environ.get('BPFIO_DEV_EXAMPLES', 150)), deadline=None)
@given(start=st.integers(0, 1 << 60), trace=steps)
def test_differential(start, trace):
    trace = [(dt, p, s, None if v is None else v & ((1 << (8 * s)) - 1)) for dt, p, s, v in trace]
    ca, cb = FakeClock(start), FakeClock(start)
    ma, da = machine(ca, program=True)
    mb, db = machine(cb, program=False)
    assert replay(ma, ca, trace) == replay(mb, cb, trace)
    assert da.state() == db.state()
    assert ma.stats()["bindings"]["pmtimer"]["exits"] == 0


# -- a guest: Linux's acpi_pm clocksource checks and reads -----------------------

def test_linux_verify_loop_and_clock_reads_never_exit():
    """acpi_pm_check: read until the value changes; then a clock_gettime storm."""
    clock = FakeClock(5_000_000_000)
    m, _ = machine(clock)
    first = m.pio_in(PORT, 4) & 0xffffff
    for _ in range(10_000):
        clock.ns += 100
        if m.pio_in(PORT, 4) & 0xffffff != first:
            break
    else:
        pytest.fail("PM timer never changed")
    last = m.pio_in(PORT, 4)
    for _ in range(5000):
        clock.ns += 997
        v = m.pio_in(PORT, 4)
        assert (v - last) & 0xffffff < 4000          # monotonic modulo the wrap
        last = v
    s = m.stats()["bindings"]["pmtimer"]
    assert s["exits"] == 0 and s["handled"] == s["events"]   # 100% fast path


def test_configurable_port():
    clock = FakeClock(1_000_000_000)
    m, _ = machine(clock, port=0xb008)
    assert m.pio_in(0xb008, 4) == 0
    clock.ns += 1_000_000_000
    assert m.pio_in(0xb008, 4) == HZ
