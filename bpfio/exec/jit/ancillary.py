"""Socket context for native code, and the loads that are more than one move: nla, nlan, rand.

:class:`SocketAux` is the block a socket program's third argument points to, declared
once here (ctypes) and read by the emitter through the same field offsets.  ``ld rand``
reads the next u32 of a caller-filled array through a cursor (``rand_next``; for pio
a ``uint32_t **`` third argument), so no callback into Python is ever needed: the
caller draws one value per ``ld rand`` instruction per run from the same source the
interpreter uses, and the n-th read of a run (or of a batch) gets the n-th value.
``nla``/``nlan`` walk the netlink attributes natively, as ``__skb_get_nlattr(_nest)``
and :func:`bpfio.exec.skb._nla_find` do.
"""

from __future__ import annotations

import ctypes

from bpfio.exec.jit import x86
from bpfio.exec.jit.layout import Jump, Label
from bpfio.exec.jit.x86 import R8, R10, R11, RAX, RCX, RDI, RDX, RSI, mem
from bpfio.isa import U32

CC = x86.CC


class SocketAux(ctypes.Structure):
    """What socket programs read beyond the packet (ancillary values, header offsets, rand).

    Values are pre-masked as :func:`bpfio.exec.skb.ancillary` returns them;
    ``has_*`` are 0 when the field is None (no device / no link-layer header).
    """

    _fields_ = [(name, ctypes.c_uint32) for name in (
        "protocol", "pkt_type", "ifindex", "has_ifindex", "hatype", "has_hatype", "mark",
        "queue", "rxhash", "cpu", "vlan_tci", "vlan_present", "vlan_tpid", "poff", "has_ll",
        "pad")] + [("net_off", ctypes.c_int64), ("ll_off", ctypes.c_int64),
                   ("rand_next", ctypes.c_uint64),
                   # -len(head): the lowest data offset a header load may start at (the
                   # caller lays the head bytes out just before the packet)
                   ("head_min", ctypes.c_int64)]

    @classmethod
    def from_context(cls, c) -> "SocketAux":
        """The block for a :class:`~bpfio.exec.skb.SocketContext` (``rand_next`` unset)."""
        return cls(c.protocol & 0xffff, c.pkt_type & 7, (c.ifindex or 0) & U32,
                   c.ifindex is not None, (c.hatype or 0) & 0xffff, c.hatype is not None,
                   c.mark & U32, c.queue & 0xffff, c.rxhash & U32, c.cpu & U32,
                   c.vlan_tci & 0xffff, 1 if c.vlan_present else 0, c.vlan_tpid & 0xffff,
                   c.poff & U32, c.ll_off is not None, 0, c.net_off, c.ll_off or 0, 0,
                   -len(c.head))


def aux(field: str):
    """The memory operand of a SocketAux field (the block is at R8)."""
    return mem(R8, getattr(SocketAux, field).offset)


RAND_CURSOR = {"socket": aux("rand_next"), "pio": mem(R8, 0)}


def rand(profile: str) -> list:
    """``A = *cursor++`` (socket: SocketAux.rand_next; pio: the u64 its third argument points to)."""
    cursor = RAND_CURSOR[profile]
    return [x86.mov_r64_m64(R10, cursor), x86.mov_r32_m32(RAX, mem(R10, 0)),
            x86.add_r64_imm8(R10, 4), x86.mov_m64_r64(cursor, R10)]


def nla(pc: int, nest: bool) -> list:
    """``A = offset of the first attribute of type X`` in the packet from offset A (``nla``),
    or inside the attribute at A (``nlan``); 0 when none (RDI data, RSI length, X = ECX)."""
    zero, loop, found, done = (("nla", pc, n) for n in ("zero", "loop", "found", "done"))
    out = [x86.cmp_r64_imm8(RSI, 4), Jump(CC["jb"], zero),             # n < 4
           x86.lea_r64_m(R11, mem(RSI, -4)), x86.mov_r32_r32(RDX, RAX),
           x86.cmp_r64_r64(RDX, R11), Jump(CC["ja"], zero),            # A > n - 4
           x86.cmp_r32_imm(RCX, 0x3FFF), Jump(CC["ja"], zero),          # X > 0x3fff
           x86.mov_r64_r64(R10, RSI), x86.sub_r64_r64(R10, RDX)]       # rem = n - A, pos = A
    if nest:    # the nested attribute's payload: [A + 4, A + nla_len)
        out += [x86.movzx_r32_m16(R11, mem(RDI, 0, RDX)), x86.cmp_r64_r64(R11, R10),
                Jump(CC["ja"], zero), x86.lea_r64_m(R10, mem(R11, -4)),
                x86.add_r64_imm8(RDX, 4)]
    out += [Label(loop), x86.cmp_r64_imm8(R10, 4), Jump(CC["jl"], zero),   # signed: rem < 4
            x86.movzx_r32_m16(R11, mem(RDI, 0, RDX)),                      # nla_len (LE)
            x86.cmp_r64_imm8(R11, 4), Jump(CC["jb"], zero),
            x86.cmp_r64_r64(R11, R10), Jump(CC["jg"], zero),
            x86.movzx_r32_m16(RAX, mem(RDI, 2, RDX)), x86.and_r32_imm(RAX, 0x3FFF),
            x86.cmp_r32_r32(RAX, RCX), Jump(CC["je"], found),
            x86.add_r64_imm8(R11, 3), x86.and_r64_imm8(R11, -4),         # NLA_ALIGN
            x86.add_r64_r64(RDX, R11), x86.sub_r64_r64(R10, R11), Jump(None, loop),
            Label(found), x86.mov_r32_r32(RAX, RDX), Jump(None, done),
            Label(zero), x86.xor_r32_r32(RAX, RAX), Label(done)]
    return out
