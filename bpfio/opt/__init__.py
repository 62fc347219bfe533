"""The optimizer: shorter cBPF programs, each proved equivalent before it is emitted.

A pipeline stage above the prover.  It owns the rewriting of verified
programs -- control-flow passes (:mod:`.flow`: unreachable code, jump
threading, trivial jumps, identical tails), data-flow passes
(:mod:`.values`: constants, redundant loads, dead code), libpcap-specific
straight-line rewrites (:mod:`.sched`) and a small time-boxed search over
shorter replacements for short windows (:mod:`.search`).  It imports only
lower stages: :mod:`bpfio.isa`, :mod:`bpfio.insn`, :mod:`bpfio.check.verifier`,
:mod:`bpfio.abi.pio` and :mod:`bpfio.prove` (the CLI in
:mod:`bpfio.commands.opt` adds :mod:`bpfio.text.formats` for reading and writing).

The contract of :func:`optimize`: the input must pass :func:`bpfio.verify`
for the profile; the output passes it too, is never longer, and is emitted
only when :func:`bpfio.prove.equivalent` proves it returns what the input
returns on every input of the profile.  A "different" answer is an
optimizer bug: the input is emitted instead (``status == "different"``).
An "unknown" answer (timeout) also emits the input, with a warning.

Example::

    >>> from bpfio.insn import Insn
    >>> # ld #1; add #2; ret a
    >>> prog = [Insn(0x00, 0, 0, 1), Insn(0x04, 0, 0, 2), Insn(0x16, 0, 0, 0)]
    >>> result = optimize(prog)
    >>> result.status, [tuple(i) for i in result.program]
    ('optimized', [(6, 0, 0, 3)])
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from bpfio.insn import Program
from bpfio.values import check_choice, check_seconds
from bpfio.check.verifier import verify
from bpfio.opt.passes import PASSES, Context, run_passes

STATUSES = ("optimized", "unchanged", "unknown", "different")


@dataclass
class OptResult:
    """What :func:`optimize` did.

    ``program`` is what to emit (the input unless ``status == "optimized"``);
    ``candidate`` what the passes produced; ``proof`` the prover's
    :class:`~bpfio.prove.Result` (None when nothing changed).
    """

    status: str
    program: Program
    original: Program
    candidate: Program
    fired: Counter = field(default_factory=Counter)
    proof: object = None
    pass_seconds: float = 0.0
    search_seconds: float = 0.0
    warnings: list = field(default_factory=list)

    @property
    def proof_seconds(self) -> float:
        """Wall time of the final proof (0 when none was needed)."""
        return self.proof.seconds if self.proof is not None else 0.0


def optimize(program, *, profile: str = "socket", mem_words: int = 16, notifiers: int = 0,
             timeout: float = 10.0, search_budget: float = 0.0, prefer: str = "size",
             passes=None, prove=None) -> OptResult:
    """Optimize a verified ``program`` and prove the result equivalent.

    ``search_budget`` (seconds, 0 = off) lets :mod:`.search` try shorter
    replacements for straight-line windows, each checked by its own proof.
    ``mem_words`` and ``notifiers`` describe the pio binding (as for
    :func:`bpfio.verify`).  ``prefer="speed"`` skips the rewrites that
    shorten the program by making some path execute more: an added
    ``ldx``/``ja`` into a shared tail, or loads moved before others (on a
    short packet they abort later).  Then no input runs more instructions.
    ``passes`` (name -> function) replaces :data:`~bpfio.opt.passes.PASSES`
    and ``prove`` replaces :func:`bpfio.prove.equivalent` (tests use both).
    Raises :class:`~bpfio.errors.VerifierError` when the input is not valid
    for the profile.
    """
    from bpfio.prove import equivalent
    prove = prove or equivalent
    original = Program(program)
    options = {"mem_words": mem_words, "notifiers": notifiers} if profile == "pio" else {}
    verify(original, profile=profile, lints=False, **options)
    check_choice("optimize: prefer", prefer, ("size", "speed"))
    check_seconds("optimize: timeout", timeout)
    check_seconds("optimize: search_budget", search_budget)
    ctx = Context(profile, mem_words, prefer)
    start = time.perf_counter()
    out, fired = run_passes(original, ctx, passes)
    pass_seconds = time.perf_counter() - start
    search_seconds = 0.0
    warnings: list = []
    if search_budget > 0:
        from bpfio.opt.search import search
        start = time.perf_counter()
        out, found = search(out, ctx, budget=search_budget, timeout=timeout, prove=prove)
        if found:
            fired["search"] += found
            out, more = run_passes(out, ctx, passes)   # a shorter window may free more code
            fired.update(more)
        search_seconds = time.perf_counter() - start
    candidate = Program(out)
    result = OptResult("unchanged", original, original, candidate, fired,
                       pass_seconds=pass_seconds, search_seconds=search_seconds,
                       warnings=warnings)
    if tuple(candidate) == tuple(original):
        return result
    try:
        verify(candidate, profile=profile, lints=False, **options)
    except Exception as err:  # an optimizer bug: never emit an invalid program
        result.status = "different"
        warnings.append(f"optimizer bug: the result fails the {profile} verifier ({err}); "
                        "emitting the input unchanged")
        return result
    if len(candidate) > len(original):
        warnings.append("optimizer produced a longer program; emitting the input unchanged")
        return result
    from bpfio.prove import ProveError
    try:
        proof = prove(original, candidate, profile=profile, timeout=timeout,
                      **ctx.proof_options())
    except ProveError as err:   # the prover cannot encode it: say so, emit the input
        warnings.append(f"could not prove the result equivalent ({err}); "
                        "emitting the input unchanged")
        result.status = "unknown"
        return result
    result.proof = proof
    if proof.status == "equivalent":
        result.status, result.program = "optimized", candidate
    elif proof.status == "different":
        result.status = "different"
        warnings.append("optimizer bug: the prover found an input where the result differs "
                        f"({proof.cex_text or proof.counterexample!r}); "
                        "emitting the input unchanged")
    else:
        result.status = "unknown"
        warnings.append(f"could not prove the result equivalent ({proof.reason or 'unknown'}); "
                        "emitting the input unchanged")
    return result


__all__ = ["optimize", "OptResult", "STATUSES", "PASSES", "Context", "run_passes"]
