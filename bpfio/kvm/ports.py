"""Port handlers for a VM that has no engine, and a wrapper that times any handler.

:class:`NullPorts` answers every IN with all ones and drops every OUT (an empty ISA bus);
:class:`TimedPorts` wraps a handler and adds up the time spent in it, so a run can say what
share of each exit bpfio costs.
"""

from __future__ import annotations

import time

_MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


class NullPorts:
    """A port handler that reads all ones and drops writes (no engine at all)."""

    def pio_in(self, port: int, size: int, vcpu: int = 0) -> int:
        return _MASKS[size]

    def pio_out(self, port: int, size: int, value: int, vcpu: int = 0) -> None:
        return None


class TimedPorts:
    """Wrap a port handler and add up the wall time spent inside it (``seconds``).

    Two ``perf_counter_ns`` calls per access (about 0.1 us) against an exit
    of several microseconds; with several vCPUs the sum is over all threads.
    """

    def __init__(self, ports):
        self.ports = ports
        self.ns = 0
        clock = time.perf_counter_ns
        inner_in, inner_out = ports.pio_in, ports.pio_out

        def pio_in(port, size, vcpu=0):
            t = clock()
            try:
                return inner_in(port, size, vcpu=vcpu)
            finally:
                self.ns += clock() - t

        def pio_out(port, size, value, vcpu=0):
            t = clock()
            try:
                return inner_out(port, size, value, vcpu=vcpu)
            finally:
                self.ns += clock() - t

        self.pio_in, self.pio_out = pio_in, pio_out
        inner_ins, inner_outs = getattr(ports, "pio_ins", None), getattr(ports, "pio_outs", None)
        if inner_ins is not None and inner_outs is not None:
            def pio_ins(port, size, count, vcpu=0):
                t = clock()
                try:
                    return inner_ins(port, size, count, vcpu=vcpu)
                finally:
                    self.ns += clock() - t

            def pio_outs(port, size, values, vcpu=0):
                t = clock()
                try:
                    return inner_outs(port, size, values, vcpu=vcpu)
                finally:
                    self.ns += clock() - t

            self.pio_ins, self.pio_outs = pio_ins, pio_outs

    @property
    def seconds(self) -> float:
        """Total time spent in the wrapped handler."""
        return self.ns / 1e9
