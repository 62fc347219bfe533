"""Issue 17 (values): out-of-range CLI values are errors, never masked; empty replays fail.

Each case is an input of the issue; the exact line and exit status are asserted (2: click
usage errors, 1: placed errors).
"""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from bpfio.cli import main
from devtools import EXAMPLES, bpfio_exe

PC = str(EXAMPLES / "pc.toml")


@pytest.fixture
def ret0(tmp_path):
    path = tmp_path / "ret0.asm"
    path.write_text("ret #0\n")
    return str(path)


@pytest.mark.parametrize("args,line", [
    (["--profile", "pio", "--event", "in 0x608 4 vcpu=99999999999999"],
     "Error: Invalid value for --event: 'in 0x608 4 vcpu=99999999999999': "
     "vcpu 99999999999999 is outside 0..0xffffffff"),
    (["--profile", "pio", "--event", "in 0x608 4 vcpu=-1"],
     "Error: Invalid value for --event: 'in 0x608 4 vcpu=-1': vcpu -1 is outside 0..0xffffffff"),
    (["--profile", "pio", "--event", "in 0x608 4 ticks=-1"],
     "Error: Invalid value for --event: 'in 0x608 4 ticks=-1': "
     "ticks -1 is outside 0..0xffffffffffffffff"),
    (["--profile", "pio", "--event", "in 0x608 4 offset=0x10000"],
     "Error: Invalid value for --event: 'in 0x608 4 offset=0x10000': "
     "offset 0x10000 is outside 0..0xffff"),
    (["--profile", "pio", "--event", "in 0x608 4", "--mem", "0=0x100000000"],
     "Error: Invalid value for --mem: word 0 0x100000000 is outside 0..0xffffffff"),
    (["--profile", "seccomp", "--syscall", "4294967296"],
     "Error: Invalid value for --syscall: system call number 4294967296 is outside "
     "-2147483648..0xffffffff"),
    (["--profile", "seccomp", "--syscall", "read", "--arch", "0x1ffffffff"],
     "Error: Invalid value for --arch: arch 0x1ffffffff is outside 0..0xffffffff"),
    (["--profile", "seccomp", "--syscall", "read", "--arg", "0=0x1ffffffffffffffff"],
     "Error: Invalid value for --arg: argument 0 0x1ffffffffffffffff is outside "
     "0..0xffffffffffffffff"),
    (["--profile", "seccomp", "--syscall", "read", "--ip", "-1"],
     "Error: Invalid value for --ip: instruction pointer -1 is outside 0..0xffffffffffffffff"),
    (["--packet", "00", "--ctx", "ifindex=0x100000000"],
     "Error: Invalid value for --ctx: ifindex: 4294967296 is not a u32 in 0..0xffffffff"),
    (["--packet", "00", "--ctx", "protocol=-1"],
     "Error: Invalid value for --ctx: protocol: -1 is not a u16 in 0..65535"),
])
def test_run_out_of_range_values_are_usage_errors(ret0, args, line):
    result = CliRunner().invoke(main, ["run", *args, ret0])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == line


@pytest.mark.parametrize("args,out", [
    (["--profile", "seccomp", "--syscall", "-1", "--arch", "0xffffffff",
      "--arg", "5=0xffffffffffffffff"], "KILL_THREAD 0x00000000\n"),
    (["--profile", "seccomp", "--syscall", "0xffffffff"], "KILL_THREAD 0x00000000\n"),
    (["--profile", "pio", "--event", "in 0x608 4 vcpu=0xffffffff ticks=0xffffffffffffffff"],
     "EXIT 0x00000000\n"),
    (["--packet", "00", "--ctx", "ifindex=0xffffffff", "--ctx", "ll_off=14"], "0\n"),
])
def test_run_values_at_the_edges_are_accepted(ret0, args, out):
    result = CliRunner().invoke(main, ["run", *args, ret0])
    assert (result.exit_code, result.output) == (0, out)


def test_dbg_base_above_an_event_is_a_placed_error(tmp_path):
    events = tmp_path / "ev.jsonl"
    events.write_text('{"op": "in", "port": "0x608", "size": 4}\n')
    result = CliRunner().invoke(main, ["dbg", "asm/pmtimer.asm", "--events", str(events),
                                       "--base", "0x700"], input="run\nquit\n")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"{events}:1: error: port 0x608 is below the base port 0x700 "
        "(PIO_OFFSET = port - base would be negative)")


@pytest.mark.parametrize("args,line", [
    (["--base", "0x10000"], "Error: Invalid value for '--base': '0x10000' is not a port "
                            "(0..0xffff)"),
    (["--base", "-1"], "Error: Invalid value for '--base': '-1' is not a port (0..0xffff)"),
])
def test_dbg_base_outside_ports_is_a_usage_error(args, line):
    result = CliRunner().invoke(main, ["dbg", "asm/pmtimer.asm", *args], input="quit\n")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == line


@pytest.mark.parametrize("command,line", [
    ("load syscall 4294967296",
     "<stdin>:1: error: system call number 4294967296 is outside -2147483648..0xffffffff"),
    ("load syscall read 0x1ffffffffffffffff",
     "<stdin>:1: error: argument 0 0x1ffffffffffffffff is outside 0..0xffffffffffffffff"),
    ("load syscall read arch=0x1ffffffff",
     "<stdin>:1: error: arch 0x1ffffffff is outside 0..0xffffffff"),
    ("load syscall read ip=-1", "<stdin>:1: error: ip -1 is outside 0..0xffffffffffffffff"),
])
def test_dbg_load_syscall_values_are_not_masked(ret0, command, line):
    result = CliRunner().invoke(main, ["dbg", "--profile", "seccomp", ret0],
                                input=command + "\nquit\n")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == line


def test_dbg_ctx_out_of_range_is_a_usage_error(ret0):
    result = CliRunner().invoke(main, ["dbg", ret0, "--packet", "00", "--ctx",
                                       "mark=0x100000000"], input="quit\n")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: Invalid value for --ctx: mark: 4294967296 is not a u32 in 0..0xffffffff")


@pytest.mark.parametrize("field,line", [
    ("ifindex", "'ifindex': expected FIELD=VALUE"),
    ("bogus=1", "unknown context field 'bogus' (one of cpu, hatype, head, "),
    ("head=zz", "head: 'zz' is not hex bytes"),
    ("mark=1e5", "mark: '1e5' is not a number"),
    ("mark=" + "9" * 1001, "mark: number of 1001 digits is too long (the limit is 1000)"),
    ("protocol=0x10000", "protocol: 65536 is not a u16 in 0..65535"),
])
def test_run_and_dbg_read_ctx_alike(ret0, field, line):
    """One --ctx reader serves both commands: the same line, exit 2, for each bad field."""
    got = []
    for command in ("run", "dbg"):
        result = CliRunner().invoke(main, [command, ret0, "--packet", "00", "--ctx", field],
                                    input="quit\n")
        assert result.exit_code == 2, (command, result.output)
        got.append(result.output.splitlines()[-1])
    assert got[0] == got[1]
    assert got[0].startswith("Error: Invalid value for --ctx: " + line)


# --- item 9: a file with no event is an error ------------------------------------------------

@pytest.mark.parametrize("content,extra,why", [
    (bytes(range(256)) * 3, [], "none of its 7 line(s) is a kvm_pio event"),   # \n and \r
    (b"[1,2,3]\n", [], "none of its 1 line(s) is a kvm_pio event"),
    (b"\xff\xfe\x80abc\n", [], "none of its 1 line(s) is a kvm_pio event"),
    (b'{"op": "in", "port": "0x608", "size": 4}\n', ["--format", "kvm_pio"],
     "none of its 1 line(s) is a kvm_pio event"),
    (b"", [], "it is empty"),
    (b"# only a comment\n\n", [], "none of its 2 line(s) is an event"),
    (b'{"op": "in"}\n{"op": "in"}\n', ["--skip-bad"],
     "none of its 2 line(s) is a jsonl event (2 malformed, skipped)"),
])
def test_machine_run_without_events_is_a_placed_error(tmp_path, content, extra, why):
    events = tmp_path / "events"
    events.write_bytes(content)
    result = CliRunner().invoke(main, ["machine", "run", PC, "--events", str(events), *extra])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"{events}: error: no events: {why}"


@pytest.mark.parametrize("stdin,why", [(b"", "it is empty"),
                                       (b"\xff\xfe\n", "none of its 1 line(s) is a kvm_pio event")])
def test_machine_run_from_stdin_without_events_is_one_line(stdin, why):
    proc = subprocess.run([bpfio_exe(), "machine", "run", PC, "--events", "-"], input=stdin,
                          capture_output=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert proc.stderr.decode() == f"<stdin>: error: no events: {why}\n"


def test_kvm_pio_timestamp_past_u64_ns_is_a_placed_error(tmp_path):
    trace = tmp_path / "big.trace"
    trace.write_text("bpfio-0 [000] .... 1" + "0" * 40 + ".000001: kvm_pio: pio_read at 0x608 "
                     "size 4 count 1 val 0x1\n")
    result = CliRunner().invoke(main, ["machine", "run", PC, "--events", str(trace)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        f"{trace}:1: error: timestamp 1{'0' * 40}.000001 s is past 2**64 ns (about 584 years)")


@pytest.mark.parametrize("command,value", [(["equiv", "A", "A"], "nan"), (["equiv", "A", "A"], "inf"),
                                           (["prove", "A"], "nan"), (["prove", "A"], "inf"),
                                           (["opt", "A"], "nan"),   # opt's ranges stop inf
                                           (["opt", "A", "--search", "1"], "nan")])
def test_solver_timeouts_must_be_finite(ret0, command, value):
    args = [ret0 if a == "A" else a for a in command]
    option = "--search" if "--search" in args else "--timeout"
    args = [a for a in args if a not in ("--search", "1")]
    result = CliRunner().invoke(main, [*args, option, value])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"Error: Invalid value for '{option}': '{value}' is not a finite number")
