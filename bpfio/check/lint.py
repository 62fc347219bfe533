"""Lints: warnings about programs the verifier accepts.

They look past what the kernel checks -- instructions no path reaches,
conditional jumps whose branches meet, conditions a constant decides, stores
nothing reads, and (for ``pio``) programs that can never handle an access --
and they never change accept/reject.  :func:`lint_program` expects a program
that :func:`bpfio.check.verifier.verify` has accepted, so every jump is in range.

The control flow here is the real one (``ret`` and ``ja`` have no
fall-through), unlike the kernel's linear scratch-memory check.
"""

from __future__ import annotations

from dataclasses import dataclass

from bpfio.insn import Insn, Program
from bpfio.isa import (BPF_ADD, BPF_ALU, BPF_AND, BPF_DIV, BPF_IMM, BPF_JEQ,
                       BPF_JGE, BPF_JGT, BPF_JMP, BPF_JSET, BPF_LD, BPF_LDX, BPF_LEN,
                       BPF_LSH, BPF_MEM, BPF_MISC, BPF_MOD, BPF_MUL, BPF_NEG, BPF_OR,
                       BPF_RET, BPF_RSH, BPF_ST, BPF_STX, BPF_SUB, BPF_TAX, BPF_X,
                       BPF_XOR, OPCODES)
from bpfio.text.disasm import format_insn


@dataclass(frozen=True, slots=True)
class Lint:
    """A warning about an accepted program; it never changes accept/reject."""

    pc: int | None      # 0-based; None for whole-program warnings
    rule: str           # stable identifier, documented in docs/verifier.md
    message: str        # one sentence
    insn: Insn | None = None

    @property
    def disasm(self) -> str | None:
        """The instruction in bpf_asm syntax (None for whole-program warnings)."""
        return None if self.insn is None else format_insn(self.insn, self.pc)

    def __str__(self) -> str:
        where = "program" if self.pc is None else f"pc {self.pc}"
        if self.disasm:
            where += f" ({self.disasm})"
        return f"{where}: {self.message} [{self.rule}]"

U32 = 0xffffffff
_ALU = {
    BPF_ADD: lambda a, b: (a + b) & U32,
    BPF_SUB: lambda a, b: (a - b) & U32,
    BPF_MUL: lambda a, b: (a * b) & U32,
    BPF_DIV: lambda a, b: a // b,
    BPF_MOD: lambda a, b: a % b,
    BPF_OR: lambda a, b: a | b,
    BPF_AND: lambda a, b: a & b,
    BPF_XOR: lambda a, b: a ^ b,
    BPF_LSH: lambda a, b: (a << (b & 31)) & U32,   # X is masked with 31 (kernel)
    BPF_RSH: lambda a, b: a >> (b & 31),
}
# Control-flow kind of every opcode, from the one table.
_NEXT, _COND, _JA, _RET = 0, 1, 2, 3
_KIND = {code: (_RET if info.is_ret else _COND if info.is_cond_jump else
                _JA if info.is_jump else _NEXT) for code, info in OPCODES.items()}
_MEMOP = {code: (1 if info.cls in (BPF_ST, BPF_STX) else
                 2 if info.cls in (BPF_LD, BPF_LDX) and info.mode == BPF_MEM else 0)
          for code, info in OPCODES.items()}
_CMP = {
    BPF_JEQ: lambda a, b: a == b,
    BPF_JGT: lambda a, b: a > b,
    BPF_JGE: lambda a, b: a >= b,
    BPF_JSET: lambda a, b: (a & b) != 0,
}


def successors(prog) -> list[tuple[int, ...]]:
    """The real control-flow successors of every pc (``ret`` has none)."""
    succ = []
    append = succ.append
    for pc, (code, jt, jf, k) in enumerate(prog):
        kind = _KIND[code]
        if kind == _COND:
            append((pc + 1 + jt,) if jt == jf else (pc + 1 + jt, pc + 1 + jf))
        elif kind == _JA:
            append((pc + 1 + k,))
        elif kind == _RET:
            append(())
        else:
            append((pc + 1,))
    return succ


def lint_program(prog: Program, *, profile: str = "socket", mem_words: int = 16,
                 notifiers: int = 0) -> list:
    """Return the warnings for an accepted program (unsorted)."""
    found: list = []
    prog = tuple(prog)              # plain tuple indexing is much faster

    def warn(pc, rule, message):
        found.append(Lint(pc, rule, message, None if pc is None else prog[pc]))

    succ = successors(prog)
    n = len(prog)
    reach = [False] * n
    reach[0] = True
    for pc in range(n):
        if reach[pc]:
            for s in succ[pc]:
                reach[s] = True
    pc = 0
    while pc < n:
        if not reach[pc]:
            end = pc
            while end + 1 < n and not reach[end + 1]:
                end += 1
            span = f"pc {pc}" if end == pc else f"pc {pc} to {end}"
            count = end - pc + 1
            warn(pc, "unreachable", f"no path reaches {span} ({count} instruction"
                 f"{'s' if count > 1 else ''})")
            pc = end
        pc += 1
    for pc, (code, jt, jf, _k) in enumerate(prog):
        if jt == jf and _KIND[code] == _COND and reach[pc]:
            warn(pc, "same-targets", f"both branches go to pc {pc + 1 + jt}, "
                 "so the comparison has no effect")
    _constants(prog, profile, mem_words, notifiers, warn)
    if profile != "pio":   # pio memory persists: a store is read by later events
        _dead_stores(prog, succ, reach, warn)
    return found


def _constants(prog, profile, mem_words, notifiers, warn) -> None:
    """Constant propagation of A, X and M[]: decided conditions, pio verdicts."""
    n = len(prog)
    length = {"seccomp": 64, "pio": 40 + 4 * mem_words}.get(profile)
    states: list = [None] * n
    states[0] = (0, 0, {})          # the kernel clears A and X; M[] is unknown
    done_possible = False
    ret_pcs = []

    def merge(target, state):
        old = states[target]
        if old is None:
            states[target] = state
            return
        a, x, m = state
        oa, ox, om = old
        states[target] = (a if a == oa else None, x if x == ox else None,
                          {i: v for i, v in om.items() if m.get(i) == v})

    for pc in range(n):
        state = states[pc]
        if state is None:
            continue
        states[pc] = None           # free memory as we go; the DAG is forward only
        a, x, mem = state
        code, jt, jf, k = prog[pc]
        info = OPCODES[code]
        cls = info.cls
        nxt = pc + 1
        if cls == BPF_RET:
            ret_pcs.append(pc)
            value = k if info.src == 0 else a
            if value is None:
                done_possible = True
            elif profile == "pio":
                action, index = value >> 16, value & 0xffff
                if action == 1 or (action == 2 and index < notifiers):
                    done_possible = True
                elif info.src != 0 and action not in (0, 1, 2):
                    warn(pc, "pio-bad-verdict", f"A is always {value:#010x} here, an "
                         "unknown action: the engine counts a bad verdict and exits")
                elif info.src != 0 and action == 2:
                    warn(pc, "pio-bad-verdict", f"A is always {value:#010x} here, "
                         f"notifier {index} does not exist: the access exits")
            continue
        if cls == BPF_JMP:
            if not info.is_cond_jump:
                merge(pc + 1 + k, (a, x, mem))
                continue
            other = x if info.src == BPF_X else k
            t, f = pc + 1 + jt, pc + 1 + jf
            if a is not None and other is not None and t != f:
                taken = _CMP[info.op](a, other)
                warn(pc, "constant-condition",
                     f"the condition is always {'true' if taken else 'false'} "
                     f"(A = {a:#x}{', X = %#x' % x if info.src == BPF_X else ''}), "
                     f"so pc {f if taken else t} is never reached from here")
                merge(t if taken else f, (a, x, mem))
            else:
                merge(t, (a, x, mem))
                if f != t:
                    merge(f, (a, x, mem))
            continue
        if cls == BPF_LD or cls == BPF_LDX:
            mode = info.mode
            if mode == BPF_IMM:
                value = k
            elif mode == BPF_MEM:
                value = mem.get(k)
            elif mode == BPF_LEN:
                value = length
            else:
                value = None
            if cls == BPF_LD:
                a = value
            else:
                x = value
        elif cls == BPF_ST or cls == BPF_STX:
            value = a if cls == BPF_ST else x
            mem = dict(mem)
            if value is None:
                mem.pop(k, None)
            else:
                mem[k] = value
        elif cls == BPF_ALU:
            if info.op == BPF_NEG:
                a = None if a is None else -a & U32
            else:
                other = x if info.src == BPF_X else k
                if other == 0 and info.op in (BPF_DIV, BPF_MOD):
                    continue            # division by X == 0 ends the program (ret 0)
                a = None if a is None or other is None else _ALU[info.op](a, other)
        elif cls == BPF_MISC:
            if info.op == BPF_TAX:
                x = a
            else:
                a = x
        merge(nxt, (a, x, mem))
    if profile == "pio" and ret_pcs and not done_possible:
        warn(None, "pio-never-done", "no reachable 'ret' can give PIO_DONE or a valid "
             "PIO_NOTIFY, so every access falls back to the userspace model")


def _dead_stores(prog, succ, reach, warn) -> None:
    """Stores to M[k] that no path reads before the next store or the end."""
    n = len(prog)
    live = [0] * n                  # bits of M[] read later, at entry of each pc
    memop = _MEMOP
    for pc in range(n - 1, -1, -1):
        out = 0
        for s in succ[pc]:
            out |= live[s]
        code, _jt, _jf, k = prog[pc]
        op = memop[code]
        if op == 1:
            if reach[pc] and not out >> k & 1:
                warn(pc, "dead-store", f"the value stored in M[{k}] is never read")
            out &= ~(1 << k)
        elif op == 2:
            out |= 1 << k
        live[pc] = out
