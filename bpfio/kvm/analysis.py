"""The path analysis behind offload eligibility: what one OUT can make a program do.

A path-sensitive abstract interpretation of a verified pio program with the event's known
fields (port, size, direction, offset and, for an ioeventfd check, the data) as constants
and everything else -- shared memory, time, unknown data -- as unknown; a conditional jump
on an unknown value follows both edges.  Anything it cannot decide (an indexed load with an
unknown X, too many states) is reported as undecided.  Eligibility is decided by proof
(:mod:`bpfio.prove.offload`); this analysis accepts a subset and is kept as the
cross-check (``DECIDE = "analysis"`` in :mod:`bpfio.kvm.offload`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from bpfio import isa
from bpfio.abi import pio as abi

_U32 = 0xFFFFFFFF
_U32_FIELD = struct.Struct("<I")
MAX_STATES = 20_000          # abstract states per (port, size, data) before giving up
SIZES = (1, 2, 4)


_F = abi.CONSTANTS


_TIME_FIELDS = range(_F["PIO_TICKS"], _F["PIO_HDR_LEN"])


_VCPU_FIELD = range(_F["PIO_VCPU"], _F["PIO_VCPU"] + 4)


_RAND_K = isa.SKF_AD_OFF + isa.SKF_AD["RANDOM"]


@dataclass
class Outcome:
    """What every path of a program can do for one abstract OUT event."""

    verdicts: set = field(default_factory=set)   # constant verdicts; None = unknown
    stores: bool = False
    reads_time: bool = False
    reads_vcpu: bool = False
    reads_rand: bool = False
    undecided: str = ""                           # why the analysis gave up, if it did

    @property
    def decided(self) -> bool:
        """True when the analysis covered every path."""
        return not self.undecided


def _header(port: int, size: int, offset: int, data):
    """The 40 header bytes as a list of ints or None (unknown)."""
    words = [port, size, abi.PIO_OUT, data, offset, None, None, None, None, None]
    out = []
    for w in words:
        out.extend([None] * 4 if w is None else list((w & _U32).to_bytes(4, "big")))
    return out


def analyze_out(program, *, port: int, base: int, size: int, data, mem_words: int) -> Outcome:
    """Explore every path of ``program`` for an OUT of ``size`` bytes at ``port``.

    ``data`` is the written value, or None for "any value".  Shared memory
    is always unknown.  Returns the :class:`Outcome` over all paths.
    """
    header = _header(port, size, port - base, data)
    ctx_len = abi.PIO_HDR_LEN + 4 * mem_words
    out = Outcome()
    insns = [(isa.OPCODES.get(i.code), i) for i in program]
    n = len(insns)

    def load(k: int, width: int):
        """Abstract value of a big-endian context load at byte k (None = unknown).

        Returns (value, fault) where fault means the load may run past the context.
        """
        if k + width > ctx_len or k < 0:
            return None, True
        raw = []
        for b in range(k, k + width):
            if b in _TIME_FIELDS:
                out.reads_time = True
            if b in _VCPU_FIELD:
                out.reads_vcpu = True
            raw.append(header[b] if b < abi.PIO_HDR_LEN else None)
        if any(v is None for v in raw):
            return None, False
        return int.from_bytes(bytes(raw), "big"), False

    seen = set()
    stack = [(0, 0, 0)]       # (pc, A, X); both registers start at 0 as in the kernel
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        if len(seen) > MAX_STATES:
            out.undecided = f"more than {MAX_STATES} abstract states"
            return out
        pc, a, x = state
        if not 0 <= pc < n:
            out.undecided = f"pc {pc} runs off the program"
            return out
        info, insn = insns[pc]
        if info is None:
            out.undecided = f"pc {pc}: unknown opcode {insn.code:#x}"
            return out
        k = insn.k & _U32
        cls = info.cls
        nxt = pc + 1
        if cls in (isa.BPF_LD, isa.BPF_LDX):
            mode = info.mode
            if mode == isa.BPF_IMM:
                v = k
            elif mode == isa.BPF_MEM:
                v = None
            elif mode == isa.BPF_LEN:
                v = ctx_len
            elif mode == isa.BPF_ABS:
                if k >= isa.SKF_AD_OFF:
                    if k == _RAND_K:
                        out.reads_rand = True
                        v = None
                    else:
                        out.undecided = f"pc {pc}: ancillary load"
                        return out
                else:
                    v, fault = load(k, info.size)
                    if fault:
                        out.verdicts.add(abi.PIO_EXIT)   # runtime fault: verdict 0
                        continue
            elif mode == isa.BPF_IND:
                if x is None:
                    out.undecided = f"pc {pc}: indexed load with an unknown X"
                    return out
                v, fault = load((x + k) & _U32, info.size)
                if fault:
                    out.verdicts.add(abi.PIO_EXIT)
                    continue
            elif mode == isa.BPF_MSH:
                byte, fault = load(k, 1)
                if fault:
                    out.verdicts.add(abi.PIO_EXIT)
                    continue
                v = None if byte is None else 4 * (byte & 0xF)
            else:
                out.undecided = f"pc {pc}: load mode {mode:#x}"
                return out
            if cls == isa.BPF_LD:
                a = v
            else:
                x = v
        elif cls in (isa.BPF_ST, isa.BPF_STX):
            out.stores = True
        elif cls == isa.BPF_ALU:
            if info.op == isa.BPF_NEG:
                a = None if a is None else (-a) & _U32
            else:
                operand = k if info.src == isa.BPF_K else x
                if info.op in (isa.BPF_DIV, isa.BPF_MOD) and operand == 0:
                    out.verdicts.add(abi.PIO_EXIT)         # division by zero X: verdict 0
                    continue
                if info.op in (isa.BPF_DIV, isa.BPF_MOD) and operand is None:
                    out.verdicts.add(abi.PIO_EXIT)         # X may be zero
                    a = None
                elif a is None or operand is None:
                    a = None
                else:
                    a = _alu(info.op, a, operand)
        elif cls == isa.BPF_JMP:
            if info.op == isa.BPF_JA:
                stack.append((pc + 1 + k, a, x))
                continue
            operand = k if info.src == isa.BPF_K else x
            taken = _jump(info.op, a, operand)
            if taken is None or taken:
                stack.append((pc + 1 + insn.jt, a, x))
            if taken is None or not taken:
                stack.append((pc + 1 + insn.jf, a, x))
            continue
        elif cls == isa.BPF_RET:
            if info.op == isa.BPF_K:
                out.verdicts.add(k)
            elif info.op == isa.BPF_A:
                out.verdicts.add(a)
            else:
                out.verdicts.add(x)
            continue
        elif cls == isa.BPF_MISC:
            if info.op == isa.BPF_TAX:
                x = a
            else:
                a = x
        stack.append((nxt, a, x))
    return out


def _alu(op: int, a: int, b: int) -> int:
    if op == isa.BPF_ADD:
        return (a + b) & _U32
    if op == isa.BPF_SUB:
        return (a - b) & _U32
    if op == isa.BPF_MUL:
        return (a * b) & _U32
    if op == isa.BPF_DIV:
        return a // b
    if op == isa.BPF_MOD:
        return a % b
    if op == isa.BPF_OR:
        return a | b
    if op == isa.BPF_AND:
        return a & b
    if op == isa.BPF_XOR:
        return a ^ b
    if op == isa.BPF_LSH:
        return (a << b) & _U32 if b < 32 else 0
    if op == isa.BPF_RSH:
        return a >> b if b < 32 else 0
    raise ValueError(op)


def _jump(op: int, a, b):
    """True/False for a decided conditional jump, None when an operand is unknown."""
    if a is None or b is None:
        return None
    if op == isa.BPF_JEQ:
        return a == b
    if op == isa.BPF_JGT:
        return a > b
    if op == isa.BPF_JGE:
        return a >= b
    if op == isa.BPF_JSET:
        return bool(a & b)
    raise ValueError(op)
