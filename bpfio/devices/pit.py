"""Intel 8254 PIT (ports 0x40-0x43) and port 0x61, as QEMU's hw/timer/i8254.c.

The reference models of ``asm/pit.asm`` and ``asm/port61.asm``.  Facts
(``/work/shared/reference/pio-devices.md`` section 4.2, QEMU i8254.c,
i8254_common.c, pcspk.c, KVM arch/x86/kvm/i8254.c):

* input clock 1 193 182 Hz; 0x40-0x42 are counters 0-2, 0x43 the control
  word (write only; QEMU reads 0).  Byte accesses only: a wider access is
  split per port (``impl`` 1..1).
* control word: SC (bits 7-6), RW (5-4; 00 = counter-latch command), mode
  (3-1, kept as written, 0..7), BCD (0; stored, not used for counting).
  Programming a channel sets its rw mode and both flip-flops; it does not
  touch a pending latch.
* read-back (SC = 11): bit 5 clear latches the count, bit 4 clear latches the
  status (OUT << 7 | RW << 4 | mode << 1 | BCD; QEMU never sets NULL COUNT)
  for each channel selected by bits 3-1; a status latched before a count is
  read first.
* a written count of 0 means 0x10000; the count and its load time are kept,
  and the current count is computed from d = elapsed PIT ticks:
  modes 0/1/4/5 ``(count - d) & 0xffff``, mode 3 ``count - (2d) % count``,
  mode 2 and 6/7 ``count - d % count``; OUT: mode 0 and 6/7 ``d >= count``,
  1 ``d < count``, 2 ``d % count == 0 and d != 0``, 3 ``d % count <
  (count + 1) / 2``, 4/5 ``d == count``.
* the gate: a rising edge reloads (restarts) modes 1, 2, 3 and 5; counting
  itself goes on whatever the gate (QEMU does not stop it).
* reset: every channel mode 3, count 0x10000, gate 1 (channel 2: gate 0).
* port 0x61 read: gate2 | speaker_data << 1 | refresh << 4 | OUT2 << 5, the
  refresh bit from host time (bit 14 of ns, as KVM); write: bit 0 = gate 2,
  bit 1 = speaker data.

Deviation, documented: QEMU computes d from the nanosecond difference
(``muldiv64(now - load_ns, f, 1e9)``); the model and the program use the
tick difference ``ticks(now) - ticks(load)``, which can differ by one tick.
Mode 1's OUT follows the QEMU source this was checked against (``d < count``);
a 2023 qemu-devel patch (Damien Zammit, "one-shot PIT") proposes ``d >= count``
as for mode 0 -- change :func:`out_at` and ``asm/port61.asm`` together if it
lands.  Interrupts: there is no timer here; :meth:`PIT.out` gives a channel's OUT
(channel 0 is IRQ0) at the current time for whoever injects interrupts.
"""

from __future__ import annotations

from bpfio.devices.base import U32, Model, layout, split_read, split_write
from bpfio.errors import PioError

L = layout("pit")
HZ = L["PIT_HZ"]
CH = L["PIT_CH_WORDS"]
LSB, MSB, WORD0, WORD1 = L["PIT_RW_LSB"], L["PIT_RW_MSB"], L["PIT_RW_WORD0"], L["PIT_RW_WORD1"]
FIELDS = ("COUNT", "LOAD_LO", "LOAD_HI", "MODE", "RW_MODE", "READ_STATE", "WRITE_STATE",
          "WRITE_LATCH", "LATCHED", "COUNT_LATCHED", "STATUS", "STATUS_LATCHED", "GATE", "BCD")
F = {name: L["PIT_" + name] for name in FIELDS}
P61 = {name: L["P61_" + name] for name in ("COUNT", "LOAD_LO", "LOAD_HI", "MODE", "GATE",
                                           "DATA_ON")}


def count_at(count: int, mode: int, d: int) -> int:
    """QEMU's pit_get_count for reload value ``count`` after ``d`` ticks."""
    if mode in (0, 1, 4, 5):
        return (count - d) & 0xffff
    if mode == 3:
        return count - (2 * d) % count
    return count - d % count


def out_at(count: int, mode: int, d: int) -> int:
    """QEMU's pit_get_out: the OUT pin (0 or 1) after ``d`` ticks."""
    if mode == 1:
        return int(d < count)
    if mode == 2:
        return int(d % count == 0 and d != 0)
    if mode == 3:
        return int(d % count < (count + 1) >> 1)
    if mode in (4, 5):
        return int(d == count)
    return int(d >= count)


class PIT(Model):
    """The three channels and the control port (binding: 0x40, length 4, clock_hz=PIT_HZ)."""

    MEM_WORDS = L["PIT_MEM_WORDS"]

    def __init__(self):
        self.port61 = None   # the Port61 model mirroring channel 2, once linked

    def reset(self) -> None:
        """Power-on state (pit_reset_common)."""
        if self.binding.clock_hz != HZ:
            raise PioError(f"PIT needs clock_hz={HZ} on its binding "
                           f"(has {self.binding.clock_hz})")
        for i in range(3 * CH):
            self.mem[i] = 0
        now = self.binding.ticks()
        for c in range(3):
            self._set(c, "MODE", 3)
            self._set(c, "GATE", int(c != 2))
            self._load(c, 0x10000, now)

    # -- channel words ------------------------------------------------------
    def _get(self, c: int, name: str) -> int:
        return self.mem[c * CH + F[name]]

    def _set(self, c: int, name: str, value: int) -> None:
        self.mem[c * CH + F[name]] = value

    def _elapsed(self, c: int, now: int | None = None) -> int:
        if now is None:
            now = self.binding.ticks()
        load = self._get(c, "LOAD_HI") << 32 | self._get(c, "LOAD_LO")
        return max(now - load, 0)

    def _load(self, c: int, value: int, now: int | None = None) -> None:
        """pit_load_count: 0 means 0x10000; restart counting now."""
        if now is None:
            now = self.binding.ticks()
        self._set(c, "COUNT", value or 0x10000)
        self._set(c, "LOAD_LO", now & U32)
        self._set(c, "LOAD_HI", now >> 32)
        if c == 2:
            self._mirror()

    def count(self, c: int) -> int:
        """The channel's current count (1..0x10000 or 0..0xffff per mode)."""
        count = self._get(c, "COUNT") or 0x10000
        return count_at(count, self._get(c, "MODE"), self._elapsed(c))

    def out(self, c: int, now: int | None = None) -> int:
        """The channel's OUT pin at tick ``now`` (default: now); channel 0 drives IRQ0."""
        count = self._get(c, "COUNT") or 0x10000
        return out_at(count, self._get(c, "MODE"), self._elapsed(c, now))

    def _latch(self, c: int) -> None:
        """pit_latch_count: snapshot once; read back in the channel's RW mode."""
        if not self._get(c, "COUNT_LATCHED"):
            self._set(c, "LATCHED", self.count(c))
            self._set(c, "COUNT_LATCHED", self._get(c, "RW_MODE"))

    def set_gate(self, c: int, level: int, now: int | None = None) -> None:
        """pit_set_gate: a rising edge restarts modes 1, 2, 3 and 5."""
        level &= 1
        if self._get(c, "GATE") < level and self._get(c, "MODE") in (1, 2, 3, 5):
            self._load(c, self._get(c, "COUNT"), now)
        self._set(c, "GATE", level)
        if c == 2:
            self._mirror()

    # -- port 0x61 mirror ---------------------------------------------------
    def _mirror(self) -> None:
        p = self.port61
        if p is None or p.mem is None:
            return
        for name in ("COUNT", "LOAD_LO", "LOAD_HI", "MODE", "GATE"):
            p.mem[P61[name]] = self._get(2, name)

    def link_port61(self, port61: "Port61") -> None:
        """Let ``port61`` see channel 2 (called by :meth:`Port61.attach`)."""
        self.port61 = port61
        self._mirror()

    # -- guest accesses -----------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        """Byte reads per port (a wide read covers the next ports)."""
        return split_read(self._read_byte, offset, size, self.length)

    def io_write(self, offset: int, size: int, value: int) -> None:
        """Byte writes per port, low byte first."""
        split_write(self._write_byte, offset, size, value, self.length)

    def _read_byte(self, offset: int) -> int:
        if offset >= 3:
            return 0                      # write-only control register
        c = offset
        if self._get(c, "STATUS_LATCHED"):
            self._set(c, "STATUS_LATCHED", 0)
            return self._get(c, "STATUS") & 0xff
        latched = self._get(c, "COUNT_LATCHED")
        if latched:
            value = self._get(c, "LATCHED")
            if latched == MSB:
                self._set(c, "COUNT_LATCHED", 0)
                return (value >> 8) & 0xff
            self._set(c, "COUNT_LATCHED", MSB if latched == WORD0 else 0)
            return value & 0xff
        count = self.count(c)
        state = self._get(c, "READ_STATE")
        if state == MSB:
            return (count >> 8) & 0xff
        if state == WORD0:
            self._set(c, "READ_STATE", WORD1)
            return count & 0xff
        if state == WORD1:
            self._set(c, "READ_STATE", WORD0)
            return (count >> 8) & 0xff
        return count & 0xff

    def _write_byte(self, offset: int, value: int) -> None:
        if offset == 3:
            self._control(value)
            return
        c = offset
        state = self._get(c, "WRITE_STATE")
        if state == MSB:
            self._load(c, value << 8)
        elif state == WORD0:
            self._set(c, "WRITE_LATCH", value)
            self._set(c, "WRITE_STATE", WORD1)
        elif state == WORD1:
            self._load(c, self._get(c, "WRITE_LATCH") | value << 8)
            self._set(c, "WRITE_STATE", WORD0)
        else:                              # LSB, and QEMU's default case
            self._load(c, value)

    def _control(self, value: int) -> None:
        sc = value >> 6
        if sc == 3:                        # read-back
            for c in range(3):
                if value & (2 << c):
                    if not value & 0x20:
                        self._latch(c)
                    if not value & 0x10 and not self._get(c, "STATUS_LATCHED"):
                        self._set(c, "STATUS", self.out(c) << 7 | self._get(c, "RW_MODE") << 4
                                  | self._get(c, "MODE") << 1 | self._get(c, "BCD"))
                        self._set(c, "STATUS_LATCHED", 1)
            return
        access = (value >> 4) & 3
        if access == 0:
            self._latch(sc)
            return
        for name in ("RW_MODE", "READ_STATE", "WRITE_STATE"):
            self._set(sc, name, access)
        self._set(sc, "MODE", (value >> 1) & 7)
        self._set(sc, "BCD", value & 1)
        if sc == 2:
            self._mirror()

    def state(self) -> dict:
        """Comparable state: every channel field."""
        return {f"ch{c}.{name}": self._get(c, name) for c in range(3) for name in FIELDS}


class Port61(Model):
    """Port 0x61: channel-2 gate and speaker data (write), OUT2 and refresh (read).

    ``pit`` is the PIT model, or the name of the machine binding that holds it
    (the PIT binding must be attached first, as in ``examples/pit.toml``).
    """

    MEM_WORDS = L["P61_MEM_WORDS"]
    mem = None

    def __init__(self, pit: "PIT | str" = "pit"):
        self._pit_ref = pit
        self.pit: PIT | None = pit if isinstance(pit, PIT) else None

    def attach(self, binding) -> None:
        """Find the PIT model and mirror its channel 2 into this binding's words."""
        if self.pit is None:
            machine = getattr(binding, "machine", None)
            other = machine.bindings.get(self._pit_ref) if machine is not None else None
            if other is None or not isinstance(other.device, PIT):
                raise PioError(f"Port61: no PIT binding named '{self._pit_ref}' is attached "
                               f"before this one")
            self.pit = other.device
        super().attach(binding)

    def reset(self) -> None:
        """Speaker off; channel 2's fields copied from the PIT."""
        if self.binding.clock_hz != HZ:
            raise PioError(f"Port61 needs clock_hz={HZ} on its binding "
                           f"(has {self.binding.clock_hz})")
        for i in range(len(self.mem)):
            self.mem[i] = 0
        self.pit.link_port61(self)

    def _pit_lock(self):
        b = self.pit.binding
        return b.lock if b is not None and b is not self.binding else _NoLock()

    def io_read(self, offset: int, size: int) -> int:
        """gate2 | data << 1 | refresh << 4 | OUT2 << 5 (one byte; wider bytes all ones)."""
        def read(_o):
            with self._pit_lock():
                gate, out = self.pit._get(2, "GATE"), self.pit.out(2, self.binding.ticks())
            refresh = (self.binding.now_ns() >> 14) & 1
            return gate | self.mem[P61["DATA_ON"]] << 1 | refresh << 4 | out << 5
        return split_read(read, offset, size, self.length)

    def io_write(self, offset: int, size: int, value: int) -> None:
        """Bit 0 gates channel 2, bit 1 enables the speaker data."""
        def write(_o, v):
            self.mem[P61["DATA_ON"]] = (v >> 1) & 1
            with self._pit_lock():
                self.pit.set_gate(2, v & 1, self.binding.ticks())
        split_write(write, offset, size, value, self.length)

    def state(self) -> dict:
        """Comparable state: the speaker bit and the channel-2 mirror."""
        return {name: self.mem[i] for name, i in P61.items()}


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
