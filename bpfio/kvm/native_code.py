"""The machine code of the native vCPU loop, emitted once per process.

Emitted with the JIT's emitter (:mod:`bpfio.exec.jit.x86`, jumps sized by
:mod:`bpfio.exec.jit.layout`) and the loop's own forms (:mod:`bpfio.kvm.native_x86`).

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

from bpfio.exec.jit import x86 as X
from bpfio.exec.jit.layout import Jump, Label, assemble
from bpfio.exec.jit.x86 import (CC, R8, R12, R13, R14, R15, RAX, RBP, RBX, RCX, RDI, RDX, RSI,
                                RSP, mem)
from bpfio.kvm import abi as K
from bpfio.kvm import native_x86 as N
from bpfio.kvm.native_layout import (KIND_NATIVE, R_ERRNO, R_EXIT, R_MODEL, SPINS, NBinding,
                                     NVcpu, off)

SYS_WRITE, SYS_IOCTL, SYS_SCHED_YIELD = 1, 16, 24
CLOCK_MONOTONIC = 1
NS_PER_S = 1_000_000_000
_SAVED = (RBP, RBX, R12, R13, R14, R15)

# struct kvm_run fields the loop reads (abi.RUN_UNION + the io layout).
RUN_REASON = K.RUN_EXIT_REASON
IO_DIR, IO_SIZE, IO_PORT, IO_COUNT, IO_DATA_OFFSET = (K.RUN_UNION + d for d in (0, 1, 2, 4, 8))

V = {name: off(NVcpu, name) for name, _ in NVcpu._fields_}
B = {name: off(NBinding, name) for name, _ in NBinding._fields_}


class Asm:
    """Items for :func:`bpfio.exec.jit.layout.assemble`: instructions, labels, jumps."""

    def __init__(self):
        self.items: list = []

    def __call__(self, *ins) -> "Asm":
        self.items.extend(ins)
        return self

    def label(self, name: str) -> None:
        """Bind ``name`` here."""
        self.items.append(Label(name))

    def jcc(self, cc: str, name: str) -> None:
        """``jcc name`` (``cc`` as in ``je``, ``jne``, ``js``...)."""
        self.items.append(Jump(CC[cc], name))

    def jmp(self, name: str) -> None:
        """``jmp name``."""
        self.items.append(Jump(None, name))

    def code(self) -> bytes:
        """The bytes, every jump sized (rel8 where it fits) and resolved."""
        return assemble(self.items)[0]

    def listing(self) -> list[str]:
        """``offset: text`` per instruction (what ``tests`` compare with capstone)."""
        _code, listing, _labels = assemble(self.items)
        return [f"{o:#06x}: {ins.asm(o)}" for o, _pc, ins in listing]


def _spin_lock(a: Asm, base: int, tag: str) -> None:
    """Take the lock word at [base] with lock cmpxchg; pause-spin, yield every SPINS spins."""
    a(X.mov_r32_imm32(RDX, SPINS))
    a.label(f"{tag}_try")
    a(X.xor_r32_r32(RAX, RAX), X.mov_r32_imm32(RCX, 1),
      N.lock_cmpxchg_m32_r32(mem(base, B["lock"]), RCX))
    a.jcc("je", f"{tag}_got")
    a.label(f"{tag}_spin")
    a(N.pause(), N.dec_r32(RDX))
    a.jcc("jne", f"{tag}_check")
    # sched_yield: the holder may be a descheduled thread (2 cores, 4 vCPUs).  syscall
    # keeps every register but rax, rcx and r11, so base survives.
    a(X.mov_r32_imm32(RAX, SYS_SCHED_YIELD), X.syscall(), X.mov_r32_imm32(RDX, SPINS))
    a.label(f"{tag}_check")
    a(N.cmp_m32_imm8(mem(base, B["lock"]), 0))
    a.jcc("jne", f"{tag}_spin")
    a.jmp(f"{tag}_try")
    a.label(f"{tag}_got")


def _store_be64(a: Asm, value: int, ctx: int, disp: int) -> None:
    """Store the 64-bit ``value`` register as two big-endian words: low at disp, high at +4."""
    a(X.mov_r64_r64(RDX, value), N.shr_r64_imm8(RDX, 32), X.bswap_r32(value),
      X.mov_m32_r32(mem(ctx, disp), value), X.bswap_r32(RDX), X.mov_m32_r32(mem(ctx, disp + 4), RDX))


def _header(a: Asm) -> None:
    """Write the event header (big-endian words) at the binding's ctx; rdi = ctx after."""
    a(X.mov_r64_m64(RDI, mem(R13, B["ctx"])))
    for disp, load in ((0, X.movzx_r32_m16(RAX, mem(R12, IO_PORT))),
                       (4, X.movzx_r32_m8(RAX, mem(R12, IO_SIZE))),
                       (8, X.movzx_r32_m8(RAX, mem(R12, IO_DIR)))):
        a(load, X.bswap_r32(RAX), X.mov_m32_r32(mem(RDI, disp), RAX))
    # PIO_DATA: an OUT's value masked to its size, 0 for an IN.
    a(X.xor_r32_r32(RAX, RAX), N.cmp_m8_imm8(mem(R12, IO_DIR), K.KVM_EXIT_IO_IN))
    a.jcc("je", "data_ready")
    a(X.mov_r32_m32(RAX, mem(R15)), X.movzx_r32_m8(RCX, mem(R12, IO_SIZE)), X.cmp_r32_imm32(RCX, 4))
    a.jcc("je", "data_ready")
    a(X.cmp_r32_imm32(RCX, 2))
    a.jcc("je", "data16")
    a(X.and_r32_imm32(RAX, 0xFF))
    a.jmp("data_ready")
    a.label("data16")
    a(X.and_r32_imm32(RAX, 0xFFFF))
    a.label("data_ready")
    a(X.bswap_r32(RAX), X.mov_m32_r32(mem(RDI, 12), RAX))
    a(X.movzx_r32_m16(RAX, mem(R12, IO_PORT)), N.sub_r32_m32(RAX, mem(R13, B["base"])),
      X.bswap_r32(RAX), X.mov_m32_r32(mem(RDI, 16), RAX))
    a(X.mov_r32_m32(RAX, mem(RBX, V["index"])), X.bswap_r32(RAX), X.mov_m32_r32(mem(RDI, 20), RAX))
    # Time: only when the program reads it (as the Python engine), else zeros.
    a(N.cmp_m32_imm8(mem(R13, B["timed"]), 0))
    a.jcc("jne", "timed")
    for disp in (24, 28, 32, 36):
        a(X.mov_m32_imm32(mem(RDI, disp), 0))
    a.jmp("header_done")
    a.label("timed")
    a(X.mov_r32_imm32(RDI, CLOCK_MONOTONIC), X.mov_r64_r64(RSI, RSP),
      X.mov_r64_m64(RAX, mem(RBX, V["clock_gettime"])), X.call_r64(RAX))
    # ns = tv_sec * 1e9 + tv_nsec (what time.monotonic_ns computes).
    a(X.mov_r64_m64(RAX, mem(RSP, 0)), N.imul_r64_r64_imm32(RAX, RAX, NS_PER_S),
      N.add_r64_m64(RAX, mem(RSP, 8)), X.mov_r64_r64(RCX, RAX), X.mov_r64_m64(RDI, mem(R13, B["ctx"])))
    _store_be64(a, RAX, RDI, 32)
    # ticks = floor(ns * clock_hz / 1e9) mod 2^64: a 128-bit product, then a long division
    # in two steps (high word first) so the quotient can never overflow div's 64 bits.
    a(X.mov_r64_m64(RAX, mem(R13, B["clock_hz"])), X.test_r64_r64(RAX, RAX))
    a.jcc("jne", "ticks")
    a(X.mov_m32_imm32(mem(RDI, 24), 0), X.mov_m32_imm32(mem(RDI, 28), 0))
    a.jmp("header_done")
    a.label("ticks")
    a(N.mul_r64(RCX), X.mov_r64_r64(R8, RAX), X.mov_r64_r64(RAX, RDX),
      X.xor_r32_r32(RDX, RDX), X.mov_r32_imm32(RCX, NS_PER_S), N.div_r64(RCX),
      X.mov_r64_r64(RAX, R8), N.div_r64(RCX))
    _store_be64(a, RAX, RDI, 24)
    a.label("header_done")


def loop_code(asm: Asm | None = None) -> bytes:
    """``long loop(NVcpu *v)``: the native exit loop (see the module docstring)."""
    a = asm if asm is not None else Asm()
    a(*(X.push_r64(r) for r in _SAVED), X.sub_r64_imm8(RSP, 24))
    a(X.mov_r64_r64(RBX, RDI), X.mov_r64_m64(R12, mem(RBX, V["run"])),
      X.mov_r64_m64(R14, mem(RBX, V["table"])))
    a.label("loop")                                   # gen is even here
    a(X.mov_r32_imm32(RAX, SYS_IOCTL), X.mov_r32_m32(RDI, mem(RBX, V["fd"])),
      X.mov_r32_imm32(RSI, K.KVM_RUN), X.xor_r32_r32(RDX, RDX), X.syscall())
    a(N.lock_inc_m64(mem(RBX, V["gen"])))                  # odd: bindings may be in use
    a(X.test_r64_r64(RAX, RAX))                       # rax first: exit_reason may be stale
    a.jcc("js", "errno")
    a(N.inc_m64(mem(RBX, V["exits"])), N.cmp_m32_imm8(mem(R12, RUN_REASON), K.KVM_EXIT_IO))
    a.jcc("jne", "to_python")
    a(N.inc_m64(mem(RBX, V["io_exits"])), N.cmp_m32_imm8(mem(R12, IO_COUNT), 1))
    a.jcc("jne", "to_python")                          # string I/O: Python, element by element
    a(N.inc_m64(mem(RBX, V["accesses"])))
    # Offload: coalesced writes must reach their device before anything else runs.
    a(X.mov_r64_m64(RAX, mem(RBX, V["ring"])), X.test_r64_r64(RAX, RAX))
    a.jcc("je", "no_ring")
    a(X.mov_r32_m32(RCX, mem(RAX, 0)), N.cmp_r32_m32(RCX, mem(RAX, 4)))
    a.jcc("jne", "to_python")
    a.label("no_ring")
    a(X.mov_r64_m64(R15, mem(R12, IO_DATA_OFFSET)), X.add_r64_r64(R15, R12),
      X.movzx_r32_m16(RCX, mem(R12, IO_PORT)), X.mov_r64_m64(R13, mem(R14, 0, RCX, 8)),
      X.test_r64_r64(R13, R13))
    a.jcc("je", "unmapped")
    a(N.cmp_m32_imm8(mem(R13, B["kind"]), KIND_NATIVE))
    a.jcc("jne", "to_python")
    _spin_lock(a, R13, "lock")
    a(X.mov_r64_m64(RAX, mem(R13, B["prog"])), X.test_r64_r64(RAX, RAX))
    a.jcc("je", "unlock_to_python")                    # the program went away meanwhile
    _header(a)
    a(X.mov_r64_m64(RDI, mem(R13, B["ctx"])), X.mov_r32_m32(RSI, mem(R13, B["ctx_len"])),
      X.mov_r64_m64(RAX, mem(R13, B["prog"])), X.call_r64(RAX))
    # eax = the verdict, bit 32 of rax: the program aborted (a runtime fault);
    # edx = A, the high half of rdx = instructions executed.
    a(X.mov_r32_r32(RBP, RDX), N.shr_r64_imm8(RDX, 32), N.add_m64_r64(mem(R13, B["insns"]), RDX),
      X.mov_r64_r64(RCX, RAX), N.shr_r64_imm8(RCX, 32))
    a.jcc("jne", "abort")
    a(X.mov_r32_r32(RCX, RAX), X.shr_r32_imm8(RCX, 16),
      X.cmp_r32_imm32(RCX, 1))
    a.jcc("je", "done")
    a(X.cmp_r32_imm32(RCX, 2))
    a.jcc("je", "notify")
    a(X.test_r32_r32(RCX, RCX))
    a.jcc("je", "exit")
    a.label("bad")
    a(N.inc_m64(mem(R13, B["bad_verdicts"])))
    a.jmp("exit")
    a.label("abort")
    a(N.inc_m64(mem(R13, B["aborts"])))
    a.label("exit")                                   # the model runs in Python, lock held
    a(N.inc_m64(mem(R13, B["exits"])), X.mov_m64_r64(mem(RBX, V["ret_binding"]), R13),
      X.mov_r32_r32(RAX, RAX), X.mov_m64_r64(mem(RBX, V["ret_verdict"]), RAX),
      X.mov_r32_imm32(RAX, R_MODEL))
    a.jmp("epilogue")
    a.label("notify")
    a(N.movzx_r32_r16(RCX, RAX), N.cmp_r32_m32(RCX, mem(R13, B["n_notifiers"])))
    a.jcc("jae", "bad")
    a(X.mov_r64_m64(RAX, mem(R13, B["notify_counts"])), N.inc_m64(mem(RAX, 0, RCX, 8)),
      N.inc_m64(mem(R13, B["notified"])), X.mov_r64_m64(RAX, mem(R13, B["notify_fds"])),
      X.mov_r32_m32(RDI, mem(RAX, 0, RCX, 4)), X.lea_r64_m(RSI, mem(RBX, V["one"])),
      X.mov_r32_imm32(RDX, 8), X.mov_r32_imm32(RAX, SYS_WRITE), X.syscall())
    a.label("done")
    a(N.inc_m64(mem(R13, B["handled"])), N.cmp_m8_imm8(mem(R12, IO_DIR), K.KVM_EXIT_IO_IN))
    a.jcc("jne", "release")
    a(X.mov_m32_r32(mem(R15, 0), RBP))                     # KVM copies only `size` bytes
    a.label("release")
    a(X.mov_m32_imm32(mem(R13, B["lock"]), 0))            # a plain store releases on x86
    a.label("next")
    a(N.inc_m64(mem(RBX, V["gen"])))                       # even (one writer: no lock needed)
    a.jmp("loop")
    a.label("unmapped")                               # all ones for an IN, an OUT dropped
    a(N.inc_m64(mem(RBX, V["unmapped"])), N.cmp_m8_imm8(mem(R12, IO_DIR), K.KVM_EXIT_IO_IN))
    a.jcc("jne", "next")
    a(X.mov_m32_imm32(mem(R15, 0), 0xFFFFFFFF))
    a.jmp("next")
    a.label("unlock_to_python")
    a(X.mov_m32_imm32(mem(R13, B["lock"]), 0))
    a.label("to_python")
    a(X.mov_r32_imm32(RAX, R_EXIT))
    a.jmp("epilogue")
    a.label("errno")
    a(X.mov_m64_r64(mem(RBX, V["err"]), RAX), X.mov_r32_imm32(RAX, R_ERRNO))
    a.label("epilogue")
    a(N.inc_m64(mem(RBX, V["gen"])), X.add_r64_imm8(RSP, 24),
      *(X.pop_r64(r) for r in reversed(_SAVED)), X.ret())
    return a.code()


def lock_code(asm: Asm | None = None) -> tuple[bytes, int, int]:
    """``acquire(u32 *lock)``, ``release(u32 *lock)``, ``fence()``: (code, their offsets)."""
    a = asm if asm is not None else Asm()
    _spin_lock(a, RDI, "acq")
    a(X.ret())
    a.label("release")
    a(X.mov_m32_imm32(mem(RDI, B["lock"]), 0), X.ret())
    a.label("fence")
    a(N.mfence(), X.ret())
    code, _listing, labels = assemble(a.items)
    return code, labels["release"], labels["fence"]


def bare_code(asm: Asm | None = None) -> bytes:
    """``long bare(struct kvm_run *run, int fd)``: KVM_RUN until a non-IO exit, nothing else.

    Every IN receives the exit count.  Returns the number of IO exits (or -errno): the
    round-trip cost of KVM_RUN on this machine, the bench's lower bound.
    """
    a = asm if asm is not None else Asm()
    a(X.push_r64(RBX), X.push_r64(R12), X.push_r64(R13), X.mov_r64_r64(R12, RDI),
      X.mov_r32_r32(R13, RSI), X.xor_r32_r32(RBX, RBX))
    a.label("loop")
    a(X.mov_r32_imm32(RAX, SYS_IOCTL), X.mov_r32_r32(RDI, R13),
      X.mov_r32_imm32(RSI, K.KVM_RUN), X.xor_r32_r32(RDX, RDX), X.syscall(),
      X.test_r64_r64(RAX, RAX))
    a.jcc("js", "out")
    a(N.cmp_m32_imm8(mem(R12, RUN_REASON), K.KVM_EXIT_IO))
    a.jcc("jne", "done")
    a(X.mov_r64_m64(RAX, mem(R12, IO_DATA_OFFSET)), X.add_r64_r64(RAX, R12),
      X.mov_m32_r32(mem(RAX, 0), RBX), X.add_r64_imm8(RBX, 1))
    a.jmp("loop")
    a.label("done")
    a(X.mov_r64_r64(RAX, RBX))
    a.label("out")
    a(X.pop_r64(R13), X.pop_r64(R12), X.pop_r64(RBX), X.ret())
    return a.code()


def probe_code(asm: Asm | None = None) -> bytes:
    """``u64 probe(fn, ctx, ctx_len, u64 *rdx)``: call a native program as the loop does.

    Returns its rax and stores its rdx at ``*rdx``: how the tests check, from Python,
    the convention the loop relies on.
    """
    a = asm if asm is not None else Asm()
    a(X.push_r64(RBX), X.mov_r64_r64(RBX, RCX), X.mov_r64_r64(RAX, RDI),
      X.mov_r64_r64(RDI, RSI), X.mov_r32_r32(RSI, RDX), X.call_r64(RAX),
      X.mov_m64_r64(mem(RBX, 0), RDX), X.pop_r64(RBX), X.ret())
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
