"""Replay a workload (JSON Lines or a kvm_pio trace) through a :class:`Machine`.

The machine must run on a :class:`~bpfio.pio.machine.FakeClock`: each event
with ``t_ns`` moves the clock there first, so time-dependent registers see
the recorded time.  For every IN with a recorded value the result is
compared; mismatches are counted per binding and the first few are kept.
Reads of bindings that use a clock (``clock_hz`` set, or a program that
loads ``PIO_TICKS``/``PIO_NS``) can legitimately differ from a trace taken
on another host, so the report marks those bindings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from bpfio.pio.events import Event
from bpfio.pio.machine import FakeClock, Machine

UNMAPPED = "(unmapped)"
EXAMPLES_KEPT = 10


@dataclass
class Mismatch:
    """One IN whose value differs from the recorded one."""

    line: int
    port: int
    size: int
    expected: int
    got: int
    binding: str


@dataclass
class ReplayReport:
    """What a replay found: per-binding mismatch counts and a few examples."""

    events: int = 0
    accesses: int = 0
    checked: int = 0
    mismatches: dict[str, int] = field(default_factory=dict)
    examples: list[Mismatch] = field(default_factory=list)

    @property
    def total_mismatches(self) -> int:
        """All mismatching reads, over every binding."""
        return sum(self.mismatches.values())


def replay(machine: Machine, events: Iterable[Event], clock: FakeClock | None = None
           ) -> ReplayReport:
    """Run every event through ``machine``; return the mismatch report.

    ``clock`` is the machine's :class:`FakeClock` (found on the machine when
    omitted); events without ``t_ns`` keep the current reading.
    """
    if clock is None:
        clock = machine.clock if isinstance(machine.clock, FakeClock) else None
    report = ReplayReport()
    mismatches = report.mismatches
    pio_in, pio_out = machine.pio_in, machine.pio_out
    for ev in events:
        report.events += 1
        if ev.t_ns is not None and clock is not None:
            clock.ns = ev.t_ns
        report.accesses += ev.count
        if ev.op == "out":
            for v in ev.values:
                pio_out(ev.port, ev.size, v, ev.vcpu)
            continue
        for expected in ev.values:
            got = pio_in(ev.port, ev.size, ev.vcpu)
            if expected is None:
                continue
            report.checked += 1
            if got != expected:
                binding = machine.binding_at(ev.port)
                name = binding.name if binding is not None else UNMAPPED
                mismatches[name] = mismatches.get(name, 0) + 1
                if len(report.examples) < EXAMPLES_KEPT:
                    report.examples.append(Mismatch(ev.line, ev.port, ev.size, expected, got, name))
    return report
