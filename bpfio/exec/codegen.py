"""Code generation for the compiled path: the Python statements of each pre-decoded instruction.

:class:`_Emitter` walks the pre-decoded program (:func:`bpfio.exec.interp.predecode`) and
writes nested ``if`` trees (or, past the size budget, a block-dispatch loop) whose every
statement has the interpreter's meaning: masked 32-bit ALU, ``X & 31`` shifts, 0 on an
out-of-bounds load or a division by zero X.  :mod:`bpfio.exec.compiler` assembles the
statements into a function and owns the public API.
"""

from __future__ import annotations

from bpfio.exec import interp
from bpfio.exec.interp import (ADD_K, ADD_X, AND_K, AND_X, DIV_K, DIV_X, JA, JEQ_K, JEQ_X, JGE_K,
                               JGE_X, JGT_K, JGT_X, JSET_K, JSET_X, LD_ABS, LD_ANC, LD_GEN, LD_IMM,
                               LD_IND, LD_LEN, LD_MEM, LDB_ABS, LDH_ABS, LDX_IMM, LDX_LEN, LDX_MEM,
                               LDX_MSH, LSH_K, LSH_X, MOD_K, MOD_X, MUL_K, MUL_X, NEG, OR_K, OR_X,
                               RET_A, RET_K, RET_X, RSH_K, RSH_X, ST, STX, SUB_K, SUB_X, TAX, TXA,
                               XOR_K, XOR_X)
from bpfio.isa import BPF_MEMWORDS, SKF_AD, SKF_AD_OFF


_JUMP_OPS = {JEQ_K: "A == {v}", JGT_K: "A > {v}", JGE_K: "A >= {v}", JSET_K: "A & {v}",
             JEQ_X: "A == X", JGT_X: "A > X", JGE_X: "A >= X", JSET_X: "A & X"}


_NEGATED = {JEQ_K: "A != {v}", JGT_K: "A <= {v}", JGE_K: "A < {v}", JSET_K: "not A & {v}",
            JEQ_X: "A != X", JGT_X: "A <= X", JGE_X: "A < X", JSET_X: "not A & X"}


_ALU_K = {ADD_K: "A = (A + {k}) & 0xffffffff", SUB_K: "A = (A - {k}) & 0xffffffff",
          MUL_K: "A = (A * {k}) & 0xffffffff", AND_K: "A &= {k}", OR_K: "A |= {k}",
          XOR_K: "A ^= {k}", LSH_K: "A = (A << {s}) & 0xffffffff", RSH_K: "A >>= {s}"}


_ALU_X = {ADD_X: "A = (A + X) & 0xffffffff", SUB_X: "A = (A - X) & 0xffffffff",
          MUL_X: "A = (A * X) & 0xffffffff", AND_X: "A &= X", OR_X: "A |= X",
          XOR_X: "A ^= X", LSH_X: "A = (A << (X & 31)) & 0xffffffff", RSH_X: "A >>= X & 31"}


_BRANCHES = frozenset(_JUMP_OPS) | {JA}


_ENDS = frozenset({RET_K, RET_A, RET_X}) | _BRANCHES


_PIO_WORDS = ("port", "size", "direction", "(data & 0xffffffff)", "offset", "vcpu",
              "(ticks & 0xffffffff)", "((ticks >> 32) & 0xffffffff)",
              "(ns & 0xffffffff)", "((ns >> 32) & 0xffffffff)")


def _abs_end(op, k, t):
    """End offset of a socket load at a fixed non-negative offset, else None."""
    if op in (LD_ABS, LDH_ABS, LDB_ABS):
        return t
    if op == LDX_MSH and k < 0x80000000:
        return k + 1
    return None


class _Emitter:
    """Builds the body of one function from pre-decoded ops."""

    def __init__(self, ops, profile: str, mode: str):
        self.ops = ops
        self.profile = profile
        # "fast": return the verdict; "detail": return (verdict|None, A, count);
        # "fused": set V (None on abort) and leave the enclosing loop (see fused_body).
        self.mode = mode
        self.lines: list[str] = []
        self.count = mode in ("detail", "fused")
        self.hoist = profile == "socket"
        self.rest = 0               # instructions of the current run after the one being emitted

    # -- what a return looks like ---------------------------------------------
    def ret(self, value: str) -> str:
        if self.mode == "fused":
            return f"V = {value}; break"
        return f"return {value}" if self.mode == "fast" else f"return {value}, A, c"

    def abort(self) -> str:
        # pio never hoists checks, so an abort sits at its instruction and ``rest``
        # (the run's instructions after it) makes the executed count exact.
        drop = f" - {self.rest}" if self.profile == "pio" and self.rest else ""
        if self.mode == "fused":
            return f"V = None; c -= {self.rest}; break" if drop else "V = None; break"
        return "return 0" if self.mode == "fast" else f"return None, A, c{drop}"

    # -- one instruction ------------------------------------------------------
    def insn(self, pc: int, ind: str, checked: bool) -> list[str]:
        op, k, t, f = self.ops[pc]
        out = []
        if op == LD_IMM:
            out.append(f"A = {k}")
        elif op == LDX_IMM:
            out.append(f"X = {k}")
        elif op in (LD_MEM, LDX_MEM, ST, STX):
            cell = f"mem[{k}]" if self.profile == "pio" else f"m{k}"
            if self.profile != "pio" and k >= BPF_MEMWORDS:
                # Only an unverified program gets here: the interpreter's VMError, not a 17th local.
                out.append(f"raise _scratch_error({self.ops[pc]!r}, {pc}, range({BPF_MEMWORDS}))")
                return [ind + line for line in out]
            if self.profile == "pio" and self.mode != "fused":
                # mem is the caller's list (any length); the engine's fused path is always verified.
                out += [f"if {k} >= len(mem):",
                        f"    raise _scratch_error({self.ops[pc]!r}, {pc}, mem)"]
            out.append({LD_MEM: f"A = {cell}", LDX_MEM: f"X = {cell}",
                        ST: f"{cell} = A", STX: f"{cell} = X"}[op])
        elif op == TAX:
            out.append("X = A")
        elif op == TXA:
            out.append("A = X")
        elif op in (LD_LEN, LDX_LEN):
            out.append(f"{'A' if op == LD_LEN else 'X'} = L")
        elif op in _ALU_K:
            out.append(_ALU_K[op].format(k=k, s=k & 31))
        elif op in (DIV_K, MOD_K):
            if k == 0:
                out.append(self.abort())
            else:
                out.append(f"A {'//' if op == DIV_K else '%'}= {k}")
        elif op in _ALU_X:
            out.append(_ALU_X[op])
        elif op in (DIV_X, MOD_X):
            out += ["if not X:", f"    {self.abort()}", f"A {'//' if op == DIV_X else '%'}= X"]
        elif op == NEG:
            out.append("A = -A & 0xffffffff")
        else:
            out += self.load(op, k, t, f, checked)
        return [ind + line for line in out]

    def load(self, op, k, t, f, checked) -> list[str]:
        if self.profile == "socket":
            return self.socket_load(op, k, t, checked)
        if self.profile == "seccomp":
            if op == LD_GEN and t == 4 and not k & 3 and k < 64:
                return [f"A = w[{k >> 2}]"]
            return [self.abort()]
        return self.pio_load(op, k, t)

    def socket_load(self, op, k, t, checked) -> list[str]:
        lines = []
        end = _abs_end(op, k, t)
        if end is not None:
            if not checked:
                lines += [f"if n < {end}:", f"    {self.abort()}"]
            if op == LDX_MSH:
                return lines + [f"X = (p[{k}] & 15) << 2"]
            return lines + [f"A = {_bytes_expr('p', str(k), end - k, k)}"]
        if op == LD_ANC:
            if k == SKF_AD_OFF + SKF_AD["ALU_XOR_X"]:
                return ["A ^= X"]
            # ifidx/hatype without a device end the run early: uncount its rest.
            early = self.ret("A") if not self.count else f"return A, A, c - {self.rest}"
            return [f"v = _anc({k - SKF_AD_OFF}, A, X, p, ctx)",
                    "if v < 0:", f"    {early}", "A = v"]
        if op == LD_GEN:  # negative absolute offset: header-relative rules
            return [f"v = _load(p, {interp.isa.to_s32(k)}, {t}, ctx.net_off, ctx.ll_off, ctx.head)",
                    "if v is None:", f"    {self.abort()}", "A = v"]
        size = t
        target = "X" if op == LDX_MSH else "A"
        off = f"(X + {k}) & 0xffffffff" if op == LD_IND else str(k)
        fast = _bytes_expr("p", "o", size, None)
        if op == LDX_MSH:
            fast = "(p[o] & 15) << 2"
        slow = "(v & 15) << 2" if op == LDX_MSH else "v"
        return [f"o = {off}" if op == LD_IND and k else ("o = X" if op == LD_IND else f"o = {k}"),
                f"if o + {size} <= n:",
                f"    {target} = {fast}",
                "else:",
                f"    v = _load(p, o - 0x100000000 if o & 0x80000000 else o, {size}, ctx.net_off, ctx.ll_off, ctx.head)",
                "    if v is None:",
                f"        {self.abort()}",
                f"    {target} = {slow}"]

    def pio_load(self, op, k, t) -> list[str]:
        if op == LD_ANC:
            if k == SKF_AD_OFF + SKF_AD["RANDOM"]:
                return ["A = _rand(32)"]
            return [self.abort()]
        if op == LD_GEN:  # absolute: word expressions from the arguments / mem
            size = t
            if k + size <= 40 and (size == 4 and not k & 3 or k >> 2 == (k + size - 1) >> 2):
                word = _PIO_WORDS[k >> 2]
                shift = 8 * (4 - size - (k & 3))
                return [f"A = {_sub(word, shift, size)}"]
            lines = []
            if k + size > 40:
                lines += [f"if {k + size} > L:", f"    {self.abort()}"]
            if k >= 40 and size == 4 and not k & 3:
                return lines + [f"A = mem[{(k - 40) >> 2}] & 0xffffffff"]
            if k >= 40 and k >> 2 == (k + size - 1) >> 2:
                shift = 8 * (4 - size - (k & 3))
                return lines + [f"A = {_sub(f'mem[{(k - 40) >> 2}]', shift, size)}"]
            return lines + [f"A = _pio_load(H(), mem, {k}, {size})"]
        size = t
        off = f"(X + {k}) & 0xffffffff" if op == LD_IND else str(k)
        lines = [f"o = {off}", f"if o + {size} > L:", f"    {self.abort()}",
                 f"v = _pio_load(H(), mem, o, {size})"]
        return lines + (["X = (v & 15) << 2"] if op == LDX_MSH else ["A = v"])

    # -- runs and trees ------------------------------------------------------
    def run_of(self, pc: int) -> list[int]:
        """The pcs of the straight-line run starting at ``pc`` (through its jump or ret)."""
        pcs = []
        while True:
            pcs.append(pc)
            if self.ops[pc][0] in _ENDS:
                return pcs
            pc += 1

    def emit_run_head(self, pcs, ind: str, known: int = 0) -> tuple[list[str], set[int], int]:
        """Count and hoisted bounds check for a run.

        ``known`` is a packet length already proven on this path.  Returns
        (lines, pcs whose loads need no check, length proven after the head).
        """
        lines = []
        if self.count:
            lines.append(f"{ind}c += {len(pcs)}")
        checked = set()
        if self.hoist:
            end = 0
            for pc in pcs:
                op, k, t, f = self.ops[pc]
                if op == LD_ANC:
                    break   # ifidx/hatype may end the program normally: no hoisting past it
                e = _abs_end(op, k, t)
                if e is not None:
                    end = max(end, e)
                    checked.add(pc)
            if end > known:
                lines += [f"{ind}if n < {end}:", f"{ind}    {self.abort()}"]
                known = end
        return lines, checked, known

    def tree(self, pc: int, ind: str, sizes, known: int = 0) -> None:
        """Emit the subtree rooted at ``pc`` (every path ends in a return)."""
        out = self.lines
        while True:
            pcs = self.run_of(pc)
            head, checked, known = self.emit_run_head(pcs, ind, known)
            out += head
            for p in pcs[:-1]:
                self.rest = pcs[-1] - p
                out += self.insn(p, ind, p in checked)
            last = pcs[-1]
            op, k, t, f = self.ops[last]
            if op == RET_K:
                out.append(ind + self.ret(str(k)))
                return
            if op in (RET_A, RET_X):
                out.append(ind + self.ret("A" if op == RET_A else "X"))
                return
            if op == JA or t == f:
                pc = t
                continue
            # Nest the smaller side, fall through to the larger one.
            if sizes[t] <= sizes[f]:
                out.append(f"{ind}if {_JUMP_OPS[op].format(v=k)}:")
                self.tree(t, ind + "    ", sizes, known)
                pc = f
            else:
                out.append(f"{ind}if {_NEGATED[op].format(v=k)}:")
                self.tree(f, ind + "    ", sizes, known)
                pc = t

    def dispatch(self, ind: str) -> None:
        """Fallback for huge trees: a loop over basic blocks chosen by binary search."""
        ops = self.ops
        leaders = {0}
        for pc, (op, k, t, f) in enumerate(ops):
            if op in _BRANCHES:
                leaders.update((t, f))
            if op in _ENDS and pc + 1 < len(ops):
                leaders.add(pc + 1)
        starts = sorted(leaders)
        out = self.lines
        out += [f"{ind}b = 0", f"{ind}while True:"]

        def block(i, ind2):
            start = starts[i]
            stop = starts[i + 1] if i + 1 < len(starts) else len(ops)
            pcs = list(range(start, stop))
            head, checked, _ = self.emit_run_head(pcs, ind2)
            out.extend(head)
            for p in pcs:
                op, k, t, f = ops[p]
                if op == RET_K:
                    out.append(ind2 + self.ret(str(k)))
                    return
                if op in (RET_A, RET_X):
                    out.append(ind2 + self.ret("A" if op == RET_A else "X"))
                    return
                if op == JA:
                    out.append(f"{ind2}b = {t}")
                    return
                if op in _JUMP_OPS:
                    out.append(f"{ind2}b = {t} if {_JUMP_OPS[op].format(v=k)} else {f}")
                    return
                self.rest = stop - 1 - p
                out.extend(self.insn(p, ind2, p in checked))
            out.append(f"{ind2}b = {stop}")

        def search(lo, hi, ind2):
            if hi - lo == 1:
                block(lo, ind2)
                return
            mid = (lo + hi) // 2
            out.append(f"{ind2}if b < {starts[mid]}:")
            search(lo, mid, ind2 + "    ")
            out.append(f"{ind2}else:")
            search(mid, hi, ind2 + "    ")
        search(0, len(starts), ind + "    ")


def _sub(word: str, shift: int, size: int) -> str:
    mask = {1: "0xff", 2: "0xffff", 4: "0xffffffff"}[size]
    if shift == 0:
        return word if size == 4 else f"{word} & {mask}"
    return f"({word} >> {shift}) & {mask}"


def _bytes_expr(buf: str, off: str, size: int, k: int | None) -> str:
    """Big-endian read of ``size`` bytes at ``off`` (a literal when ``k`` is given)."""
    def at(i):
        return f"{buf}[{k + i}]" if k is not None else (f"{buf}[{off}]" if i == 0 else f"{buf}[{off} + {i}]")
    if size == 1:
        return at(0)
    if size == 2:
        return f"({at(0)} << 8) | {at(1)}"
    return f"({at(0)} << 24) | ({at(1)} << 16) | ({at(2)} << 8) | {at(3)}"
