"""KVM offload eligibility as a proof: what a pio program does for every memory, clock and vCPU.

Two questions, each decided for *all* shared-memory contents, clocks, vCPUs
and ``ld rand`` values (``bpfio.kvm.offload`` asks them):

* :func:`eventfd_index`: for an OUT of ``size`` bytes of ``data`` at
  ``port``, does the program always return ``PIO_NOTIFY_n`` for one ``n``
  and leave every shared word as it found it?  Then its whole effect is
  what ``KVM_IOEVENTFD`` with that datamatch does.
* :func:`coalescable`: for every OUT at ``port`` (any size, any data), does
  it always return ``PIO_DONE``, with shared memory afterwards independent of
  the clock, the vCPU and ``rand``?  Then replaying it later from the
  coalesced ring has the same effect as running it now.

The conservative path analysis in ``kvm_offload.analyze_out`` asks for no
stores and no reads of time at all; these proofs accept a program whose
stores or reads provably do not matter.
"""

from __future__ import annotations

from functools import lru_cache

import z3

from bpfio.exec.interp import pio_runner
from bpfio.abi import pio as abi
from bpfio.prove.encode import bv, encode
from bpfio.prove.inputs import PioInputs
from bpfio.prove.equiv import as_program, solve
from bpfio.values import check_seconds

_REPLAYED = ("vcpu", "ticks", "ticks_hi", "ns", "ns_hi")   # differ between now and the replay


def _event(inputs, *, port, base, size, data):
    """Facts pinning the event's known fields."""
    return [inputs.field("port") == port, inputs.field("size") == size,
            inputs.field("dir") == abi.PIO_OUT, inputs.field("data") == data,
            inputs.field("offset") == (port - base) & 0xffffffff]


def eventfd_index(program, *, port: int, base: int, size: int, data: int, mem_words: int,
                  timeout: float = 5.0) -> int | None:
    """The notifier ``n`` every such OUT signals without changing memory, else None.

    None also when the solver times out (eligibility must be proved).
    """
    prog = as_program(program)
    # One concrete run names the only candidate verdict (and rejects most programs cheaply).
    verdict, _, _ = pio_runner(prog)(port, size, abi.PIO_OUT, data, port - base, 0, 0, 0,
                                     [0] * mem_words)
    if verdict is None or verdict & abi.PIO_ACTION_MASK != abi.PIO_NOTIFY:
        return None
    inputs, verdict_term, unchanged, solver = _notify_solver(tuple(prog), mem_words)
    solver.set("timeout", max(1, int(check_seconds("timeout", timeout) * 1000)))
    solver.push()
    try:
        solver.add(*_event(inputs, port=port, base=base, size=size, data=data))
        solver.add(z3.Or(verdict_term != verdict, z3.Not(unchanged)))
        answer = solver.check()
    finally:
        solver.pop()
    return verdict & abi.PIO_DATA_MASK if answer == z3.unsat else None


@lru_cache(maxsize=16)
def _notify_solver(prog: tuple, mem_words: int):
    """A program's verdict and "memory unchanged" terms and a solver holding the input facts.

    Encoded once per program: ``ioeventfd_plans`` asks about every port, size
    and candidate value of a binding.
    """
    inputs = PioInputs(mem_words)
    out = encode(list(prog), inputs, "p")
    unchanged = z3.And(*[bv(out.final(lambda s, i=i: s.mem[i])) == bv(m)
                         for i, m in enumerate(inputs.mem0)])
    solver = z3.SolverFor("QF_ABV")
    solver.add(*inputs.constraints())
    return inputs, bv(out.verdict()), unchanged, solver


def coalescable(program, *, port: int, base: int, mem_words: int, timeout: float = 5.0) -> bool:
    """True when every OUT at ``port`` returns PIO_DONE and replays with the same effect."""
    prog = as_program(program)
    run = pio_runner(prog)
    for size in (1, 2, 4):
        verdict, _, _ = run(port, size, abi.PIO_OUT, 0, port - base, 0, 0, 0, [0] * mem_words)
        if verdict != abi.PIO_DONE:
            return False
    now = PioInputs(mem_words)
    later = PioInputs(mem_words)
    # The replay sees the same event and memory, but its own clock, vCPU and rand values.
    later.header = [z3.BitVec(f"{name}_replay", 32) if name in _REPLAYED else var
                    for name, var in zip(PioInputs.NAMES, now.header)]
    later.mem0 = now.mem0
    out_now, out_later = encode(prog, now, "now"), encode(prog, later, "later")
    diff = [bv(out_now.final(lambda s, i=i: s.mem[i])) != bv(out_later.final(lambda s, i=i: s.mem[i]))
            for i in range(mem_words)]
    wrong = z3.Or(bv(out_now.verdict()) != abi.PIO_DONE, bv(out_later.verdict()) != abi.PIO_DONE,
                  *diff)
    facts = now.constraints() + later.constraints() + [
        now.field("port") == port, now.field("dir") == abi.PIO_OUT,
        now.field("offset") == (port - base) & 0xffffffff]     # any size, any data
    answer, _ = solve(facts + [wrong], timeout=timeout)
    return answer == z3.unsat
