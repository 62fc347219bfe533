"""PCI configuration mechanism #1: the model against QEMU facts, asm/pci.asm +
model against the model alone, and Linux's type-1 probe and bus-0 scan."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from bpfio.devices.base import LocalBinding
from bpfio.devices.pci import DEFAULT_DEVICES, PCIHost, mem_words_for, parse_devices
from bpfio.errors import PioError
from bpfio.pio.machine import FakeClock, Machine
from bpfio.resources import asm_dir

from devtools import (EXAMPLES, Recording, check_workload, counting, engine_params,
                      replay_example)

# Every test here runs once per engine: the compiled path and native code (the JIT).
pytestmark = pytest.mark.usefixtures("pio_engine")

BASE = 0xCF8
PROGRAM = (asm_dir() / "pci.asm").read_text()
WORDS = mem_words_for(len(DEFAULT_DEVICES))


def cfg(bus: int, dev: int, fn: int, reg: int) -> int:
    """Linux arch/x86/pci/direct.c PCI_CONF1_ADDRESS."""
    return 0x80000000 | ((reg & 0xF00) << 16) | (bus << 16) | (dev << 11) | (fn << 8) | (reg & 0xFC)


CountingPCI = counting(PCIHost, key=lambda offset: "data" if offset >= 4 else offset)


def machine(program: bool):
    m = Machine(clock=FakeClock(0))
    p = CountingPCI()
    b = m.attach(BASE, 8, program=PROGRAM if program else None, device=p, mem_words=WORDS,
                 name="pci")
    return m, p, b


def model() -> PCIHost:
    p = PCIHost()
    p.attach(LocalBinding(WORDS, length=8))
    return p


def read(p, addr, offset, size):
    p.io_write(0, 4, addr)
    return p.io_read(offset, size)


# ---- the model alone ---------------------------------------------------------

def test_ids_class_and_header_of_the_default_bus():
    p = model()
    assert read(p, cfg(0, 0, 0, 0), 4, 4) == 0x12378086
    assert read(p, cfg(0, 1, 0, 0), 4, 4) == 0x70008086
    assert read(p, cfg(0, 3, 0, 0), 4, 4) == 0x10001AF4
    assert read(p, cfg(0, 0, 0, 8), 4, 4) == 0x06000002          # host bridge, rev 2
    assert read(p, cfg(0, 1, 0, 8), 6, 2) == 0x0601              # ISA bridge class word
    assert read(p, cfg(0, 1, 0, 0xC), 6, 1) == 0x80              # multi-function header
    assert read(p, cfg(0, 3, 0, 0x2C), 4, 4) == 0x00011AF4       # virtio subsystem: net
    assert read(p, cfg(0, 3, 0, 0x3C), 5, 1) == 1                # INTA


def test_config_address_semantics():
    p = model()
    p.io_write(0, 4, 0x80001234)
    assert [p.io_read(0, 4), p.io_read(0, 2), p.io_read(3, 1)] == [0x80001234, 0x1234, 0x34]
    p.io_write(0, 2, 0xFFFF)                         # only a dword at 0xCF8 is accepted
    p.io_write(3, 1, 0x01)                           # pci_check_type1's byte to 0xCFB
    p.io_write(2, 4, 0)
    assert p.io_read(0, 4) == 0x80001234


@pytest.mark.parametrize("addr", [0x00000000, 0x7FFFFFFF, cfg(0, 2, 0, 0), cfg(0, 3, 5, 0),
                                  cfg(1, 0, 0, 0), cfg(255, 31, 7, 0xFC)])
def test_absent_reads_all_ones_at_every_width_and_lane(addr):
    p = model()
    for lane in range(4):
        for size in (1, 2, 4):
            assert read(p, addr, 4 + lane, size) == {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}[size]
    before = p.state()
    p.io_write(0, 4, addr)
    p.io_write(4, 4, 0)                              # writes to nothing vanish
    assert p.state()["mem"] == before["mem"]


def test_bar_sizing_and_write_masks():
    p = model()
    bar0 = cfg(0, 3, 0, 0x10)
    assert read(p, bar0, 4, 4) == 0x00000001          # I/O BAR, unassigned
    p.io_write(4, 4, 0xFFFFFFFF)
    assert p.io_read(4, 4) == 0xFFFFFFE1              # ~(0x20 - 1) | I/O
    p.io_write(4, 4, 0xC001)
    assert p.io_read(4, 4) == 0xC001
    assert read(p, cfg(0, 3, 0, 0x14), 4, 4) == 0     # no BAR1: not writable
    p.io_write(4, 4, 0xFFFFFFFF)
    assert p.io_read(4, 4) == 0
    p.io_write(0, 4, cfg(0, 3, 0, 0x04))
    p.io_write(4, 2, 0xFFFF)                           # command: IO|MEM|MASTER|INTX_DISABLE
    assert p.io_read(4, 2) == 0x0407
    p.io_write(0, 4, cfg(0, 0, 0, 0x00))
    p.io_write(4, 4, 0)                                # IDs are read-only
    assert p.io_read(4, 4) == 0x12378086


def test_status_bits_are_write_one_to_clear():
    p = model()
    slot = p.slot_of[3 << 3]
    p._set(slot, 7, 0xF9)                               # the device signalled errors
    p.io_write(0, 4, cfg(0, 3, 0, 0x04))
    p.io_write(6, 2, 0x2000)                            # clear REC_MASTER_ABORT only
    assert p.io_read(6, 2) == 0xD900


def test_cross_dword_read_reads_across_and_stops_at_256():
    p = model()
    assert read(p, cfg(0, 0, 0, 0), 6, 4) == 0x00001237     # bytes 2..5
    assert read(p, cfg(0, 0, 0, 0xFC), 7, 4) == 0            # byte 0xFF only


def test_reset_control_register_at_cf9():
    p = model()
    p.io_write(0, 4, cfg(0, 3, 0, 0x10))
    p.io_write(4, 4, 0xC001)
    p.io_write(1, 1, 0x02)
    assert p.io_read(1, 1) == 0x02 and p.io_read(0, 4) == cfg(0, 3, 0, 0x10)
    p.io_write(1, 1, 0x06)                              # hard reset request
    assert p.reset_requests == 1 and p.io_read(1, 1) == 0
    assert read(p, cfg(0, 3, 0, 0x10), 4, 4) == 1       # back to power-on


def test_bad_device_lists():
    with pytest.raises(PioError, match="unknown kind"):
        parse_devices(["00.0=e1000"])
    with pytest.raises(PioError, match="SLOT.FN"):
        parse_devices(["zz"])
    with pytest.raises(PioError, match="must be a list"):
        parse_devices("00.0=i440fx")
    with pytest.raises(PioError, match="given twice"):
        parse_devices(["03.0=piix3", "03.0=i440fx"])
    with pytest.raises(PioError, match="mem_words >= 260"):
        Machine(clock=FakeClock(0)).attach(BASE, 8, device=PCIHost(), mem_words=64)


# ---- program + model vs model alone -----------------------------------------

ADDRS = st.one_of(
    st.builds(cfg, st.sampled_from([0, 0, 0, 1]), st.sampled_from([0, 1, 3, 2, 31]),
              st.sampled_from([0, 0, 1, 7]), st.integers(0, 255)),
    st.integers(0, 0xFFFFFFFF),
    st.builds(lambda a, low: a | low, st.builds(cfg, st.just(0), st.sampled_from([0, 1, 3]),
                                                st.just(0), st.integers(0, 255)),
              st.integers(0, 3)),
)
OPS = st.one_of(
    st.tuples(st.just("out"), st.just(0), st.just(4), ADDRS),
    st.tuples(st.just("in"), st.integers(4, 7), st.sampled_from([1, 2, 4])),
    st.tuples(st.just("in"), st.integers(0, 7), st.sampled_from([1, 2, 4])),
    st.tuples(st.just("out"), st.integers(4, 7), st.sampled_from([1, 2, 4]),
              st.sampled_from([0xFFFFFFFF, 0, 0xC001, 0x0407, 0xF900, 0x12345678])),
    st.tuples(st.just("out"), st.integers(0, 7), st.sampled_from([1, 2, 4]),
              st.integers(0, 0xFFFFFFFF)),
)


def run(ops, program: bool):
    m, p, b = machine(program)
    seen = []
    for op in ops:
        if op[0] == "in":
            seen.append(m.pio_in(BASE + op[1], op[2]))
        else:
            m.pio_out(BASE + op[1], op[2], op[3] & {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}[op[2]])
    return seen, p.state(), b.counters, p


@settings(max_examples=150, deadline=None)
@given(st.lists(OPS, max_size=60))
def test_differential_random_traces(ops):
    fast, slow = run(ops, True), run(ops, False)
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]


@pytest.mark.slow
def test_differential_sweep():
    """The same property at size: BPFIO_DEVICES_EXAMPLES examples (default 5000), --run-slow."""
    n = int(os.environ.get("BPFIO_DEVICES_EXAMPLES", "5000"))
    inner = test_differential_random_traces.hypothesis.inner_test
    settings(max_examples=n, deadline=None)(given(st.lists(OPS, max_size=60))(inner))()


# ---- Linux: pci_check_type1, then a bus-0 scan with BAR sizing -----------------

def linux_probe_and_scan(m):
    """arch/x86/pci/direct.c pci_check_type1 and drivers/pci/probe.c's bus-0 scan."""
    m.pio_out(0xCFB, 1, 0x01)
    tmp = m.pio_in(0xCF8, 4)
    m.pio_out(0xCF8, 4, 0x80000000)
    ok = m.pio_in(0xCF8, 4) == 0x80000000
    m.pio_out(0xCF8, 4, tmp)
    assert ok

    def rd(dev, fn, reg, size):
        m.pio_out(0xCF8, 4, cfg(0, dev, fn, reg))
        return m.pio_in(0xCFC + (reg & 3), size)

    def wr(dev, fn, reg, size, value):
        m.pio_out(0xCF8, 4, cfg(0, dev, fn, reg))
        m.pio_out(0xCFC + (reg & 3), size, value)

    found = []
    for dev in range(32):
        for fn in range(8):
            ids = rd(dev, fn, 0x00, 4)
            if ids in (0xFFFFFFFF, 0, 0x0000FFFF, 0xFFFF0000):
                if fn == 0:
                    break
                continue
            hdr = rd(dev, fn, 0x0E, 1)
            cls = rd(dev, fn, 0x0A, 2)
            rev = rd(dev, fn, 0x08, 1)
            cmd = rd(dev, fn, 0x04, 2)
            wr(dev, fn, 0x04, 2, cmd & ~0x3)             # decode off while sizing
            bars = []
            for bar in range(6):
                reg = 0x10 + 4 * bar
                old = rd(dev, fn, reg, 4)
                wr(dev, fn, reg, 4, 0xFFFFFFFF)
                size = rd(dev, fn, reg, 4)
                wr(dev, fn, reg, 4, old)
                if size:
                    mask = 0xFFFFFFFC if size & 1 else 0xFFFFFFF0
                    bars.append((bar, (~(size & mask) + 1) & 0xFFFF if size & 1
                                 else (~(size & mask) + 1) & 0xFFFFFFFF, bool(size & 1)))
            wr(dev, fn, 0x04, 2, cmd)
            rd(dev, fn, 0x2C, 4)
            rd(dev, fn, 0x3C, 1)
            rd(dev, fn, 0x3D, 1)
            found.append((dev, fn, ids & 0xFFFF, ids >> 16, cls, rev, bars))
            if fn == 0 and not hdr & 0x80:
                break
    return found


def test_linux_scan_same_results_and_fast_path_share():
    results = []
    for program in (True, False):
        m, p, b = machine(program)
        found = linux_probe_and_scan(m)
        results.append((found, p.state(), p.calls, b.counters))
    (found, st_a, _, _), (found_b, st_b, _, _) = results
    assert found == found_b and st_a == st_b
    assert found == [
        (0, 0, 0x8086, 0x1237, 0x0600, 2, []),
        (1, 0, 0x8086, 0x7000, 0x0601, 0, []),
        (3, 0, 0x1AF4, 0x1000, 0x0200, 0, [(0, 0x20, True)]),
    ]
    # Config-data reads that reached the model, against all config-data reads.
    m, p, b = machine(True)
    seen = {"reads": 0}
    orig = m.pio_in

    def pio_in(port, size, vcpu=0):
        if port >= 0xCFC:
            seen["reads"] += 1
        return orig(port, size, vcpu)
    m.pio_in = pio_in
    linux_probe_and_scan(m)
    share = 1 - p.calls.get(("in", "data"), 0) / seen["reads"]
    assert seen["reads"] > 80 and share >= 0.95, share
    assert p.calls.get(("in", "data"), 0) == 0        # in fact: none at all


def test_cf8_dword_write_with_low_bits_is_kept_and_used():
    """QEMU ORs the port's lane into config_reg: 0x80000002 | lane 1 -> register 3."""
    for program in (True, False):
        m, p, b = machine(program)
        m.pio_out(0xCF8, 4, 0x80000002)
        assert m.pio_in(0xCF8, 4) == 0x80000002
        assert m.pio_in(0xCFD, 1) == 0x12                # register 3: device ID high byte


# ---- the example config and workload --------------------------------------------


def scan_workload() -> str:
    """pci_check_type1 and the bus-0 scan with BAR sizing, values from the model alone."""
    m, p, b = machine(False)
    rec = Recording(m)
    linux_probe_and_scan(rec)
    head = ("# Linux pci_check_type1 + bus-0 scan with BAR sizing; IN values from the model\n"
            "# alone. Regenerate: pytest tests/test_dev_pci.py --update-golden\n")
    return rec.render(head)


def test_example_workload_is_current(request):
    check_workload(request, "pci-scan.jsonl", scan_workload())


@pytest.mark.parametrize("engine", engine_params())
def test_example_config_replays_on_the_fast_path(runner, cli, engine):
    doc = replay_example(runner, cli, engine, "pci.toml", "pci-scan.jsonl")
    pci = doc["bindings"]["pci"]
    assert doc["checked"] > 80 and sum(doc["mismatches"].values()) == 0
    # Only config-data writes (command/BAR sizing) exit; every read and 0xCF8 write is fast.
    writes = sum(1 for line in (EXAMPLES / "pci-scan.jsonl").read_text().splitlines()
                 if '"out"' in line and '"0xcf' in line and not '"0xcf8"' in line
                 and not '"0xcfb"' in line)
    assert pci["exits"] == writes
