"""Unit tests of bpfio.check.verifier: every rule, the kernel's order, messages, lints."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpfio.errors import VerifierError
from bpfio.insn import Insn, Program
from bpfio.isa import ANCILLARY, SKF_AD_OFF
from bpfio.check.verifier import Lint, conversion_warnings, converted_layout, kernel_errno, verify

I = Insn  # noqa: E741
RET0, RETA = I(0x06, 0, 0, 0), I(0x16, 0, 0, 0)
DONE = I(0x06, 0, 0, 0x10000)


def reject(prog, **kw) -> VerifierError:
    with pytest.raises(VerifierError) as info:
        verify(prog, **kw)
    err = info.value
    assert err.errno == errno.EINVAL
    if err.pc is not None:
        assert err.insn == Program(prog)[err.pc]
        assert err.disasm
    assert str(err).endswith(f"[{err.rule}, EINVAL]")
    return err


def rules(prog, **kw) -> list[str]:
    return [w.rule for w in verify(prog, **kw)]


# -- socket rules, one by one -------------------------------------------------

SOCKET_CASES = [
    # (program, pc, rule, fragment of the reason)
    ([], None, "empty", "no instructions"),
    ([RET0] * 4097, None, "too-long", "4097"),
    ([I(0x07, 0, 0, 0), I(0x0e, 0, 0, 0)], 1, "opcode-not-allowed", "ret x"),
    ([I(0xffff, 0, 0, 0), RET0], 0, "opcode-not-allowed", "0xffff"),
    ([I(0x18, 0, 0, 0), RET0], 0, "opcode-not-allowed", "49"),
    ([I(0x34, 0, 0, 0), RETA], 0, "div-by-zero", "division"),
    ([I(0x94, 0, 0, 0), RETA], 0, "div-by-zero", "modulo"),
    ([I(0x64, 0, 0, 32), RETA], 0, "shift-too-large", "32"),
    ([I(0x74, 0, 0, 0xffffffff), RETA], 0, "shift-too-large", "4294967295"),
    ([I(0x02, 0, 0, 16), RET0], 0, "mem-index", "M[16]"),
    ([I(0x61, 0, 0, 0xffffffff), RET0], 0, "mem-index", "M[0] to M[15]"),
    ([I(0x05, 0, 0, 1), RET0], 0, "ja-out-of-range", "past the last"),
    ([RET0, I(0x05, 0, 0, 0xfffffffe)], 1, "ja-out-of-range", "backwards"),
    ([I(0x15, 1, 0, 0), RET0], 0, "jump-out-of-range", "jt 1"),
    ([I(0x45, 0, 7, 0), RET0], 0, "jump-out-of-range", "jf 7"),
    ([I(0x20, 0, 0, SKF_AD_OFF + 64), RETA], 0, "unknown-ancillary", "SKF_AD_OFF + 64"),
    ([I(0x30, 0, 0, SKF_AD_OFF + 1), RETA], 0, "unknown-ancillary", "no SKF_AD_"),
    ([I(0x00, 0, 0, 1)], 0, "last-not-ret", "last instruction"),
    ([RET0, I(0x07, 0, 0, 0)], 1, "last-not-ret", "ret a"),
    ([I(0x60, 0, 0, 3), RETA], 0, "uninit-mem", "M[3]"),
]


@pytest.mark.parametrize("prog,pc,rule,fragment", SOCKET_CASES,
                         ids=[f"{c[2]}-{i}" for i, c in enumerate(SOCKET_CASES)])
def test_socket_rule(prog, pc, rule, fragment):
    err = reject(prog)
    assert (err.pc, err.rule, err.profile) == (pc, rule, "socket")
    assert fragment in err.reason
    # The seccomp profile runs the same classic checks first.
    assert reject(prog, profile="seccomp").rule == rule


def test_accepted_edge_cases_are_really_accepted():
    # The kernel accepts all of these (verified in the differential tests too).
    ok = [
        [RET0],
        [I(0x34, 0, 0, 1), I(0x64, 0, 0, 31), I(0x02, 0, 0, 15), I(0x60, 0, 0, 15), RETA],
        [I(0x07, 9, 9, 0xdead), RET0],                      # jt/jf ignored off jumps
        [I(0x05, 3, 3, 0), RET0],                            # ja ignores jt/jf
        [I(0x40, 0, 0, SKF_AD_OFF + 1), I(0xb1, 0, 0, 0xffffffff), RETA],  # IND/MSH: any k
        [I(0x20, 0, 0, 0x80000000), RETA],                   # below SKF_AD_OFF
        [RET0] * 4096,
    ] + [[I(code, 0, 0, a.k), RETA] for a in ANCILLARY for code in (0x20, 0x28, 0x30)]
    for prog in ok:
        verify(prog)
        assert kernel_errno(prog) == 0


def test_first_failure_in_pc_order_wins():
    prog = [I(0x00, 0, 0, 1), I(0x34, 0, 0, 0), I(0xffff, 0, 0, 0), I(0x02, 0, 0, 99), RET0]
    assert (reject(prog).pc, reject(prog).rule) == (1, "div-by-zero")


def test_last_ret_is_checked_after_the_loop_and_memory_after_that():
    # A bad index anywhere beats the missing ret; the missing ret beats uninit-mem.
    assert reject([I(0x00, 0, 0, 0), I(0x02, 0, 0, 16), I(0x00, 0, 0, 0)]).rule == "mem-index"
    assert reject([I(0x60, 0, 0, 0), I(0x00, 0, 0, 0)]).rule == "last-not-ret"


def test_seccomp_checks_run_after_all_classic_checks():
    # mod at pc 0 is not seccomp-legal, but the uninitialised read at pc 1 is found first.
    prog = [I(0x94, 0, 0, 3), I(0x60, 0, 0, 0), RETA]
    assert reject(prog, profile="seccomp").rule == "uninit-mem"
    assert reject(prog[:1] + [RETA], profile="seccomp").rule == "seccomp-opcode"


@pytest.mark.parametrize("k,rule", [(64, "seccomp-load-bounds"), (1, "seccomp-load-align"),
                                    (62, "seccomp-load-align"),
                                    (SKF_AD_OFF, "seccomp-load-bounds"), (60, None), (0, None)])
def test_seccomp_word_loads(k, rule):
    prog = [I(0x20, 0, 0, k), RETA]
    if rule is None:
        verify(prog, profile="seccomp")
    else:
        assert reject(prog, profile="seccomp").rule == rule


@pytest.mark.parametrize("code", [0x28, 0x30, 0x40, 0x48, 0x50, 0xb1, 0x94, 0x9c])
def test_seccomp_forbidden_opcodes(code):
    prog = [I(code, 0, 0, 4), RETA]
    verify(prog)                                   # fine for sockets
    err = reject(prog, profile="seccomp")
    assert (err.rule, err.pc) == ("seccomp-opcode", 0)


def test_seccomp_len_is_allowed():
    verify([I(0x80, 0, 0, 0), I(0x81, 0, 0, 0), RETA], profile="seccomp")


# -- uninit-mem explanations --------------------------------------------------

def test_uninit_path_names_the_branch_without_a_store():
    prog = [I(0x28, 0, 0, 12), I(0x15, 0, 1, 1), I(0x02, 0, 0, 2),   # jt -> store
            I(0x60, 0, 0, 2), RETA]                                  # jf skips it
    err = reject(prog)
    assert err.pc == 3
    assert "pc 0 -> 1 -> 3" in err.reason and "M[2]" in err.reason


def test_uninit_through_the_kernels_fall_through_after_ret():
    # st M[2]; ja out; ... no: ret; out: ld M[2] -- the ret's state flows on.
    prog = [I(0x28, 0, 0, 12), I(0x15, 0, 2, 1), I(0x02, 0, 0, 2), I(0x05, 0, 0, 1),
            RET0, I(0x60, 0, 0, 2), RETA]
    err = reject(prog)
    assert err.pc == 5 and "'ret' at pc 4 fall through" in err.reason
    assert kernel_errno(prog) == errno.EINVAL


def test_stores_on_both_branches_are_enough():
    prog = [I(0x28, 0, 0, 12), I(0x15, 0, 2, 1), I(0x02, 0, 0, 2), I(0x05, 0, 0, 1),
            I(0x03, 0, 0, 2), I(0x60, 0, 0, 2), RETA]
    verify(prog)


def test_unreachable_load_after_ret_is_rejected_like_the_kernel():
    assert reject([RET0, I(0x60, 0, 0, 3), RETA]).pc == 1


# -- pio -----------------------------------------------------------------------

def test_pio_memory_bound_and_no_init_check():
    prog = [I(0x60, 0, 0, 99), I(0x02, 0, 0, 99), DONE]
    verify(prog, profile="pio", mem_words=100)
    err = reject(prog, profile="pio", mem_words=99)
    assert (err.rule, err.pc, err.profile) == ("mem-index", 0, "pio")
    assert "99 words" in err.reason
    verify([I(0x60, 0, 0, 1023), DONE], profile="pio", mem_words=1024)


@pytest.mark.parametrize("code,size", [(0x20, 4), (0x28, 2), (0x30, 1), (0xb1, 1)])
def test_pio_load_bounds_are_exact(code, size):
    ctx = 40 + 4 * 4
    verify([I(code, 0, 0, ctx - size), DONE], profile="pio", mem_words=4)
    err = reject([I(code, 0, 0, ctx - size + 1), DONE], profile="pio", mem_words=4)
    assert err.rule == "pio-load-bounds" and f"{ctx}-byte" in err.reason
    assert reject([I(code, 0, 0, 0xfff00000), DONE], profile="pio").rule == "pio-load-bounds"


def test_pio_indexed_loads_are_not_checked_statically():
    verify([I(0x40, 0, 0, 0xffffff00), DONE], profile="pio")


def test_pio_ancillary():
    rand = SKF_AD_OFF + 56
    verify([I(0x20, 0, 0, rand), I(0x80, 0, 0, 0), I(0x81, 0, 0, 0), DONE], profile="pio")
    for a in ANCILLARY:
        if a.k != rand:
            assert reject([I(0x20, 0, 0, a.k), DONE], profile="pio").rule == "pio-ancillary"
    assert reject([I(0x20, 0, 0, SKF_AD_OFF + 2), DONE],
                  profile="pio").rule == "unknown-ancillary"


def test_pio_verdicts():
    verify([I(0x06, 0, 0, 0xffff)], profile="pio")                  # EXIT with data
    verify([I(0x06, 0, 0, 0x20002)], profile="pio", notifiers=3)
    assert reject([I(0x06, 0, 0, 0x30000)], profile="pio").rule == "pio-action"
    assert reject([I(0x06, 0, 0, 0xffff0000)], profile="pio").rule == "pio-action"
    err = reject([I(0x06, 0, 0, 0x20003)], profile="pio", notifiers=3)
    assert err.rule == "pio-notifier" and "0 to 2" in err.reason
    assert "has none" in reject([I(0x06, 0, 0, 0x20000)], profile="pio").reason
    verify([I(0x06, 0, 0, 0x30000)])                                 # socket: any k


def test_pio_keeps_the_classic_rules():
    assert reject([I(0x34, 0, 0, 0), DONE], profile="pio").rule == "div-by-zero"
    assert reject([I(0x0e, 0, 0, 0)], profile="pio").rule == "opcode-not-allowed"


@pytest.mark.parametrize("kw", [{"profile": "bpf"}, {"profile": "pio", "mem_words": 0},
                                {"profile": "pio", "mem_words": 1025},
                                {"profile": "pio", "notifiers": -1}])
def test_bad_options_raise_value_error(kw):
    with pytest.raises(ValueError):
        verify([RET0], **kw)


# -- lints --------------------------------------------------------------------

def test_clean_program_has_no_lints():
    prog = [I(0x28, 0, 0, 12), I(0x15, 0, 1, 0x806), I(0x06, 0, 0, 0xffffffff), RET0]
    assert verify(prog) == []


def test_unreachable_runs():
    prog = [I(0x05, 0, 0, 2), RET0, RET0, I(0x15, 1, 0, 0), RET0, RET0, RETA]
    warnings = [w for w in verify(prog) if w.rule == "unreachable"]
    assert [(w.pc, w.message) for w in warnings] == [
        (1, "no path reaches pc 1 to 2 (2 instructions)"), (6, "no path reaches pc 6 (1 instruction)")]


def test_same_targets_and_constant_condition():
    assert "same-targets" in rules([I(0x28, 0, 0, 12), I(0x15, 2, 2, 1), RET0, RET0, RETA])
    assert "constant-condition" not in rules([I(0x28, 0, 0, 12), I(0x15, 0, 1, 1), RET0, RETA])
    found = verify([I(0x00, 0, 0, 5), I(0x25, 0, 1, 3), I(0x06, 0, 0, 1), RET0])
    assert [w.rule for w in found] == ["constant-condition"]   # unreachable is structural
    assert "always true" in found[0].message


def test_constant_propagation_through_x_memory_and_len():
    # X = 7 via tax; M[1] = 7; ld M[1]; jeq x -> always true.
    prog = [I(0x00, 0, 0, 7), I(0x07, 0, 0, 0), I(0x02, 0, 0, 1), I(0x60, 0, 0, 1),
            I(0x1d, 0, 1, 0), RETA, RET0]
    assert "constant-condition" in rules(prog)
    # The value stops being constant after a join of different values.
    join = [I(0x28, 0, 0, 0), I(0x15, 0, 2, 1), I(0x00, 0, 0, 1), I(0x05, 0, 0, 1),
            I(0x00, 0, 0, 2), I(0x15, 0, 1, 1), RETA, RET0]
    assert "constant-condition" not in rules(join)
    # seccomp's len is 64; pio's is 40 + 4N.
    lenprog = [I(0x80, 0, 0, 0), I(0x15, 0, 1, 64), RETA, RET0]
    assert "constant-condition" in rules(lenprog, profile="seccomp")
    assert "constant-condition" not in rules(lenprog)
    def decided(mem_words):
        return [w.message for w in verify(lenprog, profile="pio", mem_words=mem_words)
                if w.rule == "constant-condition"][0]
    assert "always false" in decided(4) and "always true" in decided(6)


def test_dead_store():
    assert "dead-store" in rules([I(0x02, 0, 0, 0), RET0])
    assert "dead-store" not in rules([I(0x02, 0, 0, 0), I(0x60, 0, 0, 0), RETA])
    overwritten = [I(0x02, 0, 0, 0), I(0x02, 0, 0, 0), I(0x60, 0, 0, 0), RETA]
    assert [w.pc for w in verify(overwritten) if w.rule == "dead-store"] == [0]
    assert "dead-store" not in rules([I(0x02, 0, 0, 0), DONE], profile="pio")


def test_pio_never_done_and_bad_verdicts():
    assert rules([RET0], profile="pio") == ["pio-never-done"]
    assert rules([I(0x06, 0, 0, 0x20000), RET0][:1], profile="pio", notifiers=1) == []
    assert rules([I(0x28, 0, 0, 0), RETA], profile="pio") == []   # A unknown: maybe DONE
    bad = [I(0x00, 0, 0, 0x50000), RETA]
    assert rules(bad, profile="pio") == ["pio-never-done", "pio-bad-verdict"]


def test_lint_str_and_fields():
    w = verify([I(0x02, 0, 0, 0), RET0])[0]
    assert isinstance(w, Lint) and w.pc == 0 and w.insn == I(0x02, 0, 0, 0)
    assert str(w) == "pc 0 (st M[0]): the value stored in M[0] is never read [dead-store]"
    assert str(Lint(None, "x", "msg")) == "program: msg [x]"


def test_lints_can_be_skipped():
    assert verify([I(0x02, 0, 0, 0), RET0], lints=False) == []


# -- conversion model -----------------------------------------------------------

def test_converted_layout_counts():
    # prologue 3; ld #k 1; ret #k 2; ret a 1.
    assert converted_layout([I(0, 0, 0, 1), RET0]) == ([3, 4], 6)
    # A packet load adds the 4-instruction skb prologue; ld [0]: 4 + 8 fast/slow path.
    assert converted_layout([I(0x30, 0, 0, 0), RETA])[1] == 7 + 4 + 8 + 1
    # jeq with both branches: jeq + ja; with jf = 0: one instruction.
    assert converted_layout([I(0x15, 1, 2, 0), RET0, RET0, RET0])[0] == [3, 5, 7, 9]
    assert converted_layout([I(0x15, 1, 0, 0), RET0, RET0])[0] == [3, 4, 6]
    assert conversion_warnings([RET0]) == []


# -- properties -----------------------------------------------------------------

insns = st.builds(Insn, st.integers(0, 0xffff), st.integers(0, 255), st.integers(0, 255),
                  st.integers(0, 0xffffffff))
near_valid = st.builds(Insn, st.sampled_from([0x00, 0x02, 0x04, 0x06, 0x07, 0x15, 0x16,
                                              0x20, 0x34, 0x45, 0x60, 0x74, 0x94, 0xb1]),
                       st.integers(0, 3), st.integers(0, 3),
                       st.sampled_from([0, 1, 4, 15, 16, 31, 32, 60, 64, SKF_AD_OFF,
                                        0x10000, 0x20001, 0xffffffff]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(insns, near_valid), min_size=0, max_size=12),
       st.sampled_from(["socket", "seccomp", "pio"]))
def test_verify_only_raises_verifier_error(prog, profile):
    try:
        warnings = verify(prog, profile=profile, notifiers=2)
    except VerifierError as err:
        assert err.rule and err.errno == errno.EINVAL
        assert err.pc is None or 0 <= err.pc < len(prog)
    else:
        assert all(isinstance(w, Lint) for w in warnings)


@settings(max_examples=300, deadline=None)
@given(st.lists(near_valid, min_size=1, max_size=12), st.binary(max_size=80))
def test_accepted_programs_run_in_the_interpreter(prog, packet):
    try:
        verify(prog)
    except VerifierError:
        return
    from bpfio.exec.interp import run
    assert 0 <= run(prog, packet) <= 0xffffffff


pio_insns = st.builds(
    Insn, st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x04, 0x07, 0x15, 0x16, 0x20, 0x28, 0x30,
                           0x25, 0x45, 0x60, 0x61, 0x80, 0x81, 0x87, 0xb1, 0x06]),
    st.integers(0, 3), st.integers(0, 3),
    st.one_of(st.integers(0, 80), st.sampled_from([0x10000, 0x20000, 0x20001, 0xfffff038])))


@settings(max_examples=300, deadline=None)
@given(st.lists(pio_insns, min_size=1, max_size=12), st.integers(1, 8),
       st.integers(0, 0xffffffff))
def test_pio_accepted_programs_never_fault_on_static_loads(prog, words, data):
    # Without [x + k] loads or division by X, a pio-accepted program cannot abort.
    prog = prog + [DONE]
    try:
        verify(prog, profile="pio", mem_words=words, notifiers=2)
    except VerifierError:
        return
    from bpfio.exec.interp import outcome
    from bpfio.abi.pio import PioEvent
    event = PioEvent(port=0x60, size=4, direction=1, data=data)
    verdict, _a, _n = outcome(prog, event, profile="pio", mem=[7] * words)
    assert verdict is not None


const_insns = st.builds(
    Insn, st.sampled_from([0x00, 0x01, 0x07, 0x87, 0x04, 0x0c, 0x14, 0x24, 0x54, 0x64, 0x84,
                           0x02, 0x03, 0x60, 0x61, 0x15, 0x1d, 0x25, 0x35, 0x45, 0x4d,
                           0x30, 0x80, 0x05, 0x06, 0x16, 0x3c]),
    st.integers(0, 3), st.integers(0, 3), st.integers(0, 6))


@settings(max_examples=400, deadline=None)
@given(st.lists(const_insns, min_size=1, max_size=14), st.binary(min_size=0, max_size=8),
       st.sampled_from(["socket", "seccomp", "pio"]))
def test_lints_agree_with_executions(prog, packet, profile):
    """What a lint claims about control flow holds on every run of the interpreter."""
    n = len(prog) + 1
    prog = Program([Insn(c, jt % (n - pc - 1), jf % (n - pc - 1),
                         k % (n - pc - 1) if c == 0x05 else k)
                    for pc, (c, jt, jf, k) in enumerate(prog)] + [RETA])   # jumps in range
    try:
        warnings = verify(prog, profile=profile, notifiers=1)
    except VerifierError:
        return
    from bpfio.exec.trace import trace
    context = {}
    word = int.from_bytes(packet[:4].ljust(4, b"\0"), "little")
    if profile == "seccomp":
        from bpfio.abi.seccomp import SeccompData
        data = SeccompData(nr=word & 0x3ff)
    elif profile == "pio":
        from bpfio.abi.pio import PioEvent
        data, context = PioEvent(port=0x70, size=1, direction=1, data=word), {"mem": [word] * 16}
    else:
        data = packet
    verdict, steps = trace(prog, data, profile=profile, **context)
    if "pio-never-done" in {w.rule for w in warnings}:
        assert verdict >> 16 != 1 and verdict != 0x20000       # neither DONE nor NOTIFY_0
    visited = {s.pc for s in steps}
    for w in warnings:
        if w.rule == "unreachable":
            first, _, last = w.message.split("pc ", 1)[1].split(" (")[0].partition(" to ")
            assert not visited & set(range(int(first), int(last or first) + 1)), w
        elif w.rule == "constant-condition":
            code, jt, jf, _k = prog[w.pc]
            taken = w.pc + 1 + (jt if "always true" in w.message else jf)
            for s in steps:
                if s.pc == w.pc:
                    assert s.next_pc == taken, (w, s)
