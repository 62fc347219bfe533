"""The x86-64 JIT gives the interpreter's results: rule by rule, on random programs, in a child.

Random sweeps run the native code in a forked child, so a SIGSEGV or SIGFPE is a
test failure naming the seed and the program, not a dead test run.  Sizes::

    BPFIO_JIT_SWEEP_N=1000000 python -m pytest --run-slow tests/test_jit.py -k sweep

(pairs of program x input per profile; the default run checks a few thousand).
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import random
import signal
import traceback

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bpfio
from bpfio import assemble
from bpfio.abi.pio import PioEvent
from bpfio.abi.seccomp import SeccompData, SeccompResult
from bpfio.check.verifier import verify
from bpfio.errors import VerifierError
from bpfio.exec.gen import random_packet, random_program
from bpfio.exec.interp import outcome, run
from bpfio.exec.jit import mem as jmem
from bpfio.exec.jit.program import Batch, jit
from bpfio.insn import Insn, Program
from bpfio.text.disasm import disassemble

pytestmark = pytest.mark.skipif(jmem.unavailable_reason() is not None,
                                reason=f"JIT unavailable: {jmem.unavailable_reason()}")

PKT = bytes(range(1, 101))


# -- one tiny program per semantic rule, named after it ---------------------------------------
RULES = [
    ("div_by_zero_x", "ld #7\nldx #0\ndiv x\nret #9", PKT, {}),
    ("mod_by_zero_x", "ld #7\nldx #0\nmod x\nret #9", PKT, {}),
    ("div_x", "ld #0xfffffffe\nldx #3\ndiv x\nret a", PKT, {}),
    ("mod_k", "ld #0xfffffffe\nmod #7\nret a", PKT, {}),
    ("shift_left_by_x_32", "ld #5\nldx #32\nlsh x\nret a", PKT, {}),
    ("shift_left_by_x_33", "ld #5\nldx #33\nlsh x\nret a", PKT, {}),
    ("shift_right_by_x_ff", "ld #0x80000000\nldx #0xffffffff\nrsh x\nret a", PKT, {}),
    ("oob_absolute_word", "ld [97]\nret a", PKT, {}),
    ("oob_absolute_half", "ldh [99]\nret a", PKT, {}),
    ("oob_absolute_byte", "ldb [100]\nret #1", PKT, {}),
    ("oob_absolute_high", "ldb [0x80000000]\nret #1", PKT, {}),
    ("oob_indexed", "ldx #90\nld [x + 8]\nret a", PKT, {}),
    ("indexed_in_bounds", "ldx #90\nld [x + 6]\nret a", PKT, {}),
    ("x_plus_k_wrap", "ldx #0xfffffff0\nldb [x + 0x20]\nret a", PKT, {}),
    ("x_plus_k_wrap_negative", "ldx #1\nldb [x + 0xffffffff]\nret a", PKT, {}),
    ("x_plus_k_reaches_net_off", "ldx #0xfff00000\nldb [x + 1]\nret a", PKT, {}),
    ("x_plus_k_ancillary_is_not_special", "ldx #0\nldb [x + 0xfffff000]\nret a", PKT, {}),
    ("msh", "ldxb 4*([0]&0xf)\ntxa\nret a", PKT, {}),
    ("msh_oob", "ldxb 4*([100]&0xf)\nret #1", PKT, {}),
    ("msh_net_off", "ldxb 4*([0xfff00003]&0xf)\ntxa\nret a", PKT, {}),
    ("ret_a", "ld #0xdeadbeef\nret a", PKT, {}),
    ("ret_k", "ret #0xfffffffe", PKT, {}),
    ("ret_k_zero_is_not_an_abort", "ret #0", PKT, {}),
    ("len", "ld len\nret a", PKT, {}),
    ("len_empty_packet", "ldx len\ntxa\nadd #3\nret a", b"", {}),
    ("skf_net_off", "ldh [0xfff00005]\nret a", PKT, {}),
    ("skf_net_off_moved", "ldb [0xfff00000]\nret a", PKT, {"net_off": 14}),
    ("skf_net_off_past_end", "ldb [0xfff00000]\nret a", PKT, {"net_off": 100}),
    ("skf_net_off_before_data_reads_head", "ld [0xfff00000]\nret a", PKT,
     {"net_off": -2, "head": b"\x45\x00"}),
    ("skf_net_off_before_head_aborts", "ldb [0xfff00000]\nret #7", PKT,
     {"net_off": -3, "head": b"\x45\x00"}),
    ("skf_net_off_head_only_packet_empty", "ldh [0xfff00000]\nret a", b"",
     {"net_off": -2, "head": b"\x12\x34"}),
    ("indexed_net_off_before_data_reads_head", "ldx #0xfff00001\nldh [x + 0]\nret a", PKT,
     {"net_off": -20, "ll_off": -34, "head": bytes(range(34))}),
    ("skf_ll_off_before_data_reads_head", "ld [0xffe0000c]\nret a", PKT,
     {"net_off": -20, "ll_off": -34, "head": bytes(range(34))}),
    ("skf_ll_off_without_header", "ldb [0xffe00000]\nret a", PKT, {}),
    ("skf_ll_off", "ld [0xffe00002]\nret a", PKT, {"ll_off": 3}),
    ("below_skf_ll_off", "ldb [0xffdfffff]\nret a", PKT, {"ll_off": 0}),
    ("indexed_ll_off", "ldx #0xffe00000\nldh [x + 4]\nret a", PKT, {"ll_off": 1}),
    ("scratch_memory", "ld #9\nst M[3]\nld #1\nldx M[3]\ntxa\nret a", PKT, {}),
    ("jset", "ld #6\njset #4, yes, no\nyes: ret #1\nno: ret #2", PKT, {}),
    ("jgt_unsigned", "ld #0xffffffff\njgt #1, yes, no\nyes: ret #1\nno: ret #2", PKT, {}),
    ("jge_x", "ld #5\nldx #5\njge x, yes, no\nyes: ret #1\nno: ret #2", PKT, {}),
    ("jge_k_equal", "ld #5\njge #5, yes, no\nyes: ret #1\nno: ret #2", PKT, {}),
    ("jgt_k_equal", "ld #5\njgt #5, yes, no\nyes: ret #1\nno: ret #2", PKT, {}),
    ("jgt_x_equal", "ld #5\nldx #5\njgt x, yes, no\nyes: ret #1\nno: ret #2", PKT, {}),
    ("jeq_x_only_false_branch", "ld #5\nldx #6\njeq x, yes\nret #2\nyes: ret #1", PKT, {}),
    ("jset_x", "ld #6\nldx #8\njset x, yes, no\nyes: ret #1\nno: ret #2", PKT, {}),
    ("alu_k_all", "ld #100\nadd #7\nsub #3\nmul #3\ndiv #5\nmod #7\nand #0xff\nor #0x100\n"
     "xor #0x55\nlsh #3\nrsh #1\nret a", PKT, {}),
    ("alu_x_all", "ld #100\nldx #7\nadd x\nsub x\nmul x\ndiv x\nmod x\nand x\nor x\n"
     "xor x\nret a", PKT, {}),
    ("neg_and_mul_wrap", "ld #0x10001\nmul #0x10001\nneg\nret a", PKT, {}),
]
for _a in bpfio.isa.ANCILLARY:
    _word = _a.asm_name or f"[{_a.k:#x}]"
    RULES.append((f"ancillary_{_a.kernel_name.lower()}", f"ld #3\nldx #4\nld {_word}\nret a", PKT,
                  {"protocol": 0x86dd, "pkt_type": 3, "ifindex": 7, "hatype": 1, "mark": 0xabcdef,
                   "queue": 2, "rxhash": 0x12345678, "cpu": 1, "vlan_tci": 0x123,
                   "vlan_present": 1, "vlan_tpid": 0x8100, "poff": 34}))
RULES += [("ancillary_ifindex_without_device_returns_a", "ld #77\nld ifidx\nret #1", PKT, {}),
          ("ancillary_hatype_without_device_returns_a", "ld #5\nldh hatype\nret #1", PKT, {})]


def _nla_packet():
    attrs = b"\x08\x00\x02\x00abcd" + b"\x0c\x00\x05\x00" + b"\x08\x00\x07\x00wxyz"
    return bytes(4) + attrs


@pytest.mark.parametrize("name,source,packet,context", RULES, ids=[r[0] for r in RULES])
def test_rule(name, source, packet, context):
    prog = assemble(source)
    verify(prog, lints=False)
    want = run(prog, packet, **context, rand=_rand(1))
    assert jit(prog)(packet, **context, rand=_rand(1)) == want
    assert jit(prog, harden=True)(packet, **context, rand=_rand(1)) == want
    assert jit(prog).run_many([packet, packet], **context, rand=_rand(1))[0] == want


@pytest.mark.parametrize("source", ["ldx #2\nld #4\nld nla\nret a", "ldx #7\nld #12\nld nlan\nret a",
                                    "ldx #5\nld #12\nld nlan\nret a", "ldx #9\nld #4\nld nla\nret a"])
def test_rule_netlink_attributes(source):
    prog = assemble(source)
    pkt = _nla_packet()
    assert jit(prog)(pkt) == run(prog, pkt)


PIO_RULES = [
    ("pio_mem_store_and_load", "ld [0]\nst M[2]\nldx M[2]\ntxa\nadd #1\nret a"),
    ("pio_mem_seen_by_indexed_load", "ld #0x11223344\nst M[1]\nldx #4\nld [x + 40]\nret a"),
    ("pio_mem_indexed_half", "ld #0x11223344\nst M[0]\nldx #2\nldh [x + 40]\nret a"),
    ("pio_oob_indexed", "ldx #200\nld [x + 0]\nret #0x10000"),
    ("pio_len", "ld len\nret a"),
    ("pio_div_by_zero_x", "ldx M[5]\nld #7\ndiv x\nret #0x10000"),
    ("pio_stx", "ld [12]\ntax\nstx M[15]\nret #0x10000"),
    ("pio_rand", "ld rand\nst M[0]\nret #0x10000"),
]


@pytest.mark.parametrize("name,source", PIO_RULES, ids=[r[0] for r in PIO_RULES])
def test_pio_rule(name, source):
    prog = assemble(source)
    event = PioEvent(0x3f8, 4, 1, 0xcafef00d, 0, 1, 123456789012, 987654321098)
    mems = [[i * 0x01010101 for i in range(16)] for _ in range(3)]
    random.seed(7)
    want = outcome(prog, event, profile="pio", mem=mems[0])
    random.seed(7)
    got = jit(prog, profile="pio").outcome(event, mem=mems[1])
    assert got == want and mems[1] == mems[0]
    if "rand" not in name:
        assert jit(prog, profile="pio").run_many([event] * 3, mem=mems[2])[-1] == (want[0] or 0)


def test_pio_mem_words_bound_the_context():
    prog = assemble("ld len\nst M[63]\nret a")
    j = jit(prog, profile="pio", mem_words=64)
    m = [0] * 64
    assert j(PioEvent(1, 1, 0), mem=m) == 40 + 4 * 64 and m[63] == 296
    with pytest.raises(VerifierError):
        jit(prog, profile="pio", mem_words=16)
    with pytest.raises(ValueError, match="64 shared words"):
        j(PioEvent(1, 1, 0), mem=[0] * 16)


def test_seccomp_reads_host_order_words():
    prog = assemble("ld [0]\njeq #39, ok, no\nok: ld [16]\nret a\nno: ret #0")
    data = SeccompData(39, 0xc000003e, 0, (0x1122334455667788, 0, 0, 0, 0, 0))
    got = jit(prog, profile="seccomp")(data)
    assert isinstance(got, SeccompResult) and got == run(prog, data, profile="seccomp") == 0x55667788


# -- random programs x inputs, in a child process ---------------------------------------------

def _inputs(rng, profile):
    if profile == "socket":
        return random_packet(rng)
    if profile == "seccomp":
        return SeccompData(rng.getrandbits(9) - 10, rng.getrandbits(32), rng.getrandbits(64),
                           tuple(rng.getrandbits(64) for _ in range(6)))
    return PioEvent(rng.getrandbits(16), rng.choice((1, 2, 4)), rng.getrandbits(1),
                    rng.getrandbits(32), rng.getrandbits(3), rng.getrandbits(2),
                    rng.getrandbits(64), rng.getrandbits(64))


def _context(rng):
    return {"protocol": rng.getrandbits(16), "ifindex": rng.choice((None, 3, 0xffffffff)),
            "hatype": rng.choice((None, 1)), "mark": rng.getrandbits(32),
            "net_off": rng.choice((0, 3, 14, 700, -1, -20)),
            "ll_off": rng.choice((None, 0, 2, 9, -34)),
            "head": bytes(rng.getrandbits(8) for _ in range(rng.choice((0, 34)))),
            "vlan_present": rng.getrandbits(1), "cpu": rng.getrandbits(3), "poff": rng.getrandbits(8)}


def _rand(seed):
    """A reproducible ``ld rand`` stream."""
    r = random.Random(seed)
    return lambda: r.getrandbits(32)


def check_seed(profile: str, seed: int, inputs: int = 8) -> tuple[int, list]:
    """JIT vs interpreter for the program of ``seed``: ``(pairs, mismatches)``."""
    rng = random.Random(seed)
    prog = random_program(rng, profile=profile, oracle_safe=False)
    try:
        verify(prog, profile=profile, notifiers=0x10000, lints=False)
    except VerifierError:
        return 0, []
    j = jit(prog, profile=profile, harden=bool(seed & 1))
    bad = []
    for i in range(inputs):
        data = _inputs(rng, profile)
        if profile == "socket":
            ctx = _context(rng) if i & 1 else {}
            want = run(prog, data, **ctx, rand=_rand(i))
            got = j(data, **ctx, rand=_rand(i))
        elif profile == "seccomp":
            want, got = run(prog, data, profile="seccomp"), j(data)
        else:
            mems = [[rng.getrandbits(32) for _ in range(16)]]
            mems.append(list(mems[0]))
            random.seed(i)
            want = outcome(prog, data, profile="pio", mem=mems[0])
            random.seed(i)
            got = j.outcome(data, mem=mems[1])
            want, got = (want, mems[0]), (got, mems[1])
        if want != got:
            bad.append((seed, i, want, got))
    return inputs, bad


def _send(fd, kind: bytes, value) -> None:
    """One record: kind, 4-byte length, pickle."""
    body = pickle.dumps(value)
    data = kind + len(body).to_bytes(4, "little") + body
    while data:
        data = data[os.write(fd, data):]


def _records(fd):
    """Yield ``(kind, value)`` records from the pipe until it closes (a torn tail is dropped)."""
    buf = b""
    while chunk := os.read(fd, 1 << 16):
        buf += chunk
        while len(buf) >= 5 and len(buf) >= 5 + int.from_bytes(buf[1:5], "little"):
            n = int.from_bytes(buf[1:5], "little")
            yield buf[:1], pickle.loads(buf[5:5 + n])
            buf = buf[5 + n:]


def in_child(job, describe):
    """Run ``job(report)`` in a forked child; ``report(x)`` notes progress (the current seed).

    Returns the job's result; a child killed by a signal fails the test with
    ``describe(last reported value)``.
    """
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:        # pragma: no cover - the child
        faulthandler.disable()      # the parent reports a crash; no C-level dump
        os.close(rfd)
        try:
            result = job(lambda value: _send(wfd, b"P", value))
            _send(wfd, b"R", result)
        except BaseException:
            _send(wfd, b"E", traceback.format_exc())
        os._exit(0)
    os.close(wfd)
    last = final = None
    for kind, value in _records(rfd):
        if kind == b"P":
            last = value
        else:
            final = (kind, value)
    os.close(rfd)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        pytest.fail(f"native code killed the child with {signal.Signals(os.WTERMSIG(status)).name}"
                    f" -- {describe(last)}")
    if final is None:
        pytest.fail(f"the child exited ({status}) without a result -- {describe(last)}")
    if final[0] == b"E":
        pytest.fail(f"the child raised:\n{final[1]}")
    return final[1]


def _describe(profile):
    def describe(seed):
        if seed is None:
            return "before the first program"
        prog = random_program(random.Random(seed), profile=profile, oracle_safe=False)
        return f"{profile} seed {seed}, program:\n{disassemble(prog)}"
    return describe


def sweep(profile: str, pairs: int, first_seed: int):
    def job(report):
        done, bad, seed = 0, [], first_seed
        while done < pairs:
            report(seed)
            n, b = check_seed(profile, seed)
            done, bad, seed = done + n, bad + b, seed + 1
        return done, bad[:5]
    return in_child(job, _describe(profile))


@pytest.mark.parametrize("profile", ["socket", "seccomp", "pio"])
def test_random_programs_match_the_interpreter(profile):
    done, bad = sweep(profile, int(os.environ.get("BPFIO_JIT_SAMPLE", "1500")), 0)
    assert bad == [] and done >= 1500


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["socket", "seccomp", "pio"])
def test_sweep_jit_vs_interpreter(profile):
    n = int(os.environ.get("BPFIO_JIT_SWEEP_N", "1000000"))
    done, bad = sweep(profile, n, int(os.environ.get("BPFIO_SWEEP_SEED", "1")) * 10_000_000)
    assert bad == [] and done >= n


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), profile=st.sampled_from(["socket", "seccomp", "pio"]))
def test_hypothesis_seeds_match_the_interpreter(seed, profile):
    assert in_child(lambda report: (report(seed), check_seed(profile, seed, 4))[1],
                    _describe(profile))[1] == []


def test_a_crash_in_the_child_names_the_seed():
    def job(report):
        report(12345)
        os.kill(os.getpid(), signal.SIGSEGV)
    with pytest.raises(pytest.fail.Exception, match="SIGSEGV.*socket seed 12345"):
        in_child(job, _describe("socket"))


# -- the API ---------------------------------------------------------------------------------

def test_jit_verifies_first():
    with pytest.raises(VerifierError):
        bpfio.jit(Program([Insn(0x0e, 0, 0, 0)]))     # ret x: the kernel refuses it
    with pytest.raises(VerifierError):
        bpfio.jit(assemble("ldb [0]\nret a"), profile="seccomp")


def test_jit_unavailable_when_disabled(monkeypatch):
    monkeypatch.setenv("BPFIO_JIT", "0")
    with pytest.raises(bpfio.JitUnavailable, match="BPFIO_JIT=0"):
        bpfio.jit(assemble("ret #1"))
    assert issubclass(bpfio.JitUnavailable, bpfio.BpfError)


@pytest.mark.parametrize("profile", ["socket", "seccomp", "pio"])
def test_run_many_equals_one_by_one(profile):
    rng = random.Random(5)
    progs = {"socket": "ldh [12]\njeq #0x800, ip, no\nip: ldb [23]\nret a\nno: ret #1",
             "seccomp": "ld [0]\njgt #100, big, small\nbig: ret #0x7fff0000\nsmall: ret #0x50001",
             "pio": "ld [12]\ntax\nld M[0]\nadd x\nst M[0]\nret a"}
    j = jit(assemble(progs[profile]), profile=profile)
    inputs = [_inputs(rng, profile) for _ in range(50)]
    if profile == "pio":
        m1, m2 = [0] * 16, [0] * 16
        assert j.run_many(inputs, mem=m1) == [j(e, mem=m2) for e in inputs] and m1 == m2
    else:
        assert j.run_many(inputs) == [j(d) for d in inputs] == j.run_many(Batch(inputs, profile))
    assert j.run_many([]) == []


def test_run_many_with_a_context():
    j = jit(assemble("ld mark\nret a"))
    assert j.run_many([b"x", b"yy"], mark=9) == [9, 9] and j(b"x") == 0


def test_harden_blinds_immediates():
    prog = assemble("ld #0x12345678\nadd #0x0badf00d\njeq #0x1dea5eed, l1, l2\nl1: ret #0x7ffe1234\n"
                    "l2: ret #0x7ffe4321")
    plain, hard = jit(prog), jit(prog, harden=True)
    for k in (0x12345678, 0x0badf00d, 0x1dea5eed, 0x7ffe1234):
        raw = k.to_bytes(4, "little")
        assert raw in plain.code and raw not in hard.code
    assert hard(b"") == plain(b"") == run(prog, b"")


def test_code_and_disasm():
    prog = assemble("ldh [12]\njne #0x806, drop\nret #-1\ndrop: ret #0")
    j = jit(prog)
    assert j.code == j._mem.read()[:len(j.code)]
    text = j.disasm()
    assert ";    0: ldh [0xc]" in text and "movzx eax, word ptr [rdi + 0xc]" in text
    assert text.rstrip().endswith(f"; {len(j.code)} bytes of native code for 4 instructions")


def test_a_4096_instruction_program():
    prog = random_program(random.Random(3), length=4096)
    verify(prog, lints=False)
    j = jit(prog)
    pkts = [random_packet(random.Random(i)) for i in range(20)]
    assert j.run_many(pkts) == [run(prog, p) for p in pkts]


def test_rand_is_one_stream_across_a_batch():
    prog = assemble("ld rand\njset #1, odd, even\nodd: ld rand\nret a\neven: ret a")
    pkts = [b"a", b"bb", b"ccc"] * 20
    stream = _rand(11)
    want = [run(prog, p, rand=stream) for p in pkts]
    assert jit(prog).run_many(pkts, rand=_rand(11)) == want
    assert jit(prog).rand_reads == 2


def test_pio_rand_reads_the_interpreters_source():
    prog = assemble("ld rand\nst M[0]\nld rand\nret #0x10000")
    events = [PioEvent(1, 1, 0)] * 5
    m1, m2 = [0] * 16, [0] * 16
    random.seed(3)
    want = [outcome(prog, e, profile="pio", mem=m1) for e in events]
    random.seed(3)
    j = jit(prog, profile="pio")
    assert [j.outcome(e, mem=m2) for e in events] == want and m1 == m2
    random.seed(3)
    assert j.run_many(events, mem=m2) == [w[0] for w in want] and m2 == m1
