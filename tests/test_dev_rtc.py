"""CMOS RTC: QEMU/datasheet facts, Linux/Windows sequences, differential, fast-path share."""

from __future__ import annotations

import calendar
import os

import pytest

from hypothesis import given, settings, strategies as st

from bpfio.devices.base import device_program, replay
from bpfio.devices.rtc import HZ, RTC, civil_from_days, days_from_civil
from bpfio.pio.machine import FakeClock, Machine

# Every test here runs once per engine: the compiled path and native code (the JIT).
pytestmark = pytest.mark.usefixtures("pio_engine")

NS = 1_000_000_000
T0 = calendar.timegm((2026, 12, 31, 23, 59, 59))   # a Thursday, one second before 2027


def machine(clock, program=True, start=T0, nvram=None):
    m = Machine(clock=clock)
    rtc = RTC(start=start, nvram=nvram)
    m.attach(0x70, 2, name="rtc", program=device_program("rtc") if program else None,
             device=rtc, clock_hz=HZ, mem_words=40)
    return m, rtc


def rd(m, index):
    m.pio_out(0x70, 1, index)
    return m.pio_in(0x71, 1)


def wr(m, index, value):
    m.pio_out(0x70, 1, index)
    m.pio_out(0x71, 1, value)


def regs(m):
    return [rd(m, i) for i in (0, 2, 4, 6, 7, 8, 9, 0x32)]


# -- calendar arithmetic -------------------------------------------------------

def test_calendar_round_trip_and_known_days():
    for z in range(0, 3_000_000, 4999):           # 1970 .. ~10000
        assert days_from_civil(*civil_from_days(z)) == z
    assert civil_from_days(0) == (1970, 1, 1)
    assert days_from_civil(2000, 3, 1) == calendar.timegm((2000, 3, 1, 0, 0, 0)) // 86400
    assert civil_from_days(calendar.timegm((2024, 2, 29, 12, 0, 0)) // 86400) == (2024, 2, 29)


@settings(max_examples=int(os.environ.get('BPFIO_DEV_EXAMPLES', 200)), deadline=None)
@given(secs=st.integers(0, 253402300799), b=st.sampled_from([0x02, 0x06, 0x00, 0x04]))
def test_encoding_matches_the_python_calendar(secs, b):
    """Time registers for any second of years 1970-9999 against datetime, in all four formats."""
    import datetime
    m, rtc = machine(FakeClock(0), start=secs)
    wr(m, 0x0b, b)
    t = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc)
    enc = (lambda v: v) if b & 0x04 else (lambda v: (v // 10) << 4 | v % 10)
    hour = enc(t.hour) if b & 0x02 else enc(t.hour % 12 or 12) | (0x80 if t.hour >= 12 else 0)
    assert regs(m) == [enc(t.second), enc(t.minute), hour, enc(t.isoweekday() % 7 + 1),
                       enc(t.day), enc(t.month), enc(t.year % 100), enc(t.year // 100)]
    assert rtc.now() == secs


# -- registers ---------------------------------------------------------------

def test_bcd_rollover_at_23_59_59():
    clock = FakeClock(7 * NS)
    m, _ = machine(clock)
    assert regs(m) == [0x59, 0x59, 0x23, 0x05, 0x31, 0x12, 0x26, 0x20]
    assert rd(m, 0x0a) == 0x26 and rd(m, 0x0b) == 0x02 and rd(m, 0x0d) == 0x80
    clock.ns += NS
    assert regs(m) == [0x00, 0x00, 0x00, 0x06, 0x01, 0x01, 0x27, 0x20]


def test_binary_and_12_hour_modes():
    clock = FakeClock(0)
    m, _ = machine(clock, start=calendar.timegm((2026, 7, 4, 13, 5, 9)))
    wr(m, 0x0b, 0x04)                              # binary, 12-hour
    assert regs(m) == [9, 5, 0x80 | 1, 7, 4, 7, 26, 20]
    wr(m, 0x0b, 0x00)                              # BCD, 12-hour
    assert rd(m, 0x04) == 0x81
    wr(m, 0x0b, 0x02)                              # BCD, 24-hour
    assert rd(m, 0x04) == 0x13


def test_midnight_and_noon_in_12_hour_mode():
    for hour, want in ((0, 0x12), (12, 0x92), (23, 0x91)):
        m, _ = machine(FakeClock(0), start=calendar.timegm((2026, 1, 1, hour, 0, 0)))
        wr(m, 0x0b, 0x00)
        assert rd(m, 0x04) == want


def test_uip_in_the_last_244_us():
    clock = FakeClock(0)
    m, _ = machine(clock)
    # the RTC second started at tick 0 of the binding clock
    just_before = -(-(HZ - 8) * NS // HZ) - 1
    clock.ns = just_before
    assert rd(m, 0x0a) & 0x80 == 0
    clock.ns = just_before + 1
    assert rd(m, 0x0a) & 0x80
    clock.ns = NS - 1
    assert rd(m, 0x0a) & 0x80
    clock.ns = NS
    assert rd(m, 0x0a) & 0x80 == 0
    wr(m, 0x0b, 0x82)                              # SET: no updates, no UIP
    clock.ns = 2 * NS - 1000
    assert rd(m, 0x0a) == 0x26


def test_index_masking_port70_and_nvram():
    clock = FakeClock(0)
    m, rtc = machine(clock, nvram={0x10: 0x44})
    m.pio_out(0x70, 1, 0x8b)                       # NMI-mask bit is dropped
    assert m.pio_in(0x71, 1) == 0x02
    assert m.pio_in(0x70, 1) == 0xff
    assert rd(m, 0x10) == 0x44
    wr(m, 0x50, 0xa5)
    assert rd(m, 0x50) == 0xa5
    wr(m, 0x0d, 0x00)                              # C and D ignore writes
    assert rd(m, 0x0d) == 0x80
    m.pio_out(0x70, 1, 0x50)
    assert m.pio_in(0x70, 2) == 0xff | 0xa5 << 8   # QEMU splits: 0x70 then 0x71
    assert m.pio_in(0x71, 2) == 0xff << 8 | 0xa5   # 0x72 is not ours


def test_set_mode_freezes_and_setting_the_time():
    clock = FakeClock(0)
    m, rtc = machine(clock)
    wr(m, 0x0b, 0x82)                              # SET
    for idx, v in ((0, 0x30), (2, 0x15), (4, 0x08), (7, 0x15), (8, 0x06), (9, 0x30)):
        wr(m, idx, v)
    clock.ns += 5 * NS
    assert rd(m, 0) == 0x30                        # frozen while SET
    wr(m, 0x0b, 0x02)                              # run again
    clock.ns += 2 * NS
    assert [rd(m, i) for i in (0, 2, 4, 7, 8, 9)] == [0x32, 0x15, 0x08, 0x15, 0x06, 0x30]
    assert rtc.now() == calendar.timegm((2030, 6, 15, 8, 15, 32))


def test_divider_restart_begins_half_a_second_later():
    clock = FakeClock(0)
    m, rtc = machine(clock)
    wr(m, 0x0a, 0x76)                              # divider reset: stopped
    clock.ns += 3 * NS
    assert rd(m, 0) == 0x59
    wr(m, 0x0a, 0x26)
    clock.ns += NS // 2 - 1000
    assert rd(m, 0) == 0x59
    clock.ns += 2000
    assert rd(m, 0) == 0x00


def test_status_c_flags_and_irq():
    clock = FakeClock(0)
    m, rtc = machine(clock)
    assert rd(m, 0x0c) == 0
    clock.ns += NS                                 # a second boundary: UF (+ AF at 00:00:00)
    assert rd(m, 0x0c) == 0x30 and rtc.irq == 0
    wr(m, 0x0b, 0x12)                              # UIE
    clock.ns += NS
    assert rtc.state()["irq"] == 1
    assert rd(m, 0x0c) == 0x90                     # IRQF | UF; reading clears and lowers
    assert rtc.irq == 0 and rd(m, 0x0c) == 0
    wr(m, 0x0a, 0x26)                              # rate 6: 1024 Hz
    wr(m, 0x0b, 0x42)                              # PIE
    clock.ns += NS // 1024 + 1
    assert rd(m, 0x0c) == 0xc0                     # IRQF | PF


def test_alarm_matches_register_bytes():
    clock = FakeClock(0)
    m, rtc = machine(clock, start=calendar.timegm((2026, 5, 5, 10, 0, 0)))
    wr(m, 0x01, 0x30)                              # alarm at hh:mm:30 with
    wr(m, 0x03, 0xc0)                              # any minute
    wr(m, 0x05, 0xff)                              # any hour
    rd(m, 0x0c)
    clock.ns += 29 * NS
    assert rd(m, 0x0c) & 0x20 == 0
    clock.ns += NS
    assert rd(m, 0x0c) & 0x20


# -- guests -------------------------------------------------------------------

def test_linux_read_time_with_uip_wait():
    """mc146818_get_time: wait for UIP clear, read the date, recheck UIP / seconds."""
    clock = FakeClock(0)
    m, _ = machine(clock)
    clock.ns = NS - 100_000                       # inside the UIP window
    for _ in range(10):
        if rd(m, 0x0a) & 0x80:
            clock.ns += 1_000_000                  # mdelay(1)
            continue
        date = regs(m)
        if not rd(m, 0x0a) & 0x80 and rd(m, 0) == date[0]:
            break
    assert date == [0x00, 0x00, 0x00, 0x06, 0x01, 0x01, 0x27, 0x20]


def test_windows_tick_loop_index_writes_are_fast():
    """Per tick: 0x70 <- 0x0C, read status C (falls back: clears + lowers IRQ 8)."""
    clock = FakeClock(0)
    m, rtc = machine(clock)
    wr(m, 0x0a, 0x26)
    wr(m, 0x0b, 0x42)                              # PIE, 1024 Hz
    before = m.stats()["bindings"]["rtc"]
    for _ in range(1000):
        clock.ns += NS // 1024 + 1                # one 32-tick period
        m.pio_out(0x70, 1, 0x0c)
        assert m.pio_in(0x71, 1) & 0xc0 == 0xc0
    after = m.stats()["bindings"]["rtc"]
    assert after["handled"] - before["handled"] == 1000     # every index write
    assert after["exits"] - before["exits"] == 1000         # every status C read


def test_time_reads_exit_once_per_second():
    clock = FakeClock(1 << 50)                    # 13 days of uptime: TICKS_HI != 0
    m, _ = machine(clock)
    base = m.stats()["bindings"]["rtc"]["exits"]
    for _ in range(3000):                          # 3 s of polling, 1 ms apart
        clock.ns += 1_000_000
        regs(m)
    s = m.stats()["bindings"]["rtc"]
    assert s["exits"] - base <= 4
    assert s["handled"] / s["events"] > 0.99


# -- differential --------------------------------------------------------------

INDEX = st.one_of(st.integers(0, 0xff), st.sampled_from(
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x32, 0x37, 0x8b, 0xb2]))
B_VALUES = st.sampled_from([0x02, 0x00, 0x04, 0x06, 0x82, 0x12, 0x22, 0x42, 0x72, 0x86])
A_VALUES = st.sampled_from([0x26, 0x20, 0x76, 0x66, 0x23, 0x2f, 0x06])
DT = st.one_of(st.integers(0, 300_000), st.integers(0, 2 * NS), st.just(NS),
               st.sampled_from([999_755_000, 999_760_000, 1 << 33]), st.integers(0, 1 << 50))
step = st.one_of(
    st.tuples(DT, st.just(0x70), st.just(1), INDEX),
    st.tuples(DT, st.just(0x71), st.just(1), st.none()),
    st.tuples(DT, st.just(0x71), st.just(1), st.integers(0, 0xff)),
    st.tuples(DT, st.just("B"), st.just(1), B_VALUES),
    st.tuples(DT, st.just("A"), st.just(1), A_VALUES),
    st.tuples(DT, st.sampled_from([0x70, 0x71]), st.sampled_from([2, 4]),
              st.one_of(st.none(), st.integers(0, 0xffffffff))))


def expand(trace):
    out = []
    for dt, port, size, value in trace:
        if port in ("A", "B"):                      # write a status register: two accesses
            out += [(dt, 0x70, 1, 0x0a if port == "A" else 0x0b), (0, 0x71, 1, value)]
        else:
            out.append((dt, port, size, None if value is None
                        else value & ((1 << (8 * size)) - 1)))
    return out


@settings(max_examples=int(os.environ.get('BPFIO_DEV_EXAMPLES', 200)), deadline=None)
@given(start_ns=st.integers(0, 1 << 60), rtc_start=st.integers(0, 4_000_000_000),
       trace=st.lists(step, max_size=60))
def test_differential(start_ns, rtc_start, trace):
    trace = expand(trace)
    ca, cb = FakeClock(start_ns), FakeClock(start_ns)
    ma, ra = machine(ca, program=True, start=rtc_start)
    mb, rb = machine(cb, program=False, start=rtc_start)
    assert replay(ma, ca, trace) == replay(mb, cb, trace)
    assert ra.state() == rb.state()
    assert not ma.faults() and not mb.faults()
