"""Machine configs, event files (JSON Lines and kvm_pio traces), replay and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bpfio.errors import ConfigError, TraceError
from bpfio.pio.config import check_machine, load_machine
from bpfio.pio.events import EventReader, parse_json_event, parse_trace_line
from bpfio.pio.machine import FakeClock
from bpfio.pio.replay import replay
from devtools import bpfio_exe

MODELS = '''
class Echo:
    """Reads return the last byte written plus the offset."""
    def __init__(self, start=0):
        self.v = start
    def attach(self, binding):
        self.binding = binding
    def io_read(self, offset, size):
        return self.v + offset
    def io_write(self, offset, size, value):
        self.v = value

class Clocked:
    """Reads return the binding clock's ticks."""
    def attach(self, binding):
        self.binding = binding
    def io_read(self, offset, size):
        return self.binding.ticks()
    def io_write(self, offset, size, value):
        pass

class Boom:
    def io_read(self, offset, size):
        raise RuntimeError("boom")
    def io_write(self, offset, size, value):
        raise RuntimeError("boom")
'''


@pytest.fixture
def models(tmp_path, monkeypatch):
    (tmp_path / "tmodels.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return tmp_path


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip())
    return path


GOOD = """
[machine]
name = "t"
engine = "interp"

[bindings.echo]
base = 0x70
length = 2
model = "tmodels:Echo"
model_args = { start = 5 }

[bindings.clock]
base = 0x608
length = 4
model = "tmodels:Clocked"
clock_hz = 1000

[bindings.boom]
base = 0x80
length = 1
model = "tmodels:Boom"
notifiers = 2
mem_words = 4
"""


def test_load_machine(models):
    cfg = write(models / "m.toml", GOOD)
    m = load_machine(cfg, clock=FakeClock(2_000_000_000))
    assert m.name == "t" and m.engine == "interp"
    assert list(m.bindings) == ["echo", "clock", "boom"]
    boom = m.bindings["boom"]
    assert (boom.base, boom.length, len(boom.mem), len(boom.notifiers)) == (0x80, 1, 4, 2)
    assert m.pio_in(0x71, 1) == 6
    assert m.pio_in(0x608, 4) == 2000
    m.close()


@pytest.mark.parametrize("body,error", [
    ("[bindings.a]\nbase = 0x70\n", "m.toml: error: binding 'a': missing required key 'length'"),
    ("[bindings.a]\nbase = 0x70\nlength = 1\nprot = 1\n",
     "m.toml: error: binding 'a': unknown key 'prot' (known: base, clock_hz, defines, length, "
     "mem_words, model, model_args, notifiers, program)"),
    ("[bindings.a]\nbase = 0x70\nlength = 1\nmem_words = 0\n",
     "m.toml: error: binding 'a': mem_words 0 is out of range 1..1024"),
    ("[bindings.a]\nbase = 0x70\nlength = 1\nmem_words = 5000\n",
     "m.toml: error: binding 'a': mem_words 5000 is out of range 1..1024"),
    ("[bindings.a]\nbase = 0x10000\nlength = 1\n",
     "m.toml: error: binding 'a': base 0x10000 is out of range 0x0..0xffff"),
    ("[bindings.a]\nbase = 0xffff\nlength = 2\n",
     "m.toml: error: binding 'a': ports 0xffff..0x10000 run past 0xffff"),
    ("[bindings.a]\nbase = 0x70\nlength = 1\nprogram = \"nope.asm\"\n",
     "m.toml: error: binding 'a': program file 'nope.asm' not found"),
    # Found by the fuzz harness: a name the OS refuses (ENAMETOOLONG) was a raw OSError.
    ("[bindings.a]\nbase = 0x70\nlength = 1\nprogram = \"" + "f" * 300 + "\"\n",
     "m.toml: error: binding 'a': program file '" + "f" * 300 + "' not found"),
    ("[bindings.a]\nbase = 0x70\nlength = 1\nmodel = \"tmodels:Nope\"\n",
     "m.toml: error: binding 'a': model 'tmodels:Nope': module 'tmodels' has no 'Nope'"),
    ("[bindings.a]\nbase = 0x70\nlength = 1\nmodel = \"nomodule_xyz:C\"\n",
     "m.toml: error: binding 'a': model 'nomodule_xyz:C': cannot import module 'nomodule_xyz'"),
    ("[bindings.a]\nbase = 0x70\nlength = 1\nmodel = \"tmodels.Echo\"\n",
     "m.toml: error: binding 'a': model 'tmodels.Echo' is not of the form 'package.module:Class'"),
    ("[bindings.a]\nbase = 0x70\nlength = 1\nmodel = \"tmodels:Echo\"\nmodel_args = { x = 1 }\n",
     "m.toml: error: binding 'a': model tmodels:Echo(x=) failed: TypeError"),
    ("[bindings.a]\nbase = 0x70\nlength = 4\n[bindings.b]\nbase = 0x73\nlength = 1\n",
     "m.toml: error: binding 'b': ports 0x73..0x73 overlap binding 'a' (ports 0x70..0x73)"),
    ("[bindings.a]\nbase = 0x70\nlength = 1\n[machine]\nengine = \"turbo\"\n",
     "m.toml: error: [machine]: engine 'turbo' is not one of compiled, interp, jit"),
    ("[bindings.a\nbase = 0x70\n", "m.toml: error: invalid TOML: "),
    # Found by the fuzz harness: tomllib's RecursionError escaped.
    ("a = " + "{ a = " * 2000 + "1" + " }" * 2000 + "\n",
     "m.toml: error: TOML arrays or tables nested too deeply"),
    ("a = " + "[" * 5000 + "]" * 5000 + "\n",
     "m.toml: error: TOML arrays or tables nested too deeply"),
    ("[machine]\nname = \"x\"\n", "m.toml: error: no bindings: add at least one [bindings.NAME] table"),
])
def test_config_errors_name_file_binding_problem(models, body, error):
    cfg = write(models / "m.toml", body)
    m, errors = check_machine(cfg)
    assert errors, "expected an error"
    text = str(errors[0]).replace(str(cfg), "m.toml")
    assert text.startswith(error)
    with pytest.raises(ConfigError):
        load_machine(cfg)


def test_check_reports_every_error(models):
    cfg = write(models / "m.toml", """
        [bindings.a]
        base = 0x70
        length = 4
        mem_words = 0
        [bindings.b]
        base = 0x72
        length = 1
        [bindings.c]
        base = 0x100
        length = 1
        model = "tmodels:Nope"
    """)
    _, errors = check_machine(cfg)
    assert [e.binding for e in errors] == ["b", "a", "c"]


def test_missing_config_file(tmp_path):
    _, errors = check_machine(tmp_path / "none.toml")
    assert str(errors[0]) == f"{tmp_path / 'none.toml'}: error: config file not found"


# -- programs in configs (need the assembler/verifier) -------------------------

def test_config_program_relative_path_and_verifier_rejection(models):
    pytest.importorskip("bpfio.check.verifier")
    pytest.importorskip("bpfio.text.formats")
    (models / "asm").mkdir()
    write(models / "asm" / "bad.asm", """
        #include <pio.inc>
        ld M[20]
        ret #PIO_DONE
    """)
    cfg = write(models / "sub.toml", """
        [bindings.x]
        base = 0x70
        length = 1
        program = "asm/bad.asm"
        mem_words = 16
    """)
    _, errors = check_machine(cfg)
    assert len(errors) == 1
    msg = str(errors[0])
    assert msg.startswith(f"{cfg}: error: binding 'x': program 'asm/bad.asm' fails the pio verifier: pc 0")


def test_config_program_syntax_error_names_program_line(models):
    pytest.importorskip("bpfio.text.formats")
    write(models / "p.asm", "ld [0]\nbogus x\nret #0\n")
    cfg = write(models / "m.toml", '[bindings.x]\nbase = 0x70\nlength = 1\nprogram = "p.asm"\n')
    _, errors = check_machine(cfg)
    assert "binding 'x': program 'p.asm': " in str(errors[0])
    assert "p.asm:2" in str(errors[0])


# -- event files ------------------------------------------------------------------

def test_json_events_forms():
    e = parse_json_event('{"op": "out", "port": "0x70", "size": 1, "value": 143, "t_ns": 5}', 1)
    assert (e.op, e.port, e.size, e.count, e.values, e.t_ns, e.vcpu) == ("out", 0x70, 1, 1,
                                                                          (143,), 5, 0)
    e = parse_json_event('{"op": "in", "port": 1544, "size": 4}', 2)
    assert e.values == (None,)
    e = parse_json_event('{"op": "ins", "port": 96, "size": 1, "count": 3, "vcpu": 2}', 3)
    assert (e.op, e.count, e.values, e.vcpu) == ("in", 3, (None, None, None), 2)
    e = parse_json_event('{"op": "outs", "port": "0x3f8", "size": 1, "values": [104, 105]}', 4)
    assert (e.op, e.count, e.values) == ("out", 2, (104, 105))


@pytest.mark.parametrize("text,error", [
    ('{"op": "in", "port": 70000, "size": 1}', "port 70000 is out of range 0..0xffff"),
    ('{"op": "in", "port": 1, "size": 3}', "size 3 is not 1, 2 or 4"),
    ('{"op": "out", "port": 1, "size": 1, "value": 256}', "value 0x100 does not fit a 1-byte access"),
    ('{"op": "out", "port": 1, "size": 1}', "'out' needs a 'value'"),
    ('{"op": "read", "port": 1, "size": 1}', "op 'read' is not one of in, out, ins, outs"),
    ('{"op": "in", "port": "0xzz", "size": 1}', "port '0xzz' is not a number"),
    ('{"op": "in", "prot": 1, "size": 1}', "unknown key 'prot'"),
    ('{"op": "in", "size": 1}', "missing key 'port'"),
    ('{"op": "in", "port": 1, "size": 1', "invalid JSON"),
    ('[1, 2]', "an event must be a JSON object"),
    ('{"op": "ins", "port": 1, "size": 1, "count": 2, "values": [1]}',
     "count 2 does not match the 1 values"),
    ('{"op": "in", "port": 1, "size": 1, "t_ns": -5}', "t_ns -5 is not a 64-bit"),
])
def test_json_event_errors(text, error):
    with pytest.raises(ValueError) as e:
        parse_json_event(text, 1)
    assert str(e.value).startswith(error)


PERF = "qemu-system-x86  4242 [001]  1234.000001: kvm:kvm_pio: pio_read at 0x608 size 4 count 1 val 0x1234 "
TRACECMD = ("qemu-system-x86-4243  [000]  1234.500000: kvm_pio:              "
            "pio_write at 0x70 size 1 count 1 val 0x8f ")
TRACECMD_FLAGS = ("CPU 1/KVM-4244 [003] d..1. 1235.123456789: kvm_pio: "
                  "pio_read at 0x40 size 1 count 3 val 0x12 (...)")


def test_trace_line_shapes():
    vcpus = {}
    e = parse_trace_line(PERF, 1, vcpus)
    assert (e.op, e.port, e.size, e.values, e.t_ns, e.vcpu) == ("in", 0x608, 4, (0x1234,),
                                                                1234_000_001_000, 0)
    e = parse_trace_line(TRACECMD, 2, vcpus)
    assert (e.op, e.port, e.values, e.t_ns, e.vcpu) == ("out", 0x70, (0x8f,), 1234_500_000_000, 1)
    e = parse_trace_line(TRACECMD_FLAGS, 3, vcpus)
    assert (e.count, e.values, e.t_ns, e.vcpu) == (3, (0x12, None, None), 1235_123_456_789, 2)
    assert parse_trace_line(PERF, 4, vcpus).vcpu == 0


@pytest.mark.parametrize("line,error", [
    (PERF.replace("size 4", "size 3"), "size 3 is not 1, 2 or 4"),
    (PERF.replace("0x608", "0x10000"), "port 0x10000 is out of range"),
    (PERF.replace("val 0x1234", "val 0x100000000"), "val 0x100000000 does not fit"),
    (PERF.replace("pio_read at", "pio_read @"), "not a kvm_pio event"),
    (PERF.replace("count 1", "count 0"), "count 0 is out of range"),
])
def test_trace_line_errors(line, error):
    with pytest.raises(ValueError) as e:
        parse_trace_line(line, 1, {})
    assert str(e.value).startswith(error)


def test_reader_errors_name_file_and_line(tmp_path):
    f = tmp_path / "ev.jsonl"
    f.write_text('{"op": "in", "port": 1, "size": 1}\n\n# comment\n{"op": "in", "port": 1, "size": 3}\n')
    with pytest.raises(TraceError) as e:
        list(EventReader(str(f)))
    assert str(e.value) == f"{f}:4: error: size 3 is not 1, 2 or 4"
    r = EventReader(str(f), skip_bad=True)
    assert len(list(r)) == 1 and r.bad == 1


def test_reader_time_must_not_go_back(tmp_path):
    f = tmp_path / "ev.jsonl"
    f.write_text('{"op": "in", "port": 1, "size": 1, "t_ns": 10}\n'
                 '{"op": "in", "port": 1, "size": 1, "t_ns": 9}\n')
    with pytest.raises(TraceError, match=r":2: error: t_ns 9 goes back in time"):
        list(EventReader(str(f)))


def test_reader_trace_skips_headers_and_other_events(tmp_path):
    f = tmp_path / "trace.txt"
    f.write_text("cpus=2\nCPU 0 is empty\n" + PERF + "\n"
                 "qemu-4242 [001] 1234.000002: kvm_exit: reason IO_INSTRUCTION\n" + TRACECMD + "\n")
    r = EventReader(str(f))
    assert [e.op for e in r] == ["in", "out"]
    assert r.format == "kvm_pio" and r.skipped == 3
    with pytest.raises(TraceError, match="unknown event format"):
        EventReader(str(f), fmt="pcap")


def test_reader_missing_file(tmp_path):
    with pytest.raises(TraceError, match="event file not found"):
        list(EventReader(str(tmp_path / "none")))


# -- replay -----------------------------------------------------------------------

def test_replay_sets_clock_and_reports_mismatches(models):
    cfg = write(models / "m.toml", GOOD)
    clock = FakeClock()
    m = load_machine(cfg, clock=clock)
    f = models / "ev.jsonl"
    f.write_text("\n".join(json.dumps(e) for e in [
        {"op": "out", "port": "0x70", "size": 1, "value": 16, "t_ns": 1_000_000},
        {"op": "in", "port": "0x71", "size": 1, "value": 17},           # matches
        {"op": "in", "port": "0x71", "size": 1, "value": 99},           # mismatch
        {"op": "in", "port": "0x608", "size": 4, "value": 1, "t_ns": 1_000_000},
        {"op": "in", "port": "0x608", "size": 4, "value": 3, "t_ns": 2_500_000},  # got 2
        {"op": "ins", "port": "0x80", "size": 2, "count": 2},
        {"op": "in", "port": "0x90", "size": 4, "value": 0xffffffff},
    ]) + "\n")
    report = replay(m, EventReader(str(f)), clock)
    assert (report.events, report.accesses, report.checked) == (7, 8, 5)
    assert report.mismatches == {"echo": 1, "clock": 1}
    assert [(x.line, x.expected, x.got) for x in report.examples] == [(3, 99, 17), (5, 3, 2)]
    s = m.stats()
    assert s["bindings"]["clock"]["clock"] and not s["bindings"]["echo"]["clock"]
    assert s["bindings"]["boom"]["faults"] == 2 and s["unmapped"] == 1


# -- CLI ----------------------------------------------------------------------------

def test_cli_check_ok_and_errors(models, runner, cli):
    cfg = write(models / "m.toml", GOOD)
    r = runner.invoke(cli, ["machine", "check", str(cfg)])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == f"{cfg}: ok: 3 binding(s), engine interp"
    bad = write(models / "bad.toml", "[bindings.a]\nbase = 0x70\nlength = 1\nmem_words = 0\n"
                                     "[bindings.b]\nbase = 0x70\nlength = 1\n")
    r = runner.invoke(cli, ["machine", "check", str(bad)])
    assert r.exit_code == 1
    assert r.stderr.splitlines() == [
        f"{bad}: error: binding 'b': ports 0x70..0x70 overlap binding 'a' (ports 0x70..0x70)",
        f"{bad}: error: binding 'a': mem_words 0 is out of range 1..1024"]


def test_cli_run_table_and_json(models, runner, cli):
    cfg = write(models / "m.toml", GOOD)
    ev = models / "t.txt"
    ev.write_text(TRACECMD + "\n" + PERF.replace("0x608", "0x71").replace("size 4", "size 1")
                  .replace("0x1234", "0x90").replace("1234.000001", "1234.600000") + "\n")
    r = runner.invoke(cli, ["machine", "run", str(cfg), "--events", str(ev)])
    assert r.exit_code == 0, r.output + r.stderr
    lines = r.output.splitlines()
    assert lines[0] == f"{ev}: 2 events (2 accesses), format kvm_pio"
    assert lines[1].split() == ["binding", "ports", "events", "handled", "notified", "exits",
                                "aborts", "bad", "insns", "faults", "mismatch"]
    assert lines[3].split() == ["echo", "0x70-0x71", "2", "0", "0", "2", "0", "0", "0", "0", "0"]
    assert "never needed userspace: 0 of 2 accesses (0.0%)" in r.output
    r = runner.invoke(cli, ["machine", "run", str(cfg), "--events", str(ev), "--json"])
    doc = json.loads(r.output)
    assert doc["bindings"]["echo"]["events"] == 2 and doc["format"] == "kvm_pio"


def test_cli_run_bad_line_and_skip_bad(models, runner, cli):
    cfg = write(models / "m.toml", GOOD)
    ev = models / "e.jsonl"
    ev.write_text('{"op": "in", "port": "0x70", "size": 1}\n{"op": "in", "port": 70000, "size": 1}\n')
    r = runner.invoke(cli, ["machine", "run", str(cfg), "--events", str(ev)])
    assert r.exit_code == 1
    assert r.stderr.strip() == f"{ev}:2: error: port 70000 is out of range 0..0xffff"
    r = runner.invoke(cli, ["machine", "run", str(cfg), "--events", str(ev), "--skip-bad"])
    assert r.exit_code == 0
    assert "skipped 1 malformed line(s)" in r.stderr


def test_installed_entry_point_subprocess(models):
    bad = write(models / "bad.toml", "[bindings.a]\nbase = 0x70\n")
    p = subprocess.run([bpfio_exe(), "machine", "check", str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1
    assert p.stderr == f"{bad}: error: binding 'a': missing required key 'length'\n"
    p = subprocess.run([sys.executable, "-m", "bpfio", "machine", "run", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--events" in p.stderr


def test_docs_engine_example_runs():
    """The worked example in docs/engine.md runs as written."""
    import pathlib
    import re
    pytest.importorskip("bpfio.exec.compiler")
    doc = pathlib.Path(__file__).resolve().parent.parent / "docs" / "engine.md"
    if not doc.is_file():
        pytest.skip("docs/engine.md not in this tree")
    code = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)[0]
    exec(compile(code, str(doc), "exec"), {"print": lambda *a: None})


# -- traces recorded from real VMs (tests/data/pio/README.md) -------------------------

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "pio")


@pytest.mark.parametrize("trace,events,vcpus", [("smp1-perf.txt", 162, 1),
                                                ("smp1-ftrace.txt", 162, 1),
                                                ("smp2-perf.txt", 242, 2)])
def test_replay_real_kvm_traces(trace, events, vcpus):
    pytest.importorskip("bpfio.exec.compiler")
    clock = FakeClock()
    m = load_machine(os.path.join(DATA, "smp.toml"), clock=clock)
    reader = EventReader(os.path.join(DATA, trace))
    seen = []
    report = replay(m, (seen.append(e) or e for e in reader), clock)
    assert reader.format == "kvm_pio" and reader.bad == 0
    assert report.events == events == len(seen)
    assert len({e.vcpu for e in seen}) == vcpus
    latch = m.stats()["bindings"]["latch"]
    assert latch["handled"] == latch["events"] > 0 and latch["exits"] == 0
    assert all(a.t_ns <= b.t_ns for a, b in zip(seen, seen[1:]))
    if vcpus == 1:   # one vCPU: the replay must reproduce every recorded read
        assert report.checked > 0 and report.total_mismatches == 0
    m.close()


EXAMPLES = os.path.normpath(os.path.join(DATA, os.pardir, os.pardir, os.pardir, "examples"))
EXAMPLE_CONFIGS = sorted(f for f in (os.listdir(EXAMPLES) if os.path.isdir(EXAMPLES) else [])
                         if f.endswith(".toml"))


@pytest.mark.parametrize("config", EXAMPLE_CONFIGS or [pytest.param("-", marks=pytest.mark.skip(
    reason="no examples/*.toml in this tree"))])
def test_example_configs_check_and_replay(config, runner, cli):
    """Every shipped example config checks clean; its workload replays without faults."""
    pytest.importorskip("bpfio.exec.compiler")
    path = os.path.join(EXAMPLES, config)
    r = runner.invoke(cli, ["machine", "check", path])
    assert r.exit_code == 0, r.stderr
    events = path[:-5] + ".jsonl"
    if not os.path.isfile(events):
        return
    r = runner.invoke(cli, ["machine", "run", path, "--events", events, "--json"])
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.output)
    assert doc["bad_lines"] == 0 and doc["faults"] == 0
    assert doc["events"] > 0 and sum(doc["mismatches"].values()) == 0


def test_cli_run_stdin_missing_file_and_engine_override(models, runner, cli):
    cfg = write(models / "m.toml", GOOD.replace('engine = "interp"', ""))
    r = runner.invoke(cli, ["machine", "run", str(cfg), "--events", "-", "--engine", "interp",
                            "--json"], input='{"op": "in", "port": "0x71", "size": 1, "value": 6}\n')
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.output)
    assert doc["engine"] == "interp" and doc["checked"] == 1 and doc["mismatches"] == {}
    r = runner.invoke(cli, ["machine", "run", str(cfg), "--events", str(models / "none.jsonl")])
    assert r.exit_code == 1
    assert r.stderr.strip() == f"{models / 'none.jsonl'}: error: event file not found"
    r = runner.invoke(cli, ["machine", "run", str(models / "none.toml"), "--events", "-"])
    assert r.exit_code == 1
    assert r.stderr.strip() == f"{models / 'none.toml'}: error: config file not found"


def test_cli_run_faults_flag_prints_tracebacks(models, runner, cli):
    cfg = write(models / "m.toml", GOOD)
    r = runner.invoke(cli, ["machine", "run", str(cfg), "--events", "-", "--faults"],
                      input='{"op": "in", "port": "0x80", "size": 1}\n')
    assert r.exit_code == 0
    assert "fault in binding 'boom' (in 0x80 size 1):" in r.stderr
    assert "RuntimeError: boom" in r.stderr
    assert "device-model faults: 1 (contained)" in r.output


def test_cli_check_prints_verifier_lints(models, runner, cli):
    pytest.importorskip("bpfio.text.formats")
    write(models / "never.asm", "ret #0\n")
    cfg = write(models / "m.toml", '[bindings.x]\nbase = 0x70\nlength = 1\nprogram = "never.asm"\n')
    r = runner.invoke(cli, ["machine", "check", str(cfg)])
    assert r.exit_code == 0, r.stderr
    assert "    warning: " in r.output and "[pio-never-done]" in r.output
