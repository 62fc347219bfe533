"""The benchmark suite still runs (quick mode); its timings are never asserted."""

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.__main__ import modules, table  # noqa: E402

KEYS = {"group", "name", "value", "unit", "baseline", "ratio", "goal"}


@pytest.mark.parametrize("name", modules())
def test_benchmark_module_runs_quick(name):
    rows = importlib.import_module(f"bench.{name}").run(True)
    assert rows, f"{name} produced no rows"
    names = {r["name"] for r in rows}
    for row in rows:
        assert KEYS <= set(row), row
        assert row["baseline"] is None or row["baseline"] in names, row
    assert table(rows)


def test_png_chart_goes_through_the_atomic_writer(tmp_path, monkeypatch, capsys):
    """--png FILE is written like every -o: whole or not at all, failures on one line."""
    import types

    import bench.__main__ as bench_main

    class Fig:
        def tight_layout(self):
            pass

        def savefig(self, out, format):
            out.write(b"\x89PNG fake " + format.encode() + b"\n" * 9000)

    class Ax:
        def __getattr__(self, name):
            return lambda *a, **k: None

    pyplot = types.SimpleNamespace(subplots=lambda **k: (Fig(), Ax()))
    monkeypatch.setitem(sys.modules, "matplotlib",
                        types.SimpleNamespace(use=lambda name: None, pyplot=pyplot))
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", pyplot)
    monkeypatch.setattr(bench_main, "collect", lambda quick, only: (
        [{"group": "g", "name": "n", "ratio": 2.0, "value": 1, "unit": "s", "baseline": None,
          "goal": None}], []))
    out = tmp_path / "chart.png"
    out.write_bytes(b"old")
    assert bench_main.main(["--quick", "--png", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG fake png")
    missing = tmp_path / "no" / "chart.png"
    assert bench_main.main(["--quick", "--png", str(missing)]) == 1
    assert capsys.readouterr().err == (f"{missing}: error: cannot write: folder "
                                       f"'{missing.parent}' does not exist\n")
