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
