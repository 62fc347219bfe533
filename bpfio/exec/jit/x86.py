"""A small table-driven x86-64 emitter, in the style of the kernel's BPF JIT.

One function per instruction form, named after it (``mov_r32_imm32``,
``jcc_rel32``, ...).  Each returns an :class:`Ins`: the encoded bytes (it *is*
a ``bytes``) plus the assembly text in capstone's Intel syntax, so the JIT's
``disasm()`` needs no disassembler at run time.  Every form is checked against
capstone and iced-x86 in ``tests/test_jit_x86.py``.

Registers are plain numbers 0..15 (the hardware numbering); the width is in the
function's name (``r32``, ``r64``).  Memory operands are ``base + index*scale +
disp`` with 64-bit base and index registers, built by :func:`mem`.

Encoding (Intel SDM vol. 2, ch. 2): REX = ``0100WRXB``; a base of RSP/R12 needs a SIB
byte, a base of RBP/R13 a displacement; a 32-bit write zero-extends to 64 bits.
"""

from __future__ import annotations

import struct

from bpfio.exec.jit.operands import (  # noqa: F401  (re-exported: the emitter's vocabulary)
    CC, CC_NAME, NAMES16, NAMES32, NAMES64, R8, R9, R10, R11, R12, R13, R14, R15, RAX, RBP, RBX,
    RCX, RDI, RDX, RSI, RSP, Ins, Mem, _cache, _hex, _modrm, _rex, _rr, _s8, _s32, _u32, mem)

# -- moves ------------------------------------------------------------------------------------

@_cache
def mov_r32_imm32(dst: int, imm: int) -> Ins:
    """``mov r32, imm32`` (B8+r id)."""
    v = _u32(imm)
    return Ins(_rex(0, 0, 0, dst) + bytes((0xB8 + (dst & 7),)) + struct.pack("<I", v),
               "mov", f"{NAMES32[dst]}, {_hex(v)}")


@_cache
def mov_r64_imm64(dst: int, imm: int) -> Ins:
    """``movabs r64, imm64`` (REX.W B8+r iq)."""
    v = imm & 0xFFFFFFFFFFFFFFFF
    return Ins(_rex(1, 0, 0, dst) + bytes((0xB8 + (dst & 7),)) + struct.pack("<Q", v),
               "movabs", f"{NAMES64[dst]}, {_hex(v)}")


@_cache
def mov_r32_r32(dst: int, src: int) -> Ins:
    """``mov r32, r32`` (89 /r)."""
    return Ins(_rr(0x89, src, dst), "mov", f"{NAMES32[dst]}, {NAMES32[src]}")


@_cache
def mov_r64_r64(dst: int, src: int) -> Ins:
    """``mov r64, r64`` (REX.W 89 /r)."""
    return Ins(_rr(0x89, src, dst, w=1), "mov", f"{NAMES64[dst]}, {NAMES64[src]}")


def _load(opcode: bytes, w: int, mnem: str, size: str, doc: str):
    """A ``op reg, [m]`` form (ModRM.reg = destination)."""
    names = NAMES64 if w else NAMES32

    @_cache
    def emit(dst: int, m: Mem) -> Ins:
        return Ins(m.encode(dst, w=w, opcode=opcode), mnem, f"{names[dst]}, {m.text(size)}")
    emit.__doc__ = doc
    return emit


def _store(opcode: bytes, w: int, mnem: str, size: str, doc: str):
    """A ``op [m], reg`` form (ModRM.reg = source)."""
    names = NAMES64 if w else NAMES32

    @_cache
    def emit(m: Mem, src: int) -> Ins:
        return Ins(m.encode(src, w=w, opcode=opcode), mnem, f"{m.text(size)}, {names[src]}")
    emit.__doc__ = doc
    return emit


mov_r32_m32 = _load(b"\x8b", 0, "mov", "dword", "``mov r32, dword ptr [m]`` (8B /r).")
mov_r64_m64 = _load(b"\x8b", 1, "mov", "qword", "``mov r64, qword ptr [m]`` (REX.W 8B /r).")
movzx_r32_m8 = _load(b"\x0f\xb6", 0, "movzx", "byte", "``movzx r32, byte ptr [m]`` (0F B6 /r).")
movzx_r32_m16 = _load(b"\x0f\xb7", 0, "movzx", "word", "``movzx r32, word ptr [m]`` (0F B7 /r).")
movbe_r32_m32 = _load(b"\x0f\x38\xf0", 0, "movbe", "dword",
                      "``movbe r32, dword ptr [m]``: big-endian load (0F 38 F0 /r; CPUID MOVBE).")
lea_r32_m = _load(b"\x8d", 0, "lea", "",
                  "``lea r32, [m]``: 32-bit address arithmetic, wraps modulo 2**32 (8D /r).")
lea_r64_m = _load(b"\x8d", 1, "lea", "", "``lea r64, [m]`` (REX.W 8D /r).")
mov_m32_r32 = _store(b"\x89", 0, "mov", "dword", "``mov dword ptr [m], r32`` (89 /r).")
mov_m64_r64 = _store(b"\x89", 1, "mov", "qword", "``mov qword ptr [m], r64`` (REX.W 89 /r).")
movbe_m32_r32 = _store(b"\x0f\x38\xf1", 0, "movbe", "dword",
                       "``movbe dword ptr [m], r32``: a big-endian store (0F 38 F1 /r).")


@_cache
def mov_m32_imm32(m: Mem, imm: int) -> Ins:
    """``mov dword ptr [m], imm32`` (C7 /0 id)."""
    v = _u32(imm)
    return Ins(m.encode(0, opcode=b"\xc7") + struct.pack("<I", v),
               "mov", f"{m.text('dword')}, {_hex(v)}")


# -- arithmetic: the classic ALU group (one table, as in the SDM's opcode map) ----------------

# name -> (ModRM.reg digit for 81/83 forms, "op rm32, r32" opcode)
ALU = {"add": (0, 0x01), "or": (1, 0x09), "and": (4, 0x21), "sub": (5, 0x29),
       "xor": (6, 0x31), "cmp": (7, 0x39)}


@_cache
def _alu_r_imm32(name: str, dst: int, imm: int, w: int) -> Ins:
    digit = ALU[name][0]
    v = _u32(imm)
    names = NAMES64 if w else NAMES32
    shown = _imm_text(name, _s32(v), w) if w else _hex(v)     # REX.W sign-extends imm32
    if dst == RAX:      # the short accumulator form (05/0D/25/2D/35/3D id)
        code = _rex(w, 0, 0, 0) + bytes((digit * 8 + 5,))
    else:
        code = _rr(0x81, digit, dst, w=w)
    return Ins(code + struct.pack("<I", v), name, f"{names[dst]}, {shown}")


@_cache
def _alu_r_imm8(name: str, dst: int, imm: int, w: int) -> Ins:
    if not _s8(imm):
        raise ValueError(f"imm8 {imm} out of range")
    names = NAMES64 if w else NAMES32
    return Ins(_rr(0x83, ALU[name][0], dst, w=w) + struct.pack("<b", imm),
               name, f"{names[dst]}, {_imm_text(name, imm, w)}")


def _imm_text(name: str, value: int, w: int) -> str:
    """A sign-extended immediate as capstone shows it: signed for add/sub/cmp,
    the unsigned operand-size value for the logical operations."""
    if name in ("and", "or", "xor") and value < 0:
        return _hex(value & ((1 << (64 if w else 32)) - 1))
    return _hex(value)


@_cache
def _alu_r_r(name: str, dst: int, src: int, w: int) -> Ins:
    names = NAMES64 if w else NAMES32
    return Ins(_rr(ALU[name][1], src, dst, w=w), name, f"{names[dst]}, {names[src]}")


def _make_alu(name):
    def r32_imm32(dst: int, imm: int) -> Ins:
        return _alu_r_imm32(name, dst, imm, 0)

    def r32_imm8(dst: int, imm: int) -> Ins:
        return _alu_r_imm8(name, dst, imm, 0)

    def r32_r32(dst: int, src: int) -> Ins:
        return _alu_r_r(name, dst, src, 0)

    def r64_imm32(dst: int, imm: int) -> Ins:
        return _alu_r_imm32(name, dst, imm, 1)

    def r64_imm8(dst: int, imm: int) -> Ins:
        return _alu_r_imm8(name, dst, imm, 1)

    def r64_r64(dst: int, src: int) -> Ins:
        return _alu_r_r(name, dst, src, 1)

    def r32_imm(dst: int, imm: int) -> Ins:
        """The shortest form for a 32-bit operation on ``imm`` (imm8 when it fits)."""
        s = _s32(imm)
        return _alu_r_imm8(name, dst, s, 0) if _s8(s) else _alu_r_imm32(name, dst, imm, 0)

    out = {}
    for fn in (r32_imm32, r32_imm8, r32_r32, r64_imm32, r64_imm8, r64_r64, r32_imm):
        fn.__name__ = fn.__qualname__ = f"{name}_{fn.__name__}"
        fn.__doc__ = fn.__doc__ or f"``{name}`` ({fn.__name__.split('_', 1)[1]} form)."
        out[fn.__name__] = fn
    return out


for _name in ALU:
    globals().update(_make_alu(_name))
del _name

# This defines add_r32_imm32, add_r32_imm8, add_r32_r32, add_r64_imm32, add_r64_imm8,
# add_r64_r64, add_r32_imm (shortest form), and the same for or, and, sub, xor, cmp.


@_cache
def test_r32_r32(dst: int, src: int) -> Ins:
    """``test r32, r32`` (85 /r)."""
    return Ins(_rr(0x85, src, dst), "test", f"{NAMES32[dst]}, {NAMES32[src]}")


@_cache
def test_r64_r64(dst: int, src: int) -> Ins:
    """``test r64, r64`` (REX.W 85 /r)."""
    return Ins(_rr(0x85, src, dst, w=1), "test", f"{NAMES64[dst]}, {NAMES64[src]}")


@_cache
def test_r32_imm32(dst: int, imm: int) -> Ins:
    """``test r32, imm32`` (A9 id for eax, else F7 /0 id)."""
    v = _u32(imm)
    code = b"\xa9" if dst == RAX else _rr(0xF7, 0, dst)
    return Ins(code + struct.pack("<I", v), "test", f"{NAMES32[dst]}, {_hex(v)}")


@_cache
def imul_r32_r32(dst: int, src: int) -> Ins:
    """``imul r32, r32``: low 32 bits of the product, same for signed and unsigned (0F AF /r)."""
    return Ins(_rex(0, dst, 0, src) + bytes((0x0F, 0xAF, _modrm(3, dst, src))),
               "imul", f"{NAMES32[dst]}, {NAMES32[src]}")


@_cache
def imul_r32_r32_imm32(dst: int, src: int, imm: int) -> Ins:
    """``imul r32, r32, imm32`` (69 /r id)."""
    v = _u32(imm)
    return Ins(_rex(0, dst, 0, src) + bytes((0x69, _modrm(3, dst, src))) + struct.pack("<I", v),
               "imul", f"{NAMES32[dst]}, {NAMES32[src]}, {_hex(v)}")


def _f7(digit: int, mnem: str):
    @_cache
    def emit(reg: int) -> Ins:
        return Ins(_rr(0xF7, digit, reg), mnem, NAMES32[reg])
    return emit


div_r32 = _f7(6, "div")
div_r32.__doc__ = "``div r32``: EDX:EAX / r32 -> EAX, remainder EDX; #DE on zero (F7 /6)."
neg_r32 = _f7(3, "neg")
neg_r32.__doc__ = "``neg r32`` (F7 /3)."
not_r32 = _f7(2, "not")
not_r32.__doc__ = "``not r32`` (F7 /2)."
mul_r32 = _f7(4, "mul")
mul_r32.__doc__ = "``mul r32``: EDX:EAX = EAX * r32, unsigned (F7 /4)."

SHIFT = {"rol": 0, "ror": 1, "shl": 4, "shr": 5, "sar": 7}


@_cache
def _shift_imm(name: str, dst: int, n: int, w: int = 0) -> Ins:
    if not 0 <= n <= 255:
        raise ValueError(f"shift count {n}")
    digit = SHIFT[name]
    code = _rr(0xD1, digit, dst, w) if n == 1 else _rr(0xC1, digit, dst, w) + bytes((n,))
    return Ins(code, name, f"{(NAMES64 if w else NAMES32)[dst]}, {_hex(n)}")


@_cache
def _shift_cl(name: str, dst: int) -> Ins:
    return Ins(_rr(0xD3, SHIFT[name], dst), name, f"{NAMES32[dst]}, cl")


def _shift_forms(name: str, digit: int):
    def r32_imm8(dst: int, n: int) -> Ins:
        return _shift_imm(name, dst, n)

    def r32_cl(dst: int) -> Ins:
        return _shift_cl(name, dst)

    r32_imm8.__doc__ = f"``{name} r32, imm8`` (C1 /{digit} ib; D1 /{digit} for a count of 1)."
    r32_cl.__doc__ = f"``{name} r32, cl``: the hardware masks the count to 5 bits (D3 /{digit})."
    return r32_imm8, r32_cl


shl_r32_imm8, shl_r32_cl = _shift_forms("shl", 4)
shr_r32_imm8, shr_r32_cl = _shift_forms("shr", 5)


def shl_r64_imm8(dst: int, n: int) -> Ins:
    """``shl r64, imm8`` (REX.W C1 /4 ib; REX.W D1 /4 for 1)."""
    return _shift_imm("shl", dst, n, 1)


@_cache
def rol_r16_imm8(dst: int, n: int) -> Ins:
    """``rol r16, imm8`` (66 C1 /0 ib): ``rol ax, 8`` swaps the two bytes of a half word."""
    return Ins(b"\x66" + _rr(0xC1, 0, dst) + bytes((n,)), "rol", f"{NAMES16[dst]}, {_hex(n)}")


@_cache
def bswap_r32(reg: int) -> Ins:
    """``bswap r32``: reverse the four bytes (0F C8+r)."""
    return Ins(_rex(0, 0, 0, reg) + bytes((0x0F, 0xC8 + (reg & 7))), "bswap", NAMES32[reg])


# -- control flow -----------------------------------------------------------------------------

@_cache
def jcc_rel8(cc: int, rel: int) -> Ins:
    """``jcc rel8`` (70+cc cb); ``rel`` counts from the end of the instruction."""
    if not _s8(rel):
        raise ValueError(f"rel8 {rel} out of range")
    return Ins(bytes((0x70 + cc,)) + struct.pack("<b", rel), CC_NAME[cc], rel=rel)


@_cache
def jcc_rel32(cc: int, rel: int) -> Ins:
    """``jcc rel32`` (0F 80+cc cd)."""
    return Ins(bytes((0x0F, 0x80 + cc)) + struct.pack("<i", rel), CC_NAME[cc], rel=rel)


@_cache
def jmp_rel8(rel: int) -> Ins:
    """``jmp rel8`` (EB cb)."""
    if not _s8(rel):
        raise ValueError(f"rel8 {rel} out of range")
    return Ins(b"\xeb" + struct.pack("<b", rel), "jmp", rel=rel)


@_cache
def jmp_rel32(rel: int) -> Ins:
    """``jmp rel32`` (E9 cd)."""
    return Ins(b"\xe9" + struct.pack("<i", rel), "jmp", rel=rel)


@_cache
def call_rel32(rel: int) -> Ins:
    """``call rel32`` (E8 cd)."""
    return Ins(b"\xe8" + struct.pack("<i", rel), "call", rel=rel)


@_cache
def call_r64(reg: int) -> Ins:
    """``call r64`` (FF /2)."""
    return Ins(_rr(0xFF, 2, reg), "call", NAMES64[reg])


@_cache
def push_r64(reg: int) -> Ins:
    """``push r64`` (50+r)."""
    return Ins(_rex(0, 0, 0, reg) + bytes((0x50 + (reg & 7),)), "push", NAMES64[reg])


@_cache
def pop_r64(reg: int) -> Ins:
    """``pop r64`` (58+r)."""
    return Ins(_rex(0, 0, 0, reg) + bytes((0x58 + (reg & 7),)), "pop", NAMES64[reg])


@_cache
def ret() -> Ins:
    """``ret`` (C3)."""
    return Ins(b"\xc3", "ret")


@_cache
def nop() -> Ins:
    """``nop`` (90)."""
    return Ins(b"\x90", "nop")


@_cache
def syscall() -> Ins:
    """``syscall`` (0F 05): rax = number; rdi, rsi, rdx, r10, r8, r9; clobbers rcx, r11."""
    return Ins(b"\x0f\x05", "syscall")


def jcc(cc: int, rel: int) -> Ins:
    """The shorter of ``jcc_rel8`` / ``jcc_rel32`` for ``rel`` measured from a rel8 form's end.

    For a backward or forward branch whose target is fixed, pass the distance from the end
    of a 2-byte ``jcc rel8``; the rel32 form is 4 bytes longer, so its rel is adjusted.
    """
    return jcc_rel8(cc, rel) if _s8(rel) else jcc_rel32(cc, rel - 4)


def jmp(rel: int) -> Ins:
    """The shorter of ``jmp_rel8`` / ``jmp_rel32`` (``rel`` from a 2-byte form's end)."""
    return jmp_rel8(rel) if _s8(rel) else jmp_rel32(rel - 3)
