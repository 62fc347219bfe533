"""The raw instruction (``struct sock_filter``) and the program container.

``Insn`` is the one instruction type every stage exchanges.  ``Program`` is an
immutable sequence of them with conversions to and from the kernel's binary
layout (8 bytes per instruction, little-endian, as on x86-64).
"""

from __future__ import annotations

import struct
from typing import Iterable, NamedTuple

from bpfio.errors import DecodeError

# struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; } -- byte order chosen here, once.
SOCK_FILTER = struct.Struct("<HBBI")


class Insn(NamedTuple):
    """One classic BPF instruction with the kernel's field names."""

    code: int  # u16 opcode
    jt: int    # u8 jump offset if true
    jf: int    # u8 jump offset if false
    k: int     # u32 generic field

    def pack(self) -> bytes:
        """Return the 8-byte ``struct sock_filter`` encoding."""
        return SOCK_FILTER.pack(*self)

    @classmethod
    def unpack(cls, data: bytes) -> "Insn":
        """Decode one 8-byte ``struct sock_filter``."""
        return cls._make(SOCK_FILTER.unpack(data))

    def checked(self) -> "Insn":
        """Return self, raising ValueError when a field is out of its range."""
        if not (0 <= self.code <= 0xffff and 0 <= self.jt <= 0xff
                and 0 <= self.jf <= 0xff and 0 <= self.k <= 0xffffffff):
            raise ValueError(f"instruction fields out of range: {tuple(self)}")
        return self


def stmt(code: int, k: int = 0) -> Insn:
    """BPF_STMT(code, k)."""
    return Insn(code, 0, 0, k & 0xffffffff)


def jump(code: int, k: int, jt: int, jf: int) -> Insn:
    """BPF_JUMP(code, k, jt, jf)."""
    return Insn(code, jt, jf, k & 0xffffffff)


class Program(tuple):
    """An immutable sequence of :class:`Insn`.

    ``bytes(program)`` gives the ``struct sock_filter`` array;
    :meth:`from_bytes` reverses it; :meth:`parse` reads any text format
    bpfio knows (bpf_asm line, C arrays, tcpdump -ddd, JSON, assembly).
    """

    __slots__ = ()

    def __new__(cls, insns: Iterable = ()):
        return super().__new__(cls, (i if type(i) is Insn else Insn(*i).checked()
                                     for i in insns))

    def __bytes__(self) -> bytes:
        return b"".join(SOCK_FILTER.pack(*i) for i in self)

    def __repr__(self) -> str:
        return f"Program({list(self)!r})"

    def __getitem__(self, item):
        result = super().__getitem__(item)
        return Program(result) if isinstance(item, slice) else result

    def __add__(self, other):
        return Program(tuple(self) + tuple(other))

    @classmethod
    def from_bytes(cls, data: bytes, *, filename: str = "<input>") -> "Program":
        """Decode a ``struct sock_filter`` array; the length must be a multiple of 8."""
        if len(data) % SOCK_FILTER.size:
            raise DecodeError(
                f"raw program is {len(data)} bytes, not a multiple of 8",
                filename=filename, offset=len(data) - len(data) % 8)
        return cls(Insn._make(t) for t in SOCK_FILTER.iter_unpack(data))
