"""Disassembler round trips, program formats, and the asm/disasm command line."""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from bpfio import DecodeError, Insn, Program, assemble, disassemble
from bpfio.text.formats import FORMATS, detect_format, format_program, parse_program
from bpfio.isa import OPCODES
from devtools import bpfio_exe

ARP = "ldh [12]\njne #0x806, drop\nret #-1\ndrop: ret #0\n"


@st.composite
def programs(draw, max_len=24):
    """Random programs: mostly known opcodes, some unknown codes and stray fields."""
    n = draw(st.integers(1, max_len))
    known = sorted(OPCODES)
    out = []
    for pc in range(n):
        code = draw(st.one_of(st.sampled_from(known), st.integers(0, 0xffff)))
        info = OPCODES.get(code)
        stray = draw(st.integers(0, 9)) == 0
        if info is not None and info.is_cond_jump and not stray:
            room = max(n - pc - 2, 0)
            jt, jf = draw(st.integers(0, min(room, 255))), draw(st.integers(0, min(room, 255)))
        else:
            jt, jf = (draw(st.integers(0, 255)), draw(st.integers(0, 255))) if stray else (0, 0)
        k = draw(st.one_of(st.integers(0, 20), st.integers(0, 0xffffffff),
                           st.sampled_from([0xfffff000, 0xfffff030, 0xfffff028, 0xffffffff])))
        out.append(Insn(code, jt, jf, k))
    return Program(out)


@settings(max_examples=300, deadline=None)
@given(programs())
def test_disassembly_reassembles_to_identical_bytes(prog):
    text = disassemble(prog)
    assert bytes(assemble(text)) == bytes(prog), text


@settings(max_examples=150, deadline=None)
@given(programs())
def test_every_format_round_trips(prog):
    for fmt in FORMATS:
        rendered = format_program(prog, fmt)
        assert parse_program(rendered) == prog, fmt


@settings(max_examples=100, deadline=None)
@given(programs())
def test_tcpdump_style_never_fails(prog):
    lines = disassemble(prog, style="tcpdump").splitlines()
    assert len(lines) == len(prog) and all(line.startswith("(") for line in lines)


def test_unknown_and_irregular_instructions_render_as_insn_directive():
    prog = Program([Insn(0xff, 0, 0, 1), Insn(0x06, 1, 0, 0), Insn(0x16, 0, 0, 5),
                    Insn(0x05, 0, 0, 10), Insn(0x06, 0, 0, 0)])
    assert disassemble(prog).splitlines()[:4] == [
        "\t.insn 0xff, 0, 0, 0x1", "\t.insn 0x6, 1, 0, 0x0", "\t.insn 0x16, 0, 0, 0x5",
        "\t.insn 0x5, 0, 0, 0xa"]


def test_disassembly_uses_labels_and_extension_words():
    prog = assemble("ldb vlan_avail\njeq #1, yes, no\nyes: ret #1\nno: ldx 4*([14]&0xf)\nret a")
    assert disassemble(prog) == ("\tldb vlan_avail\n\tjeq #1, L2, L3\nL2:\tret #1\n"
                                 "L3:\tldxb 4*([0xe]&0xf)\n\tret a\n")


def test_c_format_uses_c_alternate_hex_for_zero():
    assert format_program(assemble("ld #0\nret #0"), "c") == (
        "{ 0000,  0,  0, 0000000000 },\n{ 0x06,  0,  0, 0000000000 },\n")


def test_detect_format():
    prog = assemble(ARP)
    assert detect_format(format_program(prog, "bpf_asm")) == "bpf_asm"
    assert detect_format(format_program(prog, "tcpdump")) == "tcpdump"
    assert detect_format(format_program(prog, "c")) == "c"
    assert detect_format(format_program(prog, "raw")) == "raw"
    assert detect_format(format_program(prog, "json")) == "json"
    assert detect_format(ARP) == "asm"


def test_c_array_with_declaration_and_comments():
    text = ("struct sock_filter code[] = {\n  /* load */\n  { 0x28, 0, 0, 0x0000000c },\n"
            "  { 0x6, 0, 0, 0 }, // done\n};\n")
    assert parse_program(text) == Program([(0x28, 0, 0, 12), (6, 0, 0, 0)])


BAD = [
    ("3,6 0 0 0,", "f: line 1: bpf_asm line says 3 instructions but holds 1"),
    ("1,6 0 0,", "f:1: error: record 1 '6 0 0' is not 'code jt jf k'"),
    ("2\n6 0 0 0\n", "f:1: error: count line says 2 instructions but 1 follow"),
    ("1,70000 0 0 0,", "f:1: error: instruction (70000, 0, 0, 0) has a field out of range (code u16, jt/jf u8, k u32)"),
    ("[{\"code\": 6}]", "f: error: instruction 0 must be {code, jt, jf, k} or [code, jt, jf, k]"),
    ("[[6, 0, 0, \"x\"]]", "f: error: instruction 0: fields must be integers"),
    ("[1, 2", "f:1: error: invalid JSON: Expecting ',' delimiter"),
    ("{ 0x6, 0, 0 },", "f:1: error: cannot read '{ 0x6, 0, 0 },' as a C instruction '{ code, jt, jf, k },'"),
    ("{ 028, 0, 0, 0x0 },", "f:1: error: '{ 028, 0, 0, 0x0 },' has a number that is not a C integer literal"),
    ("2\x1f\n6 0 0 0\n6 0 0 0\n", "f:1: error: '2\\x1f' is not 'code jt jf k'"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_malformed_program_files(text, message):
    with pytest.raises(DecodeError) as exc:
        parse_program(text, filename="f")
    assert str(exc.value).replace("f: line 1:", "f:1: error:").startswith(
        message.replace("f: line 1:", "f:1: error:"))


# --- command line ---------------------------------------------------------------------

def test_cli_asm_formats(runner, cli, tmp_path):
    src = tmp_path / "arp.bpf"
    src.write_text(ARP)
    result = runner.invoke(cli, ["asm", str(src)])
    assert result.exit_code == 0 and result.stdout == "4,40 0 0 12,21 0 1 2054,6 0 0 4294967295,6 0 0 0,\n"
    result = runner.invoke(cli, ["asm", "-f", "c", "-"], input=ARP)
    assert result.stdout.splitlines()[3] == "{ 0x06,  0,  0, 0000000000 },"
    out = tmp_path / "arp.bin"
    assert runner.invoke(cli, ["asm", "-f", "raw", "-o", str(out), str(src)]).exit_code == 0
    assert Program.from_bytes(out.read_bytes()) == assemble(ARP)


def test_cli_disasm_reads_any_format(runner, cli, tmp_path):
    raw = tmp_path / "p.bin"
    raw.write_bytes(bytes(assemble(ARP)))
    result = runner.invoke(cli, ["disasm", "--style", "tcpdump", str(raw)])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1] == "(001) jeq      #0x806           jt 2\tjf 3"
    result = runner.invoke(cli, ["disasm", "-"], input=format_program(assemble(ARP), "tcpdump"))
    assert "jeq #0x806, L2, L3" in result.stdout


def test_cli_errors_are_one_place_and_exit_1(runner, cli, tmp_path):
    bad = tmp_path / "bad.bpf"
    bad.write_text("ld #1\nld [x+5]\nret a\n")
    result = runner.invoke(cli, ["asm", str(bad)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith(f"{bad}:2:6: error: syntax error at '+5'")
    assert "Traceback" not in result.output
    result = runner.invoke(cli, ["asm", str(tmp_path / "missing.bpf")])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"{tmp_path / 'missing.bpf'}: error: cannot read file: No such file or directory"
    result = runner.invoke(cli, ["asm", "-f", "nope", str(bad)])
    assert result.exit_code == 2
    result = runner.invoke(cli, ["asm", "-D", "1x=2", str(bad)])
    assert result.exit_code == 2


def test_cli_warnings_go_to_stderr(runner, cli):
    result = runner.invoke(cli, ["asm", "-"], input="aa: ld #1\naa: ret a\n")
    assert result.exit_code == 0
    assert "<stdin>:2:1: warning: duplicate label 'aa'" in result.stderr


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=80))
def test_cli_fuzzed_input_never_tracebacks(data):
    from click.testing import CliRunner
    from bpfio.cli import main
    for cmd in (["asm", "-"], ["disasm", "-"]):
        result = CliRunner().invoke(main, cmd, input=data)
        assert result.exit_code in (0, 1), result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_installed_entry_point_runs_as_a_process(tmp_path):
    cmd = [bpfio_exe()]
    src = tmp_path / "a.bpf"
    src.write_text(ARP)
    done = subprocess.run(cmd + ["asm", "-f", "tcpdump", str(src)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.splitlines()[0] == "4"
    done = subprocess.run([sys.executable, "-m", "bpfio", "asm", "-"], input="ld [x+5]",
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.startswith("<stdin>:1:6: error:")


def test_import_does_not_write_parser_tables(tmp_path):
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    code = "import bpfio, os; bpfio.assemble('ret #0'); print(os.listdir(os.path.dirname(bpfio.__file__)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    listing = json.loads(done.stdout.replace("'", '"'))
    assert "parser.out" not in listing and "parsetab.py" not in listing
    assert not list(tmp_path.iterdir())
