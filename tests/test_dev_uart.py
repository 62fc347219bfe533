"""16550A UART: the model against QEMU/datasheet facts, and asm/uart.asm + model
against the model alone (differential), plus the Linux polling loops."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from bpfio.devices.base import LocalBinding
from bpfio.devices.uart import UART
from bpfio.pio.machine import FakeClock, Machine
from bpfio.resources import asm_dir

from devtools import (EXAMPLES, Recording, check_workload, counting, engine_params,
                      replay_example)

# Every test here runs once per engine: the compiled path and native code (the JIT).
pytestmark = pytest.mark.usefixtures("pio_engine")

BASE = 0x3F8
THR, IER, IIR, FCR, LCR, MCR, LSR, MSR, SCR = 0, 1, 2, 2, 3, 4, 5, 6, 7
PROGRAM = (asm_dir() / "uart.asm").read_text()


def attached(clock=None) -> UART:
    u = UART()
    u.attach(LocalBinding(32, clock=clock, length=8))
    return u


CountingUART = counting(UART)


def machine(program: bool, clock: FakeClock):
    m = Machine(clock=clock)
    u = CountingUART()
    b = m.attach(BASE, 8, program=PROGRAM if program else None, device=u, mem_words=32,
                 name="uart")
    return m, u, b


# ---- the model alone: QEMU serial.c / PC16550D facts --------------------------

def test_reset_values():
    u = attached()
    assert [u.io_read(r, 1) for r in (IER, IIR, LCR, MCR, LSR, MSR, SCR)] == \
        [0x00, 0x01, 0x00, 0x08, 0x60, 0xB0, 0x00]
    u.io_write(LCR, 1, 0x80)                       # DLAB: divisor 0x000C = 9600 baud
    assert (u.io_read(0, 1), u.io_read(1, 1)) == (0x0C, 0x00)


def test_divisor_latch_and_character_time():
    u = attached()
    u.io_write(LCR, 1, 0x83)
    u.io_write(0, 1, 0x01)                         # 115200 baud
    u.io_write(1, 1, 0x00)
    u.io_write(LCR, 1, 0x03)                       # 8N1: 10 bits per character
    assert u.divider == 1
    assert u.char_transmit_time == 10 * 1_000_000_000 // 115200
    u.io_write(LCR, 1, 0x83)
    u.io_write(0, 1, 0)                            # divisor 0 is ignored by QEMU
    assert u.char_transmit_time == 10 * 1_000_000_000 // 115200


def test_wide_out_is_split_into_bytes():
    u = attached()
    u.io_write(0, 2, 0x0F41)                       # THR <- 'A', IER <- 0x0F
    assert u.take_output() == b"A" and u.io_read(IER, 1) == 0x0F
    assert u.io_read(6, 4) == 0xFFFF00B0           # MSR, SCR, then two ports past the UART


def test_thr_empty_interrupt_and_iir_acknowledge():
    u = attached()
    u.io_write(IER, 1, 0x02)                       # THRI on while THRE: interrupt at once
    assert u.irq_level
    assert u.io_read(IIR, 1) == 0x02
    assert u.io_read(IIR, 1) == 0x01 and not u.irq_level   # the read acknowledged it
    u.io_write(THR, 1, ord("x"))
    assert u.io_read(IIR, 1) == 0x02


def test_fifo_enable_sets_iir_high_bits_and_trigger_level():
    u = attached()
    u.io_write(FCR, 1, 0xC7)
    assert u.io_read(IIR, 1) == 0xC1 and u.recv_fifo_itl == 14
    u.io_write(FCR, 1, 0x00)
    assert u.io_read(IIR, 1) == 0x01


def test_loopback_receives_own_bytes_and_maps_modem_lines():
    u = attached()
    u.io_write(MCR, 1, 0x10 | 0x0B)                # LOOP | OUT2 | RTS | DTR
    assert u.io_read(MSR, 1) == (0x80 | 0x10 | 0x20)  # OUT2->DCD, RTS->CTS, DTR->DSR
    u.io_write(THR, 1, 0x5A)
    assert u.io_read(LSR, 1) & 0x01 and u.io_read(0, 1) == 0x5A
    assert u.take_output() == b""                  # loopback does not reach the host


def test_overrun_without_fifo_and_lsr_read_clears_it():
    u = attached()
    u.receive(b"ab")                                # can_receive = 1 without a FIFO
    assert u.rx_pending == type(u.rx_pending)(b"b")
    assert u.io_read(0, 1) == ord("a")              # accept_input delivers the next byte
    assert u.io_read(0, 1) == ord("b")
    assert u.io_read(LSR, 1) == 0x60
    u.io_write(MCR, 1, 0x10)
    u.io_write(THR, 1, 1)
    u.io_write(THR, 1, 2)                           # loopback ignores can_receive: overrun
    assert u.io_read(LSR, 1) == 0x63 and u.io_read(LSR, 1) == 0x61


def test_fifo_character_timeout_uses_the_clock():
    clock = FakeClock(0)
    u = attached(clock)
    u.io_write(FCR, 1, 0xC1)                        # FIFO, trigger 14
    u.io_write(IER, 1, 0x01)                        # RDI
    u.receive(b"z")
    assert u.io_read(IIR, 1) == 0xC1                # 1 byte < trigger: nothing yet
    clock.advance(4 * u.char_transmit_time - 1)
    assert u.io_read(IIR, 1) == 0xC1
    clock.advance(1)
    assert u.io_read(IIR, 1) == 0xCC and u.irq_level  # character timeout, line still up
    assert u.io_read(0, 1) == ord("z") and u.io_read(IIR, 1) == 0xC1


def test_modem_status_deltas_and_msi():
    u = attached()
    u.io_write(IER, 1, 0x08)
    u.set_modem_lines(0xB0 | 0x40)                  # RI rises: no TERI
    assert u.io_read(IIR, 1) == 0x01
    u.set_modem_lines(0xB0)                         # RI falls: TERI, modem status interrupt
    assert u.io_read(IIR, 1) == 0x00
    assert u.io_read(MSR, 1) == 0xB4 and u.io_read(MSR, 1) == 0xB0


def test_output_collects_every_byte_in_order():
    u = attached()
    for ch in b"hi!":
        u.io_write(THR, 1, ch)
    assert bytes(u.output) == b"hi!" and u.take_output() == b"hi!" and u.output == b""


# ---- program + model vs model alone -----------------------------------------

REG_VALUES = st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x07, 0x0F, 0x10, 0x13, 0x1B, 0x80, 0x83,
                              0xC1, 0xC7, 0x41, 0x06, 0xFF])
OPS = st.one_of(
    st.tuples(st.just("in"), st.integers(0, 7), st.sampled_from([1, 1, 1, 1, 2, 4])),
    st.tuples(st.just("out"), st.integers(0, 7), st.just(1),
              st.one_of(REG_VALUES, st.integers(0, 255))),
    st.tuples(st.just("out"), st.sampled_from([0, 0, 0, 7]), st.just(1), st.integers(0, 255)),
    st.tuples(st.just("out"), st.integers(0, 7), st.sampled_from([2, 4]), st.integers(0, 0xFFFF)),
    st.tuples(st.just("time"), st.sampled_from([0, 1, 1000, 10**6, 5 * 10**6, 2**32 - 7, 10**10])),
    st.tuples(st.just("rx"), st.binary(min_size=1, max_size=20)),
    st.tuples(st.just("msr"), st.integers(0, 255)),
)


def run(ops, program: bool, start_ns: int = 0):
    clock = FakeClock(start_ns)
    m, u, b = machine(program, clock)
    seen = []
    for op in ops:
        if op[0] == "in":
            seen.append(m.pio_in(BASE + op[1], op[2]))
        elif op[0] == "out":
            m.pio_out(BASE + op[1], op[2], op[3] & {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}[op[2]])
        elif op[0] == "time":
            clock.advance(op[1])
        elif op[0] == "rx":
            u.receive(op[1])
        else:
            u.set_modem_lines(op[1])
    return seen, u.state(), b.counters, u


@settings(max_examples=150, deadline=None)
@given(st.lists(OPS, max_size=80), st.sampled_from([0, 2**32 - 50, 2**64 - 10**9]))
def test_differential_random_traces(ops, start_ns):
    fast, slow = run(ops, True, start_ns), run(ops, False, start_ns)
    assert fast[0] == slow[0]                       # every IN value
    assert fast[1] == slow[1]                       # final device state, output included
    assert slow[2].handled == 0


@pytest.mark.slow
def test_differential_sweep():
    """The same property at size: BPFIO_DEVICES_EXAMPLES examples (default 5000), --run-slow."""
    n = int(os.environ.get("BPFIO_DEVICES_EXAMPLES", "5000"))
    inner = test_differential_random_traces.hypothesis.inner_test
    settings(max_examples=n, deadline=None)(given(st.lists(OPS, max_size=80), st.sampled_from([0, 2**32 - 50, 2**64 - 10**9]))(inner))()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 255), min_size=1, max_size=60), st.booleans())
def test_differential_console_output_with_fifo(data, fifo):
    ops = ([("out", FCR, 1, 0x07 if fifo else 0)]
           + [op for ch in data for op in (("in", LSR, 1), ("out", THR, 1, ch))])
    fast, slow = run(ops, True), run(ops, False)
    assert fast[0] == slow[0] and fast[1] == slow[1]
    assert fast[1]["output"] == bytes(data)


# ---- the Linux loops ----------------------------------------------------------

def early_printk(m, text: bytes):
    """arch/x86/kernel/early_printk.c: early_serial_init then early_serial_write."""
    m.pio_out(BASE + LCR, 1, 0x03)                  # 8N1
    m.pio_out(BASE + IER, 1, 0)
    m.pio_out(BASE + FCR, 1, 0)
    m.pio_out(BASE + MCR, 1, 0x03)                  # DTR | RTS
    c = m.pio_in(BASE + LCR, 1)
    m.pio_out(BASE + LCR, 1, c | 0x80)
    m.pio_out(BASE + 0, 1, 115200 // 9600)
    m.pio_out(BASE + 1, 1, 0)
    m.pio_out(BASE + LCR, 1, c & ~0x80)
    for ch in text:
        timeout = 0xFFFF
        while not m.pio_in(BASE + LSR, 1) & 0x20 and timeout:
            timeout -= 1
        m.pio_out(BASE + THR, 1, ch)


def console_write(m, text: bytes):
    """8250 serial8250_console_write: IER off, wait_for_xmitr per byte, restore IER."""
    ier = m.pio_in(BASE + IER, 1)
    m.pio_out(BASE + IER, 1, 0)
    for ch in text:
        if ch == ord("\n"):
            text_bytes = (ord("\r"), ch)
        else:
            text_bytes = (ch,)
        for b in text_bytes:
            while not m.pio_in(BASE + LSR, 1) & 0x20:
                pass
            m.pio_out(BASE + THR, 1, b)
    while m.pio_in(BASE + LSR, 1) & 0x60 != 0x60:   # BOTH_EMPTY
        pass
    m.pio_out(BASE + IER, 1, ier)


def test_linux_early_printk_and_console_fast_path_share():
    text = b"Linux version 6.18.0 (bpfio@example) #1 SMP PREEMPT_DYNAMIC\n" * 8
    results = []
    for program in (True, False):
        clock = FakeClock(10**9)
        m, u, b = machine(program, clock)
        early_printk(m, text)
        m.pio_out(BASE + IER, 1, 0x05)              # the tty driver's RDI|RLSI, no THRI
        console_write(m, text)
        results.append((u.take_output(), u.state(), u.calls, b.counters))
    (out_a, st_a, calls_a, cnt_a), (out_b, st_b, _, _) = results
    assert out_a == out_b == text + text.replace(b"\n", b"\r\n")
    assert st_a == st_b
    lsr_reads = 2 * len(text) + text.count(b"\n") + 1
    lsr_share = 1 - calls_a.get(("in", LSR), 0) / lsr_reads
    assert lsr_share >= 0.99, lsr_share
    # THR writes exit once per TX-ring drain (17 bytes), not once per byte.
    thr_writes = len(out_a)
    assert calls_a.get(("out", THR), 0) <= thr_writes // 17 + 4
    assert cnt_a.handled / cnt_a.events >= 0.95


def test_interrupt_driven_tx_falls_back_but_matches():
    ops = [("out", IER, 1, 0x02)]                   # THRI on: every IIR/THR goes to the model
    for ch in b"irq":
        ops += [("in", IIR, 1), ("out", THR, 1, ch), ("in", IIR, 1), ("in", IIR, 1)]
    fast, slow = run(ops, True), run(ops, False)
    assert fast[0] == slow[0] == [0x02, 0x02, 0x01] + [0x01, 0x02, 0x01] * 2
    assert fast[1] == slow[1] and fast[3].calls[("out", THR)] == 3


def test_rx_polling_reads_rbr_through_the_model():
    ops = [("rx", b"ok"), ("in", LSR, 1), ("in", 0, 1), ("in", LSR, 1), ("in", 0, 1),
           ("in", LSR, 1)]
    fast, slow = run(ops, True), run(ops, False)
    assert fast[0] == slow[0] == [0x61, ord("o"), 0x61, ord("k"), 0x60]


def test_uart_program_rejects_nothing_it_should_serve():
    """SCR and LSR on a fresh UART never reach the model; a 2-byte read does."""
    m, u, b = machine(True, FakeClock(0))
    m.pio_out(BASE + SCR, 1, 0xA5)
    assert m.pio_in(BASE + SCR, 1) == 0xA5 and m.pio_in(BASE + LSR, 1) == 0x60
    assert u.calls == {}
    assert m.pio_in(BASE + LSR, 2) == 0xB060
    assert u.calls == {("in", LSR): 1}


@pytest.mark.parametrize("words", [8, 31])
def test_too_little_shared_memory_is_an_error(words):
    from bpfio.errors import PioError
    with pytest.raises(PioError, match="mem_words >= 32"):
        Machine(clock=FakeClock(0)).attach(BASE, 8, device=UART(), mem_words=words)


# ---- the example config and workload --------------------------------------------

BOOT_LOG = (b"Linux version 6.18.0 (bpfio@example) #1 SMP PREEMPT_DYNAMIC\n"
            b"Command line: console=ttyS0,115200 earlyprintk=serial\n"
            b"printk: console [ttyS0] enabled\n")

def console_workload() -> str:
    """early_printk then the 8250 console printing BOOT_LOG, values from the model alone."""
    m, u, b = machine(False, FakeClock(0))
    rec = Recording(m)
    early_printk(rec, BOOT_LOG)
    rec.pio_out(BASE + IER, 1, 0x05)
    console_write(rec, BOOT_LOG)
    assert u.take_output() == BOOT_LOG + BOOT_LOG.replace(b"\n", b"\r\n")
    head = ("# Linux early_printk + serial8250_console_write on COM1; IN values from the model\n"
            "# alone. Regenerate: pytest tests/test_dev_uart.py --update-golden\n")
    return rec.render(head)


def test_example_workload_is_current(request):
    check_workload(request, "uart-console.jsonl", console_workload())


@pytest.mark.parametrize("engine", engine_params())
def test_example_config_replays_on_the_fast_path(runner, cli, engine):
    doc = replay_example(runner, cli, engine, "uart.toml", "uart-console.jsonl")
    com1 = doc["bindings"]["com1"]
    assert doc["checked"] > 250 and sum(doc["mismatches"].values()) == 0
    assert com1["handled"] / com1["events"] >= 0.95
    assert com1["exits"] <= 30             # init writes + one per 17 output bytes


def test_docs_python_examples_run():
    """The Python blocks of docs/devices-b.md (UART and virtio host side) run as written."""
    import re
    doc = (EXAMPLES.parent / "docs" / "devices-b.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert blocks
    for code in blocks:
        exec(compile(code, "docs/devices-b.md", "exec"), {})


def test_concurrent_vcpus_keep_each_stream_in_order():
    """Two vCPU threads printing at once: ring appends and drains stay atomic per event."""
    import threading
    m, u, b = machine(True, FakeClock(0))
    streams = {0: bytes(range(0x41, 0x41 + 20)) * 20, 1: bytes(range(0x61, 0x61 + 20)) * 20}

    def cpu(vcpu):
        for ch in streams[vcpu]:
            while not m.pio_in(BASE + LSR, 1, vcpu) & 0x20:
                pass
            m.pio_out(BASE + THR, 1, ch, vcpu)
    threads = [threading.Thread(target=cpu, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out = u.take_output()
    assert len(out) == 800
    assert bytes(c for c in out if c < 0x61) == streams[0]
    assert bytes(c for c in out if c >= 0x61) == streams[1]
    assert b.counters.exits <= 800 // 17 + 2
