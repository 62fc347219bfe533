"""The kernel's own classic-BPF test suite (lib/test_bpf.c), run against bpfio (issue 12 items 3-4).

Data: ``tests/peers/linux_test_bpf.json``, every ``CLASSIC`` case of
``tests[]``, written by ``tests/peers/extract_linux.py``.  How test_bpf runs
a classic case, and how that maps onto bpfio:

* ``bpf_prog_create()`` loads the program: the classic checks
  (:func:`bpfio.check.verifier.verify`, socket profile) and the conversion to eBPF,
  whose jump-range limit bpfio models as the ``convert-jump-range`` lint.
  ``bpf_prog_create`` charges nothing to a socket, so the
  ``convert-too-large`` lint (``SO_ATTACH_FILTER``'s ``optmem_max`` ENOMEM)
  does not apply to it.
* Each ``[len, result]`` pair runs the program on the skb ``populate_skb()``
  builds: the first ``len`` bytes of the case's data (zero-padded), the mac
  header at offset 0 (``ll_off=0``), the network header at ``min(len, 14)``
  (``net_off``) and fixed field values (the JSON header's ``skb``), given to
  bpfio as a :class:`bpfio.exec.interp.SocketContext`.  ``FLAG_SKB_FRAG`` appends
  a 128-byte page fragment; bpfio's input is plain bytes, so the packet is
  head + fragment.  ``FLAG_NO_DATA`` runs without an skb; bpfio gets an
  empty packet.  Both engines run: the interpreter and ``bpfio.compile``.

Programs test_bpf makes with a ``.fill_helper`` are rebuilt here (:data:`FILL`)
from what each helper is described to do.  A difference from test_bpf's
expectation is checked on the live kernel (``SocketOracle``, an AF_UNIX socket)
when the case reads nothing but packet bytes at non-negative offsets -- the
only state an AF_UNIX socket shares with test_bpf's skb; a case where the
kernel sides with bpfio would be listed, with its reason, in
:data:`EXPLAINED` (none is).  Every other difference fails.
"""

from __future__ import annotations

import errno
import struct

import pytest

from bpfio import isa
from bpfio.exec.compiler import compile as compile_program
from bpfio.errors import VerifierError
from bpfio.insn import Insn, Program
from bpfio.exec.interp import SocketContext, outcome
from bpfio.exec.trace import trace
from bpfio.exec.kernel import available, socket_attach_errno
from bpfio.exec.kernel_run import SocketOracle, chunk_variant
from bpfio.check.verifier import conversion_warnings, kernel_errno, verify
from peers_common import Tally, doc_row, load, native, render_row

DATA = load("linux_test_bpf.json")
HEADER = DATA["header"]
CASES = DATA["cases"]
SUITE = "Linux lib/test_bpf.c"
SOURCE = f"linux `lib/test_bpf.c` v{HEADER['kernel_version']}"
KERNEL = available("socket")   # None when the kernel oracle works, else the reason
SKB = HEADER["skb"]

# --- programs made by fill helpers, rebuilt from the helpers' described behaviour ---
MAXINSNS = isa.BPF_MAXINSNS
RET_K = isa.BPF_RET | isa.BPF_K
RET_A = isa.BPF_RET | isa.BPF_A
JA = isa.BPF_JMP | isa.BPF_JA
MSH = isa.BPF_LDX | isa.BPF_B | isa.BPF_MSH
LD_W_ABS = isa.BPF_LD | isa.BPF_W | isa.BPF_ABS
AD_CPU = isa.SKF_AD_OFF + isa.SKF_AD["CPU"]


def _ret(k):
    return Insn(RET_K, 0, 0, k & 0xffffffff)


def fill_ja(length: int, period: int) -> list[Insn]:
    """Blocks of ``period`` jumps, each landing on the next block's start; then ``ret #0xababcbac``.

    The last partial block (``length % period - 1`` jumps) lands on the ``ret``.
    """
    rest = length % period - 1
    out, i = [], 0
    while i + period < length:
        out += [Insn(JA, 0, 0, period - 1 - j) for j in range(period)]
        i += period
    out += [Insn(JA, 0, 0, rest - 1 - j) for j in range(rest)]
    return out + [_ret(0xababcbac)]


def prandom_u32s(seed: int):
    """The kernel's seeded prandom_u32_state() stream: L'Ecuyer's four-component Tausworthe LFSR113."""
    m32 = 0xffffffff
    i = ((seed >> 32) ^ (seed << 10) ^ seed) & m32
    s = [i + m if i < m else i for m in (2, 8, 16, 128)]      # each component's minimum seed
    params = ((6, 13, 0xfffffffe, 18), (2, 27, 0xfffffff8, 2),
              (13, 21, 0xfffffff0, 7), (3, 12, 0xffffff80, 13))
    while True:
        for j, (a, b, c, d) in enumerate(params):
            x = s[j]
            s[j] = (((x & c) << d) & m32) ^ ((((x << a) & m32) ^ x) >> b)
        yield s[0] ^ s[1] ^ s[2] ^ s[3]


def _add_random():
    rnd = prandom_u32s(3141592653589793238)
    return [Insn(isa.BPF_ALU | isa.BPF_ADD | isa.BPF_K, 0, 0, next(rnd)) for _ in range(MAXINSNS - 1)] \
        + [Insn(RET_A, 0, 0, 0)]


def _jump_heavy():
    # ld #0xffffffff, then jgt #0xffffffff whose jt (never taken) counts down from
    # len - 3; the helper stores it in the u8 jt field, so it wraps modulo 256.
    jgt = isa.BPF_JMP | isa.BPF_JGT | isa.BPF_K
    return [Insn(isa.BPF_LD | isa.BPF_IMM, 0, 0, 0xffffffff)] \
        + [Insn(jgt, (MAXINSNS - 3 - (i - 1)) & 0xff, 0, 0xffffffff) for i in range(1, MAXINSNS - 1)] \
        + [Insn(RET_A, 0, 0, 0)]


FILL = {
    "bpf_fill_ja": lambda: fill_ja(12, 9),
    "bpf_fill_maxinsns1": lambda: [_ret(0xffffffff - i) for i in range(MAXINSNS)],
    "bpf_fill_maxinsns2": lambda: [_ret(0xfefefefe)] * MAXINSNS,
    "bpf_fill_maxinsns3": _add_random,
    "bpf_fill_maxinsns4": lambda: [_ret(0xfefefefe)] * (MAXINSNS + 1),
    "bpf_fill_maxinsns5": lambda: [Insn(JA, 0, 0, MAXINSNS - 2)] + [_ret(0xfefefefe)] * (MAXINSNS - 2)
    + [_ret(0xabababab)],
    "bpf_fill_maxinsns6": lambda: [Insn(LD_W_ABS, 0, 0, isa.SKF_AD_OFF + isa.SKF_AD["VLAN_TAG_PRESENT"])]
    * (MAXINSNS - 1) + [Insn(RET_A, 0, 0, 0)],
    "bpf_fill_maxinsns7": lambda: [Insn(LD_W_ABS, 0, 0, AD_CPU)] * (MAXINSNS - 4)
    + [Insn(isa.BPF_MISC | isa.BPF_TAX, 0, 0, 0), Insn(LD_W_ABS, 0, 0, AD_CPU),
       Insn(isa.BPF_ALU | isa.BPF_SUB | isa.BPF_X, 0, 0, 0), Insn(RET_A, 0, 0, 0)],
    "bpf_fill_maxinsns8": _jump_heavy,
    "bpf_fill_maxinsns11": lambda: fill_ja(MAXINSNS, 68),
    "bpf_fill_maxinsns12": lambda: [Insn(JA, 0, 0, MAXINSNS - 2)] + [Insn(MSH, 0, 0, 0)] * (MAXINSNS - 2)
    + [_ret(0xabababab)],
    "bpf_fill_maxinsns13": lambda: [Insn(MSH, 0, 0, 0)] * (MAXINSNS - 3)
    + [Insn(isa.BPF_LD | isa.BPF_IMM, 0, 0, 0xabababab),
       Insn(isa.BPF_ALU | isa.BPF_XOR | isa.BPF_X, 0, 0, 0), Insn(RET_A, 0, 0, 0)],
    "bpf_fill_ld_abs_get_processor_id": lambda: [
        Insn(isa.BPF_LD | isa.BPF_B | isa.BPF_ABS, 0, 0, 0), Insn(LD_W_ABS, 0, 0, AD_CPU)]
    * ((MAXINSNS - 1) // 2) + [Insn(isa.BPF_LD | isa.BPF_B | isa.BPF_ABS, 0, 0, 0), _ret(0xbee)],
}


def program(case: dict) -> Program | None:
    """The case's program (None when its fill helper is not reproduced); fields range-checked."""
    if case["fill_helper"]:
        make = FILL.get(case["fill_helper"])
        return Program([i.checked() for i in make()]) if make else None
    return Program([Insn(*i).checked() for i in case["insns"]])


# --- the skb, as bpfio inputs ---------------------------------------------------------

def skb_context(size: int) -> SocketContext:
    """What populate_skb() sets, for a packet of ``size`` head bytes."""
    return SocketContext(protocol=SKB["protocol"], pkt_type=SKB["pkt_type"], mark=SKB["mark"],
                         rxhash=SKB["rxhash"], queue=SKB["queue"], vlan_tci=SKB["vlan_tci"],
                         vlan_present=SKB["vlan_present"], vlan_tpid=SKB["vlan_tpid"],
                         ifindex=SKB["ifindex"], hatype=SKB["hatype"], ll_off=SKB["ll_off"],
                         net_off=min(size, 14))


def packet(case: dict, size: int) -> bytes:
    """The bytes a subtest's program sees: head (data[:size], zero-padded) + fragment."""
    if "FLAG_NO_DATA" in case["flags"]:
        return b""
    data = bytes.fromhex(case["data"])
    head = (data + bytes(size))[:size]
    if "FLAG_SKB_FRAG" in case["flags"]:
        frag = bytes.fromhex(case["frag_data"] or "")
        head += frag + bytes(SKB["frag_len"] - len(frag))
    return head


def creation_errno(prog) -> int:
    """What ``bpf_prog_create()`` returns for ``prog`` in bpfio's model (0 = loaded)."""
    try:
        verify(prog, profile="socket", lints=False)
    except VerifierError as err:
        return err.errno
    rules = {w.rule for w in conversion_warnings(prog, profile="socket")}
    return errno.EINVAL if "convert-jump-range" in rules else 0


# --- which runs an AF_UNIX socket can reproduce ----------------------------------------

DATA_ONLY_ANCILLARY = {isa.SKF_AD_OFF + isa.SKF_AD[n] for n in ("ALU_XOR_X", "NLATTR", "NLATTR_NEST")}
DEVICE_ANCILLARY = {isa.SKF_AD_OFF + isa.SKF_AD[n] for n in ("IFINDEX", "HATYPE", "RANDOM")}


def skb_state_read(prog, pkt: bytes, ctx: SocketContext) -> str | None:
    """What skb state besides packet bytes the run reads (None: bytes at offsets >= 0 and len only)."""
    _, steps = trace(prog, pkt, context=ctx)
    for step in steps:
        code, _, _, k = step.insn
        info = isa.OPCODES[code]
        if info.cls not in (isa.BPF_LD, isa.BPF_LDX) or info.mode not in (isa.BPF_ABS, isa.BPF_IND, isa.BPF_MSH):
            continue
        if info.mode == isa.BPF_ABS and k in isa.ANCILLARY_BY_K:
            if k not in DATA_ONLY_ANCILLARY:
                return f"ancillary {isa.ANCILLARY_BY_K[k].kernel_name}"
            continue
        off = (step.x + k) & 0xffffffff if info.mode == isa.BPF_IND else k
        if off & 0x80000000:
            return "a header-relative (negative) offset"
    return None


ABS_LOADS = {isa.BPF_LD | size | isa.BPF_ABS for size in (isa.BPF_W, isa.BPF_H, isa.BPF_B)}


def loads_ancillary(prog, ks) -> bool:
    """Whether ``prog`` has an ancillary load of one of the ``ks`` (any size bits)."""
    return any(i.code in ABS_LOADS and i.k in ks for i in prog)


def kernel_runnable(prog) -> str | None:
    """Why the AF_UNIX oracle cannot run ``prog`` (None when it can)."""
    if loads_ancillary(prog, DEVICE_ANCILLARY):
        return "reads ifindex/hatype/rand, which an AF_UNIX oracle cannot observe"
    if len(chunk_variant(prog, 0, 8)) > MAXINSNS:
        return "too long once the oracle's return-value tail is added"
    if creation_errno(prog) or any(w.rule == "convert-too-large" for w in conversion_warnings(prog)):
        return "SO_ATTACH_FILTER refuses it (the optmem_max charge bpf_prog_create does not make)"
    return None


# --- classification -------------------------------------------------------------------

# bpfio takes the payload offset as an input (SocketContext.poff); the kernel computes
# it with its flow dissector from skb->protocol and the headers.
SKIP_POFF = "SKF_AD_PAY_OFFSET needs the kernel's flow dissector"
# Differences from test_bpf where the live kernel sides with bpfio: name -> explanation.
EXPLAINED: dict[str, str] = {}
_COMPILED: dict[Program, object] = {}     # keyed by the instructions: a program compiles once


def _engines(prog, pkt: bytes, ctx: SocketContext) -> dict:
    """Every engine's verdict for one run (the JIT where native code can run)."""
    if prog not in _COMPILED:
        _COMPILED[prog] = compile_program(prog)
    compiled = _COMPILED[prog]
    out = {"interpreter": outcome(prog, pkt, context=ctx)[0] or 0,
           "compiled": compiled(pkt, context=ctx)}
    jitted = native(prog)
    if jitted is not None:
        out["jit"] = jitted(pkt, context=ctx)
    return out


def classify(case: dict, oracle=None) -> tuple[str, str]:
    """(outcome, detail) of one test_bpf case."""
    prog = program(case)
    if prog is None:
        return "skip", f"generated by fill helper {case['fill_helper']}, not reproduced"
    got_errno = creation_errno(prog)
    if "FLAG_EXPECTED_FAIL" in case["flags"]:
        want = -case["expected_errcode"]
        if got_errno != want:
            return "disagree", f"test_bpf expects bpf_prog_create to fail with {want}, bpfio says {got_errno}"
        return "agree", ""
    if got_errno:
        return "disagree", f"test_bpf loads the program; bpfio refuses it with errno {got_errno}"
    if loads_ancillary(prog, {isa.SKF_AD_OFF + isa.SKF_AD["PAY_OFFSET"]}):
        return "skip", SKIP_POFF
    for size, want in case["tests"]:
        pkt, ctx = packet(case, size), skb_context(size)
        got = _engines(prog, pkt, ctx)
        if set(got.values()) == {want}:
            continue
        detail = f"len {size}: test_bpf expects {want:#x}, bpfio gives {got}"
        if oracle is not None and skb_state_read(prog, pkt, ctx) is None and not kernel_runnable(prog):
            kernel = oracle.run(prog, [pkt])[0] or 0
            detail += f", the AF_UNIX kernel gives {kernel:#x}"
            if case["name"] in EXPLAINED and set(got.values()) == {kernel}:
                return "explained", EXPLAINED[case["name"]]
        return "disagree", detail
    return "agree", ""


def tally(oracle=None) -> Tally:
    """Classify every case; the suite's tally."""
    t = Tally(SUITE, SOURCE)
    for case in CASES:
        t.add(case["name"], *classify(case, oracle))
    return t


def _id(case):
    return f"{case['index']}-{case['name']}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_case(case):
    outcome_, detail = classify(case)
    assert outcome_ != "disagree", detail
    assert (outcome_ == "explained") == (case["name"] in EXPLAINED)


def test_every_classic_case_is_counted():
    """The tally covers all 134 CLASSIC cases of the version read, each fill helper is rebuilt."""
    t = tally()
    assert t.cases == len(CASES) == 134
    assert sum(1 for c in CASES if c["fill_helper"]) == 13
    assert not [c["fill_helper"] for c in CASES if c["fill_helper"] and c["fill_helper"] not in FILL]
    print(f"\n{SUITE}: {t.cases} cases, {t.agree} agree, skipped {dict(t.skipped)}, "
          f"explained {len(t.explained)}, disagree {len(t.disagree)}")


def test_fill_helpers_have_the_described_shape():
    """The rebuilt programs are as long as the helpers make them and end as they say."""
    lengths = {name: len(make()) for name, make in FILL.items()}
    assert lengths.pop("bpf_fill_ja") == 12
    assert lengths.pop("bpf_fill_maxinsns4") == MAXINSNS + 1
    assert set(lengths.values()) == {MAXINSNS}
    ja = FILL["bpf_fill_ja"]()
    # Every jump of a 9-block lands on the next block (pc 9), the 2-jump tail on the ret.
    assert [pc + 1 + i.k for pc, i in enumerate(ja[:9])] == [9] * 9
    assert [pc + 1 + i.k for pc, i in enumerate(ja[9:11], 9)] == [11, 11]


def test_skb_mapping():
    """populate_skb's layout: head bytes zero-padded, fragment appended, network header capped at 14."""
    frag = next(c for c in CASES if "FLAG_SKB_FRAG" in c["flags"])
    assert len(packet(frag, 0x40)) == 0x40 + 128
    assert skb_context(5).net_off == 5 and skb_context(60).net_off == 14
    tax = next(c for c in CASES if c["name"] == "TAX")
    assert packet(tax, 8) == bytes([10, 20, 30, 40, 50, 0, 0, 0])
    # populate_skb() refuses len >= MAX_DATA (128); no case asks for one.
    assert max(size for c in CASES for size, _ in c["tests"]) <= SKB["max_len"]


needs_kernel = pytest.mark.skipif(KERNEL is not None, reason=f"kernel oracle unavailable: {KERNEL}")


def _kernel_sample():
    """Accepted cases the AF_UNIX oracle can run, each with its subtests' packets."""
    out = []
    for case in CASES:
        prog = program(case)
        if "FLAG_EXPECTED_FAIL" in case["flags"] or prog is None or kernel_runnable(prog):
            continue
        out.append((case, prog))
    return out


@needs_kernel
def test_kernel_agrees_on_the_runnable_cases():
    """The live kernel (AF_UNIX) and bpfio agree on every runnable case; where the run reads
    only packet bytes, the kernel also gives test_bpf's expected value.

    Every runnable case is run: the whole sample takes well under a second.
    """
    sample = _kernel_sample()
    assert len(sample) >= 100
    checked = confirmed = 0
    with SocketOracle() as oracle:
        for case, prog in sample:
            pkts = [packet(case, size) for size, _ in case["tests"]]
            kernel = [v or 0 for v in oracle.run(prog, pkts)]
            for (size, want), pkt, k in zip(case["tests"], pkts, kernel):
                ours = _engines(prog, pkt, SocketContext())      # an AF_UNIX socket's context
                assert set(ours.values()) == {k}, f"{case['name']} len {size}: kernel {k:#x}, bpfio {ours}"
                checked += 1
                if skb_state_read(prog, pkt, skb_context(size)) is None:
                    assert k == want, f"{case['name']} len {size}: kernel {k:#x}, test_bpf {want:#x}"
                    confirmed += 1
    print(f"\nkernel: {len(sample)} programs, {checked} runs agree with bpfio, "
          f"{confirmed} also equal test_bpf's value")
    assert checked >= 150 and confirmed >= 100, (checked, confirmed)


@needs_kernel
@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_kernel_attach_errno(case):
    """SO_ATTACH_FILTER on the live kernel gives the errno bpfio predicts for every program.

    Expected-fail cases fail with test_bpf's errno there too; a loaded case may only
    fail with ENOMEM, the socket's optmem_max charge, which bpf_prog_create does not
    make -- and exactly when bpfio's convert-too-large lint says so.
    """
    prog = program(case)
    got = socket_attach_errno(prog)
    assert got == kernel_errno(prog)
    if "FLAG_EXPECTED_FAIL" in case["flags"]:
        assert got == -case["expected_errcode"]
    else:
        too_large = any(w.rule == "convert-too-large" for w in conversion_warnings(prog))
        assert got == (errno.ENOMEM if too_large else 0)


def test_attach_probe_reports_an_unpackable_program():
    """Regression: a jt that does not fit its u8 (an unwrapped bpf_fill_maxinsns8) raised
    UnboundLocalError from socket_attach_errno's cleanup instead of the packing error."""
    prog = Program([Insn(isa.BPF_JMP | isa.BPF_JGT | isa.BPF_K, 300, 0, 0), _ret(0)])
    with pytest.raises(struct.error):
        socket_attach_errno(prog)


def _mutated(case: dict) -> dict:
    """The case with a wrong expectation: another errno, or the first result off by one bit."""
    bad = dict(case)
    if "FLAG_EXPECTED_FAIL" in case["flags"]:
        bad["expected_errcode"] = -errno.ENOMEM
    else:
        bad["tests"] = [[case["tests"][0][0], case["tests"][0][1] ^ 1]] + case["tests"][1:]
    return bad


def test_the_harness_can_fail():
    """Every case the harness counts as agreeing is a disagreement once its expectation is wrong."""
    for case in CASES:
        if classify(case)[0] == "agree":
            assert classify(_mutated(case))[0] == "disagree", case["name"]


def test_docs_table_row():
    """docs/peers.md shows exactly the numbers this harness computes."""
    with SocketOracle() as oracle:
        t = tally(None if KERNEL else oracle)
    assert not t.disagree, t.disagree
    assert doc_row(t.suite) == render_row(t), "docs/peers.md row is stale; expected:\n" + render_row(t)
