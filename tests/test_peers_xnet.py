"""golang.org/x/net/bpf's own test tables, run against bpfio (issue 12 items 3-4).

Data: ``tests/peers/xnet_bpf_vm.json`` (the ``vm_*_test.go`` cases) and
``tests/peers/xnet_bpf_instructions.json`` (``instructions_test.go``), written
by ``tests/peers/extract_xnet.py``.  Programs are stored as x/net/bpf
instruction values; :func:`go_raw` below encodes them as x/net/bpf's
``Assemble`` does (re-derived from its documented encoding, not copied), and
the instruction table itself checks that encoder against the kernel
``bpf_asm`` output x/net/bpf ships.

Where x/net/bpf and bpfio differ, the live kernel decides (``SocketOracle``
for verdicts, ``socket_attach_errno`` for load-time rejections); a case
where the kernel sides with bpfio is "explained" with the reason written in
:data:`EXPLAINED`.  Every other difference fails the test.
"""

from __future__ import annotations

import re

import pytest

from bpfio import isa
from bpfio.text.assembler import assemble
from bpfio.exec.compiler import compile as compile_program
from bpfio.text.disasm import disassemble
from bpfio.errors import VerifierError
from bpfio.text.formats import parse_program
from bpfio.insn import Insn, Program
from bpfio.exec.interp import Interpreter
from bpfio.exec.kernel import available, socket_attach_errno
from bpfio.exec.kernel_run import SocketOracle
from bpfio.check.verifier import verify
from peers_common import Tally, doc_row, load, native, render_row

VM = load("xnet_bpf_vm.json")
INSNS = load("xnet_bpf_instructions.json")
COMMIT = VM["header"]["commit"][:8]
KERNEL = available("socket")   # None when the kernel oracle works, else the reason

# x/net/bpf encoding (bpf/constants.go): Register RegA=0/RegX=1, ALUOp = the
# kernel's BPF_OP bits, JumpTest 0..7, Extension = SKF_AD_* offset (ExtLen is
# the packet-length mode instead).
_JUMP = {0: (isa.BPF_JEQ, False), 1: (isa.BPF_JEQ, True), 2: (isa.BPF_JGT, False),
         3: (isa.BPF_JGE, True), 4: (isa.BPF_JGE, False), 5: (isa.BPF_JGT, True),
         6: (isa.BPF_JSET, False), 7: (isa.BPF_JSET, True)}
_SIZE = {1: isa.BPF_B, 2: isa.BPF_H, 4: isa.BPF_W}


class GoError(Exception):
    """What x/net/bpf's Assemble reports for an instruction value it cannot encode."""


def _load(dst, size, mode, k):
    if dst not in (0, 1):
        raise GoError(f"invalid target register {dst}")
    if size not in _SIZE:
        # x/net/bpf formats its still-zero size bits here, so the text always says 0.
        raise GoError("invalid load byte length 0")
    return Insn((isa.BPF_LDX if dst else isa.BPF_LD) | _SIZE[size] | mode, 0, 0, k & 0xffffffff)


def _slot(n, *, lenient):
    if not 0 <= n <= 15 and not lenient:
        raise GoError(f"invalid scratch slot {n}")
    return n & 0xffffffff


def go_raw(v: dict, *, lenient: bool = False) -> Insn:
    """The raw instruction x/net/bpf's ``Assemble`` gives for instruction value ``v``.

    ``lenient``: encode an out-of-range scratch slot anyway (as ``k``), the
    instruction a C or bpf_asm user would get for ``M[16]``.
    """
    t = v["type"]
    if t == "LoadConstant":
        return _load(v.get("Dst", 0), 4, isa.BPF_IMM, v.get("Val", 0))
    if t == "LoadScratch":
        return _load(v.get("Dst", 0), 4, isa.BPF_MEM, _slot(v.get("N", 0), lenient=lenient))
    if t in ("LoadAbsolute", "LoadIndirect"):
        mode = isa.BPF_ABS if t == "LoadAbsolute" else isa.BPF_IND
        return _load(0, v.get("Size", 0), mode, v.get("Off", 0))
    if t == "LoadMemShift":
        return _load(1, 1, isa.BPF_MSH, v.get("Off", 0))
    if t == "LoadExtension":
        num = v.get("Num", 0)
        if num == 1:    # ExtLen: the packet-length mode, not an ancillary offset
            return _load(0, 4, isa.BPF_LEN, 0)
        return _load(0, 4, isa.BPF_ABS, isa.SKF_AD_OFF + num)
    if t == "StoreScratch":
        k = _slot(v.get("N", 0), lenient=lenient)
        src = v.get("Src", 0)
        if src not in (0, 1):
            raise GoError(f"invalid source register {src}")
        return Insn(isa.BPF_STX if src else isa.BPF_ST, 0, 0, k)
    if t == "ALUOpConstant":   # the Op field is OR-ed in unchecked
        return Insn(isa.BPF_ALU | isa.BPF_K | v.get("Op", 0), 0, 0, v.get("Val", 0))
    if t == "ALUOpX":
        return Insn(isa.BPF_ALU | isa.BPF_X | v.get("Op", 0), 0, 0, 0)
    if t == "NegateA":
        return Insn(isa.BPF_ALU | isa.BPF_NEG, 0, 0, 0)
    if t == "Jump":
        return Insn(isa.BPF_JMP | isa.BPF_JA, 0, 0, v.get("Skip", 0))
    if t in ("JumpIf", "JumpIfX"):
        cond = v.get("Cond", 0)
        if cond not in _JUMP:
            raise GoError(f"unknown JumpTest {cond}")
        op, flip = _JUMP[cond]
        jt, jf = v.get("SkipTrue", 0), v.get("SkipFalse", 0)
        if flip:
            jt, jf = jf, jt
        src = isa.BPF_X if t == "JumpIfX" else isa.BPF_K
        return Insn(isa.BPF_JMP | op | src, jt, jf, v.get("Val", 0) if t == "JumpIf" else 0)
    if t == "RetA":
        return Insn(isa.BPF_RET | isa.BPF_A, 0, 0, 0)
    if t == "RetConstant":
        return Insn(isa.BPF_RET | isa.BPF_K, 0, 0, v.get("Val", 0))
    if t == "TAX":
        return Insn(isa.BPF_MISC | isa.BPF_TAX, 0, 0, 0)
    if t == "TXA":
        return Insn(isa.BPF_MISC | isa.BPF_TXA, 0, 0, 0)
    if t == "unknown":   # vm_test.go's own type: its Assemble returns RawInstruction{}
        return Insn(0, 0, 0, 0)
    raise GoError(f"{t} has no encoding")


def go_assemble(values, *, lenient=False) -> Program:
    """``Assemble(values)``: the program, or GoError("assembling instruction N: ...")."""
    out = []
    for i, v in enumerate(values):
        try:
            out.append(go_raw(v, lenient=lenient))
        except GoError as exc:
            raise GoError(f"assembling instruction {i + 1}: {exc}") from None
    return Program(out)


def go_test_output(ret: int, case: dict) -> int:
    """What the x/net/bpf test compares ``want`` with, given the program's return value."""
    n = len(bytes.fromhex(case["input"]))
    if case.get("trim") == "input":          # ExampleNewVM
        return min(ret, n)
    out = ret - 8 if ret >= 8 else ret       # vm_bpf_test.go: drop the pseudo UDP header
    return min(out, n - 8)


# Cases where x/net/bpf's expectation is specific to x/net/bpf and the kernel
# sides with bpfio.  The test checks each is still classified this way.
EXPLAINED = {
    "TestVMUnknownInstruction":
        "x/net/bpf's Run stops with an error on the test's own Instruction type, whose Assemble "
        "gives RawInstruction{} = `ld #0` (code 0x00); the kernel accepts that program and "
        "runs it (ld #100; ld #0; ret a) to 0, as bpfio does -- the byte counts agree (0), "
        "only x/net/bpf's extra run-time error has no kernel counterpart",
}
# NewVM's (and Assemble's) load-time errors and the verifier rule that matches each.
GO_LOAD_ERRORS = [
    ("cannot divide by zero", {"div-by-zero"}),
    ("extension ", {"unknown-ancillary"}),
    ("cannot jump", {"ja-out-of-range", "jump-out-of-range"}),
    ("assembling instruction 1: invalid scratch slot", {"mem-index"}),
    ("BPF program must end with", {"last-not-ret"}),
    ("one or more Instructions", {"empty"}),
]
SKIP_NO_RAW = "Go type error, no cBPF encoding"


def _verdicts(prog, packet: bytes, oracle) -> dict:
    interp = Interpreter(prog)(packet)
    comp = compile_program(prog)(packet)
    out = {"interpreter": interp, "compiled": comp}
    jitted = native(prog)
    if jitted is not None:
        out["jit"] = jitted(packet)
    if oracle is not None:
        out["kernel"] = oracle.run(prog, [packet])[0] or 0
    return out


def _kernel_accepts(prog) -> bool | None:
    return None if KERNEL else socket_attach_errno(prog) == 0


def classify_vm(case: dict, oracle) -> tuple[str, str]:
    """(outcome, detail) of one VM case."""
    name = case["name"]
    try:
        prog = go_assemble(case["program"])
    except GoError as exc:
        if case["error"] != str(exc):
            return "disagree", f"encoder says {exc!r}, x/net/bpf {case['error']!r}"
        try:
            prog = go_assemble(case["program"], lenient=True)
        except GoError:
            return "skip", SKIP_NO_RAW
    try:
        verify(prog, lints=False)
        ours, rule, errno = True, None, 0
    except VerifierError as exc:
        ours, rule, errno = False, exc.rule, exc.errno
    kernel = _kernel_accepts(prog)
    if case["error_stage"] == "load":
        # x/net/bpf refuses the program; bpfio's verifier must too, for the same
        # reason, with the kernel's errno.
        want_rules = next(r for prefix, r in GO_LOAD_ERRORS if case["error"].startswith(prefix))
        if ours or kernel or rule not in want_rules:
            return "disagree", (f"x/net/bpf rejects ({case['error']}); bpfio accepts={ours} "
                                f"(rule {rule}), kernel accepts={kernel}")
        if not KERNEL and socket_attach_errno(prog) != errno:
            return "disagree", f"bpfio errno {errno}, kernel errno {socket_attach_errno(prog)}"
        return "agree", ""
    if not ours or kernel is False:
        return "disagree", f"bpfio accepts={ours}, kernel accepts={kernel}; x/net/bpf runs it"
    got = {k: go_test_output(v, case) for k, v in _verdicts(prog, bytes.fromhex(case["input"]), oracle).items()}
    if case["error_stage"] == "run":
        # x/net/bpf's Run returned (0, error); the test checks only the error.
        if name in EXPLAINED and set(got.values()) == {0}:
            return "explained", EXPLAINED[name]
        return "disagree", f"x/net/bpf run error {case['error']!r}; we got {got}"
    if set(got.values()) != {case["want"]}:
        return "disagree", f"want {case['want']}, got {got}"
    return "agree", ""


# -- instruction tables ---------------------------------------------------------

def _bpf_file_program() -> Program:
    return parse_program(INSNS["all_instructions_bpf"], filename="all_instructions.bpf")


def _labelled(text: str) -> str:
    """x/net/bpf String() text with numeric skips turned into bpf_asm labels.

    The instruction sits at pc 0, followed by ``ret`` lines labelled ``l0``,
    ``l1``, ... so a skip of n targets label ``l<n>`` (pc n + 1).
    """
    m = re.fullmatch(r"(j\w+) ([^,]+)((?:,\d+)+)", text) or re.fullmatch(r"(ja) (\d+)()", text)
    if not m:
        return text + "\nret #0\n"
    op, first, skips = m.groups()
    if op == "ja":
        body, top = f"ja l{first}", int(first)
    else:
        nums = [int(s) for s in skips.strip(",").split(",")]
        body, top = f"{op} {first}, " + ", ".join(f"l{n}" for n in nums), max(nums)
    return body + "\n" + "".join(f"l{n}: ret #{n}\n" for n in range(top + 1))


def classify_instruction(i: int, value: dict, bpf_file: Program, ours: Program) -> tuple[str, str]:
    """allInstructions[i]: x/net/bpf's encoding, the bpf_asm file, our assembler and disassembler."""
    want = bpf_file[i]
    enc = go_raw(value)
    if enc != want:
        return "disagree", f"encoder {enc} vs all_instructions.bpf {want}"
    if ours[i] != want:
        return "disagree", f"bpfio assembles all_instructions.txt line to {ours[i]}, bpf_asm {want}"
    return "agree", ""


def classify_string(case: dict) -> tuple[str, str]:
    """TestString: our assembler reads x/net/bpf's text back to the same raw instruction."""
    text = case["string"]
    try:
        raw = go_raw(case["instruction"])
    except GoError:
        raw = None
    if text.startswith("unknown ") or raw is None:
        return "skip", "invalid Go value, String() has no assembler text"
    got = assemble(_labelled(text))[0]
    if got != raw:
        return "disagree", f"{text!r}: bpfio assembles {got}, x/net/bpf encodes {raw}"
    # and our disassembler's text of that instruction reassembles to it
    prog = assemble(_labelled(text))
    if assemble(disassemble(prog)) != prog:
        return "disagree", f"{text!r}: bpfio disassembly does not reassemble"
    return "agree", ""


def vm_tally() -> Tally:
    """Run every VM case; the suite's tally."""
    t = Tally("x/net/bpf VM", f"golang/net `bpf/vm*_test.go` @{COMMIT}")
    with SocketOracle() as oracle:
        for case in VM["cases"]:
            t.add(case["name"], *classify_vm(case, None if KERNEL else oracle))
    return t


def instructions_tally() -> Tally:
    """Run the allInstructions and TestString tables; the suite's tally."""
    t = Tally("x/net/bpf instructions", f"golang/net `bpf/instructions_test.go` @{COMMIT}")
    bpf_file = _bpf_file_program()
    ours = assemble(INSNS["all_instructions_txt"], filename="all_instructions.txt")
    for i, value in enumerate(INSNS["all_instructions"]):
        t.add(f"allInstructions[{i}]", *classify_instruction(i, value, bpf_file, ours))
    for j, case in enumerate(INSNS["string_cases"]):
        t.add(f"TestString[{j}]", *classify_string(case))
    return t


needs_kernel = pytest.mark.skipif(KERNEL is not None, reason=f"kernel oracle unavailable: {KERNEL}")


@needs_kernel
@pytest.mark.parametrize("case", VM["cases"], ids=[c["name"] for c in VM["cases"]])
def test_vm_case(case):
    with SocketOracle() as oracle:
        outcome, detail = classify_vm(case, oracle)
    assert outcome != "disagree", detail
    assert (outcome == "explained") == (case["name"] in EXPLAINED)


@needs_kernel
@pytest.mark.parametrize("name", sorted(EXPLAINED))
def test_explained_cases_are_kernel_confirmed(name):
    """The kernel accepts the program x/net/bpf errors on and returns what bpfio returns."""
    case = next(c for c in VM["cases"] if c["name"] == name)
    prog = go_assemble(case["program"])
    assert socket_attach_errno(prog) == 0
    packet = bytes.fromhex(case["input"])
    with SocketOracle() as oracle:
        assert oracle.run(prog, [packet]) == [Interpreter(prog)(packet)]


def test_encoder_matches_the_bpf_asm_file():
    """x/net/bpf's TestInterop: every allInstructions value encodes to the kernel bpf_asm line."""
    bpf_file = _bpf_file_program()
    assert len(bpf_file) == len(INSNS["all_instructions"]) == 57
    assert [go_raw(v) for v in INSNS["all_instructions"]] == list(bpf_file)


@pytest.mark.parametrize("i", range(len(INSNS["all_instructions"])))
def test_instruction(i):
    bpf_file = _bpf_file_program()
    ours = assemble(INSNS["all_instructions_txt"], filename="all_instructions.txt")
    outcome, detail = classify_instruction(i, INSNS["all_instructions"][i], bpf_file, ours)
    assert outcome == "agree", detail


def test_disassembly_round_trip():
    """x/net/bpf's TestAsmDisasm, on our side: disassemble the 57 raw words, reassemble, same words."""
    prog = _bpf_file_program()
    assert assemble(disassemble(prog)) == prog


@pytest.mark.parametrize("case", INSNS["string_cases"], ids=[c["string"][:40] for c in INSNS["string_cases"]])
def test_string_case(case):
    outcome, detail = classify_string(case)
    assert outcome != "disagree", detail


@needs_kernel
@pytest.mark.parametrize("suite", [vm_tally, instructions_tally], ids=["vm", "instructions"])
def test_docs_table_row(suite):
    """docs/peers.md shows exactly the numbers this harness computes."""
    t = suite()
    assert not t.disagree
    assert doc_row(t.suite) == render_row(t), "docs/peers.md row is stale; expected:\n" + render_row(t)
