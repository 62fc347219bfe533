"""Decide whether two programs behave the same on every input of a profile.

What is compared (the observation):

* ``socket`` and ``seccomp``: the full u32 verdict (0 after an abort).
* ``pio``: the verdict, the value an IN receives when the verdict handles it
  (``A`` masked to the access size, for DONE and NOTIFY), and the final
  contents of every shared-memory word.  That is everything a hypervisor
  sees of one event; ``compare=("verdict",)`` narrows it.

A ``different`` answer is never taken on the solver's word: the model is
turned into a concrete input, both programs run on it in the interpreter, and
only a reproduced difference is reported (otherwise the answer is
``unknown`` with the reason).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import z3

from bpfio.insn import Insn, Program
from bpfio.errors import BpfError
from bpfio.values import check_seconds
from bpfio.exec.interp import SocketContext
from bpfio.exec.skb import PACKET_MAX, hex_text
from bpfio.exec.trace import Execution
from bpfio.prove.encode import ProveError, bv, encode
from bpfio.prove.inputs import LEN_MAX, PioInputs, SeccompInputs, SocketInputs, inputs_for

STATUSES = ("equivalent", "different", "unknown")
PIO_OBSERVED = ("verdict", "in", "mem")


@dataclass
class Result:
    """The answer of :func:`equivalent` (or of a property check).

    ``counterexample`` is the input for ``bpfio.exec.interp.run(prog, cex,
    profile=..., **context)``; ``cex_text`` the same input as ``bpfio run``
    options; ``results`` the two verdicts the interpreter computed on it and
    ``observed`` everything compared (for pio: verdict, IN value, memory).
    """

    status: str
    profile: str
    seconds: float = 0.0
    counterexample: object = None
    context: dict = field(default_factory=dict)
    cex_text: str = ""
    results: tuple = ()
    observed: tuple = ()
    reason: str = ""
    rand: tuple = ()

    def __bool__(self) -> bool:
        """True when proved (``equivalent``, or ``proved`` for a property)."""
        return self.status in ("equivalent", "proved")


class Unreplayable(BpfError):
    """A model the interpreter cannot run (a packet too long to build): the answer is unknown."""


def as_program(program) -> list[Insn]:
    """Accept a Program, a list of Insn or of ``(code, jt, jf, k)`` tuples (fields checked)."""
    return list(Program(program))


def observation(profile: str, inputs, out, compare=PIO_OBSERVED) -> list:
    """The terms compared for one program's :class:`~bpfio.prove.encode.Outputs`."""
    verdict = out.verdict()
    if profile != "pio":
        return [verdict]
    from bpfio.abi.pio import PIO_ACTION_MASK, PIO_DONE, PIO_IN, PIO_NOTIFY
    terms = []
    if "verdict" in compare:
        terms.append(verdict)
    if "in" in compare:
        size, direction = inputs.field("size"), inputs.field("dir")
        action = bv(verdict) & PIO_ACTION_MASK
        handled = z3.And(direction == PIO_IN, z3.Or(action == PIO_DONE, action == PIO_NOTIFY))
        mask = z3.If(size == 1, z3.BitVecVal(0xff, 32),
                     z3.If(size == 2, z3.BitVecVal(0xffff, 32), z3.BitVecVal(0xffffffff, 32)))
        terms.append(z3.If(handled, bv(out.final(lambda s: s.a)) & mask, z3.BitVecVal(0, 32)))
    if "mem" in compare:
        terms += [out.final(lambda s, i=i: s.mem[i]) for i in range(len(inputs.mem0))]
    return terms


def differ(obs_a, obs_b):
    """The condition that two observations differ somewhere."""
    return z3.Or(*[bv(p) != bv(q) for p, q in zip(obs_a, obs_b)])


def solve(constraints, *, timeout: float, prefer=()):
    """Check ``constraints``; return ``(z3 result, model or None)``.

    ``prefer`` lists conditions tried one at a time after a model is found
    and kept where still satisfiable, so that a counterexample reads
    ``--arch x86_64``, zeros and a short packet rather than arbitrary bits.
    Preferring never costs more than a quarter of ``timeout``.
    """
    check_seconds("timeout", timeout)
    solver = z3.SolverFor("QF_ABV")
    solver.set("timeout", max(1, int(timeout * 1000)))
    solver.add(*constraints)
    answer = solver.check()
    if answer != z3.sat:
        return answer, None
    model = solver.model()
    deadline = time.perf_counter() + timeout / 4
    for cond in prefer:
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        solver.set("timeout", max(1, int(left * 1000)))
        solver.push()
        solver.add(cond)
        if solver.check() == z3.sat:
            model = solver.model()
        else:
            solver.pop()
    return z3.sat, model


def equivalent(prog_a, prog_b, profile: str = "socket", timeout: float = 10.0, *,
               mem_words: int = 16, max_len: int = LEN_MAX, compare=PIO_OBSERVED,
               ports: tuple | None = None, context: str = "default") -> Result:
    """Decide whether ``prog_a`` and ``prog_b`` agree on every input of ``profile``.

    ``socket``: packets of any length 0..``max_len`` (default ``LEN_MAX``, every
    length a kernel delivers) with any bytes, the default (AF_UNIX) context, or
    with ``context="free"`` any ancillary values, device or none, and any
    network and link-layer header offsets (what an optimizer must preserve).  ``seccomp``: any ``seccomp_data``.  ``pio``: any event,
    any ``mem_words`` shared words (``ports=(base, length)``: only events of
    that binding).  ``timeout`` (seconds) bounds the solver;
    past it the status is ``unknown``.  Raises :class:`ProveError` for a
    program the interpreter would refuse (e.g. a jump past the end).
    """
    start = time.perf_counter()
    a, b = as_program(prog_a), as_program(prog_b)
    inputs = inputs_for(profile, mem_words=mem_words, max_len=max_len, ports=ports,
                        context=context)
    out_a, out_b = encode(a, inputs, "a"), encode(b, inputs, "b")
    obs_a = observation(profile, inputs, out_a, compare)
    obs_b = observation(profile, inputs, out_b, compare)
    answer, model = solve(inputs.constraints() + [differ(obs_a, obs_b)], timeout=timeout,
                          prefer=inputs.preferred())
    result = Result("unknown", profile)
    if answer == z3.unsat:
        result.status = "equivalent"
    elif answer == z3.sat:
        try:
            result = witness(profile, inputs, model, {"a": (a, out_a), "b": (b, out_b)},
                             compare, mem_words=mem_words)
        except Unreplayable as err:
            result.reason = str(err)
        else:
            if result.observed[0] == result.observed[1]:
                result.status = "unknown"
                result.reason = ("the solver's counterexample does not reproduce in the "
                                 "interpreter (nla/nlan or ld rand, which the prover treats as "
                                 "free values)")
            else:
                result.status = "different"
    else:
        result.reason = f"timeout after {timeout:g} s"
    result.seconds = time.perf_counter() - start
    return result


# --- counterexamples --------------------------------------------------------------

def _value(model, term) -> int:
    return model.eval(bv(term), model_completion=True).as_long()


def _array_bytes(model, arr, length: int, start: int = 0) -> bytes:
    """``length`` bytes of a model's array from index ``start`` (mod 2**32).

    The model is a Store chain over a constant, so a long packet costs one
    fill plus its stores.
    """
    value = model.eval(arr, model_completion=True)
    stores = {}
    while z3.is_store(value):
        index, byte = value.arg(1), value.arg(2)
        stores.setdefault(index.as_long(), byte.as_long())
        value = value.arg(0)
    if not z3.is_K(value):
        return bytes(_value8(model, arr, (start + i) & 0xffffffff) for i in range(length))
    out = bytearray([value.arg(0).as_long()]) * length
    for index, byte in stores.items():
        i = (index - start) & 0xffffffff
        if i < length:
            out[i] = byte
    return bytes(out)


def _value8(model, arr, i: int) -> int:
    return model.eval(z3.Select(arr, i), model_completion=True).as_long()


def concrete_input(profile: str, inputs, model):
    """``(data, context, cex_text)`` of the input a model describes."""
    if isinstance(inputs, SocketInputs):
        length = _value(model, inputs.length)
        if length > PACKET_MAX:
            raise Unreplayable(f"the solver's input is a packet of {length} bytes, longer than "
                               f"the {PACKET_MAX} the interpreter replays")
        pkt = _array_bytes(model, inputs.pkt, length)
        ctx = inputs.context_values(model)
        text = "--packet " + hex_text(pkt) + "".join(f" --ctx {k}={v:#x}" for k, v in ctx.items())
        start = inputs.head_start(ctx)
        if start:
            ctx["head"] = _array_bytes(model, inputs.pkt, -start, start)
            text += " --ctx head=" + hex_text(ctx["head"])
        return pkt, ctx, text
    if isinstance(inputs, SeccompInputs):
        from bpfio.abi.seccomp import SeccompData, syscall_name
        w = [_value(model, t) for t in inputs.words]
        data = SeccompData(w[0], w[1], w[2] | w[3] << 32,
                           tuple(w[4 + 2 * i] | w[5 + 2 * i] << 32 for i in range(6)))
        return data, {}, seccomp_text(data, syscall_name)
    assert isinstance(inputs, PioInputs)
    from bpfio.abi.pio import PIO_IN, PioEvent
    h = {name: _value(model, t) for name, t in zip(inputs.NAMES, inputs.header)}
    event = PioEvent(h["port"], h["size"], h["dir"], h["data"], h["offset"], h["vcpu"],
                     h["ticks"] | h["ticks_hi"] << 32, h["ns"] | h["ns_hi"] << 32)
    mem = [_value(model, t) for t in inputs.mem0]
    words = "in" if event.direction == PIO_IN else "out"
    text = f"{words} {event.port:#x} {event.size}"
    if event.direction != PIO_IN:
        text += f" {event.data:#x}"
    for name in ("offset", "vcpu", "ticks", "ns"):
        if getattr(event, name):
            text += f" {name}={getattr(event, name):#x}"
    opts = [f"--mem-words {len(mem)}"] + [f"--mem {i}={v:#x}" for i, v in enumerate(mem) if v]
    return event, {"mem": mem}, " ".join(opts + [f"--event '{text}'"])


def seccomp_text(data, syscall_name) -> str:
    """``bpfio run`` options for one ``seccomp_data``."""
    from bpfio.abi.seccomp import ARCHES
    name = syscall_name(data.nr) if data.nr < 0x10000 else None
    arch = {v: k for k, v in ARCHES.items()}.get(data.arch, f"{data.arch:#x}")
    parts = [f"--syscall {name or data.nr}", f"--arch {arch}"]
    if data.instruction_pointer:
        parts.append(f"--ip {data.instruction_pointer:#x}")
    parts += [f"--arg {i}={v:#x}" for i, v in enumerate(data.args) if v]
    return " ".join(parts)


def run_execution(profile: str, prog, data, context: dict, rand: dict):
    """Run ``prog`` to the end in the interpreter; return the finished :class:`Execution`.

    ``rand`` maps a pc of ``ld rand`` to the value it reads (socket only; a
    pio ``ld rand`` draws from :mod:`random`, so its values are not replayed).
    """
    context = dict(context)
    holder = []
    if profile == "socket" and rand:
        context["context"] = SocketContext(rand=lambda: rand.get(holder[0].pc, 0))
    if profile == "pio":
        context["mem"] = list(context["mem"])
    ex = Execution(prog, data, profile=profile, **context)
    holder.append(ex)
    ex.run()
    return ex


def run_observed(profile: str, prog, data, context: dict, rand: dict, compare=PIO_OBSERVED):
    """Run ``prog`` in the interpreter; return ``(verdict, observation tuple)``."""
    ex = run_execution(profile, prog, data, context, rand)
    verdict = ex.verdict
    if profile != "pio":
        return verdict, (int(verdict),)
    from bpfio.abi.pio import PIO_ACTION_MASK, PIO_DONE, PIO_IN, PIO_NOTIFY
    obs = []
    if "verdict" in compare:
        obs.append(int(verdict))
    if "in" in compare:
        handled = (data.direction == PIO_IN and ex.fault is None
                   and int(verdict) & PIO_ACTION_MASK in (PIO_DONE, PIO_NOTIFY))
        obs.append(ex.a & ((1 << (8 * data.size)) - 1) if handled else 0)
    if "mem" in compare:
        obs += list(ex.mem)
    return verdict, tuple(obs)


def witness(profile, inputs, model, programs: dict, compare=PIO_OBSERVED, *, mem_words=16):
    """A :class:`Result` carrying the model's input and the interpreter's verdicts on it."""
    data, context, text = concrete_input(profile, inputs, model)
    verdicts, observed, rands = [], [], []
    for tag, (prog, out) in programs.items():
        rand = {pc: _value(model, v) for pc, v in out.rand.items()}
        verdict, obs = run_observed(profile, prog, data, context, rand, compare)
        verdicts.append(verdict)
        observed.append(obs)
        rands.append(rand)
    return Result("different", profile, counterexample=data, context=context, cex_text=text,
                  results=tuple(verdicts), observed=tuple(observed), rand=tuple(rands))


__all__ = ["Result", "equivalent", "ProveError", "STATUSES"]
