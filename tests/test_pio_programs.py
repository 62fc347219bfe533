"""Real verified programs in the engine, on both engines (interpreter and compiled)."""

from __future__ import annotations

import importlib.util
import threading

import pytest
from hypothesis import given, settings, strategies as st

from bpfio.errors import PioError, VerifierError
from bpfio.abi import pio as abi
from bpfio.pio.machine import FakeClock, Machine

pytest.importorskip("bpfio.check.verifier")
pytest.importorskip("bpfio.text.assembler")


def _engines():
    out = []
    if importlib.util.find_spec("bpfio.exec.interp") is not None:
        out.append("interp")
    out.append(pytest.param("compiled", marks=pytest.mark.skipif(
        importlib.util.find_spec("bpfio.exec.compiler") is None,
        reason="bpfio.exec.compiler not built yet")))
    out.append(pytest.param("jit", marks=pytest.mark.skipif(
        _jit_unavailable() is not None, reason=f"JIT unavailable: {_jit_unavailable()}")))
    return out


def _jit_unavailable():
    if importlib.util.find_spec("bpfio.exec.jit") is None:
        return "bpfio.exec.jit not built yet"
    from bpfio.exec.jit.mem import unavailable_reason
    return unavailable_reason()


ENGINES = _engines()
HDR = "#include <pio.inc>\n"


@pytest.fixture(params=ENGINES)
def m(request):
    machine = Machine(clock=FakeClock(0), engine=request.param)
    yield machine
    machine.close()


class Recorder:
    def __init__(self, value=0x5a):
        self.value = value
        self.calls = []

    def attach(self, binding):
        self.binding = binding

    def io_read(self, offset, size):
        self.calls.append(("r", offset, size))
        return self.value

    def io_write(self, offset, size, value):
        self.calls.append(("w", offset, size, value))


PMTIMER = HDR + """
    ld [PIO_TICKS]
    and #0xffffff
    ret #PIO_DONE
"""


@pytest.mark.parametrize("t_ns", [0, 1, 999_999_999, 10 ** 9, 4_686_971_000, 4_686_972_000,
                                  123_456_789_012_345, (1 << 64) - 1])
def test_pm_timer_value(m, t_ns):
    m.clock.ns = t_ns
    b = m.attach(0x608, 4, clock_hz=3579545, program=PMTIMER)
    want = (t_ns * 3579545 // 10 ** 9) & 0xffffff
    assert m.pio_in(0x608, 4) == want
    assert m.pio_in(0x608, 2) == want & 0xffff
    assert m.pio_in(0x60b, 1) == want & 0xff
    m.pio_out(0x608, 4, 0x1234)
    c = b.counters
    assert (c.events, c.handled, c.exits, c.insns) == (4, 4, 0, 12)


def test_context_fields_seen_by_program(m):
    """Each header field, read by `ld [k]`, as the ABI defines it."""
    m.clock.ns = (3 << 32) | 0x1234_5678
    fields = {}
    for name in abi.FIELDS:
        fields[name] = m.attach(0x100 + 16 * len(fields), 16, clock_hz=10 ** 9, name=name,
                                program=HDR + f"ld [{name}]\nret #PIO_DONE\n")
    base = {n: b.base for n, b in fields.items()}

    def get(name, direction="out", port_off=5, size=2, data=0xbeef, vcpu=7):
        port = base[name] + port_off
        box = []
        b = fields[name]
        old = b._run
        prog = b.program

        def spy(*args):   # capture A for an OUT as well: re-run and keep A
            r = old(*args)
            box.append(r[1])
            return r
        b._install(prog, spy)
        try:
            if direction == "out":
                m.pio_out(port, size, data, vcpu)
            else:
                m.pio_in(port, size, vcpu)
        finally:
            b._install(prog, old)
        return box[0]

    assert get("PIO_PORT") == base["PIO_PORT"] + 5
    assert get("PIO_SIZE") == 2
    assert get("PIO_DIR") == abi.PIO_OUT and get("PIO_DIR", "in") == abi.PIO_IN
    assert get("PIO_DATA") == 0xbeef and get("PIO_DATA", "in") == 0
    assert get("PIO_OFFSET") == 5
    assert get("PIO_VCPU") == 7
    assert get("PIO_TICKS") == 0x1234_5678 and get("PIO_TICKS_HI") == 3
    assert get("PIO_NS") == 0x1234_5678 and get("PIO_NS_HI") == 3


def test_each_verdict(m):
    dev = Recorder()
    b = m.attach(0x70, 8, device=dev, notifiers=2, program=HDR + """
        ld [PIO_OFFSET]
        jeq #0, done
        jeq #1, notify
        jeq #2, pass
        jeq #3, abort
        ld #0x50000        ; offset 4: an unknown action
        ret a
    done:   ld #0xabcd
            ret #PIO_DONE
    notify: ret #PIO_NOTIFY_1
    pass:   ret #PIO_EXIT
    abort:  ldx #1000
            ld [x + 0]
            ret #PIO_DONE
    """)
    assert m.pio_in(0x70, 2) == 0xabcd                   # DONE: A masked to size
    assert m.pio_in(0x70, 1) == 0xcd
    assert m.pio_in(0x71, 1) == 1 & 0xff                 # NOTIFY: handled; A = 1 (the offset)
    assert b.notifier(1).read() == 1
    assert m.pio_in(0x72, 1) == 0x5a and dev.calls == [("r", 2, 1)]     # EXIT -> model
    assert m.pio_in(0x73, 1) == 0x5a                     # abort -> verdict 0 -> model
    assert m.pio_in(0x74, 1) == 0x5a                     # bad verdict -> model
    c = b.counters
    assert (c.handled, c.notified, c.exits, c.aborts, c.bad_verdicts) == (3, 1, 3, 1, 1)
    assert len(dev.calls) == 3


def test_notify_after_clearing_flag_coalesces(m):
    """A kick clears the 'notify' flag word and signals; N kicks = one wake-up with count N."""
    b = m.attach(0xc010, 2, notifiers=1, program=HDR + """
        ld [PIO_SIZE]
        jne #2, pass
        ld #0
        st M[0]              ; clear the flag before signalling
        ret #PIO_NOTIFY_0
    pass: ret #PIO_EXIT
    """)
    b.mem[0] = 1
    for _ in range(5):
        m.pio_out(0xc010, 2, 0)
    assert b.mem[0] == 0
    assert b.notifier(0).read() == 5 and b.notifier(0).read() == 0
    m.pio_out(0xc010, 1, 0)   # a byte write is not a kick
    assert b.counters.notified == 5 and b.counters.exits == 1


def test_shared_memory_coherent_between_program_model_and_host(m):
    class Model:
        def attach(self, binding):
            self.mem = binding.mem

        def io_read(self, offset, size):
            return self.mem[0] * 2                     # sees the program's store

        def io_write(self, offset, size, value):
            self.mem[5] = value                        # the program reads it via [x + PIO_MEM]

    b = m.attach(0x70, 2, device=Model(), mem_words=8, program=HDR + """
        ld [PIO_DIR]
        jeq #PIO_IN, rd
        ld [PIO_OFFSET]
        jeq #1, model_write
        ld [PIO_DATA]
        st M[0]
        ret #PIO_DONE
    model_write: ret #PIO_EXIT
    rd: ld [PIO_OFFSET]
        jeq #0, model_read
        ldx #20
        ld [x + PIO_MEM]                               ; word 5 of shared memory
        ret #PIO_DONE
    model_read: ret #PIO_EXIT
    """)
    m.pio_out(0x70, 1, 21)
    assert b.mem[0] == 21 and m.pio_in(0x70, 1) == 42
    m.pio_out(0x71, 2, 0x1234)
    assert m.pio_in(0x71, 2) == 0x1234
    b.mem[5] = 0xcafe
    assert m.pio_in(0x71, 4) == 0xcafe


def test_memory_is_per_binding(m):
    src = HDR + "ld M[0]\nadd #1\nst M[0]\nret #PIO_DONE\n"
    a = m.attach(0x10, 1, program=src)
    b = m.attach(0x20, 1, program=src)
    for _ in range(3):
        m.pio_in(0x10, 1)
    assert (a.mem[0], b.mem[0]) == (3, 0)


def test_replace_program(m):
    b = m.attach(0x80, 1, program=HDR + "ld #1\nret #PIO_DONE\n", mem_words=4)
    assert m.pio_in(0x80, 1) == 1
    b.replace_program(HDR + "ld #2\nret #PIO_DONE\n")
    assert m.pio_in(0x80, 1) == 2
    with pytest.raises(VerifierError, match="M\\[8\\] does not exist"):
        b.replace_program(HDR + "ld M[8]\nret #PIO_DONE\n")
    assert m.pio_in(0x80, 1) == 2
    with pytest.raises(BaseException):
        b.replace_program("not a program at all ((")
    assert m.pio_in(0x80, 1) == 2
    b.replace_program(None)
    assert m.pio_in(0x80, 1) == 0xff


def test_replace_program_under_load_is_atomic(m):
    """Readers see the old or the new program's answer, never a torn state."""
    b = m.attach(0x80, 1, program=HDR + "ld #1\nret #PIO_DONE\n")
    stop = threading.Event()
    seen = set()

    def reader():
        while not stop.is_set():
            seen.add(m.pio_in(0x80, 1))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(20):
            b.replace_program(HDR + f"ld #{2 + i % 2}\nret #PIO_DONE\n")
    finally:
        stop.set()
        t.join()
    assert seen <= {1, 2, 3} and b.counters.aborts == 0


@pytest.mark.parametrize("src,kwargs,rule", [
    ("ld M[16]\nret #PIO_DONE", {}, "mem-index"),
    ("ret #PIO_NOTIFY_2", {"notifiers": 2}, "pio-notifier"),
    ("ret #0x30000", {}, "pio-action"),
    ("ld [PIO_MEM]\nret #PIO_DONE", {"mem_words": 1}, None),  # accepted: word 0 exists
    ("ld [44]\nret #PIO_DONE", {"mem_words": 1}, "bounds"),
])
def test_attach_verifies_with_the_binding_sizes(m, src, kwargs, rule):
    if rule is None:
        m.attach(0x90, 1, program=HDR + src, **kwargs)
        return
    with pytest.raises(VerifierError) as e:
        m.attach(0x90, 1, program=HDR + src, **kwargs)
    assert e.value.profile == "pio" and e.value.pc is not None
    if rule != "bounds":
        assert e.value.rule == rule
    assert m.binding_at(0x90) is None


def test_programs_as_insn_lists(m):
    from bpfio.insn import Insn
    b = m.attach(0x90, 1, program=[Insn(0x00, 0, 0, 7), Insn(0x16, 0, 0, 0)])  # ld #7; ret a
    assert m.pio_in(0x90, 1) == 0xff          # ret a with A=7 -> action 0 -> EXIT, no model
    assert b.counters.exits == 1
    with pytest.raises(PioError, match="program must be"):
        m.attach(0x91, 1, program=[1, 2])


def test_vcpu_threads_with_programs(m):
    b = m.attach(0x70, 1, mem_words=4, program=HDR + "ld M[0]\nadd #1\nst M[0]\nret #PIO_DONE\n")
    n = 2000
    ts = [threading.Thread(target=lambda v=v: [m.pio_in(0x70, 1, v) for _ in range(n)])
          for v in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert b.mem[0] == 4 * n and b.counters.handled == 4 * n


# -- interpreter and compiled program agree inside the engine ----------------------

DIFF_PROGRAM = HDR + """
    ld [PIO_DIR]
    jeq #PIO_OUT, wr
    ld [PIO_OFFSET]
    tax
    ld [x + PIO_MEM]     ; unaligned reads of shared memory, too
    tax
    ld [PIO_TICKS]
    add x
    jset #0x100, pass
    ret #PIO_DONE
wr: ld [PIO_DATA]
    st M[1]
    ldx M[1]
    ld M[2]
    add x
    st M[2]
    and #3
    jeq #3, kick
    ret #PIO_DONE
kick: ret #PIO_NOTIFY_0
pass: ret #PIO_EXIT
"""

event = st.tuples(st.sampled_from(["in", "out"]), st.integers(0, 7), st.sampled_from([1, 2, 4]),
                  st.integers(0, 0xffffffff), st.integers(0, 10 ** 12))


@pytest.mark.skipif(importlib.util.find_spec("bpfio.exec.compiler") is None,
                    reason="bpfio.exec.compiler not built yet")
@settings(max_examples=60, deadline=None)
@given(st.lists(event, max_size=40))
def test_engines_agree(events):
    results = []
    for engine in ("interp", "compiled") + (("jit",) if _jit_unavailable() is None else ()):
        clock = FakeClock()
        mach = Machine(clock=clock, engine=engine)
        b = mach.attach(0x300, 8, program=DIFF_PROGRAM, device=Recorder(), clock_hz=1193182,
                        notifiers=1, mem_words=4)
        out = []
        t = 0
        for op, off, size, value, dt in events:
            t += dt
            clock.ns = t
            if op == "in":
                out.append(mach.pio_in(0x300 + off, size))
            else:
                mach.pio_out(0x300 + off, size, value & ((1 << 8 * size) - 1))
        results.append((out, list(b.mem), b.counters.as_dict(), b.notifier(0).read()))
        mach.close()
    assert all(r == results[0] for r in results)


def test_clock_read_lazily_for_programs_that_cannot_see_time():
    """A program without time loads does not read the clock; the model still gets one reading."""
    calls = []

    def clock():
        calls.append(1)
        return 5_000_000_000

    m = Machine(clock=clock, engine=ENGINES[0])

    class Model:
        def attach(self, b):
            self.b = b

        def io_read(self, offset, size):
            return self.b.now_ns() // 10 ** 9 + self.b.now_ns() // 10 ** 9

        def io_write(self, offset, size, value):
            pass

    m.attach(0x70, 2, device=Model(), program=HDR + """
        ld [PIO_OFFSET]
        jeq #0, pass
        ret #PIO_DONE
    pass: ret #PIO_EXIT
    """)
    m.pio_in(0x71, 1)
    assert calls == []
    assert m.pio_in(0x70, 1) == 10 and calls == [1]


# -- slow sweeps (python -m pytest --run-slow tests/test_pio_programs.py) ---------------

@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("bpfio.exec.compiler") is None,
                    reason="bpfio.exec.compiler not built yet")
def test_engines_agree_sweep():
    """BPFIO_PIO_SWEEP random accesses (default 200000) give the same results on both engines."""
    import os
    import random
    n = int(os.environ.get("BPFIO_PIO_SWEEP", "200000"))
    rng = random.Random(1234)
    events = [(rng.choice("io"), rng.randrange(8), rng.choice((1, 2, 4)), rng.getrandbits(32),
               rng.randrange(10 ** 9)) for _ in range(n)]
    results = []
    for engine in ("interp", "compiled") + (("jit",) if _jit_unavailable() is None else ()):
        clock = FakeClock()
        mach = Machine(clock=clock, engine=engine)
        b = mach.attach(0x300, 8, program=DIFF_PROGRAM, device=Recorder(), clock_hz=1193182,
                        notifiers=1, mem_words=4)
        digest, t = 0, 0
        for op, off, size, value, dt in events:
            t += dt
            clock.ns = t
            if op == "i":
                digest = (digest * 31 + mach.pio_in(0x300 + off, size)) & 0xffffffffffff
            else:
                mach.pio_out(0x300 + off, size, value & ((1 << 8 * size) - 1))
        results.append((digest, list(b.mem), b.counters.as_dict(), b.notifier(0).read()))
        mach.close()
    assert all(r == results[0] for r in results)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("bpfio.exec.compiler") is None,
                    reason="bpfio.exec.compiler not built yet")
def test_memory_flat_over_many_events():
    """Resident memory does not grow over BPFIO_PIO_EVENTS accesses (default 2,000,000)."""
    import gc
    import os
    n = int(os.environ.get("BPFIO_PIO_EVENTS", "2000000"))
    m = Machine()
    dev = Recorder()
    dev.io_read = lambda offset, size: 7          # keep the model from recording calls
    m.attach(0x608, 4, clock_hz=3579545, program=PMTIMER)
    m.attach(0x70, 2, device=dev, program=HDR + "ret #PIO_EXIT\n")
    pio_in = m.pio_in

    def rss_kib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    for _ in range(50_000):
        pio_in(0x608, 4), pio_in(0x70, 1), pio_in(0x700, 1)
    gc.collect()
    before = rss_kib()
    for _ in range(n // 3):
        pio_in(0x608, 4), pio_in(0x70, 1), pio_in(0x700, 1)
    gc.collect()
    assert rss_kib() - before < 2048
