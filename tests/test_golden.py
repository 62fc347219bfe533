"""Byte-for-byte comparison with the real tools' outputs stored in tests/golden/.

How each file was made is in tests/golden/README.md.  Expected programs are
decoded from the tools' numeric outputs by the small readers here (not by
bpfio), so a bpfio parser bug cannot hide an assembler bug or vice versa.

``pytest --update-golden`` first rebuilds the outputs from the installed tools
(``tests/golden/regen.py``), then runs the comparisons.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import bpfio
from bpfio.errors import AsmError, BpfError
from bpfio.text.formats import parse_program
from bpfio.insn import Insn, Program
from bpfio.isa import OPCODES

GOLDEN = Path(__file__).resolve().parent / "golden"


def _load_regen():
    spec = importlib.util.spec_from_file_location("golden_regen", GOLDEN / "regen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


regen = _load_regen()
_updated = False


def pytest_generate_tests(metafunc):
    """Regenerate once (``--update-golden``) before the folder listings are taken."""
    global _updated
    if metafunc.config.getoption("--update-golden", default=False) and not _updated:
        _updated = True
        regen.regenerate()
    listings = {
        "asm_case": lambda: [p.stem for p in sorted((GOLDEN / "asm").glob("*.bpf"))],
        "err_case": lambda: [p.stem for p in sorted((GOLDEN / "asm_errors").glob("*.bpf"))],
        "tcpdump_case": lambda: [f"{i:03d}" for i in range(len(regen.read_exprs()))],
        "bpfc_case": lambda: [p.stem for p in sorted((GOLDEN / "bpfc").glob("*.C"))],
    }
    for name, listing in listings.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, listing())


# --- independent readers for the tools' numeric outputs ---------------------------------

def words_bpf_asm(text: str) -> list[Insn]:
    """Decode ``N,c t f k,c t f k,...,`` (bpf_asm default, bpfc -f xt_bpf)."""
    parts = text.strip().rstrip(",").split(",")
    insns = [Insn(*map(int, p.split())) for p in parts[1:]]
    assert int(parts[0]) == len(insns), "count field disagrees with the instructions"
    return insns


def words_lines(text: str, counted: bool) -> list[Insn]:
    """Decode ``tcpdump -ddd`` (counted) or ``bpfc -f tcpdump`` (not counted)."""
    lines = text.splitlines()
    if counted:
        n, lines = int(lines[0]), lines[1:]
        assert n == len(lines)
    return [Insn(*map(int, ln.split())) for ln in lines]


_BRACE = re.compile(r"\{\s*(\w+),\s*(\w+),\s*(\w+),\s*(\w+)\s*\},")


def words_c(text: str) -> list[Insn]:
    """Decode ``{ code, jt, jf, k },`` lines (C's %#x prints zero as 0000)."""
    def num(s):
        return int(s, 16) if s.lower().startswith("0x") else int(s, 10)
    return [Insn(*map(num, m.groups())) for m in map(_BRACE.fullmatch, text.splitlines())]


# --- reporting -----------------------------------------------------------------------------

def explain(expected, got) -> str:
    """The differing instructions with raw fields and disassembly."""
    from bpfio.text.disasm import format_insn
    expected, got = list(expected), list(got)
    out = [f"expected {len(expected)} insns, got {len(got)}"]
    shown = 0
    for pc in range(max(len(expected), len(got))):
        e = expected[pc] if pc < len(expected) else None
        g = got[pc] if pc < len(got) else None
        if e == g:
            continue
        def show(i):
            if i is None:
                return "(none)"
            return f"{{{i.code:#06x}, {i.jt:3d}, {i.jf:3d}, {i.k:#010x}}}  {format_insn(i, pc)}"
        out.append(f"  pc {pc}: expected {show(e)}")
        out.append(f"  pc {pc}:      got {show(g)}")
        shown += 1
        if shown == 8:
            out.append("  ...")
            break
    return "\n".join(out)


def assert_same(expected, got, what: str):
    assert list(got) == list(expected), f"{what}\n{explain(expected, got)}"


def assert_text(expected: str, got, what: str):
    if got == expected:
        return
    exp_lines, got_lines = expected.splitlines(True), (got or "").splitlines(True)
    for n, (a, b) in enumerate(zip(exp_lines, got_lines)):
        if a != b:
            pytest.fail(f"{what}: first difference on output line {n + 1}\n"
                        f"  tool : {a!r}\n  bpfio: {b!r}")
    pytest.fail(f"{what}: outputs differ in length or trailing bytes\n"
                f"  tool ends {expected[-60:]!r}\n  bpfio ends {(got or '')[-60:]!r}")


def assemble_file(path: Path) -> Program:
    return bpfio.assemble(path.read_bytes(), filename=path.name)


# --- asm corpus: bpf_asm default and -c outputs ----------------------------------------------

def test_asm_default_output(asm_case):
    src = GOLDEN / "asm" / f"{asm_case}.bpf"
    golden = src.with_suffix(".bpf_asm").read_text()
    expected = words_bpf_asm(golden)
    prog = assemble_file(src)
    assert_same(expected, prog, f"{src.name}: assembled program differs from bpf_asm's")
    assert_text(golden, bpfio.format_program(prog, "bpf_asm"), f"{src.name} format bpf_asm")


def test_asm_c_output(asm_case):
    src = GOLDEN / "asm" / f"{asm_case}.bpf"
    golden = src.with_suffix(".c").read_text()
    expected = words_c(golden)
    assert expected == words_bpf_asm(src.with_suffix(".bpf_asm").read_text())
    assert_text(golden, bpfio.format_program(Program(expected), "c"), f"{src.name} format c")


def test_asm_outputs_parse_back(asm_case):
    src = GOLDEN / "asm" / f"{asm_case}.bpf"
    expected = words_bpf_asm(src.with_suffix(".bpf_asm").read_text())
    for suffix in (".bpf_asm", ".c"):
        out = src.with_suffix(suffix)
        assert_same(expected, parse_program(out.read_text(), filename=out.name),
                    f"parse_program({out.name})")


def test_asm_disassembly_reassembles(asm_case):
    src = GOLDEN / "asm" / f"{asm_case}.bpf"
    expected = Program(words_bpf_asm(src.with_suffix(".bpf_asm").read_text()))
    text = bpfio.disassemble(expected)
    assert_same(expected, bpfio.assemble(text, filename=f"disasm({src.name})"),
                f"{src.name}: disassemble() does not re-assemble to the same bytes")


# --- error corpus ----------------------------------------------------------------------------

def test_asm_error_rejected(err_case):
    src = GOLDEN / "asm_errors" / f"{err_case}.bpf"
    expect = json.loads(src.with_suffix(".expect").read_text())
    # bpf_asm rejected it: non-zero exit, or (label/limit/ldxb errors in this revision,
    # which still exit 0) a message on stderr and no program on stdout.
    assert expect["exit"] != 0 or (expect["stderr"] and not expect["stdout"])
    with pytest.raises(BpfError) as info:
        assemble_file(src)
    err = info.value
    first_line = str(err).splitlines()[0]
    assert first_line.startswith(src.name), first_line
    if expect["line"] is not None:
        assert isinstance(err, AsmError)
        assert err.line == expect["line"], (
            f"bpf_asm: {expect['stderr'].strip()!r}; bpfio: {first_line!r}")
        assert first_line.startswith(f"{src.name}:{expect['line']}:"), first_line


# --- tcpdump corpus --------------------------------------------------------------------------

def _tcpdump_files(case: str) -> tuple[str, str, str]:
    return tuple((GOLDEN / "tcpdump" / f"{case}.{flag}").read_text() for flag in ("d", "dd", "ddd"))


def test_tcpdump_formats(tcpdump_case):
    d, dd, ddd = _tcpdump_files(tcpdump_case)
    expected = Program(words_lines(ddd, counted=True))
    assert words_c(dd) == list(expected)
    what = f"tcpdump case {tcpdump_case} {regen.read_exprs()[int(tcpdump_case)]}"
    assert_text(ddd, bpfio.format_program(expected, "tcpdump"), f"{what}: -ddd")
    assert_text(dd, bpfio.format_program(expected, "tcpdump-c"), f"{what}: -dd")
    assert_text(d, bpfio.disassemble(expected, style="tcpdump"), f"{what}: -d")


def test_tcpdump_outputs_parse_back(tcpdump_case):
    d, dd, ddd = _tcpdump_files(tcpdump_case)
    expected = words_lines(ddd, counted=True)
    assert_same(expected, parse_program(ddd, filename=f"{tcpdump_case}.ddd"), "parse -ddd")
    assert_same(expected, parse_program(dd, filename=f"{tcpdump_case}.dd"), "parse -dd")


def test_tcpdump_disassembly_reassembles(tcpdump_case):
    _, _, ddd = _tcpdump_files(tcpdump_case)
    expected = Program(words_lines(ddd, counted=True))
    text = bpfio.disassemble(expected)
    assert_same(expected, bpfio.assemble(text, filename=f"disasm({tcpdump_case})"),
                f"tcpdump case {tcpdump_case}: disassembly does not re-assemble")


# --- bpfc corpus -----------------------------------------------------------------------------

def test_bpfc_formats(bpfc_case):
    base = GOLDEN / "bpfc" / bpfc_case
    prog = assemble_file(GOLDEN / "asm" / f"{bpfc_case}.bpf")
    c_text = base.with_suffix(".C").read_text()
    xt_text = base.with_suffix(".xt_bpf").read_text()
    td_text = base.with_suffix(".tcpdump").read_text()
    expected = words_lines(td_text, counted=False)
    assert words_c(c_text) == expected and words_bpf_asm(xt_text) == expected
    assert_same(expected, prog, f"{bpfc_case}: program differs from bpfc's")
    assert_text(c_text, bpfio.format_program(prog, "bpfc"), f"{bpfc_case} bpfc -f C")
    assert_text(xt_text, bpfio.format_program(prog, "xt_bpf"), f"{bpfc_case} bpfc -f xt_bpf")
    # bpfc -f tcpdump is tcpdump -ddd without the count line.
    assert_text(td_text, bpfio.format_program(prog, "bpfc-tcpdump"), f"{bpfc_case} bpfc -f tcpdump")


def test_bpfc_outputs_parse_back(bpfc_case):
    base = GOLDEN / "bpfc" / bpfc_case
    expected = words_lines(base.with_suffix(".tcpdump").read_text(), counted=False)
    for suffix in (".C", ".xt_bpf", ".tcpdump"):
        path = base.with_suffix(suffix)
        assert_same(expected, parse_program(path.read_text(), filename=path.name),
                    f"parse_program({path.name})")


# --- the corpus itself -------------------------------------------------------------------------

def test_corpus_complete():
    sources = sorted((GOLDEN / "asm").glob("*.bpf"))
    assert len(sources) >= 200
    for src in sources:
        assert src.with_suffix(".bpf_asm").exists() and src.with_suffix(".c").exists(), src.name
    errors = sorted((GOLDEN / "asm_errors").glob("*.bpf"))
    assert len(errors) >= 40
    assert all(e.with_suffix(".expect").exists() for e in errors)
    n = len(regen.read_exprs())
    assert n >= 60
    assert len(list((GOLDEN / "tcpdump").glob("*.ddd"))) == n


def test_all_forms_covers_every_emittable_code():
    """all_forms.bpf uses every opcode bpf_asm can emit: the kernel's 49 plus RET X."""
    emitted = {i.code for i in words_bpf_asm((GOLDEN / "asm" / "all_forms.bpf_asm").read_text())}
    wanted = {code for code, info in OPCODES.items() if info.kernel} | {0x0e}
    assert len(wanted) == 50
    assert wanted <= emitted, sorted(hex(c) for c in wanted - emitted)


# --- freshness: the stored outputs still match the installed tools ------------------------------

@pytest.mark.skipif(not regen.have_bpf_asm(), reason=f"no rebuilt bpf_asm at {regen.BPF_ASM}")
def test_stored_bpf_asm_outputs_are_current():
    stale = []
    for src in sorted((GOLDEN / "asm").glob("*.bpf"))[::7]:   # a sample keeps this fast
        res = subprocess.run([regen.BPF_ASM, src.name], cwd=src.parent, capture_output=True)
        if res.stdout != src.with_suffix(".bpf_asm").read_bytes():
            stale.append(src.name)
    assert not stale, f"re-run tests/golden/regen.py: stale {stale}"


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_stored_tcpdump_outputs_are_current(tmp_path):
    exprs = regen.read_exprs()
    stale, checked = [], 0
    for i in range(0, len(exprs), 9):
        linktype, expr = exprs[i]
        res = subprocess.run(regen.tcpdump_argv(linktype, expr, "d", tmp_path), capture_output=True)
        if res.returncode != 0 and linktype.startswith("IFACE:"):
            continue  # live device not available here (no such device or no privilege)
        checked += 1
        if res.stdout != (GOLDEN / "tcpdump" / f"{i:03d}.d").read_bytes():
            stale.append((i, expr))
    assert checked and not stale, f"re-run tests/golden/regen.py: stale {stale}"


# --- libpcap bpf_image for every opcode ------------------------------------------------------

def test_bpf_image_table():
    """tcpdump -d's per-instruction text (libpcap bpf_image) for all codes and edge k values."""
    rows = (GOLDEN / "tcpdump" / "bpf_image.tsv").read_text().splitlines()[1:]
    assert len(rows) > 1300
    filler = Insn(0x06, 0, 0, 0)
    bad = []
    for row in rows:
        code, jt, jf, k, pc, image = row.split("\t", 5)
        insn = Insn(int(code), int(jt), int(jf), int(k))
        prog = Program([filler] * int(pc) + [insn])
        got = bpfio.disassemble(prog, style="tcpdump").splitlines()[-1]
        if got != image:
            bad.append(f"  {{{int(code):#06x}, {jt}, {jf}, {int(k):#010x}}} pc {pc}: "
                       f"libpcap {image!r} bpfio {got!r}")
    assert not bad, f"{len(bad)} of {len(rows)} bpf_image lines differ:\n" + "\n".join(bad[:15])
