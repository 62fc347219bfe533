"""Every command, fed malformed files: one line naming the place, exit 1 (2 for usage), no traceback."""

import random
import zlib

import pytest
from click.testing import CliRunner

from bpfio.cli import main

COMMANDS = [
    ["asm"], ["disasm"], ["check"], ["check", "--profile", "seccomp"],
    ["check", "--profile", "pio"], ["run", "--packet", "00"], ["cfg"],
    ["equiv"], ["prove", "--assert", "ret <= 0xffffffff"],
    ["opt"], ["opt", "--profile", "pio"],
]


def _mutants(seed: int, n: int):
    rng = random.Random(seed)
    seeds = [b"ldh [12]\njne #0x806, drop\nret #-1\ndrop: ret #0\n",
             b"4,40 0 0 12,21 0 1 2054,6 0 0 4294967295,6 0 0 0,\n",
             b"{ 0x28, 0, 0, 0x0000000c },\n{ 0x6, 0, 0, 0x00000000 },\n",
             b"2\n6 0 0 0\n6 0 0 1\n", b'[{"code": 6, "jt": 0, "jf": 0, "k": 1}]',
             bytes(range(16))]
    for _ in range(n):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(3)
            pos = rng.randrange(len(data) + 1)
            if op == 0:
                data[pos:pos] = bytes([rng.randrange(256)])
            elif op == 1 and data:
                del data[min(pos, len(data) - 1)]
            elif data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
        yield bytes(data)


@pytest.mark.parametrize("cmd", COMMANDS, ids=" ".join)
def test_mutated_programs_never_traceback(cmd, tmp_path):
    runner = CliRunner()
    for i, data in enumerate(_mutants(zlib.crc32(" ".join(cmd).encode()), 60)):
        path = tmp_path / f"p{i}"
        path.write_bytes(data)
        extra = ["-o", str(tmp_path / "g.dot")] if cmd == ["cfg"] else []
        if cmd == ["equiv"]:
            extra = [str(path)]                # the program against itself: proved or an error
        result = runner.invoke(main, [*cmd, *extra, str(path)])
        assert result.exit_code in (0, 1), (data, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            data, result.exception)
        if result.exit_code == 1:
            lines = result.stderr.strip().splitlines()
            assert lines, data
            assert "Traceback" not in result.output


def test_missing_file_is_one_line(tmp_path):
    for cmd in COMMANDS:
        extra = [str(tmp_path / "nope.bpf")] if cmd == ["equiv"] else []
        result = CliRunner().invoke(main, [*cmd, *extra, str(tmp_path / "nope.bpf")])
        assert result.exit_code in (1, 2), cmd
        assert "nope.bpf" in result.stderr and "Traceback" not in result.output


def test_model_import_failure_names_file_and_binding(tmp_path, monkeypatch):
    pkg = tmp_path / "badpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "broken.py").write_text("x = (\n")
    cfg = tmp_path / "m.toml"
    cfg.write_text('[bindings.b]\nbase = 0x100\nlength = 1\nmodel = "badpkg.broken:Dev"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    result = CliRunner().invoke(main, ["machine", "check", str(cfg)])
    assert result.exit_code == 1
    assert "binding 'b'" in result.stderr and "SyntaxError" in result.stderr
    assert "Traceback" not in result.output
