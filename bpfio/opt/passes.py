"""The pass pipeline: run every pass to a fixed point, keeping only encodable results."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from bpfio.opt.abstract import share_x_tails
from bpfio.opt.flow import drop_trivial_jumps, merge_tails, remove_unreachable, thread_jumps
from bpfio.opt.ir import Op, lift, lower
from bpfio.opt.sched import fold_msh, reschedule_scratch
from bpfio.opt.values import propagate, remove_dead


@dataclass(frozen=True)
class Context:
    """What every pass needs to know besides the instructions."""

    profile: str = "socket"
    mem_words: int = 16
    # "size": fewest instructions; "speed": never a rewrite that makes some path
    # execute more instructions (no shared tails reached through an added ldx/ja).
    prefer: str = "size"

    def proof_options(self) -> dict:
        """What the equivalence proof quantifies over, besides the input bytes.

        Socket filters run on any socket, so every ancillary value (protocol, mark,
        ifindex, ...) is free, not the AF_UNIX defaults: a rewrite that only holds when,
        say, ``proto == 0`` must not be proved.
        """
        options = {"mem_words": self.mem_words}
        if self.profile == "socket":
            options["context"] = "free"
        return options


# name -> pass; the order is the order of one round.
PASSES = {
    "unreachable": remove_unreachable,
    "thread-jumps": thread_jumps,
    "trivial-jumps": drop_trivial_jumps,
    "values": propagate,
    "dead-code": remove_dead,
    "scratch": reschedule_scratch,
    "msh": fold_msh,
    "merge-tails": merge_tails,
    "share-x-tails": share_x_tails,
}
MAX_ROUNDS = 40


def _copy(ops):
    return [None if op is None else Op(op.code, op.k, op.jt, op.jf) for op in ops]


def run_passes(program, ctx: Context, passes=None) -> tuple[list, Counter]:
    """Optimize ``program``; return ``(instructions, Counter of pass name -> edits)``.

    A pass whose result cannot be encoded (a conditional jump beyond 255
    after tails were merged) is undone for that round.  The result is never
    longer than the input.
    """
    chosen = PASSES if passes is None else passes
    original = list(program)
    best = original
    ops = lift(original)
    fired: Counter = Counter()
    for _ in range(MAX_ROUNDS):
        changed = False
        for name, fn in chosen.items():
            before = _copy(ops)
            edits = fn(ops, ctx)
            if not edits:
                continue
            low = lower(ops)
            if low is None:
                ops = before
                continue
            fired[name] += edits
            changed = True
            ops = lift(low)
            if len(low) <= len(best):
                best = low
        if not changed:
            break
    final = lower(ops)
    if final is not None and len(final) <= len(best):
        best = final
    return best, fired


__all__ = ["Context", "PASSES", "run_passes", "MAX_ROUNDS"]
