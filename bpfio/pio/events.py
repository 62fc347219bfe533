"""Workload files: JSON Lines events and the kernel's ``kvm:kvm_pio`` trace text.

Two formats, told apart by the first meaningful line:

* **JSON Lines** -- one object per line::

      {"op": "out", "port": "0x70", "size": 1, "value": 143, "t_ns": 1000}
      {"op": "in",  "port": 1544, "size": 4, "value": 3579, "t_ns": 2000}
      {"op": "outs", "port": "0x3f8", "size": 1, "values": [104, 105]}
      {"op": "ins", "port": "0x60", "size": 1, "count": 3}

  ``op`` is ``in``/``out``/``ins``/``outs``; ``port`` an integer or a
  ``"0x..."`` string; ``size`` 1, 2 or 4; for ``out`` ``value`` is written,
  for ``in`` it is the *expected* value (optional).  ``ins`` takes ``count``
  and/or ``values`` (expected); ``outs`` takes ``values``.  ``t_ns`` (optional,
  never decreasing) sets the replay clock; ``vcpu`` defaults to 0.  Blank
  lines and lines starting with ``#`` are ignored.

* **kvm_pio trace text** as printed by ``perf script`` and ``trace-cmd
  report`` for the ``kvm:kvm_pio`` tracepoint, whose format on Linux is
  ``pio_%s at 0x%x size %d count %d val 0x%x %s``::

      qemu-system-x86 4242 [001]  1234.000001: kvm:kvm_pio: pio_read at 0x608 size 4 count 1 val 0x1234
      qemu-system-x86-4242  [001]  1234.000002: kvm_pio:  pio_write at 0x70 size 1 count 1 val 0x8f

  The timestamp (seconds) gives ``t_ns``; each distinct thread id becomes a
  vCPU index in order of first appearance; IN values are expected values.
  The tracepoint records only the first element of a string access
  (``count > 1``, printed with ``(...)``): a string OUT replays that value
  ``count`` times and a string IN checks only its first element.  Lines of
  other events and header lines are skipped (and counted).

A malformed line is a :class:`~bpfio.errors.TraceError` naming the file and
the line; with ``skip_bad=True`` it is counted in ``reader.bad`` instead.
"""

from __future__ import annotations

import json
import re
import sys
from typing import IO, Iterator, NamedTuple

from bpfio.errors import LimitError, TraceError
from bpfio.limits import load_json, parse_int
from bpfio.pio.machine import SIZE_MASK

JSON_KEYS = {"op", "port", "size", "value", "values", "count", "t_ns", "vcpu"}
OPS = ("in", "out", "ins", "outs")
COUNT_MAX = 1 << 20   # elements in one string access (KVM bounds it by a 4 KiB page)

_KVM_PIO = re.compile(
    r"(?:(?P<tid>\d+)\s+)?\[(?P<cpu>\d+)\][^:]*?\s(?P<sec>\d+)\.(?P<frac>\d+):\s+"
    r"(?:kvm:)?kvm_pio:\s+pio_(?P<rw>read|write) at 0x(?P<port>[0-9a-fA-F]+) "
    r"size (?P<size>-?\d+) count (?P<count>-?\d+) val 0x(?P<val>[0-9a-fA-F]+)\s*(?:\(\.\.\.\))?\s*$")
_OTHER_EVENT = re.compile(r"\s\d+\.\d+:\s+\S+:")
# A kvm_pio trace line is ~100 characters (a task name is at most 16); a longer one is not
# an event, and refusing it first keeps the regex search linear (it backtracks on long digit
# runs: a 24 KB line took seconds).
TRACE_LINE_MAX = 1024


class Event(NamedTuple):
    """One guest access to replay (``count`` elements on one port)."""

    line: int
    op: str                   # "in" or "out"
    port: int
    size: int
    count: int
    values: tuple             # out: values written; in: expected values (None = unknown)
    t_ns: int | None = None
    vcpu: int = 0


def _num(value, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be an integer, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return parse_int(value, 0)
        except LimitError as exc:
            raise ValueError(f"{what}: {exc}") from None
        except ValueError:
            raise ValueError(f"{what} {value!r} is not a number") from None
    raise ValueError(f"{what} must be an integer or a '0x...' string, not {type(value).__name__}")


def _check_value(v: int, size: int, what: str) -> int:
    if not 0 <= v <= SIZE_MASK[size]:
        raise ValueError(f"{what} {v:#x} does not fit a {size}-byte access" if v >= 0
                         else f"{what} {v} is negative")
    return v


def parse_json_event(text: str, line: int) -> Event:
    """Parse one JSON Lines event (raises ValueError with the problem)."""
    try:
        obj = load_json(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError("an event must be a JSON object")
    unknown = sorted(set(obj) - JSON_KEYS)
    if unknown:
        raise ValueError(f"unknown key '{unknown[0]}' (known: {', '.join(sorted(JSON_KEYS))})")
    for key in ("op", "port", "size"):
        if key not in obj:
            raise ValueError(f"missing key '{key}'")
    op = obj["op"]
    if op not in OPS:
        raise ValueError(f"op {op!r} is not one of {', '.join(OPS)}")
    port = _num(obj["port"], "port")
    if not 0 <= port <= 0xffff:
        raise ValueError(f"port {port} is out of range 0..0xffff")
    size = _num(obj["size"], "size")
    if size not in SIZE_MASK:
        raise ValueError(f"size {size} is not 1, 2 or 4")
    t_ns = None
    if "t_ns" in obj:
        t_ns = _num(obj["t_ns"], "t_ns")
        if not 0 <= t_ns < 1 << 64:
            raise ValueError(f"t_ns {t_ns} is not a 64-bit unsigned count of nanoseconds")
    vcpu = _num(obj.get("vcpu", 0), "vcpu")
    if not 0 <= vcpu <= 0xffffffff:
        raise ValueError(f"vcpu {vcpu} is out of range 0..0xffffffff")

    if op in ("in", "out"):
        if "values" in obj or "count" in obj:
            raise ValueError(f"'{op}' takes 'value'; use '{op}s' for string I/O")
        if "value" in obj:
            values = (_check_value(_num(obj["value"], "value"), size, "value"),)
        elif op == "out":
            raise ValueError("'out' needs a 'value'")
        else:
            values = (None,)
        return Event(line, op, port, size, 1, values, t_ns, vcpu)

    if "value" in obj:
        raise ValueError(f"'{op}' takes 'values' (a list), not 'value'")
    values = obj.get("values")
    if values is not None:
        if not isinstance(values, list):
            raise ValueError("'values' must be a list")
        values = tuple(_check_value(_num(v, "value"), size, "value") for v in values)
    count = obj.get("count")
    if count is not None:
        count = _num(count, "count")
        if not 0 <= count <= COUNT_MAX:
            raise ValueError(f"count {count} is out of range 0..{COUNT_MAX}")
        if values is not None and len(values) != count:
            raise ValueError(f"count {count} does not match the {len(values)} values")
    if op == "outs":
        if values is None:
            raise ValueError("'outs' needs 'values'")
        return Event(line, "out", port, size, len(values), values, t_ns, vcpu)
    if values is None and count is None:
        raise ValueError("'ins' needs 'count' or 'values'")
    if values is None:
        values = (None,) * count
    return Event(line, "in", port, size, len(values), values, t_ns, vcpu)


def parse_trace_line(text: str, line: int, vcpus: dict[str, int]) -> Event:
    """Parse one kvm_pio trace line (raises ValueError with the problem)."""
    if len(text) > TRACE_LINE_MAX:
        raise ValueError(f"a line of {len(text)} characters is not a kvm_pio event "
                         f"(at most {TRACE_LINE_MAX})")
    m = _KVM_PIO.search(text)
    if m is None:
        raise ValueError("not a kvm_pio event: expected '... <sec>.<frac>: kvm_pio: "
                         "pio_read|pio_write at 0x<port> size <n> count <n> val 0x<v>'")
    port = parse_int(m["port"], 16)
    size = parse_int(m["size"], 10)
    count = parse_int(m["count"], 10)
    val = parse_int(m["val"], 16)
    if port > 0xffff:
        raise ValueError(f"port {port:#x} is out of range 0..0xffff")
    if size not in SIZE_MASK:
        raise ValueError(f"size {size} is not 1, 2 or 4")
    if not 1 <= count <= COUNT_MAX:
        raise ValueError(f"count {count} is out of range 1..{COUNT_MAX}")
    _check_value(val, size, "val")
    t_ns = parse_int(m["sec"], 10) * 1_000_000_000 + int(m["frac"][:9].ljust(9, "0"))
    if t_ns >> 64:   # the same bound as JSONL t_ns: never wrapped into range
        raise ValueError(f"timestamp {m['sec']}.{m['frac']} s is past 2**64 ns "
                         f"(about 584 years)")
    tid = m["tid"] or "?"
    vcpu = vcpus.setdefault(tid, len(vcpus))
    if m["rw"] == "write":
        return Event(line, "out", port, size, count, (val,) * count, t_ns, vcpu)
    return Event(line, "in", port, size, count, (val,) + (None,) * (count - 1), t_ns, vcpu)


class EventReader:
    """Iterate the events of a file or stream, checking each line.

    ``fmt`` is ``"auto"``, ``"jsonl"`` or ``"kvm_pio"``.  After iterating,
    ``format`` is the format used, ``bad`` the malformed lines skipped
    (``skip_bad=True``) and ``skipped`` the non-event lines of a trace.
    """

    def __init__(self, source: str | IO[str], *, fmt: str = "auto", skip_bad: bool = False,
                 filename: str | None = None):
        if fmt not in ("auto", "jsonl", "kvm_pio"):
            raise TraceError(f"unknown event format {fmt!r} (auto, jsonl, kvm_pio)",
                             filename=filename or "<events>")
        self.source = source
        self.filename = filename or (source if isinstance(source, str) else
                                     getattr(source, "name", "<events>"))
        if self.filename == "-":
            self.filename = "<stdin>"
        self.format = None if fmt == "auto" else fmt
        self.skip_bad = skip_bad
        self.bad = 0
        self.skipped = 0
        self.events = 0
        self.first_bad: TraceError | None = None

    def _lines(self) -> Iterator[str]:
        if not isinstance(self.source, str):
            yield from self.source
            return
        if self.source == "-":   # bytes, decoded as files are: invalid UTF-8 is not a crash
            for raw in sys.stdin.buffer:
                yield raw.decode("utf-8", errors="replace")
            return
        try:
            with open(self.source, encoding="utf-8", errors="replace") as f:
                yield from f
        except FileNotFoundError:
            raise TraceError("event file not found", filename=self.filename) from None
        except OSError as exc:
            raise TraceError(f"cannot read event file: {exc.strerror}",
                             filename=self.filename) from None
        except ValueError:      # open() of a name with a NUL (a dbg script can hold one)
            raise TraceError("cannot read event file: its name contains a NUL byte",
                             filename=ascii(self.filename)) from None

    def __iter__(self) -> Iterator[Event]:
        vcpus: dict[str, int] = {}
        last_t = None
        lineno = 0
        for lineno, raw in enumerate(self._lines(), 1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            if self.format is None:
                self.format = "jsonl" if text.startswith("{") else "kvm_pio"
            try:
                if self.format == "jsonl":
                    event = parse_json_event(text, lineno)
                else:
                    if "kvm_pio:" not in text:
                        self.skipped += 1   # headers, other tracepoints, "CPU 0 is empty"
                        continue
                    event = parse_trace_line(text, lineno, vcpus)
                if event.t_ns is not None:
                    if last_t is not None and event.t_ns < last_t:
                        raise ValueError(f"t_ns {event.t_ns} goes back in time "
                                         f"(previous event at {last_t})")
                    last_t = event.t_ns
            except ValueError as exc:
                err = TraceError(str(exc), filename=self.filename, line=lineno)
                if not self.skip_bad:
                    raise err from None
                self.bad += 1
                self.first_bad = self.first_bad or err
                continue
            self.events += 1
            yield event
        if not self.events:   # nothing to replay is an error, not a silent success
            what = f"a {self.format} event" if self.format else "an event"
            why = "it is empty" if not lineno else f"none of its {lineno} line(s) is {what}"
            if self.bad:
                why += f" ({self.bad} malformed, skipped)"
            raise TraceError(f"no events: {why}", filename=self.filename)
