"""Helpers shared by the device tests: recording workloads and replaying example configs."""

from __future__ import annotations

import json
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


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
