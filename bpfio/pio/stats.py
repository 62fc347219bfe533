"""Render :meth:`Machine.stats` (and a replay report) as a plain-text table."""

from __future__ import annotations

from typing import Any

from bpfio.pio.replay import UNMAPPED, ReplayReport

COLUMNS = (("events", "events"), ("handled", "handled"), ("notified", "notified"),
           ("exits", "exits"), ("aborts", "aborts"), ("bad_verdicts", "bad"),
           ("insns", "insns"), ("faults", "faults"))


def _ports(b: dict[str, Any]) -> str:
    if b["length"] == 1:
        return f"{b['base']:#x}"
    return f"{b['base']:#x}-{b['base'] + b['length'] - 1:#x}"


def format_stats(stats: dict[str, Any], report: ReplayReport | None = None) -> str:
    """Return the per-binding counter table plus the machine summary lines."""
    head = ["binding", "ports", *(title for _, title in COLUMNS)]
    if report is not None:
        head.append("mismatch")
    rows = []
    for name, b in stats["bindings"].items():
        label = name + ("*" if b["clock"] else "")
        row = [label, _ports(b), *(str(b[key]) for key, _ in COLUMNS)]
        if report is not None:
            row.append(str(report.mismatches.get(name, 0)))
        rows.append(row)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)]
    events, handled = stats["events"], stats["handled"]
    out.append("")
    out.append(f"unmapped accesses: {stats['unmapped']}"
               + (f" ({report.mismatches[UNMAPPED]} mismatching reads)"
                  if report is not None and report.mismatches.get(UNMAPPED) else ""))
    share = f"{100.0 * handled / events:.1f}%" if events else "n/a"
    out.append(f"never needed userspace: {handled} of {events} accesses ({share})")
    if stats.get("faults"):
        out.append(f"device-model faults: {stats['faults']} (contained)")
    if report is not None:
        out.append(f"reads checked against recorded values: {report.checked}, "
                   f"mismatches: {report.total_mismatches}")
        for m in report.examples:
            out.append(f"  line {m.line}: in {m.port:#x} size {m.size}: expected "
                       f"{m.expected:#x}, got {m.got:#x} ({m.binding})")
    if any(b["clock"] for b in stats["bindings"].values()):
        out.append("* binding uses a clock: its reads depend on time and may differ "
                   "from a trace recorded elsewhere")
    return "\n".join(out)
