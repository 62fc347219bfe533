"""``bpfio check`` through CliRunner and one real subprocess of the entry point."""

from __future__ import annotations

import json
import subprocess

import pytest

from bpfio.insn import Insn, Program
from devtools import bpfio_exe

ARP = "ldh [12]\njne #0x806, drop\nret #-1\ndrop: ret #0\n"
UNINIT = "ld M[3]\nret a\n"


def test_accepts_and_summarises(runner, cli):
    result = runner.invoke(cli, ["check", "-"], input=ARP)
    assert result.exit_code == 0
    assert result.stdout == "<stdin>: accepted by the socket profile (4 instructions)\n"
    assert result.stderr == ""


def test_quiet(runner, cli):
    result = runner.invoke(cli, ["check", "-q", "-"], input=ARP)
    assert (result.exit_code, result.stdout) == (0, "")


def test_rejection_is_one_line_on_stderr(runner, cli):
    result = runner.invoke(cli, ["check", "-"], input=UNINIT)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == ("<stdin>: error: pc 0 (ld M[3]): M[3] is read by the first "
                             "instruction, before anything stores it [uninit-mem, EINVAL]\n")


def test_warnings_go_to_stderr_and_keep_exit_0(runner, cli):
    result = runner.invoke(cli, ["check", "-"], input="ld #1\nst M[0]\nret #0\n")
    assert result.exit_code == 0
    assert "1 warning)" in result.stdout
    assert result.stderr == ("<stdin>: warning: pc 1 (st M[0]): the value stored in M[0] "
                             "is never read [dead-store]\n")


@pytest.mark.parametrize("fmt", ["raw", "tcpdump", "c", "bpf_asm"])
def test_any_input_format(runner, cli, tmp_path, fmt):
    prog = Program([Insn(0x28, 0, 0, 12), Insn(0x15, 0, 1, 0x806),
                    Insn(0x06, 0, 0, 0xffffffff), Insn(0x06, 0, 0, 0)])
    from bpfio.text.formats import format_program
    data = format_program(prog, fmt)
    path = tmp_path / "prog"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    result = runner.invoke(cli, ["check", str(path)])
    assert result.exit_code == 0, result.stderr
    assert "(4 instructions)" in result.stdout


def test_json_accepted_and_rejected(runner, cli):
    ok = runner.invoke(cli, ["check", "--json", "-"], input="ld #1\nst M[0]\nret #0\n")
    report = json.loads(ok.stdout)
    assert ok.exit_code == 0
    assert report["accepted"] is True and report["error"] is None
    assert report["warnings"] == [{"pc": 1, "rule": "dead-store", "disasm": "st M[0]",
                                   "message": "the value stored in M[0] is never read"}]
    bad = runner.invoke(cli, ["check", "--json", "--profile", "seccomp", "-"], input=ARP)
    report = json.loads(bad.stdout)
    assert bad.exit_code == 1
    assert report["error"]["rule"] == "seccomp-opcode"
    assert report["error"]["pc"] == 0 and report["error"]["insn"] == [0x28, 0, 0, 12]
    assert report["error"]["errno"] == 22 and report["error"]["errno_name"] == "EINVAL"


def test_json_for_unreadable_input(runner, cli):
    result = runner.invoke(cli, ["check", "--json", "-"], input="ld [\n")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["accepted"] is False and report["error"]["rule"] == "input"


def test_pio_options(runner, cli):
    src = "#include <pio.inc>\nld [52]\nret #PIO_NOTIFY_1\n"     # PIO_MEM + 12
    assert runner.invoke(cli, ["check", "--profile", "pio", "--notifiers", "2", "-"],
                         input=src).exit_code == 0
    small = runner.invoke(cli, ["check", "--profile", "pio", "--notifiers", "2",
                                "--mem-words", "3", "-"], input=src)
    assert small.exit_code == 1 and "[pio-load-bounds, EINVAL]" in small.stderr
    none = runner.invoke(cli, ["check", "--profile", "pio", "-"], input=src)
    assert none.exit_code == 1 and "[pio-notifier, EINVAL]" in none.stderr


@pytest.mark.parametrize("args", [["--mem-words", "4"], ["--notifiers", "1"],
                                  ["--profile", "pio", "--mem-words", "0"],
                                  ["--profile", "pio", "--mem-words", "1025"],
                                  ["--profile", "bpf"]])
def test_usage_errors_exit_2(runner, cli, args):
    result = runner.invoke(cli, ["check", *args, "-"], input=ARP)
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr


def test_missing_file(runner, cli, tmp_path):
    result = runner.invoke(cli, ["check", str(tmp_path / "nope.bpf")])
    assert result.exit_code == 1
    assert "nope.bpf" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_real_entry_point(tmp_path):
    exe = bpfio_exe()
    path = tmp_path / "bad.bpf"
    path.write_text("ld #1\nlsh #40\nret a\n")
    proc = subprocess.run([exe, "check", str(path)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == (f"{path}: error: pc 1 (lsh #0x28): shift by 40; the kernel allows "
                           "0 to 31 [shift-too-large, EINVAL]\n")
    proc = subprocess.run([exe, "check", "--profile", "seccomp", "-"], input="ld [4]\nret a\n",
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "accepted by the seccomp profile" in proc.stdout
