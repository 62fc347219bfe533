"""Stepping and tracing: the interpreter one instruction at a time, for the debugger and traces.

:func:`trace` runs a program and records every executed instruction with the registers
after it; :class:`Execution` is a resumable run (``step()``, breakpoints) that
``bpfio dbg`` drives.  The semantics are :mod:`bpfio.exec.interp`'s, instruction by
instruction: the fast loop there and :func:`step_op` here are tested against each other.
"""

from __future__ import annotations

from typing import NamedTuple

from bpfio import isa
from bpfio.errors import VMError
from bpfio.exec.interp import (ADD_K, AND_K, DIV_K, EXIT_WITH_A, JA, JEQ_K, JGE_K, JGT_K, JSET_K,
                               LDB_ABS, LDH_ABS, LDX_IMM, LDX_LEN, LDX_MEM, LDX_MSH, LD_ABS, LD_ANC,
                               LD_GEN, LD_IMM, LD_IND, LD_LEN, LD_MEM, LSH_K, MOD_K, MUL_K, NEG,
                               OR_K, RET_A, RET_K, RET_X, RSH_K, ST, STX, SUB_K, TAX, TXA, XOR_K,
                               predecode, scratch_error, _ALU_K, _ALU_X, _Input, _JMP_K, _JMP_X, _finish, _prepare)
from bpfio.isa import U32


class Step(NamedTuple):
    """One executed instruction.

    ``a``, ``x`` are the registers BEFORE the instruction ran; ``a_after``,
    ``x_after`` after it.  ``mem_writes`` lists the ``(index, value)`` pairs
    it stored.  ``next_pc`` is None when the program ended here; then
    ``verdict`` holds the return value (0 after an abort) and ``fault``
    says why it aborted (None for a normal ``ret``).
    """

    pc: int
    insn: object
    a: int
    x: int
    mem_writes: tuple = ()
    a_after: int = 0
    x_after: int = 0
    next_pc: int | None = None
    verdict: int | None = None
    fault: str | None = None


class Execution:
    """A program run one instruction at a time (for the debugger and ``--trace``).

    ``step()`` executes the instruction at ``pc`` and returns its :class:`Step`;
    ``done``, ``verdict``, ``fault``, ``a``, ``x``, ``mem`` and ``pc`` show
    the state.  Each step performs exactly what :func:`execute` does for one
    pre-decoded instruction (the two are tested against each other).
    """

    def __init__(self, program, data, *, profile: str = "socket", **context):
        self.program = program
        self.profile = profile
        self.ops = predecode(program, profile)
        self.pkt, self.mem, self.input = _prepare(profile, data, dict(context))
        self.a = self.x = self.pc = 0
        self.executed = 0
        self.done = False
        self.verdict: int | None = None
        self.fault: str | None = None

    def _end(self, value, fault=None):
        self.done = True
        self.fault = fault
        self.verdict = _finish(self.profile, value if fault is None else 0)
        return None

    def step(self) -> Step:
        """Execute one instruction and describe it; raises VMError once done."""
        if self.done:
            raise VMError("the program has already returned", pc=self.pc)
        pc, a0, x0 = self.pc, self.a, self.x
        insn = self.program[pc] if pc < len(self.program) else None
        kind, a, x, value, writes = step_op(self.ops[pc], pc, a0, x0, self.pkt, self.mem, self.input)
        self.executed += 1
        self.a, self.x = a, x
        if kind == "next":
            self.pc = value
            return Step(pc, insn, a0, x0, writes, a, x, value)
        if kind == "fault":
            self._end(0, value)
        else:
            self._end(value)
        return Step(pc, insn, a0, x0, writes, a, x, None, self.verdict, self.fault)

    def run(self):
        """Run to the end; return the verdict."""
        while not self.done:
            self.step()
        return self.verdict


_JUMPS = {JEQ_K: lambda a, v: a == v, JGT_K: lambda a, v: a > v,
          JGE_K: lambda a, v: a >= v, JSET_K: lambda a, v: bool(a & v)}


_ALU = {ADD_K: lambda a, v: a + v, SUB_K: lambda a, v: a - v, MUL_K: lambda a, v: a * v,
        DIV_K: lambda a, v: a // v, MOD_K: lambda a, v: a % v, AND_K: lambda a, v: a & v,
        OR_K: lambda a, v: a | v, XOR_K: lambda a, v: a ^ v,
        LSH_K: lambda a, v: a << (v & 31), RSH_K: lambda a, v: a >> (v & 31)}


_X_TO_K = {x_op: k_op for k_op, x_op in zip((*_ALU_K.values(), *_JMP_K.values()),
                                            (*_ALU_X.values(), *_JMP_X.values()))}


_SIZES = {LD_ABS: 4, LDH_ABS: 2, LDB_ABS: 1}


def step_op(op_tuple, pc: int, a: int, x: int, pkt: bytes, mem: list, inp: _Input):
    """Execute one pre-decoded op: ``(kind, a, x, value, mem_writes)``.

    ``kind`` is ``"next"`` (value = next pc), ``"ret"`` (value = verdict) or
    ``"fault"`` (value = the reason).  Written independently of
    :func:`execute`, op by op, so that each checks the other.
    """
    op, k, t, f = op_tuple
    length = len(pkt) if inp.length is None else inp.length
    if op in _X_TO_K:          # the X forms are the K forms with v = X
        op, k = _X_TO_K[op], x
    if op in _JUMPS:
        return "next", a, x, t if _JUMPS[op](a, k) else f, ()
    if op in _ALU:
        if op in (DIV_K, MOD_K) and k == 0:
            return "fault", a, x, "division by zero", ()
        return "next", _ALU[op](a, k) & U32, x, pc + 1, ()
    if op == JA:
        return "next", a, x, t, ()
    if op == NEG:
        return "next", -a & U32, x, pc + 1, ()
    if op in (RET_K, RET_A, RET_X):
        return "ret", a, x, {RET_K: k, RET_A: a, RET_X: x}[op], ()
    if op in (ST, STX, LD_MEM, LDX_MEM) and k >= len(mem):
        raise scratch_error(op_tuple, pc, mem)
    if op in (ST, STX):
        value = a if op == ST else x
        mem[k] = value
        return "next", a, x, pc + 1, ((k, value),)
    simple = {LD_IMM: (k, x), LDX_IMM: (a, k), TAX: (a, a), TXA: (x, x),
              LD_LEN: (length, x), LDX_LEN: (a, length)}
    if op in simple:
        a, x = simple[op]
        return "next", a, x, pc + 1, ()
    if op in (LD_MEM, LDX_MEM):
        a, x = (mem[k], x) if op == LD_MEM else (a, mem[k])
        return "next", a, x, pc + 1, ()
    if op == LD_ANC:
        v = inp.anc(pkt, k, a, x)
        if v is None:
            return "fault", a, x, f"ancillary load k={k:#x} is not available in the {inp.profile} profile", ()
        if v == EXIT_WITH_A:   # ifidx/hatype without a device: return A
            return "ret", a, x, a, ()
        return "next", v, x, pc + 1, ()
    if op == LD_GEN and f == -1:
        raise VMError("ran past the last instruction", pc=pc)
    # Input loads: absolute, indexed, the MSH byte.
    size = _SIZES.get(op, t)
    off = (x + k) & U32 if op == LD_IND else k
    v = inp.load(pkt, off, size) if inp.profile != "socket" or not (
        off < 0x80000000 and off + size <= len(pkt)) else int.from_bytes(pkt[off:off + size], "big")
    if v is None:
        return "fault", a, x, (f"load of {size} byte(s) at offset {isa.to_s32(off)} is out of "
                               f"bounds (input length {length})"), ()
    if op == LDX_MSH:
        return "next", a, (v & 0xf) << 2, pc + 1, ()
    return "next", v, x, pc + 1, ()


def trace(program, data, *, profile: str = "socket", **context):
    """Run ``program`` and return ``(verdict, [Step, ...])``, one Step per executed instruction."""
    ex = Execution(program, data, profile=profile, **context)
    steps = []
    while not ex.done:
        steps.append(ex.step())
    return ex.verdict, steps
