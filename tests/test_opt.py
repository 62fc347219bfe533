"""``bpfio.opt`` / ``bpfio opt``: each pass by hand, the tcpdump corpus, the proof gate.

Every optimized program here is checked three ways: the socket (or pio)
verifier accepts it, :func:`bpfio.prove.equivalent` proves it equivalent to
its input, and the interpreter agrees with the input on seeded random and
realistic packets.  The expected outputs of the pass cases are written by
hand from what each pass is meant to do.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bpfio.text.formats import format_program, parse_program
from bpfio.insn import Insn, Program
from bpfio.exec.interp import SocketContext, outcome, run
from bpfio.exec.gen import random_packet, random_program
from bpfio.opt import optimize
from bpfio.opt.passes import PASSES, Context, run_passes
from bpfio.prove import Result, equivalent
from bpfio.check.verifier import verify
from devtools import bpfio_exe
from prove_tools import rand_stream

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import bench_opt  # noqa: E402

needs_tcpdump = pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")


def asm(text: str) -> Program:
    return parse_program(text.replace(";", "\n"))


def same_on_packets(a, b, *, seed: int, n: int = 300) -> None:
    rng = random.Random(seed)
    pkts = bench_opt.packets(seed, 100) + [random_packet(rng, max_len=120) for _ in range(n)]
    for pkt in pkts:
        assert run(a, pkt) == run(b, pkt), pkt.hex()


# --- each pass on a hand-written case ---------------------------------------------

# (id, passes, profile, input, expected)
CASES = [
    ("fold-constants", ("values", "dead-code"), "socket",
     "ld #1; add #2; ret a", "ret #3"),
    ("known-test", ("values", "unreachable", "trivial-jumps", "dead-code"), "socket",
     "ld #5; jgt #3, yes, no; yes: ret #1; no: ret #0", "ret #1"),
    ("unreachable", ("unreachable",), "socket",
     "ld [0]; ja out; ld #2; out: ret a", "ld [0]; ja out; out: ret a"),
    ("jump-to-next", ("trivial-jumps",), "socket",
     "ld [0]; ja next; next: ret a", "ld [0]; ret a"),
    ("same-targets", ("trivial-jumps",), "socket",
     "ldh [12]; jeq #1, tgt, tgt; tgt: ret a", "ldh [12]; ret a"),
    ("thread-through-ja", ("thread-jumps", "unreachable"), "socket",
     "ldh [12]; jeq #1, hop, no; hop: ja yes; no: ret #0; yes: ret #1",
     "ldh [12]; jeq #1, yes, no; no: ret #0; yes: ret #1"),
    ("thread-implied-test", ("thread-jumps", "unreachable"), "socket",
     "ldh [12]; jeq #0x800, again, no; again: jgt #0x700, v4, no; v4: ret #1; no: ret #0",
     "ldh [12]; jeq #0x800, v4, no; v4: ret #1; no: ret #0"),
    ("merge-ret-tails", ("merge-tails", "unreachable"), "socket",
     "ldh [12]; jeq #1, one, two; one: ret #0; two: jeq #2, seven, zero; seven: ret #7;"
     "zero: ret #0",
     "ldh [12]; jeq #1, zero, two; two: jeq #2, seven, zero; seven: ret #7; zero: ret #0"),
    ("fallthrough-copy-becomes-ja", ("merge-tails", "unreachable"), "socket",
     "ldh [12]; jeq #1, yes, no; yes: ldh [14]; ld [2]; ret a; no: ld [2]; ret a",
     "ldh [12]; jeq #1, yes, no; yes: ldh [14]; ja no; no: ld [2]; ret a"),
    ("redundant-load", ("values",), "socket",
     "ldh [12]; jeq #0x800, v4, no; v4: ldh [12]; jeq #0x800, yes, no; yes: ret #1; no: ret #0",
     "ldh [12]; jeq #0x800, v4, no; v4: jeq #0x800, yes, no; yes: ret #1; no: ret #0"),
    ("redundant-ldx-msh", ("values",), "socket",
     "ldxb 4*([14]&0xf); ldh [x + 14]; ldxb 4*([14]&0xf); ldh [x + 16]; ret a",
     "ldxb 4*([14]&0xf); ldh [x + 14]; ldh [x + 16]; ret a"),
    ("dead-scratch-store", ("dead-code",), "socket",
     "ld [0]; st M[3]; ret a", "ld [0]; ret a"),
    ("dead-load-covered", ("dead-code",), "socket",
     "ldb [14]; ldh [20]; ret a", "ldh [20]; ret a"),
    ("dead-load-not-covered", ("dead-code",), "socket",
     "ldh [20]; ldb [14]; ret a", "ldh [20]; ldb [14]; ret a"),
    ("ancillary-kept", ("dead-code", "values"), "socket",
     "ld ifidx; ld #1; ret a", "ld ifidx; ret #1"),
    ("pio-store-is-output", ("dead-code", "values"), "pio",
     "ld #1; st M[0]; ret #0", "ld #1; st M[0]; ret #0"),
    ("seccomp-dead-load", ("dead-code",), "seccomp",
     "ld [0]; ld [4]; ret a", "ld [4]; ret a"),
    ("libpcap-scratch", ("scratch",), "socket",
     "ldb [14]; st M[1]; ldb [15]; tax; ld M[1]; jeq x, yes, no; yes: ret #1; no: ret #0",
     "ldb [15]; tax; ldb [14]; jeq x, yes, no; yes: ret #1; no: ret #0"),
    ("msh", ("msh",), "socket",
     "ldb [14]; and #0xf; lsh #2; tax; ldb [x + 14]; ret a",
     "ldxb 4*([14]&0xf); ldb [x + 14]; ret a"),
    ("msh-a-still-read", ("msh",), "socket",
     "ldb [14]; and #0xf; lsh #2; tax; ret a",
     "ldxb 4*([14]&0xf); txa; ret a"),
    ("share-x-tails", ("share-x-tails",), "socket",
     "ldh [12]; jeq #0x86dd, v6, v4; v6: ldh [54]; jeq #80, yes, no;"
     "v4: ldxb 4*([14]&0xf); ldh [x + 14]; jeq #80, yes, no; yes: ret #1; no: ret #0",
     "ldh [12]; ldx #40; jeq #0x86dd, port, v4; v4: ldxb 4*([14]&0xf);"
     "port: ldh [x + 14]; jeq #80, yes, no; yes: ret #1; no: ret #0"),
    ("share-x-tails-relative-first", ("share-x-tails",), "socket",
     "ldh [12]; jeq #0x800, v4, v6chk; v4: ldxb 4*([14]&0xf);"
     "ldh [x + 14]; jeq #80, yes, dst4; dst4: ldh [x + 16]; jeq #80, yes, no;"
     "v6chk: jeq #0x86dd, v6, no; v6: ldh [54]; jeq #80, yes, dst6;"
     "dst6: ldh [56]; jeq #80, yes, no; yes: ret #1; no: ret #0",
     "ldh [12]; jeq #0x800, v4, v6chk; v4: ldxb 4*([14]&0xf); ja port;"
     "v6chk: ldx #40; jeq #0x86dd, port, no; port: ldh [x + 14]; jeq #80, yes, dst;"
     "dst: ldh [x + 16]; jeq #80, yes, no; yes: ret #1; no: ret #0"),
    ("share-x-tails-both-absolute", ("share-x-tails",), "socket",
     "ldh [12]; jeq #0x800, v4, v6chk; v4: ldb [23]; jeq #6, yes, no;"
     "v6chk: jeq #0x86dd, v6, no; v6: ldb [20]; jeq #6, yes, no; yes: ret #1; no: ret #0",
     # X is still 0 on the IPv4 path, so both copies become ldb [x + 23]; X = -3 on IPv6.
     "ldh [12]; jeq #0x800, l4, v6chk; v6chk: ldx #0xfffffffd; jeq #0x86dd, l4, no;"
     "l4: ldb [x + 23]; jeq #6, yes, no; yes: ret #1; no: ret #0"),
]


@pytest.mark.parametrize("name,passes,profile,source,expected", CASES, ids=[c[0] for c in CASES])
def test_pass(name, passes, profile, source, expected):
    prog = asm(source)
    ctx = Context(profile, 4 if profile == "pio" else 16)
    out, fired = run_passes(prog, ctx, {p: PASSES[p] for p in passes})
    assert list(out) == list(asm(expected)), format_program(Program(out), "asm")
    if list(out) != list(prog):
        assert fired
    verify(out, profile=profile, mem_words=ctx.mem_words, lints=False)
    proof = equivalent(prog, out, profile=profile, timeout=20, mem_words=ctx.mem_words)
    assert proof.status == "equivalent", proof


@pytest.mark.parametrize("source,expected", [
    ("ld [0]; lsh #2; lsh #3; ret a", "ld [0]; lsh #5; ret a"),
    ("ld [0]; and #0xff; and #0x0f; ret a", "ld [0]; and #0xf; ret a"),
    ("ld [0]; add #3; sub #1; ret a", "ld [0]; add #2; ret a"),
])
def test_window_search(source, expected):
    prog = asm(source)
    result = optimize(prog, passes={}, search_budget=10)
    assert result.status == "optimized" and result.fired["search"] >= 1
    assert list(result.program) == list(asm(expected))


def test_every_pass_has_a_case():
    covered = {p for case in CASES for p in case[1]}
    assert covered == set(PASSES)


# --- the proof gate ---------------------------------------------------------------

def _broken(ops, ctx):
    """A deliberately wrong pass: every ret #k with k != 0 becomes ret #0."""
    count = 0
    for op in ops:
        if op is not None and op.code == 0x06 and op.k:
            op.k, count = 0, count + 1
    return count


BROKEN_INPUT = "ldh [12]; jeq #0x800, yes, no; yes: ret #0x40000; no: ret #0"


def test_broken_pass_is_caught_and_the_input_emitted():
    prog = asm(BROKEN_INPUT)
    result = optimize(prog, passes={"broken": _broken})
    assert result.candidate != prog and result.fired["broken"] == 1
    assert result.status == "different"
    assert result.program == prog
    assert any("optimizer bug" in w for w in result.warnings)
    # The prover's counterexample really separates the two.
    cex = result.proof.counterexample
    assert run(prog, cex) != run(result.candidate, cex)


def test_broken_pass_through_the_cli(runner, cli, monkeypatch):
    monkeypatch.setitem(PASSES, "broken", _broken)
    src = format_program(asm(BROKEN_INPUT), "tcpdump")
    result = runner.invoke(cli, ["opt", "-"], input=src)
    assert result.exit_code == 0
    assert result.stdout == src
    assert "optimizer bug" in result.stderr


def test_unknown_proof_emits_the_input():
    prog = asm("ld #1; add #2; ret a")

    def slow(a, b, **kw):
        return Result("unknown", kw["profile"], reason="timeout after 0.1 s")
    result = optimize(prog, prove=slow)
    assert result.status == "unknown" and result.program == prog
    assert "timeout after 0.1 s" in result.warnings[0]


def test_invalid_input_is_refused():
    from bpfio.errors import VerifierError
    with pytest.raises(VerifierError):
        optimize(asm("ld M[0]; ret a"))


# --- the tcpdump corpus -----------------------------------------------------------

def _corpus_params():
    if shutil.which("tcpdump") is None:
        return []
    items = bench_opt.corpus()
    step = max(1, len(items) // 15)
    sample = set(range(0, len(items), step))
    return [pytest.param(expr, prog, id=expr,
                         marks=() if i in sample else pytest.mark.slow)
            for i, (expr, prog) in enumerate(items)]


CORPUS = _corpus_params()


@needs_tcpdump
def test_corpus_size():
    assert len(bench_opt.expressions()) >= 100
    assert len(CORPUS) >= 100


@needs_tcpdump
@pytest.mark.parametrize("expr,prog", CORPUS)
def test_corpus_expression(expr, prog):
    result = optimize(prog, timeout=30, search_budget=0.2)
    assert result.status in ("optimized", "unchanged"), result.warnings
    out = result.program
    assert len(out) <= len(prog)
    verify(out, lints=False)
    if result.status == "optimized":
        assert result.proof.status == "equivalent"
    same_on_packets(prog, out, seed=len(expr))
    # --prefer speed: no packet runs more instructions than in libpcap's program.
    fast = optimize(prog, timeout=30, prefer="speed")
    assert fast.status in ("optimized", "unchanged") and len(fast.program) <= len(prog)
    for pkt in bench_opt.packets(len(expr), 150):
        assert outcome(fast.program, pkt)[2] <= outcome(prog, pkt)[2], pkt.hex()


def test_device_program_pio():
    """asm/debugport.asm (pio, mem_words 38 as in examples/pc.toml): shorter and proved."""
    from bpfio.text.formats import load_program
    prog = load_program(str(ROOT / "asm" / "debugport.asm"))
    result = optimize(prog, profile="pio", mem_words=38, timeout=60)
    assert result.status in ("optimized", "unchanged"), result.warnings
    assert len(result.program) <= len(prog)
    verify(result.program, profile="pio", mem_words=38, lints=False)


# --- the command line -------------------------------------------------------------

PORT80 = ("ldh [12]; jeq #0x86dd, v6, v4; v6: ldh [54]; jeq #80, yes, no;"
          "v4: ldxb 4*([14]&0xf); ldh [x + 14]; jeq #80, yes, no; yes: ret #1; no: ret #0")


def test_cli_stats_and_formats(runner, cli, tmp_path):
    src = format_program(asm(PORT80), "tcpdump")
    result = runner.invoke(cli, ["opt", "--stats", "-"], input=src)
    assert result.exit_code == 0, result.stderr
    out = parse_program(result.stdout)
    assert result.stdout.startswith(f"{len(out)}\n")        # tcpdump in, tcpdump out
    assert len(out) < len(asm(PORT80))
    lines = result.stderr.splitlines()
    before = len(asm(PORT80))
    pct = 100 * (before - len(out)) / before
    assert lines[0] == f"<stdin>: {before} -> {len(out)} instructions, {pct:.0f}% fewer"
    assert lines[1].startswith("passes fired: ") and "share-x-tails" in lines[1]
    assert lines[-1].startswith("proved equivalent in ") and lines[-1].endswith("(socket profile)")
    dest = tmp_path / "out.json"
    result = runner.invoke(cli, ["opt", "-f", "json", "-o", str(dest), "-"], input=src)
    assert result.exit_code == 0 and result.stdout == ""
    assert list(parse_program(dest.read_text())) == list(out)


def test_cli_help_teaches(runner, cli):
    result = runner.invoke(cli, ["opt", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout and "proved" in result.stdout.lower()
    listed = runner.invoke(cli, ["--help"]).stdout
    assert any(line.split()[:1] == ["opt"] for line in listed.splitlines())


@pytest.mark.parametrize("args,stdin,code,line", [
    (["opt", "-"], "", 1, "<stdin>: error: file is empty"),
    (["opt", "-"], "ld [k\n", 1, "<stdin>:1:5: error: unknown character 'k'"),
    (["opt", "-"], "ld M[0]\nret a\n", 1,
     "<stdin>: error: pc 0 (ld M[0]): M[0] is read by the first instruction, before anything "
     "stores it [uninit-mem, EINVAL]"),
    (["opt", "-"], "1\n6 0 0\n", 1, "<stdin>:2: error: '6 0 0' is not 'code jt jf k'"),
    (["opt", "/nonexistent/prog.bpf"], "", 1, None),
    (["opt", "--mem-words", "4", "-"], "ret #0\n", 2, None),
])
def test_cli_bad_input(runner, cli, args, stdin, code, line):
    result = runner.invoke(cli, args, input=stdin)
    assert result.exit_code == code, result.output
    if code == 1:
        lines = result.stderr.strip().splitlines()
        assert lines and "Traceback" not in result.stderr
        first = lines[0]
        assert ": error: " in first
        if line is not None:
            assert first == line


def test_cli_subprocess_pio(tmp_path):
    proc = subprocess.run([bpfio_exe(), "opt", "--profile", "pio", "--mem-words", "38",
                           "--stats", "-f", "asm", str(ROOT / "asm" / "debugport.asm")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = parse_program(proc.stdout)
    verify(out, profile="pio", mem_words=38, lints=False)
    assert "proved equivalent in " in proc.stderr or "no shorter program" in proc.stderr


def test_insn_roundtrip_of_tax_k():
    """libpcap writes ``tax`` with k=3; the optimizer keeps instructions it does not change."""
    prog = Program([Insn(0x30, 0, 0, 15), Insn(0x07, 0, 0, 3), Insn(0x16, 0, 0, 0)])
    out, _ = run_passes(prog, Context())
    assert Insn(0x07, 0, 0, 3) in out or len(out) < len(prog)


# --- fuzz: random verified programs through the whole pipeline ---------------------

def _fuzz_params():
    out = []
    for profile in ("socket", "seccomp", "pio"):
        for seed in range(40):
            out.append(pytest.param(profile, seed, id=f"{profile}-{seed}",
                                    marks=() if seed < 8 else pytest.mark.slow))
    return out


@pytest.mark.parametrize("profile,seed", _fuzz_params())
def test_random_programs_are_proved(profile, seed):
    rng = random.Random(seed * 7919 + len(profile))
    checked = 0
    while checked < 6:
        prog = random_program(rng, profile=profile, oracle_safe=False,
                              length=rng.choice((None, 60, 120)))
        try:
            verify(prog, profile=profile, lints=False)
        except Exception:
            continue
        checked += 1
        result = optimize(prog, profile=profile, timeout=20)
        assert result.status != "different", (list(prog), result.warnings)
        assert len(result.program) <= len(prog)
        verify(result.program, profile=profile, lints=False)
        if profile == "socket":
            pkts = [random_packet(rng, max_len=200) for _ in range(50)]
            for pkt in pkts:    # ld rand: both programs read the same stream
                seed = rng.getrandbits(64)
                got = [run(p, pkt, context=SocketContext(rand=rand_stream(seed)))
                       for p in (prog, result.candidate)]
                assert got[0] == got[1], (list(prog), pkt.hex())


# --- libpcap-shaped programs with mutated constants, targets and opcodes ------------

_MUTANT_CODES = (0x28, 0x30, 0x20, 0x48, 0x50, 0x40, 0xb1, 0x07, 0x87, 0x01, 0x02, 0x61, 0x60)


def _mutant(rng, prog) -> list:
    p = list(prog)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(p))
        code, jt, jf, k = p[i]
        r = rng.random()
        if r < 0.4 and code != 0x06:
            k = rng.choice([k + rng.choice((-4, -2, -1, 1, 2, 4)), rng.randrange(64), 0, 40,
                            14, k ^ 1]) & 0xffffffff
        elif r < 0.6 and code & 7 == 5 and code != 5:
            jt, jf = jf, jt
        elif r < 0.8 and code & 7 not in (5, 6):
            code = rng.choice(_MUTANT_CODES)
        p[i] = Insn(code, jt, jf, k)
    return p


@needs_tcpdump
@pytest.mark.parametrize("seed", [pytest.param(s, marks=() if s < 2 else pytest.mark.slow)
                                  for s in range(20)])
def test_mutated_corpus_programs(seed):
    rng = random.Random(seed)
    items = [prog for _, prog in (p.values for p in CORPUS)]
    done = 0
    while done < 25:
        prog = _mutant(rng, rng.choice(items))
        try:
            verify(prog, lints=False)
        except Exception:
            continue
        done += 1
        result = optimize(prog, timeout=20)
        assert result.status in ("optimized", "unchanged"), (prog, result.warnings)
        for _ in range(20):
            pkt = random_packet(rng, max_len=200)
            assert run(prog, pkt) == run(result.candidate, pkt), (prog, pkt.hex())


@pytest.mark.parametrize("name", ["libpcap-scratch", "dead-load-covered", "share-x-tails",
                                  "share-x-tails-relative-first", "share-x-tails-both-absolute",
                                  "fallthrough-copy-becomes-ja"])
def test_prefer_speed_skips_rewrites_that_run_longer(name):
    """Each of these shortens the program but makes some input run more instructions."""
    _, passes, profile, source, _ = next(c for c in CASES if c[0] == name)
    prog = asm(source)
    out, _ = run_passes(prog, Context(profile, 16, "speed"), {p: PASSES[p] for p in passes})
    assert list(out) == list(prog)


# --- the live kernel as the last word ------------------------------------------------

from bpfio.exec import kernel  # noqa: E402

_SOCKET_SKIP = kernel.available("socket")


@needs_tcpdump
@pytest.mark.skipif(_SOCKET_SKIP is not None, reason=_SOCKET_SKIP or "")
def test_optimized_corpus_agrees_in_the_kernel():
    """Every shortened corpus program, attached with SO_ATTACH_FILTER, gives libpcap's verdicts."""
    from bpfio.exec.kernel_run import SocketOracle
    pkts = bench_opt.capture()[:120]
    checked = 0
    with SocketOracle() as oracle:
        for param in CORPUS:
            expr, prog = param.values
            result = optimize(prog)
            if result.status != "optimized":
                continue
            checked += 1
            assert oracle.run(result.program, pkts) == oracle.run(prog, pkts), expr
    assert checked >= 30


def _libseccomp():
    from test_kernel_verify_corpus import libseccomp_programs
    return libseccomp_programs()


@pytest.mark.parametrize("index", range(5))
def test_libseccomp_policies(index):
    """Policies libseccomp generated: the seccomp profile's rules, every result proved."""
    progs = _libseccomp()
    if index >= len(progs):
        pytest.skip("libseccomp not available (or fewer policies)")
    _, prog = progs[index]
    result = optimize(prog, profile="seccomp", timeout=30)
    assert result.status in ("optimized", "unchanged"), result.warnings
    assert len(result.program) <= len(prog)
    verify(result.program, profile="seccomp", lints=False)


def test_prover_error_emits_the_input():
    from bpfio.prove import ProveError
    prog = asm("ld #1; add #2; ret a")

    def refuses(a, b, **kw):
        raise ProveError("cannot encode this")
    result = optimize(prog, prove=refuses)
    assert result.status == "unknown" and result.program == prog
    assert "cannot encode this" in result.warnings[0]


@pytest.mark.parametrize("gap,merges", [(100, True), (296, False)])
def test_merge_beyond_jump_range_is_undone(gap, merges):
    """Redirecting a jt to a ret copy past 255 instructions would not encode: undone."""
    body = [Insn(0x28, 0, 0, 12), Insn(0x15, 0, 1, 1), Insn(0x06, 0, 0, 0)]
    body += [Insn(0x04, 0, 0, 1)] * gap + [Insn(0x15, 0, 1, 7), Insn(0x06, 0, 0, 0),
                                           Insn(0x16, 0, 0, 0)]
    prog = Program(body)
    verify(prog, lints=False)
    out, fired = run_passes(prog, Context(), {"merge-tails": PASSES["merge-tails"]})
    assert bool(fired) == merges
    assert (list(out) == list(prog)) != merges


def _proto_is_zero(ops, ctx):
    """A pass that is right only on AF_UNIX: 'ld proto' (0 there) becomes 'ld #0'."""
    count = 0
    for op in ops:
        if op is not None and op.code == 0x20 and op.k == 0xfffff000:
            op.code, op.k, count = 0x00, 0, count + 1
    return count


def test_socket_proofs_quantify_over_every_socket_context():
    # On the default (AF_UNIX) context 'ld proto' reads 0, so the rewrite is "equivalent"
    # there; on a real interface it is wrong, and the optimizer must not emit it.
    prog = asm("ld proto; ret a")
    seen = []

    def spy(a, b, **kw):
        seen.append(kw)
        return equivalent(a, b, **kw)
    result = optimize(prog, prove=spy, passes={"proto-is-zero": _proto_is_zero})
    assert result.fired["proto-is-zero"] == 1
    assert seen and all(kw.get("context") == "free" for kw in seen)
    assert result.status == "different" and result.program == prog
    assert equivalent(prog, result.candidate, profile="socket").status == "equivalent"
