"""A 16550A UART (COM1 at 0x3F8) as QEMU's ``hw/char/serial.c`` emulates it.

The model is the whole device: divisor latch, FIFOs, line/modem status,
interrupt identification with QEMU's priorities, loopback, the character
timeout, and THR output collected in :attr:`UART.output`.  It is both the
fallback of ``asm/uart.asm`` and the oracle the program is tested against.

What the program may answer is decided here, not in the program: after every
access the model *publishes* (``_publish``) the value a byte read of each
register would return, a bitmap of registers whose reads are side-effect
free, and whether a THR write may be queued in the shared TX ring (layout in
``asm/uart.inc``).  Every model entry first drains that ring through the
normal THR path, so output order and device state are exactly as if every
byte had come here.

Host side: :meth:`receive` queues input bytes (delivered as QEMU's chardev
does, only as far as ``can_receive`` allows), :attr:`output` /
:meth:`take_output` give the transmitted bytes, :attr:`irq_level` is the
IRQ line (IRQ 4 for COM1).  Host calls take the binding lock themselves;
never call them from inside another device model.

The transmitter never blocks (QEMU with a chardev that always accepts):
after a THR write LSR is back to THRE|TEMT at once.  Modem lines are those of
a non-tty chardev (MSR 0xB0, no deltas) unless :meth:`set_modem_lines`
changes them.  Multi-byte accesses are split into byte accesses low byte
first (QEMU's ``impl`` 1..1); bytes past offset 7 read 0xFF and drop writes.
"""

from __future__ import annotations

from collections import deque
from contextlib import nullcontext

from bpfio.errors import PioError
from bpfio.devices.base import layout


def check_memory(binding, needed: int, model: str) -> None:
    """Raise PioError when ``binding`` has fewer than ``needed`` shared words."""
    if len(binding.mem) < needed:
        name = getattr(binding, "name", "?")
        raise PioError(f"binding '{name}': the {model} model needs mem_words >= {needed}, "
                       f"the binding has {len(binding.mem)}")


L = layout("uart")
MEM_WORDS = L["UART_MEM_WORDS"]
SCR_WORD = L["UART_SCR_WORD"]
FASTRD = L["UART_FASTRD"]
TXOK = L["UART_TXOK"]
TXCNT = L["UART_TXCNT"]
RING = L["UART_RING"]
RING_SIZE = L["UART_RING_SIZE"]

# Register bits (PC16550D datasheet names, as QEMU and Linux use them).
LCR_DLAB = 0x80
LSR_DR, LSR_OE, LSR_PE, LSR_FE, LSR_BI = 0x01, 0x02, 0x04, 0x08, 0x10
LSR_THRE, LSR_TEMT = 0x20, 0x40
LSR_INT_ANY = 0x1E                      # OE|PE|FE|BI: a receiver line status interrupt
IER_RDI, IER_THRI, IER_RLSI, IER_MSI = 0x01, 0x02, 0x04, 0x08
IIR_NO_INT, IIR_MSI, IIR_THRI, IIR_RDI, IIR_RLSI, IIR_CTI = 0x01, 0x00, 0x02, 0x04, 0x06, 0x0C
IIR_ID = 0x06                           # QEMU's mask for "which interrupt"
IIR_FE = 0xC0                           # FIFOs enabled
FCR_FE, FCR_RFR, FCR_XFR = 0x01, 0x02, 0x04
MCR_LOOP = 0x10
MSR_DCTS, MSR_DDSR, MSR_TERI, MSR_DDCD = 0x01, 0x02, 0x04, 0x08
MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 0x10, 0x20, 0x40, 0x80
MSR_ANY_DELTA = 0x0F
FIFO_SIZE = 16
BAUDBASE = 115200                       # 1.8432 MHz / 16
NS = 1_000_000_000


class UART:
    """The 16550A register file (``io_read``/``io_write``) plus host-side I/O."""

    def __init__(self, *, baudbase: int = BAUDBASE):
        self.baudbase = baudbase
        self.mem = [0] * MEM_WORDS       # replaced by the binding's memory at attach
        self.binding = None
        self._output = bytearray()
        self.rx_pending: deque[int] = deque()   # host bytes the UART cannot take yet
        self.irq_raises = 0
        self.reset()

    # -- wiring -------------------------------------------------------------
    def attach(self, binding) -> None:
        """Keep the binding's shared memory (the program's view) and clock."""
        check_memory(binding, MEM_WORDS, "uart")
        old = self.mem
        self.binding, self.mem = binding, binding.mem
        for i in range(MEM_WORDS):
            self.mem[i] = old[i]
        self._publish()

    def _now(self) -> int:
        return self.binding.now_ns() if self.binding is not None else 0

    def _host(self):
        return self.binding.lock if self.binding is not None else nullcontext()

    # -- reset --------------------------------------------------------------
    def reset(self) -> None:
        """Power-on state (QEMU ``serial_reset``): 9600 8N1, LSR 0x60, MSR 0xB0, MCR OUT2."""
        self.rbr = self.thr = self.tsr = 0
        self.ier = 0
        self.iir = IIR_NO_INT
        self.lcr = 0
        self.lsr = LSR_TEMT | LSR_THRE
        self.msr = MSR_DCD | MSR_DSR | MSR_CTS
        self.divider = 0x0C
        self.mcr = 0x08
        self.fcr = 0
        self.mem[SCR_WORD] = 0
        self.recv_fifo: deque[int] = deque()
        self.xmit_fifo: deque[int] = deque()
        self.recv_fifo_itl = 1
        self.thr_ipending = 0
        self.timeout_ipending = 0
        self.timeout_at: int | None = None   # the FIFO character-timeout timer
        self.char_transmit_time = (NS // 9600) * 10
        self.last_break_enable = 0
        self.irq_level = False
        self.mem[TXCNT] = 0
        self._publish()

    # -- the guest's accesses -------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        """A guest IN: byte reads low byte first, as QEMU splits them."""
        self._enter()
        value = 0
        for i in range(size):
            byte = self._read(offset + i) if offset + i < 8 else 0xFF
            value |= byte << (8 * i)
        self._publish()
        return value

    def io_write(self, offset: int, size: int, value: int) -> None:
        """A guest OUT: byte writes low byte first."""
        self._enter()
        for i in range(size):
            if offset + i < 8:
                self._write(offset + i, (value >> (8 * i)) & 0xFF)
        self._publish()

    def _enter(self) -> None:
        """What every model entry does first: drain the TX ring, fire a due timeout."""
        self._drain()
        self._run_timers()

    def _drain(self) -> None:
        """Feed the bytes the program queued through the normal THR path, oldest first."""
        n = self.mem[TXCNT]
        if n:
            self.mem[TXCNT] = 0
            for i in range(min(n, RING_SIZE)):
                self._thr_write(self.mem[RING + i] & 0xFF)

    def _run_timers(self) -> None:
        if self.timeout_at is not None and self._now() >= self.timeout_at:
            self.timeout_at = None
            if self.recv_fifo:                  # QEMU fifo_timeout_int
                self.timeout_ipending = 1
                self._update_irq()

    def _read(self, reg: int) -> int:
        if reg == 0:
            if self.lcr & LCR_DLAB:
                return self.divider & 0xFF
            if self.fcr & FCR_FE:
                ret = self.recv_fifo.popleft() if self.recv_fifo else 0
                if not self.recv_fifo:
                    self.lsr &= ~(LSR_DR | LSR_BI)
                else:
                    self.timeout_at = self._now() + 4 * self.char_transmit_time
                self.timeout_ipending = 0
            else:
                ret = self.rbr
                self.lsr &= ~(LSR_DR | LSR_BI)
            self._update_irq()
            if not self.mcr & MCR_LOOP:
                self._pump_rx()                 # qemu_chr_fe_accept_input
            return ret
        if reg == 1:
            return (self.divider >> 8) & 0xFF if self.lcr & LCR_DLAB else self.ier
        if reg == 2:
            ret = self.iir
            if ret & IIR_ID == IIR_THRI:        # reading IIR acknowledges THR empty
                self.thr_ipending = 0
                self._update_irq()
            return ret
        if reg == 3:
            return self.lcr
        if reg == 4:
            return self.mcr
        if reg == 5:
            ret = self.lsr
            if self.lsr & (LSR_BI | LSR_OE):
                self.lsr &= ~(LSR_BI | LSR_OE)
                self._update_irq()
            return ret
        if reg == 6:
            if self.mcr & MCR_LOOP:             # outputs wired back to the inputs
                return (((self.mcr & 0x0C) << 4) | ((self.mcr & 0x02) << 3)
                        | ((self.mcr & 0x01) << 5))
            ret = self.msr
            if self.msr & MSR_ANY_DELTA:
                self.msr &= 0xF0
                self._update_irq()
            return ret
        return self.mem[SCR_WORD] & 0xFF

    def _write(self, reg: int, val: int) -> None:
        if reg == 0:
            if self.lcr & LCR_DLAB:
                self.divider = (self.divider & 0xFF00) | val
                self._update_parameters()
            else:
                self._thr_write(val)
        elif reg == 1:
            if self.lcr & LCR_DLAB:
                self.divider = (self.divider & 0x00FF) | (val << 8)
                self._update_parameters()
            else:
                changed = (self.ier ^ val) & 0x0F
                self.ier = val & 0x0F
                # QEMU re-samples THRE when THRI is toggled (Windows relies on it).
                if changed & IER_THRI:
                    self.thr_ipending = int(bool(self.ier & IER_THRI and self.lsr & LSR_THRE))
                if changed:
                    self._update_irq()
        elif reg == 2:
            if (val ^ self.fcr) & FCR_FE:       # toggling FIFO enable flushes both FIFOs
                val |= FCR_XFR | FCR_RFR
            if val & FCR_RFR:
                self.lsr &= ~(LSR_DR | LSR_BI)
                self.timeout_at = None
                self.timeout_ipending = 0
                self.recv_fifo.clear()
            if val & FCR_XFR:
                self.lsr |= LSR_THRE
                self.thr_ipending = 1
                self.xmit_fifo.clear()
            self._write_fcr(val & 0xC9)
            self._update_irq()
        elif reg == 3:
            self.lcr = val
            self._update_parameters()
            self.last_break_enable = (val >> 6) & 1
        elif reg == 4:
            self.mcr = val & 0x1F
        elif reg == 7:
            self.mem[SCR_WORD] = val
        # LSR (5) and MSR (6) ignore writes.

    def _write_fcr(self, val: int) -> None:
        self.fcr = val
        if val & FCR_FE:
            self.iir |= IIR_FE
            self.recv_fifo_itl = {0x00: 1, 0x40: 4, 0x80: 8, 0xC0: 14}[val & 0xC0]
        else:
            self.iir &= ~IIR_FE

    def _update_parameters(self) -> None:
        """QEMU ``serial_update_parameters``: only the character time matters here."""
        if self.divider == 0 or self.divider > self.baudbase:
            return
        frame = 1 + (1 if self.lcr & 0x08 else 0) + (2 if self.lcr & 0x04 else 1) \
            + (self.lcr & 0x03) + 5
        self.char_transmit_time = NS * self.divider * frame // self.baudbase

    def _thr_write(self, val: int) -> None:
        self.thr = val
        if self.fcr & FCR_FE:
            if len(self.xmit_fifo) == FIFO_SIZE:    # transmit overrun drops the oldest
                self.xmit_fifo.popleft()
            self.xmit_fifo.append(val)
        self.thr_ipending = 0
        self.lsr &= ~(LSR_THRE | LSR_TEMT)
        self._update_irq()
        self._xmit()

    def _xmit(self) -> None:
        """QEMU ``serial_xmit`` with a backend that never blocks."""
        while True:
            if self.fcr & FCR_FE:
                self.tsr = self.xmit_fifo.popleft()
                if not self.xmit_fifo:
                    self.lsr |= LSR_THRE
            else:
                self.tsr = self.thr
                self.lsr |= LSR_THRE
            if self.lsr & LSR_THRE and not self.thr_ipending:
                self.thr_ipending = 1
                self._update_irq()
            if self.mcr & MCR_LOOP:
                self._receive1(self.tsr)
            else:
                self._output.append(self.tsr)
            if self.lsr & LSR_THRE:
                break
        self.lsr |= LSR_TEMT

    def _update_irq(self) -> None:
        """QEMU ``serial_update_irq``: pick the highest-priority pending source."""
        tmp = IIR_NO_INT
        if self.ier & IER_RLSI and self.lsr & LSR_INT_ANY:
            tmp = IIR_RLSI
        elif self.ier & IER_RDI and self.timeout_ipending:
            tmp = IIR_CTI
        elif (self.ier & IER_RDI and self.lsr & LSR_DR
              and (not self.fcr & FCR_FE or len(self.recv_fifo) >= self.recv_fifo_itl)):
            tmp = IIR_RDI
        elif self.ier & IER_THRI and self.thr_ipending:
            tmp = IIR_THRI
        elif self.ier & IER_MSI and self.msr & MSR_ANY_DELTA:
            tmp = IIR_MSI
        self.iir = tmp | (self.iir & 0xF0)
        level = tmp != IIR_NO_INT
        if level and not self.irq_level:
            self.irq_raises += 1
        self.irq_level = level

    # -- receive path -------------------------------------------------------
    def _can_receive(self) -> int:
        if self.fcr & FCR_FE:
            return FIFO_SIZE - len(self.recv_fifo)
        return 0 if self.lsr & LSR_DR else 1

    def _pump_rx(self) -> None:
        while self.rx_pending and self._can_receive() > 0:
            self._receive1(self.rx_pending.popleft())

    def _receive1(self, ch: int) -> None:
        """QEMU ``serial_receive1`` for one byte."""
        if self.fcr & FCR_FE:
            if len(self.recv_fifo) < FIFO_SIZE:
                self.recv_fifo.append(ch)
            else:                               # overruns never overwrite the FIFO
                self.lsr |= LSR_OE
            self.lsr |= LSR_DR
            self.timeout_at = self._now() + 4 * self.char_transmit_time
        else:
            if self.lsr & LSR_DR:
                self.lsr |= LSR_OE
            self.rbr = ch
            self.lsr |= LSR_DR
        self._update_irq()

    # -- what the program may do (see asm/uart.inc) ---------------------------
    def _publish(self) -> None:
        m = self.mem
        dlab = self.lcr & LCR_DLAB
        m[0] = self.divider & 0xFF if dlab else self.rbr
        m[1] = (self.divider >> 8) & 0xFF if dlab else self.ier
        m[2] = self.iir
        m[3] = self.lcr
        m[4] = self.mcr
        m[5] = self.lsr
        if self.mcr & MCR_LOOP:
            m[6] = (((self.mcr & 0x0C) << 4) | ((self.mcr & 0x02) << 3)
                    | ((self.mcr & 0x01) << 5))
        else:
            m[6] = self.msr
        fast = 0b10011010                       # IER/DLM, LCR, MCR, SCR: always pure
        if dlab:
            fast |= 1 << 0                      # DLL; RBR reads pop the FIFO
        if self.iir & IIR_ID != IIR_THRI and not (self.timeout_at is not None
                                                  and self.ier & IER_RDI):
            fast |= 1 << 2
        if not self.lsr & (LSR_BI | LSR_OE):
            fast |= 1 << 5
        if self.mcr & MCR_LOOP or not self.msr & MSR_ANY_DELTA:
            fast |= 1 << 6
        m[FASTRD] = fast
        m[TXOK] = int(not dlab and not self.ier & IER_THRI and not self.mcr & MCR_LOOP)

    # -- host side ----------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Queue bytes from the host (the chardev); they enter as the UART accepts them."""
        with self._host():
            self._enter()
            self.rx_pending.extend(bytes(data))
            self._pump_rx()
            self._publish()

    def set_modem_lines(self, msr: int) -> None:
        """Set CTS/DSR/RI/DCD (bits 4..7) as a tty backend would; deltas as QEMU derives them."""
        with self._host():
            self._enter()
            omsr = self.msr
            self.msr = (msr & 0xF0) | (omsr & MSR_ANY_DELTA)
            if self.msr != omsr:                # QEMU serial_update_msl
                self.msr |= ((self.msr >> 4) ^ (omsr >> 4)) & 0x0F
                if self.msr & MSR_TERI and not omsr & MSR_RI:   # TERI only on RI 1 -> 0
                    self.msr &= ~MSR_TERI
                self._update_irq()
            self._publish()

    @property
    def output(self) -> bytearray:
        """Every byte the guest transmitted, in order (the TX ring drained first)."""
        with self._host():
            self._drain()
            self._publish()
            return self._output

    def take_output(self) -> bytes:
        """Return and forget the bytes transmitted so far."""
        with self._host():
            self._drain()
            self._publish()
            out = bytes(self._output)
            self._output.clear()
            return out

    def state(self) -> dict:
        """The device state as comparable data (after draining the ring and timers)."""
        with self._host():
            self._enter()
            self._publish()
            return {
                "rbr": self.rbr, "thr": self.thr, "tsr": self.tsr, "ier": self.ier,
                "iir": self.iir, "lcr": self.lcr, "mcr": self.mcr, "lsr": self.lsr,
                "msr": self.msr, "scr": self.mem[SCR_WORD], "divider": self.divider,
                "fcr": self.fcr, "recv_fifo": bytes(self.recv_fifo),
                "xmit_fifo": bytes(self.xmit_fifo), "recv_fifo_itl": self.recv_fifo_itl,
                "thr_ipending": self.thr_ipending, "timeout_ipending": self.timeout_ipending,
                "timeout_at": self.timeout_at, "char_transmit_time": self.char_transmit_time,
                "irq_level": self.irq_level, "rx_pending": bytes(self.rx_pending),
                "output": bytes(self._output),
                # Shared words that are device state; the ring slots are a transport buffer.
                "mem": list(self.mem[0:RING]),
            }
