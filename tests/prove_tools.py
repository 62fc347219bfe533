"""Program mutations and random inputs for the prover's tests.

``preserving(rng, prog)`` applies one rewrite that cannot change what a
program returns (so the prover must say "equivalent"); ``breaking(rng,
prog)`` one small edit that usually does (so "different" is common but not
certain: the edit may hit dead code).  ``random_input`` draws one input of a
profile with its run context.
"""

from __future__ import annotations

import random

from bpfio import isa
from bpfio.insn import Insn, Program
from bpfio.exec.gen import random_packet
from bpfio.abi.pio import PIO_IN, PIO_OUT, PioEvent
from bpfio.abi.seccomp import ARCHES, SeccompData

_EDGE = (0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000,
         0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff)


def insert(prog, at: int, new) -> Program | None:
    """``prog`` with ``new`` instructions placed before pc ``at`` (jumps over it fixed).

    A jump from before ``at`` to ``at`` or later grows by ``len(new)``; None
    when a conditional offset would pass 255.
    """
    out = []
    grow = len(new)
    for pc, (code, jt, jf, k) in enumerate(prog):
        info = isa.OPCODES[code]
        if pc < at and info.cls == isa.BPF_JMP:
            if info.op == isa.BPF_JA:
                if pc + 1 + k >= at:
                    k += grow
            else:
                if pc + 1 + jt >= at:
                    jt += grow
                if pc + 1 + jf >= at:
                    jf += grow
                if jt > 255 or jf > 255:
                    return None
        out.append(Insn(code, jt, jf, k))
    return Program(out[:at] + [Insn(*i) for i in new] + out[at:])


def _jump_targets(prog) -> set[int]:
    targets = set()
    for pc, (code, jt, jf, k) in enumerate(prog):
        info = isa.OPCODES[code]
        if info.cls == isa.BPF_JMP:
            targets |= {pc + 1 + k} if info.op == isa.BPF_JA else {pc + 1 + jt, pc + 1 + jf}
    return targets


def preserving(rng, prog) -> Program | None:
    """One semantics-preserving rewrite of ``prog`` (None if the chosen one does not apply)."""
    prog = Program(prog)
    pc = rng.randrange(len(prog))
    code, jt, jf, k = prog[pc]
    info = isa.OPCODES[code]
    kind = rng.randrange(5)
    if kind == 0:                                    # add #0 after a non-jump, non-ret
        if info.cls in (isa.BPF_JMP, isa.BPF_RET):
            return None
        return insert(prog, pc + 1, [Insn(isa.BPF_ALU | isa.BPF_ADD | isa.BPF_K, 0, 0, 0)])
    if kind == 1 and code == isa.BPF_LD | isa.BPF_IMM:   # ld #k -> ld #k-1; add #1
        out = list(prog)
        out[pc] = Insn(code, 0, 0, (k - 1) & isa.U32)
        return insert(out, pc + 1, [Insn(isa.BPF_ALU | isa.BPF_ADD | isa.BPF_K, 0, 0, 1)])
    if kind == 2 and info.cls == isa.BPF_JMP and info.src == isa.BPF_K:
        out = list(prog)
        if info.op == isa.BPF_JGT and k < isa.U32:       # a > k  <=>  a >= k + 1
            out[pc] = Insn(isa.BPF_JMP | isa.BPF_JGE | isa.BPF_K, jt, jf, k + 1)
        elif info.op == isa.BPF_JGE and k > 0:           # a >= k <=>  a > k - 1
            out[pc] = Insn(isa.BPF_JMP | isa.BPF_JGT | isa.BPF_K, jt, jf, k - 1)
        elif info.op == isa.BPF_JSET and k == 0:          # never taken
            out[pc] = Insn(isa.BPF_JMP | isa.BPF_JA, 0, 0, jf)
        else:
            return None
        return Program(out)
    if kind == 3 and pc + 1 < len(prog) and pc + 1 not in _jump_targets(prog):
        nxt = prog[pc + 1]                                # swap ld #i / ldx #j
        pair = {code, nxt.code}
        if pair == {isa.BPF_LD | isa.BPF_IMM, isa.BPF_LDX | isa.BPF_IMM}:
            out = list(prog)
            out[pc], out[pc + 1] = nxt, prog[pc]
            return Program(out)
        return None
    if kind == 4:                                     # ja +0 before any instruction
        return insert(prog, pc, [Insn(isa.BPF_JMP | isa.BPF_JA, 0, 0, 0)])
    return None


def breaking(rng, prog) -> Program:
    """One small edit: a constant +-1, swapped jump targets, or another ALU op."""
    out = list(Program(prog))
    start = 0          # skip random_program's prologue (ld #k; st M[i] pairs): rarely live
    while start + 2 < len(out) and out[start].code == isa.BPF_LD | isa.BPF_IMM \
            and out[start + 1].code == isa.BPF_ST:
        start += 2
    pc = rng.randrange(start, len(out))
    code, jt, jf, k = out[pc]
    info = isa.OPCODES[code]
    if info.cls == isa.BPF_JMP and info.op != isa.BPF_JA and rng.random() < 0.5:
        out[pc] = Insn(code, jf, jt, k)
    elif info.cls == isa.BPF_ALU and info.op not in (isa.BPF_NEG, isa.BPF_DIV, isa.BPF_MOD) \
            and rng.random() < 0.5:
        op = rng.choice((isa.BPF_ADD, isa.BPF_SUB, isa.BPF_OR, isa.BPF_XOR, isa.BPF_AND))
        out[pc] = Insn(isa.BPF_ALU | op | info.src, jt, jf, k)
    elif info.cls in (isa.BPF_LD, isa.BPF_LDX) and info.mode in (isa.BPF_IMM,) or \
            info.cls == isa.BPF_RET and info.src == isa.BPF_K or \
            info.cls == isa.BPF_JMP and info.op != isa.BPF_JA and info.src == isa.BPF_K or \
            info.cls == isa.BPF_ALU and info.src == isa.BPF_K and info.op not in (
                isa.BPF_DIV, isa.BPF_MOD, isa.BPF_LSH, isa.BPF_RSH, isa.BPF_NEG):
        out[pc] = Insn(code, jt, jf, (k + rng.choice((1, -1))) & isa.U32)
    else:
        out.insert(len(out) - 1, out[-1])     # a dead duplicate ret: still equivalent
    return Program(out)


def _u32(rng) -> int:
    return rng.choice(_EDGE) if rng.random() < 0.3 else rng.getrandbits(32)


def random_input(rng, profile: str, mem_words: int = 16):
    """One random input of ``profile``: ``(data, context)`` for ``interp.run``."""
    if profile == "socket":
        return random_packet(rng), {}
    if profile == "seccomp":
        nr = rng.randrange(0, 450) if rng.random() < 0.7 else _u32(rng)
        arch = rng.choice(list(ARCHES.values())) if rng.random() < 0.8 else _u32(rng)
        args = tuple(_u32(rng) | (_u32(rng) << 32 if rng.random() < 0.3 else 0) for _ in range(6))
        return SeccompData(nr, arch, rng.getrandbits(64), args), {}
    size = rng.choice((1, 2, 4))
    direction = rng.choice((PIO_IN, PIO_OUT))
    data = rng.getrandbits(8 * size) if direction == PIO_OUT else 0
    event = PioEvent(rng.randrange(0x10000), size, direction, data, rng.choice((0, 1, 2, 3, 7)),
                     rng.randrange(4), rng.getrandbits(64) if rng.random() < 0.3
                     else rng.randrange(1000), rng.getrandbits(64))
    return event, {"mem": [_u32(rng) for _ in range(mem_words)]}


def rand_stream(seed: int):
    """An ``ld rand`` source for one run: the same seed gives two programs the same stream.

    The prover's semantics: the n-th ``ld rand`` of a run reads the n-th random value.
    """
    source = random.Random(seed)
    return lambda: source.getrandbits(32)
