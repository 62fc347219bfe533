"""Straight-line rewrites libpcap's code generator leaves behind.

* :func:`reschedule_scratch` -- libpcap evaluates ``E1 op E2`` as
  ``<E1>; st M[n]; <E2 into X>; ld M[n]; op x``.  When ``<E2>`` does not read
  A and ``<E1>`` uses neither X nor anything ``<E2>`` writes, the same block
  can compute ``<E2>`` first and ``<E1>`` straight into A: the store and the
  reload go (2 instructions).  Reordering only changes *which* load of a
  too-short packet ends the program, and every such end returns 0, so this
  is done only for socket and seccomp (never pio, where stores are output).
* :func:`fold_msh` -- ``ldb [k]; and #0xf; lsh #2; tax`` is exactly
  ``ldxb 4*([k]&0xf)`` (plus ``txa`` when A is still read afterwards).
"""

from __future__ import annotations

from bpfio.isa import (BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_DIV, BPF_IMM, BPF_LD, BPF_LDX, BPF_LEN,
                       BPF_LSH, BPF_MEM, BPF_MOD, BPF_MSH, BPF_MUL, BPF_NEG, BPF_ST, BPF_X)
from bpfio.opt.ir import NEG_OFFSET, TAX, Op, leaders, reads, writes
from bpfio.opt.values import TXA, liveness

LD_MEM = BPF_LD | BPF_MEM
LDXB_MSH = BPF_LDX | BPF_B | BPF_MSH
LDB_ABS = BPF_LD | BPF_B | BPF_ABS


def _from_scratch(op: Op, clobbered: set) -> bool:
    """op sets A without reading anything the moved code cannot see."""
    info = op.info
    if info.cls != BPF_LD:
        return False
    if info.mode in (BPF_IMM, BPF_LEN):
        return True
    if info.mode == BPF_ABS:
        return op.k < NEG_OFFSET
    return info.mode == BPF_MEM and op.k not in clobbered


def _movable(op: Op, clobbered: set) -> bool:
    """op may move below code that writes ``clobbered`` (A-only work, no abort of its own)."""
    info = op.info
    if _from_scratch(op, clobbered):
        return True
    if info.cls != BPF_ALU or info.src == BPF_X:
        return False
    return info.op == BPF_NEG or not (info.op in (BPF_DIV, BPF_MOD) and op.k == 0)


def _block_run(ops, start: int, heads: set, step: int):
    """Live indices from ``start`` (exclusive) in one block, walking by ``step`` (+1 or -1)."""
    j = start + step
    while 0 <= j < len(ops):
        if step > 0 and j in heads:
            return
        if ops[j] is not None:
            if ops[j].ends_block():
                return
            yield j
        if step < 0 and j in heads:
            return
        j += step


def reschedule_scratch(ops, ctx) -> int:
    """Compute X's operand first and A's directly, dropping ``st M[n]`` / ``ld M[n]``."""
    if ctx.profile == "pio" or ctx.prefer == "speed":
        return 0   # (speed: on a short packet the moved loads may abort later than before)
    count = 0
    heads = leaders(ops)
    live = liveness(ops, ctx.profile, ctx.mem_words)
    for i, op in enumerate(ops):
        if op is None or op.info.cls != BPF_ST or i in heads:
            continue
        n = op.k
        seq, j = [], None
        for idx in _block_run(ops, i, heads, +1):
            o = ops[idx]
            if o.code == LD_MEM and o.k == n:
                j = idx
                break
            if n in reads(o) or n in writes(o) or (
                    o.info.cls in (BPF_LD, BPF_LDX) and o.k >= NEG_OFFSET
                    and o.info.mode == BPF_ABS):
                break
            seq.append(idx)
        if j is None or n in live[j] or not seq:
            continue
        # The moved-over code must set A before reading it (it never sees E1's value).
        ok = False
        for idx in seq:
            if "A" in reads(ops[idx]):
                break
            if "A" in writes(ops[idx]):
                ok = True
                break
        if not ok:
            continue
        clobbered = set().union(*(writes(ops[idx]) for idx in seq))
        e1: list[int] = []
        for idx in _block_run(ops, i, heads, -1):
            o = ops[idx]
            if not _movable(o, clobbered):
                e1 = []
                break
            e1.insert(0, idx)
            if _from_scratch(o, clobbered):
                break
        else:
            e1 = e1 if e1 and _from_scratch(ops[e1[0]], clobbered) else []
        if not e1 or not _from_scratch(ops[e1[0]], clobbered):
            continue
        slots = [idx for idx in range(e1[0], j + 1) if ops[idx] is not None]
        new = [ops[idx] for idx in seq] + [ops[idx] for idx in e1]
        new += [None] * (len(slots) - len(new))
        for slot, o in zip(slots, new):
            ops[slot] = o
        return count + 1   # liveness and leaders changed: one rewrite per call
    return count


def fold_msh(ops, ctx) -> int:
    """``ldb [k]; and #0xf; lsh #2; tax`` -> ``ldxb 4*([k]&0xf)`` (+ ``txa`` if A is read)."""
    if ctx.profile != "socket":
        return 0
    heads = leaders(ops)
    live = liveness(ops, ctx.profile, ctx.mem_words)
    count = 0
    for i, op in enumerate(ops):
        if op is None or op.code != LDB_ABS or op.k >= NEG_OFFSET:
            continue
        run = [i] + list(_block_run(ops, i, heads, +1))[:3]
        if len(run) < 4:
            continue
        a, s, t = (ops[x] for x in run[1:])
        shift = (s.code == BPF_ALU | BPF_LSH and s.k == 2) or (s.code == BPF_ALU | BPF_MUL
                                                              and s.k == 4)
        if not (a.code == BPF_ALU | BPF_AND and a.k == 0xf and shift and t.code == TAX):
            continue
        repl = [Op(LDXB_MSH, op.k)]
        if "A" in live[run[3]]:
            repl.append(Op(TXA, 0))
        repl += [None] * (4 - len(repl))
        for slot, o in zip(run, repl):
            ops[slot] = o
        count += 1
        live = liveness(ops, ctx.profile, ctx.mem_words)
    return count


__all__ = ["reschedule_scratch", "fold_msh"]
