"""The compiled fast path: one program becomes one straight-line Python function.

:func:`compile` turns a (verified) program into Python source once -- the
``dataclasses._create_fn`` technique -- and keeps that source (``.source``)
for ``bpfio run --show-source`` and for reading.  Semantics are the
interpreter's (:mod:`bpfio.exec.interp`), and the two are tested against each
other and against the live kernel.

How the source is shaped (what is fastest in CPython 3.11):

* A, X and the scratch words are locals (``A``, ``X``, ``m0``..``m15``); in
  the ``pio`` profile ``M[k]`` is the binding's list ``mem[k]`` itself.
* Jumps only go forward, so the control-flow graph is a DAG and is emitted
  as a tree of ``if`` statements: each conditional nests its *smaller*
  subtree (which always returns) and falls through to the larger one, so
  nesting stays logarithmic.  Shared tails are duplicated while the tree
  stays under a size budget; past it (adversarial programs) the program is
  emitted as a ``while`` loop over basic blocks, chosen by a binary search
  on the block number.
* Socket packet loads at fixed offsets read bytes directly; the bounds
  checks of a straight-line run are merged into one test at its start
  (an out-of-bounds load ends the program with 0, and nothing else in such
  a run is observable).
* ``pio``: context words come straight from the arguments (port, size, ...),
  the shared tail straight from ``mem`` -- no byte buffer per event; the
  executed-instruction count is added once per straight-line run.

The generated code never raises on a verified program.
"""

from __future__ import annotations

import builtins
from functools import lru_cache

from bpfio.exec import interp
from bpfio.exec.codegen import _JUMP_OPS, _PIO_WORDS, _Emitter
from bpfio.exec.interp import (JA, LD_GEN, LD_LEN, LD_MEM, LDX_LEN, LDX_MEM, RET_A, RET_K, RET_X,
                               ST, STX, predecode)
from bpfio.errors import UsageError
from bpfio.insn import Program
from bpfio.isa import BPF_MEMWORDS, U32

TREE_BUDGET = 20000     # emitted instructions before falling back to block dispatch


def _tree_sizes(ops) -> list[int]:
    """Instructions a full tree emission would produce from each pc (exact, may be huge)."""
    sizes = [0] * len(ops)
    for pc in range(len(ops) - 1, -1, -1):
        op, k, t, f = ops[pc]
        if op in (RET_K, RET_A, RET_X):
            sizes[pc] = 1
        elif op == JA:
            sizes[pc] = sizes[t]
        elif op in _JUMP_OPS:
            sizes[pc] = 1 + sizes[t] + (sizes[f] if f != t else 0)
        else:
            sizes[pc] = 1 + sizes[pc + 1]
    return sizes


def _pio_load(header, mem, off, size):
    """Read ``size`` big-endian bytes at ``off`` of the pio context (header words, then mem)."""
    value = 0
    for i in range(off, off + size):
        j = i >> 2
        word = header[j] if j < 10 else mem[j - 10] & U32
        value = (value << 8) | ((word >> (8 * (3 - (i & 3)))) & 0xff)
    return value


def generate(program, *, profile: str = "socket", mode: str = "fast") -> str:
    """Return the Python source of the function for ``program``."""
    ops = predecode(program, profile)
    if ops[-1][0] == LD_GEN and ops[-1][3] == -1:
        raise interp.VMError("program does not end with ret", pc=len(program) - 1)
    em = _Emitter(ops, profile, mode)
    body = em.lines
    used = sorted({o[1] for o in ops if o[0] in (LD_MEM, LDX_MEM, ST, STX) and o[1] < BPF_MEMWORDS})
    if profile == "socket":
        head = ["def _filter(p, ctx=_DEFAULT, **fields):",
                "    if fields:",
                "        ctx = _socket_context(fields.pop('context', ctx), **fields)"]
    elif profile == "seccomp":
        head = ["def _filter(w):", "    L = 64"]
    else:
        head = ["def _filter(port, size, direction, data, offset, vcpu, ticks, ns, mem):",
                "    L = 40 + 4 * len(mem)"]
    head.append("    A = X = 0")
    if em.count:
        head.append("    c = 0")
    if used and profile != "pio":
        head.append("    " + " = ".join(f"m{i}" for i in used) + " = 0")
    sizes = _tree_sizes(ops)
    # socket: the body runs in a try that costs nothing (CPython 3.11) until a packet that is
    # not bytes-like makes a byte read fail; that becomes the library's UsageError.
    ind = "        " if profile == "socket" else "    "
    if sizes[0] <= max(TREE_BUDGET, 4 * len(ops)):
        em.tree(0, ind, sizes)
    else:
        em.dispatch(ind)
    if profile == "socket":
        body[:0] = ["    try:", "        n = len(p)"] + (
            ["        L = n"] if any(o[0] in (LD_LEN, LDX_LEN) for o in ops) else [])
        body += ["    except TypeError:", "        err = _bad_packet(p)", "        if err is None:",
                 "            raise", "        raise err from None"]
    if profile == "pio" and any("H()" in line for line in body):
        head += ["    def H():", "        return (" + ", ".join(_PIO_WORDS) + ")"]
    return "\n".join(head + body) + "\n"


@lru_cache(maxsize=1024)
def fused_body(code: bytes) -> tuple[str, ...]:
    """The pio program as statements to inline into the engine's event function.

    The lines run inside a loop; every ``ret`` sets ``V`` (``None`` for an
    abort) and breaks out of it, with ``A`` and the executed count ``c`` left
    for the caller.  They use the names ``port, size, direction, data,
    offset, vcpu, ticks, ns, mem, L`` and the helpers in :func:`fused_names`.
    Inlining saves the call and the result tuple of ``.pio`` on every event.
    """
    ops = predecode(Program.from_bytes(code), "pio")
    if ops[-1][0] == LD_GEN and ops[-1][3] == -1:
        raise interp.VMError("program does not end with ret", pc=len(ops) - 1)
    em = _Emitter(ops, "pio", "fused")
    sizes = _tree_sizes(ops)
    if sizes[0] <= max(TREE_BUDGET, 4 * len(ops)):
        em.lines.append("while True:")
        em.tree(0, "    ", sizes)
    else:
        em.dispatch("")  # its own block loop is the loop a ret breaks out of
    head = ["A = X = 0", "c = 0"]
    if any("H()" in line for line in em.lines):
        head += ["def H():", "    return (" + ", ".join(_PIO_WORDS) + ")"]
    return tuple(head + em.lines)


def fused_names() -> dict:
    """Globals the fused statements may call."""
    import random
    return {"_pio_load": _pio_load, "_rand": random.getrandbits}


def _namespace():
    import random
    return {"_DEFAULT": interp.DEFAULT_CONTEXT, "_socket_context": interp.socket_context,
            "_anc": interp.ancillary, "_load": interp.skb_load, "_pio_load": _pio_load,
            "_rand": random.getrandbits, "_scratch_error": interp.scratch_error,
            "_bad_packet": interp.bad_packet,
            "__builtins__": builtins}


def _build(source: str, name: str):
    namespace = _namespace()
    exec(builtins.compile(source, f"<bpfio {name}>", "exec"), namespace)
    return namespace["_filter"]


class CompiledProgram:
    """A program compiled to Python; call it like :func:`bpfio.exec.interp.run` without the program.

    ``.source`` is the generated function.  ``.outcome(data, **context)``
    returns ``(verdict or None when aborted, A, executed)``; for ``pio``,
    ``.pio(port, size, direction, data, offset, vcpu, ticks, ns, mem)``
    is the engine's entry point with the same result.  ``executed`` is
    counted per straight-line run (exact for pio; a socket run aborted by
    its hoisted bounds check counts in full).
    """

    def __init__(self, program, profile: str = "socket"):
        if profile not in interp.PROFILES:
            raise UsageError(f"compile: unknown profile {profile!r} "
                             f"(expected one of {', '.join(interp.PROFILES)})")
        self.program = program = Program(program)
        self.profile = profile
        self.source = generate(program, profile=profile,
                               mode="detail" if profile == "pio" else "fast")
        self._fn = _build(self.source, profile)
        self._detail = self._fn if profile == "pio" else None
        if profile == "pio":
            self.pio = self._fn

    def __str__(self) -> str:
        return self.source

    def detail_source(self) -> str:
        """Source of the ``(verdict|None, A, executed)`` variant."""
        return generate(self.program, profile=self.profile, mode="detail")

    def _detail_fn(self):
        if self._detail is None:
            self._detail = _build(self.detail_source(), self.profile + " detail")
        return self._detail

    def __call__(self, data, **context):
        """Run on one input; same arguments and result as :func:`bpfio.exec.interp.run`."""
        if self.profile == "socket":
            return self._fn(data, **context)
        if self.profile == "seccomp":
            if context:
                raise UsageError(f"seccomp takes no context, got {', '.join(context)}")
            return interp.SeccompResult(self._fn(interp.as_seccomp_data(data).words()))
        return self._run_pio(data, context)[0] or 0

    def _run_pio(self, event, context):
        mem = context.pop("mem", None)
        if context:
            raise UsageError(f"pio takes only mem=, got {', '.join(context)}")
        from bpfio.abi.pio import PIO_MEM_DEFAULT, PioEvent, check_mem
        mem = [0] * PIO_MEM_DEFAULT if mem is None else check_mem(mem)
        if type(event) is not PioEvent:
            raise UsageError(f"a pio input is a PioEvent, not {type(event).__name__}")
        return self._fn(*event.checked(), mem)

    def outcome(self, data, **context):
        """Return ``(verdict or None when aborted, A, executed)``."""
        if self.profile == "pio":
            return self._run_pio(data, dict(context))
        fn = self._detail_fn()
        if self.profile == "socket":
            return fn(data, **context)
        return fn(interp.as_seccomp_data(data).words())


def compile(program, *, profile: str = "socket") -> CompiledProgram:  # noqa: A001
    """Compile a verified program into a :class:`CompiledProgram` (source kept in ``.source``)."""
    if profile == "socket":
        cp = CompiledProgram(program, profile)
        # A per-program subclass whose __call__ IS the generated function: no wrapper call.
        cls = type("CompiledSocketProgram", (CompiledProgram,), {"__call__": _bind(cp._fn)})
        cp.__class__ = cls
        return cp
    return CompiledProgram(program, profile)


def _bind(fn):
    """The generated function as a static ``__call__``: calling the instance costs no extra frame."""
    return staticmethod(fn)
