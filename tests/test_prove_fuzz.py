"""The prover against the interpreter: the spine of ``bpfio.prove``.

Two independent checks on random verified programs (fixed seeds):

* the encoding, evaluated on a concrete input, gives the interpreter's
  verdict (and for pio its IN value and shared memory), so each term means
  what the interpreter does;
* for random pairs, semantics-preserving rewrites and small breaking edits:
  "equivalent" survives 10,000 random inputs in the interpreter, and every
  "different" counterexample reproduces in the interpreter and in the
  compiled path (socket ones also in the live kernel).  A preserving rewrite
  must be proved equivalent.
"""

from __future__ import annotations

import random

import pytest
import z3

from bpfio.exec import kernel
from bpfio.exec.compiler import compile as compile_program
from bpfio.exec.interp import Interpreter
from bpfio.exec.kernel_run import SocketOracle
from bpfio.exec.gen import random_program
from bpfio.prove import equivalent
from bpfio.prove.encode import encode
from bpfio.prove.inputs import PioInputs, SeccompInputs, SocketInputs, inputs_for
from bpfio.prove.equiv import observation, run_observed

from prove_tools import breaking, preserving, rand_stream, random_input

PROFILES = ("socket", "seccomp", "pio")
SEEDS = {"socket": 1301, "seccomp": 1302, "pio": 1303}
NLA_KS = {0xfffff000 + 12, 0xfffff000 + 16}


def _uses_nla(prog) -> bool:
    return any(insn.k in NLA_KS and insn.code & 0x07 == 0 for insn in prog)


def _substitution(inputs, data, context):
    """``(variable, value)`` pairs fixing the free variables to one concrete input."""
    val = lambda v: z3.BitVecVal(v & 0xffffffff, 32)   # noqa: E731
    if isinstance(inputs, SocketInputs):
        arr = z3.K(z3.BitVecSort(32), z3.BitVecVal(0, 8))
        for i, byte in enumerate(data):
            arr = z3.Store(arr, z3.BitVecVal(i, 32), z3.BitVecVal(byte, 8))
        return [(inputs.pkt, arr), (inputs.length, val(len(data)))]
    if isinstance(inputs, SeccompInputs):
        return list(zip(inputs.words, map(val, data.words())))
    assert isinstance(inputs, PioInputs)
    pairs = list(zip(inputs.header, map(val, data.words())))
    return pairs + list(zip(inputs.mem0, map(val, context["mem"])))


def _evaluate(term, pairs) -> int:
    if isinstance(term, int):
        return term
    out = z3.simplify(z3.substitute(term, *pairs))
    assert z3.is_bv_value(out), out
    return out.as_long()


@pytest.mark.parametrize("profile", PROFILES)
def test_encoding_evaluates_to_the_interpreters_result(profile):
    rng = random.Random(SEEDS[profile])
    checked = 0
    for _ in range(60):
        prog = random_program(rng, profile=profile)
        if _uses_nla(prog):
            continue
        inputs = inputs_for(profile)
        out = encode(prog, inputs)
        terms = observation(profile, inputs, out)
        for _ in range(6):
            data, context = random_input(rng, profile)
            pairs = _substitution(inputs, data, context)
            got = tuple(_evaluate(t, pairs) for t in terms)
            _, want = run_observed(profile, prog, data, context, {})
            assert got == want, (profile, list(prog), data, context)
            checked += 1
    assert checked > 200


def _agree_on_random_inputs(rng, profile, a, b, count):
    if profile == "socket":
        ia, ib = Interpreter(a), Interpreter(b)
        for _ in range(count):
            data, _ = random_input(rng, profile)
            assert ia(data) == ib(data), data
        return
    ca, cb = compile_program(a, profile=profile), compile_program(b, profile=profile)
    for _ in range(count // 4):   # the compiled path is tested against the interpreter elsewhere
        data, context = random_input(rng, profile)
        _, obs_a = run_observed(profile, a, data, context, {})
        _, obs_b = run_observed(profile, b, data, context, {})
        assert obs_a == obs_b, (data, context)
    for _ in range(count - count // 4):
        data, context = random_input(rng, profile)
        mem_a = list(context.get("mem", ()))
        mem_b = list(mem_a)
        ra = ca.outcome(data, **({"mem": mem_a} if profile == "pio" else {}))
        rb = cb.outcome(data, **({"mem": mem_b} if profile == "pio" else {}))
        assert (ra[0] or 0) == (rb[0] or 0) and mem_a == mem_b, (data, context)


def _pairs(rng, profile, count):
    """``(kind, a, b)``: random pairs, preserving rewrites and breaking edits."""
    out = []
    while len(out) < count:
        a = random_program(rng, profile=profile, length=rng.randrange(4, 40))
        r = rng.random()
        if r < 0.2:
            out.append(("random", a, random_program(rng, profile=profile)))
        elif r < 0.6:
            b = preserving(rng, a)
            if b is not None:
                out.append(("preserving", a, b))
        else:
            out.append(("breaking", a, breaking(rng, a)))
    return out


def _fuzz(profile, pairs, inputs_per_pair, seed):
    rng = random.Random(seed)
    tally = {"equivalent": 0, "different": 0, "unknown": 0}
    for kind, a, b in _pairs(rng, profile, pairs):
        r = equivalent(a, b, profile=profile, timeout=20)
        tally[r.status] += 1
        if kind == "preserving":
            assert r.status == "equivalent", (list(a), list(b), r)
        if r.status == "equivalent":
            _agree_on_random_inputs(rng, profile, a, b, inputs_per_pair)
        elif r.status == "different":
            # The prover already ran the interpreter; run again independently, and the compiled path.
            _, obs_a = run_observed(profile, a, r.counterexample, r.context, r.rand[0])
            _, obs_b = run_observed(profile, b, r.counterexample, r.context, r.rand[1])
            assert obs_a != obs_b and (obs_a, obs_b) == r.observed
            for prog, verdict in zip((a, b), r.results):
                ctx = {"mem": list(r.context["mem"])} if profile == "pio" else {}
                assert (compile_program(prog, profile=profile).outcome(
                    r.counterexample, **ctx)[0] or 0) == int(verdict)
        else:
            assert _uses_nla(a) or _uses_nla(b), r.reason
    return tally


@pytest.mark.parametrize("profile", PROFILES)
def test_prover_agrees_with_the_interpreter(profile):
    tally = _fuzz(profile, 30, 10_000, SEEDS[profile])
    assert tally["equivalent"] >= 10 and tally["different"] >= 5, tally


def _random_context(rng) -> dict:
    """A random SocketContext: every ancillary field, a device or none (``rand`` apart)."""
    from bpfio.prove.inputs import CONTEXT_FIELDS
    ctx = {name: rng.randrange(mask + 1) if rng.random() < 0.7 else rng.choice((0, mask))
           for name, (_, mask) in CONTEXT_FIELDS.items()}
    if rng.random() < 0.5:
        ctx["ifindex"] = ctx["hatype"] = None
    return ctx


def test_free_socket_context_against_the_interpreter():
    # Every ancillary load, rand included (oracle_safe=False), with the context free.
    from bpfio.exec.interp import SocketContext, run
    rng = random.Random(1305)
    tally = {"equivalent": 0, "different": 0, "unknown": 0}
    for _ in range(40):
        a = random_program(rng, profile="socket", length=rng.randrange(4, 30), oracle_safe=False)
        r = rng.random()
        b = (random_program(rng, profile="socket", oracle_safe=False) if r < 0.3 else
             breaking(rng, a) if r < 0.7 else preserving(rng, a) or a)
        r = equivalent(a, b, profile="socket", context="free")
        tally[r.status] += 1
        if r.status == "equivalent":
            for _ in range(2_000):
                data, _ = random_input(rng, "socket")
                fields, seed = _random_context(rng), rng.getrandbits(64)
                got = [run(p, data, context=SocketContext(**fields, rand=rand_stream(seed)))
                       for p in (a, b)]
                assert got[0] == got[1], (data, fields, seed)
        elif r.status == "different":
            _, obs_a = run_observed("socket", a, r.counterexample, r.context, r.rand[0])
            _, obs_b = run_observed("socket", b, r.counterexample, r.context, r.rand[1])
            assert obs_a != obs_b and (obs_a, obs_b) == r.observed
        else:
            assert _uses_nla(a) or _uses_nla(b), r.reason
    assert tally["equivalent"] >= 10 and tally["different"] >= 5, tally


SOCKET_SKIP = kernel.available("socket")


@pytest.mark.skipif(SOCKET_SKIP is not None, reason=SOCKET_SKIP or "")
def test_socket_counterexamples_reproduce_in_the_kernel():
    rng = random.Random(1304)
    checked = 0
    with SocketOracle() as oracle:
        for _, a, b in _pairs(rng, "socket", 80):
            r = equivalent(a, b, profile="socket")
            if r.status != "different":
                continue
            got = [oracle.run(p, [r.counterexample])[0] or 0 for p in (a, b)]
            assert got == [int(v) for v in r.results], (list(a), list(b), r.cex_text)
            checked += 1
    assert checked >= 5


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES)
def test_prover_agrees_with_the_interpreter_sweep(profile):
    tally = _fuzz(profile, 600, 10_000, SEEDS[profile] + 1000)
    print(profile, tally)
