"""``bpfio bench``: run the benchmark suite in ``bench/`` (a source-checkout tool)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bpfio.commands.common import BpfClickError


@click.command("bench", context_settings={"ignore_unknown_options": True})
@click.option("--quick", is_flag=True, help="Short runs (what CI's smoke test uses).")
@click.option("--only", multiple=True, metavar="NAME", help="Only these modules (asm, interp, pio, ...).")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.option("--markdown", is_flag=True, help="A Markdown table (what the README shows).")
@click.option("--png", metavar="FILE", help="Also draw a chart (needs matplotlib).")
def bench(quick, only, as_json, markdown, png):
    """Run the benchmarks; every figure is a ratio to a baseline from the same run.

    \b
    Examples:
      bpfio bench --quick
      bpfio bench --only asm --only interp
      bpfio bench --markdown > /tmp/table.md
    """
    root = Path(__file__).resolve().parents[2]
    if not (root / "bench" / "__main__.py").is_file():
        raise BpfClickError("error: the benchmark suite lives in the source tree (bench/); "
                                   "run this from a checkout installed with pip install -e")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from bench.__main__ import main as bench_main
    argv = (["--quick"] if quick else []) + (["--only", *only] if only else []) + \
        (["--json"] if as_json else []) + (["--markdown"] if markdown else []) + \
        (["--png", png] if png else [])
    sys.exit(bench_main(argv))
