"""The raw instruction (``struct sock_filter``) and the program container.

``Insn`` is the one instruction type every stage exchanges.  ``Program`` is an
immutable sequence of them with conversions to and from the kernel's binary
layout (8 bytes per instruction, little-endian, as on x86-64).
"""

from __future__ import annotations

import struct
from itertools import chain
from typing import Iterable, NamedTuple

from bpfio.errors import DecodeError, UsageError

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
        """Return self, raising :class:`UsageError` (a ValueError) for a field out of its range."""
        check_fields((self,))
        return self


_FIELDS = (("code", "u16", 0xffff), ("jt", "u8", 0xff), ("jf", "u8", 0xff), ("k", "u32", 0xffffffff))
_INT_ONLY = frozenset({int})


def check_fields(insns) -> None:
    """Raise :class:`UsageError` unless every field of ``insns`` is an exact int in its range.

    This is where every instruction enters the library (``Program`` calls it):
    one type scan and one ``struct`` pack, at C speed, for the whole program.
    """
    try:
        if _INT_ONLY.issuperset(map(type, chain.from_iterable(insns))):
            struct.pack("<" + "HBBI" * len(insns), *chain.from_iterable(insns))
            return
    except (struct.error, TypeError):
        pass
    for pc, insn in enumerate(insns):
        if len(insn) != 4:
            raise UsageError(f"pc {pc}: an instruction has 4 fields (code, jt, jf, k), "
                             f"not {len(insn)}")
        for (name, kind, top), value in zip(_FIELDS, insn):
            if type(value) is not int or not 0 <= value <= top:
                raise UsageError(f"pc {pc}: {name}={value!r} is not a {kind} "
                                 f"(an int in 0..{top:#x})")


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
        if type(insns) is Program:
            return insns
        try:
            self = super().__new__(cls, (i if type(i) is Insn else Insn(*i) for i in insns))
        except TypeError as exc:
            raise UsageError(f"program: a program is a sequence of Insn(code, jt, jf, k) "
                             f"({exc})") from None
        check_fields(self)
        return self

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
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise UsageError(f"Program.from_bytes: data must be bytes, not {type(data).__name__}")
        if len(data) % SOCK_FILTER.size:
            raise DecodeError(
                f"raw program is {len(data)} bytes, not a multiple of 8",
                filename=filename, offset=len(data) - len(data) % 8)
        return cls(Insn._make(t) for t in SOCK_FILTER.iter_unpack(data))
