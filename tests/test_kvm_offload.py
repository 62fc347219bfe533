"""Offload eligibility (bpfio.kvm.offload) and --offload on real guests.

The analysis must be conservative: whatever it calls eligible must behave,
under the real engine and with *any* shared-memory contents, clock and vCPU,
exactly like the KVM mechanism it is replaced by.  Hand-written programs
cover each rule; random programs check that soundness property against the
engine.  The last tests run the virtio and POST guests with and without
offload on /dev/kvm and compare exits and device state.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from bpfio import kvm
from bpfio.kvm import offload as kvm_offload
from bpfio.errors import BpfError
from bpfio.kvm.offload import CoalescePlan, EventFdPlan, coalesce_plans, ioeventfd_plans
from bpfio.kvm.analysis import analyze_out
from bpfio.abi import pio as abi
from bpfio.pio.config import load_machine
from bpfio.pio.machine import FakeClock, Machine
from test_kvm_helpers import GUESTS, ROOT, guest, needs_kvm, needs_nasm

OFFLOAD_TOML = GUESTS / "offload.toml"


@pytest.fixture(params=["proof", "analysis"])
def decide(request, monkeypatch):
    """Run a rule test with the proof (the default decision) and with the path analysis."""
    monkeypatch.setattr(kvm_offload, "DECIDE", request.param)
    return request.param


def bind(program, *, base=0x500, length=4, notifiers=4, mem_words=16, clock=None):
    m = Machine(clock=clock or FakeClock(10**9))
    return m, m.attach(base, length, program=program, notifiers=notifiers,
                       mem_words=mem_words, name="dev")


KICK = """
#include <pio.inc>
        ld [PIO_DIR]
        jeq #PIO_OUT, out, slow
out:    ld [PIO_OFFSET]
        jeq #2, notify, slow
notify: ld [PIO_SIZE]
        jeq #2, kick, slow
kick:   ld [PIO_DATA]
        jeq #0, q0
        jeq #3, q3, slow
q0:     ret #PIO_NOTIFY_0
q3:     ret #PIO_NOTIFY_3
slow:   ret #PIO_EXIT
"""


# --- the ioeventfd rule ----------------------------------------------------------

def test_kick_program_gets_one_ioeventfd_per_queue_value(decide):
    m, b = bind(KICK)
    assert ioeventfd_plans(b) == [EventFdPlan("dev", 0x502, 2, 0, 0),
                                  EventFdPlan("dev", 0x502, 2, 3, 3)]
    m.close()


@pytest.mark.parametrize("why, program", [
    ("stores before notifying", """
        #include <pio.inc>
        ld [PIO_DATA]
        st M[0]
        jeq #1, yes, no
    yes: ret #PIO_NOTIFY_0
    no:  ret #PIO_EXIT
    """),
    ("verdict depends on shared memory", """
        #include <pio.inc>
        ld M[3]
        jeq #0, no, yes
    yes: ret #PIO_NOTIFY_0
    no:  ret #PIO_EXIT
    """),
    ("verdict depends on the clock", """
        #include <pio.inc>
        ld [PIO_NS]
        jset #1, yes, no
    yes: ret #PIO_NOTIFY_0
    no:  ret #PIO_DONE
    """),
    ("verdict depends on the vcpu", """
        #include <pio.inc>
        ld [PIO_VCPU]
        jeq #0, yes, no
    yes: ret #PIO_NOTIFY_1
    no:  ret #PIO_NOTIFY_2
    """),
    ("returns A, which is unknown", """
        #include <pio.inc>
        ld M[0]
        ret a
    """),
])
def test_ineligible_notify_programs(why, program, decide):
    m, b = bind(program)
    assert ioeventfd_plans(b) == [], why
    m.close()


def test_a_notify_on_every_value_but_one_never_matches_that_value(decide):
    prog = """
        #include <pio.inc>
        ld [PIO_DATA]
        jeq #5, no, yes
    yes: ret #PIO_NOTIFY_0
    no:  ret #PIO_EXIT
    """
    m, b = bind(prog, length=1)
    plans = ioeventfd_plans(b)
    assert plans and all(p.datamatch != 5 and p.index == 0 for p in plans)
    assert {p.datamatch for p in plans if p.size == 1} == {0, 4, 6}    # the candidates
    m.close()


def test_the_shipped_virtio_program_is_not_ioeventfd_eligible(decide):
    # It clears NEED_NOTIFY (a store) and checks QVALID (memory) first.
    src = (ROOT / "asm" / "virtio.asm").read_text()
    m = Machine()
    b = m.attach(0xC000, 32, program=src, notifiers=8, mem_words=2, name="virtio")
    assert ioeventfd_plans(b) == []
    m.close()


def test_a_data_dependent_notify_index_is_split_per_value(decide):
    prog = """
        #include <pio.inc>
        ld [PIO_DATA]
        jgt #1, slow
        jeq #1, one, zero
    zero: ret #PIO_NOTIFY_0
    one:  ret #PIO_NOTIFY_1
    slow: ret #PIO_EXIT
    """
    m, b = bind(prog, length=1)
    plans = {(p.size, p.datamatch, p.index) for p in ioeventfd_plans(b)}
    assert plans == {(s, d, d) for s in (1, 2, 4) for d in (0, 1)}
    m.close()


# --- the coalescing rule ------------------------------------------------------------

POST = (GUESTS / "bpf" / "post-code.asm").read_text()


def test_post_code_program_is_coalescable_and_the_shipped_debugport_is_not(decide):
    m = Machine()
    b = m.attach(0x80, 1, program=POST, mem_words=64, name="post",
                 )
    assert coalesce_plans(b) == [CoalescePlan("post", 0x80, 1)]
    ring = m.attach(0xE9, 1, program=(ROOT / "asm" / "debugport.asm").read_text(),
                    mem_words=64, name="debugcon")
    assert coalesce_plans(ring) == []          # ring full -> PIO_EXIT
    pm = m.attach(0x608, 4, program=(ROOT / "asm" / "pmtimer.asm").read_text(),
                  mem_words=1, clock_hz=3579545, name="pm")
    # An OUT to the PM timer is ignored: the analysis refuses it for reading PIO_TICKS,
    # the proof sees that the read cannot change what a replay does.
    want = [CoalescePlan("pm", 0x608, 4)] if decide == "proof" else []
    assert coalesce_plans(pm) == want
    m.close()


def test_coalescing_splits_a_binding_into_eligible_runs(decide):
    prog = """
        #include <pio.inc>
        ld [PIO_OFFSET]
        jeq #2, slow
        ld [PIO_DATA]
        st M[0]
        ret #PIO_DONE
    slow: ret #PIO_EXIT
    """
    m, b = bind(prog, length=5)
    assert coalesce_plans(b) == [CoalescePlan("dev", 0x500, 2), CoalescePlan("dev", 0x503, 2)]
    assert coalesce_plans(b, exclude={0x500}) == [CoalescePlan("dev", 0x501, 1),
                                                  CoalescePlan("dev", 0x503, 2)]
    m.close()


@pytest.mark.parametrize("why, body", [
    ("stores the vcpu, which the ring does not record", "ld [PIO_VCPU]\n st M[0]\n ret #PIO_DONE"),
    ("stores the time, which differs at replay", "ld [PIO_NS]\n st M[0]\n ret #PIO_DONE"),
    ("branches on the binding clock", "ld [PIO_TICKS_HI]\n jeq #0, done\n st M[0]\n"
     "done: ret #PIO_DONE"),
    ("draws a random number", "ld rand\n st M[0]\n ret #PIO_DONE"),
    ("notifies: a delayed notification is not the same", "ret #PIO_NOTIFY_0"),
    ("may exit to the model", "ld [PIO_DATA]\n jeq #7, slow\n ret #PIO_DONE\nslow: ret #PIO_EXIT"),
    ("verdict from memory", "ld M[2]\n ret a"),
])
def test_not_coalescable(why, body, decide):
    m, b = bind("#include <pio.inc>\n " + body, length=1)
    assert coalesce_plans(b) == [], why
    m.close()


def test_a_clock_read_that_cannot_matter_is_coalescable_only_by_proof(decide):
    m, b = bind("#include <pio.inc>\n ld [PIO_TICKS_HI]\n ret #PIO_DONE", length=1)
    assert coalesce_plans(b) == ([CoalescePlan("dev", 0x500, 1)] if decide == "proof" else [])
    m.close()


def test_unknown_index_loads_are_undecided(decide):
    prog = """
        #include <pio.inc>
        ldx M[0]
        ld [x + 0]
        ret #PIO_DONE
    """
    m, b = bind(prog, length=1)
    out = analyze_out(b.program, port=0x500, base=0x500, size=1, data=None, mem_words=16)
    assert not out.decided and "unknown X" in out.undecided
    assert coalesce_plans(b) == []
    m.close()


def test_a_possible_division_by_zero_counts_as_an_exit(decide):
    prog = """
        #include <pio.inc>
        ldx M[0]
        ld [PIO_DATA]
        div x
        st M[1]
        ret #PIO_DONE
    """
    m, b = bind(prog, length=1)
    out = analyze_out(b.program, port=0x500, base=0x500, size=1, data=None, mem_words=16)
    assert abi.PIO_EXIT in out.verdicts
    assert coalesce_plans(b) == []
    m.close()


# --- soundness against the engine, on random programs ---------------------------------

def random_program(rng: random.Random) -> str:
    """A random forward-jumping pio program over the fields the rules care about."""
    n = rng.randint(3, 14)
    lines = ["#include <pio.inc>"]
    loads = ["ld [PIO_DATA]", "ld [PIO_PORT]", "ld [PIO_SIZE]", "ld [PIO_OFFSET]",
             "ld [PIO_DIR]", "ld [PIO_VCPU]", "ld [PIO_NS]", "ld M[0]", "ld M[1]", "ld #3",
             "ldb [PIO_DATA + 3]", "ld len"]
    rets = ["ret #PIO_DONE", "ret #PIO_EXIT", "ret #PIO_NOTIFY_0", "ret #PIO_NOTIFY_1",
            "ret a"]
    for i in range(n):
        kind = rng.random()
        label = f"l{i}:"
        if kind < 0.35:
            lines.append(f"{label} {rng.choice(loads)}")
            if rng.random() < 0.4:
                lines.append(f"      st M[{rng.randint(0, 3)}]")
        elif kind < 0.6:
            target = rng.randint(i + 1, n)
            other = rng.randint(i + 1, n)
            op = rng.choice(["jeq", "jgt", "jset", "jge"])
            lines.append(f"{label} {op} #{rng.choice([0, 1, 2, 3, 0x500, 0x502, 4])}, "
                         f"l{target}, l{other}")
        elif kind < 0.8:
            ops = ["st M[0]", "st M[1]", "stx M[2]", "add #1", "and #1", "tax", "txa"]
            lines.append(f"{label} {rng.choice(ops)}")
        else:
            lines.append(f"{label} {rng.choice(rets)}")
    lines.append(f"l{n}: {rng.choice(rets)}")
    return "\n".join(lines)


class Engine:
    """One binding of a program on the real engine, reused for many single OUTs."""

    def __init__(self, program):
        self.clock = FakeClock(0)
        self.m = Machine(clock=self.clock, engine="interp")
        self.b = self.m.attach(0x500, 4, program=program, notifiers=2, mem_words=4,
                               name="dev")

    def out(self, port, size, data, mem, ns, vcpu):
        """One OUT: (verdict kind, notifier index, memory after)."""
        b, c = self.b, self.b.counters
        for i, v in enumerate(mem):
            b.mem[i] = v
        self.clock.ns = ns
        before = (c.notified, c.handled, [n.signals for n in b.notifiers])
        self.m.pio_out(port, size, data, vcpu)
        kind = ("notify" if c.notified > before[0] else
                "done" if c.handled > before[1] else "exit")
        index = next((i for i, n in enumerate(b.notifiers) if n.signals > before[2][i]), None)
        return kind, index, list(b.mem)

    def close(self):
        self.m.close()


CASES = int(os.environ.get("BPFIO_OFFLOAD_CASES", "600"))


def _plans_by_analysis(binding, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(kvm_offload, "DECIDE", "analysis")
        return ioeventfd_plans(binding), coalesce_plans(binding)


def _covered(zones, analysed) -> bool:
    ports = {p for z in zones for p in range(z.port, z.port + z.length)}
    return all(p in ports for z in analysed for p in range(z.port, z.port + z.length))


def test_random_programs_eligible_means_equivalent_under_the_engine(monkeypatch):
    # More cases: BPFIO_OFFLOAD_CASES=5000 python -m pytest tests/test_kvm_offload.py -k random
    # The plans are the proof's (the default decision); the path analysis must never accept
    # what the proof refuses (it may refuse more: `extra` counts what only the proof accepts).
    rng = random.Random(7)
    checked_efd = checked_zone = 0
    extra = {"ioeventfd": 0, "coalesced ports": 0}
    for _ in range(CASES):
        src = random_program(rng)
        try:
            eng = Engine(src)
        except BpfError:
            continue                      # the verifier rejected it: nothing to offload
        try:
            efds, zones = ioeventfd_plans(eng.b), coalesce_plans(eng.b)
            old_efds, old_zones = _plans_by_analysis(eng.b, monkeypatch)
            assert set(old_efds) <= set(efds) and _covered(zones, old_zones), src
            extra["ioeventfd"] += len(set(efds) - set(old_efds))
            extra["coalesced ports"] += (sum(z.length for z in zones)
                                         - sum(z.length for z in old_zones))
            for p in efds:
                for _ in range(4):
                    mem = [rng.getrandbits(32) for _ in range(4)]
                    got = eng.out(p.port, p.size, p.datamatch, mem, rng.getrandbits(40),
                                  rng.randint(0, 3))
                    assert got == ("notify", p.index, mem), src
                    checked_efd += 1
            for z in zones:
                for _ in range(4):
                    port = rng.randrange(z.port, z.port + z.length)
                    size = rng.choice([1, 2, 4])
                    data = rng.getrandbits(8 * size)
                    mem = [rng.getrandbits(32) for _ in range(4)]
                    first = eng.out(port, size, data, mem, rng.getrandbits(40), 0)
                    again = eng.out(port, size, data, mem, rng.getrandbits(40), 3)
                    assert first[0] == "done" and first == again, src
                    checked_zone += 1
        finally:
            eng.close()
    assert checked_efd > 10 and checked_zone > 10
    print(f"plans only the proof accepts: {extra}")


EXAMPLE_CONFIGS = sorted((ROOT / "examples").glob("*.toml")) + [OFFLOAD_TOML]


@pytest.mark.parametrize("config", EXAMPLE_CONFIGS, ids=lambda p: p.name)
def test_example_bindings_the_analysis_accepts_are_proved(config, monkeypatch):
    m = load_machine(config)
    try:
        for b in m.bindings.values():
            efds, zones = ioeventfd_plans(b), coalesce_plans(b)
            old_efds, old_zones = _plans_by_analysis(b, monkeypatch)
            assert set(old_efds) <= set(efds) and _covered(zones, old_zones), b.name
            if set(efds) != set(old_efds) or zones != old_zones:
                print(f"{config.name} {b.name}: proof {len(efds)} ioeventfds, "
                      f"{sum(z.length for z in zones)} coalesced ports; analysis "
                      f"{len(old_efds)}, {sum(z.length for z in old_zones)}")
    finally:
        m.close()


# --- on /dev/kvm ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("offload-guests")


@needs_kvm
@pytest.mark.usefixtures("kvm_loop")
@needs_nasm
def test_virtio_kicks_through_an_ioeventfd_never_exit(build_dir):
    kicks = 3000
    image = guest("virtio", build_dir, KICKS=kicks)
    runs = {}
    for offload in (False, True):
        m = load_machine(OFFLOAD_TOML)
        try:
            r = kvm.run_guest(image, m, offload=offload)
            b = m.binding_at(0xC010)
            from bpfio.commands.vm import uart_output
            runs[offload] = (r, b.notifier(0).signals, uart_output(m))
        finally:
            m.close()
    (r0, n0, out0), (r1, n1, out1) = runs[False], runs[True]
    assert out0 == out1 and b"3000 kicks" in out1
    assert n0 == n1 == kicks                       # the host saw every kick either way
    assert r1.offload["ioeventfd_hits"] == kicks
    assert r0.io_exits - r1.io_exits == kicks      # exactly the kicks stopped exiting
    assert any("ioeventfd virtio 0xc010/2 == 0x0 -> notifier 0" in s
               for s in r1.offload["registered"])


@needs_kvm
@pytest.mark.usefixtures("kvm_loop")
@needs_nasm
def test_post_codes_through_the_coalesced_ring_replay_in_order(build_dir):
    codes = 2000
    image = guest("post", build_dir, CODES=codes)
    state = {}
    for offload in (False, True):
        m = load_machine(OFFLOAD_TOML)
        try:
            r = kvm.run_guest(image, m, offload=offload)
            post = m.binding_at(0x80)
            state[offload] = (r, post.device.post_code, list(post.mem),
                              post.counters.events)
        finally:
            m.close()
    (r0, code0, mem0, ev0), (r1, code1, mem1, ev1) = state[False], state[True]
    assert code0 == code1 == (codes - 1) & 0xFF
    assert mem0 == mem1                             # same shared state after replay
    assert ev0 == ev1 == codes                      # the engine saw every write
    # KVM's ring holds 169 entries: a write that finds it full exits as usual
    # (and that exit replays the ring first), so about one write in 170 exits.
    coalesced = r1.offload["coalesced"]
    assert codes - codes // 169 - 1 <= coalesced <= codes
    assert r0.io_exits - r1.io_exits == coalesced


@needs_kvm
@pytest.mark.usefixtures("kvm_loop")
def test_offload_fds_are_released():
    import os
    before = set(os.listdir("/proc/self/fd"))
    m = Machine()
    m.attach(0x502, 1, program=KICK.replace("jeq #2, notify", "jeq #0, notify")
             .replace("jeq #2, kick", "jeq #1, kick"), notifiers=4, name="dev")
    try:
        # out dx, al with dx = 0x502, al = 0 : ten kicks, then hlt (16-bit code)
        code = bytes.fromhex("ba0205" "b000" + "ee" * 10 + "f4")
        r = kvm.run_guest(code, m, offload=True)
        assert r.offload["ioeventfd_hits"] == 10 and r.io_exits == 0
    finally:
        m.close()
    assert set(os.listdir("/proc/self/fd")) == before


@needs_kvm
@pytest.mark.usefixtures("kvm_loop")
def test_ioeventfd_kicks_reach_the_notifier_while_the_guest_still_runs():
    # The guest kicks 5 times and then spins without exits: the consumer must
    # see the kicks anyway (an ioeventfd wakes it without any vCPU exit).
    m = Machine()
    m.attach(0x502, 1, program=KICK.replace("jeq #2, notify", "jeq #0, notify")
             .replace("jeq #2, kick", "jeq #1, kick"), notifiers=4, name="dev")
    n0 = m.bindings["dev"].notifier(0)
    code = bytes.fromhex("ba0205" "b000" + "ee" * 5 + "ebfe")     # ...; jmp $
    got = []
    import threading as _threading

    def consumer():
        got.append((n0.wait(timeout=20), time.monotonic()))

    t = _threading.Thread(target=consumer)
    t.start()
    try:
        with pytest.raises(kvm.KvmError, match="did not halt"):
            kvm.run_guest(code, m, offload=True, timeout=3)
        stopped = time.monotonic()
    finally:
        t.join()
        m.close()
    (count, woke), = got
    assert count >= 1
    assert woke < stopped - 1.0        # woken while the guest was still spinning


@needs_kvm
@pytest.mark.usefixtures("kvm_loop")
@needs_nasm
def test_two_vcpus_share_the_coalesced_ring_without_losing_writes(build_dir):
    # Both vCPUs OUT to one coalesced port (and IN from it, which exits and
    # replays the ring first); every write must reach the program once.
    prog = """
        #include <pio.inc>
        ld [PIO_DIR]
        jeq #PIO_OUT, out
        ld M[0]
        ret #PIO_DONE
    out: ld M[0]
        add #1
        st M[0]
        ld [PIO_DATA]
        tax
        ld M[1]
        add x
        st M[1]
        ret #PIO_DONE
    """
    rounds = 1500
    m = Machine()
    try:
        b = m.attach(0x510, 2, program=prog, name="counter")
        from bpfio.devices import uart
        m.attach(0x3F8, 8, program=(ROOT / "asm" / "uart.asm").read_text(),
                 device=uart.UART(), mem_words=uart.MEM_WORDS, name="uart")
        assert coalesce_plans(b) == [CoalescePlan("counter", 0x510, 2)]
        r = kvm.run_guest(guest("smp", build_dir, ROUNDS=rounds), m, vcpus=2, offload=True)
        values = [((v << 12) | i) & 0xFFFF for v in (0, 1) for i in range(rounds)]
        assert b.mem[0] == 2 * rounds
        assert b.mem[1] == sum(values) & 0xFFFFFFFF
        assert r.offload["coalesced_by_binding"].get("counter", 0) > 0
    finally:
        m.close()
