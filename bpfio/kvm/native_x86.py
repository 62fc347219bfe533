"""The instruction forms the native vCPU loop needs beyond the JIT's emitter.

:mod:`bpfio.exec.jit.x86` is the project's x86-64 emitter (one function per form, each
returning an :class:`~bpfio.exec.jit.x86.Ins`: bytes plus capstone-style text).  The
exit loop of :mod:`bpfio.kvm.native_code` also needs what a cBPF program never does --
atomic read-modify-writes, 64-bit multiply/divide, memory increments, spin hints --
and those forms live here, built on the same helpers (:class:`Mem` operands, REX and
ModRM encoding) and named the same way.  ``tests/test_kvm_native.py`` decodes every
one with capstone and compares bytes, length and text.
"""

from __future__ import annotations

import struct

from bpfio.exec.jit.x86 import NAMES16, NAMES32, NAMES64, Ins, Mem, _hex, _rex, _rr


def _m(m: Mem, opcode: bytes, reg: int, w: int, mnem: str, ops: str,
       prefix: bytes = b"", tail: bytes = b"") -> Ins:
    return Ins(m.encode(reg, w=w, prefix=prefix, opcode=opcode) + tail, mnem, ops)


def inc_m64(m: Mem) -> Ins:
    """``inc qword ptr [m]`` (REX.W FF /0): a plain read-modify-write."""
    return _m(m, b"\xff", 0, 1, "inc", m.text("qword"))


def lock_inc_m64(m: Mem) -> Ins:
    """``lock inc qword ptr [m]`` (F0 REX.W FF /0): atomic, and a full memory barrier."""
    return _m(m, b"\xff", 0, 1, "lock inc", m.text("qword"), prefix=b"\xf0")


def lock_cmpxchg_m32_r32(m: Mem, src: int) -> Ins:
    """``lock cmpxchg dword ptr [m], r32`` (F0 0F B1 /r): if [m] == eax, [m] = src, ZF=1."""
    return _m(m, b"\x0f\xb1", src, 0, "lock cmpxchg", f"{m.text('dword')}, {NAMES32[src]}",
              prefix=b"\xf0")


def add_m64_r64(m: Mem, src: int) -> Ins:
    """``add qword ptr [m], r64`` (REX.W 01 /r)."""
    return _m(m, b"\x01", src, 1, "add", f"{m.text('qword')}, {NAMES64[src]}")


def add_r64_m64(dst: int, m: Mem) -> Ins:
    """``add r64, qword ptr [m]`` (REX.W 03 /r)."""
    return _m(m, b"\x03", dst, 1, "add", f"{NAMES64[dst]}, {m.text('qword')}")


def sub_r32_m32(dst: int, m: Mem) -> Ins:
    """``sub r32, dword ptr [m]`` (2B /r)."""
    return _m(m, b"\x2b", dst, 0, "sub", f"{NAMES32[dst]}, {m.text('dword')}")


def cmp_r32_m32(dst: int, m: Mem) -> Ins:
    """``cmp r32, dword ptr [m]`` (3B /r)."""
    return _m(m, b"\x3b", dst, 0, "cmp", f"{NAMES32[dst]}, {m.text('dword')}")


def cmp_m32_imm8(m: Mem, imm: int) -> Ins:
    """``cmp dword ptr [m], imm8`` (83 /7 ib, sign-extended)."""
    return _m(m, b"\x83", 7, 0, "cmp", f"{m.text('dword')}, {_hex(imm)}",
              tail=struct.pack("<b", imm))


def cmp_m8_imm8(m: Mem, imm: int) -> Ins:
    """``cmp byte ptr [m], imm8`` (80 /7 ib)."""
    return _m(m, b"\x80", 7, 0, "cmp", f"{m.text('byte')}, {_hex(imm)}",
              tail=bytes((imm & 0xFF,)))


def movzx_r32_r16(dst: int, src: int) -> Ins:
    """``movzx r32, r16`` (0F B7 /r)."""
    return Ins(_rex(0, dst, 0, src) + bytes((0x0F, 0xB7, 0xC0 | (dst & 7) << 3 | (src & 7))),
               "movzx", f"{NAMES32[dst]}, {NAMES16[src]}")


def imul_r64_r64_imm32(dst: int, src: int, imm: int) -> Ins:
    """``imul r64, r64, imm32`` (REX.W 69 /r id, a sign-extended immediate)."""
    return Ins(_rex(1, dst, 0, src) + bytes((0x69, 0xC0 | (dst & 7) << 3 | (src & 7)))
               + struct.pack("<i", imm), "imul", f"{NAMES64[dst]}, {NAMES64[src]}, {_hex(imm)}")


def mul_r64(src: int) -> Ins:
    """``mul r64``: rdx:rax = rax * src, the unsigned 128-bit product (REX.W F7 /4)."""
    return Ins(_rr(0xF7, 4, src, w=1), "mul", NAMES64[src])


def div_r64(src: int) -> Ins:
    """``div r64``: rax = rdx:rax / src, rdx = the remainder (REX.W F7 /6; #DE on overflow)."""
    return Ins(_rr(0xF7, 6, src, w=1), "div", NAMES64[src])


def shr_r64_imm8(dst: int, n: int) -> Ins:
    """``shr r64, imm8`` (REX.W C1 /5 ib)."""
    return Ins(_rr(0xC1, 5, dst, w=1) + bytes((n,)), "shr", f"{NAMES64[dst]}, {_hex(n)}")


def dec_r32(reg: int) -> Ins:
    """``dec r32`` (FF /1)."""
    return Ins(_rr(0xFF, 1, reg), "dec", NAMES32[reg])


def pause() -> Ins:
    """``pause`` (F3 90): the spin-wait hint."""
    return Ins(b"\xf3\x90", "pause")


def mfence() -> Ins:
    """``mfence`` (0F AE F0): every earlier load and store before every later one."""
    return Ins(b"\x0f\xae\xf0", "mfence")
