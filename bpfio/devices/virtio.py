"""A legacy (virtio 0.9.5) virtio-net PCI device's I/O BAR0, as QEMU serves it.

The register handlers follow QEMU's ``virtio_ioport_read``/``_write`` and
``virtio_pci_config_read``/``_write`` (legacy, no MSI-X, so the device
config starts at offset 20): the register is chosen by the offset alone,
whatever the access width (reads of non-register offsets give all ones);
device status 0 or a queue PFN of 0 resets the device; guest features are
masked by the host's and refused once FEATURES_OK is set; reading the ISR
returns and clears it and deasserts INTx.

A queue notify (any width, as QEMU's handler) of queue q signals the
binding's notifier q when the queue has a ring address -- exactly what
``asm/virtio.asm`` does for 16-bit kicks, so the host sees the same
notifiers whichever path served the kick.  Before signalling, the queue's
bit in the shared ``VIRTIO_NEED_NOTIFY`` word is cleared (see
``asm/virtio.inc``); :meth:`VirtioNet.rearm` sets it again.

Device config (8 bytes, virtio-net with VIRTIO_NET_F_MAC|STATUS): the MAC
address (writable, kept as QEMU's ``set_config`` keeps it for legacy drivers)
and the link status (read-only: QEMU rewrites it before every read).
"""

from __future__ import annotations

from contextlib import nullcontext

from bpfio.errors import PioError
from bpfio.devices.base import SIZE_MASK, layout
from bpfio.devices.uart import check_memory

V = layout("virtio")
QVALID, NEED = V["VIRTIO_QVALID"], V["VIRTIO_NEED_NOTIFY"]
QUEUES_MAX, MEM_WORDS = V["VIRTIO_QUEUES_MAX"], V["VIRTIO_MEM_WORDS"]
QUEUE_MAX = V["VIRTIO_QUEUE_MAX"]
CONFIG_OFF = V["VIRTIO_PCI_CONFIG"]

STATUS_FEATURES_OK = 8
F_BAD_FEATURE = 1 << 30
# VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | NOTIFY_ON_EMPTY | ANY_LAYOUT | INDIRECT_DESC | EVENT_IDX
HOST_FEATURES = (1 << 5) | (1 << 16) | (1 << 24) | (1 << 27) | (1 << 28) | (1 << 29)
BAD_FEATURES = 1 << 5
DEFAULT_MAC = "52:54:00:12:34:56"


class VirtioNet:
    """Legacy virtio-PCI BAR0 registers of a virtio-net with ``queue_sizes`` queues."""

    def __init__(self, *, queue_sizes=(256, 256, 64), host_features: int = HOST_FEATURES,
                 mac: str = DEFAULT_MAC, link_up: bool = True):
        try:
            sizes = list(queue_sizes)
        except TypeError:
            sizes = []
        if not 1 <= len(sizes) <= QUEUES_MAX or any(
                not isinstance(n, int) or n < 1 or n & (n - 1) or n > 32768 for n in sizes):
            raise PioError(f"virtio: queue_sizes must be 1..{QUEUES_MAX} powers of two "
                           f"<= 32768, got {queue_sizes!r}")
        try:
            mac_bytes = bytes(int(b, 16) for b in mac.split(":"))
            if len(mac_bytes) != 6:
                raise ValueError
        except ValueError:
            raise PioError(f"virtio: mac {mac!r} is not six hex bytes like 52:54:00:12:34:56")
        self.queue_sizes = sizes
        self.host_features = host_features & 0xFFFFFFFF
        self.mac = bytearray(mac_bytes)
        self.link_up = link_up
        self.mem = [0] * MEM_WORDS
        self.binding = None
        self.irq_level = False
        self.resets = 0
        self.reset()
        self.resets = 0

    def attach(self, binding) -> None:
        """Keep the shared words (QVALID, NEED_NOTIFY) and the notifiers."""
        check_memory(binding, MEM_WORDS, "virtio")
        if len(binding.notifiers) < len(self.queue_sizes):
            raise PioError(f"binding '{binding.name}': the virtio model needs notifiers >= "
                           f"{len(self.queue_sizes)} (one per queue), the binding has "
                           f"{len(binding.notifiers)}")
        old = self.mem
        self.binding, self.mem = binding, binding.mem
        for i in range(MEM_WORDS):
            self.mem[i] = old[i]
        self._publish()

    def _host(self):
        return self.binding.lock if self.binding is not None else nullcontext()

    def reset(self) -> None:
        """QEMU ``virtio_reset``: status, features, selector, ISR, rings back to 0."""
        self.status = 0
        self.guest_features = 0
        self.queue_sel = 0
        self.isr = 0
        self.desc = [0] * len(self.queue_sizes)     # ring address of each queue
        self.irq_level = False
        self.resets += 1
        self.mem[NEED] = (1 << len(self.queue_sizes)) - 1   # every consumer idle
        self._publish()

    def _publish(self) -> None:
        self.mem[QVALID] = sum(1 << q for q, a in enumerate(self.desc) if a)

    # -- the guest's accesses -------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        """A guest IN at BAR0 + offset (truncated to the access size, as QEMU's memory core)."""
        return self._read(offset, size) & SIZE_MASK[size]

    def _read(self, offset: int, size: int) -> int:
        if offset >= CONFIG_OFF:
            return self._config_read(offset - CONFIG_OFF, size)
        q = self.queue_sel
        if offset == 0:
            return self.host_features
        if offset == 4:
            return self.guest_features
        if offset == 8:
            return (self.desc[q] >> 12) & 0xFFFFFFFF if q < len(self.desc) else 0
        if offset == 12:
            return self.queue_sizes[q] if q < len(self.queue_sizes) else 0
        if offset == 14:
            return self.queue_sel
        if offset == 18:
            return self.status
        if offset == 19:
            ret, self.isr = self.isr, 0              # read-and-clear, INTx deasserted
            self.irq_level = False
            return ret
        return 0xFFFFFFFF

    def io_write(self, offset: int, size: int, value: int) -> None:
        """A guest OUT at BAR0 + offset."""
        if offset >= CONFIG_OFF:
            self._config_write(offset - CONFIG_OFF, size, value)
        elif offset == 4:
            if value & F_BAD_FEATURE:                # the guest did not negotiate
                value = BAD_FEATURES
            if not self.status & STATUS_FEATURES_OK:
                self.guest_features = value & self.host_features
        elif offset == 8:
            if value == 0:
                self.reset()
            elif self.queue_sel < len(self.desc) and self.queue_sizes[self.queue_sel]:
                self.desc[self.queue_sel] = value << 12
        elif offset == 14:
            if value < QUEUE_MAX:
                self.queue_sel = value
        elif offset == 16:
            if value < QUEUE_MAX:
                self._notify(value)
        elif offset == 18:
            self.status = value & 0xFF
            if self.status == 0:
                self.reset()
        self._publish()

    def _notify(self, q: int) -> None:
        """QEMU ``virtio_queue_notify``: a queue without a ring ignores the kick."""
        if q < len(self.desc) and self.desc[q]:
            self.mem[NEED] &= ~(1 << q)
            if self.binding is not None:
                self.binding.notifier(q).signal()

    def _config(self) -> bytes:
        return bytes(self.mac) + (1 if self.link_up else 0).to_bytes(2, "little")

    def _config_read(self, addr: int, size: int) -> int:
        cfg = self._config()
        if addr + size > len(cfg):
            return 0xFFFFFFFF
        return int.from_bytes(cfg[addr:addr + size], "little")

    def _config_write(self, addr: int, size: int, value: int) -> None:
        if addr + size > len(self._config()):
            return
        for i in range(size):
            if addr + i < 6:
                self.mac[addr + i] = (value >> (8 * i)) & 0xFF

    # -- host side ----------------------------------------------------------
    def rearm(self, q: int) -> None:
        """The host consumer of queue q is idle again: set its NEED_NOTIFY bit."""
        with self._host():
            self.mem[NEED] |= 1 << q

    def interrupt(self, isr_bits: int = 1) -> None:
        """The device raises INTx: bit 0 used-buffer, bit 1 config change."""
        with self._host():
            self.isr |= isr_bits & 0xFF
            self.irq_level = bool(self.isr)

    def state(self) -> dict:
        """Device state as comparable data (shared words included)."""
        with self._host():
            return {"status": self.status, "guest_features": self.guest_features,
                    "queue_sel": self.queue_sel, "isr": self.isr, "desc": list(self.desc),
                    "irq_level": self.irq_level, "mac": bytes(self.mac),
                    "resets": self.resets, "mem": list(self.mem[:MEM_WORDS])}
