"""Native code for a binding's pio program, as the native vCPU loop calls it.

The code is ``bpfio.jit``'s (profile ``pio``, :mod:`bpfio.exec.jit`), whose calling
convention the loop relies on: ``f(uint8_t *ctx, uint32_t ctx_len)`` over ONE buffer --
the 40-byte event header then the binding's shared words, all big-endian, ``M[k]`` at
``ctx + 40 + 4k`` -- returning the verdict in eax (bit 32 of rax set when the program
faulted) and ``A | executed << 32`` in rdx (A is what a handled IN receives).

:func:`native_program` decides which bindings get native code; the others run in Python
under the native loop too (docs/kvm.md lists the cases).
"""

from __future__ import annotations

from bpfio import isa
from bpfio.kvm.native_layout import ABORT


def _reads_rand(program) -> bool:
    """True when the program has an ancillary load (in pio: ``ld rand``)."""
    return any(insn.code & 0x07 == isa.BPF_LD and insn.code & 0xE0 == isa.BPF_ABS
               and insn.k >= isa.SKF_AD_OFF for insn in program)


def native_program(binding):
    """``(owner, address, timed)`` for the binding's program, or None: it runs in Python.

    None when there is no program; when it is not the standard runner (a test's spy);
    when it reads time from an injected clock (native code reads CLOCK_MONOTONIC only);
    when a notifier is not an eventfd; when it reads ``rand`` (one stream shared with the
    Python engine, kept in Python); or when the JIT is unavailable.  ``owner`` keeps the
    code mapped: drop it only after a grace period.
    """
    from bpfio.errors import JitUnavailable
    from bpfio.exec.jit.program import jit
    from bpfio.pio.program import clock_fields, load_runner
    program = binding.program
    if program is None or binding._run is not load_runner(bytes(program), binding.engine):
        return None
    timed = clock_fields(program)
    if timed and not binding.machine._clock_is_64bit:
        return None
    if any(n.kind != "eventfd" for n in binding.notifiers) or _reads_rand(program):
        return None
    try:
        code = jit(program, profile="pio", mem_words=len(binding.mem))
    except JitUnavailable:
        return None
    return code, code.address, timed


def run_native(address: int, ctx: bytearray) -> tuple[int | None, int, int]:
    """Call native program code at ``address`` on ``ctx`` exactly as the loop does.

    Returns (verdict, or None when it aborted; A; executed).  ``ctx`` (header + memory,
    big-endian) is updated in place.
    """
    import ctypes
    from bpfio.kvm.native_code import functions
    buf = (ctypes.c_uint8 * len(ctx)).from_buffer(ctx)
    rdx = ctypes.c_uint64()
    rax = functions()["probe"](address, ctypes.addressof(buf), len(ctx), ctypes.byref(rdx))
    del buf
    return (None if rax & ABORT else rax & 0xFFFFFFFF), rdx.value & 0xFFFFFFFF, rdx.value >> 32
