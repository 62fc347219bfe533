"""Fuzzed events, traces, configs and captures: a clear one-line error or a result, never a traceback.

Each test mutates a real, valid input (an example workload, a recorded kvm_pio trace, the
example machine config, a pcap written by bpfio) and checks that the library raises only
its own error type and that the command line exits 0 or 1 with a place-first message.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from bpfio.cli import main
from bpfio.errors import BpfError
from bpfio.exec.pcap import iter_packets, write_pcap
from bpfio.pio.config import check_machine
from bpfio.pio.events import EventReader

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TRACE = ROOT / "tests" / "data" / "pio" / "smp1-perf.txt"
N = 80


def mutate(data: bytes, rng: random.Random, edits: int = 4) -> bytes:
    """Insert, delete, flip or duplicate a few bytes or lines."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, edits)):
        pos = rng.randrange(len(buf) + 1)
        op = rng.randrange(5)
        if op == 0:
            buf[pos:pos] = bytes([rng.choice(b'{}[]",:0x\n #-9a\xff\x00')])
        elif op == 1 and buf:
            del buf[pos:pos + rng.randint(1, 8)]
        elif op == 2 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 3:
            end = min(len(buf), pos + rng.randint(1, 40))
            buf[pos:pos] = buf[pos:end]
        else:
            buf[pos:pos] = rng.choice([b"\n", b"size 3", b"0x10000", b"-1", b"1e9", b"null",
                                       b"count 0", b"pio_read at", b'"op": "ins"'])
    return bytes(buf)


def head_lines(path: Path, n: int) -> bytes:
    return b"".join(path.read_bytes().splitlines(keepends=True)[:n])


def _check_cli(args, data, path):
    path.write_bytes(data)
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1), (data[:200], result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        data[:200], repr(result.exception))
    if result.exit_code == 1:
        first = result.stderr.strip().splitlines()[0]
        assert ": error:" in first or first.startswith("error:"), first


@pytest.mark.parametrize("source", ["examples/pc.jsonl", "tests/data/pio/smp1-perf.txt"])
def test_mutated_events_raise_only_trace_errors(source, tmp_path):
    rng = random.Random(source)
    seed = head_lines(ROOT / source, 30)
    for i in range(N):
        path = tmp_path / f"ev{i}"
        path.write_bytes(mutate(seed, rng))
        try:
            for _ in EventReader(str(path)):
                pass
        except BpfError as err:
            assert str(err).startswith(str(path)), str(err)


def test_mutated_events_through_the_cli(tmp_path):
    rng = random.Random(2)
    seed = head_lines(EXAMPLES / "pc.jsonl", 40)
    for i in range(N // 2):
        ev = tmp_path / "ev.jsonl"
        _check_cli(["machine", "run", str(EXAMPLES / "pc.toml"), "--events", str(ev)],
                   mutate(seed, rng), ev)


def test_mutated_configs(tmp_path):
    rng = random.Random(3)
    seed = (EXAMPLES / "pmtimer.toml").read_bytes()
    # Keep relative program paths working from the temporary folder.
    seed = seed.replace(b'"../asm/', b'"' + str(ROOT / "asm").encode() + b"/")
    for i in range(N):
        cfg = tmp_path / f"m{i}.toml"
        cfg.write_bytes(mutate(seed, rng))
        try:
            machine, errors = check_machine(cfg)
        except BpfError as err:
            assert str(err).startswith(str(cfg)), str(err)
        else:
            assert all(str(e).startswith(str(cfg)) for e in errors), errors
            if machine is not None:
                machine.close()
        _check_cli(["machine", "check", str(cfg)], cfg.read_bytes(), cfg)


@pytest.mark.parametrize("order", ["<", ">"])
def test_mutated_pcaps(order, tmp_path):
    rng = random.Random(order)
    seed = write_pcap([bytes(range(60)), b"\x08\x00" * 30, b""], byteorder=order)
    prog = tmp_path / "f.bpf"
    prog.write_text("ldh [12]\njeq #0x800, yes\nret #0\nyes: ret #-1\n")
    for i in range(N):
        data = mutate(seed, rng)
        cap = tmp_path / "c.pcap"
        try:
            list(iter_packets(data, filename=str(cap)))
        except BpfError as err:
            assert str(cap) in str(err), str(err)
        _check_cli(["run", str(prog), "--pcap", str(cap)], data, cap)
