"""``bpfio.prove``: each interpreter rule, decided on pairs whose answer follows from the rule."""

from __future__ import annotations

import pytest

from bpfio.insn import Insn, Program
from bpfio.text.formats import parse_program
from bpfio.exec.interp import run
from bpfio.prove import ProveError, Result, equivalent, prove_property, verdict_classes


def P(text: str) -> Program:
    return parse_program(text)


RET0 = "ret #0\n"


@pytest.mark.parametrize("why, profile, a, b, status", [
    ("shift by X uses X & 31", "socket", "ldx #33\nld #1\nlsh x\nret a\n", "ld #2\nret a\n", "equivalent"),
    ("shift by k uses k & 31", "socket", "ld [0]\nrsh #32\nret a\n", "ld [0]\nret a\n", "equivalent"),
    ("div by X == 0 returns 0", "socket", "ld #7\ndiv x\nret #5\n", RET0, "equivalent"),
    ("mod by X == 0 returns 0", "seccomp", "ld [0]\nmod x\nret #5\n", RET0, "equivalent"),
    # No packet reaches 2**31 bytes (LEN_MAX), so this load is out of bounds on every packet;
    # ld [70000] is not (an AF_UNIX datagram can be 4 MiB: tests/test_prove_coverage.py).
    ("an out-of-bounds load returns 0", "socket", "ld [0x7ffffffd]\nret #1\n", RET0, "equivalent"),
    ("a load past 64 KiB can succeed", "socket", "ld [70000]\nret #1\n", RET0, "different"),
    ("a load needs the whole word", "socket", "ld [0]\nret #1\n", "ldb [3]\nret #1\n", "equivalent"),
    ("[x + k] wraps at 32 bits", "socket", "ldx #0xffffffff\nldb [x + 1]\nret a\n",
     "ldb [0]\nret a\n", "equivalent"),
    ("SKF_NET_OFF is the data start on AF_UNIX", "socket", "ldb [0xfff00002]\nret a\n",
     "ldb [2]\nret a\n", "equivalent"),
    ("SKF_LL_OFF faults without a link layer", "socket", "ldb [0xffe00000]\nret #9\n", RET0,
     "equivalent"),
    ("ifidx without a device returns A", "socket", "ld #4\nld ifidx\nret #9\n", "ret #4\n",
     "equivalent"),
    ("len is free", "socket", "ld len\nret a\n", "ld #14\nret a\n", "different"),
    ("protocol is 0 in the default context", "socket", "ld proto\nret a\n", RET0, "equivalent"),
    ("the same read of the random stream", "socket", "ld rand\nret a\n", "ld rand\nret a\n",
     "equivalent"),
    ("the first and the second random value", "socket", "ld rand\nret a\n",
     "ld rand\nld rand\nret a\n", "different"),
    ("ld rand is not a constant", "socket", "ld rand\nret a\n", RET0, "different"),
    ("xor_x is A ^ X", "socket", "ld [0]\ntax\nld #5\nld #5\nxor x\nret a\n",
     "ld [0]\nxor #5\nret a\n", "equivalent"),
    ("seccomp words are free", "seccomp", "ld [0]\nret a\n", "ld [4]\nret a\n", "different"),
    ("seccomp len is 64", "seccomp", "ld len\nret a\n", "ret #64\n", "equivalent"),
    ("pio len is the header plus memory", "pio", "ld len\nret a\n", "ret #104\n", "equivalent"),
    ("pio M[k] is shared word k", "pio", "ld M[3]\nret a\n", "ld [52]\nret a\n", "equivalent"),
    ("pio stores are compared", "pio", "ld #1\nst M[0]\nret #0\n", RET0, "different"),
    ("pio storing the old value changes nothing", "pio", "ld M[0]\nst M[0]\nret #0\n", RET0,
     "equivalent"),
    ("pio: an IN receives A", "pio", "ld #1\nret #0x10000\n", "ld #2\nret #0x10000\n", "different"),
    ("pio: A does not matter for EXIT", "pio", "ld #1\nret #0\n", "ld #2\nret #0\n", "equivalent"),
    ("pio: A masked to the size", "pio",
     "ld [4]\njeq #1, one, other\none: ld #0x100\nret #0x10000\nother: ld #0\nret #0\n",
     "ld [4]\njeq #1, one, other\none: ld #0x200\nret #0x10000\nother: ld #0\nret #0\n",
     "equivalent"),
])
def test_rule(why, profile, a, b, status):
    r = equivalent(P(a), P(b), profile=profile, mem_words=16)
    assert r.status == status, (why, r)
    if status == "different":
        assert r.observed[0] != r.observed[1]
        if profile == "socket" and "rand" not in a:
            assert [run(P(x), r.counterexample) for x in (a, b)] == list(r.results)


PROTO = "ld proto\njeq #0x800, yes, no\nyes: ret #1\nno: ret #0\n"


@pytest.mark.parametrize("why, a, b, default, free", [
    ("proto is 0 by default, anything when free", PROTO, RET0, "equivalent", "different"),
    ("ifidx returns A without a device, a free value with one", "ld #7\nld ifidx\nret a\n",
     "ret #7\n", "equivalent", "different"),
    ("type is at most 7", "ld type\njgt #7, yes, no\nyes: ret #1\nno: ret #0\n", RET0,
     "equivalent", "equivalent"),
    ("vlan_avail is 0 or 1", "ld vlan_avail\njgt #1, yes, no\nyes: ret #1\nno: ret #0\n", RET0,
     "equivalent", "equivalent"),
    ("ifidx and hatype share the device", "ld #1\nld ifidx\nld #2\nld hatype\nld #3\nret a\n",
     "ld #1\nld ifidx\nld #3\nret a\n", "equivalent", "equivalent"),
])
def test_socket_context(why, a, b, default, free):
    assert equivalent(P(a), P(b)).status == default, why
    r = equivalent(P(a), P(b), context="free")
    assert r.status == free, why
    if free == "different":
        assert "--ctx " in r.cex_text
        assert [run(P(x), r.counterexample, **r.context) for x in (a, b)] == list(r.results)


def test_nla_is_checked_before_it_is_called_different():
    # Both search attributes, from different starts: the prover's free function may disagree
    # where the real search does not; whatever it answers must hold in the interpreter.
    a = P("ld #0\nldx #1\nld nla\nret a\n")
    b = P("ld #4\nldx #1\nld nla\nret a\n")
    r = equivalent(a, b)
    assert r.status in ("different", "unknown")
    if r.status == "different":
        assert run(a, r.counterexample) != run(b, r.counterexample)


def test_result_fields_and_truth():
    r = equivalent([Insn(0x06, 0, 0, 1)], [Insn(0x06, 0, 0, 2)])
    assert isinstance(r, Result) and not r and r.cex_text.startswith("--packet")
    assert r.results == (1, 2) and r.seconds >= 0
    assert equivalent([Insn(0x06, 0, 0, 1)], [(0x06, 0, 0, 1)])


@pytest.mark.parametrize("program, message", [
    ([Insn(0x05, 0, 0, 5), Insn(0x06, 0, 0, 0)], "past the end"),
    ([Insn(0x60, 0, 0, 20), Insn(0x06, 0, 0, 0)], "M[20]"),
    ([Insn(0x00, 0, 0, 0)], "past its last instruction"),
])
def test_programs_the_interpreter_refuses_raise(program, message):
    with pytest.raises(Exception) as err:
        equivalent(program, program)
    assert message in str(err.value)


def test_property_and_verdicts():
    prog = P("ld [0]\njeq #1, yes, no\nyes: ret #10\nno: ret #20\n")
    assert prove_property(prog, "ret in 10, 20", profile="seccomp").status == "proved"
    r = prove_property(prog, "ret == 10", profile="seccomp")
    assert r.status == "disproved" and int(r.results[0]) == 20
    classes, complete = verdict_classes(prog, "seccomp")
    assert complete and sorted(v for v, _ in classes) == [10, 20]
    with pytest.raises(ProveError):
        prove_property(prog, "ret ==", profile="seccomp")


def test_ld_rand_is_one_stream_shared_by_both_programs():
    # The n-th 'ld rand' of a run reads the n-th value of one random stream, so a program
    # is equivalent to itself and to rewrites that read the stream the same way...
    coin = P("ld rand\n and #1\n jeq #0, zero\n ret #1\nzero: ret #2\n")
    flipped = P("ld rand\n and #1\n jeq #1, one\n ret #2\none: ret #1\n")
    assert equivalent(coin, coin).status == "equivalent"
    assert equivalent(coin, flipped).status == "equivalent"
    # ... the order of the reads matters (r0 + r1 == r1 + r0, but r1 - r0 differs) ...
    add = P("ld rand\n tax\n ld rand\n add x\n ret a\n")
    add_mem = P("ld rand\n st M[0]\n ld rand\n ldx M[0]\n add x\n ret a\n")
    sub = P("ld rand\n st M[0]\n ld rand\n ldx M[0]\n sub x\n ret a\n")
    assert equivalent(add, add_mem).status == "equivalent"
    r = equivalent(add, sub)
    assert r.status == "different"
    r0, r1 = r.rand[0][0], r.rand[0][2]
    assert r.results == ((r0 + r1) & 0xffffffff, (r1 - r0) & 0xffffffff)
    # ... and a read reached on two paths is the same first read.
    split = P("ldb [0]\n jeq #1, two\n ld rand\n ret a\ntwo: ld rand\n ret a\n")
    assert equivalent(split, P("ldb [0]\n ld rand\n ret a\n")).status == "equivalent"
