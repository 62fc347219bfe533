"""The compiled fast path gives the interpreter's results on every program and input."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bpfio import assemble
from bpfio.exec import compiler
from bpfio.exec.compiler import CompiledProgram, compile, generate
from bpfio.insn import Insn, Program
from bpfio.exec.interp import outcome, run
from bpfio.exec.trace import Execution, trace
from bpfio.isa import ANCILLARY, KERNEL_CODES, OPCODES
from bpfio.exec.gen import random_packet, random_program
from bpfio.abi.pio import PioEvent
from bpfio.abi.seccomp import SeccompData, SeccompResult
from bpfio.check.verifier import verify

PROFILES = ("socket", "seccomp", "pio")
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _input(rng, profile):
    if profile == "socket":
        return random_packet(rng), {}
    if profile == "seccomp":
        return SeccompData(rng.getrandbits(9) - 10, rng.getrandbits(32), rng.getrandbits(64),
                           tuple(rng.getrandbits(64) for _ in range(6))), {}
    event = PioEvent(rng.getrandbits(16), rng.choice((1, 2, 4)), rng.getrandbits(1),
                     rng.getrandbits(32), rng.getrandbits(3), rng.getrandbits(2),
                     rng.getrandbits(64), rng.getrandbits(64))
    return event, {"mem": [rng.getrandbits(32) for _ in range(16)]}


def _same(program, profile, cp, data, context):
    """interp outcome == compiled outcome == trace, including pio memory effects."""
    copies = [{k: (list(v) if k == "mem" else v) for k, v in context.items()} for _ in range(3)]
    want = outcome(program, data, profile=profile, **copies[0])
    got = cp.outcome(data, **copies[1])
    verdict, steps = trace(program, data, profile=profile, **copies[2])
    assert got[0] == want[0]
    if want[0] is not None:
        assert got[1:] == want[1:]           # A at return and instructions executed
    assert verdict == (want[0] or 0) and len(steps) == want[2]
    if profile == "pio":
        assert copies[0]["mem"] == copies[1]["mem"] == copies[2]["mem"]
    return want


@FAST
@given(seed=st.integers(0, 2**32 - 1), profile=st.sampled_from(PROFILES))
def test_compiled_equals_interpreter_on_random_verified_programs(seed, profile):
    rng = random.Random(seed)
    program = random_program(rng, profile=profile, oracle_safe=False)
    try:
        verify(program, profile=profile, notifiers=1, lints=False)
    except Exception:
        assume(False)
    if any(i.k == a.k and a.kernel_name == "RANDOM" for i in program for a in ANCILLARY):
        assume(False)  # rand differs between runs by design; tested below
    cp = compile(program, profile=profile)
    for _ in range(4):
        data, context = _input(rng, profile)
        _same(program, profile, cp, data, context)
        if profile == "socket":   # the fast entry point agrees too
            assert cp(data) == run(program, data)


insn = st.builds(Insn, st.sampled_from(sorted(KERNEL_CODES)), st.integers(0, 6),
                 st.integers(0, 6), st.one_of(st.integers(0, 70), st.integers(0, 2**32 - 1),
                                              st.sampled_from([a.k for a in ANCILLARY])))


@FAST
@given(body=st.lists(insn, min_size=0, max_size=14), ret=st.sampled_from([0x06, 0x16]),
       packet=st.binary(max_size=80), profile=st.sampled_from(PROFILES))
def test_any_verified_program_never_raises_and_engines_agree(body, ret, packet, profile):
    program = Program(body + [Insn(ret, 0, 0, 0x10000)])
    try:
        verify(program, profile=profile, notifiers=1, lints=False)
    except Exception:
        assume(False)
    assume(not any(i.code in (0x20, 0x28, 0x30) and i.k == 0xfffff038 for i in program))
    cp = compile(program, profile=profile)
    if profile == "socket":
        _same(program, profile, cp, packet, {})
    elif profile == "seccomp":
        _same(program, profile, cp, (packet + bytes(64))[:64], {})
    else:
        _same(program, profile, cp, PioEvent(0x70, 1, 1, 0x8f), {"mem": list(range(16))})


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_block_dispatch_fallback_matches(seed):
    with pytest.MonkeyPatch.context() as mp:
        # Force the block-dispatch form for every program.
        mp.setattr(compiler, "_tree_sizes", lambda ops: [10**9] * len(ops))
        _check_dispatch(seed)


def _check_dispatch(seed):
    rng = random.Random(seed)
    profile = rng.choice(PROFILES)
    program = random_program(rng, profile=profile)
    try:
        verify(program, profile=profile, notifiers=1, lints=False)
    except Exception:
        assume(False)
    cp = compile(program, profile=profile)
    assert "while True:" in cp.source
    for _ in range(3):
        data, context = _input(rng, profile)
        _same(program, profile, cp, data, context)


def test_long_chains_and_diamonds_compile():
    # 2000 conditional jumps in a row: nesting must stay shallow.
    chain = []
    for i in range(2000):
        chain += [Insn(0x15, 1, 0, 0), Insn(0x06, 0, 0, i + 2)]   # jeq #0 over a ret
    chain.append(Insn(0x06, 0, 0, 1))
    cp = compile(Program(chain))
    assert max(len(line) - len(line.lstrip()) for line in cp.source.splitlines()) <= 16
    assert cp(b"") == run(Program(chain), b"") == 1
    assert cp(b"") == 1
    # 40 diamonds: the full tree would have 2**40 paths -> block dispatch.
    diamonds = []
    for i in range(40):
        diamonds += [Insn(0x30, 0, 0, i), Insn(0x15, 0, 1, 7), Insn(0x04, 0, 0, 1)]
    diamonds.append(Insn(0x16, 0, 0, 0))
    prog = Program(diamonds)
    cp = compile(prog)
    assert "while True:" in cp.source
    pkt = bytes(random.Random(3).choice((7, 1)) for _ in range(40))
    assert cp(pkt) == run(prog, pkt)


def test_compiled_program_api():
    prog = assemble("ldh [12]\njne #0x806, drop\nret #-1\ndrop: ret #0")
    cp = compile(prog)
    assert isinstance(cp, CompiledProgram) and "def _filter" in str(cp)
    arp = bytes(12) + b"\x08\x06"
    assert cp(arp) == 0xffffffff and cp(b"") == 0
    assert cp.outcome(b"")[0] is None and cp.outcome(arp)[0] == 0xffffffff
    assert "c +=" in cp.detail_source()
    sec = compile(assemble("ld [0]\nret #0x50001"), profile="seccomp")
    r = sec(SeccompData(110))
    assert isinstance(r, SeccompResult) and r.describe() == "ERRNO(1)"
    pio = compile(assemble("ld [24]\nst M[0]\nret #0x10000"), profile="pio")
    mem = [0, 0]
    assert pio.pio(0x608, 4, 0, 0, 0, 0, 0x1_0000_0009, 0, mem) == (0x10000, 9, 3)
    assert mem == [9, 0] and pio(PioEvent(0x608, 4, 0, ticks=4), mem=mem) == 0x10000
    assert "bytes" not in pio.source and "_pio_load" not in pio.source


def test_pio_source_reads_words_without_a_buffer():
    src = generate(assemble("ld [0]\nldh [6]\nldb [11]\nld [44]\nret a"), profile="pio", mode="detail")
    assert "A = port" in src and "A = size & 0xffff" in src and "A = direction & 0xff" in src
    assert "mem[1]" in src


def test_socket_context_reaches_compiled_code():
    prog = assemble("ld #9\nld ifidx\nret a")
    cp = compile(prog)
    assert cp(b"x") == 9                         # no device: returns A
    assert cp(b"x", ifindex=4) == 4 == run(prog, b"x", ifindex=4)
    neg = assemble("ldb [0xffe00001]\nret a")
    assert compile(neg)(b"ab", ll_off=0) == ord("b") and compile(neg)(b"ab") == 0


def test_rand_is_random_in_both_engines():
    prog = assemble("ld rand\nret a")
    values = {run(prog, b"") for _ in range(8)} | {compile(prog)(b"") for _ in range(8)}
    assert len(values) > 8
    assert run(prog, b"", rand=lambda: 5) == 5 == compile(prog)(b"", rand=lambda: 5)


def test_steps_and_fast_loop_agree_on_every_opcode():
    # Each kernel opcode once, with awkward operands, through Execution and execute().
    rng = random.Random(7)
    for code, info in OPCODES.items():
        if not info.kernel:
            continue
        for k in (0, 1, 31, 0xffffffff, 0xfff00001):
            if info.mode in (0x60,) or info.cls in (2, 3):
                k &= 15
            prog = Program([Insn(0x00, 0, 0, 0x80000001), Insn(0x01, 0, 0, 3),
                            Insn(0x02, 0, 0, 0), Insn(0x03, 0, 0, 1)]
                           + [Insn(code, 0, 1, k)] + [Insn(0x16, 0, 0, 0), Insn(0x16, 0, 0, 0)])
            if info.is_jump and info.op == 0:
                prog = Program(list(prog[:4]) + [Insn(code, 0, 0, 1)] + list(prog[5:]))
            pkt = rng.randbytes(rng.randrange(0, 40))
            ex = Execution(prog, pkt)
            assert ex.run() == run(prog, pkt), (hex(code), k)
