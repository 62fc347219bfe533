"""The engine's inlined (fused) compiled path behaves exactly like the interpreter engine.

The default engine inlines a program's compiled statements into the binding's event
function (``compiler.fused_body``).  Random verified pio programs and random accesses go
through a ``compiled`` machine and an ``interp`` machine; every IN value, the shared memory,
the counters and the notifier counts must agree.  The block-dispatch form used for huge
programs is forced once too.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, assume, given, settings, strategies as st

from bpfio.exec import compiler
from bpfio.exec.gen import random_program
from bpfio.pio.machine import FakeClock, Machine
from bpfio.check.verifier import verify

MEM = 16


class Model:
    """A deterministic device: reads depend on offset, size and the writes seen so far."""

    def __init__(self):
        self.state = 0

    def io_read(self, offset, size):
        self.state = (self.state * 1103515245 + offset * 7 + size) & 0xffffffff
        return self.state

    def io_write(self, offset, size, value):
        self.state = (self.state ^ value ^ (offset << 8) ^ size) & 0xffffffff


def _machines_agree(program, rng, events=30):
    results = []
    start = rng.getrandbits(40)
    accesses = [(rng.random() < 0.5, rng.randrange(8), rng.choice((1, 2, 4)), rng.getrandbits(32),
                 rng.randrange(10 ** 10)) for _ in range(events)]
    for engine in ("interp", "compiled"):
        clock = FakeClock(start)
        m = Machine(clock=clock, engine=engine)
        b = m.attach(0x500, 8, program=program, device=Model(), clock_hz=1193182,
                     mem_words=MEM, notifiers=2)
        if engine == "compiled":
            assert "while True" in m._table[0x500].source or "b = 0" in m._table[0x500].source
        for i in range(MEM):
            b.mem[i] = (i * 0x9e3779b9) & 0xffffffff
        seen, t = [], clock.ns
        for is_in, off, size, value, dt in accesses:
            clock.ns = t = t + dt
            if is_in:
                seen.append(m.pio_in(0x500 + off, size, vcpu=off & 1))
            else:
                m.pio_out(0x500 + off, size, value & ((1 << 8 * size) - 1), vcpu=off & 1)
        results.append((seen, list(b.mem), b.counters.as_dict(),
                        [b.notifier(i).read() for i in range(2)], b.device.state))
        m.close()
    return results


def _random_pio_program(seed):
    rng = random.Random(seed)
    program = random_program(rng, profile="pio", oracle_safe=False)
    try:
        verify(program, profile="pio", mem_words=MEM, notifiers=2, lints=False)
    except Exception:
        return None, rng
    if any(i.code in (0x20, 0x28, 0x30) and i.k == 0xfffff038 for i in program):
        return None, rng    # `ld rand` differs between runs by design
    return program, rng


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_fused_engine_matches_interpreter(seed):
    program, rng = _random_pio_program(seed)
    assume(program is not None)
    interp_result, fused_result = _machines_agree(program, rng)
    assert fused_result == interp_result


def test_block_dispatch_form_is_fused_too(monkeypatch):
    monkeypatch.setattr(compiler, "_tree_sizes", lambda ops: [10 ** 9] * len(ops))
    compiler.fused_body.cache_clear()
    try:
        checked = 0
        for seed in range(400):
            program, rng = _random_pio_program(seed)
            if program is None:
                continue
            interp_result, fused_result = _machines_agree(program, rng, events=12)
            assert fused_result == interp_result, seed
            checked += 1
        assert checked > 50
    finally:
        compiler.fused_body.cache_clear()


def test_fused_source_inlines_the_program():
    m = Machine(clock=FakeClock(10 ** 9))
    m.attach(0x608, 4, clock_hz=3579545, mem_words=1, name="pm", program="""
        #include <pio.inc>
        ld [PIO_TICKS]
        and #0xffffff
        ret #PIO_DONE""")
    src = m._table[0x608].source
    assert "run(" not in src and "A &= 16777215" in src
    assert m.pio_in(0x608, 4) == 3579545 and m.stats()["bindings"]["pm"]["insns"] == 3


def test_a_custom_runner_is_called_not_inlined():
    from bpfio.pio.program import load_runner
    m = Machine(clock=FakeClock())
    b = m.attach(0x70, 1, program="ret #0x10000")
    calls = []
    std = load_runner(bytes(b.program), "compiled")

    def spy(*args):
        calls.append(args[0])
        return std(*args)
    b._install(b.program, spy)
    m.pio_in(0x70, 1)
    assert calls == [0x70]
