"""The example guests on /dev/kvm against the real engine and device models
(examples/pc.toml): their UART output, the device state the host sees, two
vCPUs on one device, and the ``bpfio vm`` command.

Each guest is built from examples/guests/*.asm with nasm at test time; the
tests skip cleanly without /dev/kvm, nasm or the pc config.
"""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import time

import pytest

from bpfio import kvm
from bpfio.pio.machine import Machine
from devtools import bpfio_exe
from test_kvm_helpers import (GUESTS, PC_TOML, ROOT, binding_for, guest, needs_kvm, needs_nasm,
                              needs_pc, pc_machine, uart_text)

pytestmark = [needs_kvm, needs_nasm, needs_pc, pytest.mark.usefixtures("kvm_loop")]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("guests")


def run_pc(name, build_dir, mode="real", vcpus=1, **defines):
    """Run a guest on a fresh pc machine; return (uart text, result, machine) -- close it."""
    machine = pc_machine()
    try:
        result = kvm.run_guest(guest(name, build_dir, mode, **defines), machine, mode=mode,
                               vcpus=vcpus, timeout=60)
    except BaseException:
        machine.close()
        raise
    return uart_text(machine), result, machine


HELLO = ("Hello from a KVM guest, port I/O through bpfio!\n"
         "string I/O: rep outsb\n"
         "lsr x8: 60 60 60 60 60 60 60 60\n"
         "vcpu 0 of 1 halting\n")


@pytest.mark.parametrize("mode", ["real", "protected"])
def test_hello_prints_through_the_uart_model(build_dir, mode):
    text, result, m = run_pc("hello", build_dir, mode)
    try:
        # LSR reads 0x60 (THRE | TEMT) on an idle 16550, QEMU's reset value.
        assert text == HELLO
        uart = binding_for(m, 0x3F8)
        assert uart.counters.events == result.accesses - m.unmapped
        assert uart.counters.handled > 0          # LSR polls served by the program
        assert result.vcpus[0].string_exits >= 1  # the rep insb
    finally:
        m.close()


def test_pmtimer_loop_sees_a_monotonic_24_bit_clock(build_dir):
    t0 = time.perf_counter()
    text, result, m = run_pc("pmtimer", build_dir)
    wall_us = (time.perf_counter() - t0) * 1e6
    try:
        got = re.fullmatch(r"pmtimer: (\d+) reads, elapsed (\d+) ticks = (\d+) us, "
                           r"backwards (\d+)\n", text)
        assert got, text
        reads, ticks, us, backwards = map(int, got.groups())
        assert backwards == 0
        assert ticks >= 35795 and reads >= 2
        assert us == ticks * 1_000_000 // 3_579_545
        assert us <= wall_us                      # the guest's time is host time
        pm = binding_for(m, 0x608)
        assert pm.counters.events == reads + 1
        assert pm.counters.handled == pm.counters.events   # all fast path
    finally:
        m.close()


def _pit_calibration(build_dir):
    """One calibration run: (pit kHz, its ppm bound, PIT ticks, PM-timer kHz, UART text)."""
    text, result, m = run_pc("pit", build_dir)
    m.close()
    got = re.search(r"pit: TSC (\d+) kHz \+- (\d+) ppm over (\d+) PIT ticks", text)
    ref = re.search(r"pmtimer reference: TSC (\d+) kHz", text)
    assert got and ref, text
    return (*map(int, got.groups()), int(ref.group(1)), text)


def test_pit_calibration_agrees_with_the_pm_timer(build_dir):
    # Two independent clocks measured the same TSC: they agree within the PIT edge
    # uncertainty plus 1 %.  The guest's TSC keeps running while the host deschedules a
    # vCPU thread, so on a loaded host a run can be disturbed: the models must agree in
    # one of the runs (a wrong model disagrees in every run).  A run in which the guest
    # missed a PIT MSB step ("min 0 polls") was descheduled mid-measurement: it does not
    # count against the three tries (at most six runs in all).
    runs = []
    tries = 0
    while tries < 3 and len(runs) < 6:
        pit_khz, bound_ppm, ticks, pm_khz, text = _pit_calibration(build_dir)
        assert ticks >= 40 * 256
        assert 100_000 < pm_khz < 20_000_000
        runs.append((pit_khz, pm_khz, bound_ppm))
        if abs(pit_khz - pm_khz) <= pm_khz * (bound_ppm / 1e6 + 0.01):
            return
        tries += "(min 0 polls" not in text
    pytest.fail(f"PIT and PM timer disagree in {len(runs)} runs (pit kHz, pm kHz, ppm): "
                f"{runs}\n{text}")


def test_cmos_reads_the_rtc_time_after_the_uip_edge(build_dir):
    # The RTC model starts at its configured `start` (pc.toml pins one, just
    # before a new year, so the BCD date rolls over) or at host UTC.
    t_load = time.time()
    machine = pc_machine()
    try:
        start = binding_for(machine, 0x70).device.start
        kvm.run_guest(guest("cmos", build_dir), machine, timeout=60)
        t_end = time.time()
        text = uart_text(machine)
    finally:
        machine.close()
    got = re.fullmatch(r"cmos: (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) UTC "
                       r"\(register B (\w\w), (\d+) UIP polls\)\n", text)
    assert got, text
    y, mo, d, h, mi, s = map(int, got.groups()[:6])
    guest_time = dt.datetime(y, mo, d, h, mi, s, tzinfo=dt.timezone.utc).timestamp()
    base = t_load if start is None else start
    # Read right after an update: a whole second at most (t_end - t_load) later.
    assert int(base) <= guest_time <= base + (t_end - t_load) + 1, (text, base)
    assert got.group(7) == "02"                   # BCD, 24-hour: the reset value
    assert int(got.group(8)) >= 2                 # saw UIP set, then clear


def test_pcscan_lists_the_functions_of_the_pci_model(build_dir):
    text, result, m = run_pc("pcscan", build_dir)
    try:
        host = binding_for(m, 0xCF8).device
        expected = []
        for (devfn, _kind), fn in zip(host.devices, host.functions):
            cfg = fn.config
            expected.append(f"00:{devfn >> 3:02x}.{devfn & 7:x} "
                            f"{int.from_bytes(cfg[0:2], 'little'):04x}:"
                            f"{int.from_bytes(cfg[2:4], 'little'):04x} "
                            f"class {int.from_bytes(cfg[9:12], 'little'):06x}")
        lines = text.splitlines()
        assert lines[0] == "pcscan: type 1 configuration mechanism"
        assert lines[1:-1] == sorted(expected)
        assert lines[-1] == f"pcscan: {len(expected)} functions on bus 0"
    finally:
        m.close()


def test_virtio_kick_storm_is_counted_by_the_host(build_dir):
    kicks = 3000
    text, result, m = run_pc("virtio", build_dir, KICKS=kicks)
    try:
        b = binding_for(m, 0xC010)
        model = b.device
        assert f"queue 0 size {model.queue_sizes[0]}, {kicks} kicks" in text, text
        assert f"features {model.host_features:08x}" in text
        assert "I/O BAR0 c000" in text
        n0 = b.notifier(0)
        assert n0.signals == kicks                  # every kick reached notifier 0
        assert n0.read() == kicks                   # eventfd counter semantics
        assert b.counters.notified == kicks         # ... all on the fast path
        assert sum(n.signals for n in b.notifiers[1:]) == 0
    finally:
        m.close()


def test_post_codes_and_debugcon(build_dir):
    text, result, m = run_pc("post", build_dir, CODES=1000)
    try:
        assert text == "post: 1000 codes to port 0x80, last e7, debugcon readback e9\n"
        post = binding_for(m, 0x80)
        assert post.device.post_code == (1000 - 1) & 0xFF
        assert post.counters.events == 1000
        con = binding_for(m, 0xE9).device
        assert con.output() == b"post: hello on debugcon\n"
    finally:
        m.close()


# --- two vCPUs on one device --------------------------------------------------------

COUNTER = """
#include <pio.inc>
; M[0] OUTs served here, M[1] sum of their values, M[2] INs, M[3] last value,
; M[4 + vcpu] per-vCPU OUT count; odd values go to the model (PIO_EXIT).
        ld [PIO_DIR]
        jeq #PIO_OUT, out
        ld M[2]
        add #1
        st M[2]
        ld M[3]
        ret #PIO_DONE
out:    ld [PIO_DATA]
        jset #1, slow
        st M[3]
        tax
        ld M[1]
        add x
        st M[1]
        ld M[0]
        add #1
        st M[0]
        ld [PIO_VCPU]
        jeq #0, v0
        ld M[5]
        add #1
        st M[5]
        ret #PIO_DONE
v0:     ld M[4]
        add #1
        st M[4]
        ret #PIO_DONE
slow:   ret #PIO_EXIT
"""


class CounterModel:
    """The fallback for odd values: counts them in shared word 6, per vCPU-free."""

    def attach(self, binding):
        self.mem = binding.mem
        self.values = []

    def io_read(self, offset, size):
        return 0

    def io_write(self, offset, size, value):
        # A read-modify-write of shared memory: only safe if the engine
        # serialises the model with the program, as the ABI promises.
        n = self.mem[6]
        time.sleep(0)                      # invite a thread switch mid-update
        self.mem[6] = n + 1
        self.values.append(value)


def _two_vcpus_on_one_device(build_dir, rounds: int) -> int:
    """One SMP run, every counter and memory word checked; the number of owner switches."""
    m = Machine()
    try:
        b = m.attach(0x510, 2, program=COUNTER, device=CounterModel(), name="counter")
        # The pc UART (program and model) so that vCPU 0 can print.
        from bpfio.devices import uart
        m.attach(0x3F8, 8, program=(ROOT / "asm" / "uart.asm").read_text(),
                 device=uart.UART(), mem_words=uart.MEM_WORDS, name="uart")
        result = kvm.run_guest(guest("smp", build_dir, ROUNDS=rounds), m, vcpus=2, timeout=60)
        assert uart_text(m) == f"smp: 2 vcpus x {rounds} out+in rounds done\n"
        mem, c = b.mem, b.counters
        even = [((v << 12) | r) & 0xFFFF for v in (0, 1) for r in range(rounds) if r % 2 == 0]
        odd = [((v << 12) | r) & 0xFFFF for v in (0, 1) for r in range(rounds) if r % 2 == 1]
        assert c.events == 4 * rounds                     # 2 vCPUs x (OUT + IN)
        assert mem[0] == len(even) and mem[2] == 2 * rounds
        assert mem[1] == sum(even) & 0xFFFFFFFF
        assert mem[4] == mem[5] == rounds // 2 + rounds % 2
        assert mem[6] == len(odd) == c.exits               # model updates not lost
        assert sorted(b.device.values) == sorted(odd)
        assert c.handled == 4 * rounds - len(odd)
        assert [v.stop for v in result.vcpus] == ["hlt", "hlt"]
        assert result.vcpus[0].io_exits >= 2 * rounds and result.vcpus[1].io_exits >= 2 * rounds
        owners = [v >> 12 for v in b.device.values]
        return sum(1 for a, c in zip(owners, owners[1:]) if a != c)
    finally:
        m.close()


def test_two_vcpus_on_one_device_keep_counters_and_memory_consistent(build_dir):
    # Every run must keep every count (no lost update).  The check is only worth something
    # if both vCPUs were at the device during the same stretch (the model saw their writes
    # interleaved, not one vCPU's run after the other's); on a loaded 2-core host a fast
    # loop can finish before the other thread is scheduled, so one of three runs must
    # interleave.
    switches = [_two_vcpus_on_one_device(build_dir, 1500) for _ in range(1)]
    while switches[-1] < 2 and len(switches) < 3:
        switches.append(_two_vcpus_on_one_device(build_dir, 1500))
    assert switches[-1] >= 2, f"the vCPUs never interleaved at the device: {switches}"


# --- the command line -------------------------------------------------------------

def test_cli_runs_a_guest_source_and_prints_the_table(runner, cli):
    res = runner.invoke(cli, ["vm", str(GUESTS / "hello.asm"), "--machine", str(PC_TOML),
                              "--stats"])
    assert res.exit_code == 0, res.output + (res.stderr if res.stderr_bytes else "")
    out = res.output
    assert out.startswith(HELLO)
    assert re.search(r"^binding\s+ports\s+events\s+handled", out, re.M)
    got = re.search(r"fast path served (\d+) of (\d+) port accesses", out)
    assert got and 0 < int(got.group(1)) <= int(got.group(2))
    assert "stopped by hlt" in out


def test_cli_protected_mode_and_a_prebuilt_binary(runner, cli, build_dir):
    image = build_dir / "hello32-cli.bin"
    image.write_bytes(guest("hello", build_dir, "protected"))
    res = runner.invoke(cli, ["vm", str(image), "--machine", str(PC_TOML), "--mode",
                              "protected", "--vcpus", "2"])
    assert res.exit_code == 0, res.output
    # Two vCPUs print at once, so their characters may interleave; each
    # vCPU's own output must still come out complete and in order.
    one = HELLO.replace("vcpu 0 of 1", "vcpu 0 of 2")
    two = HELLO.replace("vcpu 0 of 1", "vcpu 1 of 2")
    assert is_interleaving(res.output, one, two), res.output


def is_interleaving(s: str, a: str, b: str) -> bool:
    """True if ``s`` is a merge of ``a`` and ``b`` that keeps each one's order."""
    if len(s) != len(a) + len(b):
        return False
    reach = {0}                          # positions in a reachable after s[:k]
    for k, ch in enumerate(s):
        reach = {i + 1 for i in reach if i < len(a) and a[i] == ch} | \
                {i for i in reach if 0 <= k - i < len(b) and b[k - i] == ch}
        if not reach:
            return False
    return True


def test_cli_errors_are_one_line(runner, cli, tmp_path):
    res = runner.invoke(cli, ["vm", str(tmp_path / "missing.bin"), "--machine", str(PC_TOML)])
    assert res.exit_code == 1
    assert res.stderr.strip() == f"{tmp_path / 'missing.bin'}: error: no such file"
    res = runner.invoke(cli, ["vm", str(GUESTS / "hello.asm")])
    assert res.exit_code == 2 and "--machine" in res.stderr
    res = runner.invoke(cli, ["vm", str(GUESTS / "hello.asm"), "--machine", str(PC_TOML),
                              "--mode", "long"])
    assert res.exit_code == 2
    spin = tmp_path / "spin.bin"
    spin.write_bytes(b"\xEB\xFE")
    res = runner.invoke(cli, ["vm", str(spin), "--machine", str(PC_TOML), "--timeout", "0.2"])
    assert res.exit_code == 1
    assert res.stderr.strip() == f"{spin}: error: guest did not halt within 0.2 s"
    bad = tmp_path / "bad.asm"
    bad.write_text("bits 16\n  frobnicate ax\n")
    res = runner.invoke(cli, ["vm", str(bad), "--machine", str(PC_TOML)])
    assert res.exit_code == 1
    assert res.stderr.startswith(f"{bad}:2: error: ") and res.stderr.count("\n") == 1


def test_installed_entry_point_runs_a_guest():
    proc = subprocess.run([bpfio_exe(), "vm", str(GUESTS / "hello.asm"), "--machine", str(PC_TOML)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == HELLO


def test_cli_builds_a_source_for_another_entry(runner, cli):
    res = runner.invoke(cli, ["vm", str(GUESTS / "hello.asm"), "--machine", str(PC_TOML),
                              "--mode", "protected", "--entry", "0x8000"])
    assert res.exit_code == 0, res.output
    assert res.output == HELLO
