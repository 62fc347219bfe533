"""Native code done right: W^X mappings, no leaks, and the live kernel as the JIT's oracle.

The kernel sweep is sized like the other kernel tests::

    BPFIO_JIT_KERNEL_N=100000 python -m pytest --run-slow tests/test_jit_native.py -k kernel
"""

from __future__ import annotations

import gc
import os
import random
import subprocess
import sys

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
from bpfio.insn import Program
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


# A fresh interpreter that imports only bpfio, runs programs of all three profiles and
# prints every mapping of the WHOLE process that is writable and executable (there must be
# none).  In the test process itself other libraries may own such pages -- libffi maps one
# per ctypes callback, and z3 (imported by other tests) registers callbacks -- so there
# the check is restricted to the JIT's own mappings.
WX_CHILD = r"""
import sys
from bpfio import assemble
from bpfio.abi.pio import PioEvent
from bpfio.abi.seccomp import SeccompData
from bpfio.exec.jit.program import Batch, jit

progs = [jit(assemble("ldh [12]\njne #0x806, drop\nld rand\nret a\ndrop: ret #0")),
         jit(assemble("ld [0]\nret a"), profile="seccomp"),
         jit(assemble("ld [12]\nst M[3]\nld rand\nret #0x10000"), profile="pio")]
plain = jit(assemble("ldh [12]\nret a"))
progs[0](bytes(14) + b"\x08\x06")
progs[0].run_many([b"", bytes(20)])
assert plain.run_many(Batch([bytes(12) + b"\x08\x06"] * 3)) == [0x806] * 3
progs[1](SeccompData(39))
progs[1].run_many([SeccompData(1)])
progs[2](PioEvent(0x80, 4, 1, 5), mem=[0] * 16)
progs[2].run_many([PioEvent(0x80, 4, 1, 5)], mem=[0] * 16)
assert "z3" not in sys.modules
wx = []
with open("/proc/self/maps") as f:
    for line in f:
        perms = line.split()[1]
        if "w" in perms and "x" in perms:
            wx.append(line.strip())
print("\n".join(wx) if wx else "no w+x mapping")
"""


def test_no_mapping_of_a_fresh_process_is_writable_and_executable():
    done = subprocess.run([sys.executable, "-c", WX_CHILD], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "no w+x mapping"


def test_the_jit_code_is_read_execute_and_freed_with_its_owner():
    progs = [jit(assemble("ldh [12]\njne #0x806, drop\nld rand\nret a\ndrop: ret #0")),
             jit(assemble("ld [0]\nret a"), profile="seccomp"),
             jit(assemble("ld [12]\nst M[3]\nld rand\nret #0x10000"),
                 profile="pio")]
    progs[0](bytes(14) + b"\x08\x06")
    progs[0].run_many([b"", bytes(20)])
    progs[1](SeccompData(39))
    progs[2](PioEvent(0x80, 4, 1, 5), mem=[0] * 16)
    for p in progs:     # every page of each JIT mapping is r-x, never w
        spans = [(lo, hi, perms) for lo, hi, perms in _maps()
                 if lo < p._mem.address + p._mem.size and hi > p._mem.address]
        assert spans and all(perms == "r-xp" for _, _, perms in spans), spans
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
                program = random_program(rng)
                try:
                    verify(program, lints=False)
                except VerifierError:
                    continue
                report((done, bytes(program)))
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
        return (f"seed {seed}, case {last[0]}, program:\n"
                f"{disassemble(Program.from_bytes(last[1]))}")
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
