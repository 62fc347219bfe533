"""PCI configuration mechanism #1 (0xCF8..0xCFF) with a few bus-0 functions.

QEMU's ``hw/pci/pci_host.c`` semantics: CONFIG_ADDRESS is written only by a
32-bit OUT to 0xCF8 and reads back unmasked at any width; config-data
accesses at 0xCFC + lane use ``config_reg | lane``; with the enable bit clear
or for an absent function they read all ones and drop writes.  Config-space
writes go byte by byte through a write mask and a write-1-to-clear mask
(``pci_default_write_config``), which is what BAR sizing relies on: a BAR's
mask is ~(size - 1), so writing all ones reads back the size.

0xCF9 is the PIIX reset control register (QEMU maps it over the config
address port with a higher priority; bpfio has no overlaps, so the model
serves it): bit 2 requests a reset (counted in :attr:`reset_requests`, and
the config spaces return to power-on), bit 1 is kept.  An access at 0xCF9
of any width is the reset control register; its high bytes read 0.

Config spaces live in the binding's shared memory (``asm/pci.inc``), so the
program answers every config read; the model keeps only the write masks.

The default bus (``DEFAULT_DEVICES``) is QEMU's ``-M pc`` minimum with a
legacy virtio-net: 00:00.0 i440FX host bridge 8086:1237, 00:01.0 PIIX3 ISA
bridge 8086:7000 (multi-function header), 00:03.0 virtio-net 1af4:1000
with a 32-byte I/O BAR0 (``disable-modern=on,vectors=0``).  Values are at
power-on, before firmware assigns BARs.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import NamedTuple

from bpfio.errors import PioError
from bpfio.devices.base import SIZE_MASK, layout
from bpfio.devices.uart import check_memory

L = layout("pci")
ADDR, MAP, SHADOW = L["PCI_ADDR"], L["PCI_MAP"], L["PCI_SHADOW"]
SLOT_WORDS, SLOTS_MAX = L["PCI_SLOT_WORDS"], L["PCI_SLOTS_MAX"]

ENABLE = 0x80000000
ALL_ONES = 0xFFFFFFFF
COMMAND_WMASK = 0x0407          # IO | MEMORY | MASTER | INTX_DISABLE
STATUS_W1C = 0xF900             # parity, target/master aborts, SERR, detected parity
SUBSYS_QEMU = (0x1AF4, 0x1100)  # QEMU's default subsystem IDs for type-0 functions


class Function(NamedTuple):
    """A function's power-on config space and its write masks (256 bytes each)."""

    name: str
    config: bytes
    wmask: bytes
    w1cmask: bytes


def make_function(name: str, vendor: int, device: int, *, revision: int = 0,
                  class_code: int = 0, header_type: int = 0, subsystem=SUBSYS_QEMU,
                  irq_pin: int = 0, bars=(), extra: dict[int, int] | None = None) -> Function:
    """Build a type-0 header; ``bars`` is a list of (index, size, is_io)."""
    cfg = bytearray(256)
    wm = bytearray(256)
    w1c = bytearray(256)
    cfg[0:2] = vendor.to_bytes(2, "little")
    cfg[2:4] = device.to_bytes(2, "little")
    cfg[8] = revision
    cfg[9:12] = class_code.to_bytes(3, "little")      # prog-if, subclass, class
    cfg[0x0E] = header_type
    cfg[0x2C:0x2E] = subsystem[0].to_bytes(2, "little")
    cfg[0x2E:0x30] = subsystem[1].to_bytes(2, "little")
    cfg[0x3D] = irq_pin
    wm[4:6] = COMMAND_WMASK.to_bytes(2, "little")
    w1c[6:8] = STATUS_W1C.to_bytes(2, "little")
    wm[0x0C] = 0xFF                                    # cache line size
    wm[0x3C] = 0xFF                                    # interrupt line
    wm[0x40:0x100] = b"\xff" * 0xC0                    # device-specific registers
    for index, size, is_io in bars:
        if size & (size - 1) or not 4 <= size <= 1 << 31:
            raise PioError(f"pci function {name}: BAR{index} size {size:#x} is not a power of two")
        off = 0x10 + 4 * index
        cfg[off:off + 4] = (1 if is_io else 0).to_bytes(4, "little")
        wm[off:off + 4] = (~(size - 1) & ALL_ONES).to_bytes(4, "little")
    for reg, value in (extra or {}).items():
        cfg[reg] = value
    return Function(name, bytes(cfg), bytes(wm), bytes(w1c))


KINDS = {
    "i440fx": lambda: make_function("i440fx", 0x8086, 0x1237, revision=0x02,
                                    class_code=0x060000, extra={0x72: 0x02}),  # SMRAM reset value
    "piix3": lambda: make_function("piix3", 0x8086, 0x7000, class_code=0x060100,
                                   header_type=0x80),
    "virtio-net": lambda: make_function("virtio-net", 0x1AF4, 0x1000, class_code=0x020000,
                                        subsystem=(0x1AF4, 0x0001), irq_pin=1,
                                        bars=[(0, 0x20, True)]),
}
DEFAULT_DEVICES = ("00.0=i440fx", "01.0=piix3", "03.0=virtio-net")


def parse_devices(specs) -> list[tuple[int, str]]:
    """Parse ``["SS.F=kind", ...]`` into (devfn, kind); errors name the entry."""
    if isinstance(specs, (str, bytes)) or not hasattr(specs, "__iter__"):
        raise PioError(f"pci devices must be a list like ['03.0=virtio-net'], not {specs!r}")
    out = []
    for spec in specs:
        try:
            where, kind = str(spec).split("=")
            slot, fn = where.split(".")
            devfn = (int(slot, 16) << 3) | int(fn, 8)
            if not (0 <= int(slot, 16) < 32 and 0 <= int(fn) < 8):
                raise ValueError
        except ValueError:
            raise PioError(f"pci device {spec!r}: expected 'SLOT.FN=kind', e.g. '03.0=virtio-net'")
        if kind not in KINDS:
            raise PioError(f"pci device {spec!r}: unknown kind {kind!r} "
                           f"(known: {', '.join(sorted(KINDS))})")
        if devfn in [d for d, _ in out]:
            raise PioError(f"pci device {spec!r}: {where} is given twice")
        out.append((devfn, kind))
    if len(out) > SLOTS_MAX:
        raise PioError(f"pci: at most {SLOTS_MAX} functions fit the shared memory, got {len(out)}")
    return out


def mem_words_for(n_functions: int) -> int:
    """Shared words a binding needs for ``n_functions`` config spaces."""
    return SHADOW + SLOT_WORDS * n_functions


class PCIHost:
    """CONFIG_ADDRESS/CONFIG_DATA, the reset control register and bus 0's functions."""

    def __init__(self, devices=DEFAULT_DEVICES):
        self.devices = parse_devices(devices)
        self.functions = [KINDS[kind]() for _, kind in self.devices]
        self.slot_of = {devfn: s for s, (devfn, _) in enumerate(self.devices)}
        self.mem = [0] * mem_words_for(len(self.devices))
        self.binding = None
        self.reset_requests = 0
        self.rcr = 0
        self.reset()

    def attach(self, binding) -> None:
        """Move the config spaces into the binding's shared memory."""
        check_memory(binding, mem_words_for(len(self.devices)), "pci")
        old = self.mem
        self.binding, self.mem = binding, binding.mem
        for i, w in enumerate(old):
            self.mem[i] = w

    def _host(self):
        return self.binding.lock if self.binding is not None else nullcontext()

    def reset(self) -> None:
        """Power-on: CONFIG_ADDRESS 0, RCR 0, every config space as built."""
        m = self.mem
        m[ADDR] = 0
        self.rcr = 0
        for i in range(MAP, SHADOW):
            m[i] = 0
        for devfn, slot in self.slot_of.items():
            w = MAP + devfn // 4
            m[w] |= (slot + 1) << (8 * (3 - devfn % 4))
        for slot, fn in enumerate(self.functions):
            base = SHADOW + SLOT_WORDS * slot
            for d in range(64):
                m[base + d] = int.from_bytes(fn.config[4 * d:4 * d + 4], "little")

    # -- config bytes in shared memory ---------------------------------------
    def _get(self, slot: int, reg: int) -> int:
        return (self.mem[SHADOW + SLOT_WORDS * slot + reg // 4] >> (8 * (reg % 4))) & 0xFF

    def _set(self, slot: int, reg: int, value: int) -> None:
        i = SHADOW + SLOT_WORDS * slot + reg // 4
        shift = 8 * (reg % 4)
        self.mem[i] = (self.mem[i] & ~(0xFF << shift)) | (value << shift)

    def _lookup(self, offset: int):
        """(slot, register byte) the data port addresses, or None for all ones."""
        cfg = self.mem[ADDR]
        if not cfg & ENABLE:
            return None
        addr = cfg | (offset & 3)
        if (addr >> 16) & 0xFF != 0:
            return None                           # bus 0 only: no bridges modelled
        slot = self.slot_of.get((addr >> 8) & 0xFF)
        return None if slot is None else (slot, addr & 0xFF)

    # -- the guest's accesses -------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        """A guest IN at 0xCF8 + offset (truncated to the access size, as QEMU's memory core)."""
        return self._read(offset, size) & SIZE_MASK[size]

    def _read(self, offset: int, size: int) -> int:
        if offset == 1:
            return self.rcr
        if offset < 4:
            return self.mem[ADDR]                 # unmasked, at any width (QEMU)
        target = self._lookup(offset)
        if target is None:
            return ALL_ONES
        slot, reg = target
        value = 0
        for i in range(min(size, 256 - reg)):     # QEMU reads MIN(len, limit - addr) bytes
            value |= self._get(slot, reg + i) << (8 * i)
        return value

    def io_write(self, offset: int, size: int, value: int) -> None:
        """A guest OUT at 0xCF8 + offset."""
        if offset == 1:
            self._rcr_write(value & 0xFF)
            return
        if offset < 4:
            if offset == 0 and size == 4:         # byte/word writes are ignored (QEMU)
                self.mem[ADDR] = value
            return
        target = self._lookup(offset)
        if target is None:
            return
        slot, reg = target
        fn = self.functions[slot]
        for i in range(min(size, 256 - reg)):     # pci_default_write_config, byte by byte
            r = reg + i
            byte = (value >> (8 * i)) & 0xFF
            new = (self._get(slot, r) & ~fn.wmask[r]) | (byte & fn.wmask[r])
            self._set(slot, r, new & ~(byte & fn.w1cmask[r]) & 0xFF)

    def _rcr_write(self, value: int) -> None:
        if value & 4:                             # reset request (PIIX RCR bit 2)
            self.reset_requests += 1
            self.reset()
            return
        self.rcr = value & 2

    # -- host side ----------------------------------------------------------
    def config(self, devfn: int) -> bytes:
        """The current 256-byte config space of a bus-0 function."""
        with self._host():
            slot = self.slot_of[devfn]
            return bytes(self._get(slot, r) for r in range(256))

    def state(self) -> dict:
        """Device state as comparable data (program scratch words excluded)."""
        with self._host():
            return {"config_address": self.mem[ADDR], "rcr": self.rcr,
                    "reset_requests": self.reset_requests,
                    "mem": list(self.mem[MAP:mem_words_for(len(self.devices))])}
