"""The memory layouts shared by the native vCPU loop and its Python side, declared once.

:class:`NVcpu` is one vCPU's block (the loop's only argument); :class:`NBinding` is one
binding's block (what the native 64K port table points at).  The emitter in
:mod:`bpfio.kvm.native_code` reads every offset from these ``ctypes.Structure``
declarations (``NVcpu.gen.offset``), and Python reads the same fields by name, so an
offset cannot drift between the two.
"""

from __future__ import annotations

import ctypes

u32, u64 = ctypes.c_uint32, ctypes.c_uint64

# What a binding's table entry lets the native loop do.
KIND_PYTHON = 0       # return the exit to Python (a model-only binding, no native program...)
KIND_NATIVE = 1       # run the native program under the binding's lock

# Why the native loop returned to Python (its return value).
R_EXIT = 0            # Python handles the current exit as its own loop would
R_MODEL = 1           # a program said PIO_EXIT (or aborted, or a bad verdict): run the model;
                      # the binding in ``ret_binding`` is still LOCKED (the event is atomic)
R_ERRNO = 2           # KVM_RUN failed; ``err`` holds -errno (-EINTR: a kick or a stop)

SPINS = 256           # pause-spins on a held lock before one sched_yield


class NVcpu(ctypes.Structure):
    """One vCPU as the native loop sees it; the counters are the loop's, folded by Python."""

    _fields_ = [
        ("run", u64),            # address of the mmapped struct kvm_run
        ("table", u64),          # address of the 65536 NBinding pointers
        ("ring", u64),           # the coalesced-PIO ring page, 0 when no ring is in use
        ("clock_gettime", u64),  # libc's clock_gettime
        ("fd", u64),             # the vCPU fd
        ("index", u64),          # PIO_VCPU
        ("gen", u64),            # the grace-period counter: odd while bindings may be in use
        ("exits", u64),          # every return from KVM_RUN
        ("io_exits", u64),       # KVM_EXIT_IO
        ("accesses", u64),       # single-element port accesses (count == 1)
        ("unmapped", u64),       # accesses to ports no binding covers
        ("ret_binding", u64),    # R_MODEL: the (locked) NBinding
        ("ret_verdict", u64),    # R_MODEL: the program's verdict
        ("err", ctypes.c_int64),  # R_ERRNO: what KVM_RUN returned
        ("one", u64),            # the 8-byte 1 written to a notifier's eventfd
    ]


class NBinding(ctypes.Structure):
    """One binding as the native loop sees it (its lock word is the binding's lock)."""

    _fields_ = [
        ("lock", u32),           # 0 free, 1 held: taken with lock cmpxchg, natively and by Python
        ("kind", u32),           # KIND_PYTHON or KIND_NATIVE
        ("base", u32),           # first port of the range (PIO_OFFSET = port - base)
        ("timed", u32),          # non-zero when the program reads PIO_TICKS/PIO_NS
        ("prog", u64),           # native program (bpfio.jit, profile pio): rax = f(ctx,
                                 # ctx_len) = the verdict | ABORT; rdx = A | executed << 32
        ("ctx", u64),            # the 40-byte header followed by the shared memory words
        ("ctx_len", u32),        # 40 + 4 * mem_words
        ("n_notifiers", u32),
        ("notify_fds", u64),     # address of n_notifiers int32 eventfds
        ("notify_counts", u64),  # address of n_notifiers u64 signal counts
        ("clock_hz", u64),       # 0: PIO_TICKS reads 0
        ("handled", u64),        # the Counters the native loop updates (under the lock)
        ("notified", u64),
        ("exits", u64),
        ("bad_verdicts", u64),
        ("aborts", u64),
        ("insns", u64),          # instructions the native program executed
    ]


NATIVE_COUNTERS = ("handled", "notified", "exits", "bad_verdicts", "aborts", "insns")
ABORT = 1 << 32       # a native program that faulted returns this (verdict 0, aborted)
VCPU_COUNTERS = ("exits", "io_exits", "accesses")


def off(struct, name: str) -> int:
    """The byte offset of ``name`` in ``struct`` (what the emitter addresses)."""
    return getattr(struct, name).offset
