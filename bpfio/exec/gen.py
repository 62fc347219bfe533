"""Random programs and packets for differential sweeps (kernel, interpreter, prover, optimizer).

:func:`random_program` builds verifier-valid programs for a profile, biased towards the edges
the kernel treats specially (shift counts, bounds, ``[x + k]`` wrap, ancillary offsets);
``oracle_safe=True`` keeps to what the live-kernel oracles can observe.  :func:`random_packet`
makes packets with netlink attributes for ``nla``/``nlan``.  Seeded ``random.Random``
instances only: a sweep is reproducible from its seed.
"""

from __future__ import annotations

import struct

from bpfio import isa
from bpfio.insn import Insn, Program


_ALU_OPS = (isa.BPF_ADD, isa.BPF_SUB, isa.BPF_MUL, isa.BPF_DIV, isa.BPF_OR, isa.BPF_AND,
            isa.BPF_LSH, isa.BPF_RSH, isa.BPF_MOD, isa.BPF_XOR)


_JMP_OPS = (isa.BPF_JEQ, isa.BPF_JGT, isa.BPF_JGE, isa.BPF_JSET)


# Ancillary loads whose value the kernel oracle can observe deterministically.
ORACLE_ANCILLARY = tuple(a.k for a in isa.ANCILLARY
                         if a.kernel_name not in ("RANDOM", "IFINDEX", "HATYPE", "CPU"))


_INTERESTING = (0, 1, 2, 3, 4, 7, 8, 12, 14, 15, 16, 31, 32, 33, 63, 64, 0x7f, 0x80, 0xff,
                0x100, 0xfff, 0x1000, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff,
                0x80000000, 0xfffffff0, 0xfffffffe, 0xffffffff, 0xfff00000, 0xffe00000)


def _const(rng) -> int:
    r = rng.random()
    if r < 0.5:
        return rng.choice(_INTERESTING)
    if r < 0.8:
        return rng.randrange(0, 300)
    return rng.getrandbits(32)


def _offset(rng, profile: str, ctx_len: int) -> int:
    """A load offset near the interesting edges of the input."""
    if profile == "pio":
        r = rng.random()
        if r < 0.85:
            return rng.randrange(0, ctx_len + 4)
        return _const(rng)
    r = rng.random()
    if r < 0.6:
        return rng.randrange(0, 80)
    if r < 0.75:
        return rng.randrange(0, 520)
    if r < 0.85:
        return (isa.SKF_NET_OFF + rng.randrange(0, 64)) & 0xffffffff
    if r < 0.9:
        return (isa.SKF_LL_OFF + rng.randrange(0, 64)) & 0xffffffff
    return _const(rng)


def random_program(rng, *, profile: str = "socket", length: int | None = None,
                   mem_words: int = 16, oracle_safe: bool = True) -> Program:
    """A random program that the chosen profile's checker accepts (forward jumps, valid codes).

    Stores to every scratch cell it reads happen in a prologue, so
    ``check_load_and_stores`` passes.  ``oracle_safe`` leaves out loads the
    kernel oracle cannot observe (``rand``, ``cpu``, ``ifidx``, ``hatype``).
    """
    n = length or rng.randrange(2, 40)
    words = mem_words if profile == "pio" else 16
    ctx_len = 40 + 4 * words if profile == "pio" else 64
    cells = rng.sample(range(words), rng.randrange(0, min(words, 4) + 1))
    out: list[Insn] = []
    for cell in cells:  # prologue: initialise the cells the body may read
        out.append(Insn(isa.BPF_LD | isa.BPF_IMM, 0, 0, _const(rng)))
        out.append(Insn(isa.BPF_ST, 0, 0, cell))
    body = max(1, n - len(out) - 1)
    total = len(out) + body + 1
    while len(out) < total - 1:
        pc = len(out)
        remaining = total - pc - 1            # instructions after this one
        r = rng.random()
        if profile == "socket" and r < 0.03 and remaining > 3:
            # A netlink attribute search set up to find something: A = offset, X = type.
            out.append(Insn(isa.BPF_LD | isa.BPF_IMM, 0, 0, 4 * rng.randrange(0, 6)))
            out.append(Insn(isa.BPF_LDX | isa.BPF_IMM, 0, 0, rng.choice((1, 2, 3, 7))))
            out.append(Insn(isa.BPF_LD | isa.BPF_W | isa.BPF_ABS, 0, 0,
                            isa.SKF_AD_OFF + rng.choice((12, 16))))
        elif r < 0.25:                        # loads
            out.append(_random_load(rng, profile, ctx_len, oracle_safe, cells, words))
        elif r < 0.5:                         # ALU
            op = rng.choice(_ALU_OPS)
            if profile == "seccomp" and op == isa.BPF_MOD:
                op = isa.BPF_XOR
            if rng.random() < 0.1:
                out.append(Insn(isa.BPF_ALU | isa.BPF_NEG, 0, 0, 0))
            elif rng.random() < 0.4:
                out.append(Insn(isa.BPF_ALU | op | isa.BPF_X, 0, 0, 0))
            else:
                k = _const(rng)
                if op in (isa.BPF_LSH, isa.BPF_RSH):
                    k &= 31
                if op in (isa.BPF_DIV, isa.BPF_MOD) and k == 0:
                    k = rng.randrange(1, 10)
                out.append(Insn(isa.BPF_ALU | op | isa.BPF_K, 0, 0, k))
        elif r < 0.7:                         # jumps
            if rng.random() < 0.15:
                out.append(Insn(isa.BPF_JMP | isa.BPF_JA, 0, 0, rng.randrange(0, remaining)))
            else:
                src = isa.BPF_X if rng.random() < 0.3 else isa.BPF_K
                jt = rng.randrange(0, min(remaining, 256))
                jf = rng.randrange(0, min(remaining, 256))
                out.append(Insn(isa.BPF_JMP | rng.choice(_JMP_OPS) | src, jt, jf, _const(rng)))
        elif r < 0.8:                         # register moves and stores
            choice = rng.randrange(4)
            if choice == 0:
                out.append(Insn(isa.BPF_MISC | isa.BPF_TAX, 0, 0, 0))
            elif choice == 1:
                out.append(Insn(isa.BPF_MISC | isa.BPF_TXA, 0, 0, 0))
            else:
                cell = rng.randrange(words)
                cells.append(cell) if profile == "pio" else None
                out.append(Insn(isa.BPF_ST if choice == 2 else isa.BPF_STX, 0, 0, cell))
        elif r < 0.9:                         # immediates (X often gets offsets)
            if rng.random() < 0.5:
                out.append(Insn(isa.BPF_LDX | isa.BPF_IMM, 0, 0, _const(rng)))
            else:
                out.append(Insn(isa.BPF_LD | isa.BPF_IMM, 0, 0, _const(rng)))
        else:                                 # early returns
            if rng.random() < 0.5:
                out.append(Insn(isa.BPF_RET | isa.BPF_A, 0, 0, 0))
            else:
                out.append(Insn(isa.BPF_RET | isa.BPF_K, 0, 0, _ret_const(rng, profile)))
    out.append(Insn(isa.BPF_RET | (isa.BPF_A if rng.random() < 0.7 else isa.BPF_K), 0, 0,
                    _ret_const(rng, profile)))
    return Program(out)


def _ret_const(rng, profile: str) -> int:
    # pio's verifier wants a known action in a constant verdict (and notifier 0 only).
    return rng.choice((0, 0x10000, 0x20000)) if profile == "pio" else _const(rng)


def _random_load(rng, profile, ctx_len, oracle_safe, cells, words) -> Insn:
    r = rng.random()
    if r < 0.1 and cells:
        cls = isa.BPF_LD if rng.random() < 0.5 else isa.BPF_LDX
        return Insn(cls | isa.BPF_MEM, 0, 0, rng.choice(cells))
    if r < 0.18:
        cls = isa.BPF_LD if rng.random() < 0.5 else isa.BPF_LDX
        return Insn(cls | isa.BPF_W | isa.BPF_LEN, 0, 0, 0)
    if profile == "seccomp":
        skip = {2, 3} if oracle_safe else set()   # instruction_pointer: not reproducible
        return Insn(isa.BPF_LD | isa.BPF_W | isa.BPF_ABS, 0, 0,
                    4 * rng.choice([i for i in range(16) if i not in skip]))
    size = rng.choice((isa.BPF_W, isa.BPF_H, isa.BPF_B))
    if r < 0.3 and profile == "socket":
        pool = ORACLE_ANCILLARY if oracle_safe else tuple(a.k for a in isa.ANCILLARY)
        return Insn(isa.BPF_LD | size | isa.BPF_ABS, 0, 0, rng.choice(pool))
    if r < 0.3 and profile == "pio":
        return Insn(isa.BPF_LD | isa.BPF_W | isa.BPF_ABS, 0, 0, isa.SKF_AD_OFF + 56) \
            if not oracle_safe else Insn(isa.BPF_LD | isa.BPF_W | isa.BPF_LEN, 0, 0, 0)
    if r < 0.6:
        k = _offset(rng, profile, ctx_len)
        if profile == "pio":
            k = min(k, ctx_len - {isa.BPF_W: 4, isa.BPF_H: 2, isa.BPF_B: 1}[size])
        elif k >= isa.SKF_AD_OFF:
            k = rng.randrange(0, 64)
        return Insn(isa.BPF_LD | size | isa.BPF_ABS, 0, 0, k)
    if r < 0.75:
        k = _offset(rng, profile, ctx_len)
        return Insn(isa.BPF_LDX | isa.BPF_B | isa.BPF_MSH, 0, 0,
                    min(k, ctx_len - 1) if profile == "pio" else k)
    return Insn(isa.BPF_LD | size | isa.BPF_IND, 0, 0,
                rng.choice((0, 1, 2, 14, 0xffffffff)) if rng.random() < 0.5
                else _offset(rng, profile, ctx_len))


def random_packet(rng, *, max_len: int = 600) -> bytes:
    """A random packet: mostly short, sometimes netlink-attribute shaped."""
    r = rng.random()
    if r < 0.05:
        length = rng.randrange(0, 2)
    elif r < 0.7:
        length = rng.randrange(2, 100)
    else:
        length = rng.randrange(100, max_len)
    if rng.random() < 0.15:   # netlink attributes (nla_len, nla_type little-endian), some nested
        out = bytearray()
        while len(out) < length:
            out += _random_nla(rng, depth=2)
        return bytes(out[:length])
    return rng.randbytes(length)


def _random_nla(rng, depth: int) -> bytes:
    """One netlink attribute: a leaf, a nest of attributes, or a malformed header."""
    kind = rng.random()
    if kind < 0.1:    # malformed lengths
        return struct.pack("<HH", rng.choice((0, 3, 200, 0xffff)), rng.choice((1, 2, 3)))
    if kind < 0.45 and depth:
        body = b"".join(_random_nla(rng, depth - 1) for _ in range(rng.randrange(1, 4)))
    else:
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 9)))
    head = struct.pack("<HH", 4 + len(body), rng.choice((1, 2, 3, 7, 0x8001, 0x4002)))
    return head + body + bytes(-len(body) % 4)
