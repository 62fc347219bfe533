"""Turn a cBPF program into z3 bit-vector terms with the interpreter's semantics.

cBPF jumps only forward, so one pass over the pcs in order visits every
instruction after all of its predecessors.  Each pc gets a path condition
(the OR of its incoming edges) and one merged machine state (``A``, ``X``,
``M[]`` as ``If`` over the incoming edges), so the terms grow with the
number of edges, not the number of paths.  Values that are known numbers stay
Python ints (constant folding decides ``ld #5; jeq #5`` without the solver).

Every rule below mirrors a line of :mod:`bpfio.exec.interp`: 32-bit wrap-around,
unsigned compares, shifts by ``& 31``, ``div``/``mod`` by zero and loads
outside the input end the program with 0, ``[x + k]`` wraps at 32 bits and
is read as a signed offset (on the default socket ``SKF_NET_OFF`` maps to
the data with ``net_off`` 0 and ``SKF_LL_OFF`` faults, there being no
link-layer header; the free socket context makes both offsets free, see
:mod:`bpfio.prove.inputs`).  The profile's :class:`Inputs` supplies the free
variables; :func:`encode` returns the program's :class:`Outputs`.
"""

from __future__ import annotations

from typing import NamedTuple

import z3

from bpfio import isa
from bpfio.exec.interp import predecode
from bpfio.isa import BPF_ABS, BPF_IND, BPF_LD, BPF_LDX, BPF_MSH, OPCODES, SKF_AD_OFF, U32
from bpfio.errors import BpfError, VMError

BV = 32


class ProveError(BpfError):
    """A program or question the prover cannot take (``place: error: problem``)."""


_NET = 0xfff00000   # SKF_NET_OFF as u32: >= this reads the network header + (off - _NET)


def bv(value) -> z3.BitVecRef:
    """A 32-bit term for an int or a term."""
    return z3.BitVecVal(value & U32, BV) if isinstance(value, int) else value


def _alu(op: int, a, b):
    """``A op b`` for the non-faulting ALU ops; folded when both are ints."""
    if isinstance(a, int) and isinstance(b, int):
        if op == isa.BPF_ADD:
            return (a + b) & U32
        if op == isa.BPF_SUB:
            return (a - b) & U32
        if op == isa.BPF_MUL:
            return (a * b) & U32
        if op == isa.BPF_AND:
            return a & b
        if op == isa.BPF_OR:
            return a | b
        if op == isa.BPF_XOR:
            return a ^ b
        if op == isa.BPF_LSH:
            return (a << (b & 31)) & U32
        if op == isa.BPF_RSH:
            return a >> (b & 31)
        if op == isa.BPF_DIV:
            return a // b
        return a % b
    a, b = bv(a), bv(b)
    if op == isa.BPF_ADD:
        return a + b
    if op == isa.BPF_SUB:
        return a - b
    if op == isa.BPF_MUL:
        return a * b
    if op == isa.BPF_AND:
        return a & b
    if op == isa.BPF_OR:
        return a | b
    if op == isa.BPF_XOR:
        return a ^ b
    if op == isa.BPF_LSH:
        return a << (b & 31)
    if op == isa.BPF_RSH:
        return z3.LShR(a, b & 31)
    if op == isa.BPF_DIV:
        return z3.UDiv(a, b)
    return z3.URem(a, b)


def _test(op: int, a, b):
    """The jump condition; a Python bool when both sides are ints."""
    if isinstance(a, int) and isinstance(b, int):
        return {isa.BPF_JEQ: a == b, isa.BPF_JGT: a > b,
                isa.BPF_JGE: a >= b, isa.BPF_JSET: bool(a & b)}[op]
    a, b = bv(a), bv(b)
    if op == isa.BPF_JEQ:
        return a == b
    if op == isa.BPF_JGT:
        return z3.UGT(a, b)
    if op == isa.BPF_JGE:
        return z3.UGE(a, b)
    return (a & b) != 0


def and_(p, q):
    """Conjunction that folds Python bools."""
    if p is False or q is False:
        return False
    if p is True:
        return q
    if q is True:
        return p
    return z3.And(p, q)


def not_(p):
    """Negation that folds Python bools."""
    return (not p) if isinstance(p, bool) else z3.Not(p)


def or_all(conds):
    """Disjunction of a list that folds Python bools."""
    conds = [c for c in conds if c is not False]
    if not conds:
        return False
    if any(c is True for c in conds):
        return True
    return conds[0] if len(conds) == 1 else z3.Or(*conds)


def ite(cond, then, other):
    """``If`` that folds a bool condition and equal branches."""
    if cond is True:
        return then
    if cond is False:
        return other
    if isinstance(then, int) and isinstance(other, int):
        if then == other:
            return then
    elif not isinstance(then, int) and not isinstance(other, int) and then.eq(other):
        return then
    if isinstance(then, bool) or isinstance(other, bool):
        return z3.If(cond, then, other)
    return z3.If(cond, bv(then), bv(other))


def select(cases, default):
    """Fold ``[(cond, value), ...]`` (mutually exclusive) into nested ``If``s."""
    out = default
    for cond, value in reversed(cases):
        out = ite(cond, value, out)
    return out


class State(NamedTuple):
    """The machine at one pc: registers, scratch words, ``ld rand`` reads so far.

    ``nrand`` counts the ``ld rand`` loads executed on the way here (a term where
    paths with different counts meet): the n-th read of a run takes the n-th value
    of the random stream, so two programs that read it the same way see the same
    values.
    """

    a: object
    x: object
    mem: tuple
    nrand: object = 0


class Outputs(NamedTuple):
    """What one program does: ``ends`` = [(path condition, verdict, final State)].

    The conditions are mutually exclusive and cover every input.  An abort is
    an end with verdict 0 (the interpreter's ``verdict or 0``).
    ``rand`` maps a pc of ``ld rand`` to its free variable.
    """

    ends: list
    rand: dict

    def verdict(self):
        """The u32 verdict as one term.

        Ends returning the same constant (every abort returns 0) share one
        ``Or`` of their conditions: the ends are exclusive, so their order is
        free, and the ``If`` chain shrinks to one link per distinct verdict.
        """
        groups: dict = {}
        cases = []
        for cond, value, _ in self.ends:
            if isinstance(value, int):
                if value not in groups:
                    groups[value] = []
                    cases.append((groups[value], value))
                groups[value].append(cond)
            else:
                cases.append(([cond], value))
        pairs = [(or_all(conds), value) for conds, value in cases]
        return select(pairs[:-1], pairs[-1][1])

    def final(self, pick):
        """``pick(state)`` at the end of the run as one term."""
        return select([(c, pick(s)) for c, _, s in self.ends[:-1]], pick(self.ends[-1][2]))


class Inputs:
    """A profile's free variables and loads; subclasses define ``load``.

    ``load(state, off, size, mode)`` returns ``(ok, value)``: ``ok`` is the
    condition under which the load is in bounds.  ``length`` is what
    ``ld len`` gives.  ``mem0`` is the initial scratch memory.
    """

    profile = "socket"
    length: object = 0
    mem0: tuple = (0,) * isa.BPF_MEMWORDS

    def constraints(self) -> list:
        """Facts every input satisfies (bounds of the free variables)."""
        return []

    def ancillary(self, state, k, pc, tag):
        """``(kind, value)``: kind 'value', 'rand' (a fresh value), 'fault', 'exit'
        (end returning A) or 'exit_unless' (value = (condition, value): end
        returning A unless the condition holds)."""
        return "fault", 0

    def preferred(self) -> list:
        """Conditions a readable counterexample satisfies where it can (tried in order)."""
        return []


def encode(program, inputs: Inputs, tag: str = "p", visit=None) -> Outputs:
    """Symbolically execute ``program`` over ``inputs``; ``tag`` names its private variables.

    ``visit(pc, cond, state)``, when given, sees every reachable pc with its
    path condition and the machine state before the instruction runs.
    """
    try:
        predecode(program, inputs.profile)   # the interpreter's own checks: codes, jump targets
    except VMError as err:
        raise ProveError(str(err)) from None
    n = len(program)
    incoming: list[list] = [[] for _ in range(n + 1)]
    incoming[0].append((True, State(0, 0, tuple(inputs.mem0))))
    ends: list = []
    rand: dict = {}
    nmem = len(inputs.mem0)

    for pc in range(n):
        edges = [(c, s) for c, s in incoming[pc] if c is not False]
        incoming[pc] = None          # free the edge list as we go
        if not edges:
            continue
        cond = or_all([c for c, _ in edges])
        state = _merge(edges)
        if visit is not None:
            visit(pc, cond, state)
        code, jt, jf, k = program[pc]
        info = OPCODES[code]
        cls = info.cls
        a, x, mem = state.a, state.x, state.mem

        def nxt(new: State):
            incoming[pc + 1].append((cond, new))

        def end(verdict, final: State = state):
            ends.append((cond, verdict, final))

        def mem_index():
            if k >= nmem:
                raise ProveError(f"pc {pc}: M[{k}] is outside the {nmem} words "
                                 f"(verify the program first)")
            return k

        if cls in (BPF_LD, BPF_LDX):
            mode = info.mode
            if mode == isa.BPF_IMM:
                value = k
            elif mode == isa.BPF_MEM:
                value = mem[mem_index()]
            elif mode == isa.BPF_LEN:
                value = inputs.length
            elif mode == BPF_ABS and k >= SKF_AD_OFF and (
                    inputs.profile != "socket" or k in isa.ANCILLARY_BY_K):
                kind, value = inputs.ancillary(state, k, pc, tag)
                if kind == "rand":
                    rand[pc] = value
                    state = state._replace(nrand=_alu(isa.BPF_ADD, state.nrand, 1))
                if kind == "exit_unless":     # a device field: without one, end returning A
                    present, value = value
                    ends.append((and_(cond, z3.Not(present)), a, state))
                    cond = and_(cond, present)
                if kind == "exit":
                    end(a)
                    continue
                if kind == "fault":
                    end(0)
                    continue
            else:
                if mode == BPF_IND:
                    off = _alu(isa.BPF_ADD, x, k)
                else:
                    off = k
                size = 1 if mode == BPF_MSH else info.size
                ok, value = inputs.load(state, off, size)
                if ok is not True:
                    ends.append((and_(cond, not_(ok)), 0, state))
                    cond = and_(cond, ok)
                    if cond is False:
                        continue
                if mode == BPF_MSH:
                    value = _alu(isa.BPF_LSH, _alu(isa.BPF_AND, value, 0xf), 2)
            if cls == BPF_LD:
                nxt(state._replace(a=value))
            else:
                nxt(state._replace(x=value))
        elif cls in (isa.BPF_ST, isa.BPF_STX):
            i = mem_index()
            new = list(mem)
            new[i] = a if cls == isa.BPF_ST else x
            nxt(state._replace(mem=tuple(new)))
        elif cls == isa.BPF_ALU:
            if info.op == isa.BPF_NEG:
                nxt(state._replace(a=_alu(isa.BPF_SUB, 0, a)))
                continue
            b = x if info.src == isa.BPF_X else k
            if info.op in (isa.BPF_DIV, isa.BPF_MOD):
                zero = b == 0
                if zero is True:
                    end(0)
                    continue
                if zero is not False:
                    ends.append((and_(cond, zero), 0, state))
                    cond = and_(cond, not_(zero))
            nxt(state._replace(a=_alu(info.op, a, b)))
        elif cls == isa.BPF_JMP:
            if info.op == isa.BPF_JA:
                incoming[pc + 1 + k].append((cond, state))
                continue
            test = _test(info.op, a, x if info.src == isa.BPF_X else k)
            t, f = pc + 1 + jt, pc + 1 + jf
            if t == f:
                incoming[t].append((cond, state))
            else:
                incoming[t].append((and_(cond, test), state))
                incoming[f].append((and_(cond, not_(test)), state))
        elif cls == isa.BPF_RET:
            end({isa.BPF_K: k, isa.BPF_A: a, isa.BPF_X: x}[info.src])
        else:   # BPF_MISC
            nxt(state._replace(x=a) if info.op == isa.BPF_TAX else state._replace(a=x))

    if any(c is not False for c, _ in incoming[n]):
        raise ProveError(f"pc {n - 1}: the program can run past its last instruction "
                         f"(verify the program first)")
    if not ends:
        ends.append((True, 0, State(0, 0, tuple(inputs.mem0))))
    return Outputs(ends, rand)


def _merge(edges) -> State:
    """One state for several incoming edges (``If`` on all but the last edge's condition)."""
    if len(edges) == 1:
        return edges[0][1]
    fields = []
    for pick in (lambda s: s.a, lambda s: s.x, lambda s: s.nrand):
        fields.append(select([(c, pick(s)) for c, s in edges[:-1]], pick(edges[-1][1])))
    mems = [s.mem for _, s in edges]
    merged = tuple(select([(c, m[i]) for (c, _), m in zip(edges[:-1], mems[:-1])], mems[-1][i])
                   for i in range(len(mems[0])))
    return State(fields[0], fields[1], merged, fields[2])
