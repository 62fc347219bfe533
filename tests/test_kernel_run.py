"""Differential tests against the live kernel (AF_UNIX socket filters, seccomp in a child).

CI runs a bounded sample; the full sweep is::

    BPFIO_SWEEP_N=1000000 python -m pytest --run-slow tests/test_kernel_run.py -s

(``BPFIO_SECCOMP_N`` sets the seccomp sweep size, default N/50.)  Every case
compares the full 32-bit return value and abort-vs-``ret #0``; 100 %
agreement is required for the interpreter and the compiled path.
"""

from __future__ import annotations

import os
import random

import pytest

from bpfio import assemble
from bpfio.exec import kernel
from bpfio.insn import Insn, Program
from bpfio.exec.interp import SocketContext, outcome, run
from bpfio.isa import ANCILLARY, SKF_AD_OFF
from bpfio.exec.kernel_run import (SeccompOracle, SocketOracle, chunk_plan, chunk_variant,
                                   seccomp_sweep, socket_sweep)
from bpfio.abi.seccomp import SeccompData

from test_interp import CASES  # noqa: E402  (tests/ is on sys.path)

SOCKET_SKIP = kernel.available("socket")
SECCOMP_SKIP = kernel.available("seccomp")
needs_socket = pytest.mark.skipif(SOCKET_SKIP is not None, reason=SOCKET_SKIP or "")
needs_seccomp = pytest.mark.skipif(SECCOMP_SKIP is not None, reason=SECCOMP_SKIP or "")

# ifidx/hatype end the program returning A before the chunk tail: checked raw below.
_TAILED = [c for c in CASES if "without device" not in c[0]]


@pytest.fixture(scope="module")
def oracle():
    with SocketOracle() as o:
        yield o


@pytest.fixture
def cpu0():
    """Pin to CPU 0 so that `ld cpu` is deterministic (restored afterwards)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {0})
    yield
    os.sched_setaffinity(0, before)


def test_chunk_plan_covers_all_32_bits():
    for length in (0, 1, 2, 3, 200, 256, 257, 600):
        plan = chunk_plan(length)
        bits = set()
        for shift, width, bit_mode in plan:
            bits |= set(range(shift, min(32, shift + (1 if bit_mode else width))))
            assert bit_mode or (1 << width) <= max(length, 1)
        assert bits == set(range(32))


def test_chunk_variant_keeps_the_value():
    # The rewrite, run by our own interpreter, must reproduce each chunk + 1.
    prog = assemble("ld [0]\njeq #1, one, other\none: ret #0xdeadbeef\nother: ret a")
    for pkt in (b"\x00\x00\x00\x01" + bytes(300), b"\x12\x34\x56\x78" + bytes(300)):
        value = run(prog, pkt)
        for shift in range(0, 32, 8):
            assert run(chunk_variant(prog, shift, 8), pkt) == ((value >> shift) & 0xff) + 1


@needs_socket
@pytest.mark.parametrize("name,source,packet,expected", _TAILED, ids=[c[0] for c in _TAILED])
def test_rule_table_matches_the_kernel(oracle, name, source, packet, expected):
    prog = source if isinstance(source, Program) else assemble(source)
    assert oracle.run(prog, [packet]) == [expected]


@needs_socket
def test_ifidx_and_hatype_without_a_device_return_a(oracle):
    pkt = bytes(100)
    for word in ("ifidx", "hatype"):
        for a in (0, 5, 77):
            prog = assemble(f"ld #{a}\nld {word}\nret #99")
            got = oracle.raw(prog, pkt)
            assert got == (None if a == 0 else a)          # trimmed to A, 0 drops
            assert run(prog, pkt) == a


@needs_socket
def test_af_unix_context_defaults_are_measured(oracle, cpu0):
    # Every deterministic ancillary load, every size: kernel == SocketContext() defaults.
    for anc in ANCILLARY:
        if anc.kernel_name in ("RANDOM", "IFINDEX", "HATYPE"):
            continue
        for size in (0x00, 0x08, 0x10):
            prog = Program([Insn(0x00, 0, 0, 0xf0), Insn(0x01, 0, 0, 0x0f),
                            Insn(0x20 | size, 0, 0, anc.k), Insn(0x16, 0, 0, 0)])
            for pkt in (bytes(range(60)), b"", b"\x45" + bytes(40)):
                assert oracle.run(prog, [pkt]) == [run(prog, pkt, context=SocketContext())], anc


@needs_socket
def test_rand_differs_between_runs(oracle):
    prog = assemble("ld rand\nand #0xff\nadd #1\nret a")
    lengths = {oracle.raw(prog, bytes(300)) for _ in range(20)}
    assert len(lengths) > 5


@needs_socket
def test_random_programs_match_the_kernel():
    n = int(os.environ.get("BPFIO_KERNEL_SAMPLE", "8000"))
    seed = random.randrange(1 << 30)
    res = socket_sweep(n, seed=seed)
    assert res.mismatches == [], f"seed {seed}: {res}: {res.mismatches[:3]}"
    assert res.agree == {"interp": res.cases, "compiled": res.cases}
    assert 0 < res.aborted < res.cases      # both kinds of outcome were exercised


@needs_seccomp
def test_seccomp_rules_match_the_kernel():
    oracle = SeccompOracle()
    cases = [("ld [0]\nret a", 110, (), 110),
             ("ld [4]\nret a", 110, (), 0xc000003e),
             ("ld [16]\nret a", 39, (0xdeadbeef12345678,), 0x12345678),
             ("ld [20]\nret a", 39, (0xdeadbeef12345678,), 0xdeadbeef),
             ("ld len\nret a", 39, (), 64),
             ("ldx #0\ndiv x\nret #5", 39, (), None),          # returns 0: KILL_THREAD
             ("ret #0", 39, (), 0)]
    for source, nr, args, want in cases:
        prog = assemble(source)
        args = tuple(args) + (0,) * (6 - len(args))
        assert oracle.run(prog, nr, args) == want, source
        assert outcome(prog, SeccompData(nr, args=args), profile="seccomp")[0] == want


@needs_seccomp
def test_random_seccomp_programs_match_the_kernel():
    seed = random.randrange(1 << 30)
    res = seccomp_sweep(int(os.environ.get("BPFIO_SECCOMP_SAMPLE", "150")), seed=seed)
    assert res.mismatches == [], f"seed {seed}: {res}: {res.mismatches[:3]}"


@pytest.mark.slow
@needs_socket
def test_sweep_socket():
    n = int(os.environ.get("BPFIO_SWEEP_N", "1000000"))
    res = socket_sweep(n, seed=int(os.environ.get("BPFIO_SWEEP_SEED", "1")))
    print(f"\nsocket sweep: {res}")
    assert res.mismatches == [], str(res)


@pytest.mark.slow
@needs_seccomp
def test_sweep_seccomp():
    n = int(os.environ.get("BPFIO_SECCOMP_N", str(int(os.environ.get("BPFIO_SWEEP_N", "1000000")) // 50)))
    res = seccomp_sweep(n, seed=int(os.environ.get("BPFIO_SWEEP_SEED", "1")))
    print(f"\nseccomp sweep: {res}")
    assert res.mismatches == [], str(res)


def test_skf_ad_off_constant():
    assert SKF_AD_OFF == 0xfffff000
