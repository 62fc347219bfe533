"""The x86-64 instruction forms the native vCPU loop needs, one small function per form.

Written in the style of the kernel's x86 JIT (``arch/x86/net/bpf_jit_comp.c``): each
function is named after the instruction form it emits (``mov_r64_m64``, ``jcc_rel32``)
and returns its bytes.  :class:`Asm` strings forms together with labels; every branch is
``rel32`` (the loop is a few hundred bytes, so there is nothing to gain from rel8 and one
pass plus a fix-up list is enough).  Every form is decoded by capstone in
``tests/test_kvm_native_x86.py`` and must read back as the instruction it is named after.

This module covers only what :mod:`bpfio.kvm.native_code` emits (syscall, ``lock
cmpxchg``, 64-bit ``mul``/``div``, ...).  Register numbers are the hardware's: 0-7 are
rax..rdi, 8-15 need a REX bit.
"""

from __future__ import annotations

import struct

RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = range(8)
R8, R9, R10, R11, R12, R13, R14, R15 = range(8, 16)

# Condition codes (the low nibble of Jcc): the unsigned ones and the sign test.
CC = {"o": 0x0, "b": 0x2, "ae": 0x3, "e": 0x4, "ne": 0x5, "be": 0x6, "a": 0x7,
      "s": 0x8, "ns": 0x9, "l": 0xC, "ge": 0xD}

_I8 = struct.Struct("<b")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _rex(w: int, reg: int, index: int, base: int) -> bytes:
    """The REX prefix ``0100WRXB``, or nothing when no bit is set."""
    value = 0x40 | (w << 3) | ((reg >> 3) << 2) | ((index >> 3) << 1) | (base >> 3)
    return bytes([value]) if value != 0x40 else b""


def _modrm_mem(reg: int, base: int, disp: int, index: int | None = None,
               scale: int = 1) -> bytes:
    """ModRM (+SIB, +displacement) for ``[base + index*scale + disp]``.

    RSP/R12 as a base need a SIB byte; RBP/R13 need a displacement (mod 00 with
    base 101 means RIP-relative / no base), so they always get at least disp8.
    """
    r, b = reg & 7, base & 7
    if disp == 0 and b != 5:
        mod, tail = 0, b""
    elif -128 <= disp < 128:
        mod, tail = 1, _I8.pack(disp)
    else:
        mod, tail = 2, _I32.pack(disp)
    if index is None:
        if b == 4:
            return bytes([mod << 6 | r << 3 | 4, 0x24]) + tail
        return bytes([mod << 6 | r << 3 | b]) + tail
    ss = {1: 0, 2: 1, 4: 2, 8: 3}[scale]
    return bytes([mod << 6 | r << 3 | 4, ss << 6 | (index & 7) << 3 | b]) + tail


def _mem_op(w: int, opcode: bytes, reg: int, base: int, disp: int,
            index: int | None = None, scale: int = 1, prefix: bytes = b"") -> bytes:
    return (prefix + _rex(w, reg, index or 0, base) + opcode
            + _modrm_mem(reg, base, disp, index, scale))


def _reg_op(w: int, opcode: bytes, reg: int, rm: int) -> bytes:
    return _rex(w, reg, 0, rm) + opcode + bytes([0xC0 | (reg & 7) << 3 | (rm & 7)])


# --- moves -------------------------------------------------------------------

def mov_r64_r64(dst: int, src: int) -> bytes:
    """mov dst, src (64-bit)."""
    return _reg_op(1, b"\x89", src, dst)


def mov_r32_r32(dst: int, src: int) -> bytes:
    """mov dst32, src32 (zero-extends into dst)."""
    return _reg_op(0, b"\x89", src, dst)


def mov_r32_imm32(dst: int, imm: int) -> bytes:
    """mov dst32, imm32 (zero-extends)."""
    return _rex(0, 0, 0, dst) + bytes([0xB8 + (dst & 7)]) + _U32.pack(imm & 0xFFFFFFFF)


def mov_r64_imm64(dst: int, imm: int) -> bytes:
    """movabs dst, imm64."""
    return _rex(1, 0, 0, dst) + bytes([0xB8 + (dst & 7)]) + _U64.pack(imm & (2 ** 64 - 1))


def mov_r64_m64(dst: int, base: int, disp: int = 0, index: int | None = None,
                scale: int = 1) -> bytes:
    """mov dst, qword [base + index*scale + disp]."""
    return _mem_op(1, b"\x8B", dst, base, disp, index, scale)


def mov_m64_r64(base: int, disp: int, src: int) -> bytes:
    """mov qword [base + disp], src."""
    return _mem_op(1, b"\x89", src, base, disp)


def mov_r32_m32(dst: int, base: int, disp: int = 0, index: int | None = None,
                scale: int = 1) -> bytes:
    """mov dst32, dword [base + index*scale + disp]."""
    return _mem_op(0, b"\x8B", dst, base, disp, index, scale)


def mov_m32_r32(base: int, disp: int, src: int) -> bytes:
    """mov dword [base + disp], src32."""
    return _mem_op(0, b"\x89", src, base, disp)


def mov_m32_imm32(base: int, disp: int, imm: int) -> bytes:
    """mov dword [base + disp], imm32."""
    return _mem_op(0, b"\xC7", 0, base, disp) + _U32.pack(imm & 0xFFFFFFFF)


def movzx_r32_m8(dst: int, base: int, disp: int = 0, index: int | None = None,
                 scale: int = 1) -> bytes:
    """movzx dst32, byte [base + index*scale + disp]."""
    return _mem_op(0, b"\x0F\xB6", dst, base, disp, index, scale)


def movzx_r32_m16(dst: int, base: int, disp: int = 0, index: int | None = None,
                  scale: int = 1) -> bytes:
    """movzx dst32, word [base + index*scale + disp]."""
    return _mem_op(0, b"\x0F\xB7", dst, base, disp, index, scale)


def movzx_r32_r16(dst: int, src: int) -> bytes:
    """movzx dst32, src16."""
    return _rex(0, dst, 0, src) + b"\x0F\xB7" + bytes([0xC0 | (dst & 7) << 3 | (src & 7)])


def lea_r64_m(dst: int, base: int, disp: int) -> bytes:
    """lea dst, [base + disp]."""
    return _mem_op(1, b"\x8D", dst, base, disp)


def bswap_r32(reg: int) -> bytes:
    """bswap reg32 (big-endian <-> little-endian)."""
    return _rex(0, 0, 0, reg) + bytes([0x0F, 0xC8 + (reg & 7)])


# --- arithmetic and tests ----------------------------------------------------

def add_r64_r64(dst: int, src: int) -> bytes:
    """add dst, src (64-bit)."""
    return _reg_op(1, b"\x01", src, dst)


def add_m64_r64(base: int, disp: int, src: int) -> bytes:
    """add qword [base + disp], src."""
    return _mem_op(1, b"\x01", src, base, disp)


def add_r64_m64(dst: int, base: int, disp: int) -> bytes:
    """add dst, qword [base + disp]."""
    return _mem_op(1, b"\x03", dst, base, disp)


def imul_r64_r64_imm32(dst: int, src: int, imm: int) -> bytes:
    """imul dst, src, imm32 (64-bit, signed immediate)."""
    return _rex(1, dst, 0, src) + b"\x69" + bytes([0xC0 | (dst & 7) << 3 | (src & 7)]) \
        + _I32.pack(imm)


def mul_r64(src: int) -> bytes:
    """mul src: rdx:rax = rax * src (unsigned 128-bit product)."""
    return _rex(1, 0, 0, src) + b"\xF7" + bytes([0xE0 | (src & 7)])


def div_r64(src: int) -> bytes:
    """div src: rax = rdx:rax / src, rdx = remainder (#DE if the quotient overflows)."""
    return _rex(1, 0, 0, src) + b"\xF7" + bytes([0xF0 | (src & 7)])


def xor_r32_r32(dst: int, src: int) -> bytes:
    """xor dst32, src32 (the zeroing idiom when dst == src)."""
    return _reg_op(0, b"\x31", src, dst)


def and_r32_imm32(dst: int, imm: int) -> bytes:
    """and dst32, imm32."""
    return _rex(0, 0, 0, dst) + b"\x81" + bytes([0xE0 | (dst & 7)]) + _U32.pack(imm)


def sub_r32_m32(dst: int, base: int, disp: int) -> bytes:
    """sub dst32, dword [base + disp]."""
    return _mem_op(0, b"\x2B", dst, base, disp)


def dec_r32(reg: int) -> bytes:
    """dec reg32."""
    return _rex(0, 0, 0, reg) + b"\xFF" + bytes([0xC8 | (reg & 7)])


def shr_r64_imm8(dst: int, imm: int) -> bytes:
    """shr dst, imm8 (64-bit)."""
    return _rex(1, 0, 0, dst) + b"\xC1" + bytes([0xE8 | (dst & 7), imm])


def shr_r32_imm8(dst: int, imm: int) -> bytes:
    """shr dst32, imm8."""
    return _rex(0, 0, 0, dst) + b"\xC1" + bytes([0xE8 | (dst & 7), imm])


def test_r64_r64(a: int, b: int) -> bytes:
    """test a, b (64-bit)."""
    return _reg_op(1, b"\x85", b, a)


def test_r32_r32(a: int, b: int) -> bytes:
    """test a32, b32."""
    return _reg_op(0, b"\x85", b, a)


def cmp_r32_imm32(reg: int, imm: int) -> bytes:
    """cmp reg32, imm32."""
    return _rex(0, 0, 0, reg) + b"\x81" + bytes([0xF8 | (reg & 7)]) + _U32.pack(imm)


def cmp_r32_m32(reg: int, base: int, disp: int) -> bytes:
    """cmp reg32, dword [base + disp]."""
    return _mem_op(0, b"\x3B", reg, base, disp)


def cmp_m32_imm8(base: int, disp: int, imm: int) -> bytes:
    """cmp dword [base + disp], imm8 (sign-extended)."""
    return _mem_op(0, b"\x83", 7, base, disp) + _I8.pack(imm)


def cmp_m8_imm8(base: int, disp: int, imm: int) -> bytes:
    """cmp byte [base + disp], imm8."""
    return _mem_op(0, b"\x80", 7, base, disp) + bytes([imm & 0xFF])


def inc_m64(base: int, disp: int = 0, index: int | None = None, scale: int = 1) -> bytes:
    """inc qword [base + index*scale + disp] (a plain read-modify-write)."""
    return _mem_op(1, b"\xFF", 0, base, disp, index, scale)


def lock_inc_m64(base: int, disp: int = 0) -> bytes:
    """lock inc qword [base + disp] (atomic, and a full memory barrier)."""
    return _mem_op(1, b"\xFF", 0, base, disp, prefix=b"\xF0")


def lock_cmpxchg_m32_r32(base: int, disp: int, src: int) -> bytes:
    """lock cmpxchg dword [base + disp], src32: if [m] == eax then [m] = src, ZF = 1."""
    return _mem_op(0, b"\x0F\xB1", src, base, disp, prefix=b"\xF0")


# --- stack, calls, system ----------------------------------------------------

def push_r64(reg: int) -> bytes:
    """push reg."""
    return _rex(0, 0, 0, reg) + bytes([0x50 + (reg & 7)])


def pop_r64(reg: int) -> bytes:
    """pop reg."""
    return _rex(0, 0, 0, reg) + bytes([0x58 + (reg & 7)])


def sub_r64_imm8(reg: int, imm: int) -> bytes:
    """sub reg, imm8 (64-bit)."""
    return _rex(1, 0, 0, reg) + b"\x83" + bytes([0xE8 | (reg & 7)]) + _I8.pack(imm)


def add_r64_imm8(reg: int, imm: int) -> bytes:
    """add reg, imm8 (64-bit)."""
    return _rex(1, 0, 0, reg) + b"\x83" + bytes([0xC0 | (reg & 7)]) + _I8.pack(imm)


def call_r64(reg: int) -> bytes:
    """call reg (indirect)."""
    return _rex(0, 0, 0, reg) + b"\xFF" + bytes([0xD0 | (reg & 7)])


def syscall() -> bytes:
    """syscall: rax = number, args rdi rsi rdx r10 r8 r9; clobbers rcx and r11."""
    return b"\x0F\x05"


def ret() -> bytes:
    """ret."""
    return b"\xC3"


def pause() -> bytes:
    """pause (the spin-wait hint)."""
    return b"\xF3\x90"


def mfence() -> bytes:
    """mfence (orders every earlier load and store before every later one)."""
    return b"\x0F\xAE\xF0"


def jcc_rel32(cc: str, rel: int) -> bytes:
    """jCC rel32 (relative to the end of the instruction)."""
    return bytes([0x0F, 0x80 | CC[cc]]) + _I32.pack(rel)


def jmp_rel32(rel: int) -> bytes:
    """jmp rel32 (relative to the end of the instruction)."""
    return b"\xE9" + _I32.pack(rel)


class Asm:
    """A byte buffer with labels: forms are appended, branches fixed up by :meth:`code`."""

    def __init__(self):
        self.buf = bytearray()
        self.labels: dict[str, int] = {}
        self._fixups: list[tuple[int, str]] = []     # (offset of the rel32, label)

    def __call__(self, *forms: bytes) -> "Asm":
        for form in forms:
            self.buf += form
        return self

    def label(self, name: str) -> None:
        """Bind ``name`` to the current offset."""
        if name in self.labels:
            raise ValueError(f"label {name} bound twice")
        self.labels[name] = len(self.buf)

    def jcc(self, cc: str, name: str) -> None:
        """Emit ``jCC name``."""
        self.buf += jcc_rel32(cc, 0)
        self._fixups.append((len(self.buf) - 4, name))

    def jmp(self, name: str) -> None:
        """Emit ``jmp name``."""
        self.buf += jmp_rel32(0)
        self._fixups.append((len(self.buf) - 4, name))

    def code(self) -> bytes:
        """The finished bytes, every branch pointing at its label."""
        for at, name in self._fixups:
            _I32.pack_into(self.buf, at, self.labels[name] - (at + 4))
        return bytes(self.buf)
