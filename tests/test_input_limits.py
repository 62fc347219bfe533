"""Issue 17 (readers and writes): hostile inputs reach a placed one-line error, never a hang,
an internal error or a raw ValueError/RecursionError; limits are the ones docs/limits.md states."""

import pytest
from click.testing import CliRunner

import bpfio
from bpfio.cli import main
from bpfio.errors import AsmError, LimitError
from bpfio.limits import MAX_DIGITS, MAX_JSON_DEPTH, load_json, parse_int
from bpfio.text.preprocess import MAX_MACRO_DEPTH

BIG = "9" * 5000          # over Python's 4,300-digit int-string limit


def _cli(args, data=None):
    result = CliRunner().invoke(main, args, input=data)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _one_line_error(result, expected: str):
    assert result.exit_code == 1, result.output
    first = result.stderr.splitlines()[0]
    assert first == expected
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


# --- item 1: #define chains are evaluated once per name -----------------------------

def _chain(n: int, use: str) -> str:
    lines = ["#define X0 1"] + [f"#define X{i} (X{i - 1}+X{i - 1})" for i in range(1, n + 1)]
    return "\n".join(lines + [use, "ret a", ""])


def test_define_chain_of_40_is_linear():
    # 2**39 is 0 modulo 2**32; the old evaluator expanded 2**40 names and never returned
    src = _chain(39, f"#if X39 == 0\nld #X39\n#endif\nldx #X31")
    prog = bpfio.assemble(src)
    assert [i.k for i in prog] == [0, 1 << 31, 0]


def test_define_chain_inside_if_is_linear():
    prog = bpfio.assemble(_chain(39, "#if X39\nld #1\n#else\nld #2\n#endif"))
    assert prog[0].k == 2


def test_define_nesting_past_the_limit_is_a_placed_error():
    n = MAX_MACRO_DEPTH
    lines = ["#define Y0 1"] + [f"#define Y{i} Y{i - 1}" for i in range(1, n + 1)]
    ok = "\n".join(lines[:-1] + [f"ld #Y{n - 1}", "ret a"])
    assert bpfio.assemble(ok)[0].k == 1
    with pytest.raises(AsmError) as err:
        bpfio.assemble("\n".join(lines + [f"ld #Y{n}", "ret a"]), filename="d.asm")
    assert str(err.value).splitlines()[0] == (
        f"d.asm:{n + 2}:5: error: cannot evaluate 'Y{n}': #define names nest more than "
        f"{n} levels deep (at 'Y0')")


def test_long_or_deep_if_expressions_are_placed_errors():
    for expr, problem in (("+".join(["1"] * 3000), "constant expression has more than 256 tokens"),
                          ("-" * 100_000 + "1", "constant expression has more than 256 tokens"),
                          ("(" * 200 + "1" + ")" * 200,
                           "constant expression has more than 256 tokens")):
        with pytest.raises(AsmError) as err:
            bpfio.assemble(f"#if {expr}\n#endif\nret a\n", filename="e.asm")
        assert str(err.value).splitlines()[0] == f"e.asm:1:1: error: #if: {problem}"


# --- item 3: integer literals -----------------------------------------------------------

def test_parse_int_limit():
    assert parse_int("9" * MAX_DIGITS) == int("9" * MAX_DIGITS)
    assert parse_int("-0x" + "f" * MAX_DIGITS, 0) == -int("f" * MAX_DIGITS, 16)
    with pytest.raises(LimitError, match=f"number of {MAX_DIGITS + 1} digits is too long"):
        parse_int("1" * (MAX_DIGITS + 1))
    with pytest.raises(ValueError):
        parse_int("12z")
    assert issubclass(LimitError, bpfio.BpfError)


@pytest.mark.parametrize("literal", [BIG, "0x" + "f" * 5000, "0b" + "1" * 5000, "0" + "7" * 5000])
def test_asm_long_literal(literal, tmp_path):
    path = tmp_path / "big.asm"
    path.write_text(f"ld #{literal}\nret a\n")
    _one_line_error(_cli(["asm", str(path)]),
                    f"{path}:1:5: error: number of 5000 digits is too long (the limit is {MAX_DIGITS})")


def test_asm_long_define_value_on_the_command_line():
    result = _cli(["asm", "-D", f"N={BIG}", "-"], "ld #N\nret a\n")
    _one_line_error(result, f"<stdin>:1:5: error: cannot evaluate 'N': number of 5000 digits "
                            f"is too long (the limit is {MAX_DIGITS})")


def test_api_define_of_a_huge_int():
    with pytest.raises(AsmError) as err:
        bpfio.assemble("ld #N\nret a", defines={"N": 10**5000})
    assert str(err.value) == ("<command line>: error: define 'N': integer of 16610 bits is too "
                              "large (the limit is 3000 bits)")
    assert bpfio.assemble("ld #N\nret a", defines={"N": 2**31})[0].k == 2**31


TOO_LONG = f"number of 5000 digits is too long (the limit is {MAX_DIGITS})"


@pytest.mark.parametrize("text, line", [
    (f"2,6 0 0 {BIG},6 0 0 0,\n", 1),                    # bpf_asm line
    (f"{BIG}\n6 0 0 1\n", 1),                            # tcpdump -ddd count
    (f"1\n6 0 0 {BIG}\n", 2),                            # tcpdump -ddd insn
    (f"6 0 0 1\n6 0 0 {BIG}\n", 2),                      # bpfc -f tcpdump
    ("{ 0x6, 0, 0, 0x" + "f" * 5000 + " },\n", 1),      # C array
])
def test_program_formats_long_literal(text, line, tmp_path):
    path = tmp_path / "p.txt"
    path.write_text(text)
    _one_line_error(_cli(["disasm", str(path)]), f"{path}:{line}: error: {TOO_LONG}")


def test_json_program_long_literal_and_nesting(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('[{"code": 6, "jt": 0, "jf": 0, "k": ' + BIG + "}]")
    _one_line_error(_cli(["disasm", str(path)]), f"{path}: error: {TOO_LONG}")
    path.write_text("[" * 100_000)
    _one_line_error(_cli(["disasm", str(path)]),
                    f"{path}: error: JSON nested more than {MAX_JSON_DEPTH} levels deep "
                    f"(at character {MAX_JSON_DEPTH + 1})")
    with pytest.raises(bpfio.DecodeError):
        bpfio.parse_program("[" * 100_000)


def test_load_json_depth():
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert load_json(ok) is not None
    assert load_json('["' + "[" * 1000 + '"]') == ["[" * 1000]   # brackets in strings do not nest
    with pytest.raises(LimitError):
        load_json("[" + ok + "]")
    with pytest.raises(LimitError):
        load_json('{"a": ' * (MAX_JSON_DEPTH + 1))


EVENT = '{"op": "in", "port": "0x608", "size": 4'


@pytest.mark.parametrize("line, problem", [
    (EVENT + ', "t_ns": ' + BIG + "}", TOO_LONG),
    ('{"op": "in", "port": "0x' + "6" * 5000 + '", "size": 4}', "port: " + TOO_LONG),
    (EVENT + ', "vcpu": ' + "[" * 100_000 + "}",
     f"JSON nested more than {MAX_JSON_DEPTH} levels deep (at character 149)"),
])
def test_event_lines(line, problem, tmp_path):
    events = tmp_path / "e.jsonl"
    events.write_text(EVENT + "}\n" + line + "\n")
    from bpfio.pio.events import EventReader
    with pytest.raises(bpfio.TraceError) as err:
        list(EventReader(str(events)))
    assert str(err.value) == f"{events}:2: error: {problem}"
    reader = EventReader(str(events), skip_bad=True)
    assert len(list(reader)) == 1 and reader.bad == 1


def test_kvm_pio_trace_long_literal(tmp_path):
    # A trace line is at most 1,024 characters, so a long literal is refused as a long line
    # (a 1,001-digit value cannot fit in one).
    events = tmp_path / "t.txt"
    events.write_text("qemu 42 [001] 1.000001: kvm:kvm_pio: pio_read at 0x608 size 4 count 1 "
                      "val 0x" + "1" * 5000 + "\n")
    from bpfio.pio.events import EventReader
    with pytest.raises(bpfio.TraceError) as err:
        list(EventReader(str(events)))
    assert str(err.value) == (f"{events}:1: error: a line of 5076 characters is not a kvm_pio "
                              "event (at most 1024)")


@pytest.mark.parametrize("value, problem", [
    ("[" * 100_000, "TOML arrays or tables nested too deeply"),
    (BIG, "TOML integer too long (the limit is 4300 digits)"),
])
def test_toml_config(value, problem, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(f"[machine]\nx = {value}\n")
    _one_line_error(_cli(["machine", "check", str(path)]), f"{path}: error: {problem}")


def test_prove_assert_long_literal(tmp_path):
    path = tmp_path / "p.asm"
    path.write_text("ret #1\n")
    text = f"ret <= {BIG}"
    _one_line_error(_cli(["prove", "--assert", text, str(path)]),
                    f"--assert '{text}':8: error: {TOO_LONG}")
    _one_line_error(_cli(["prove", "--assert", "ret <= 0123", str(path)]),
                    "--assert 'ret <= 0123':8: error: '0123' is not a number "
                    "(write 0x... or no leading zero)")


@pytest.mark.parametrize("args, problem", [
    (["run", "--profile", "pio", "--event", f"in 0x608 4 vcpu={BIG}"], f"vcpu: {TOO_LONG}"),
    (["run", "--profile", "seccomp", "--syscall", "read", "--arg", f"0={BIG}"],
     f"argument 0: {TOO_LONG}"),
    (["dbg", "--profile", "pio", "--base", BIG], TOO_LONG),
])
def test_cli_values_long_literal(args, problem, tmp_path):
    path = tmp_path / "p.asm"
    path.write_text("ret #1\n")
    result = _cli([*args, str(path)], "")
    assert result.exit_code == 2, result.output
    assert problem in result.stderr and "internal error" not in result.stderr


def test_seccomp_syscall_number_long_literal(tmp_path):
    path = tmp_path / "p.asm"
    path.write_text("ret #0x7fff0000\n")
    _one_line_error(_cli(["run", "--profile", "seccomp", "--syscall", BIG, str(path)]),
                    f"error: syscall number: {TOO_LONG}")


# --- item 5: pcap/pcapng block lengths -------------------------------------------------

import struct  # noqa: E402

from bpfio.exec.pcap import PcapError, read_packets, write_pcap  # noqa: E402


def _block(btype: int, body: bytes, trailer: int | None = None) -> bytes:
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n if trailer is None else trailer)


SHB = _block(0x0a0d0d0a, struct.pack("<IHHq", 0x1a2b3c4d, 1, 0, -1))   # 28 bytes
IDB = _block(1, struct.pack("<HHI", 1, 0, 65535))                       # 20 bytes


@pytest.mark.parametrize("data, offset, problem", [
    (SHB + _block(3, b""), 32, "Simple Packet Block of 12 bytes is too short (at least 16)"),
    (SHB + _block(1, b"\0" * 4), 32,
     "Interface Description Block of 16 bytes is too short (at least 20)"),
    (SHB + IDB + _block(6, b"\0" * 8), 52,
     "Enhanced Packet Block of 20 bytes is too short (at least 32)"),
    (SHB + IDB + _block(2, b"\0" * 4), 52, "Packet Block of 16 bytes is too short (at least 32)"),
    (_block(0x0a0d0d0a, struct.pack("<I", 0x1a2b3c4d)), 4,
     "Section Header Block of 16 bytes is too short (at least 28)"),
    (SHB + IDB + _block(6, struct.pack("<5I", 0, 0, 0, 100, 100) + b"\0" * 8), 68,
     "captured length 100 runs past the end of its block (8 bytes of packet data)"),
    (SHB + IDB + _block(2, struct.pack("<HHIIII", 0, 0, 0, 0, 9, 9) + b"\0" * 8), 68,
     "captured length 9 runs past the end of its block (8 bytes of packet data)"),
    (SHB + _block(3, b"\0" * 8, trailer=24), 44,
     "block length 20 and trailing length 24 differ"),
])
def test_pcapng_block_lengths(data, offset, problem, tmp_path):
    with pytest.raises(PcapError) as err:
        read_packets(data, filename="f.pcapng")
    assert str(err.value) == f"f.pcapng: byte {offset}: error: {problem}"
    path = tmp_path / "f.pcapng"
    path.write_bytes(data)
    prog = tmp_path / "p.asm"
    prog.write_text("ret #1\n")
    _one_line_error(_cli(["run", "--pcap", str(path), str(prog)]),
                    f"{path}: byte {offset}: error: {problem}")


def test_pcapng_good_packet_still_reads():
    epb = _block(6, struct.pack("<5I", 0, 0, 0, 8, 100) + b"\1" * 8)
    (packet,) = read_packets(SHB + IDB + epb)
    assert (packet.data, packet.wirelen, packet.linktype) == (b"\1" * 8, 100, 1)


@pytest.mark.parametrize("cut, offset, problem", [
    (10, 10, "truncated pcap file header"),
    (24 + 8, 24, "truncated record header"),
    (24 + 16 + 3, 24, "record of 4 bytes runs past the end of the file"),
])
def test_classic_pcap_lengths(cut, offset, problem):
    data = write_pcap([b"\0" * 4])[:cut]
    with pytest.raises(PcapError) as err:
        read_packets(data, filename="f.pcap")
    assert str(err.value) == f"f.pcap: byte {offset}: error: {problem}"


# --- item 11: disasm output always re-assembles, or disasm refuses --------------------

@pytest.mark.parametrize("text, n", [("[]\n", 0), ("0,\n", 0),
                                     ("4097," + "6 0 0 0," * 4097 + "\n", 4097)])
def test_disasm_refuses_what_asm_cannot_take_back(text, n):
    _one_line_error(_cli(["disasm", "-"], text),
                    f"<stdin>: error: a program of {n} instructions has no bpf_asm source "
                    "(asm takes 1 to 4096); --style tcpdump prints it")
    result = _cli(["disasm", "--style", "tcpdump", "-"], text)
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == n


def test_disasm_of_4096_instructions_round_trips():
    text = "4096," + "6 0 0 7," * 4096 + "\n"
    source = _cli(["disasm", "-"], text)
    assert source.exit_code == 0
    back = _cli(["asm", "-"], source.stdout)
    assert (back.exit_code, back.stdout) == (0, text)


def test_limits_doc_states_the_limits():
    from pathlib import Path

    from bpfio.isa import BPF_MAXINSNS
    from bpfio.limits import MAX_INT_BITS
    from bpfio.pio.events import COUNT_MAX
    from bpfio.text.preprocess import MAX_EXPR_TOKENS, MAX_INCLUDE_DEPTH
    doc = (Path(__file__).resolve().parent.parent / "docs" / "limits.md").read_text()
    rows = {line.split("|")[1].strip(): line.split("|")[2] for line in doc.splitlines()
            if line.startswith("| ") and not line.startswith("| What")}
    for label, value in (("Digits in one integer literal", MAX_DIGITS),
                         ("An `int` passed", MAX_INT_BITS), ("JSON nesting", MAX_JSON_DEPTH),
                         ("`#include` nesting", MAX_INCLUDE_DEPTH),
                         ("`#define` nesting", MAX_MACRO_DEPTH),
                         ("Tokens in one constant expression", MAX_EXPR_TOKENS),
                         ("Instructions in a program", BPF_MAXINSNS),
                         ("Elements in one string I/O event", COUNT_MAX)):
        (cell,) = [v for k, v in rows.items() if k.startswith(label)]
        assert cell.strip().split()[0] == f"{value:,}", label
    assert "[limits.md](limits.md)" in (Path(__file__).resolve().parent.parent / "docs"
                                        / "assembler.md").read_text()


def test_a_kvm_pio_line_past_its_limit_is_refused_before_the_regex(tmp_path):
    # Found by the long fuzz run: a 24 KB line of digits took seconds in the trace regex.
    from bpfio.errors import TraceError
    from bpfio.pio.events import TRACE_LINE_MAX, EventReader
    ev = tmp_path / "t.trace"
    ev.write_text("3343983" * 4000 + " kvm_pio: pio_read at 0x608 size 4 count 1 val 0x1\n")
    with pytest.raises(TraceError) as err:
        list(EventReader(str(ev), fmt="kvm_pio"))
    assert f"is not a kvm_pio event (at most {TRACE_LINE_MAX})" in str(err.value)
