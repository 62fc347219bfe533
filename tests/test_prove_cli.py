"""``bpfio equiv`` and ``bpfio prove``: answers, exit codes, counterexamples that ``bpfio run`` reproduces.

Every counterexample line ``bpfio run OPTIONS PROGRAM -> RESULT`` printed by
``equiv`` or ``prove`` is executed as ``bpfio run`` and must print RESULT,
and for ``equiv`` the two results must differ.
"""

from __future__ import annotations

import json
import random
import shlex
import subprocess
from pathlib import Path

import pytest

from bpfio.exec.gen import random_program
from bpfio.prove import equivalent

from devtools import bpfio_exe
from prove_tools import breaking

PASS_IP = "ldh [12]\njeq #0x800, ok, drop\nok: ret #-1\ndrop: ret #0\n"
PASS_ARP = "ldh [12]\njeq #0x806, ok, drop\nok: ret #-1\ndrop: ret #0\n"
PASS_IP_TOO = "ldh [12]\njeq #0x800, ok\nret #0\nok: ret #0xffffffff\n"
POLICY = """    ld [0]
    jeq #0, allow        ; read
    jeq #1, allow        ; write
    ret #0x50001         ; ERRNO(1)
allow: ret #0x7fff0000   ; ALLOW
"""
POLICY_B = POLICY.replace("jeq #1, allow", "jeq #2, allow")
# (a / b) * b + a % b against a: true (b == 0 aborts both), and far beyond the solver in 0.2 s:
# division and multiplication are what bit-vector solvers find hardest.
DIV_A = "ld [4]\ntax\nld [0]\ndiv x\nmul x\nst M[0]\nld [0]\nmod x\ntax\nld M[0]\nadd x\nret a\n"
DIV_B = "ld [4]\ntax\nld [0]\ndiv x\nld [0]\nret a\n"


@pytest.fixture
def files(tmp_path):
    def write(**named):
        out = []
        for name, text in named.items():
            path = tmp_path / f"{name}.asm"
            path.write_text(text)
            out.append(str(path))
        return out
    return write


def _ddd(prog) -> str:
    """A program in ``tcpdump -ddd`` form (any format would do; this one is exact)."""
    return f"{len(prog)}\n" + "".join(f"{c} {jt} {jf} {k}\n" for c, jt, jf, k in prog)


def _run_lines(stdout: str):
    """``(argv after 'bpfio', expected output)`` for each counterexample line."""
    out = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("bpfio run "):
            cmd, _, want = line.partition("  ->  ")
            out.append((shlex.split(cmd)[1:], want.strip()))
    return out


def _check_reproduces(runner, cli, stdout, expect_differ=True):
    lines = _run_lines(stdout)
    assert lines, stdout
    seen = []
    for argv, want in lines:
        r = runner.invoke(cli, argv)
        assert r.exit_code == 0, (argv, r.output)
        got = r.stdout.strip().splitlines()[-1]
        assert got == want, (argv, got, want)
        seen.append(got)
    if expect_differ:
        assert len(set(seen)) == 2, seen
    return seen


def test_equivalent_pair_exits_0(runner, cli, files):
    a, b = files(a=PASS_IP, b=PASS_IP_TOO)
    r = runner.invoke(cli, ["equiv", a, b])
    assert r.exit_code == 0 and r.stdout == "equivalent (proved)\n"


def test_different_pair_prints_a_counterexample_that_bpfio_run_reproduces(runner, cli, files):
    a, b = files(a=PASS_IP, b=PASS_ARP)
    r = runner.invoke(cli, ["equiv", a, b])
    assert r.exit_code == 1 and r.stdout.startswith("different")
    _check_reproduces(runner, cli, r.stdout)


def test_seccomp_counterexample_reproduces(runner, cli, files):
    a, b = files(a=POLICY, b=POLICY_B)
    r = runner.invoke(cli, ["equiv", "--profile", "seccomp", a, b])
    assert r.exit_code == 1
    _check_reproduces(runner, cli, r.stdout)


@pytest.mark.parametrize("profile", ["socket", "seccomp", "pio"])
def test_random_counterexamples_reproduce_through_the_cli(runner, cli, tmp_path, profile):
    rng = random.Random({"socket": 11, "seccomp": 12, "pio": 13}[profile])
    shown = 0
    for i in range(300):
        a = random_program(rng, profile=profile, length=rng.randrange(4, 30))
        b = breaking(rng, a)
        if equivalent(a, b, profile=profile).status != "different":
            continue
        pa, pb = tmp_path / f"a{i}.bpf", tmp_path / f"b{i}.bpf"
        pa.write_text(_ddd(a))
        pb.write_text(_ddd(b))
        r = runner.invoke(cli, ["equiv", "--profile", profile, str(pa), str(pb)])
        assert r.exit_code == 1 and r.stdout.startswith("different"), r.output
        # A pio difference only in shared memory has equal verdict lines (and says so).
        memory_only = any("shared word" in ln for ln in r.stdout.splitlines())
        seen = _check_reproduces(runner, cli, r.stdout, expect_differ=not memory_only)
        assert memory_only or seen[0] != seen[1]
        shown += 1
        if shown == 6:
            break
    assert shown == 6


def test_timeout_is_unknown_exit_3(runner, cli, files):
    a, b = files(a=DIV_A, b=DIV_B)
    r = runner.invoke(cli, ["equiv", "--timeout", "0.2", a, b])
    assert r.exit_code == 3, r.output
    assert r.stdout == "unknown (timeout after 0.2 s)\n"


def test_json(runner, cli, files):
    a, b = files(a=PASS_IP, b=PASS_ARP)
    r = runner.invoke(cli, ["equiv", "--json", a, b])
    report = json.loads(r.stdout)
    assert r.exit_code == 1 and report["status"] == "different"
    assert report["counterexample"].startswith("--packet ") and len(set(report["results"])) == 2


def test_stdin_for_one_program(runner, cli, files):
    (a,) = files(a=PASS_IP)
    r = runner.invoke(cli, ["equiv", a, "-"], input=PASS_IP_TOO)
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("args, code, message", [
    (["equiv", "-", "-"], 2, "only one of A and B can be '-'"),
    (["equiv", "{a}"], 2, "Missing argument 'B'"),
    (["equiv", "{a}", "{missing}"], 1, "nope.asm: error: cannot read file"),
    (["equiv", "{a}", "{bad}"], 1, "bad.asm:2:1: error: syntax error"),
    (["equiv", "--profile", "seccomp", "{a}", "{a}"], 1, "error:"),
    (["equiv", "--profile", "bogus", "{a}", "{a}"], 2, "Invalid value for '--profile'"),
    (["prove", "{a}"], 2, "give --assert EXPR"),
    (["prove", "{a}", "--assert", "ret =="], 1,
     "--assert 'ret ==':7: error: unexpected end of the assertion"),
    (["prove", "{a}", "--assert", "rett == 1"], 1, "--assert 'rett == 1':1: error: unknown field 'rett'"),
    (["prove", "{a}", "--assert", "ret == ALLOW"], 1, "--assert 'ret == ALLOW':8: error: unknown value"),
    (["prove", "{a}", "--assert", "ret == 1 when len"], 1, "error: unexpected end of the assertion"),
    (["prove", "--profile", "pio", "{a}", "--assert", "never-reads M[99]"], 1, "error:"),
    # Found by the fuzz harness: int('01', 0) was a raw ValueError.
    (["prove", "{a}", "--assert", "never-writes M[01]"], 1,
     "--assert 'never-writes M[01]':16: error: '01' is not a number (write 0x... or no leading zero)"),
    (["prove", "{a}", "--assert", "ret == 007"], 1, "error: '007' is not a number"),
    (["prove", "--ports", "0x3f8+8", "{a}", "--assert", "ret == 0"], 2,
     "--ports applies to --profile pio"),
    (["prove", "--profile", "pio", "--ports", "0xffff+2", "{a}", "--assert", "ret == 0"], 2,
     "expected BASE+N inside 0..0xffff"),
    (["equiv", "--profile", "pio", "--ports", "8", "{a}", "{a}"], 2, "expected BASE+N"),
])
def test_bad_input_is_one_line(runner, cli, files, tmp_path, args, code, message):
    a, bad = files(a=PASS_IP, bad="frobnicate\n")
    subst = {"a": a, "bad": bad, "missing": str(tmp_path / "nope.asm")}
    r = runner.invoke(cli, [x.format(**subst) for x in args])
    assert r.exit_code == code, r.output
    assert message in r.stderr, r.stderr
    if code == 1:
        assert len(r.stderr.strip().splitlines()) <= 3 and "Traceback" not in r.output


PM = "asm/pmtimer.asm"


@pytest.mark.parametrize("assertion, status", [
    ("ret == DONE", "proved"),
    ("action == DONE when dir == OUT", "proved"),
    ("never-writes M[0..]", "proved"),
    ("never-reads M[1..]", "proved"),
    ("in <= 0xffffff", "proved"),
    ("in < 0x100 when size == 1", "proved"),
    ("ret != DONE when dir == OUT", "disproved"),
    ("in == 0 when dir == IN", "disproved"),
    ("never-reads M[0]", "disproved"),
])
def test_prove_pmtimer(runner, cli, assertion, status):
    r = runner.invoke(cli, ["prove", "--profile", "pio", "--mem-words", "4", PM, "--assert", assertion])
    assert r.stdout.startswith(f"{status}: {assertion}"), r.output
    assert r.exit_code == (0 if status == "proved" else 1)
    if status == "disproved":
        _check_reproduces(runner, cli, r.stdout, expect_differ=False)


@pytest.mark.parametrize("assertion, status", [
    ("ret == ALLOW when nr == read", "proved"),
    ("ret == ALLOW when nr in read, write", "proved"),
    ("action == ERRNO when nr > 1", "proved"),
    ("ret == ERRNO(1) when nr == 2", "proved"),
    ("ret == ALLOW when nr == openat", "disproved"),
    ("ret == ALLOW when arch == x86_64", "disproved"),
])
def test_prove_seccomp(runner, cli, files, assertion, status):
    (a,) = files(a=POLICY)
    r = runner.invoke(cli, ["prove", "--profile", "seccomp", a, "--assert", assertion])
    assert r.stdout.startswith(f"{status}: {assertion}"), r.output
    if status == "disproved":
        (got,) = _check_reproduces(runner, cli, r.stdout, expect_differ=False)
        assert not got.startswith("ALLOW")


def test_ports_restrict_the_events_to_one_binding(runner, cli):
    # Without --ports the UART's offset is free (a read at offset 16 indexes the TX ring).
    args = ["prove", "--profile", "pio", "--mem-words", "32", "asm/uart.asm",
            "--assert", "never-reads M[16..31] when dir == IN"]
    free = runner.invoke(cli, args)
    bound = runner.invoke(cli, args[:3] + ["--ports", "0x3f8+8"] + args[3:])
    assert free.exit_code == 1 and free.stdout.startswith("disproved")
    assert bound.exit_code == 0 and bound.stdout.startswith("proved")
    _check_reproduces(runner, cli, free.stdout, expect_differ=False)


def test_verdicts_lists_each_class_with_a_witness_run_reproduces(runner, cli):
    r = runner.invoke(cli, ["prove", "--profile", "pio", "--verdicts",
                            "examples/guests/bpf/virtio-kick.asm"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if "e.g. bpfio run" in ln]
    assert {ln.split()[0] for ln in lines} >= {"EXIT", "NOTIFY(0)"}
    for line in lines:
        verdict, _, cmd = line.strip().partition(" e.g. ")
        got = runner.invoke(cli, shlex.split(cmd)[1:]).stdout.strip()
        assert got.split()[:2] == verdict.split()[:2], (cmd, got)


def test_prove_json_lists_verdicts_and_counterexamples(runner, cli, files):
    (a,) = files(a=POLICY)
    r = runner.invoke(cli, ["prove", "--json", "--profile", "seccomp", a, "--verdicts",
                            "--assert", "ret == ALLOW", "--assert", "ret in ALLOW, ERRNO(1)"])
    report = json.loads(r.stdout)
    assert r.exit_code == 1
    first, second, table = report["results"]
    assert first["status"] == "disproved" and first["result"] == 0x50001
    assert first["counterexample"].startswith("--syscall ")
    assert second["status"] == "proved"
    assert table["complete"] and sorted(e["verdict"] for e in table["verdicts"]) == [0x50001,
                                                                                    0x7fff0000]


def test_installed_entry_point_runs_equiv(files):
    a, b = files(a=PASS_IP, b=PASS_ARP)
    proc = subprocess.run([bpfio_exe(), "equiv", a, b], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and proc.stdout.startswith("different")


@pytest.mark.parametrize("command", ["prove", "equiv"])
def test_help_examples_on_shipped_files_hold(runner, cli, command):
    text = runner.invoke(cli, [command, "--help"]).stdout
    ran = 0
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(f"bpfio {command} "):
            continue
        argv = shlex.split(line)[1:]
        if not all(Path(a).exists() for a in argv if a.endswith((".asm", ".bpf"))):
            continue                    # an example about the reader's own files
        r = runner.invoke(cli, argv)
        assert r.exit_code == 0, (line, r.output)
        ran += 1
    assert ran >= (3 if command == "prove" else 0)
