"""ACPI PM timer (PM_TMR_BLK): a free-running 24-bit counter at 3.579545 MHz.

The reference model of ``asm/pmtimer.asm``.  QEMU (hw/acpi/core.c,
``acpi_pm_tmr_get``) returns ``floor(virtual_ns * 3579545 / 1e9) & 0xffffff``
where the virtual clock starts at 0 when the VM starts; the counter wraps
every 2^24 ticks (about 4.687 s).  Since QEMU 5.1 a 1- or 2-byte read performs
a 4-byte read and returns its low bytes; writes are ignored.

Here the VM start is the moment the model is attached: the binding's tick
count then is kept in shared word ``PMTMR_START``, and a read returns
``(ticks - start) & 0xffffff``.  Attach the binding with
``clock_hz=3579545``.

``legacy_sizes=True`` mirrors QEMU before 5.1 (and after commit 5d971f9e67):
only 4-byte reads are valid, 1- and 2-byte reads return 0.  The program does
not implement that mode -- use the model alone for it.
"""

from __future__ import annotations

from bpfio.devices.base import U32, Model, layout

L = layout("pmtimer")
HZ = L["PMTMR_HZ"]
MASK = L["PMTMR_MASK"]
START = L["PMTMR_START"]
WRAP_NS = (1 << 24) * 1_000_000_000 / HZ   # about 4.687 s


class PMTimer(Model):
    """The ACPI PM timer register (the 4 ports of PM_TMR_BLK)."""

    MEM_WORDS = L["PMTMR_MEM_WORDS"]

    def __init__(self, legacy_sizes: bool = False):
        self.legacy_sizes = bool(legacy_sizes)

    def reset(self) -> None:
        """VM start: the counter reads 0 now."""
        b = self._need_binding()
        if not b.clock_hz:
            from bpfio.errors import PioError
            raise PioError(f"PMTimer needs clock_hz={HZ} on its binding")
        self.mem[START] = b.ticks() & U32

    def value(self) -> int:
        """The 24-bit counter now."""
        return (self.binding.ticks() - self.mem[START]) & MASK

    def io_read(self, offset: int, size: int) -> int:
        """Any read: the counter's low ``size`` bytes (0 for a narrow read in legacy mode)."""
        if self.legacy_sizes and size != 4:
            return 0
        return self.value()

    def io_write(self, offset: int, size: int, value: int) -> None:
        """Writes are ignored, as in QEMU."""

    def state(self) -> dict:
        """Comparable device state: the start tick."""
        return {"start": self.mem[START]}
