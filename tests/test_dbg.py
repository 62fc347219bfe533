"""bpfio dbg: bpf_dbg's commands and formats, its quirks fixed, seccomp/pio/machine modes, -x scripts."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bpfio.dbg.debugger import DbgError, Debugger
from bpfio.errors import BpfError
from devtools import bpfio_exe

# --- inputs written by hand -------------------------------------------------------------


def eth(ethertype: int) -> bytes:
    return bytes.fromhex("ffffffffffff020000000001") + struct.pack(">H", ethertype)


def ipv4(proto: int, payload: bytes) -> bytes:
    total = 20 + len(payload)
    return bytes([0x45, 0, total >> 8, total & 0xff, 0, 1, 0x40, 0, 64, proto, 0, 0,
                  10, 0, 0, 1, 10, 0, 0, 2]) + payload


ARP = eth(0x0806) + bytes(28)                                                  # 42 bytes
TCP80 = eth(0x0800) + ipv4(6, struct.pack(">HHIIBBHHH", 12345, 80, 1, 0, 0x50, 2, 1024, 0, 0))
UDP53 = eth(0x0800) + ipv4(17, struct.pack(">HHHH", 53, 53, 8, 0))            # 42 bytes
PACKETS = [ARP, TCP80, UDP53]


def pcap_file(packets, order: str = "<", magic: int = 0xa1b2c3d4) -> bytes:
    """A classic pcap in either byte order (written here, independent of bpfio.exec.pcap)."""
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    for i, p in enumerate(packets):
        out += struct.pack(order + "IIII", 1000 + i, 0, len(p), len(p)) + p
    return out


# Hand-assembled 'ip and tcp dst port 80'; pc 6 is the deciding jump.
FILTER = textwrap.dedent("""\
        ldh [12]
        jeq #0x800, ip, drop
    ip: ldb [23]
        jeq #6, tcp, drop
    tcp: ldxb 4*([14]&0xf)
        ldh [x + 16]
        jeq #80, keep, drop
    keep: ret #0x40000
    drop: ret #0
    """)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "f.asm").write_text(FILTER)
    (tmp_path / "le.pcap").write_bytes(pcap_file(PACKETS, "<"))
    (tmp_path / "be.pcap").write_bytes(pcap_file(PACKETS, ">"))
    return tmp_path


def session(files, program=FILTER, pcap="le.pcap", profile="socket", **kw) -> Debugger:
    d = Debugger(profile, **kw)
    if program is not None:
        (files / "p.asm").write_text(program)
        d.execute(f"load bpf {files / 'p.asm'}")
    if pcap:
        d.execute(f"load pcap {files / pcap}")
    return d


def field(lines, name):
    """The value of a register-dump line ('A:        [..][..]')."""
    for line in lines:
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no '{name}:' line in {lines}")


# --- bpf_dbg formats --------------------------------------------------------------------

@pytest.mark.parametrize("code, jt, jf, k, pc, text", [
    (0x06, 0, 0, 0, 0, "ret #0"),              # %#x of zero is "0"
    (0x06, 0, 0, 0xffff, 0, "ret #0xffff"),
    (0x16, 0, 0, 0, 0, "ret a"),
    (0x80, 0, 0, 0, 0, "ld #len"),
    (0x81, 0, 0, 0, 0, "ldx #len"),            # bpf_dbg: "nosup 0x81"
    (0x00, 0, 0, 5, 0, "ld #0x5"),
    (0x01, 0, 0, 0, 0, "ldx #0"),
    (0x28, 0, 0, 12, 0, "ldh [12]"),
    (0x20, 0, 0, 0xfffff000, 0, "ld #proto"),  # bpf_dbg: "ld [-4096]"
    (0x48, 0, 0, 14, 0, "ldh [x+14]"),
    (0xb1, 0, 0, 14, 0, "ldxb 4*([14]&0xf)"),
    (0x61, 0, 0, 3, 0, "ldx M[3]"),
    (0x02, 0, 0, 3, 0, "st M[3]"),
    (0x05, 0, 0, 2, 4, "ja 7"),                # absolute target
    (0x04, 0, 0, 0xffffffff, 0, "add #-1"),    # %d: signed
    (0x54, 0, 0, 0xff, 0, "and #0xff"),        # %#x
    (0x84, 0, 0, 0, 0, "neg "),                # empty operand keeps the space
    (0x07, 0, 0, 0, 0, "tax "),
])
def test_disassembly_line_formats(code, jt, jf, k, pc, text):
    from bpfio.dbg.format import disasm_line
    from bpfio.insn import Insn
    assert disasm_line(Insn(code, jt, jf, k), pc) == f"l{pc}:\t{text}"


def test_docs_example_line_and_dump(files):
    d = session(files, pcap=None)
    assert d.execute("disassemble 1") == ["l1:\tjeq #0x800, l2, l8"]
    lines = d.execute("disassemble")
    assert len(lines) == 9 and lines[6] == "l6:\tjeq #0x50, l7, l8"
    dump = d.execute("dump")
    assert dump[0] == "/* { op, jt, jf, k }, */"
    assert dump[1] == "{ 0x28,  0,  0, 0x0000000c },"
    assert dump[9] == "{ 0x06,  0,  0, 0000000000 },"   # C's %#010x of zero


@pytest.mark.parametrize("form", ["bpf_asm", "xt_bpf", "c", "tcpdump", "tcpdump-c", "raw", "json", "asm"])
def test_load_bpf_any_format(files, form):
    from bpfio.text.assembler import assemble
    from bpfio.text.formats import format_program
    prog = assemble(FILTER)
    data = format_program(prog, form)
    path = files / f"p.{form}"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    d = Debugger("socket")
    assert d.execute(f"load bpf {path}") == [f"bpf: 9 instructions from {path} (socket profile)"]
    assert d.program == prog
    if form in ("bpf_asm", "json"):               # one-line forms also work inline
        inline = data.strip() if form == "bpf_asm" else " ".join(data.split())
        d.execute(f"load bpf {inline}")
        assert d.program == prog


def test_register_dump_layout_and_c_hex(files):
    d = session(files)
    out = d.execute("step")
    assert out[0].startswith("l0: ldh [12]") and out[0].endswith("; A = 0x806 (bytes 12..13)")
    dump = out[out.index("-- register dump --") + 1:]
    assert dump[:3] == ["pc:       [1]", "code:     [21] jt[0] jf[6] k[2048]",
                        "curr:     l1:\tjeq #0x800, l2, l8"]
    assert field(dump, "jt") == "l2:\tldb [23]" and field(dump, "jf") == "l8:\tret #0"
    assert field(dump, "A") == "[0x000806][2054]"
    assert field(dump, "X") == "[00000000][0]"
    assert dump[-1] == "M[0,15]:  [00000000][0]"


def test_packet_dump_hex_layout(files):
    d = session(files)
    out = d.execute("input")
    assert out[0] == "-- packet dump --" and out[1] == "len: 42"
    assert out[2] == "  0: ff ff ff ff ff ff 02 00 00 00 00 01 08 06 00 00 "
    assert out[3].startswith(" 16: ") and len(out) == 2 + 3


def test_breakpoint_listing_and_messages(files):
    d = session(files)
    assert d.execute("breakpoint") == ["breakpoints: "]
    assert d.execute("breakpoint 6") == ["breakpoint at: l6:\tjeq #0x50, l7, l8"]
    assert d.execute("breakpoint 1")[0].startswith("breakpoint at: l1:")
    assert d.execute("breakpoint 6") == ["breakpoint already set!",
                                         "breakpoint at: l6:\tjeq #0x50, l7, l8"]
    assert d.execute("breakpoint") == ["breakpoints: 6 1 "]
    assert d.execute("breakpoint res") == []          # any prefix of 'reset'
    assert d.execute("breakpoint") == ["breakpoints: "]
    with pytest.raises(DbgError, match="no instruction 9: the program has 9"):
        d.execute("breakpoint 9")                      # bpf_dbg ignores it silently


def test_completions(files):
    d = Debugger("socket")
    assert d.completions("", "") == [c + " " for c in
                                     ("load", "select", "step", "run", "breakpoint", "disassemble",
                                      "dump", "regs", "input", "mem", "path", "help", "quit")]
    assert d.completions("s", "s") == ["select ", "step "]
    assert d.completions("load ", "") == ["bpf ", "pcap ", "packet ", "syscall ", "events "]
    assert d.completions("load p", "p") == ["pcap ", "packet "]
    assert d.completions("breakpoint r", "r") == ["reset"]
    (files / "sub").mkdir()
    prefix = str(files / "s")
    assert d.completions(f"load pc {prefix}", prefix) == [str(files / "sub") + "/"]
    assert d.completions("step ", "") == []


# --- the walk through packets -----------------------------------------------------------

def test_run_counts_and_rewinds(files):
    d = session(files)
    assert d.execute("run") == ["bpf passes:1 fails:2"]
    assert d.cur == 0
    assert d.execute("run 2") == ["bpf passes:1 fails:1"]
    assert d.execute("run") == ["bpf passes:1 fails:2"]   # counters restart each time


def test_step_to_the_deciding_jump_shows_why(files):
    d = session(files)
    d.execute("select 2")
    d.execute("breakpoint 6")
    out = d.execute("run")
    assert out[-1] == "(breakpoint)" and "-- packet dump --" in out
    assert field(out, "pc") == "[6]"                       # stopped before pc 6 runs
    assert field(out, "A") == "[0x000050][80]"              # the destination port
    assert field(out, "X") == "[0x000014][20]"              # IP header length
    out = d.execute("step")
    assert out[0].endswith("; A 0x50 == 0x50: true -> l7")
    out = d.execute("step")
    assert out[0].endswith("; returns 0x40000")
    assert field(out, "ret") == "[0x040000][262144]!"        # bpf_dbg never shows this while stepping
    assert "verdict:  0x40000 (accept: the whole packet, 54 bytes)" in out
    assert out[-1] == "(next packet)" and d.cur == 2


def test_false_branch_explained(files):
    d = session(files)
    out = d.execute("step 2")
    assert out[1].endswith("; A 0x806 == 0x800: false -> l8")
    out = d.execute("step")
    assert "verdict:  0 (drop)" in out


def test_run_resumes_after_breakpoint_and_keeps_counts(files):
    d = session(files)
    d.execute("breakpoint 0")
    for n in (1, 2, 3):
        out = d.execute("run")
        assert out[-1] == "(breakpoint)" and d.cur == n - 1 and field(out, "pc") == "[0]"
    assert d.execute("run") == ["bpf passes:1 fails:2"]


def test_run_from_a_stepped_onto_breakpoint_continues(files):
    d = session(files)
    d.execute("select 2")
    d.execute("breakpoint 4")                  # only the TCP packet reaches pc 4
    assert field(d.execute("step 4"), "pc") == "[4]"
    assert d.execute("run") == ["bpf passes:1 fails:1"]   # like gdb's continue: no stop at pc 4
    d.execute("step 1")                        # packet 1 in progress
    out = d.execute("run")
    assert out[-1] == "(breakpoint)" and d.cur == 1 and field(out, "pc") == "[4]"


def test_step_wraps_to_first_packet(files):
    d = session(files)
    d.execute("select 3")
    out = d.execute("step 100")
    assert out[-1] == "(going back to first packet)" and d.cur == 0


def test_step_back_reaches_the_first_instruction(files):
    d = session(files)
    d.execute("select 2")
    d.execute("step 5")
    out = d.execute("step -5")                  # bpf_dbg cannot rewind to pc 0
    assert field(out, "pc") == "[0]" and field(out, "A") == "[00000000][0]"
    d.execute("step 5")
    out = d.execute("step -1")
    assert field(out, "pc") == "[4]" and field(out, "X") == "[00000000][0]"
    out = d.execute("step")
    assert field(out, "X") == "[0x000014][20]"
    with pytest.raises(DbgError, match="reached bottom of register history stack"):
        d.execute("step -6")


def test_path_lists_how_the_program_got_here(files):
    d = session(files)
    d.execute("breakpoint 8")
    assert d.execute("run")[-1] == "(breakpoint)"       # ARP: ldh [12], jeq false -> l8
    path = d.execute("path")
    assert path[0] == "packet #1 of 3: 42 bytes: 2 instruction(s) run"
    assert path[1].startswith("l0: ldh [12]") and path[1].endswith("; A = 0x806 (bytes 12..13)")
    assert path[2].endswith("; A 0x806 == 0x800: false -> l8")
    d.execute("step -1")
    assert d.execute("path")[1:] == path[1:2]


def test_select_is_one_based(files):
    """bpf_dbg's `select N` lands on packet N+1; here `select 2` is the second packet."""
    d = session(files)
    assert d.execute("select 2") == ["packet #2 of 3: 54 bytes"]
    assert d.execute("input")[1] == "len: 54"
    assert d.execute("select 0") == ["packet count starts with 1, clamping!",
                                     "packet #1 of 3: 42 bytes"]
    with pytest.raises(DbgError, match=r"no packet #4 available! \(there are 3\)"):
        d.execute("select 4")


def test_big_endian_and_nanosecond_pcaps(files):
    """bpf_dbg accepts only host-order 0xa1b2c3d4 ('wrong pcap magic!')."""
    d = session(files, pcap="be.pcap")
    assert d.execute("run") == ["bpf passes:1 fails:2"]
    (files / "ns.pcap").write_bytes(pcap_file(PACKETS, ">", magic=0xa1b23c4d))
    assert d.execute(f"load pcap {files / 'ns.pcap'}") == [f"pcap: 3 packets from {files / 'ns.pcap'}"]


# --- bpf_dbg's engine quirks, fixed ------------------------------------------------------

def verdict_of(files, program, packet=ARP):
    d = Debugger("socket")
    d.execute("load bpf " + program)
    d.execute("load packet " + packet.hex())
    out = d.execute("step 100")
    return [ln for ln in out if ln.startswith("verdict:")][0], out


def test_high_return_values_count_as_passes(files):
    """bpf_dbg holds the result in an int: ret >= 0x80000000 looks like a breakpoint."""
    d = session(files, program="ret #0xffffffff")
    assert d.execute("run") == ["bpf passes:3 fails:0"]
    assert d.execute("run") == ["bpf passes:3 fails:0"]   # and nothing is left stuck


def test_extensions_run():
    """bpf_dbg refuses every LD with k > SKF_AD_OFF ('extensions currently not supported!')."""
    verdict, out = verdict_of(None, "4,32 0 0 4294963200,21 0 1 0,6 0 0 1,6 0 0 2,")  # ld proto
    assert out[0].endswith("; A = 0x0 (SKF_AD_PROTOCOL)") and verdict == "verdict:  0x1 (accept: the first 1 of 42 bytes)"
    # An immediate that merely looks like an ancillary offset is just a number.
    verdict, out = verdict_of(None, "2,0 0 0 4294963204,22 0 0 0,")
    assert verdict == "verdict:  0xfffff004 (accept: the whole packet, 42 bytes)"


def test_device_fields_without_a_device(files, runner, cli):
    """`ld ifidx` on a socket without a device ends the program returning A (Linux's converted code)."""
    (files / "if.asm").write_text("ld #7\nld ifidx\nret #1\n")
    res = runner.invoke(cli, ["dbg", str(files / "if.asm"), "--packet", "00"], input="step 2\n")
    assert "; SKF_AD_IFINDEX without a device: the program ends returning A = 0x7" in res.output
    assert "verdict:  0x7 (accept: the whole packet, 1 byte)" in res.output
    res = runner.invoke(cli, ["dbg", str(files / "if.asm"), "--packet", "00", "--ctx", "ifindex=5"],
                        input="step 3\n")
    assert "; A = 0x5 (SKF_AD_IFINDEX)" in res.output and "verdict:  0x1 " in res.output
    res = runner.invoke(cli, ["dbg", "--ctx", "ifindex=5", "--profile", "pio"], input="")
    assert res.exit_code == 2 and "--ctx applies to --profile socket" in res.stderr


def test_indexed_word_load_out_of_bounds_aborts():
    """bpf_dbg's `ld [x+k]` out of bounds keeps A and carries on; the kernel returns 0."""
    verdict, out = verdict_of(None, "4,1 0 0 40,64 0 0 0,6 0 0 1,6 0 0 1,")   # ldx #40; ld [x+0]
    assert verdict.startswith("verdict:  0 (drop: the program aborted: load of 4 byte(s) at offset 40")
    assert "aborted" in out[1]


def test_ldx_len_writes_x():
    """bpf_dbg's `ldx len` writes A."""
    verdict, out = verdict_of(None, "3,0 0 0 7,129 0 0 0,22 0 0 0,")          # ld #7; ldx len; ret a
    assert out[1].endswith("; X = len = 42")
    assert verdict.startswith("verdict:  0x7 ")


def test_absolute_load_past_the_packet_aborts():
    """bpf_dbg computes caplen - k in an int compared with size_t: k > caplen reads past the buffer."""
    verdict, _ = verdict_of(None, "2,32 0 0 100,6 0 0 1,")                      # ld [100]; ret #1
    assert verdict.startswith("verdict:  0 (drop: the program aborted")
    verdict, _ = verdict_of(None, "2,32 0 0 38,6 0 0 1,")                       # ld [38]: the last word
    assert verdict.startswith("verdict:  0x1 ")


@pytest.mark.parametrize("shift, result", [(33, 2), (32, 1), (0xffffffff, 1 << 31)])
def test_shift_by_x_is_masked(shift, result):
    """C's `A <<= X` is undefined for X >= 32; the kernel shifts by X & 31."""
    verdict, _ = verdict_of(None, f"4,1 0 0 {shift},0 0 0 1,108 0 0 0,22 0 0 0,")
    assert verdict.startswith(f"verdict:  {result:#x} ")


def test_division_by_zero_x_returns_zero():
    verdict, out = verdict_of(None, "4,1 0 0 0,0 0 0 9,60 0 0 0,6 0 0 1,")       # div x, X = 0
    assert verdict.startswith("verdict:  0 (drop: the program aborted: division by zero")


def test_program_the_kernel_refuses_is_not_loaded():
    """bpf_dbg asks the kernel (SO_ATTACH_FILTER); bpfio's verifier gives the same answer, with the pc."""
    d = Debugger("socket")
    with pytest.raises(BpfError, match=r"pc 0 \(ld #0\): the last instruction must be"):
        d.execute("load bpf 1,0 0 0 0,")
    with pytest.raises(BpfError, match="pc 1 .*not one of the kernel's 49"):
        d.execute("load bpf 2,6 0 0 0,16 0 0 0,")
    assert d.program is None


# --- errors --------------------------------------------------------------------------

@pytest.mark.parametrize("cmd, message", [
    ("step", "no bpf program loaded"),
    ("frobnicate", "unknown command 'frobnicate'"),
    ("load", "usage: load bpf"),
    ("load pcap /nonexistent.pcap", "/nonexistent.pcap"),
    ("load syscall open", "load syscall needs --profile seccomp"),
    ("load bpf nofile.bpf", "cannot load 'nofile.bpf': no such file, and not a program either"),
    ("load bpf ld #1", "pc 0 (ld #1): the last instruction must be"),
])
def test_error_messages(cmd, message):
    d = Debugger("socket")
    with pytest.raises(BpfError, match=re.escape(message)):
        d.execute(cmd)


def test_unbalanced_quotes():
    with pytest.raises(DbgError, match="cannot split ''open' into words: No closing quotation"):
        Debugger("seccomp").execute("load syscall 'open")


def test_no_packets_message(files):
    d = session(files, pcap=None)
    with pytest.raises(DbgError, match=r"no packets loaded \(load pcap FILE or load packet HEX\)"):
        d.execute("run")


def test_load_resets_breakpoints_and_position(files):
    d = session(files)
    d.execute("breakpoint 3")
    d.execute("select 2")
    d.execute(f"load bpf {files / 'f.asm'}")
    assert d.execute("breakpoint") == ["breakpoints: "] and d.cur == 0


# --- seccomp ----------------------------------------------------------------------------

SECCOMP = textwrap.dedent("""\
        ld [4]
        jeq #0xc000003e, good, kill
    good: ld [0]
        jeq #2, deny, allow
    deny: ret #0x50001
    allow: ret #0x7fff0000
    kill: ret #0
    """)


def test_seccomp_session(tmp_path):
    (tmp_path / "s.asm").write_text(SECCOMP)
    d = Debugger("seccomp")
    d.execute(f"load bpf {tmp_path / 's.asm'}")
    d.execute("load syscall open 0x1000 2")
    d.execute("load syscall 0")
    d.execute("load syscall write arch=i386")
    assert d.execute("run") == ["bpf passes:2 fails:1",
                                "verdicts: ALLOW:1 ERRNO(1):1 KILL_THREAD:1"]
    out = d.execute("step 3")
    assert out[0].endswith("; A = 0xc000003e (arch)") and out[2].endswith("; A = 0x2 (nr)")
    out = d.execute("step 2")
    assert "verdict:  ERRNO(1) 0x00050001" in out
    assert d.execute("input")[1] == "nr:       0 (read)"


# --- pio without a machine ------------------------------------------------------------------

COUNTER = textwrap.dedent("""\
    #include <pio.inc>
        ld [PIO_DIR]
        jeq #PIO_OUT, write, read
    write: ld M[0]
        add #1
        st M[0]
        ret #PIO_DONE
    read: ld M[0]
        ret #PIO_DONE
    """)


def write_events(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def counter(tmp_path):
    (tmp_path / "c.asm").write_text(COUNTER)
    events = write_events(tmp_path / "e.jsonl", [
        {"op": "out", "port": "0x80", "size": 1, "value": 1, "t_ns": 10},
        {"op": "out", "port": "0x80", "size": 1, "value": 2, "t_ns": 20},
        {"op": "in", "port": "0x81", "size": 1, "value": 2, "t_ns": 30},
        {"op": "out", "port": "0x80", "size": 1, "value": 3, "t_ns": 40}])
    d = Debugger("pio")
    d.execute(f"load bpf {tmp_path / 'c.asm'}")
    assert d.execute(f"load events {events}") == [
        f"events: 4 accesses (jsonl) from {events}; base port 0x80 (PIO_OFFSET = port - 0x80)"]
    return d


def test_pio_shared_words_carry_over_between_events(counter):
    d = counter
    d.execute("select 3")                     # two OUTs ran before: M[0] = 2
    out = d.execute("step 3")
    assert out[0].endswith("; A = 0x0 (PIO_DIR)") and out[2].endswith("; A = M[0] = 0x2")
    out = d.execute("step")
    assert "verdict:  DONE 0x00010000 (handled; the guest reads A & 0xff = 0x2)" in out
    assert d.execute("step 5")[4].endswith("; M[0] = A = 0x3 (was 0x2)")
    out = d.execute("step")
    assert "M[0]: 0x00000002 -> 0x00000003" in out
    assert d.execute("mem") == ["mem: 16 words, event #4: before -> after",
                                "M[0]: [0x000002][2] -> [0x000003][3]  *"]
    d.execute("select 1")                     # going back replays from the start
    assert d.execute("mem")[1] == "M[0,15]:  [00000000][0]"


def test_pio_step_back_restores_shared_words(counter):
    d = counter
    d.execute("select 2")
    d.execute("step 5")                       # through `st M[0]`
    assert d.execute("mem")[1] == "M[0]: [0x000001][1] -> [0x000002][2]  *"
    d.execute("step -1")
    assert d.execute("mem")[1] == "M[0]: [0x000001][1] -> [0x000001][1]"


def test_pio_run_verdicts(counter):
    assert counter.execute("run") == ["bpf passes:4 fails:0", "verdicts: DONE:4"]


def test_pio_exit_mentions_the_missing_model(tmp_path):
    (tmp_path / "x.asm").write_text("#include <pio.inc>\nret #PIO_EXIT\n")
    write_events(tmp_path / "e.jsonl", [{"op": "in", "port": 0x60, "size": 1}])
    d = Debugger("pio")
    d.execute(f"load bpf {tmp_path / 'x.asm'}")
    d.execute(f"load events {tmp_path / 'e.jsonl'}")
    out = d.execute("step")
    assert "verdict:  EXIT 0x00000000 (not handled: the device model serves the access)" in out
    assert any("--machine CONFIG --binding NAME" in ln for ln in out)


def test_pio_kvm_pio_trace_and_clock(tmp_path):
    (tmp_path / "t.asm").write_text("#include <pio.inc>\nld [PIO_TICKS]\nret #PIO_DONE\n")
    (tmp_path / "t.trace").write_text(
        "# tracer: nop\n"
        " qemu-system-x86 4242 [001]  1234.000001: kvm:kvm_pio: pio_read at 0x608 size 4 count 1 val 0x1234\n"
        " qemu-system-x86 4242 [001]  1234.500000: kvm:kvm_pio: pio_write at 0x60a size 2 count 1 val 0x7\n")
    d = Debugger("pio", clock_hz=1000)
    d.execute(f"load bpf {tmp_path / 't.asm'}")
    assert d.execute(f"load events {tmp_path / 't.trace'} base=0x600")[0].endswith(
        "base port 0x600 (PIO_OFFSET = port - 0x600)")
    assert d.execute("select 2") == ["event #2 of 2 (line 3): OUT port 0x60a size 2 value 0x7"]
    dump = d.execute("input")
    assert "PIO_OFFSET:   0xa" in dump and "PIO_DATA:     0x7" in dump
    # 1234.5 s at 1 kHz = 1234500 ticks
    assert d.execute("step")[0].endswith(f"; A = {1234500:#x} (PIO_TICKS)")


# --- pio machine mode ----------------------------------------------------------------------

MODEL = textwrap.dedent("""\
    class Echo:
        def attach(self, binding):
            self.binding = binding
        def io_read(self, offset, size):
            self.binding.mem[1] = 7
            return 0x42
        def io_write(self, offset, size, value):
            pass
    """)
LATCH = textwrap.dedent("""\
    #include <pio.inc>
        ld [PIO_DIR]
        jeq #PIO_OUT, write, slow
    write: ld [PIO_DATA]
        st M[0]
        ret #PIO_DONE
    slow: ret #PIO_EXIT
    """)


@pytest.fixture
def machine(tmp_path, monkeypatch):
    (tmp_path / "dbgmodels.py").write_text(MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "latch.asm").write_text(LATCH)
    (tmp_path / "m.toml").write_text(textwrap.dedent("""\
        [bindings.latch]
        base = 0x300
        length = 2
        program = "latch.asm"
        model = "dbgmodels:Echo"
        [bindings.other]
        base = 0x80
        length = 1
        """))
    write_events(tmp_path / "e.jsonl", [
        {"op": "out", "port": "0x300", "size": 1, "value": 9, "t_ns": 1},
        {"op": "out", "port": "0x80", "size": 1, "value": 1, "t_ns": 2},
        {"op": "in", "port": "0x301", "size": 1, "value": 0x42, "t_ns": 3},
        {"op": "in", "port": "0x300", "size": 1, "value": 0x41, "t_ns": 4}])
    d = Debugger("pio")
    assert d.attach_machine(str(tmp_path / "m.toml"), "latch") == [
        "binding 'latch': ports 0x300-0x301, 6 instructions, 16 shared words, model Echo"]
    out = d.execute(f"load events {tmp_path / 'e.jsonl'}")
    assert out[0].endswith("4 accesses (jsonl) from " + str(tmp_path / "e.jsonl") + ", 3 for binding 'latch'")
    yield d
    d.close()


def test_machine_mode_runs_the_model_after_exit(machine):
    d = machine
    d.execute("select 2")
    assert d.execute("mem")[1] == "M[0]: [0x000009][9] -> [0x000009][9]"   # event 1 ran
    out = d.execute("step 3")
    assert "verdict:  EXIT 0x00000000 (not handled: the device model serves the access)" in out
    assert "device model Echo served the access" in out
    assert "guest reads 0x42 (recorded 0x42)" in out
    assert "M[1]: 0x00000000 -> 0x00000007 (model)" in out
    out = d.execute("step 3")
    assert "guest reads 0x42 (recorded 0x41: MISMATCH)" in out
    assert not any(ln.startswith("note:") for ln in out)


def test_machine_mode_replacement_program(machine, tmp_path):
    (tmp_path / "done.asm").write_text("#include <pio.inc>\nld #0x55\nret #PIO_DONE\n")
    d = machine
    d.execute(f"load bpf {tmp_path / 'done.asm'}")
    d.execute("select 2")
    out = d.execute("step 2")
    assert "guest reads 0x55 (recorded 0x42: MISMATCH)" in out
    assert not any("device model" in ln for ln in out)


def test_machine_mode_errors(tmp_path, machine):
    d = Debugger("pio")
    with pytest.raises(BpfError, match="no binding named 'nope' \\(bindings: latch, other\\)"):
        d.attach_machine(str(tmp_path / "m.toml"), "nope")
    with pytest.raises(DbgError, match="binding 'other' has no program"):
        d.attach_machine(str(tmp_path / "m.toml"), "other")


# --- tcpdump-compiled filters ---------------------------------------------------------------

@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_tcpdump_filter_and_pcap(files):
    ddd = subprocess.run(["tcpdump", "-ddd", "-y", "EN10MB", "ip and tcp port 80"],
                         capture_output=True, text=True, check=True).stdout
    inline = ddd.strip().replace("\n", ",") + ","        # bpf_dbg's `tcpdump -ddd | tr '\n' ','`
    d = Debugger("socket")
    d.execute(f"load bpf {inline}")
    d.execute(f"load pcap {files / 'le.pcap'}")
    assert d.execute("run") == ["bpf passes:1 fails:2"]
    jumps = [ln for ln in d.execute("disassemble") if "jeq #0x50" in ln]
    deciding = int(jumps[-1].split(":")[0][1:])          # the dst-port test
    d.execute(f"breakpoint {deciding}")
    out = d.execute("run")
    assert out[-1] == "(breakpoint)" and d.cur == 1
    assert d.execute("step")[0].endswith("; A 0x50 == 0x50: true -> l11")


# --- the command line: -x scripts and stdin -----------------------------------------------

def test_script_transcript(files, runner, cli):
    script = files / "s.dbg"
    script.write_text("# comment\nselect 2\nbreakpoint 6\nrun\nstep\nquit\nstep\n")
    res = runner.invoke(cli, ["dbg", str(files / "f.asm"), "--pcap", str(files / "le.pcap"),
                              "-x", str(script)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[:3] == [f"bpf: 9 instructions from {files / 'f.asm'} (socket profile)",
                         f"pcap: 3 packets from {files / 'le.pcap'}", "> select 2"]
    assert "> quit" in lines and lines[-1] == "> quit"    # nothing runs after quit
    assert "(breakpoint)" in lines


def test_script_error_stops_with_place(files, runner, cli):
    script = files / "s.dbg"
    script.write_text("run\nselect 7\nrun\n")
    res = runner.invoke(cli, ["dbg", str(files / "f.asm"), "--pcap", str(files / "le.pcap"),
                              "-x", str(script)])
    assert res.exit_code == 1
    assert res.stderr == f"{script}:2: error: no packet #7 available! (there are 3)\n"
    assert res.output.count("bpf passes") == 1
    res = runner.invoke(cli, ["dbg", str(files / "f.asm"), "--pcap", str(files / "le.pcap"),
                              "-x", str(script), "--keep-going"])
    assert res.exit_code == 1 and res.output.count("bpf passes") == 2


def test_script_that_is_not_utf8_is_one_placed_line(files, runner, cli):
    """Found by the fuzz harness: a script with invalid UTF-8 was a raw UnicodeDecodeError."""
    script = files / "s.dbg"
    script.write_bytes(b"run\n\xff step\n")
    for args, stdin, name in ((["-x", str(script)], None, str(script)),
                              (["-x", "-"], script.read_bytes(), "<stdin>")):
        res = runner.invoke(cli, ["dbg", str(files / "f.asm"), *args], input=stdin)
        assert res.exit_code == 1, res.output
        assert res.stderr == f"{name}:2: error: not UTF-8 text (byte 0xff)\n"


def test_commands_from_stdin_and_option_errors(files, runner, cli):
    res = runner.invoke(cli, ["dbg", str(files / "f.asm"), "--packet", TCP80.hex()], input="run\n")
    assert res.exit_code == 0 and res.output.splitlines()[-1] == "bpf passes:1 fails:0"
    res = runner.invoke(cli, ["dbg", "--machine", "x.toml"], input="")
    assert res.exit_code == 2 and "--machine and --binding go together" in res.output + res.stderr
    res = runner.invoke(cli, ["dbg", str(files / "nope.asm")], input="")
    assert res.exit_code == 1 and "nope.asm" in res.stderr and "Traceback" not in res.stderr


def test_installed_entry_point(files):
    proc = subprocess.run([bpfio_exe(), "dbg", str(files / "f.asm"), "--pcap", str(files / "be.pcap")],
                          input="run\nquit\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-2:] == ["bpf passes:1 fails:2", "> quit"]


# --- no command line ends in a traceback ----------------------------------------------------

WORDS = ["load", "bpf", "pcap", "packet", "syscall", "events", "select", "step", "run",
         "breakpoint", "reset", "disassemble", "dump", "regs", "input", "mem", "path", "help",
         "0", "1", "2", "-1", "-3", "5", "99", "0x10", "-0", "abc", "'", "#", "ff00", "arch=i386",
         "base=0x80", "l3", "L9", "4,40 0 0 12,21 0 1 2048,6 0 0 65535,6 0 0 0,", "ret", "#1", "x"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(profile=st.sampled_from(["socket", "seccomp", "pio"]),
       script=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4), max_size=12))
def test_random_commands_only_raise_bpf_errors(files, profile, script):
    if profile == "socket":
        d = session(files)
    elif profile == "seccomp":
        d = session(files, program=SECCOMP, pcap=None, profile="seccomp")
        d.execute("load syscall open 1 2")
        d.execute("load syscall read")
    else:
        d = session(files, program=COUNTER, pcap=None, profile="pio")
        events = write_events(files / "r.jsonl", [
            {"op": "out", "port": 0x80, "size": 1, "value": 1},
            {"op": "in", "port": 0x81, "size": 2, "value": 1}])
        d.execute(f"load events {events}")
    for words in script:
        try:
            d.execute(" ".join(words))
        except BpfError:
            pass


def test_a_file_name_with_a_nul_byte_is_one_placed_line(tmp_path):
    # Found by the long fuzz run: `load events` / `load pcap` with a NUL in the name reached
    # open() and raised a raw ValueError ("embedded null byte").
    from devtools import bpfio_exe
    import subprocess
    prog = tmp_path / "s.asm"
    prog.write_text("ret #1\n")
    for profile, line in (("socket", b"load pcap \0\n"), ("pio", b"load events \0\n")):
        script = tmp_path / f"{profile}.dbg"
        script.write_bytes(line)
        r = subprocess.run([bpfio_exe(), "dbg", "--profile", profile, "-x", str(script),
                            str(prog)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r
        assert "contains a NUL byte" in r.stdout + r.stderr
        assert "internal error" not in r.stdout + r.stderr
