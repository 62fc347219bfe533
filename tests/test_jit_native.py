"""Native code done right: W^X mappings, no leaks, and the live kernel as the JIT's oracle.

The kernel sweep is sized like the other kernel tests::

    BPFIO_JIT_KERNEL_N=100000 python -m pytest --run-slow tests/test_jit_native.py -k kernel
"""

from __future__ import annotations

import gc
import os
import random

import pytest

from bpfio import assemble
from bpfio.abi.pio import PioEvent
from bpfio.abi.seccomp import SeccompData
from bpfio.check.verifier import verify
from bpfio.errors import VerifierError
from bpfio.exec import kernel
from bpfio.exec.gen import random_packet, random_program
from bpfio.exec.jit import mem as jmem
from bpfio.exec.jit.program import jit
from bpfio.exec.kernel_run import SocketOracle
from bpfio.text.disasm import disassemble

from test_jit import in_child  # noqa: E402  (tests/ is on sys.path)

pytestmark = pytest.mark.skipif(jmem.unavailable_reason() is not None,
                                reason=f"JIT unavailable: {jmem.unavailable_reason()}")


def _maps():
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            span, perms = line.split()[:2]
            lo, hi = (int(v, 16) for v in span.split("-"))
            out.append((lo, hi, perms))
    return out


def _perms_at(address):
    return next((p for lo, hi, p in _maps() if lo <= address < hi), None)


def test_no_mapping_is_writable_and_executable_while_programs_run():
    progs = [jit(assemble("ldh [12]\njne #0x806, drop\nld rand\nret a\ndrop: ret #0")),
             jit(assemble("ld [0]\nret a"), profile="seccomp"),
             jit(assemble("ld [12]\nst M[3]\nld rand\nret #0x10000"),
                 profile="pio")]
    progs[0](bytes(14) + b"\x08\x06")
    progs[0].run_many([b"", bytes(20)])
    progs[1](SeccompData(39))
    progs[2](PioEvent(0x80, 4, 1, 5), mem=[0] * 16)
    wx = [(hex(lo), p) for lo, hi, p in _maps() if "w" in p and "x" in p]
    assert wx == []
    for p in progs:
        assert _perms_at(p.address) == "r-xp"
    address = progs[0].address
    del progs, p
    gc.collect()
    assert _perms_at(address) != "r-xp"        # freed with its owner


def _rss_and_maps():
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGESIZE")
    return rss, len(_maps())


def cycles(n):
    progs = [(assemble("ldh [12]\njeq #0x800, ip, no\nip: ldb [23]\nret a\nno: ret #0"), "socket",
              bytes(30)),
             (assemble("ld [0]\nret a"), "seccomp", SeccompData(3)),
             (assemble("ld M[1]\nadd #1\nst M[1]\nret #0x10000"), "pio", PioEvent(1, 1, 0))]
    for i in range(n):
        prog, profile, data = progs[i % 3]
        j = jit(prog, profile=profile)
        j(data)
        del j


@pytest.mark.parametrize("n", [int(os.environ.get("BPFIO_JIT_LEAK_N", "10000")),
                               pytest.param(100_000, marks=pytest.mark.slow)])
def test_compile_free_cycles_do_not_grow(n):
    cycles(600)             # warm the emitter's caches and the allocator
    gc.collect()
    rss0, maps0 = _rss_and_maps()
    cycles(n)
    gc.collect()
    rss1, maps1 = _rss_and_maps()
    assert maps1 - maps0 <= 2, (maps0, maps1)
    assert rss1 - rss0 < 8 << 20, (rss0, rss1)


# -- JIT vs the live kernel (full 32-bit value) ----------------------------------------------

SOCKET_SKIP = kernel.available("socket")


def kernel_sweep(cases: int, seed: int):
    """Random verified socket programs: the kernel's verdicts vs the JIT's (in a child)."""
    def job(report):
        rng = random.Random(seed)
        done, bad = 0, []
        with SocketOracle() as oracle:
            while done < cases:
                state = rng.getstate()
                program = random_program(rng)
                try:
                    verify(program, lints=False)
                except VerifierError:
                    continue
                report((state, done))
                packets = [random_packet(rng) for _ in range(8)]
                want = oracle.run(program, packets)
                native = jit(program, harden=bool(done & 8))
                got = native.run_many(packets)
                for p, w, g, one in zip(packets, want, got, map(native, packets)):
                    done += 1
                    if g != (w or 0) or one != g:
                        bad.append((disassemble(program), p.hex(), w, g, one))
        return done, bad[:5]

    def describe(last):
        if last is None:
            return f"seed {seed}, before the first program"
        rng = random.Random()
        rng.setstate(last[0])
        return f"seed {seed}, case {last[1]}, program:\n{disassemble(random_program(rng))}"
    return in_child(job, describe)


@pytest.mark.skipif(SOCKET_SKIP is not None, reason=SOCKET_SKIP or "")
def test_random_programs_match_the_kernel():
    seed = random.randrange(1 << 30)
    done, bad = kernel_sweep(int(os.environ.get("BPFIO_JIT_KERNEL_SAMPLE", "2000")), seed)
    assert bad == [], f"seed {seed}: {bad}"


@pytest.mark.slow
@pytest.mark.skipif(SOCKET_SKIP is not None, reason=SOCKET_SKIP or "")
def test_sweep_kernel():
    n = int(os.environ.get("BPFIO_JIT_KERNEL_N", "100000"))
    done, bad = kernel_sweep(n, int(os.environ.get("BPFIO_SWEEP_SEED", "1")))
    assert bad == [] and done >= n
