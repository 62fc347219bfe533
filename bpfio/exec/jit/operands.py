"""Operands and encoding helpers of the x86-64 emitter (:mod:`.x86`).

Registers (hardware numbers), condition codes, :class:`Ins` (encoded bytes that
carry their assembly text) and :class:`Mem` (a ``[base + index*scale + disp]``
operand with its ModRM/SIB/displacement encoding).  Import them from :mod:`.x86`.
"""

from __future__ import annotations

import functools
import struct

# Hardware register numbers (ModRM.reg / rm with REX.R / REX.B as bit 3).
RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = range(8)
R8, R9, R10, R11, R12, R13, R14, R15 = range(8, 16)

NAMES64 = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
           "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
NAMES32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi",
           "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d", "r15d")
NAMES16 = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di",
           "r8w", "r9w", "r10w", "r11w", "r12w", "r13w", "r14w", "r15w")

# Condition codes (the low nibble of Jcc / SETcc / CMOVcc).
CC = {"jo": 0, "jno": 1, "jb": 2, "jae": 3, "je": 4, "jne": 5, "jbe": 6, "ja": 7,
      "js": 8, "jns": 9, "jp": 10, "jnp": 11, "jl": 12, "jge": 13, "jle": 14, "jg": 15}
CC_NAME = {v: k for k, v in CC.items()}

_cache = functools.lru_cache(maxsize=8192)   # bounded: immediates come from user programs


class Ins(bytes):
    """One encoded instruction: its bytes, and its text in capstone's Intel syntax.

    A relative branch keeps ``rel`` (from the end of the instruction) and renders
    its target as an address, as capstone does: ``ins.asm(address)``.
    """

    mnemonic: str
    operands: str
    rel: int | None

    def __new__(cls, code: bytes, mnemonic: str, operands: str = "", rel: int | None = None):
        self = super().__new__(cls, code)
        self.mnemonic = mnemonic
        self.operands = operands
        self.rel = rel
        return self

    def asm(self, address: int = 0) -> str:
        """Return the text (``mnemonic operands``); a branch target is absolute."""
        ops = self.operands
        if self.rel is not None:
            ops = _hex((address + len(self) + self.rel) & 0xFFFFFFFFFFFFFFFF)
        return f"{self.mnemonic} {ops}" if ops else self.mnemonic

    @property
    def text(self) -> str:
        """The text at address 0."""
        return self.asm(0)


# -- formatting and encoding helpers ----------------------------------------------------------

def _hex(v: int) -> str:
    """Capstone's immediate style: decimal up to 9, hex above, a sign for negatives."""
    if v < 0:
        return "-" + _hex(-v)
    return str(v) if v <= 9 else f"0x{v:x}"


def _s8(v: int) -> bool:
    return -128 <= v <= 127


def _u32(v: int) -> int:
    if not -(1 << 31) <= v <= 0xFFFFFFFF:
        raise ValueError(f"immediate {v} does not fit 32 bits")
    return v & 0xFFFFFFFF


def _s32(v: int) -> int:
    v = _u32(v)
    return v - (1 << 32) if v & 0x80000000 else v


def _rex(w: int, r: int, x: int, b: int) -> bytes:
    bits = (w << 3) | ((r >> 3) << 2) | ((x >> 3) << 1) | (b >> 3)
    return bytes((0x40 | bits,)) if bits else b""


def _modrm(mod: int, reg: int, rm: int) -> int:
    return (mod << 6) | ((reg & 7) << 3) | (rm & 7)


class Mem(tuple):
    """A memory operand ``[base + index*scale + disp]`` (64-bit registers).

    A tuple ``(base, disp, index, scale)``: hashable, so emit functions can be cached.
    """

    __slots__ = ()

    def __new__(cls, base: int, disp: int = 0, index: int | None = None, scale: int = 1):
        if index == RSP:
            raise ValueError("rsp cannot be an index register")
        if scale not in (1, 2, 4, 8):
            raise ValueError(f"bad scale {scale}")
        return tuple.__new__(cls, (base, _s32(disp), index, scale))

    base = property(lambda self: self[0])
    disp = property(lambda self: self[1])
    index = property(lambda self: self[2])
    scale = property(lambda self: self[3])

    def key(self):
        return tuple(self)

    def text(self, size: str = "") -> str:
        s = NAMES64[self.base]
        if self.index is not None:
            s += " + " + NAMES64[self.index] + ("" if self.scale == 1 else f"*{self.scale}")
        if self.disp:
            s += (" - " if self.disp < 0 else " + ") + _hex(abs(self.disp))
        return f"{size} ptr [{s}]" if size else f"[{s}]"

    def encode(self, reg: int, w: int = 0, prefix: bytes = b"", opcode: bytes = b"") -> bytes:
        """``prefix REX opcode ModRM [SIB] [disp]`` with ``reg`` in ModRM.reg."""
        base, disp, index = self.base, self.disp, self.index
        if disp == 0 and base & 7 != RBP:
            mod, dbytes = 0, b""
        elif _s8(disp):
            mod, dbytes = 1, struct.pack("<b", disp)
        else:
            mod, dbytes = 2, struct.pack("<i", disp)
        if index is None and base & 7 != RSP:
            tail = bytes((_modrm(mod, reg, base),))
        else:
            idx = RSP if index is None else index      # index 100b = none
            ss = {1: 0, 2: 1, 4: 2, 8: 3}[self.scale]
            tail = bytes((_modrm(mod, reg, 4), (ss << 6) | ((idx & 7) << 3) | (base & 7)))
        rex = _rex(w, reg, index or 0, base)
        return prefix + rex + opcode + tail + dbytes


@functools.lru_cache(maxsize=4096)
def mem(base: int, disp: int = 0, index: int | None = None, scale: int = 1) -> Mem:
    """Build a memory operand (see :class:`Mem`)."""
    return Mem(base, disp, index, scale)


def _rr(opcode: int, reg: int, rm: int, w: int = 0, prefix: bytes = b"") -> bytes:
    """``op rm, reg`` register-direct form (ModRM.mod = 11)."""
    return prefix + _rex(w, reg, 0, rm) + bytes((opcode, _modrm(3, reg, rm)))
