"""The slice of the Linux KVM ioctl ABI that ``bpfio.kvm`` uses, for x86-64.

Numbers and layouts follow ``include/uapi/linux/kvm.h`` and
``arch/x86/include/uapi/asm/kvm.h``; ``Documentation/virt/kvm/api.rst``
describes them.  Structures are ``ctypes`` mirrors whose sizes are asserted at
import time against the kernel's, so a layout slip fails loudly here instead
of corrupting a vCPU.  Offsets inside ``struct kvm_run`` are read with
``struct.unpack_from`` on the mmapped page (cheaper than ctypes per exit).
"""

from __future__ import annotations

import ctypes
import struct

KVMIO = 0xAE
PAGE_SIZE = 4096


def _ioc(direction: int, nr: int, size: int) -> int:
    """Encode an ioctl number as ``_IOC`` does (dir<<30 | size<<16 | type<<8 | nr)."""
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


def _io(nr: int) -> int:
    return _ioc(0, nr, 0)


def _iow(nr: int, size: int) -> int:
    return _ioc(1, nr, size)


def _ior(nr: int, size: int) -> int:
    return _ioc(2, nr, size)


# --- structures ---------------------------------------------------------

class UserspaceMemoryRegion(ctypes.Structure):
    """``struct kvm_userspace_memory_region``."""

    _fields_ = [("slot", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("guest_phys_addr", ctypes.c_uint64), ("memory_size", ctypes.c_uint64),
                ("userspace_addr", ctypes.c_uint64)]


class Regs(ctypes.Structure):
    """``struct kvm_regs`` (x86)."""

    _fields_ = [(name, ctypes.c_uint64) for name in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class Segment(ctypes.Structure):
    """``struct kvm_segment``."""

    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint32),
                ("selector", ctypes.c_uint16), ("type", ctypes.c_uint8),
                ("present", ctypes.c_uint8), ("dpl", ctypes.c_uint8),
                ("db", ctypes.c_uint8), ("s", ctypes.c_uint8), ("l", ctypes.c_uint8),
                ("g", ctypes.c_uint8), ("avl", ctypes.c_uint8),
                ("unusable", ctypes.c_uint8), ("padding", ctypes.c_uint8)]


class DTable(ctypes.Structure):
    """``struct kvm_dtable`` (GDTR/IDTR)."""

    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint16),
                ("padding", ctypes.c_uint16 * 3)]


class Sregs(ctypes.Structure):
    """``struct kvm_sregs`` (x86)."""

    _fields_ = [("cs", Segment), ("ds", Segment), ("es", Segment), ("fs", Segment),
                ("gs", Segment), ("ss", Segment), ("tr", Segment), ("ldt", Segment),
                ("gdt", DTable), ("idt", DTable),
                ("cr0", ctypes.c_uint64), ("cr2", ctypes.c_uint64), ("cr3", ctypes.c_uint64),
                ("cr4", ctypes.c_uint64), ("cr8", ctypes.c_uint64), ("efer", ctypes.c_uint64),
                ("apic_base", ctypes.c_uint64), ("interrupt_bitmap", ctypes.c_uint64 * 4)]


class IoEventFd(ctypes.Structure):
    """``struct kvm_ioeventfd``."""

    _fields_ = [("datamatch", ctypes.c_uint64), ("addr", ctypes.c_uint64),
                ("len", ctypes.c_uint32), ("fd", ctypes.c_int32),
                ("flags", ctypes.c_uint32), ("pad", ctypes.c_uint8 * 36)]


class CoalescedZone(ctypes.Structure):
    """``struct kvm_coalesced_mmio_zone`` (``pio`` non-zero: a port range)."""

    _fields_ = [("addr", ctypes.c_uint64), ("size", ctypes.c_uint32),
                ("pio", ctypes.c_uint32)]


for _cls, _size in ((UserspaceMemoryRegion, 32), (Regs, 144), (Segment, 24), (DTable, 16),
                    (Sregs, 312), (IoEventFd, 64), (CoalescedZone, 16)):
    assert ctypes.sizeof(_cls) == _size, (_cls.__name__, ctypes.sizeof(_cls))

# --- ioctls -------------------------------------------------------------

KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_CHECK_EXTENSION = _io(0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _iow(0x46, ctypes.sizeof(UserspaceMemoryRegion))
KVM_SET_TSS_ADDR = _io(0x47)
KVM_SET_IDENTITY_MAP_ADDR = _iow(0x48, 8)
KVM_REGISTER_COALESCED_MMIO = _iow(0x67, ctypes.sizeof(CoalescedZone))
KVM_UNREGISTER_COALESCED_MMIO = _iow(0x68, ctypes.sizeof(CoalescedZone))
KVM_IOEVENTFD = _iow(0x79, ctypes.sizeof(IoEventFd))
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ior(0x81, ctypes.sizeof(Regs))
KVM_SET_REGS = _iow(0x82, ctypes.sizeof(Regs))
KVM_GET_SREGS = _ior(0x83, ctypes.sizeof(Sregs))
KVM_SET_SREGS = _iow(0x84, ctypes.sizeof(Sregs))

KVM_API_VERSION = 12

# Capabilities (KVM_CHECK_EXTENSION arguments).
KVM_CAP_COALESCED_MMIO = 15
KVM_CAP_IOEVENTFD = 36
KVM_CAP_COALESCED_PIO = 162

# ioeventfd flags.
KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0
KVM_IOEVENTFD_FLAG_PIO = 1 << 1
KVM_IOEVENTFD_FLAG_DEASSIGN = 1 << 2

# --- struct kvm_run -----------------------------------------------------

# Header: request_interrupt_window u8 @0, immediate_exit u8 @1, exit_reason u32 @8.
RUN_IMMEDIATE_EXIT = 1
RUN_EXIT_REASON = 8
RUN_UNION = 32            # the exit union starts here
# io: direction u8, size u8, port u16, count u32, data_offset u64.
RUN_IO = struct.Struct("<BBHIQ")
# mmio: phys_addr u64, data[8], len u32, is_write u8.
RUN_MMIO = struct.Struct("<Q8sIB")
# fail_entry: hardware_entry_failure_reason u64, cpu u32.
RUN_FAIL_ENTRY = struct.Struct("<QI")
# internal: suberror u32, ndata u32, data u64[16].
RUN_INTERNAL = struct.Struct("<II")

KVM_EXIT_IO_IN = 0
KVM_EXIT_IO_OUT = 1

# Exit reasons, by number, with the names api.rst uses.
EXIT_REASONS = {
    0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 3: "HYPERCALL", 4: "DEBUG", 5: "HLT",
    6: "MMIO", 7: "IRQ_WINDOW_OPEN", 8: "SHUTDOWN", 9: "FAIL_ENTRY", 10: "INTR",
    11: "SET_TPR", 12: "TPR_ACCESS", 13: "S390_SIEIC", 14: "S390_RESET", 15: "DCR",
    16: "NMI", 17: "INTERNAL_ERROR", 18: "OSI", 19: "PAPR_HCALL",
}
KVM_EXIT_IO = 2
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_INTERNAL_ERROR = 17

# Internal-error sub-reasons (KVM_INTERNAL_ERROR_*).
INTERNAL_SUBERRORS = {1: "EMULATION (instruction KVM cannot emulate)",
                      2: "SIMUL_EX (exception while delivering an exception)",
                      3: "DELIVERY_EV (event delivery failed)",
                      4: "UNEXPECTED_EXIT_REASON"}

# --- coalesced ring (a page of the vCPU mmap) ----------------------------

KVM_COALESCED_MMIO_PAGE_OFFSET = 2        # x86: page 2 of the vCPU mapping
RING_HEADER = struct.Struct("<II")        # first, last
RING_ENTRY = struct.Struct("<QII8s")      # phys_addr, len, pio, data[8]
RING_MAX = (PAGE_SIZE - RING_HEADER.size) // RING_ENTRY.size   # 170

# --- control registers and segments for mode setup ----------------------

CR0_PE = 1 << 0
CR0_ET = 1 << 4
SEG_TYPE_CODE_RX = 0xB    # execute/read, accessed
SEG_TYPE_DATA_RW = 0x3    # read/write, accessed
SEG_TYPE_TSS_BUSY = 0xB
