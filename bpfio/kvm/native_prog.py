"""Native code for a binding's pio program, as the native vCPU loop calls it.

The loop's calling convention (:class:`bpfio.kvm.native_layout.NBinding` ``prog``): a
SysV function ``f(uint8_t *ctx, uint32_t ctx_len)`` over ONE buffer -- the 40-byte event
header then the binding's shared words, all big-endian, ``M[k]`` at ``ctx + 40 + 4k`` --
returning the verdict in eax (rax = :data:`ABORT` when the program faulted) and A in edx
(what a handled IN receives).

:func:`translate` is a small translator for the part of classic BPF that device programs
use: absolute loads inside the header and memory, ``M[]``, immediate and ``len`` loads,
``ldx 4*([k]&0xf)``, every ALU operation (division and modulo by X == 0 abort, as in
the kernel; shifts by X use the hardware's ``& 31``), every jump, ``tax``/``txa``, ``ret``.
Indexed loads check ``(X + k) mod 2^32 + size <= ctx_len`` and abort otherwise, as the
interpreter does.  A program with an ancillary load (``rand``) gets no native code: its
binding runs in Python under the native loop too (:func:`native_program` says which).
Register map: A = eax, X = ecx, rdi = ctx, esi = ctx_len, edx/r8d scratch.  The
translator is checked against the interpreter on random programs in a child process
(``tests/test_kvm_native.py``).
"""

from __future__ import annotations

from bpfio import isa
from bpfio.kvm import native_x86 as X
from bpfio.kvm.native_layout import ABORT
from bpfio.kvm.native_x86 import R8, RAX, RCX, RDI, RDX, RSI

_ALU_K = {isa.BPF_ADD: "add", isa.BPF_SUB: "sub", isa.BPF_OR: "or", isa.BPF_AND: "and",
          isa.BPF_XOR: "xor"}
_JCC = {isa.BPF_JEQ: ("e", "ne"), isa.BPF_JGT: ("a", "be"), isa.BPF_JGE: ("ae", "b"),
        isa.BPF_JSET: ("ne", "e")}


class Untranslatable(Exception):
    """The program uses something this translator leaves to Python."""


def _load_abs(a: X.Asm, dst: int, size: int, k: int) -> None:
    """dst = the big-endian ``size`` bytes at ctx + k (the verifier bounded k statically)."""
    if k >= isa.SKF_AD_OFF:
        raise Untranslatable("ancillary load")
    if size == 4:
        a(X.mov_r32_m32(dst, RDI, k), X.bswap_r32(dst))
    elif size == 2:
        a(X.movzx_r32_m16(dst, RDI, k), X.bswap_r32(dst), X.shr_r32_imm8(dst, 16))
    else:
        a(X.movzx_r32_m8(dst, RDI, k))


def _load_ind(a: X.Asm, size: int, k: int) -> None:
    """A = the ``size`` bytes at ctx + ((X + k) mod 2^32); past ctx_len: abort (the interpreter)."""
    a(X.mov_r32_r32(RDX, RCX), X.alu_r32_imm32("add", RDX, k), X.lea_r64_m(R8, RDX, size),
      X.cmp_r64_r64(R8, RSI))
    a.jcc("a", "abort")
    if size == 4:
        a(X.mov_r32_m32(RAX, RDI, 0, RDX), X.bswap_r32(RAX))
    elif size == 2:
        a(X.movzx_r32_m16(RAX, RDI, 0, RDX), X.bswap_r32(RAX), X.shr_r32_imm8(RAX, 16))
    else:
        a(X.movzx_r32_m8(RAX, RDI, 0, RDX))


def _alu(a: X.Asm, op: int, src_x: bool, k: int) -> None:
    if op == isa.BPF_NEG:
        a(X.neg_r32(RAX))
    elif op in _ALU_K:
        a(X.alu_r32_r32(_ALU_K[op], RAX, RCX) if src_x else X.alu_r32_imm32(_ALU_K[op], RAX, k))
    elif op == isa.BPF_MUL:
        a(X.imul_r32_r32(RAX, RCX) if src_x else X.imul_r32_r32_imm32(RAX, RAX, k))
    elif op in (isa.BPF_LSH, isa.BPF_RSH):
        left = op == isa.BPF_LSH
        if src_x:
            a(X.shl_r32_cl(RAX) if left else X.shr_r32_cl(RAX))
        else:
            a(X.shl_r32_imm8(RAX, k & 31) if left else X.shr_r32_imm8(RAX, k & 31))
    elif op in (isa.BPF_DIV, isa.BPF_MOD):
        if src_x:
            a(X.test_r32_r32(RCX, RCX))
            a.jcc("e", "abort")           # bpf_convert_filter: "for cBPF, always return 0"
            divisor = RCX
        else:
            a(X.mov_r32_imm32(R8, k))
            divisor = R8
        a(X.xor_r32_r32(RDX, RDX), X.div_r32(divisor))
        if op == isa.BPF_MOD:
            a(X.mov_r32_r32(RAX, RDX))
    else:
        raise Untranslatable(f"alu op {op:#x}")


def translate(program) -> bytes:
    """Native code for a verified pio ``program`` (raises :class:`Untranslatable`)."""
    insns = list(program)
    a = X.Asm()
    a(X.xor_r32_r32(RAX, RAX), X.xor_r32_r32(RCX, RCX), X.mov_r32_r32(RSI, RSI))
    for pc, insn in enumerate(insns):
        a.label(f"pc{pc}")
        code, k = insn.code, insn.k
        cls = code & 0x07
        if cls in (isa.BPF_LD, isa.BPF_LDX):
            dst = RAX if cls == isa.BPF_LD else RCX
            mode, size = code & 0xE0, {isa.BPF_W: 4, isa.BPF_H: 2, isa.BPF_B: 1}[code & 0x18]
            if mode == isa.BPF_IMM:
                a(X.mov_r32_imm32(dst, k))
            elif mode == isa.BPF_ABS:
                _load_abs(a, dst, size, k)
            elif mode == isa.BPF_IND:
                _load_ind(a, size, k)
            elif mode == isa.BPF_MEM:
                a(X.mov_r32_m32(dst, RDI, 40 + 4 * k), X.bswap_r32(dst))
            elif mode == isa.BPF_LEN:
                a(X.mov_r32_r32(dst, RSI))
            elif mode == isa.BPF_MSH and cls == isa.BPF_LDX:
                a(X.movzx_r32_m8(RCX, RDI, k), X.alu_r32_imm32("and", RCX, 0xF),
                  X.shl_r32_imm8(RCX, 2))
            else:
                raise Untranslatable(f"load mode {mode:#x}")
        elif cls in (isa.BPF_ST, isa.BPF_STX):
            a(X.mov_r32_r32(RDX, RAX if cls == isa.BPF_ST else RCX), X.bswap_r32(RDX),
              X.mov_m32_r32(RDI, 40 + 4 * k, RDX))
        elif cls == isa.BPF_ALU:
            _alu(a, code & 0xF0, bool(code & isa.BPF_X), k)
        elif cls == isa.BPF_JMP:
            op = code & 0xF0
            if op == isa.BPF_JA:
                a.jmp(f"pc{pc + 1 + k}")
                continue
            src_x = bool(code & isa.BPF_X)
            if op == isa.BPF_JSET:
                a(X.test_r32_r32(RAX, RCX) if src_x else X.test_r32_imm32(RAX, k))
            else:
                a(X.alu_r32_r32("cmp", RAX, RCX) if src_x else X.alu_r32_imm32("cmp", RAX, k))
            true, false = _JCC[op]
            jt, jf = pc + 1 + insn.jt, pc + 1 + insn.jf
            if jt == jf:
                a.jmp(f"pc{jt}")
            else:
                a.jcc(true, f"pc{jt}")
                a.jmp(f"pc{jf}")
        elif cls == isa.BPF_RET:
            rval = code & 0x18
            if rval == isa.BPF_K:
                a(X.mov_r32_r32(RDX, RAX), X.mov_r32_imm32(RAX, k), X.ret())
            elif rval == isa.BPF_A:
                a(X.mov_r32_r32(RDX, RAX), X.ret())
            else:
                raise Untranslatable("ret x")
        else:   # MISC
            if code & 0xF8 == isa.BPF_TAX:
                a(X.mov_r32_r32(RCX, RAX))
            else:
                a(X.mov_r32_r32(RAX, RCX))
    a.label("abort")
    a(X.mov_r64_imm64(RAX, ABORT), X.xor_r32_r32(RDX, RDX), X.ret())
    return a.code()


def native_program(binding):
    """``(owner, address, timed)`` for the binding's program, or None: it runs in Python.

    None when there is no program, when it is not the standard runner (a test's spy), when
    it reads time from an injected clock (native code reads CLOCK_MONOTONIC only), when a
    notifier is not an eventfd, or when the translator cannot take the program.
    """
    from bpfio.pio.program import clock_fields, load_runner
    program = binding.program
    if program is None or binding._run is not load_runner(bytes(program), binding.engine):
        return None
    timed = clock_fields(program)
    if timed and not binding.machine._clock_is_64bit:
        return None
    if any(n.kind != "eventfd" for n in binding.notifiers):
        return None
    try:
        code = translate(program)
    except Untranslatable:
        return None
    from bpfio.kvm.native_code import exec_memory
    mem = exec_memory(code)
    return mem, mem.address, timed


def run_native(address: int, ctx: bytearray) -> tuple[int | None, int]:
    """Call native program code at ``address`` on ``ctx`` (header + memory, big-endian).

    Returns (verdict, or None when it aborted; A).  ``ctx`` is updated in place (M[]).
    """
    import ctypes
    from bpfio.kvm.native_code import functions
    buf = (ctypes.c_uint8 * len(ctx)).from_buffer(ctx)
    a = ctypes.c_uint32()
    rax = functions()["probe"](address, ctypes.addressof(buf), len(ctx), ctypes.byref(a))
    del buf
    return (None if rax == ABORT else rax), a.value
