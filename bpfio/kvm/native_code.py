"""The machine code of the native vCPU loop, emitted once per process.

:func:`loop_code` is ``long loop(NVcpu *v)``: it repeats ``KVM_RUN`` through a raw
``syscall`` and serves what it can without Python, returning one of the ``R_*`` codes of
:mod:`bpfio.kvm.native_layout` when Python must act.  Register map (callee-saved, so the
program and ``clock_gettime`` calls keep them):

    rbx  the NVcpu block             r14  the 64K port table (NBinding pointers)
    r12  the vCPU's struct kvm_run   r15  the PIO data area (kvm_run + data_offset)
    r13  the binding being served    rbp  A of the program (the value an IN receives)

Frame: six pushes and ``sub rsp, 24`` keep rsp 16-byte aligned at every call; ``[rsp]``
is the ``struct timespec`` for ``clock_gettime``.  The per-vCPU ``gen`` counter is odd
from the instruction after ``KVM_RUN`` returns (a ``lock inc``: a full barrier, so no
table load can pass it) until the loop is about to enter ``KVM_RUN`` again or return;
Python's grace period (:mod:`bpfio.kvm.native`) waits on it.  :func:`lock_code` are the
acquire/release Python calls on the same lock words, :func:`bare_code` the bench's
do-nothing round trip.
"""

from __future__ import annotations

import ctypes

from bpfio.kvm import abi as K
from bpfio.kvm import native_x86 as X
from bpfio.kvm.native_layout import (KIND_NATIVE, R_ERRNO, R_EXIT, R_MODEL, SPINS, NBinding,
                                     NVcpu, off)
from bpfio.kvm.native_x86 import R8, R12, R13, R14, R15, RAX, RBP, RBX, RCX, RDI, RDX, RSI, RSP

SYS_WRITE, SYS_IOCTL, SYS_SCHED_YIELD = 1, 16, 24
CLOCK_MONOTONIC = 1
NS_PER_S = 1_000_000_000
_SAVED = (RBP, RBX, R12, R13, R14, R15)

# struct kvm_run fields the loop reads (abi.RUN_UNION + the io layout).
RUN_REASON = K.RUN_EXIT_REASON
IO_DIR, IO_SIZE, IO_PORT, IO_COUNT, IO_DATA_OFFSET = (K.RUN_UNION + d for d in (0, 1, 2, 4, 8))

V = {name: off(NVcpu, name) for name, _ in NVcpu._fields_}
B = {name: off(NBinding, name) for name, _ in NBinding._fields_}


def _spin_lock(a: X.Asm, base: int, tag: str) -> None:
    """Take the lock word at [base] with lock cmpxchg; pause-spin, yield every SPINS spins."""
    a(X.mov_r32_imm32(RDX, SPINS))
    a.label(f"{tag}_try")
    a(X.xor_r32_r32(RAX, RAX), X.mov_r32_imm32(RCX, 1),
      X.lock_cmpxchg_m32_r32(base, B["lock"], RCX))
    a.jcc("e", f"{tag}_got")
    a.label(f"{tag}_spin")
    a(X.pause(), X.dec_r32(RDX))
    a.jcc("ne", f"{tag}_check")
    # sched_yield: the holder may be a descheduled thread (2 cores, 4 vCPUs).  syscall
    # keeps every register but rax, rcx and r11, so base survives.
    a(X.mov_r32_imm32(RAX, SYS_SCHED_YIELD), X.syscall(), X.mov_r32_imm32(RDX, SPINS))
    a.label(f"{tag}_check")
    a(X.cmp_m32_imm8(base, B["lock"], 0))
    a.jcc("ne", f"{tag}_spin")
    a.jmp(f"{tag}_try")
    a.label(f"{tag}_got")


def _store_be64(a: X.Asm, value: int, ctx: int, disp: int) -> None:
    """Store the 64-bit ``value`` register as two big-endian words: low at disp, high at +4."""
    a(X.mov_r64_r64(RDX, value), X.shr_r64_imm8(RDX, 32), X.bswap_r32(value),
      X.mov_m32_r32(ctx, disp, value), X.bswap_r32(RDX), X.mov_m32_r32(ctx, disp + 4, RDX))


def _header(a: X.Asm) -> None:
    """Write the event header (big-endian words) at the binding's ctx; rdi = ctx after."""
    a(X.mov_r64_m64(RDI, R13, B["ctx"]))
    for disp, load in ((0, X.movzx_r32_m16(RAX, R12, IO_PORT)),
                       (4, X.movzx_r32_m8(RAX, R12, IO_SIZE)),
                       (8, X.movzx_r32_m8(RAX, R12, IO_DIR))):
        a(load, X.bswap_r32(RAX), X.mov_m32_r32(RDI, disp, RAX))
    # PIO_DATA: an OUT's value masked to its size, 0 for an IN.
    a(X.xor_r32_r32(RAX, RAX), X.cmp_m8_imm8(R12, IO_DIR, K.KVM_EXIT_IO_IN))
    a.jcc("e", "data_ready")
    a(X.mov_r32_m32(RAX, R15), X.movzx_r32_m8(RCX, R12, IO_SIZE), X.cmp_r32_imm32(RCX, 4))
    a.jcc("e", "data_ready")
    a(X.cmp_r32_imm32(RCX, 2))
    a.jcc("e", "data16")
    a(X.and_r32_imm32(RAX, 0xFF))
    a.jmp("data_ready")
    a.label("data16")
    a(X.and_r32_imm32(RAX, 0xFFFF))
    a.label("data_ready")
    a(X.bswap_r32(RAX), X.mov_m32_r32(RDI, 12, RAX))
    a(X.movzx_r32_m16(RAX, R12, IO_PORT), X.sub_r32_m32(RAX, R13, B["base"]),
      X.bswap_r32(RAX), X.mov_m32_r32(RDI, 16, RAX))
    a(X.mov_r32_m32(RAX, RBX, V["index"]), X.bswap_r32(RAX), X.mov_m32_r32(RDI, 20, RAX))
    # Time: only when the program reads it (as the Python engine), else zeros.
    a(X.cmp_m32_imm8(R13, B["timed"], 0))
    a.jcc("ne", "timed")
    for disp in (24, 28, 32, 36):
        a(X.mov_m32_imm32(RDI, disp, 0))
    a.jmp("header_done")
    a.label("timed")
    a(X.mov_r32_imm32(RDI, CLOCK_MONOTONIC), X.mov_r64_r64(RSI, RSP),
      X.mov_r64_m64(RAX, RBX, V["clock_gettime"]), X.call_r64(RAX))
    # ns = tv_sec * 1e9 + tv_nsec (what time.monotonic_ns computes).
    a(X.mov_r64_m64(RAX, RSP, 0), X.imul_r64_r64_imm32(RAX, RAX, NS_PER_S),
      X.add_r64_m64(RAX, RSP, 8), X.mov_r64_r64(RCX, RAX), X.mov_r64_m64(RDI, R13, B["ctx"]))
    _store_be64(a, RAX, RDI, 32)
    # ticks = floor(ns * clock_hz / 1e9) mod 2^64: a 128-bit product, then a long division
    # in two steps (high word first) so the quotient can never overflow div's 64 bits.
    a(X.mov_r64_m64(RAX, R13, B["clock_hz"]), X.test_r64_r64(RAX, RAX))
    a.jcc("ne", "ticks")
    a(X.mov_m32_imm32(RDI, 24, 0), X.mov_m32_imm32(RDI, 28, 0))
    a.jmp("header_done")
    a.label("ticks")
    a(X.mul_r64(RCX), X.mov_r64_r64(R8, RAX), X.mov_r64_r64(RAX, RDX),
      X.xor_r32_r32(RDX, RDX), X.mov_r32_imm32(RCX, NS_PER_S), X.div_r64(RCX),
      X.mov_r64_r64(RAX, R8), X.div_r64(RCX))
    _store_be64(a, RAX, RDI, 24)
    a.label("header_done")


def loop_code() -> bytes:
    """``long loop(NVcpu *v)``: the native exit loop (see the module docstring)."""
    a = X.Asm()
    a(*(X.push_r64(r) for r in _SAVED), X.sub_r64_imm8(RSP, 24))
    a(X.mov_r64_r64(RBX, RDI), X.mov_r64_m64(R12, RBX, V["run"]),
      X.mov_r64_m64(R14, RBX, V["table"]))
    a.label("loop")                                   # gen is even here
    a(X.mov_r32_imm32(RAX, SYS_IOCTL), X.mov_r32_m32(RDI, RBX, V["fd"]),
      X.mov_r32_imm32(RSI, K.KVM_RUN), X.xor_r32_r32(RDX, RDX), X.syscall())
    a(X.lock_inc_m64(RBX, V["gen"]))                  # odd: bindings may be in use
    a(X.test_r64_r64(RAX, RAX))                       # rax first: exit_reason may be stale
    a.jcc("s", "errno")
    a(X.inc_m64(RBX, V["exits"]), X.cmp_m32_imm8(R12, RUN_REASON, K.KVM_EXIT_IO))
    a.jcc("ne", "to_python")
    a(X.inc_m64(RBX, V["io_exits"]), X.cmp_m32_imm8(R12, IO_COUNT, 1))
    a.jcc("ne", "to_python")                          # string I/O: Python, element by element
    a(X.inc_m64(RBX, V["accesses"]))
    # Offload: coalesced writes must reach their device before anything else runs.
    a(X.mov_r64_m64(RAX, RBX, V["ring"]), X.test_r64_r64(RAX, RAX))
    a.jcc("e", "no_ring")
    a(X.mov_r32_m32(RCX, RAX, 0), X.cmp_r32_m32(RCX, RAX, 4))
    a.jcc("ne", "to_python")
    a.label("no_ring")
    a(X.mov_r64_m64(R15, R12, IO_DATA_OFFSET), X.add_r64_r64(R15, R12),
      X.movzx_r32_m16(RCX, R12, IO_PORT), X.mov_r64_m64(R13, R14, 0, RCX, 8),
      X.test_r64_r64(R13, R13))
    a.jcc("e", "unmapped")
    a(X.cmp_m32_imm8(R13, B["kind"], KIND_NATIVE))
    a.jcc("ne", "to_python")
    _spin_lock(a, R13, "lock")
    a(X.mov_r64_m64(RAX, R13, B["prog"]), X.test_r64_r64(RAX, RAX))
    a.jcc("e", "unlock_to_python")                    # the program went away meanwhile
    _header(a)
    a(X.mov_r64_m64(RDI, R13, B["ctx"]), X.mov_r32_m32(RSI, R13, B["ctx_len"]),
      X.mov_r64_m64(RAX, R13, B["prog"]), X.call_r64(RAX))
    # eax = the verdict, bit 32 of rax: the program aborted (a runtime fault);
    # edx = A, the high half of rdx = instructions executed.
    a(X.mov_r32_r32(RBP, RDX), X.shr_r64_imm8(RDX, 32), X.add_m64_r64(R13, B["insns"], RDX),
      X.mov_r64_r64(RCX, RAX), X.shr_r64_imm8(RCX, 32))
    a.jcc("ne", "abort")
    a(X.mov_r32_r32(RCX, RAX), X.shr_r32_imm8(RCX, 16),
      X.cmp_r32_imm32(RCX, 1))
    a.jcc("e", "done")
    a(X.cmp_r32_imm32(RCX, 2))
    a.jcc("e", "notify")
    a(X.test_r32_r32(RCX, RCX))
    a.jcc("e", "exit")
    a.label("bad")
    a(X.inc_m64(R13, B["bad_verdicts"]))
    a.jmp("exit")
    a.label("abort")
    a(X.inc_m64(R13, B["aborts"]))
    a.label("exit")                                   # the model runs in Python, lock held
    a(X.inc_m64(R13, B["exits"]), X.mov_m64_r64(RBX, V["ret_binding"], R13),
      X.mov_r32_r32(RAX, RAX), X.mov_m64_r64(RBX, V["ret_verdict"], RAX),
      X.mov_r32_imm32(RAX, R_MODEL))
    a.jmp("epilogue")
    a.label("notify")
    a(X.movzx_r32_r16(RCX, RAX), X.cmp_r32_m32(RCX, R13, B["n_notifiers"]))
    a.jcc("ae", "bad")
    a(X.mov_r64_m64(RAX, R13, B["notify_counts"]), X.inc_m64(RAX, 0, RCX, 8),
      X.inc_m64(R13, B["notified"]), X.mov_r64_m64(RAX, R13, B["notify_fds"]),
      X.mov_r32_m32(RDI, RAX, 0, RCX, 4), X.lea_r64_m(RSI, RBX, V["one"]),
      X.mov_r32_imm32(RDX, 8), X.mov_r32_imm32(RAX, SYS_WRITE), X.syscall())
    a.label("done")
    a(X.inc_m64(R13, B["handled"]), X.cmp_m8_imm8(R12, IO_DIR, K.KVM_EXIT_IO_IN))
    a.jcc("ne", "release")
    a(X.mov_m32_r32(R15, 0, RBP))                     # KVM copies only `size` bytes
    a.label("release")
    a(X.mov_m32_imm32(R13, B["lock"], 0))            # a plain store releases on x86
    a.label("next")
    a(X.inc_m64(RBX, V["gen"]))                       # even (one writer: no lock needed)
    a.jmp("loop")
    a.label("unmapped")                               # all ones for an IN, an OUT dropped
    a(X.inc_m64(RBX, V["unmapped"]), X.cmp_m8_imm8(R12, IO_DIR, K.KVM_EXIT_IO_IN))
    a.jcc("ne", "next")
    a(X.mov_m32_imm32(R15, 0, 0xFFFFFFFF))
    a.jmp("next")
    a.label("unlock_to_python")
    a(X.mov_m32_imm32(R13, B["lock"], 0))
    a.label("to_python")
    a(X.mov_r32_imm32(RAX, R_EXIT))
    a.jmp("epilogue")
    a.label("errno")
    a(X.mov_m64_r64(RBX, V["err"], RAX), X.mov_r32_imm32(RAX, R_ERRNO))
    a.label("epilogue")
    a(X.inc_m64(RBX, V["gen"]), X.add_r64_imm8(RSP, 24),
      *(X.pop_r64(r) for r in reversed(_SAVED)), X.ret())
    return a.code()


def lock_code() -> tuple[bytes, int, int]:
    """``acquire(u32 *lock)``, ``release(u32 *lock)``, ``fence()``: (code, their offsets)."""
    a = X.Asm()
    _spin_lock(a, RDI, "acq")
    a(X.ret())
    release = len(a.buf)
    a(X.mov_m32_imm32(RDI, B["lock"], 0), X.ret())
    fence = len(a.buf)
    a(X.mfence(), X.ret())
    return a.code(), release, fence


def bare_code() -> bytes:
    """``long bare(struct kvm_run *run, int fd)``: KVM_RUN until a non-IO exit, nothing else.

    Every IN receives the exit count.  Returns the number of IO exits (or -errno): the
    round-trip cost of KVM_RUN on this machine, the bench's lower bound.
    """
    a = X.Asm()
    a(X.push_r64(RBX), X.push_r64(R12), X.push_r64(R13), X.mov_r64_r64(R12, RDI),
      X.mov_r32_r32(R13, RSI), X.xor_r32_r32(RBX, RBX))
    a.label("loop")
    a(X.mov_r32_imm32(RAX, SYS_IOCTL), X.mov_r32_r32(RDI, R13),
      X.mov_r32_imm32(RSI, K.KVM_RUN), X.xor_r32_r32(RDX, RDX), X.syscall(),
      X.test_r64_r64(RAX, RAX))
    a.jcc("s", "out")
    a(X.cmp_m32_imm8(R12, RUN_REASON, K.KVM_EXIT_IO))
    a.jcc("ne", "done")
    a(X.mov_r64_m64(RAX, R12, IO_DATA_OFFSET), X.add_r64_r64(RAX, R12),
      X.mov_m32_r32(RAX, 0, RBX), X.add_r64_imm8(RBX, 1))
    a.jmp("loop")
    a.label("done")
    a(X.mov_r64_r64(RAX, RBX))
    a.label("out")
    a(X.pop_r64(R13), X.pop_r64(R12), X.pop_r64(RBX), X.ret())
    return a.code()


def probe_code() -> bytes:
    """``u64 probe(fn, ctx, ctx_len, u64 *rdx)``: call a native program as the loop does.

    Returns its rax and stores its rdx at ``*rdx``: how the tests check, from Python,
    the convention the loop relies on.
    """
    a = X.Asm()
    a(X.push_r64(RBX), X.mov_r64_r64(RBX, RCX), X.mov_r64_r64(RAX, RDI),
      X.mov_r64_r64(RDI, RSI), X.mov_r32_r32(RSI, RDX), X.call_r64(RAX),
      X.mov_m64_r64(RBX, 0, RDX), X.pop_r64(RBX), X.ret())
    return a.code()


# --- executable memory -------------------------------------------------------

def exec_memory(code: bytes):
    """``code`` in a read+execute mapping (mapped RW, filled, then mprotected: never W+X)."""
    from bpfio.exec.jit.mem import ExecMemory
    return ExecMemory(code)


_CODE: dict[str, object] = {}


def functions():
    """The process's native functions, emitted and mapped once: a dict of ctypes callables."""
    if not _CODE:
        mem = exec_memory(loop_code())
        locks, release, fence = lock_code()
        lmem = exec_memory(locks)
        bmem = exec_memory(bare_code())
        pmem = exec_memory(probe_code())
        vp = ctypes.c_void_p
        _CODE.update(
            loop=mem.function(ctypes.c_long, vp),
            acquire=lmem.function(None, vp),
            release=lmem.function(None, vp, offset=release),
            fence=lmem.function(None, offset=fence),
            bare=bmem.function(ctypes.c_long, vp, ctypes.c_int),
            probe=pmem.function(ctypes.c_uint64, vp, vp, ctypes.c_uint32, vp),
            libc=ctypes.CDLL(None),
            memory=(mem, lmem, bmem, pmem))
    return _CODE
