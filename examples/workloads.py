#!/usr/bin/env python3
"""Write the example workloads: real driver access sequences as JSON Lines.

    python examples/workloads.py            # rewrite examples/*.jsonl
    python examples/workloads.py DIR        # write them to DIR instead
    bpfio machine run examples/pit.toml --events examples/pit.jsonl

Each workload is a guest driver's port accesses -- Linux's acpi_pm and i8253
clocksources, quick_pit_calibrate and pit_calibrate_tsc, the mc146818 RTC
read with its UIP wait, a Windows-style RTC tick loop, firmware POST codes,
io_delay writes and debug-console text -- played against the device *models
alone* (no programs).  Every IN is written with the value the model returned,
so a `bpfio machine run` of the same file through the programs reports zero
mismatches exactly when the fast path and the model agree, and its table
shows how many accesses the programs kept away from userspace.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bpfio.pio.config import load_machine   # noqa: E402
from bpfio.pio.machine import FakeClock     # noqa: E402

US = 1000
MS = 1000 * US


class Guest:
    """Drives a model-only machine and records every access with its time and value."""

    def __init__(self, config: Path, access_ns: int = 300):
        self.clock = FakeClock(0)
        self.m = load_machine(config, clock=self.clock)
        for b in self.m.bindings.values():
            b.replace_program(None)       # the models alone are the oracle
        self.access_ns = access_ns        # guest time per access
        self.events: list[dict] = []

    def delay(self, ns: int) -> None:
        self.clock.ns += ns

    def inp(self, port: int, size: int = 1) -> int:
        self.clock.ns += self.access_ns
        v = self.m.pio_in(port, size)
        self.events.append({"op": "in", "port": hex(port), "size": size, "value": v,
                            "t_ns": self.clock.ns})
        return v

    def out(self, port: int, value: int, size: int = 1) -> None:
        self.clock.ns += self.access_ns
        self.m.pio_out(port, size, value)
        self.events.append({"op": "out", "port": hex(port), "size": size, "value": value,
                            "t_ns": self.clock.ns})

    def outb_p(self, port: int, value: int) -> None:
        """outb then the io_delay write to port 0x80 (non-PV Linux)."""
        self.out(port, value)
        if self.m.binding_at(0x80) is not None:
            self.out(0x80, 0)

    def inb_p(self, port: int) -> int:
        v = self.inp(port)
        if self.m.binding_at(0x80) is not None:
            self.out(0x80, 0)
        return v

    def write(self, path: Path) -> None:
        with path.open("w") as f:
            for e in self.events:
                f.write(json.dumps(e) + "\n")


# -- guest code -----------------------------------------------------------------

def linux_acpi_pm(g: Guest, port: int = 0x608, reads: int = 5000) -> None:
    """acpi_pm_check: read until the value changes; then clocksource reads."""
    first = g.inp(port, 4) & 0xffffff
    for _ in range(10_000):
        if g.inp(port, 4) & 0xffffff != first:
            break
    for i in range(reads):
        g.delay(1_700 + 37 * (i % 11))           # gettimeofday-heavy loop
        g.inp(port, 4)


def linux_setup_pit(g: Guest, hz: int = 1000) -> None:
    latch = (1193182 + hz // 2) // hz
    g.outb_p(0x43, 0x34)                          # ch0, LSB/MSB, mode 2
    g.outb_p(0x40, latch & 0xff)
    g.outb_p(0x40, latch >> 8)


def linux_i8253_read(g: Guest, n: int) -> None:
    """drivers/clocksource/i8253.c i8253_read: latch, LSB, MSB (with _p delays)."""
    for i in range(n):
        g.delay(3_100 + 13 * (i % 7))
        g.outb_p(0x43, 0x00)
        g.inb_p(0x40)
        g.inb_p(0x40)


def linux_quick_pit_calibrate(g: Guest, steps: int = 40) -> None:
    """arch/x86/kernel/tsc.c: gate ch2, mode 0 count 0xffff, watch the MSB step down."""
    g.out(0x61, (g.inp(0x61) & ~0x02) | 0x01)
    g.out(0x43, 0xb0)
    g.out(0x42, 0xff)
    g.out(0x42, 0xff)
    g.inp(0x42)
    g.inp(0x42)
    for i in range(steps):                        # pit_expect_msb(0xff - i)
        for _ in range(50_000):
            g.inp(0x42)
            if g.inp(0x42) != 0xff - i:
                break


def linux_pit_calibrate_tsc(g: Guest, ms: int = 10) -> None:
    """The slow fallback: mode 0 on ch2, spin on port 0x61 bit 5 (OUT2)."""
    latch = 1193182 * ms // 1000
    g.out(0x61, (g.inp(0x61) & ~0x02) | 0x01)
    g.out(0x43, 0xb0)
    g.out(0x42, latch & 0xff)
    g.out(0x42, latch >> 8)
    while not g.inp(0x61) & 0x20:
        g.delay(2 * US)


def cmos_read(g: Guest, index: int) -> int:
    g.out(0x70, index)
    return g.inp(0x71)


def linux_rtc_get_time(g: Guest) -> list[int]:
    """mc146818_get_time: wait out UIP, read the date, recheck."""
    for _ in range(10):
        if cmos_read(g, 0x0a) & 0x80:
            g.delay(1 * MS)
            continue
        date = [cmos_read(g, i) for i in (0, 2, 4, 7, 8, 9, 0x32)]
        cmos_read(g, 0x0b)
        if not cmos_read(g, 0x0a) & 0x80 and cmos_read(g, 0) == date[0]:
            return date
    return date


def bios_cmos_scan(g: Guest) -> None:
    """Firmware-style NVRAM reads: shutdown status, floppy/disk types, memory sizes."""
    for index in (0x0f, 0x10, 0x12, 0x14, 0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x34, 0x35,
                  0x38, 0x3d, 0x5b, 0x5c, 0x5d):
        cmos_read(g, index)


def windows_rtc_tick(g: Guest, ticks: int) -> None:
    """RTC periodic interrupt at 1024 Hz: per tick, 0x70 <- 0x0C and read status C."""
    g.out(0x70, 0x0a)
    g.out(0x71, 0x26)
    g.out(0x70, 0x0b)
    g.out(0x71, g.inp(0x71) | 0x40)             # B |= PIE (the index stays at B)
    for _ in range(ticks):
        g.delay(1_000_000_000 // 1024 + 1)
        g.out(0x70, 0x0c)
        g.inp(0x71)


def post_and_debugcon(g: Guest) -> None:
    """Firmware: POST codes on 0x80, a banner on the debug console 0xE9."""
    if g.inp(0xe9) == 0xe9:                       # the E9-hack presence test
        for b in b"SeaBIOS (version rel-1.16.3)\nbpfio example firmware\n":
            g.out(0xe9, b)
    for code in range(0x01, 0x60):
        g.out(0x80, code)
        g.delay(2 * US)
    for b in b"Booting from Hard Disk...\n" * 4:
        g.out(0xe9, b)


def io_delay_storm(g: Guest, n: int) -> None:
    """native_io_delay: outb(0, 0x80) behind every _p access of an old kernel."""
    for _ in range(n):
        g.out(0x80, 0)


def uart_init(g: Guest, base: int = 0x3f8) -> None:
    """Linux early_serial_init: 8N1, no interrupts, no FIFO, DTR|RTS, divisor 1."""
    g.out(base + 3, 0x03)
    g.out(base + 1, 0x00)
    g.out(base + 2, 0x00)
    g.out(base + 4, 0x03)
    lcr = g.inp(base + 3)
    g.out(base + 3, lcr | 0x80)                  # DLAB
    g.out(base + 0, 0x01)
    g.out(base + 1, 0x00)
    g.out(base + 3, lcr & ~0x80)


def uart_print(g: Guest, text: bytes, base: int = 0x3f8) -> None:
    """early_serial_putc: poll LSR until THRE, then write THR."""
    for ch in text:
        for _ in range(0xffff):
            if g.inp(base + 5) & 0x20:
                break
        g.out(base, ch)


def pci_enumerate(g: Guest) -> None:
    """pci_check_type1, then bus 0: vendor/device of every devfn, header type, BAR sizing."""
    g.out(0xcfb, 0x01)
    saved = g.inp(0xcf8, 4)
    g.out(0xcf8, 0x80000000, 4)
    g.inp(0xcf8, 4)
    g.out(0xcf8, saved, 4)
    for devfn in range(256):
        addr = 0x80000000 | devfn << 8
        g.out(0xcf8, addr, 4)
        if g.inp(0xcfc, 4) == 0xffffffff:
            continue
        g.out(0xcf8, addr | 0x0c, 4)
        g.inp(0xcfe, 1)                           # header type byte
        g.out(0xcf8, addr | 0x08, 4)
        g.inp(0xcfc, 4)                           # class / revision
        g.out(0xcf8, addr | 0x2c, 4)
        g.inp(0xcfc, 2)                           # subsystem vendor (word)
        for bar in range(6):
            g.out(0xcf8, addr | (0x10 + 4 * bar), 4)
            orig = g.inp(0xcfc, 4)
            g.out(0xcfc, 0xffffffff, 4)
            g.inp(0xcfc, 4)
            g.out(0xcfc, orig, 4)


def virtio_net_init_and_kick(g: Guest, kicks: int, bar: int = 0xc000) -> None:
    """Legacy virtio-pci driver: reset, features, queues, DRIVER_OK; then queue kicks."""
    g.out(bar + 18, 0x00)                         # reset
    g.out(bar + 18, 0x01)                         # ACKNOWLEDGE
    g.out(bar + 18, 0x03)                         # DRIVER
    g.out(bar + 4, g.inp(bar + 0, 4) & 0x00000020, 4)
    for q in range(3):
        g.out(bar + 14, q, 2)
        if g.inp(bar + 12, 2):
            g.out(bar + 8, 0x1000 + q, 4)         # queue PFN
    g.out(bar + 18, 0x07)                         # DRIVER_OK
    for i in range(kicks):
        g.delay(5 * US)
        g.out(bar + 16, i % 2, 2)                 # TX / RX kick
        if i % 16 == 15:
            g.inp(bar + 19)                       # ISR read after an interrupt


def pc_boot(g: Guest) -> None:
    """A boot-like mix of every device on examples/pc.toml."""
    post_and_debugcon(g)
    bios_cmos_scan(g)
    pci_enumerate(g)
    uart_init(g)
    uart_print(g, b"Linux version 6.18.0 (bpfio example)\n")
    linux_quick_pit_calibrate(g, steps=4)
    linux_acpi_pm(g, reads=200)
    linux_rtc_get_time(g)
    linux_setup_pit(g)
    virtio_net_init_and_kick(g, 300)
    for i in range(200):                          # runtime: clocks, console, ticks
        linux_i8253_read(g, 1)
        g.inp(0x608, 4)
        if i % 10 == 0:
            uart_print(g, b"tick\n")
        g.out(0x70, 0x0c)
        g.inp(0x71)
    io_delay_storm(g, 200)


# -- workload files --------------------------------------------------------------

def main(out: Path = HERE) -> None:
    g = Guest(HERE / "pmtimer.toml")
    linux_acpi_pm(g, reads=2000)
    g.write(out / "pmtimer.jsonl")

    g = Guest(HERE / "pit.toml", access_ns=1000)
    linux_quick_pit_calibrate(g, steps=8)
    linux_pit_calibrate_tsc(g, ms=2)
    linux_setup_pit(g)
    linux_i8253_read(g, 600)
    g.write(out / "pit.jsonl")

    g = Guest(HERE / "rtc.toml")
    bios_cmos_scan(g)
    linux_rtc_get_time(g)
    windows_rtc_tick(g, 1024)
    for _ in range(5):
        g.delay(700 * MS)
        linux_rtc_get_time(g)
    g.write(out / "rtc.jsonl")

    g = Guest(HERE / "debugport.toml")
    post_and_debugcon(g)
    io_delay_storm(g, 2000)
    g.write(out / "debugport.jsonl")

    g = Guest(HERE / "pc.toml", access_ns=1000)
    pc_boot(g)
    g.write(out / "pc.jsonl")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
