"""Control-flow passes: unreachable code, jump threading, tail merging.

Every pass takes the :mod:`~bpfio.opt.ir` list (absolute targets, ``None``
for deleted instructions) and a :class:`~bpfio.opt.passes.Context`, edits
the list in place and returns how many edits it made.
"""

from __future__ import annotations

from bpfio.isa import BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JSET, BPF_K, U32
from bpfio.opt.ir import JA, Op, leaders, reachable, resolve, successors

_MAX_CHAIN = 64   # jump threading follows at most this many jumps from one edge


def remove_unreachable(ops, ctx) -> int:
    """Delete the instructions no path from pc 0 reaches."""
    seen = reachable(ops)
    count = 0
    for i, op in enumerate(ops):
        if op is not None and not seen[i]:
            ops[i] = None
            count += 1
    return count


# --- what an edge tells about A ------------------------------------------------

class Facts:
    """What the conditional jumps taken so far say about A (unsigned 32-bit)."""

    __slots__ = ("lo", "hi", "eq", "ne", "ones", "zeros")

    def __init__(self):
        self.lo, self.hi, self.eq, self.ne = 0, U32, None, set()
        self.ones = []     # masks with at least one bit set in A (jset taken)
        self.zeros = 0     # bits known clear in A (jset not taken)

    def add(self, op: int, k: int, taken: bool) -> None:
        """Record that ``A <op> k`` was ``taken``."""
        if op == BPF_JEQ:
            if taken:
                self.eq = k
            else:
                self.ne.add(k)
        elif op == BPF_JGT:
            if taken:
                self.lo = max(self.lo, k + 1)
            else:
                self.hi = min(self.hi, k)
        elif op == BPF_JGE:
            if taken:
                self.lo = max(self.lo, k)
            else:
                self.hi = min(self.hi, k - 1)
        elif op == BPF_JSET:
            if taken:
                self.ones.append(k)
            else:
                self.zeros |= k

    def decide(self, op: int, k: int) -> bool | None:
        """The outcome of ``A <op> k`` when the facts imply it, else None."""
        if self.eq is not None:
            a = self.eq
            return {BPF_JEQ: a == k, BPF_JGT: a > k, BPF_JGE: a >= k,
                    BPF_JSET: bool(a & k)}[op]
        if op == BPF_JEQ:
            if k in self.ne or not self.lo <= k <= self.hi or k & self.zeros:
                return False
        elif op == BPF_JGT:
            if self.lo > k:
                return True
            if self.hi <= k:
                return False
        elif op == BPF_JGE:
            if self.lo >= k:
                return True
            if self.hi < k:
                return False
        elif op == BPF_JSET:
            if k & ~self.zeros & U32 == 0:
                return False
            if any(m & ~self.zeros & U32 and not m & ~k & ~self.zeros & U32 for m in self.ones):
                return True    # some taken jset's remaining bits all lie inside k
        return None

    def copy(self) -> "Facts":
        """An independent copy."""
        new = Facts()
        new.lo, new.hi, new.eq, new.ne = self.lo, self.hi, self.eq, set(self.ne)
        new.ones, new.zeros = list(self.ones), self.zeros
        return new


def _follow(ops, target: int, facts: Facts | None) -> int:
    """Where control really ends up from ``target`` given the facts about A."""
    for _ in range(_MAX_CHAIN):
        target = resolve(ops, target)
        if target >= len(ops):
            return target
        op = ops[target]
        if op.is_ja():
            target = op.jt
            continue
        if op.is_cond() and facts is not None and op.info.src == BPF_K:
            outcome = facts.decide(op.info.op, op.k)
            if outcome is None:
                return target
            facts.add(op.info.op, op.k, outcome)
            target = op.jt if outcome else op.jf
            continue
        return target
    return target


def thread_jumps(ops, ctx) -> int:
    """Send each jump straight to where its target chain of jumps leads.

    A chain continues through ``ja`` and through conditional jumps whose
    outcome the path already decides (the same test on the unchanged A, or a
    range/bit test implied by it).
    """
    count = 0
    for i, op in enumerate(ops):
        if op is None or not op.info.is_jump:
            continue
        if op.is_ja():
            new = _follow(ops, op.jt, Facts())
            if resolve(ops, op.jt) != new:
                op.jt, count = new, count + 1
            continue
        for attr, taken in (("jt", True), ("jf", False)):
            facts = None
            if op.info.src == BPF_K:
                facts = Facts()
                facts.add(op.info.op, op.k, taken)
            old = getattr(op, attr)
            new = _follow(ops, old, facts)
            if resolve(ops, old) != new:
                setattr(op, attr, new)
                count += 1
    return count


def drop_trivial_jumps(ops, ctx) -> int:
    """Delete ``ja`` to the next instruction; a test with both targets equal becomes ja."""
    count = 0
    for i, op in enumerate(ops):
        if op is None or not op.info.is_jump:
            continue
        nxt = resolve(ops, i + 1)
        if op.is_ja():
            if resolve(ops, op.jt) == nxt:
                ops[i] = None
                count += 1
        elif resolve(ops, op.jt) == resolve(ops, op.jf):
            # A test reads A (and X) and changes nothing, so dropping it is safe.
            ops[i] = None if resolve(ops, op.jt) == nxt else Op(JA, 0, op.jt, 0)
            count += 1
    return count


# --- identical tails -----------------------------------------------------------

def tail_classes(ops) -> list[int]:
    """For each index, the last index whose instruction sequence behaves identically.

    Two instructions are one class when code and k match and their
    successors are one class (computed back to front: jumps go forward).
    """
    n = len(ops)
    rep = list(range(n + 1))
    seen: dict = {}
    for i in range(n - 1, -1, -1):
        op = ops[i]
        if op is None:
            rep[i] = rep[i + 1]
            continue
        key = (op.code, op.k) + tuple(rep[resolve(ops, s)] for s in _succ_all(ops, i))
        if key in seen:
            rep[i] = seen[key]
        else:
            seen[key] = i
            rep[i] = i
    return rep


def _succ_all(ops, i):
    op = ops[i]
    if op.is_cond():
        return (op.jt, op.jf)
    return successors(ops, i)


def merge_tails(ops, ctx) -> int:
    """Point every jump at the last copy of an identical tail (``ret`` blocks, shared suffixes).

    The copies only reached by jumps become unreachable.  A copy entered by
    falling through is kept, except that its first instruction becomes a
    ``ja`` to the last copy when that deletes at least two instructions.
    """
    rep = tail_classes(ops)
    count = 0
    for op in ops:
        if op is None or not op.info.is_jump:
            continue
        for attr in ("jt", "jf") if op.is_cond() else ("jt",):
            t = resolve(ops, getattr(op, attr))
            if t < len(ops) and rep[t] != t:
                setattr(op, attr, rep[t])
                count += 1
    if ctx.prefer == "speed":
        return count          # a ja into the last copy is one more instruction on that path
    heads = leaders(ops)
    for i, op in enumerate(ops):
        if op is None or i == 0 or i in heads or rep[i] == i or op.is_ja():
            continue
        prev = _prev_live(ops, i)
        if prev is None or ops[prev].ends_block():
            continue
        # Fallthrough-only copy: worth a ja when the copy is at least two long.
        length, j = 0, i
        while j < len(ops) and (ops[j] is None or j == i or j not in heads):
            if ops[j] is not None:
                length += 1
                if ops[j].ends_block():
                    break
            j += 1
        if length >= 2:
            ops[i] = Op(JA, 0, rep[i], 0)
            count += 1
    return count


def _prev_live(ops, i):
    j = i - 1
    while j >= 0 and ops[j] is None:
        j -= 1
    return j if j >= 0 else None


__all__ = ["remove_unreachable", "thread_jumps", "drop_trivial_jumps", "merge_tails",
           "tail_classes", "Facts"]
