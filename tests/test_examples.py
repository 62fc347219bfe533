"""examples/: every config loads, every workload replays with zero mismatches and the
documented fast-path shares, the README's Python runs, and the CLI works end to end."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bpfio.pio.config import check_machine, load_machine
from bpfio.pio.events import EventReader
from bpfio.pio.machine import FakeClock
from bpfio.pio.replay import replay
from devtools import bpfio_exe

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# config -> {binding: minimum share of its accesses handled by the program}
SHARES = {
    "pmtimer": {"pmtimer": 1.0},
    "pit": {"pit": 0.99, "port61": 0.99},
    "rtc": {"rtc": 0.5},
    "debugport": {"post": 1.0, "debugcon": 0.99},
    "pc": {"pmtimer": 1.0, "pit": 0.99, "rtc": 0.5, "post": 1.0, "debugcon": 0.99},
}


def run(config: str, events: str):
    clock = FakeClock(0)
    m = load_machine(EXAMPLES / config, clock=clock)
    report = replay(m, EventReader(str(EXAMPLES / events)), clock)
    return m, report


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.toml")))
def test_config_checks_clean(name):
    machine, errors = check_machine(EXAMPLES / f"{name}.toml")
    assert errors == [], [str(e) for e in errors]
    assert machine.bindings
    machine.close()


@pytest.mark.parametrize("name", sorted(SHARES))
def test_workload_replays_with_documented_shares(name):
    m, report = run(f"{name}.toml", f"{name}.jsonl")
    assert report.total_mismatches == 0, report.examples[:3]
    assert report.checked > 0
    stats = m.stats()["bindings"]
    for binding, share in SHARES[name].items():
        s = stats[binding]
        assert s["events"] > 0 and s["faults"] == 0 and s["aborts"] == 0
        assert s["handled"] / s["events"] >= share, (binding, s)


def test_rtc_workload_index_writes_all_fast():
    """Every exit of the RTC workload is a status-C read or a data write: index writes never exit."""
    events = [json.loads(line) for line in (EXAMPLES / "rtc.jsonl").read_text().splitlines()]
    index_writes = sum(1 for e in events if e["op"] == "out" and e["port"] == "0x70")
    data_writes = sum(1 for e in events if e["op"] == "out" and e["port"] == "0x71")
    index = None
    c_reads = 0
    for e in events:
        if e["op"] == "out" and e["port"] == "0x70":
            index = e["value"] & 0x7f
        elif e["op"] == "in" and e["port"] == "0x71" and index == 0x0c:
            c_reads += 1
    m, report = run("rtc.toml", "rtc.jsonl")
    s = m.stats()["bindings"]["rtc"]
    new_seconds = s["exits"] - c_reads - data_writes
    assert index_writes > 1000
    assert 0 <= new_seconds <= 10          # one re-encode per RTC second read at most
    assert s["handled"] >= index_writes


def test_debugcon_output_survives_the_ring():
    m, _ = run("debugport.toml", "debugport.jsonl")
    out = m.bindings["debugcon"].device.output()
    assert out.startswith(b"SeaBIOS") and out.endswith(b"Booting from Hard Disk...\n")
    assert m.bindings["post"].device.post_code == 0


def test_pc_machine_has_all_seven_devices():
    m = load_machine(EXAMPLES / "pc.toml", clock=FakeClock(0))
    ports = {0x40, 0x61, 0x70, 0x80, 0xe9, 0x3f8, 0x608, 0xcf8, 0xc000}
    assert all(m.binding_at(p) is not None for p in ports)
    m.close()


def test_readme_python_runs():
    text = (EXAMPLES / "README.md").read_text()
    code = re.search(r"## 6\. From Python\n\n```python\n(.*?)```", text, re.S).group(1)
    code = code.replace('"examples/pc.toml"', repr(str(EXAMPLES / "pc.toml")))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "0x59" and lines[1] == "0x0" and lines[2] == "b'hello\\n'"


def test_workloads_are_reproducible(tmp_path):
    """examples/workloads.py regenerates the committed files byte for byte."""
    out = subprocess.run([sys.executable, str(EXAMPLES / "workloads.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for name in SHARES:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == \
            (EXAMPLES / f"{name}.jsonl").read_bytes(), name


def test_cli_machine_run_subprocess():
    out = subprocess.run([bpfio_exe(), "machine", "run", str(EXAMPLES / "pit.toml"),
                          "--events", str(EXAMPLES / "pit.jsonl"), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "pit" in json.dumps(data)


def _kvm_ready() -> str | None:
    import os
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "/dev/kvm is not usable here"
    if shutil.which("nasm") is None:
        return "nasm is not installed"
    return None


@pytest.mark.skipif(_kvm_ready() is not None, reason=str(_kvm_ready()))
@pytest.mark.parametrize("guest, pattern", [
    ("pmtimer", r"pmtimer: \d+ reads, .* backwards 0"),
    ("pit", r"pit: TSC \d+ kHz"),
    ("cmos", r"cmos: 2027-01-01 00:00:0\d UTC"),
    ("post", r"post: 4096 codes to port 0x80, last ff, debugcon readback e9"),
])
def test_real_guest_on_pc_toml(guest, pattern):
    """A real guest on /dev/kvm (examples/guests, bpfio vm) drives the part-A devices."""
    out = subprocess.run([bpfio_exe(), "vm", str(EXAMPLES / "guests" / f"{guest}.asm"),
                          "--machine", str(EXAMPLES / "pc.toml"), "--stats", "--timeout", "60"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(pattern, out.stdout), out.stdout
    share = re.search(r"fast path served (\d+) of (\d+)", out.stdout)
    assert share and int(share.group(1)) / int(share.group(2)) >= 0.95, out.stdout


def test_devices_doc_example_runs():
    docs = EXAMPLES.parent / "docs" / "devices.md"
    code = re.search(r"```python\n(.*?)```", docs.read_text(), re.S).group(1)
    exec(compile(code, str(docs), "exec"), {})
