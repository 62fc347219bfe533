"""The optimizer's working form: instructions with absolute jump targets.

A pass never computes a jump offset.  Each :class:`Op` holds its targets as
instruction indices (``jt``/``jf`` for conditional jumps, ``jt`` for ``ja``);
deleting an instruction turns it into a *nop* (``None`` in the list) that
falls through to the next live one.  :func:`lower` re-computes every offset
after the deletions and refuses (returns None) when a conditional offset no
longer fits its 8 bits, so the caller keeps the previous version.

This module also holds the per-opcode facts the passes share: which
registers an instruction reads and writes, and whether it can be removed
when its result is unused (``pure``), for each profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from bpfio.insn import Insn
from bpfio.isa import (BPF_A, BPF_ABS, BPF_ALU, BPF_DIV, BPF_IMM, BPF_IND, BPF_JA, BPF_JMP,
                       BPF_LD, BPF_LDX, BPF_MEM, BPF_MISC, BPF_MOD, BPF_MSH, BPF_NEG,
                       BPF_RET, BPF_ST, BPF_STX, BPF_TAX, BPF_X, OPCODES)
from bpfio.abi.pio import PIO_HDR_LEN

JA = BPF_JMP | BPF_JA
LD_IMM = BPF_LD | BPF_IMM
LDX_IMM = BPF_LDX | BPF_IMM
TAX = BPF_MISC | BPF_TAX
NEG_OFFSET = 0x80000000   # ABS k at or above this: SKF_NET/LL offsets and ancillary data


@dataclass(slots=True)
class Op:
    """One instruction with absolute targets (``jt`` is ja's target too)."""

    code: int
    k: int
    jt: int = 0
    jf: int = 0

    @property
    def info(self):
        """The opcode's :class:`~bpfio.isa.OpInfo`."""
        return OPCODES[self.code]

    def is_ja(self) -> bool:
        """True for the unconditional jump."""
        return self.code == JA

    def is_cond(self) -> bool:
        """True for JEQ/JGT/JGE/JSET."""
        return self.info.is_cond_jump

    def is_ret(self) -> bool:
        """True for every return."""
        return self.info.is_ret

    def ends_block(self) -> bool:
        """True for jumps and returns: the next instruction is not its fallthrough."""
        return self.info.is_jump or self.info.is_ret


def lift(program) -> list:
    """Turn instructions into Ops with absolute targets."""
    ops: list = []
    for pc, insn in enumerate(program):
        code, jt, jf, k = insn
        info = OPCODES[code]
        if code == JA:
            ops.append(Op(code, k, pc + 1 + k, 0))
        elif info.is_cond_jump:
            ops.append(Op(code, k, pc + 1 + jt, pc + 1 + jf))
        else:
            ops.append(Op(code, k))
    return ops


def live_index(ops) -> list[int]:
    """For each index, the index it lands on among live ops after compaction.

    A deleted op maps to the next live one (the nop falls through).
    """
    new = [0] * (len(ops) + 1)
    count = sum(op is not None for op in ops)
    new[len(ops)] = count
    for i in range(len(ops) - 1, -1, -1):
        if ops[i] is not None:
            count -= 1
        new[i] = count
    return new


def lower(ops) -> list[Insn] | None:
    """Compact and re-encode; None when a conditional jump no longer fits in 8 bits."""
    new = live_index(ops)
    out = []
    for i, op in enumerate(ops):
        if op is None:
            continue
        pc = new[i]
        if op.code == JA:
            out.append(Insn(op.code, 0, 0, new[op.jt] - pc - 1))
        elif op.is_cond():
            jt, jf = new[op.jt] - pc - 1, new[op.jf] - pc - 1
            if not (0 <= jt <= 255 and 0 <= jf <= 255):
                return None
            out.append(Insn(op.code, jt, jf, op.k))
        else:
            out.append(Insn(op.code, 0, 0, op.k))
    return out


def successors(ops, i: int) -> tuple[int, ...]:
    """Indices control may go to after op i (raw: deleted ops included)."""
    op = ops[i]
    if op.is_ret():
        return ()
    if op.is_ja():
        return (op.jt,)
    if op.is_cond():
        return (op.jt, op.jf) if op.jt != op.jf else (op.jt,)
    return (i + 1,)


def resolve(ops, target: int) -> int:
    """The first live index at or after ``target``."""
    while target < len(ops) and ops[target] is None:
        target += 1
    return target


def reachable(ops) -> list[bool]:
    """Which ops some path from pc 0 reaches (jumps are forward, so one pass)."""
    seen = [False] * len(ops)
    if ops:
        seen[0] = True
    for i, op in enumerate(ops):
        if not seen[i]:
            continue
        if op is None:
            if i + 1 < len(ops):
                seen[i + 1] = True
            continue
        for s in successors(ops, i):
            if s < len(ops):
                seen[s] = True
    return seen


def leaders(ops) -> set[int]:
    """Indices that are jump targets (a block may only be entered at its start)."""
    out = {0}
    for i, op in enumerate(ops):
        if op is not None and op.info.is_jump:
            out.update(resolve(ops, t) for t in successors(ops, i))
    return out


# --- what an instruction touches ---------------------------------------------

def reads(op: Op) -> set:
    """Registers/words op reads: 'A', 'X', or an int n for M[n]."""
    info, cls = op.info, op.info.cls
    if cls in (BPF_LD, BPF_LDX):
        if info.mode == BPF_IND:
            return {"X"}
        if info.mode == BPF_MEM:
            return {op.k}
        if info.mode == BPF_ABS and op.k >= NEG_OFFSET:
            # Ancillary loads: nla/nlan read A and X, xor_x reads both, ifidx/hatype
            # without a device end the program returning A.  Assume all of them do.
            return {"A", "X"}
        return set()
    if cls == BPF_ST:
        return {"A"}
    if cls == BPF_STX:
        return {"X"}
    if cls == BPF_ALU:
        if info.op == BPF_NEG:
            return {"A"}
        return {"A", "X"} if info.src == BPF_X else {"A"}
    if cls == BPF_JMP:
        if op.code == JA:
            return set()
        return {"A", "X"} if info.src == BPF_X else {"A"}
    if cls == BPF_RET:
        return {"A"} if info.src == BPF_A else ({"X"} if info.src == BPF_X else set())
    return {"A"} if info.op == BPF_TAX else {"X"}


def writes(op: Op) -> set:
    """Registers/words op writes."""
    cls = op.info.cls
    if cls == BPF_LD or cls == BPF_ALU:
        return {"A"}
    if cls == BPF_LDX:
        return {"X"}
    if cls in (BPF_ST, BPF_STX):
        return {op.k}
    if cls == BPF_MISC:
        return {"X"} if op.info.op == BPF_TAX else {"A"}
    return set()


def may_abort(op: Op, profile: str, mem_words: int) -> bool:
    """True when op can end the program by itself (out-of-bounds load, div by X = 0, ...)."""
    info = op.info
    if info.cls == BPF_ALU:
        return info.src == BPF_X and info.op in (BPF_DIV, BPF_MOD) or (
            info.op in (BPF_DIV, BPF_MOD) and op.k == 0)
    if info.cls in (BPF_LD, BPF_LDX) and info.mode in (BPF_ABS, BPF_IND, BPF_MSH):
        if info.mode == BPF_ABS and op.k < NEG_OFFSET:
            if profile == "seccomp":
                return False          # the verifier keeps seccomp loads inside seccomp_data
            if profile == "pio":
                return op.k + info.size > PIO_HDR_LEN + 4 * mem_words
        return True
    return False


def pure(op: Op, profile: str, mem_words: int) -> bool:
    """True when op may be deleted once nothing reads what it writes."""
    if op.ends_block() or may_abort(op, profile, mem_words):
        return False
    if op.info.cls in (BPF_ST, BPF_STX):
        return profile != "pio"   # in pio M[] is the binding's shared memory: a store is output
    if op.info.cls == BPF_LD and op.info.mode == BPF_ABS and op.k >= NEG_OFFSET:
        return False              # ancillary loads (rand, ifindex exits) are never removable
    return True


def is_abs_load(op: Op) -> bool:
    """An absolute packet load at a non-negative offset (the only kind value numbering trusts)."""
    return op.info.cls == BPF_LD and op.info.mode == BPF_ABS and op.k < NEG_OFFSET


def load_end(op: Op) -> int | None:
    """The end offset of a non-negative absolute load (or ldxb msh), else None."""
    info = op.info
    if op.k >= NEG_OFFSET:
        return None
    if info.cls == BPF_LD and info.mode == BPF_ABS:
        return op.k + info.size
    if info.cls == BPF_LDX and info.mode == BPF_MSH:
        return op.k + 1
    return None


__all__ = ["Op", "lift", "lower", "live_index", "successors", "resolve", "reachable",
           "leaders", "reads", "writes", "pure", "may_abort", "is_abs_load", "load_end",
           "JA", "LD_IMM", "LDX_IMM", "TAX", "NEG_OFFSET"]
