"""Legacy virtio-PCI: the register model against QEMU facts, asm/virtio.asm +
model against the model alone, and kick storms that never exit."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from bpfio.devices.virtio import HOST_FEATURES, VirtioNet
from bpfio.errors import PioError
from bpfio.pio.machine import FakeClock, Machine
from bpfio.resources import asm_dir

from devtools import Recording, check_workload, counting, engine_params, replay_example

# Every test here runs once per engine: the compiled path and native code (the JIT).
pytestmark = pytest.mark.usefixtures("pio_engine")

BASE = 0xC000
FEAT, GFEAT, PFN, NUM, SEL, NOTIFY, STATUS, ISR, CONFIG = 0, 4, 8, 12, 14, 16, 18, 19, 20
PROGRAM = (asm_dir() / "virtio.asm").read_text()


CountingVirtio = counting(VirtioNet)


def machine(program: bool, notifiers: int = 8, **kw):
    m = Machine(clock=FakeClock(0))
    v = CountingVirtio(**kw)
    b = m.attach(BASE, 0x20, program=PROGRAM if program else None, device=v, mem_words=2,
                 notifiers=notifiers, name="virtio")
    return m, v, b


def setup_driver(m, queues=3):
    """Linux virtio_pci_legacy: reset, ACK, DRIVER, features, rings, DRIVER_OK."""
    m.pio_out(BASE + STATUS, 1, 0)
    m.pio_out(BASE + STATUS, 1, 1)
    m.pio_out(BASE + STATUS, 1, 3)
    features = m.pio_in(BASE + FEAT, 4)
    m.pio_out(BASE + GFEAT, 4, features & ((1 << 5) | (1 << 16) | (1 << 29)))
    sizes = []
    for q in range(queues):
        m.pio_out(BASE + SEL, 2, q)
        sizes.append(m.pio_in(BASE + NUM, 2))
        m.pio_out(BASE + PFN, 4, 0x1000 + q)
    m.pio_out(BASE + STATUS, 1, 7)
    return sizes


# ---- the model alone ---------------------------------------------------------

def test_register_file():
    m, v, b = machine(False)
    assert m.pio_in(BASE + FEAT, 4) == HOST_FEATURES
    assert setup_driver(m) == [256, 256, 64]
    assert m.pio_in(BASE + GFEAT, 4) == (1 << 5) | (1 << 16) | (1 << 29)
    m.pio_out(BASE + SEL, 2, 1)
    assert m.pio_in(BASE + PFN, 4) == 0x1001 and m.pio_in(BASE + SEL, 2) == 1
    m.pio_out(BASE + SEL, 2, 5)                         # no such queue: size 0, PFN stays 0
    m.pio_out(BASE + PFN, 4, 0x2000)
    assert m.pio_in(BASE + NUM, 2) == 0 and m.pio_in(BASE + PFN, 4) == 0
    m.pio_out(BASE + SEL, 2, 1024)                      # >= VIRTIO_QUEUE_MAX: ignored
    assert m.pio_in(BASE + SEL, 2) == 5
    assert m.pio_in(BASE + STATUS, 1) == 7
    assert m.pio_in(BASE + 1, 1) == 0xFF and m.pio_in(BASE + NOTIFY, 2) == 0xFFFF


def test_features_masked_bad_feature_and_features_ok():
    m, v, b = machine(False)
    m.pio_out(BASE + GFEAT, 4, 0xFFFFFFFF & ~(1 << 30))
    assert m.pio_in(BASE + GFEAT, 4) == HOST_FEATURES
    m.pio_out(BASE + GFEAT, 4, 1 << 30)                  # VIRTIO_F_BAD_FEATURE
    assert m.pio_in(BASE + GFEAT, 4) == 1 << 5
    m.pio_out(BASE + STATUS, 1, 8)                       # FEATURES_OK: no more changes
    m.pio_out(BASE + GFEAT, 4, 0)
    assert m.pio_in(BASE + GFEAT, 4) == 1 << 5


def test_status_zero_and_pfn_zero_reset():
    m, v, b = machine(False)
    setup_driver(m)
    m.pio_out(BASE + PFN, 4, 0)                          # PFN 0 resets the whole device
    assert m.pio_in(BASE + STATUS, 1) == 0 and m.pio_in(BASE + GFEAT, 4) == 0
    setup_driver(m)
    m.pio_out(BASE + STATUS, 1, 0)
    m.pio_out(BASE + SEL, 2, 0)
    assert m.pio_in(BASE + PFN, 4) == 0 and v.resets == 4


def test_isr_read_clears_and_deasserts():
    m, v, b = machine(True)
    v.interrupt(1)
    v.interrupt(2)
    assert v.irq_level
    assert m.pio_in(BASE + ISR, 1) == 3 and not v.irq_level
    assert m.pio_in(BASE + ISR, 1) == 0


def test_device_config_mac_and_status():
    m, v, b = machine(False)
    assert [m.pio_in(BASE + CONFIG + i, 1) for i in range(6)] == [0x52, 0x54, 0, 0x12, 0x34, 0x56]
    assert m.pio_in(BASE + CONFIG + 6, 2) == 1           # VIRTIO_NET_S_LINK_UP
    assert m.pio_in(BASE + CONFIG + 4, 4) == 0x00015634
    assert m.pio_in(BASE + CONFIG + 6, 4) == 0xFFFFFFFF  # past config_len: all ones
    m.pio_out(BASE + CONFIG + 5, 1, 0x99)
    m.pio_out(BASE + CONFIG + 6, 2, 0)                   # status is read-only
    assert m.pio_in(BASE + CONFIG + 4, 4) == 0x00019934


def test_bad_configuration():
    with pytest.raises(PioError, match="notifiers >= 3"):
        machine(False, notifiers=2)
    with pytest.raises(PioError, match="queue_sizes"):
        VirtioNet(queue_sizes=(3,))
    with pytest.raises(PioError, match="mac"):
        VirtioNet(mac="nope")


# ---- program + model vs model alone -----------------------------------------

OPS = st.one_of(
    st.tuples(st.just("out"), st.just(NOTIFY), st.sampled_from([2, 2, 2, 1, 4]),
              st.sampled_from([0, 1, 2, 3, 7, 8, 1023, 1024, 0xFFFF])),
    st.tuples(st.just("out"), st.sampled_from([GFEAT, PFN, SEL, STATUS, CONFIG, CONFIG + 5]),
              st.sampled_from([1, 2, 4]), st.sampled_from([0, 1, 2, 3, 7, 8, 0x1234, 0xFFFFFFFF])),
    st.tuples(st.just("out"), st.integers(0, 31), st.sampled_from([1, 2, 4]),
              st.integers(0, 0xFFFFFFFF)),
    st.tuples(st.just("in"), st.integers(0, 31), st.sampled_from([1, 2, 4])),
    st.tuples(st.just("rearm"), st.integers(0, 2)),
    st.tuples(st.just("irq"), st.integers(1, 3)),
)


def run(ops, program: bool):
    m, v, b = machine(program)
    setup = setup_driver(m) if ops and ops[0] == ("setup",) else None
    seen = [setup]
    for op in ops:
        if op[0] == "in":
            seen.append(m.pio_in(BASE + op[1], op[2]))
        elif op[0] == "out":
            m.pio_out(BASE + op[1], op[2], op[3] & {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}[op[2]])
        elif op[0] == "rearm":
            v.rearm(op[1])
        elif op[0] == "irq":
            v.interrupt(op[1])
    signals = [n.signals for n in b.notifiers]
    return seen, v.state(), signals, b.counters, v


@settings(max_examples=150, deadline=None)
@given(st.booleans(), st.lists(OPS, max_size=60))
def test_differential_random_traces(setup, ops):
    ops = ([("setup",)] if setup else []) + ops
    fast, slow = run(ops, True), run(ops, False)
    assert fast[0] == slow[0]                            # IN values
    assert fast[1] == slow[1]                            # registers and shared words
    assert fast[2] == slow[2]                            # every notifier's signal count


@pytest.mark.slow
def test_differential_sweep():
    """The same property at size: BPFIO_DEVICES_EXAMPLES examples (default 5000), --run-slow."""
    n = int(os.environ.get("BPFIO_DEVICES_EXAMPLES", "5000"))
    inner = test_differential_random_traces.hypothesis.inner_test
    settings(max_examples=n, deadline=None)(given(st.booleans(), st.lists(OPS, max_size=60))(inner))()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=1, max_size=300))
def test_kick_storm_never_exits_and_counts_like_an_eventfd(queues):
    results = []
    for program in (True, False):
        m, v, b = machine(program)
        setup_driver(m)
        before = b.counters.exits
        for q in queues:
            m.pio_out(BASE + NOTIFY, 2, q)
        reads = [b.notifier(q).read() for q in range(3)]   # one wake-up, count N
        results.append((reads, v.state(), b.counters.exits - before, b.counters.notified))
    (reads, st_a, exits, notified), (reads_b, st_b, _, _) = results
    assert reads == reads_b == [queues.count(q) for q in range(3)]
    assert st_a == st_b
    assert exits == 0 and notified == len(queues)        # 100% on the fast path
    kicked = {q for q in queues}
    assert st_a["mem"][1] == sum(1 << q for q in range(3) if q not in kicked)


def test_other_widths_fall_back_but_signal_the_same_notifier():
    m, v, b = machine(True)
    setup_driver(m)
    m.pio_out(BASE + NOTIFY, 1, 1)                       # a len-2 ioeventfd would miss these
    m.pio_out(BASE + NOTIFY, 4, 2)
    assert v.calls[("out", NOTIFY)] == 2
    assert [b.notifier(q).read() for q in range(3)] == [0, 1, 1]
    v.rearm(1)
    m.pio_out(BASE + NOTIFY, 2, 1)
    assert v.calls[("out", NOTIFY)] == 2 and b.notifier(1).read() == 1
    assert v.state()["mem"][1] == 0b001


def test_kick_before_ring_address_is_ignored():
    m, v, b = machine(True)
    m.pio_out(BASE + NOTIFY, 2, 0)
    assert b.notifier(0).read() == 0 and v.calls[("out", NOTIFY)] == 1


# ---- the example config and workload --------------------------------------------


def kick_workload() -> str:
    """Driver setup, then a kick storm: TX kicks, RX refills, a few control commands."""
    m, v, b = machine(False)
    rec = Recording(m)
    setup_driver(rec)
    for i in range(400):
        rec.pio_out(BASE + NOTIFY, 2, 2 if i % 50 == 49 else (0 if i % 8 == 7 else 1))
        if i % 100 == 99:
            rec.pio_in(BASE + ISR, 1)                  # the interrupt handler's ISR read
    head = ("# Legacy virtio-net driver setup and 400 queue kicks; IN values from the model\n"
            "# alone. Regenerate: pytest tests/test_dev_virtio.py --update-golden\n")
    return rec.render(head)


def test_example_workload_is_current(request):
    check_workload(request, "virtio-kicks.jsonl", kick_workload())


@pytest.mark.parametrize("engine", engine_params())
def test_example_config_replays_on_the_fast_path(runner, cli, engine):
    doc = replay_example(runner, cli, engine, "virtio.toml", "virtio-kicks.jsonl")
    net = doc["bindings"]["virtio-net"]
    assert sum(doc["mismatches"].values()) == 0
    assert net["notified"] == 400                      # every kick: a notifier, no exit
    assert net["exits"] == net["events"] - 400         # only setup and ISR reads exit


def test_concurrent_kicks_are_all_counted():
    import threading
    m, v, b = machine(True)
    setup_driver(m)
    exits = b.counters.exits

    def cpu(q):
        for _ in range(300):
            m.pio_out(BASE + NOTIFY, 2, q, q)
    threads = [threading.Thread(target=cpu, args=(q,)) for q in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [b.notifier(q).read() for q in range(3)] == [300, 300, 300]
    assert b.counters.exits == exits and v.state()["mem"][1] == 0   # no kick exited
