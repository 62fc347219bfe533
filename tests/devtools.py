"""Helpers shared by the tests: the bpfio under test, recording workloads, replaying configs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BIN = Path(sys.executable).parent   # where pip put the console scripts of the Python under test


def bpfio_exe() -> str:
    """The ``bpfio`` console script installed next to ``sys.executable``, never one from PATH.

    A test that runs the real entry point must run the one that belongs to the interpreter
    running the tests; a ``bpfio`` elsewhere on PATH is a leftover of some other install.
    Its absence is a failure, not a skip: the README's test command installs it.
    """
    exe = BIN / "bpfio"
    if not exe.is_file():
        pytest.fail(f"no bpfio console script at {exe}: install the project into this "
                    "interpreter's environment (pip install -e '.[test]')")
    return str(exe)


def bpfio_env(**extra) -> dict:
    """The environment for a shell that runs documented ``bpfio ...`` lines.

    PATH starts with this interpreter's script folder, so ``bpfio`` (and ``python``) in a
    shell command resolve to the project under test whatever else is on PATH.
    """
    bpfio_exe()
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra)


class Recording:
    """Runs accesses on a machine and records them as workload JSON Lines."""

    def __init__(self, m):
        self.m, self.lines = m, []

    def pio_in(self, port, size, vcpu=0):
        value = self.m.pio_in(port, size, vcpu)
        self.lines.append({"op": "in", "port": f"{port:#x}", "size": size, "value": value})
        return value

    def pio_out(self, port, size, value, vcpu=0):
        self.m.pio_out(port, size, value, vcpu)
        self.lines.append({"op": "out", "port": f"{port:#x}", "size": size, "value": value})

    def render(self, header: str) -> str:
        """The workload file: ``header`` comment lines, then one JSON event per line."""
        return header + "".join(json.dumps(x) + "\n" for x in self.lines)


def counting(model: type, key=lambda offset: offset) -> type:
    """A subclass of the device model ``model`` whose ``calls`` counts the accesses that
    reached it, per ``(direction, key(offset))``: what a fast path must keep from the model."""

    class Counting(model):
        def __init__(self, **kw):
            self.calls: dict = {}
            super().__init__(**kw)

        def _count(self, direction, offset):
            k = (direction, key(offset))
            self.calls[k] = self.calls.get(k, 0) + 1

        def io_read(self, offset, size):
            self._count("in", offset)
            return super().io_read(offset, size)

        def io_write(self, offset, size, value):
            self._count("out", offset)
            super().io_write(offset, size, value)

    Counting.__name__ = Counting.__qualname__ = f"Counting{model.__name__}"
    return Counting


def replay_example(runner, cli, engine: str, config: str, events: str) -> dict:
    """``bpfio machine run --json`` of an examples/ config and workload; the parsed report."""
    res = runner.invoke(cli, ["machine", "run", "--engine", engine, str(EXAMPLES / config),
                              "--events", str(EXAMPLES / events), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def check_workload(request, name: str, text: str) -> None:
    """The committed ``examples/NAME`` equals ``text`` (``--update-golden`` rewrites it)."""
    path = EXAMPLES / name
    if request.config.getoption("--update-golden"):
        path.write_text(text)
    assert path.read_text() == text


def engine_params() -> list:
    """The engines a CLI test runs: compiled, interp, and jit where native code can run."""
    from bpfio.exec.jit.mem import unavailable_reason
    reason = unavailable_reason()
    return ["compiled", "interp",
            pytest.param("jit", marks=pytest.mark.skipif(reason is not None, reason=str(reason)))]
