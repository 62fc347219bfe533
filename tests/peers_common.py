"""Shared by the peer-suite harnesses (tests/test_peers_*.py): load a data file, tally, render the docs row.

Each harness classifies every case of a peer's suite into exactly one outcome:

* ``agree`` -- bpfio gives the peer's expected result;
* ``skip`` -- the case cannot be run against bpfio, with a short reason
  (counted per reason);
* ``explained`` -- bpfio differs from the peer, the live kernel sides with
  bpfio, and the harness carries the written explanation (a peer bug or a
  peer-specific semantic; "peer differs from kernel (kernel-confirmed)");
* ``disagree`` -- anything else.  Must stay 0.

:func:`render_row` turns a tally into the row of the table in
``docs/peers.md``; :func:`doc_row` reads that row back, so a test can assert
the two are equal and the document cannot go stale.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PEERS = Path(__file__).resolve().parent / "peers"
DOC = Path(__file__).resolve().parent.parent / "docs" / "peers.md"


def load(name: str) -> dict:
    """The parsed ``tests/peers/NAME`` JSON data file (must carry a source header)."""
    data = json.loads((PEERS / name).read_text())
    assert "source" in data["header"], f"{name}: data file without a source header"
    return data


@dataclass
class Tally:
    """Outcomes of one suite: counts of agree / skip (per reason) / explained / disagree."""

    suite: str
    source: str
    agree: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_cases: dict = field(default_factory=dict)  # case name -> reason
    explained: dict = field(default_factory=dict)     # case name -> explanation
    disagree: dict = field(default_factory=dict)      # case name -> what differed

    @property
    def cases(self) -> int:
        return self.agree + sum(self.skipped.values()) + len(self.explained) + len(self.disagree)

    def add(self, name: str, outcome: str, detail: str = "") -> None:
        """Record one case: ``outcome`` is agree, skip (detail = reason), explained or disagree."""
        if outcome == "agree":
            self.agree += 1
        elif outcome == "skip":
            self.skipped[detail] += 1
            self.skipped_cases[name] = detail
        elif outcome == "explained":
            self.explained[name] = detail
        elif outcome == "disagree":
            self.disagree[name] = detail
        else:
            raise ValueError(f"unknown outcome {outcome!r}")


def render_row(t: Tally) -> str:
    """The docs/peers.md table row for a tally."""
    skipped = sum(t.skipped.values())
    reasons = "; ".join(f"{reason}: {n}" for reason, n in sorted(t.skipped.items()))
    skip_cell = f"{skipped} ({reasons})" if skipped else "0"
    dis = f"{len(t.disagree)}"
    if t.explained:
        dis += f" (+ {len(t.explained)} explained, kernel-confirmed)"
    return f"| {t.suite} | {t.source} | {t.cases} | {t.agree} | {skip_cell} | {dis} |"


def doc_row(suite: str, doc: Path = DOC) -> str | None:
    """The row of the docs/peers.md table whose first cell is ``suite`` (None if absent)."""
    for line in doc.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells and cells[0] == suite:
            return re.sub(r"\s+", " ", line.strip())
    return None


_NATIVE: dict = {}


def native(prog):
    """The program compiled by the JIT (cached), or None where native code cannot run or the
    socket verifier refuses the program (the JIT compiles verified programs only)."""
    if prog not in _NATIVE:
        from bpfio.errors import BpfError
        from bpfio.exec.jit.program import jit
        try:
            _NATIVE[prog] = jit(prog)
        except BpfError:
            _NATIVE[prog] = None
    return _NATIVE[prog]
