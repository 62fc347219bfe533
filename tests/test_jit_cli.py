"""``bpfio jit`` and the JIT engine of ``bpfio run``: output, fallback, errors."""

from __future__ import annotations

import subprocess

import pytest

from bpfio.exec.jit.mem import unavailable_reason
from devtools import bpfio_env, bpfio_exe

needs_jit = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
ARP = "ldh [12]\njne #0x806, drop\nret #-1\ndrop: ret #0\n"
ARP_PKT = "ffffffffffff" + "001122334455" + "0806" + "0001"


@pytest.fixture
def arp_file(tmp_path):
    path = tmp_path / "arp.asm"
    path.write_text(ARP)
    return str(path)


@needs_jit
def test_jit_prints_native_code_under_each_cbpf_line(runner, cli, arp_file):
    res = runner.invoke(cli, ["jit", arp_file])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "; prologue"
    assert ";    0: ldh [0xc]" in lines and ";    3: ret #0" in lines
    first = lines.index(";    0: ldh [0xc]")
    assert "cmp esi, 0xe" in lines[first + 1] and "jb " in lines[first + 2]
    assert lines[-1].startswith("; ") and lines[-1].endswith("bytes of native code for 4 instructions")


@needs_jit
def test_jit_harden_and_pio_and_drivers(runner, cli, tmp_path):
    path = tmp_path / "p.asm"
    path.write_text("ld #0x12345678\nst M[20]\nret #0x10000\n")
    plain = runner.invoke(cli, ["jit", "--profile", "pio", "--mem-words", "32", str(path)])
    assert plain.exit_code == 0, plain.output
    assert "mov eax, 0x12345678" in plain.stdout and "dword ptr [rdi + 0x78]" in plain.stdout
    hard = runner.invoke(cli, ["jit", "--profile", "pio", "--mem-words", "32", "--harden", str(path)])
    assert hard.exit_code == 0 and "mov eax, 0x12345678" not in hard.stdout
    full = runner.invoke(cli, ["jit", "--profile", "pio", "--mem-words", "32", "--drivers", str(path)])
    assert "call rbp" in full.stdout and "call rbp" not in plain.stdout


def test_jit_refuses_what_the_verifier_refuses(runner, cli, tmp_path):
    path = tmp_path / "p.asm"
    path.write_text("st M[20]\nret #0x10000\n")
    res = runner.invoke(cli, ["jit", "--profile", "pio", str(path)])
    assert res.exit_code == 1 and "error:" in res.stderr and "Traceback" not in res.output


def test_jit_help_teaches(runner, cli):
    res = runner.invoke(cli, ["jit", "--help"])
    assert res.exit_code == 0
    assert "bpftool prog dump jited" in res.stdout and "bpfio jit filter.bpf" in res.stdout


def test_run_falls_back_with_one_notice(runner, cli, arp_file, monkeypatch):
    monkeypatch.setenv("BPFIO_JIT", "0")
    res = runner.invoke(cli, ["run", arp_file, "--packet", ARP_PKT, "--packet", "00"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == ["4294967295", "0"]
    assert res.stderr.splitlines() == [
        "bpfio: notice: JIT unavailable (disabled by BPFIO_JIT=0); using the compiled engine"]


def test_run_explicit_jit_when_unavailable_is_one_error_line(runner, cli, arp_file, monkeypatch):
    monkeypatch.setenv("BPFIO_JIT", "0")
    res = runner.invoke(cli, ["run", "--engine", "jit", arp_file, "--packet", "00"])
    assert res.exit_code == 1
    assert res.stderr.splitlines() == ["jit: error: native code unavailable: disabled by BPFIO_JIT=0"]


def test_run_jit_with_no_verify_is_a_usage_error(runner, cli, arp_file):
    res = runner.invoke(cli, ["run", "--engine", "jit", "--no-verify", arp_file, "--packet", "00"])
    assert res.exit_code == 2 and "verified programs only" in res.stderr


@needs_jit
@pytest.mark.parametrize("profile,args,want", [
    ("seccomp", ["--syscall", "110"], "ERRNO(1) 0x00050001"),
    ("pio", ["--event", "out 0x80 1 7", "--event", "in 0x80 1"], "DONE 0x00010000 in=0x7"),
])
def test_run_jit_engine_other_profiles(runner, cli, tmp_path, profile, args, want):
    src = {"seccomp": "ld [0]\njeq #110, deny, allow\ndeny: ret #0x50001\nallow: ret #0x7fff0000\n",
           "pio": "ld [8]\njeq #1, out, in\nout: ld [12]\nst M[0]\nret #0x10000\n"
                  "in: ld M[0]\nret #0x10000\n"}[profile]
    path = tmp_path / "p.asm"
    path.write_text(src)
    got = [runner.invoke(cli, ["run", "--profile", profile, "--engine", engine, str(path), *args])
           for engine in ("jit", "compiled", "interp")]
    assert all(r.exit_code == 0 for r in got), [r.output for r in got]
    assert got[0].stdout == got[1].stdout == got[2].stdout
    assert got[0].stdout.splitlines()[-1] == want


@needs_jit
def test_installed_entry_point_runs_jit(arp_file):
    out = subprocess.run([bpfio_exe(), "jit", arp_file], capture_output=True, text=True,
                         env=bpfio_env(), check=True).stdout
    assert "movzx eax, word ptr [rdi + 0xc]" in out
