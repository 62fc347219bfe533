"""Superoptimizer-lite: shorter replacements for short straight-line windows.

Within a time budget, every window of 2 or 3 consecutive register-only
instructions (``ld #k``, ALU with a constant, ``neg``, ``tax``, ``txa``) in
one block is compared with each candidate one instruction shorter, built
from the window's opcodes and constants (the constants combined with the
window's own ALU operations, and their sums).  A candidate that computes the same live
registers on 64 seeded random register pairs (plus edge values) is then
checked for real: the whole program with the window replaced must be
proved equivalent to the current one by :func:`bpfio.prove.equivalent`.
"""

from __future__ import annotations

import random
import time

from bpfio.isa import BPF_ALU, BPF_DIV, BPF_IMM, BPF_LD, BPF_MISC, BPF_MOD, BPF_NEG, BPF_X, U32
from bpfio.prove import ProveError
from bpfio.opt.ir import Op, leaders, lift, lower
from bpfio.opt.values import TXA, fold, liveness

_SAMPLES = 64
_EDGE = (0, 1, 2, 0x7fffffff, 0x80000000, U32)


def _register_only(op: Op) -> bool:
    info = op.info
    if info.cls == BPF_LD and info.mode == BPF_IMM:
        return True
    if info.cls == BPF_MISC:
        return True
    if info.cls == BPF_ALU and info.src != BPF_X:
        return info.op == BPF_NEG or not (info.op in (BPF_DIV, BPF_MOD) and op.k == 0)
    return False


def _run(window, a: int, x: int):
    for op in window:
        info = op.info
        if info.cls == BPF_LD:
            a = op.k
        elif info.cls == BPF_MISC:
            if op.code == TXA:
                a = x
            else:
                x = a
        else:
            b = None if info.op == BPF_NEG else ("c", op.k)
            t = fold(info.op, ("c", a), b)
            if t is None:
                return None
            a = t[1]
    return a, x


def _candidates(window):
    """Programs one instruction shorter built from the window's codes and constants."""
    consts = {op.k for op in window}
    alu = [op for op in window if op.info.cls == BPF_ALU and op.info.op != BPF_NEG]
    for p in alu:
        for q in alu:
            for c1 in list(consts):
                t = fold(p.info.op, ("c", c1), ("c", q.k))
                if t is not None:
                    consts.add(t[1])
    # Shift counts add up: lsh #a; lsh #b is lsh #(a+b).
    consts |= {(a + b) & U32 for a in list(consts) for b in list(consts)}
    codes = {op.code for op in window} | {BPF_LD | BPF_IMM}
    singles = [Op(code, k) for code in sorted(codes) for k in sorted(consts)
               if _register_only(Op(code, k))]
    if len(window) == 2:
        yield from ([s] for s in singles)
        return
    for s in singles:
        for t in singles:
            yield [s, t]


def _agrees(window, cand, live_a: bool, live_x: bool, rng) -> bool:
    pairs = [(a, x) for a in _EDGE for x in _EDGE[:3]]
    pairs += [(rng.getrandbits(32), rng.getrandbits(32)) for _ in range(_SAMPLES)]
    for a, x in pairs:
        want, got = _run(window, a, x), _run(cand, a, x)
        if want is None or got is None:
            return False
        if live_a and want[0] != got[0] or live_x and want[1] != got[1]:
            return False
    return True


def search(program, ctx, *, budget: float, timeout: float, prove) -> tuple[list, int]:
    """Return ``(program, replacements made)``; every replacement is proved."""
    deadline = time.perf_counter() + budget
    rng = random.Random(13)
    current = list(program)
    found = 0
    progress = True
    while progress and time.perf_counter() < deadline:
        progress = False
        ops = lift(current)
        heads = leaders(ops)
        live = liveness(ops, ctx.profile, ctx.mem_words)
        for size in (3, 2):
            for i in range(len(ops) - size + 1):
                if time.perf_counter() > deadline:
                    return current, found
                window = ops[i:i + size]
                if any(j in heads for j in range(i + 1, i + size)):
                    continue
                if not all(_register_only(op) for op in window):
                    continue
                out = live[i + size - 1]
                for cand in _candidates(window):
                    if time.perf_counter() > deadline:
                        return current, found
                    if not _agrees(window, cand, "A" in out, "X" in out, rng):
                        continue
                    trial = list(ops)
                    trial[i:i + size] = cand + [None] * (size - len(cand))
                    low = lower(trial)
                    if low is None:
                        continue
                    left = max(0.5, min(timeout, deadline - time.perf_counter()))
                    try:
                        proof = prove(current, low, profile=ctx.profile, timeout=left,
                                      **ctx.proof_options())
                    except ProveError:
                        continue
                    if proof.status == "equivalent":
                        current, found, progress = low, found + 1, True
                        break
                if progress:
                    break
            if progress:
                break
    return current, found


__all__ = ["search"]
