"""One vCPU: its fd, its mmapped struct kvm_run, its registers and how it enters the guest.

Setting a vCPU up is separate from running the VM (:mod:`bpfio.kvm.vmm`): real mode with
CS derived from the entry, or 32-bit protected mode with the flat GDT the VMM writes at
``GDT_ADDR``; EBX = the vCPU index, ECX = the count, ESP a per-vCPU stack below
``STACK_TOP``.
"""

from __future__ import annotations

import fcntl
import mmap
import os
from dataclasses import dataclass

from bpfio.errors import KvmError
from bpfio.kvm import abi as K


GDT_ADDR = 0x500


STACK_TOP = 0xF000


STACK_STRIDE = 0x800


def _ioctl(fd: int, request: int, arg=0, what: str = "ioctl"):
    try:
        return fcntl.ioctl(fd, request, arg)
    except OSError as err:
        raise KvmError(f"{what} failed: {err.strerror}") from None


@dataclass
class VcpuStats:
    """What one vCPU did: exits by kind, and how it stopped."""

    index: int
    exits: int = 0           # every return from KVM_RUN
    io_exits: int = 0        # KVM_EXIT_IO
    string_exits: int = 0    # KVM_EXIT_IO with count > 1
    accesses: int = 0        # port accesses (string I/O counts each element)
    stop: str = ""           # "hlt", "stopped", or the error reason
    rip: int = 0


class Vcpu:
    """One vCPU fd with its mmapped ``struct kvm_run``."""

    def __init__(self, vm, index: int):
        self.vm = vm
        self.index = index
        self.fd = -1
        self.run_map: mmap.mmap | None = None
        self.fd = _ioctl(vm.fd, K.KVM_CREATE_VCPU, index, "KVM_CREATE_VCPU")
        try:
            self.run_map = mmap.mmap(self.fd, vm.run_size, mmap.MAP_SHARED,
                                     mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as err:
            os.close(self.fd)
            self.fd = -1
            raise KvmError(f"mmap of vcpu {index} kvm_run failed: {err.strerror}") from None
        self.stats = VcpuStats(index)

    def get_regs(self) -> K.Regs:
        """Return the vCPU's general registers (KVM_GET_REGS)."""
        regs = K.Regs()
        _ioctl(self.fd, K.KVM_GET_REGS, regs, "KVM_GET_REGS")
        return regs

    def set_regs(self, regs: K.Regs) -> None:
        """Load the vCPU's general registers (KVM_SET_REGS)."""
        _ioctl(self.fd, K.KVM_SET_REGS, regs, "KVM_SET_REGS")

    def get_sregs(self) -> K.Sregs:
        """Return the vCPU's segment and control registers (KVM_GET_SREGS)."""
        sregs = K.Sregs()
        _ioctl(self.fd, K.KVM_GET_SREGS, sregs, "KVM_GET_SREGS")
        return sregs

    def set_sregs(self, sregs: K.Sregs) -> None:
        """Load the vCPU's segment and control registers (KVM_SET_SREGS)."""
        _ioctl(self.fd, K.KVM_SET_SREGS, sregs, "KVM_SET_SREGS")

    def rip(self) -> int:
        """The guest's current RIP (0 if it cannot be read)."""
        try:
            return self.get_regs().rip
        except KvmError:
            return 0

    def enter(self, mode: str, entry: int, count: int) -> None:
        """Put the vCPU in ``mode`` ("real" or "protected") at ``entry``."""
        sregs = self.get_sregs()
        if mode == "real":
            if entry >= 0x100000:
                raise KvmError(f"real-mode entry {entry:#x} is above 1 MiB")
            cs = (entry >> 4) & 0xF000 if entry >= 0x10000 else 0
            ip = entry - (cs << 4)
            sregs.cs.selector = cs
            sregs.cs.base = cs << 4
            for seg in (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss):
                seg.selector = 0
                seg.base = 0
        elif mode == "protected":
            ip = entry
            self._flat_protected(sregs)
        else:
            raise KvmError(f"unknown mode '{mode}' (real or protected)")
        self.set_sregs(sregs)
        regs = K.Regs()
        regs.rip = ip
        regs.rflags = 0x2
        regs.rsp = STACK_TOP - self.index * STACK_STRIDE
        regs.rbx = self.index
        regs.rcx = count
        self.set_regs(regs)

    @staticmethod
    def _flat_protected(sregs: K.Sregs) -> None:
        def flat(seg, selector, seg_type):
            seg.base, seg.limit, seg.selector = 0, 0xFFFFFFFF, selector
            seg.type, seg.present, seg.dpl, seg.db = seg_type, 1, 0, 1
            seg.s, seg.l, seg.g, seg.avl, seg.unusable = 1, 0, 1, 0, 0
        flat(sregs.cs, 0x08, K.SEG_TYPE_CODE_RX)
        for seg in (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss):
            flat(seg, 0x10, K.SEG_TYPE_DATA_RW)
        sregs.gdt.base, sregs.gdt.limit = GDT_ADDR, 3 * 8 - 1
        sregs.cr0 |= K.CR0_PE | K.CR0_ET

    def close(self) -> None:
        """Unmap kvm_run and close the vCPU fd (idempotent)."""
        if self.run_map is not None:
            self.run_map.close()
            self.run_map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
