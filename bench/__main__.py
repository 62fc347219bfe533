"""Run every benchmark module and print one table (``--json`` for machine output).

Usage: ``python -m bench [--quick] [--only NAME ...] [--json] [--png FILE] [--markdown]``
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import pkgutil
import platform
import sys
import time
import traceback

import bench
from bpfio.commands.common import BpfClickError, write_output   # the one atomic -o writer


def modules(only=()):
    """The benchmark modules, in name order (optionally only the named ones)."""
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    if only:
        names = [n for n in names if n in only or n.removeprefix("bench_") in only]
    return names


def machine_info() -> dict:
    """What the numbers were measured on."""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                    if ln.startswith("model name")), platform.processor())
    except OSError:
        cpu = platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def collect(quick: bool, only=()) -> tuple[list[dict], list[str]]:
    """Run the modules; return (rows, errors).  A failing module is reported, not fatal."""
    rows, errors = [], []
    for name in modules(only):
        try:
            mod = importlib.import_module(f"bench.{name}")
            for row in mod.run(quick):
                row.setdefault("module", name)
                rows.append(row)
        except Exception as exc:  # one broken module must not hide the others
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            if os.environ.get("BPFIO_DEBUG"):
                traceback.print_exc()
    return rows, errors


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(rows: list[dict], *, markdown: bool = False) -> str:
    """Render rows as an aligned text table or a Markdown table."""
    head = ["group", "name", "value", "unit", "vs", "ratio", "goal"]
    body = [[r.get("group", ""), r.get("name", ""), _fmt(r.get("value")), r.get("unit", ""),
             r.get("baseline") or "", _fmt(r.get("ratio")), r.get("goal") or ""] for r in rows]
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(str(c) for c in line) + " |" for line in body]
        return "\n".join(out)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*line).rstrip() for line in [head, *body])


def chart(rows: list[dict], path: str) -> str | None:
    """Write a bar chart of the ratios (needs matplotlib; returns None without it)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rated = [r for r in rows if isinstance(r.get("ratio"), (int, float))]
    fig, ax = plt.subplots(figsize=(9, max(2, 0.3 * len(rated))))
    ax.barh([f"{r['group']}: {r['name']}" for r in rated], [r["ratio"] for r in rated])
    ax.set_xscale("log")
    ax.set_xlabel("ratio to the row's baseline (same run)")
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png")
    write_output(path, image.getvalue())
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--only", nargs="*", default=(), help="module names (e.g. asm pio)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--png", metavar="FILE", help="also write a chart (needs matplotlib)")
    args = parser.parse_args(argv)
    rows, errors = collect(args.quick, args.only)
    info = machine_info()
    if args.json:
        print(json.dumps({"machine": info, "quick": args.quick, "rows": rows, "errors": errors},
                         indent=2, default=str))
    else:
        print(f"# {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
              f"Linux {info['kernel']}, {info['date']}{' (quick)' if args.quick else ''}")
        print(table(rows, markdown=args.markdown))
        for err in errors:
            print(f"error: {err}", file=sys.stderr)
    if args.png:
        try:
            if chart(rows, args.png) is None:
                print("hint: pip install matplotlib for --png", file=sys.stderr)
        except BpfClickError as exc:      # cannot write FILE: one line
            print(exc.format_message(), file=sys.stderr)
            return 1
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
