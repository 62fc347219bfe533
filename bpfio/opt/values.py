"""Data-flow passes: value numbering (constants, redundant loads) and dead code.

:func:`propagate` runs a forward analysis over the loop-free program: at each
instruction it knows a *term* for A, X and every scratch word -- a constant
``('c', v)``, a packet load ``('abs', size, k)`` / ``('ind', size, k, x)`` /
``('msh', k)``, ``('len',)``, an ALU result, or a fresh name when nothing is
known.  At a join a value survives only when every predecessor agrees.
Rewrites: a load whose value the register already holds is deleted (the
earlier identical load already succeeded, so it cannot abort); ALU on known
constants becomes ``ld #c``; a test on known values becomes ``ja``.

:func:`remove_dead` deletes instructions whose results nothing reads
(liveness of A, X and M[]), keeping anything that may end the program --
except a socket packet load when a later load on the same straight line
reads at least as far, since both end the program with 0 on a short packet.
In the ``pio`` profile M[] is the binding's shared memory, so every word is
live at every return and stores are never dead; A is live too (an IN the
verdict handles receives it).
"""

from __future__ import annotations

from bpfio.isa import (BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_DIV, BPF_IMM, BPF_IND, BPF_JEQ,
                       BPF_JGE, BPF_JGT, BPF_JSET, BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH,
                       BPF_MEM, BPF_MISC, BPF_MOD, BPF_MSH, BPF_MUL, BPF_NEG, BPF_OR, BPF_RET,
                       BPF_RSH, BPF_ST, BPF_STX, BPF_SUB, BPF_TAX, BPF_X, BPF_XOR, U32)
from bpfio.abi.pio import PIO_HDR_LEN
from bpfio.opt.ir import (JA, LD_IMM, LDX_IMM, NEG_OFFSET, TAX, Op, load_end, pure, reads,
                          successors, writes)

_MAX_DEPTH = 12   # deeper ALU terms become fresh names (keeps terms small)
TXA = 0x87


def _depth(t) -> int:
    return t[-1] if t[0] == "alu" else 0


def fold(op: int, a, b):
    """The term for ``a <op> b`` (b is None for neg); None when unknown (abort, too deep)."""
    if a[0] == "c" and (b is None or b[0] == "c"):
        x, y = a[1], 0 if b is None else b[1]
        if op in (BPF_DIV, BPF_MOD) and y == 0:
            return None
        value = {BPF_ADD: lambda: x + y, BPF_SUB: lambda: x - y, BPF_MUL: lambda: x * y,
                 BPF_DIV: lambda: x // y, BPF_MOD: lambda: x % y, BPF_AND: lambda: x & y,
                 BPF_OR: lambda: x | y, BPF_XOR: lambda: x ^ y,
                 BPF_LSH: lambda: x << (y & 31), BPF_RSH: lambda: x >> (y & 31),
                 BPF_NEG: lambda: -x}[op]()
        return ("c", value & U32)
    if b is not None and b[0] == "c":
        y = b[1]
        if y == 0 and op in (BPF_ADD, BPF_SUB, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH):
            return a
        if y == 1 and op in (BPF_MUL, BPF_DIV):
            return a
        if y == U32 and op == BPF_AND:
            return a
        if y == 0 and op in (BPF_AND, BPF_MUL):
            return ("c", 0)
    depth = 1 + max(_depth(a), _depth(b) if b is not None else 0)
    if depth > _MAX_DEPTH:
        return None   # the caller names it freshly
    return ("alu", op, a, b, depth)


def _test(op: int, a: int, b: int) -> bool:
    return {BPF_JEQ: a == b, BPF_JGT: a > b, BPF_JGE: a >= b, BPF_JSET: bool(a & b)}[op]


class State:
    """Terms for A, X and the scratch words at one program point."""

    __slots__ = ("a", "x", "m")

    def __init__(self, a, x, m):
        self.a, self.x, self.m = a, x, m

    def copy(self) -> "State":
        """An independent copy."""
        return State(self.a, self.x, dict(self.m))


def _join(states, pc):
    if len(states) == 1:
        return states[0].copy()
    first = states[0]
    # "j" names (joins) never collide with the "u" names instructions make.
    a = first.a if all(s.a == first.a for s in states) else ("j", pc, "A")
    x = first.x if all(s.x == first.x for s in states) else ("j", pc, "X")
    m = {n: v for n, v in first.m.items() if all(s.m.get(n) == v for s in states)}
    return State(a, x, m)


def _mem_dependent(t) -> bool:
    """True when a pio term reads the shared-memory area (a store may change it)."""
    if t[0] == "abs":
        return t[2] + t[1] > PIO_HDR_LEN
    if t[0] == "ind":
        return True
    if t[0] == "alu":
        return _mem_dependent(t[2]) or (t[3] is not None and _mem_dependent(t[3]))
    return False


def load_term(op: Op, st: State, pc: int, profile: str):
    """The term an ld/ldx instruction produces in state ``st``."""
    info = op.info
    mode = info.mode
    reg = "A" if info.cls == BPF_LD else "X"
    if mode == BPF_IMM:
        return ("c", op.k)
    if mode == BPF_LEN:
        return ("len",)
    if mode == BPF_MEM:
        return st.m.get(op.k, ("u", pc, reg))
    if op.k >= NEG_OFFSET:
        return ("u", pc, reg)   # ancillary data (rand!) and header-relative offsets
    if mode == BPF_ABS:
        return ("abs", info.size, op.k)
    if mode == BPF_IND:
        return ("ind", info.size, op.k, st.x)
    if mode == BPF_MSH:
        return ("msh", op.k)
    return ("u", pc, reg)


def step(op: Op, st: State, pc: int, profile: str) -> State:
    """The state after ``op`` (a new object)."""
    st = st.copy()
    cls = op.info.cls
    if cls == BPF_LD:
        st.a = load_term(op, st, pc, profile)
        if op.info.mode == BPF_MEM:
            st.m[op.k] = st.a
    elif cls == BPF_LDX:
        st.x = load_term(op, st, pc, profile)
        if op.info.mode == BPF_MEM:
            st.m[op.k] = st.x
    elif cls in (BPF_ST, BPF_STX):
        if profile == "pio":
            # A store changes what loads of the shared-memory area read.
            for attr in ("a", "x"):
                if _mem_dependent(getattr(st, attr)):
                    setattr(st, attr, ("u", pc, attr))
            st.m = {n: v for n, v in st.m.items() if not _mem_dependent(v)}
        st.m[op.k] = st.a if cls == BPF_ST else st.x
    elif cls == BPF_ALU:
        b = None if op.info.op == BPF_NEG else (st.x if op.info.src == BPF_X else ("c", op.k))
        st.a = fold(op.info.op, st.a, b) or ("u", pc, "A")
    elif cls == BPF_MISC:
        if op.info.op == BPF_TAX:
            st.x = st.a
        else:
            st.a = st.x
    return st


def analyse(ops, profile: str) -> list:
    """The state at the entry of every live instruction (None where unreachable)."""
    n = len(ops)
    incoming: list = [[] for _ in range(n + 1)]
    incoming[0].append(State(("c", 0), ("c", 0), {}))
    entry: list = [None] * n
    for i in range(n):
        if not incoming[i]:
            continue
        op = ops[i]
        st = _join(incoming[i], i)
        incoming[i] = None
        if op is None:
            incoming[i + 1].append(st)
            continue
        entry[i] = st
        if op.ends_block():
            for s in successors(ops, i):
                incoming[s].append(st)
        else:
            incoming[i + 1].append(step(op, st, i, profile))
    return entry


def _rewrite(op: Op, st: State, pc: int, profile: str):
    """A replacement for op in state st: the same op (no change), None (delete) or a new Op."""
    cls, info = op.info.cls, op.info
    if cls == BPF_LD:
        t = load_term(op, st, pc, profile)
        if t == st.a:
            return None
        if info.mode == BPF_MEM and t[0] == "c":
            return Op(LD_IMM, t[1])
        if info.mode == BPF_MEM and t == st.x:
            return Op(TXA, 0)
    elif cls == BPF_LDX:
        t = load_term(op, st, pc, profile)
        if t == st.x:
            return None
        if info.mode == BPF_MEM and t[0] == "c":
            return Op(LDX_IMM, t[1])
        if info.mode == BPF_MEM and t == st.a:
            return Op(TAX, 0)
    elif cls == BPF_ST:
        if st.m.get(op.k) == st.a:
            return None
    elif cls == BPF_STX:
        if st.m.get(op.k) == st.x:
            return None
    elif cls == BPF_MISC:
        if st.a == st.x:
            return None
    elif cls == BPF_ALU:
        after = step(op, st, pc, profile).a
        if after == st.a:
            return None
        if after[0] == "c":
            return Op(LD_IMM, after[1])
        if info.src == BPF_X and st.x[0] == "c" and not (
                info.op in (BPF_DIV, BPF_MOD) and st.x[1] == 0):
            k = st.x[1] & 31 if info.op in (BPF_LSH, BPF_RSH) else st.x[1]   # shifts by X & 31
            return Op(op.code & ~BPF_X, k)
    elif op.is_cond():
        b = st.x if info.src == BPF_X else ("c", op.k)
        if st.a[0] == "c" and b[0] == "c":
            return Op(JA, 0, op.jt if _test(info.op, st.a[1], b[1]) else op.jf, 0)
        if info.src == BPF_X and st.a == st.x and info.op != BPF_JSET:
            return Op(JA, 0, op.jt if info.op in (BPF_JEQ, BPF_JGE) else op.jf, 0)
        if info.src == BPF_X and st.x[0] == "c":
            return Op(op.code & ~BPF_X, st.x[1], op.jt, op.jf)
    elif cls == BPF_RET and info.src == 0x10 and st.a[0] == "c" and profile != "pio":
        # (pio checks a constant verdict's action bits; ret a is checked at run time)
        return Op(BPF_RET | BPF_K, st.a[1])
    return op


def propagate(ops, ctx) -> int:
    """Apply the value-numbering rewrites; return how many fired."""
    entry = analyse(ops, ctx.profile)
    count = 0
    for i, op in enumerate(ops):
        st = entry[i]
        if op is None or st is None:
            continue
        new = _rewrite(op, st, i, ctx.profile)
        if new is op:
            continue
        ops[i] = new
        count += 1
    return count


# --- liveness --------------------------------------------------------------------

def liveness(ops, profile: str, mem_words: int) -> list:
    """The set of live registers/words after each instruction (at its exit)."""
    n = len(ops)
    # pio: the hypervisor sees the shared words and, for an IN it handles, A.
    exit_live = set(range(mem_words)) | {"A"} if profile == "pio" else set()
    live_in: list = [set()] * (n + 1)
    live_out: list = [set()] * n
    for i in range(n - 1, -1, -1):
        op = ops[i]
        if op is None:
            live_out[i] = live_in[i] = live_in[i + 1]
            continue
        out: set = set()
        if op.is_ret():
            out = set(exit_live)
        else:
            for s in successors(ops, i):
                out |= live_in[s]
        live_out[i] = out
        live_in[i] = (out - writes(op)) | reads(op)
    return live_out


def _covered(ops, i: int, end: int) -> bool:
    """A later load on the straight line from i reads up to ``end`` or further."""
    j = i + 1
    while j < len(ops):
        op = ops[j]
        if op is not None:
            if op.ends_block():
                return False
            if op.info.cls in (BPF_LD, BPF_LDX) and op.info.mode in (BPF_ABS, BPF_MSH):
                if op.k >= NEG_OFFSET:
                    return False   # an ancillary load may end the program with A, not 0
                e = load_end(op)
                if e is not None and e >= end:
                    return True
        j += 1
    return False


def remove_dead(ops, ctx) -> int:
    """Delete instructions whose results are never read.

    One backward sweep: liveness is computed as it goes, so a deletion is
    already seen by the instructions before it (chains of dead code go in
    one call).
    """
    n = len(ops)
    exit_live = set(range(ctx.mem_words)) | {"A"} if ctx.profile == "pio" else set()
    live_in: list = [set()] * (n + 1)
    count = 0
    for i in range(n - 1, -1, -1):
        op = ops[i]
        if op is None:
            live_in[i] = live_in[i + 1]
            continue
        if op.is_ret():
            out = set(exit_live)
        else:
            out = set()
            for s in successors(ops, i):
                out |= live_in[s]
        if not op.ends_block() and not writes(op) & out:
            removable = pure(op, ctx.profile, ctx.mem_words)
            # (speed: on a short packet the later load aborts after more instructions)
            if not removable and ctx.profile == "socket" and ctx.prefer != "speed":
                end = load_end(op)
                removable = end is not None and _covered(ops, i, end)
            if removable:
                ops[i] = None
                count += 1
                live_in[i] = out
                continue
        live_in[i] = (out - writes(op)) | reads(op)
    return count


__all__ = ["propagate", "remove_dead", "analyse", "liveness", "fold", "step", "State",
           "load_term"]
