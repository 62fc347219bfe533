"""``bpfio machine``: check a machine config, or replay a workload through it."""

from __future__ import annotations

import json

import click

from bpfio.commands.common import render_error
from bpfio.pio.config import check_machine, load_machine
from bpfio.pio.events import EventReader
from bpfio.pio.machine import FakeClock
from bpfio.pio.replay import replay
from bpfio.pio.stats import format_stats


@click.group("machine")
def machine():
    """Check or run a machine config of port bindings (see docs/engine.md)."""


@machine.command("check")
@click.argument("config", type=click.Path(dir_okay=False))
def check(config):
    """Validate CONFIG: files, models, overlaps and the pio verifier.

    Every problem is reported on its own line (file, binding, problem);
    the exit status is 1 if there is any.
    """
    m, errors = check_machine(config)
    try:
        if errors:
            for err in errors:
                click.echo(render_error(err), err=True)
            raise click.exceptions.Exit(1)
        click.echo(f"{config}: ok: {len(m.bindings)} binding(s), engine {m.engine}")
        for name, b in m.bindings.items():
            end = b.base + b.length - 1
            parts = [f"ports {b.base:#x}-{end:#x}" if b.length > 1 else f"port {b.base:#x}"]
            if b.program is not None:
                parts.append(f"program {len(b.program)} insns")
            if b.device is not None:
                parts.append(f"model {type(b.device).__module__}.{type(b.device).__qualname__}")
            parts.append(f"mem {len(b.mem)} words")
            if b.clock_hz:
                parts.append(f"clock {b.clock_hz} Hz")
            if b.notifiers:
                parts.append(f"{len(b.notifiers)} notifier(s)")
            click.echo(f"  {name}: " + ", ".join(parts))
            for lint in b.lints:
                click.echo(f"    warning: {lint}")
    finally:
        if m is not None:
            m.close()


@machine.command("run")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--events", "events_file", required=True, metavar="FILE",
              help="JSON Lines events or kvm_pio trace text ('-' for stdin).")
@click.option("--format", "fmt", type=click.Choice(["auto", "jsonl", "kvm_pio"]), default="auto",
              show_default=True, help="Event file format.")
@click.option("--skip-bad", is_flag=True, help="Count malformed lines and continue.")
@click.option("--json", "as_json", is_flag=True, help="Print the counters as JSON.")
@click.option("--engine", type=click.Choice(["compiled", "interp", "jit"]), default=None,
              help="Override the config's engine.")
@click.option("--faults", "show_faults", is_flag=True,
              help="Print the recorded device-model tracebacks.")
def run(config, events_file, fmt, skip_bad, as_json, engine, show_faults):
    """Replay a workload through CONFIG and print per-binding counters.

    The clock is a replay clock set from each event's t_ns (or the trace
    timestamp), so time-based registers see the recorded time.  Reads with a
    recorded value are compared; mismatches are reported per binding.
    """
    clock = FakeClock(0)
    m = load_machine(config, clock=clock, engine=engine)
    try:
        reader = EventReader(events_file, fmt=fmt, skip_bad=skip_bad)
        report = replay(m, reader, clock)
        stats = m.stats()
        faults = m.faults()
    finally:
        m.close()
    if as_json:
        doc = {**stats, "format": reader.format, "bad_lines": reader.bad,
               "skipped_lines": reader.skipped, "checked": report.checked,
               "mismatches": report.mismatches,
               "examples": [vars(x) for x in report.examples]}
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(f"{reader.filename}: {report.events} events ({report.accesses} accesses), "
                   f"format {reader.format or 'empty'}")
        click.echo(format_stats(stats, report))
    if show_faults:
        for f in faults:
            direction = "in" if f.direction == 0 else "out"
            click.echo(f"fault in binding '{f.binding}' ({direction} {f.port:#x} size {f.size}):\n"
                       f"{f.traceback.rstrip()}", err=True)
    if reader.bad:
        click.echo(f"skipped {reader.bad} malformed line(s); first: {reader.first_bad}", err=True)
