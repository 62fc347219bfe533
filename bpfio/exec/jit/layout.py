"""Laying out native code: labels, jumps sized by multi-pass convergence, the listing.

The translator produces a flat list of items: encoded instructions (:class:`~.x86.Ins`),
:class:`Jump` (a conditional or plain jump to a label) and :class:`Label`.  Jumps start
as rel32 (an over-estimate, as in the kernel's x86 JIT where ``addrs[]`` starts at 64
bytes per instruction); each pass recomputes addresses and turns every jump whose
displacement fits into rel8.  A jump only ever shrinks, so every distance only
shrinks and a jump once short stays short: the passes converge (usually in 2-3).
Only jumps are re-sized; every other instruction's bytes are computed once.
"""

from __future__ import annotations

from itertools import accumulate, chain
from operator import add

from bpfio.exec.jit import x86


class Label:
    """A position in the code; ``key`` is what jumps name.

    An int key is a cBPF pc (and starts that instruction's code in the listing); a
    string names a shared exit; other keys (tuples) are local labels.
    """

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key


class Jump:
    """``jcc`` (``cc`` a condition code) or ``jmp`` (``cc`` None) to the label ``target``."""

    __slots__ = ("cc", "target", "short", "size", "ins")

    def __init__(self, cc: int | None, target):
        self.cc = cc
        self.target = target
        self.short = False
        self.size = 5 if cc is None else 6      # rel32 until proved short
        self.ins = None


class Source:
    """Marks where the native code of cBPF instruction ``pc`` starts (for the listing)."""

    __slots__ = ("pc",)

    def __init__(self, pc: int):
        self.pc = pc


class Chunk(bytes):
    """Consecutive fixed instructions as one item (their bytes); ``parts`` keeps each one."""

    def __new__(cls, parts):
        self = super().__new__(cls, b"".join(parts))
        self.parts = tuple(parts)
        return self


def compress(items) -> list:
    """``items`` with each run of fixed instructions merged into one :class:`Chunk`."""
    out, run = [], []
    for it in items:
        t = type(it)
        if t is Jump or t is Label or t is Source:
            if run:
                out.append(run[0] if len(run) == 1 else Chunk(run))
                run = []
            out.append(it)
        else:
            run.append(it)
    if run:
        out.append(run[0] if len(run) == 1 else Chunk(run))
    return out


MAX_PASSES = 20


def assemble(items: list) -> tuple[bytes, "Listing", dict]:
    """Resolve jumps; return ``(code, listing, labels)``.

    ``labels`` maps each label key to its offset; ``listing`` yields ``(offset, pc,
    Ins)`` per native instruction, ``pc`` the cBPF instruction it came from (None for
    the prologue and shared exits).  Raises ``ValueError`` for an unknown label.
    """
    # Only jumps and labels matter while sizing: keep the fixed bytes between them.
    marks: list = []          # the jumps and labels, in order
    gaps: list[int] = []      # fixed bytes before each mark (since the previous one)
    acc = 0
    for it in items:
        t = type(it)
        if t is Jump or t is Label:
            marks.append(it)
            gaps.append(acc)
            acc = 0
        elif t is not Source:
            acc += len(it)
    index = {m.key: i for i, m in enumerate(marks) if type(m) is Label}
    jumps = []                              # (mark index, Jump, target's mark index)
    sizes = [0] * len(marks)                # each mark's bytes: a jump's current size
    for i, m in enumerate(marks):
        if type(m) is Jump:
            target = index.get(m.target)
            if target is None:
                raise ValueError(f"jump to an unknown label {m.target!r}")
            jumps.append((i, m, target))
            sizes[i] = m.size
    pending = jumps         # the jumps still rel32
    for _ in range(MAX_PASSES):
        starts = _starts(gaps, sizes)
        still = []
        for jump in pending:
            i, j, target = jump
            if -128 <= starts[target] - (starts[i] + 2) <= 127:
                j.short = True
                j.size = sizes[i] = 2
            else:
                still.append(jump)
        if len(still) == len(pending):
            break
        pending = still
    else:   # pragma: no cover - shrinking is monotonic, so this cannot happen
        raise ValueError("jump sizes did not converge")
    out = []
    for i, j, target in jumps:
        rel = starts[target] - starts[i] - j.size
        if j.cc is None:
            j.ins = x86.jmp_rel8(rel) if j.short else x86.jmp_rel32(rel)
        else:
            j.ins = x86.jcc_rel8(j.cc, rel) if j.short else x86.jcc_rel32(j.cc, rel)
    for it in items:
        t = type(it)
        if t is Jump:
            out.append(it.ins)
        elif t is not Label and t is not Source:
            out.append(it)
    code = b"".join(out)
    return code, Listing(items), {m.key: starts[i] for m, i in
                                  ((marks[i], i) for i in index.values())}


def _starts(gaps, sizes) -> list[int]:
    """The offset of every mark (a jump's start, a label's position): mark i starts after
    the marks before it and the fixed bytes ``gaps[i]`` (summed in C, by accumulate)."""
    return list(accumulate(map(add, gaps, chain((0,), sizes))))


class Listing:
    """``(offset, pc, Ins)`` for each native instruction, computed when read."""

    def __init__(self, items):
        self._items = items

    def __iter__(self):
        offset = 0
        pc = None
        for it in self._items:
            t = type(it)
            if t is Label:
                if isinstance(it.key, int):
                    pc = it.key
                elif isinstance(it.key, str):
                    pc = None
                continue
            if t is Source:
                pc = it.pc
                continue
            for ins in (it.parts if t is Chunk else (it.ins if t is Jump else it,)):
                yield offset, pc, ins
                offset += len(ins)
