"""MC146818 CMOS RTC and NVRAM (ports 0x70/0x71), as QEMU's hw/rtc/mc146818rtc.c.

The reference model of ``asm/rtc.asm``.  Facts (pio-devices.md section 4.4 and
QEMU's mc146818rtc.c):

* 0x70 write: index = value & 0x7f; 0x70 read: 0xff.  128 CMOS bytes.
* 0x00-0x09 seconds, alarm, minutes, alarm, hours (bit 7 = PM in 12-hour
  mode), alarm, day of week (1 = Sunday), day, month, year; 0x32 century
  (0x37 is an alias: an access re-points the index at 0x32).
* A: UIP (bit 7, read only), divider (6-4; 11x = reset, clock stopped),
  rate (3-0; period 2^(rate-1) ticks of 32 768 Hz, rates 1-2 act as 8-9).
  Reset 0x26.  B: SET 0x80, PIE 0x40, AIE 0x20, UIE 0x10, SQWE 0x08,
  DM 0x04 (binary), 24H 0x02.  Reset 0x02.  C: IRQF 0x80, PF 0x40, AF 0x20,
  UF 0x10; reading clears it and lowers IRQ 8.  D: 0x80 (valid RAM and time).
* the clock runs while SET is clear and the divider is 0x0-0x2 (QEMU
  ``rtc_running``); time registers are re-encoded from base time + elapsed
  guest time on every read while running; writing one re-bases the clock
  (QEMU ``rtc_set_time``); clearing SET keeps the sub-second phase; taking the
  divider out of reset starts the first second half a second later.
* UIP reads as 1 during the last 244 us (8/32768 s) of every second.
* base year 0 (QEMU's pc machines): year register = year % 100, century =
  year / 100 (20 for 2026).

Time here is kept in ticks of the RTC's 32 768 Hz time base (the binding's
``clock_hz``): RTC ticks = base + (binding ticks - binding ticks at base).

Interrupt flags are computed lazily (there are no host timers): whenever the
model runs it first accounts for every second boundary (UF, and AF when the
alarm matches that second) and periodic boundary (PF, while PIE is set, as
QEMU runs its periodic timer only then) since it last ran, raising IRQF and
:attr:`RTC.irq` when a new flag is enabled in B.  The result does not depend
on how often the model runs.  Documented simplifications against QEMU: the
alarm compares register bytes as the datasheet says (QEMU converts them and
has a 12-hour quirk); UIP is not held past the second when an update timer
is pending; a time-register write first brings the other time registers up
to date (QEMU may re-base from registers last refreshed earlier); the
century byte follows the date like the others; a periodic-rate or PIE
change restarts the periodic phase (QEMU carries the time since the last
interrupt over).
"""

from __future__ import annotations

import time as _time

from bpfio.devices.base import U32, Bytes, Model, layout, split_read, split_write
from bpfio.errors import PioError

L = layout("rtc")
HZ = L["RTC_HZ"]
UIP_TICKS = L["RTC_UIP_TICKS"]
INDEX, FLAGS, FRAC, KEY = L["RTC_INDEX"], L["RTC_FLAGS"], L["RTC_FRAC"], L["RTC_KEY"]
CMOS_WORD = L["RTC_CMOS_WORD"]
F_RUNNING, F_VALID = L["RTC_F_RUNNING"], L["RTC_F_VALID"]
SEC, SEC_ALARM, MIN, MIN_ALARM = 0x00, 0x01, 0x02, 0x03
HOUR, HOUR_ALARM, WDAY, MDAY, MONTH, YEAR = 0x04, 0x05, 0x06, 0x07, 0x08, 0x09
REG_A, REG_B, REG_C, REG_D = 0x0a, 0x0b, 0x0c, 0x0d
CENTURY, IBM_CENTURY = L["RTC_CENTURY"], L["RTC_IBM_CENTURY"]
TIME_REGS = (SEC, MIN, HOUR, WDAY, MDAY, MONTH, YEAR, CENTURY)
B_SET, B_PIE, B_AIE, B_UIE, B_DM, B_24H = 0x80, 0x40, 0x20, 0x10, 0x04, 0x02
C_IRQF, C_PF, C_AF, C_UF = 0x80, 0x40, 0x20, 0x10
C_MASK = 0x70
DAY = 86400


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _cmod(a: int, b: int) -> int:
    return a - b * _cdiv(a, b)


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 for year/month/day, with QEMU mktimegm's arithmetic.

    March-based years make February the last month; no range checks, like
    the C function (out-of-range fields simply count on).
    """
    if m < 3:
        m += 12
        y -= 1
    return (d + _cdiv(153 * m - 457, 5) + 365 * y + _cdiv(y, 4) - _cdiv(y, 100)
            + _cdiv(y, 400) - 719469)


def civil_from_days(z: int) -> tuple[int, int, int]:
    """(year, month 1-12, day 1-31) of day ``z`` since 1970-01-01 (proleptic Gregorian)."""
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def period_ticks(rate: int) -> int:
    """QEMU periodic_period_to_clock: 32 kHz ticks per periodic interrupt (0: none)."""
    if rate == 0:
        return 0
    if rate <= 2:
        rate += 7
    return 1 << (rate - 1)


class RTC(Model):
    """The CMOS RTC (binding: 0x70, length 2, clock_hz=32768, mem_words=40).

    ``start``: the RTC time at attach, as Unix seconds (default: the host's
    UTC time, QEMU's ``-rtc base=utc``).  ``nvram``: optional initial bytes
    for CMOS offsets 0x0e.. (e.g. a shutdown status or memory sizes).
    """

    MEM_WORDS = L["RTC_MEM_WORDS"]

    def __init__(self, start: int | float | None = None, nvram: dict | None = None):
        self.start = start
        self.nvram = dict(nvram or {})
        self.irq = 0

    # -- lifecycle ----------------------------------------------------------
    def reset(self) -> None:
        """Power on: registers A-D at QEMU's reset values, date from ``start``."""
        b = self.binding
        if b.clock_hz != HZ:
            raise PioError(f"RTC needs clock_hz={HZ} on its binding (has {b.clock_hz})")
        for i in range(len(self.mem)):
            self.mem[i] = 0
        self.cmos = Bytes(self.mem, CMOS_WORD, 128)
        for k, v in self.nvram.items():
            k = int(k, 0) if isinstance(k, str) else int(k)
            if not 0x0e <= k < 0x80 or k in (CENTURY, IBM_CENTURY):
                raise PioError(f"RTC nvram offset {k:#x} is not a free NVRAM byte")
            self.cmos[k] = int(v)
        self.cmos[REG_A], self.cmos[REG_B], self.cmos[REG_C], self.cmos[REG_D] = \
            0x26, 0x02, 0x00, 0x80
        now = b.ticks()
        start = _time.time() if self.start is None else self.start
        self._base_sec = int(start)
        self._base_tick = now
        self._offset = 0
        self._last = now            # ticks up to which flags are accounted
        self._pstart = now          # periodic timer phase
        self.irq = 0
        self._after_change(now)

    # -- time ---------------------------------------------------------------
    def _rtc_ticks(self, now: int) -> int:
        return self._base_sec * HZ + self._offset + (now - self._base_tick)

    def _running(self) -> bool:
        return not self.cmos[REG_B] & B_SET and (self.cmos[REG_A] & 0x70) <= 0x20

    def _frac(self) -> int:
        return (self._offset - self._base_tick) % HZ

    def _key(self, now: int) -> int:
        """The program's second number for binding tick ``now``."""
        return ((now + self._frac()) >> 15) & U32

    def _to_bcd(self, v: int) -> int:
        if self.cmos[REG_B] & B_DM:
            return v & 0xff
        return (_cdiv(v, 10) << 4 | _cmod(v, 10)) & 0xff

    def _from_bcd(self, a: int) -> int:
        if a & 0xc0 == 0xc0:
            return -1
        if self.cmos[REG_B] & B_DM:
            return a
        return (a >> 4) * 10 + (a & 0x0f)

    def _encode(self, secs: int) -> dict[int, int]:
        """The time registers for Unix second ``secs`` in the current format (rtc_set_cmos)."""
        days, tod = divmod(secs, DAY)
        y, m, d = civil_from_days(days)
        hour = tod // 3600
        regs = {SEC: self._to_bcd(tod % 60), MIN: self._to_bcd(tod // 60 % 60)}
        if self.cmos[REG_B] & B_24H:
            regs[HOUR] = self._to_bcd(hour)
        else:
            regs[HOUR] = self._to_bcd(hour % 12 or 12) | (0x80 if hour >= 12 else 0)
        regs[WDAY] = self._to_bcd((days + 4) % 7 + 1)
        regs[MDAY] = self._to_bcd(d)
        regs[MONTH] = self._to_bcd(m)
        regs[YEAR] = self._to_bcd(_cmod(y, 100))
        regs[CENTURY] = self._to_bcd(_cdiv(y, 100))
        return regs

    def _decode(self) -> int:
        """Unix seconds of the time registers (rtc_get_time + mktimegm)."""
        c = self.cmos
        hour = self._from_bcd(c[HOUR] & 0x7f)
        if not c[REG_B] & B_24H:
            hour = _cmod(hour, 12) + (12 if c[HOUR] & 0x80 else 0)
        year = self._from_bcd(c[YEAR]) + self._from_bcd(c[CENTURY]) * 100
        days = days_from_civil(year, self._from_bcd(c[MONTH]), self._from_bcd(c[MDAY]))
        return days * DAY + 3600 * hour + 60 * self._from_bcd(c[MIN]) + self._from_bcd(c[SEC])

    def _refresh(self, now: int) -> None:
        """rtc_update_time: encode the current second into the time registers."""
        for reg, value in self._encode(self._rtc_ticks(now) // HZ).items():
            self.cmos[reg] = value
        self.mem[KEY] = self._key(now)
        self.mem[FLAGS] |= F_VALID

    def _set_time(self, now: int) -> None:
        """rtc_set_time: the registers' date becomes the time now (phase = offset)."""
        self._base_sec = self._decode()
        self._base_tick = now

    def _after_change(self, now: int) -> None:
        """Publish what the program reads: running flag, phase, a fresh copy."""
        self.mem[FRAC] = self._frac()
        if self._running():
            self.mem[FLAGS] = F_RUNNING
            self._refresh(now)
        else:
            self.mem[FLAGS] = 0

    # -- interrupt flags, lazily -------------------------------------------
    def _alarm_hits(self, first: int, n: int) -> bool:
        """Does the alarm match any of the ``n`` seconds starting at Unix second ``first``?"""
        alarm = (self.cmos[SEC_ALARM], self.cmos[MIN_ALARM], self.cmos[HOUR_ALARM])
        dont = [a & 0xc0 == 0xc0 for a in alarm]
        if all(dont):
            return n > 0
        secs = [s for s in range(60) if dont[0] or self._to_bcd(s) == alarm[0]]
        mins = [m for m in range(60) if dont[1] or self._to_bcd(m) == alarm[1]]
        hours = [h for h in range(24) if dont[2] or self._encode(h * 3600)[HOUR] == alarm[2]]
        if n >= DAY:
            return bool(secs and mins and hours)
        start = first % DAY
        for h in hours:
            for m in mins:
                for s in secs:
                    if (h * 3600 + m * 60 + s - start) % DAY < n:
                        return True
        return False

    def _sync(self, now: int) -> None:
        """Account for second and periodic boundaries in (last, now]."""
        last = self._last
        if now <= last:
            return
        self._last = now
        c = self.cmos
        flags = 0
        if c[REG_A] & 0x60 != 0x60:
            s0, s1 = self._rtc_ticks(last) // HZ, self._rtc_ticks(now) // HZ
            if s1 > s0:
                flags |= C_UF
                if self._alarm_hits(s0 + 1, s1 - s0):
                    flags |= C_AF
        period = period_ticks(c[REG_A] & 0x0f) if c[REG_B] & B_PIE else 0
        if period and (now - self._pstart) // period > (last - self._pstart) // period:
            flags |= C_PF
        new = flags & ~c[REG_C]
        c[REG_C] = c[REG_C] | flags
        if new & c[REG_B] & C_MASK:
            c[REG_C] = c[REG_C] | C_IRQF
            self.irq = 1

    # -- guest accesses -----------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        """0x70 reads 0xff; 0x71 reads the indexed register (wide reads split per port)."""
        now = self.binding.ticks()
        self._sync(now)
        return split_read(lambda o: self._read(o, now), offset, size, self.length)

    def io_write(self, offset: int, size: int, value: int) -> None:
        """0x70 sets the index; 0x71 writes the indexed register."""
        now = self.binding.ticks()
        self._sync(now)
        split_write(lambda o, v: self._write(o, v, now), offset, size, value, self.length)

    def _read(self, offset: int, now: int) -> int:
        if offset == 0:
            return 0xff
        index = self.mem[INDEX] & 0x7f
        if index == IBM_CENTURY:
            index = self.mem[INDEX] = CENTURY
        c = self.cmos
        if index in TIME_REGS:
            if self._running():
                self._refresh(now)
            return c[index]
        if index == REG_A:
            uip = self._running() and (now + self._frac()) % HZ >= UIP_TICKS
            return c[REG_A] | (0x80 if uip else 0)
        if index == REG_C:
            value = c[REG_C]
            c[REG_C] = 0
            self.irq = 0
            return value
        return c[index]

    def _write(self, offset: int, value: int, now: int) -> None:
        if offset == 0:
            self.mem[INDEX] = value & 0x7f
            return
        index = self.mem[INDEX] & 0x7f
        c = self.cmos
        if index == IBM_CENTURY:
            index = self.mem[INDEX] = CENTURY
        if index in TIME_REGS:
            running = self._running()
            if running:
                self._refresh(now)
            c[index] = value
            if running:
                self._set_time(now)
        elif index == REG_A:
            old = c[REG_A]
            if value & 0x60 == 0x60:
                if self._running():
                    self._refresh(now)
            elif old & 0x60 == 0x60 and value & 0x70 <= 0x20 and not c[REG_B] & B_SET:
                self._offset = HZ // 2        # first update half a second later
                self._set_time(now)
            c[REG_A] = value & 0x7f
            if (old ^ value) & 0x0f:
                self._pstart = now
        elif index == REG_B:
            old = c[REG_B]
            if value & B_SET:
                if self._running():
                    self._refresh(now)
                value &= ~B_UIE
            elif old & B_SET and c[REG_A] & 0x70 <= 0x20:
                self._offset = self._rtc_ticks(now) % HZ
                self._set_time(now)
            if value & c[REG_C] & C_MASK:
                c[REG_C] = c[REG_C] | C_IRQF
                self.irq = 1
            else:
                c[REG_C] = c[REG_C] & ~C_IRQF
                self.irq = 0
            c[REG_B] = value
            if (old ^ value) & B_PIE:
                self._pstart = now
        elif index in (REG_C, REG_D):
            pass                              # read only
        else:
            c[index] = value                  # alarms and NVRAM
        self._after_change(now)

    # -- inspection ---------------------------------------------------------
    def now(self) -> int:
        """The RTC's current time in Unix seconds."""
        return self._rtc_ticks(self.binding.ticks()) // HZ

    def state(self) -> dict:
        """Comparable state as of now: CMOS bytes (time re-encoded if running), index, IRQ."""
        now = self.binding.ticks()
        self._sync(now)
        if self._running():
            self._refresh(now)
        return {"cmos": self.cmos.tobytes(), "index": self.mem[INDEX], "irq": self.irq,
                "flags": self.mem[FLAGS], "frac": self.mem[FRAC],
                "base": (self._base_sec, self._base_tick, self._offset), "pstart": self._pstart}
