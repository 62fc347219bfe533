"""The PIO engine's dispatch, models, verdict handling, faults, threads and notifiers.

Verdict handling is tested with hand-written runners that follow the
compiled-program contract ``run(port, size, dir, data, offset, vcpu, ticks,
ns, words) -> (verdict | None, A, executed)``, so these tests exercise the
engine alone; ``test_pio_programs.py`` runs real verified programs.
"""

from __future__ import annotations

import os
import selectors
import sys
import threading
import time

import pytest

from bpfio.errors import PioError
from bpfio.abi import pio as abi
from bpfio.pio.machine import FakeClock, Machine, SharedMemory
from bpfio.pio.notify import HAVE_EVENTFD, Notifier

DONE, NOTIFY, EXIT = abi.PIO_DONE, abi.PIO_NOTIFY, abi.PIO_EXIT


class Regs:
    """A model with four byte registers; records every call."""

    def __init__(self):
        self.regs = [0x11, 0x22, 0x33, 0x44]
        self.calls = []
        self.binding = None

    def attach(self, binding):
        self.binding = binding

    def io_read(self, offset, size):
        self.calls.append(("r", offset, size))
        return int.from_bytes(bytes(self.regs[offset:offset + size]).ljust(size, b"\0"), "little")

    def io_write(self, offset, size, value):
        self.calls.append(("w", offset, size, value))
        self.regs[offset] = value & 0xff


class Faulty:
    def io_read(self, offset, size):
        raise ZeroDivisionError("model bug")

    def io_write(self, offset, size, value):
        raise KeyError(value)


def with_runner(binding, run):
    """Install a contract-shaped runner in place of a compiled program."""
    binding._install(None, run)
    return binding


@pytest.fixture
def m():
    machine = Machine(clock=FakeClock(0))
    yield machine
    machine.close()


# -- dispatch -------------------------------------------------------------------

def test_model_sees_offsets_and_sizes(m):
    dev = Regs()
    b = m.attach(0x3f8, 4, device=dev, name="uart")
    assert dev.binding is b
    assert m.pio_in(0x3f9, 1) == 0x22
    assert m.pio_in(0x3fa, 2) == 0x4433
    m.pio_out(0x3fb, 1, 0x99)
    assert dev.calls == [("r", 1, 1), ("r", 2, 2), ("w", 3, 1, 0x99)]
    assert b.counters.events == 3 and b.counters.exits == 3


def test_first_port_dispatch_straddling_access(m):
    """A 4-byte read at the last port of a range goes to that range (offset = length-1)."""
    dev = Regs()
    m.attach(0x100, 2, device=dev)
    m.attach(0x102, 2, device=Regs())
    m.pio_in(0x101, 4)
    assert dev.calls == [("r", 1, 4)]
    # and an access starting in a hole is unmapped even if it reaches a binding
    assert m.pio_in(0x0ff, 4) == 0xffffffff
    assert dev.calls == [("r", 1, 4)]


@pytest.mark.parametrize("size,ones", [(1, 0xff), (2, 0xffff), (4, 0xffffffff)])
def test_unmapped_reads_all_ones_writes_ignored_and_counted(m, size, ones):
    assert m.pio_in(0x1234, size) == ones
    m.pio_out(0x1234, size, 0)
    assert m.stats()["unmapped"] == 2


def test_unmapped_sweep_every_port_is_all_ones():
    m = Machine(clock=FakeClock())
    m.attach(0x60, 1, device=Regs())
    values = {m.pio_in(p, 1) for p in range(0x10000) if p != 0x60}
    assert values == {0xff}
    assert m.unmapped == 0xffff


def test_binding_without_model_or_program_behaves_unmapped(m):
    b = m.attach(0x80, 1, name="post")
    assert m.pio_in(0x80, 2) == 0xffff
    m.pio_out(0x80, 1, 0x55)
    assert b.counters.exits == 2 and b.counters.unserved == 2


def test_overlap_error_names_both(m):
    m.attach(0xcf8, 8, name="pci")
    with pytest.raises(PioError) as e:
        m.attach(0xcf9, 1, name="rcr")
    assert str(e.value) == ("binding 'rcr' (ports 0xcf9..0xcf9) overlaps binding 'pci' "
                            "(ports 0xcf8..0xcff) at port 0xcf9")
    assert m.binding_at(0xcf9).name == "pci"


def test_adjacent_ranges_do_not_overlap_and_detach_frees(m):
    m.attach(0x40, 4, name="pit")
    m.attach(0x44, 1, name="next")
    m.attach(0x3f, 1, name="prev")
    m.detach("pit")
    assert m.binding_at(0x40) is None
    m.attach(0x41, 2, name="again")
    with pytest.raises(PioError, match="already exists"):
        m.attach(0x1000, 1, name="next")


@pytest.mark.parametrize("args,message", [
    ((0x70, 3), "port 0x70: access size 3 is not 1, 2 or 4"),
    ((0x70, 0), "port 0x70: access size 0 is not 1, 2 or 4"),
    ((70000, 1), "port 70000 is out of range 0..0xffff"),
    ((-1, 1), "port -1 is out of range 0..0xffff"),
    (("0x70", 1), "port must be an integer, not str"),
    ((0x70, 1, -2), "port 0x70: vcpu -2 is not an integer 0..0xffffffff"),
])
def test_bad_accesses_are_clear_errors(m, args, message):
    with pytest.raises(PioError) as e:
        m.pio_in(*args)
    assert str(e.value) == message
    with pytest.raises(PioError) as e:
        m.pio_out(args[0], args[1], 0, *args[2:])
    assert str(e.value) == message


@pytest.mark.parametrize("size,value,message", [
    (1, 0x100, "port 0x70: value 0x100 does not fit a 1-byte access"),
    (2, 0x10000, "port 0x70: value 0x10000 does not fit a 2-byte access"),
    (4, 1 << 32, "port 0x70: value 0x100000000 does not fit a 4-byte access"),
    (1, -1, "port 0x70: value -1 is negative"),
    (1, 1.5, "port 0x70: value must be an integer, not float"),
])
def test_value_too_wide(m, size, value, message):
    dev = Regs()
    m.attach(0x70, 1, device=dev)
    with pytest.raises(PioError) as e:
        m.pio_out(0x70, size, value)
    assert str(e.value) == message
    assert dev.calls == []


@pytest.mark.parametrize("kwargs,message", [
    (dict(base=0x70, length=1, mem_words=0), "mem_words 0 is out of range 1..1024"),
    (dict(base=0x70, length=1, mem_words=5000), "mem_words 5000 is out of range 1..1024"),
    (dict(base=0x70, length=0), "length 0 is out of range 1..65536"),
    (dict(base=0xfffe, length=4), "ports 0xfffe..0x10001 run past 0xffff"),
    (dict(base=0x10000, length=1), "base port 0x10000 is out of range 0x0..0xffff"),
    (dict(base=0x70, length=1, notifiers=300), "notifiers 300 is out of range 0..256"),
    (dict(base=0x70, length=1, device=object()), "binding 'pio@0x70': device model object has "
                                                 "no io_read/io_write methods"),
    (dict(base=0x70, length=1, program=3.0), "program must be a Program, Insn list, raw "
                                             "bytes or assembly text, not float"),
])
def test_bad_attach_requests(m, kwargs, message):
    if "program" in kwargs:
        pytest.importorskip("bpfio.check.verifier")
    with pytest.raises(PioError) as e:
        m.attach(**kwargs)
    assert str(e.value) == message


# -- string I/O -----------------------------------------------------------------

def test_string_io_runs_each_element_in_order(m):
    dev = Regs()
    m.attach(0x60, 4, device=dev)
    m.pio_outs(0x61, 1, [1, 2, 3])
    assert dev.calls == [("w", 1, 1, 1), ("w", 1, 1, 2), ("w", 1, 1, 3)]
    assert m.pio_ins(0x61, 1, 2) == [3, 3]
    assert m.pio_ins(0x500, 2, 3) == [0xffff] * 3
    assert m.pio_ins(0x61, 1, 0) == []


def test_string_out_checks_every_value_before_writing(m):
    dev = Regs()
    m.attach(0x60, 4, device=dev)
    with pytest.raises(PioError, match="value 0x100 does not fit"):
        m.pio_outs(0x60, 1, [1, 2, 0x100])
    assert dev.calls == []
    with pytest.raises(PioError, match="access size 3"):
        m.pio_ins(0x60, 3, 1)
    with pytest.raises(PioError, match="sequence of integers"):
        m.pio_outs(0x60, 1, b"ab")


# -- verdict handling (contract-shaped runners) -----------------------------------

def test_done_returns_a_masked_to_size(m):
    b = with_runner(m.attach(0x608, 4), lambda *a: (DONE | 0x1234, 0xaabbccdd, 3))
    assert m.pio_in(0x608, 4) == 0xaabbccdd
    assert m.pio_in(0x608, 2) == 0xccdd
    assert m.pio_in(0x609, 1) == 0xdd
    c = b.counters
    assert (c.events, c.handled, c.exits, c.insns) == (3, 3, 0, 9)


def test_exit_goes_to_model_abort_and_bad_verdict_counted(m):
    dev = Regs()
    verdicts = iter([EXIT | 0x77, None, 0x00030000, 0xffff0000])
    b = with_runner(m.attach(0x70, 4, device=dev), lambda *a: (next(verdicts), 0, 2))
    assert [m.pio_in(0x70, 1) for _ in range(4)] == [0x11] * 4
    c = b.counters
    assert (c.exits, c.aborts, c.bad_verdicts, c.handled) == (4, 1, 2, 0)
    assert len(dev.calls) == 4


def test_exit_without_model_is_unmapped_default(m):
    b = with_runner(m.attach(0x70, 1), lambda *a: (EXIT, 5, 1))
    assert m.pio_in(0x70, 1) == 0xff
    assert b.counters.unserved == 1


def test_runner_receives_the_context_fields(m):
    clock = m.clock
    clock.ns = (5 << 32) + 123_456_789_000
    seen = []

    def run(*args):
        seen.append(args)
        return DONE, 0, 1

    b = with_runner(m.attach(0x600, 16, clock_hz=3579545), run)
    m.pio_out(0x60a, 2, 0xbeef, vcpu=3)
    port, size, direction, data, offset, vcpu, ticks, ns, words = seen[0]
    assert (port, size, direction, data, offset, vcpu) == (0x60a, 2, abi.PIO_OUT, 0xbeef, 10, 3)
    assert ns == clock.ns
    assert ticks == clock.ns * 3579545 // 10 ** 9 == b.ticks(clock.ns)
    assert words is b.mem.words


def test_no_clock_hz_means_zero_ticks(m):
    m.clock.ns = 10 ** 12
    seen = []
    with_runner(m.attach(0x40, 1), lambda *a: (seen.append(a[6]), (DONE, 0, 1))[1])
    m.pio_in(0x40, 1)
    assert seen == [0]


def test_one_clock_reading_per_event_shared_with_the_model():
    """Program and model of one event see the same reading, even if the clock moves on every call."""
    ticks = iter(range(1000, 10 ** 6, 1000))
    m = Machine(clock=lambda: next(ticks))

    class Model:
        def attach(self, b):
            self.b = b

        def io_read(self, offset, size):
            return self.b.now_ns()

        def io_write(self, offset, size, value):
            pass

    seen = []
    model = Model()
    with_runner(m.attach(0x70, 1, device=model),
                lambda *a: (seen.append(a[7]), (EXIT, 0, 1))[1])
    m.pio_in(0x70, 4)
    assert seen == [1000]
    assert m.pio_in(0x70, 4) == 2000 and seen == [1000, 2000]


def test_shared_memory_coherence_program_and_model(m):
    """The program's words and binding.mem are one storage; the model sees program stores."""

    def run(port, size, direction, data, offset, vcpu, ticks, ns, words):
        if direction == abi.PIO_OUT:
            words[0] = data
            return DONE, 0, 2
        return EXIT, 0, 1   # reads go to the model

    class Model:
        def attach(self, b):
            self.mem = b.mem

        def io_read(self, offset, size):
            self.mem[1] = self.mem[1] + 1
            return self.mem[0]

        def io_write(self, offset, size, value):
            pass

    b = with_runner(m.attach(0x70, 2, device=Model()), run)
    m.pio_out(0x70, 1, 0x42)
    assert b.mem[0] == 0x42 and m.pio_in(0x71, 1) == 0x42 and b.mem[1] == 1
    b.mem[0] = 0x1_0000_0007     # host writes are masked to u32 and seen by the program path
    assert b.mem.words[0] == 7 and m.pio_in(0x70, 1) == 7


def test_shared_memory_object():
    mem = SharedMemory(4)
    assert len(mem) == 4 and list(mem) == [0, 0, 0, 0]
    mem[3] = -1
    assert mem[3] == 0xffffffff and mem[-1] == 0xffffffff
    mem[0:2] = [1, 2]
    assert mem[:] == [1, 2, 0, 0xffffffff]
    with pytest.raises(IndexError):
        mem[4] = 1
    with pytest.raises(IndexError):
        mem[4]
    with pytest.raises(ValueError):
        mem[0:2] = [1]


# -- faults ---------------------------------------------------------------------

def test_model_exceptions_are_contained_and_recorded(m):
    b = m.attach(0x64, 1, device=Faulty(), name="kbd")
    assert m.pio_in(0x64, 1) == 0xff
    m.pio_out(0x64, 1, 0xfe)
    assert b.counters.faults == 2
    faults = m.faults()
    assert [f.binding for f in faults] == ["kbd", "kbd"]
    assert "ZeroDivisionError: model bug" in faults[0].traceback
    assert "KeyError: 254" in faults[1].traceback
    assert m.stats()["faults"] == 2


def test_model_returning_garbage_is_a_fault(m):
    class Bad:
        def io_read(self, o, s):
            return "x"

        def io_write(self, o, s, v):
            pass

    b = m.attach(0x64, 1, device=Bad())
    assert m.pio_in(0x64, 1) == 0xff and b.counters.faults == 1


def test_fault_records_are_bounded():
    m = Machine(clock=FakeClock())
    b = m.attach(0x64, 1, device=Faulty())
    for _ in range(1000):
        m.pio_in(0x64, 1)
    assert b.counters.faults == 1000 and len(m.faults()) <= 64


def test_model_attach_failure_leaves_ports_free(m):
    class Refuses(Regs):
        def attach(self, b):
            raise ValueError("no")

    with pytest.raises(PioError, match="Refuses.attach failed: ValueError: no"):
        m.attach(0x70, 2, device=Refuses(), name="rtc")
    assert m.binding_at(0x70) is None and "rtc" not in m.bindings


# -- concurrency ----------------------------------------------------------------

def test_events_are_atomic_per_binding_under_threads(m):
    """Read-modify-write of shared memory from 4 vCPU threads loses no update."""

    def run(port, size, direction, data, offset, vcpu, ticks, ns, words):
        v = words[0]
        time.sleep(0)         # yield the GIL mid-update: without the lock, updates are lost
        words[0] = v + 1
        words[1 + vcpu] += 1
        return DONE, v, 5

    b = with_runner(m.attach(0x70, 1), run)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        n = 1000
        threads = [threading.Thread(target=lambda v=v: [m.pio_in(0x70, 4, vcpu=v)
                                                        for _ in range(n)]) for v in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert b.mem[0] == 4 * n
    assert b.mem[1:5] == [n] * 4
    assert b.counters.events == 4 * n and b.counters.insns == 5 * 4 * n


# -- notifiers ------------------------------------------------------------------

@pytest.mark.parametrize("portable", [False, True])
def test_notifier_counter_semantics(portable):
    if not portable and not HAVE_EVENTFD:
        pytest.skip("os.eventfd not available")
    n = Notifier("q", portable=portable)
    assert n.kind == ("pipe" if portable else "eventfd")
    assert n.read() == 0 and n.wait(0) == 0
    for _ in range(5):
        n.signal()
    sel = selectors.DefaultSelector()
    sel.register(n, selectors.EVENT_READ)
    assert len(sel.select(0)) == 1
    assert n.read() == 5           # five signals, one wake-up
    assert sel.select(0) == [] and n.read() == 0
    sel.close()
    n.close()


def test_notify_verdict_signals_and_coalesces(m):
    def run(port, size, direction, data, offset, vcpu, ticks, ns, words):
        words[0] = 0            # "clear the flag" before the notify, as Liguori's case asks
        return NOTIFY | data, 0, 3

    b = with_runner(m.attach(0xc010, 2, notifiers=2), run)
    b.mem[0] = 1
    for _ in range(7):
        m.pio_out(0xc010, 2, 1)
    m.pio_out(0xc010, 2, 0)
    assert b.mem[0] == 0
    assert b.notifier(1).read() == 7 and b.notifier(0).read() == 1
    m.pio_out(0xc010, 2, 5)         # index past the binding's notifiers: bad verdict -> exit
    c = b.counters
    assert (c.notified, c.handled, c.bad_verdicts, c.exits) == (8, 8, 1, 1)
    with pytest.raises(PioError, match="has 2 notifier"):
        b.notifier(2)


def test_consumer_thread_wakes_with_count(m):
    b = with_runner(m.attach(0xc010, 2, notifiers=1), lambda *a: (NOTIFY, 0, 1))
    got = []
    ready = threading.Event()

    def consumer():
        ready.set()
        got.append(b.notifier(0).wait(timeout=5))

    t = threading.Thread(target=consumer)
    t.start()
    ready.wait()
    m.pio_out(0xc010, 2, 0)
    t.join(5)
    assert got and got[0] >= 1
    total = got[0] + b.notifier(0).read()
    assert total == 1


def test_detach_closes_notifiers(m):
    b = m.attach(0x70, 1, notifiers=1)
    fd = b.notifier(0).fileno()
    m.detach(b.name)
    with pytest.raises(OSError):
        os.fstat(fd)


def test_stats_shape(m):
    with_runner(m.attach(0x608, 4, name="pm"), lambda *a: (DONE, 1, 4))
    m.pio_in(0x608, 4)
    m.pio_in(0x609, 1)
    m.pio_in(0x1, 1)
    s = m.stats()
    assert s["events"] == 3 and s["handled"] == 2 and s["unmapped"] == 1
    assert s["fast_path_share"] == pytest.approx(2 / 3)
    assert s["bindings"]["pm"]["insns"] == 8


def test_module_docstring_example_runs():
    import doctest

    import bpfio.pio.machine as mod
    pytest.importorskip("bpfio.exec.compiler")
    result = doctest.testmod(mod)
    assert result.attempted >= 5 and result.failed == 0


@pytest.mark.parametrize("insns,timed", [
    ([(0x20, 24)], True),            # ld [PIO_TICKS]
    ([(0x30, 39)], True),            # ldb [PIO_NS_HI + 3]
    ([(0x28, 22)], False),           # ldh [22]: vcpu low half
    ([(0x28, 23)], True),            # ldh [23]: reaches byte 24
    ([(0x20, 40)], False),           # ld [PIO_MEM]
    ([(0xb1, 30)], True),            # ldx 4*([30]&0xf)
    ([(0xb1, 12)], False),
    ([(0x40, 0)], True),             # ld [x + 0]: may reach anything
    ([(0x60, 3), (0x61, 24)], False),  # ld M[3]; ldx M[24]
])
def test_clock_fields(insns, timed):
    from bpfio.insn import Insn, Program
    from bpfio.pio.machine import clock_fields
    prog = Program([Insn(c, 0, 0, k) for c, k in insns] + [Insn(0x06, 0, 0, 0)])
    assert clock_fields(prog) is timed


@pytest.mark.parametrize("portable", [False, True])
def test_notifier_wakes_an_asyncio_loop(portable):
    """An event loop waits on the notifier's fd; kicks before it runs arrive as one count."""
    import asyncio

    if not portable and not HAVE_EVENTFD:
        pytest.skip("os.eventfd not available")
    n = Notifier("q", portable=portable)

    async def consumer():
        loop = asyncio.get_running_loop()
        woke = loop.create_future()
        loop.add_reader(n.fileno(), lambda: woke.done() or woke.set_result(n.read()))
        try:
            for _ in range(4):
                n.signal()
            return await asyncio.wait_for(woke, 5)
        finally:
            loop.remove_reader(n.fileno())

    assert asyncio.run(consumer()) == 4
    n.close()


def test_event_clock_reading_is_private_to_the_event_thread():
    """While a model runs, other threads calling now_ns() get a fresh reading, not the event's."""
    clock = FakeClock(100)
    m = Machine(clock=clock)
    seen = {}
    inside = threading.Event()
    release = threading.Event()

    class Slow:
        def attach(self, b):
            self.b = b

        def io_read(self, offset, size):
            seen["model"] = self.b.now_ns()
            inside.set()
            release.wait(5)
            seen["model_again"] = self.b.now_ns()
            return 0

        def io_write(self, offset, size, value):
            pass

    b = m.attach(0x70, 1, device=Slow())
    t = threading.Thread(target=m.pio_in, args=(0x70, 1))
    t.start()
    inside.wait(5)
    clock.ns = 200
    seen["host"] = b.now_ns()
    release.set()
    t.join(5)
    assert seen == {"model": 100, "model_again": 100, "host": 200}
    assert b.now_ns() == 200
