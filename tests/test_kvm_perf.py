"""Trace replay on real traces: record ``kvm:kvm_pio`` with perf while a guest
runs on /dev/kvm through the pc machine, then replay the ``perf script``
text through a fresh machine from the same config.  For every deterministic
port (no clock in its binding) bpfio must return exactly the values the guest
saw -- the tracepoint records each IN's value as KVM completed it.

Skips cleanly without /dev/kvm, nasm, the pc config or a working
``perf record -e kvm:kvm_pio`` (root or perf_event_paranoid <= -1 needed).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bpfio.pio.events import EventReader
from bpfio.pio.machine import FakeClock
from bpfio.pio.replay import replay
from devtools import bpfio_exe
from test_kvm_helpers import PC_TOML, guest, needs_kvm, needs_nasm, needs_pc, pc_machine

pytestmark = [needs_kvm, needs_nasm, needs_pc, pytest.mark.usefixtures("kvm_loop")]



def _perf_ok() -> str:
    if shutil.which("perf") is None:
        return "perf is not installed"
    try:
        proc = subprocess.run(["perf", "list", "kvm:kvm_pio"], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"perf list failed: {err}"
    if "kvm:kvm_pio" not in proc.stdout:
        return "the kvm:kvm_pio tracepoint is not available"
    return ""


_why = _perf_ok()
needs_perf = pytest.mark.skipif(bool(_why), reason=_why)


def record(image_path, tmp_path, *extra) -> str:
    """Run ``bpfio vm`` under perf record; return the perf script text."""
    data = tmp_path / "perf.data"
    cmd = ["perf", "record", "-q", "-e", "kvm:kvm_pio", "-o", str(data), "--",
           bpfio_exe(), "vm", str(image_path), "--machine", str(PC_TOML), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and not data.exists():
        pytest.skip(f"perf record failed here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    script = subprocess.run(["perf", "script", "-i", str(data)], capture_output=True,
                            text=True, timeout=300)
    assert script.returncode == 0, script.stderr
    return proc.stdout, script.stdout


@needs_perf
@pytest.mark.parametrize("name, defines", [
    ("hello", {}),
    ("pcscan", {}),
    ("virtio", {"KICKS": 500}),
    ("post", {"CODES": 300}),
])
def test_replaying_a_perf_trace_gives_the_values_the_guest_saw(tmp_path, name, defines):
    image = tmp_path / f"{name}.bin"
    image.write_bytes(guest(name, tmp_path, **defines))
    uart, text = record(image, tmp_path)
    (tmp_path / "trace.txt").write_text(text)

    reader = EventReader(str(tmp_path / "trace.txt"), fmt="kvm_pio")
    clock = FakeClock()
    machine = pc_machine(clock=clock)
    try:
        events = list(reader)
        report = replay(machine, events, clock)
        # The trace holds the guest's whole port traffic, one event per exit.
        assert reader.bad == 0 and len(events) > 20
        clocked = {n for n, b in machine.bindings.items() if b.clock_hz}
        deterministic = {n for n in machine.bindings if n not in clocked}
        checked_ports = {e.port for e in events if e.op == "in"}
        used = {machine.binding_at(p).name for p in checked_ports
                if machine.binding_at(p) is not None}
        assert used & deterministic, "the guest read no deterministic port"
        bad = {n: c for n, c in report.mismatches.items() if n in deterministic}
        assert bad == {}, [m for m in report.examples if m.binding in deterministic]
        assert report.checked >= sum(1 for e in events if e.op == "in")
        # And the run that was traced printed what an untraced run prints.
        assert uart.splitlines()[-1]
    finally:
        machine.close()
