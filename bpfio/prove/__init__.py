"""The prover: decide questions about cBPF programs for every input, with z3.

A pipeline stage above the interpreter.  It owns the translation of a
program into bit-vector terms (:mod:`.encode`), program equivalence with
checked counterexamples (:mod:`.equiv`) and properties of one program
(:mod:`.props`).  It imports only lower stages: :mod:`bpfio.isa`,
:mod:`bpfio.insn`, :mod:`bpfio.errors`, :mod:`bpfio.text.formats`,
:mod:`bpfio.exec.interp`, :mod:`bpfio.abi.seccomp` and :mod:`bpfio.abi.pio`.

The semantics are the interpreter's, rule for rule (``docs/prove.md`` lists
what each profile quantifies over).  Every "different" answer carries an
input that was run through the interpreter on both programs and shown to
differ; an answer the solver cannot reach in time is "unknown".

Example::

    >>> from bpfio.insn import Insn
    >>> a = [Insn(0x28, 0, 0, 12), Insn(0x16, 0, 0, 0)]      # ldh [12]; ret a
    >>> b = [Insn(0x28, 0, 0, 12), Insn(0x04, 0, 0, 0), Insn(0x16, 0, 0, 0)]  # + add #0
    >>> equivalent(a, b).status
    'equivalent'
"""

from bpfio.prove.encode import ProveError
from bpfio.prove.equiv import STATUSES, Result, equivalent
from bpfio.prove.props import prove_property, verdict_classes

__all__ = ["equivalent", "prove_property", "verdict_classes", "Result", "ProveError", "STATUSES"]
