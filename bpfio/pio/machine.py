"""The port-I/O engine: a flat dispatch table of bindings that run programs first.

A :class:`Machine` owns the 65536-entry x86 port space.  :meth:`Machine.attach`
registers a :class:`Binding` over ``[base, base + length)``; each binding may
hold a verified classic-BPF program (the fast path, profile ``pio``), a
userspace device model (the fallback), its shared memory words, a clock
rate and notifiers.  Every access is dispatched by its first port, and runs

    program  --PIO_DONE / PIO_NOTIFY_n-->  handled (an IN returns A & size mask)
        |
        +--PIO_EXIT (or abort, or a bad verdict)-->  device model  -->  unmapped default

Unmapped ports read as all ones and swallow writes, as on x86 hardware.  One
event is atomic with respect to its binding: the program, the model call and
the shared memory they both touch run under ``binding.lock``.  A device
model that raises is contained: the access completes with the unmapped
default and the traceback is kept in :meth:`Machine.faults`.

Example -- an ACPI PM timer served entirely on the fast path::

    >>> import bpfio
    >>> from bpfio.pio.machine import FakeClock
    >>> clock = FakeClock(1_000_000_000)             # 1 s after boot
    >>> m = bpfio.Machine(clock=clock)
    >>> pm = m.attach(0x608, 4, name="pmtimer", clock_hz=3579545, program='''
    ...     #include <pio.inc>
    ...     ld [PIO_TICKS]
    ...     and #0xffffff
    ...     ret #PIO_DONE
    ... ''')
    >>> m.pio_in(0x608, 4)                           # floor(1 s * 3579545 Hz)
    3579545
    >>> m.pio_in(0x700, 1)                           # nothing there: all ones
    255
    >>> m.stats()["bindings"]["pmtimer"]["handled"]
    1

Device models implement ``io_read(offset, size) -> int`` and
``io_write(offset, size, value)``; an optional ``attach(binding)`` is called
once so the model can keep ``binding.mem``, ``binding.now_ns()``,
``binding.ticks()`` and ``binding.notifier(i)``.  See ``docs/engine.md``.
"""

from __future__ import annotations

import re
import threading
import time
import traceback
from threading import get_ident
from collections import deque
from functools import lru_cache
from typing import Any, Callable, Iterable, Sequence

from ..errors import BpfError, PioError
from ..insn import Program
from . import abi
from .notify import Notifier
from .program import clock_fields, load_runner, to_program
from .state import Counters, FakeClock, Fault, SharedMemory

__all__ = ["Binding", "Counters", "FakeClock", "Fault", "Machine", "SharedMemory", "SIZE_MASK",
           "bad_access", "bad_value", "clock_fields"]

_IN = abi.PIO_IN
_OUT = abi.PIO_OUT
_EXIT = abi.PIO_EXIT
_DONE = abi.PIO_DONE
_NOTIFY = abi.PIO_NOTIFY
_ACTION = abi.PIO_ACTION_MASK
_INDEX = abi.PIO_DATA_MASK
_PORTS = abi.PIO_PORTS
_U32 = 0xffffffff
_U64 = (1 << 64) - 1
_NS_PER_S = 1_000_000_000

# Access size in bytes -> value mask.  Sizes not in this table are errors.
SIZE_MASK = {1: 0xff, 2: 0xffff, 4: 0xffffffff}

ENGINES = ("compiled", "interp")
FAULTS_KEPT = 64         # device-model fault records kept (the count is unbounded)
CLOCK_HZ_MAX = 10 ** 12  # 1 THz: keeps PIO_TICKS meaningful and 64-bit for ~5 h


def _check_int(what: str, value, lo: int, hi: int, *, hexa: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PioError(f"{what} must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise PioError(f"{what} {value:#x} is out of range {lo:#x}..{hi:#x}" if hexa
                       else f"{what} {value} is out of range {lo}..{hi}")
    return value


def bad_access(port, size, vcpu=0) -> PioError:
    """Return the error for an access with an invalid port, size or vCPU."""
    if isinstance(port, bool) or not isinstance(port, int):
        return PioError(f"port must be an integer, not {type(port).__name__}", port=None, size=size)
    if not 0 <= port < _PORTS:
        return PioError(f"port {port} is out of range 0..0xffff", port=port, size=size)
    if isinstance(size, bool) or size not in SIZE_MASK:
        return PioError(f"port {port:#x}: access size {size!r} is not 1, 2 or 4", port=port, size=size)
    if isinstance(vcpu, bool) or not isinstance(vcpu, int) or not 0 <= vcpu <= _U32:
        return PioError(f"port {port:#x}: vcpu {vcpu!r} is not an integer 0..0xffffffff",
                        port=port, size=size)
    return PioError(f"port {port:#x}: bad access", port=port, size=size)


def bad_value(port: int, size: int, value) -> PioError:
    """Return the error for an OUT value that does not fit its access size."""
    if isinstance(value, bool) or not isinstance(value, int):
        return PioError(f"port {port:#x}: value must be an integer, not {type(value).__name__}",
                        port=port, size=size)
    return PioError(f"port {port:#x}: value {value:#x} does not fit a {size}-byte access"
                    if value >= 0 else f"port {port:#x}: value {value} is negative",
                    port=port, size=size)


@lru_cache(maxsize=256)
def _access_factory(source: str) -> Callable:
    """Compile an event-function factory once per distinct source."""
    from ..compiler import fused_names
    namespace: dict[str, Any] = fused_names()
    exec(compile(source, "<bpfio pio access>", "exec"), namespace)
    return namespace["make"]


def _verdict_lines(timed: bool, read: str) -> list[str]:
    """Event-function source that acts on ``V`` (verdict or None), ``A`` and ``c`` (executed)."""
    return ["        counters.insns += c",
            "        if V is None:",
            "            counters.aborts += 1",
            "        else:",
            f"            action = V & {_ACTION}",
            f"            if action == {_DONE}:",
            "                counters.handled += 1",
            "                return A & mask",
            f"            if action == {_NOTIFY} and V & {_INDEX} < n_notifiers:",
            "                try:",
            f"                    notifiers[V & {_INDEX}].signal()",
            "                except OSError:  # closed by a detach racing this event",
            "                    pass",
            "                counters.handled += 1",
            "                counters.notified += 1",
            "                return A & mask",
            f"            if action != {_EXIT}:",
            "                counters.bad_verdicts += 1",
            "        counters.exits += 1",
            "        return fallback(port, size, mask, direction, data, "
            + ("ns)" if timed else f"{read})")]


class Binding:
    """One dispatch range: program, device model, shared memory, clock, notifiers.

    Attributes: ``name, base, length, program, device, mem, clock_hz,
    notifiers, counters, lock, machine``.  Created by :meth:`Machine.attach`.
    """

    def __init__(self, machine: "Machine", name: str, base: int, length: int,
                 device: Any, mem_words: int, clock_hz: int | None, notifiers: int,
                 engine: str):
        self.machine = machine
        self.name = name
        self.base = base
        self.length = length
        self.device = device
        self.mem = SharedMemory(mem_words)
        self.clock_hz = clock_hz or None
        self.notifiers = [Notifier(f"{name}.{i}") for i in range(notifiers)]
        self.counters = Counters()
        self.lock = threading.Lock()
        self.engine = engine
        self.program: Program | None = None
        self.lints: list = []      # the verifier's warnings about the program
        self._run: Callable | None = None
        self._words = self.mem.words
        self._clock = machine.clock
        self._event_ns: int | None = None  # the event's clock reading while a model runs,
        self._event_tid = 0                # ... and the thread running that event
        self._access = self._make_access(None, None)

    # -- clock --------------------------------------------------------------
    def now_ns(self) -> int:
        """Host nanoseconds: the current event's reading inside a model call, else a fresh one.

        Only the thread running the event sees its reading; any other thread
        (a consumer, the host) reads the clock afresh.
        """
        ns = self._event_ns
        if ns is not None and self._event_tid == get_ident():
            return ns
        return self._clock() & _U64

    def ticks(self, ns: int | None = None) -> int:
        """This binding's clock: floor(ns * clock_hz / 1e9), 64-bit; 0 without clock_hz."""
        if ns is None:
            ns = self.now_ns()
        hz = self.clock_hz
        return (ns * hz // _NS_PER_S) & _U64 if hz else 0

    @property
    def uses_clock(self) -> bool:
        """True when a read may depend on time (a clock rate or a program reading time)."""
        return self.clock_hz is not None or clock_fields(self.program)

    # -- notifiers ----------------------------------------------------------
    def notifier(self, i: int) -> Notifier:
        """Return notifier ``i`` (what ``ret #PIO_NOTIFY_i`` signals)."""
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(self.notifiers):
            raise PioError(f"binding '{self.name}' has {len(self.notifiers)} notifier(s); "
                           f"no notifier {i!r}")
        return self.notifiers[i]

    # -- program ------------------------------------------------------------
    def replace_program(self, program) -> None:
        """Verify ``program`` and swap it in atomically; on any error the old one stays.

        ``None`` removes the program (every access then goes to the model).
        Each event runs entirely under one program: an event already past the
        port look-up when the swap happens may still finish on the old one.
        """
        prog, run, lints = self.machine._prepare(program, len(self.mem), len(self.notifiers),
                                                 self.engine, self.name)
        self._install(prog, run)
        self.lints = lints

    def _install(self, program: Program | None, run: Callable | None) -> None:
        """Build this binding's event function around ``run`` and publish it."""
        access = self._make_access(run, program)
        with self.lock:
            self.program, self._run, self._access = program, run, access
            self.machine._publish(self)

    # -- the event path -----------------------------------------------------
    def _make_access(self, run: Callable | None, program: Program | None):
        """Return the event function ``access(port, size, mask, direction, data, vcpu)``.

        Its source is generated once per (binding, program) so the hot path
        carries no dead branches: the clock is read only when the program can
        see time (it loads ``PIO_TICKS``/``PIO_NS``, or uses indexed loads),
        otherwise lazily on the way to the model; the 64-bit mask of the
        reading and the ticks scaling appear only when they are needed.  Every
        name it uses is a closure cell or a constant.  The machine's port table
        holds the function itself.  Bindings whose source is the same share one
        code object (per-binding values are cells), so a machine with 1000
        bindings does not run 1000 copies of the hot code.
        """
        # A bare runner without its Program (tests) is assumed to read time.
        timed = run is not None and (program is None or clock_fields(program))
        masked = not self.machine._clock_is_64bit
        read = "clock() & 0xffffffffffffffff" if masked else "clock()"
        ticks = f"ns * {self.clock_hz} // 1000000000" if self.clock_hz else "0"
        if self.clock_hz and self.clock_hz > _NS_PER_S:  # only then can ticks pass 2^64
            ticks = f"({ticks}) & 0xffffffffffffffff"
        if run is None:
            body = [f"        ns = {read}",
                    "        counters.exits += 1",
                    "        return fallback(port, size, mask, direction, data, ns)"]
        elif program is not None and run is load_runner(bytes(program), "compiled"):
            # The standard compiled runner: inline the program instead of calling it.
            body = self._fused_lines(program, timed, read, ticks) + _verdict_lines(timed, read)
        else:
            body = [f"        ns = {read}" if timed else "        ns = 0",
                    "        V, A, c = run(port, size, direction, data, port - base,"
                    f" vcpu, {ticks if timed else '0'}, ns, mem)",
                    *_verdict_lines(timed, read)]
        # acquire/try/finally rather than `with lock:`: the same semantics, and
        # measured here at about half the cost (no __enter__/__exit__ calls).
        source = "\n".join([
            "def make(lock, counters, clock, mem, notifiers, n_notifiers, fallback, run, base):",
            "    acquire, release = lock.acquire, lock.release",
            "    L = 40 + 4 * len(mem)",
            "    def access(port, size, mask, direction, data, vcpu):",
            "      acquire()",
            "      try:",
            *body,
            "      finally:",
            "        release()",
            "    return access"])
        access = _access_factory(source)(self.lock, self.counters, self._clock, self._words,
                                         self.notifiers, len(self.notifiers), self._fallback,
                                         run, self.base)
        access.binding = self
        access.source = source
        return access

    @staticmethod
    def _fused_lines(program: Program, timed: bool, read: str, ticks: str) -> list[str]:
        """The compiled program inlined into the event function (the default engine).

        The same behaviour as calling the runner, without the call and the
        result tuple: ``compiler.fused_body`` gives the program as statements
        that leave the verdict in ``V`` (``None`` on abort), the accumulator in
        ``A`` and the executed count in ``c``.  Only the context values the
        program reads are computed.
        """
        from ..compiler import fused_body
        prog = fused_body(bytes(program))
        text = "\n".join(prog)
        uses = lambda name: re.search(rf"\b{name}\b", text) is not None  # noqa: E731
        pre = [f"        ns = {read}" if timed else "        ns = 0"]
        if uses("ticks"):
            pre.append(f"        ticks = {ticks if timed else '0'}")
        if uses("offset"):
            pre.append("        offset = port - base")
        return pre + ["        " + line for line in prog]

    def _fallback(self, port: int, size: int, mask: int, direction: int, data: int, ns: int):
        """The userspace half of an event (lock held): the model, else the unmapped default."""
        device = self.device
        if device is None:
            self.counters.unserved += 1
            return mask
        self._event_tid = get_ident()
        self._event_ns = ns
        try:
            if direction == _IN:
                return device.io_read(port - self.base, size) & mask
            device.io_write(port - self.base, size, data)
            return mask
        except Exception:  # contained: the guest sees the unmapped default
            self.counters.faults += 1
            self.machine._record_fault(Fault(self.name, port, size, direction,
                                             traceback.format_exc()))
            return mask
        finally:
            self._event_ns = None

    def stats(self) -> dict[str, Any]:
        """Counters plus identity, as plain data."""
        d = {"name": self.name, "base": self.base, "length": self.length,
             "program": self.program is not None, "device": type(self.device).__name__
             if self.device is not None else None, "clock": self.uses_clock}
        d.update(self.counters.as_dict())
        return d

    def __repr__(self) -> str:
        return (f"<Binding {self.name!r} ports {self.base:#x}..{self.base + self.length - 1:#x}"
                f" program={self.program is not None} device={type(self.device).__name__}>")


class Machine:
    """The port space of one guest: a flat table of :class:`Binding` by port.

    ``clock`` is a callable returning host nanoseconds (default
    ``time.monotonic_ns``); tests and replays inject :class:`FakeClock`.
    ``engine`` picks how programs run: ``"compiled"`` (default) or ``"interp"``.
    """

    def __init__(self, clock: Callable[[], int] | None = None, *, engine: str = "compiled",
                 name: str = "machine"):
        if engine not in ENGINES:
            raise PioError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
        self.clock = clock if clock is not None else time.monotonic_ns
        # time.monotonic_ns never needs the 64-bit mask an injected clock gets.
        self._clock_is_64bit = self.clock is time.monotonic_ns
        self._table: list[Callable | None] = [None] * _PORTS
        self.engine = engine
        self.name = name
        self.bindings: dict[str, Binding] = {}
        self._lock = threading.Lock()          # attach/detach and the unmapped counters
        self.unmapped = 0
        self._faults: deque[Fault] = deque(maxlen=FAULTS_KEPT)

    # -- registration -------------------------------------------------------
    def attach(self, base: int, length: int, *, program=None, device=None,
               mem_words: int = abi.PIO_MEM_DEFAULT, clock_hz: int | None = None,
               notifiers: int = 0, name: str | None = None,
               engine: str | None = None) -> Binding:
        """Register ports ``[base, base + length)`` and return their :class:`Binding`.

        The program (a ``Program``, ``Insn`` list or assembly text) is
        verified with the ``pio`` profile for this binding's ``mem_words`` and
        ``notifiers``; a range that overlaps another binding is an error
        naming both.  ``device.attach(binding)`` is called, if it exists,
        before the binding becomes visible to accesses.
        """
        _check_int("base port", base, 0, _PORTS - 1, hexa=True)
        _check_int("length", length, 1, _PORTS)
        if base + length > _PORTS:
            raise PioError(f"ports {base:#x}..{base + length - 1:#x} run past 0xffff", port=base)
        _check_int("mem_words", mem_words, abi.PIO_MEM_MIN, abi.PIO_MEM_MAX)
        if clock_hz is not None:
            _check_int("clock_hz", clock_hz, 0, CLOCK_HZ_MAX)
        _check_int("notifiers", notifiers, 0, abi.PIO_NOTIFIERS_MAX)
        engine = engine or self.engine
        if engine not in ENGINES:
            raise PioError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
        if name is None:
            name = f"pio@{base:#x}"
        if not isinstance(name, str) or not name:
            raise PioError(f"binding name must be a non-empty string, not {name!r}")
        if device is not None and not (callable(getattr(device, "io_read", None))
                                       and callable(getattr(device, "io_write", None))):
            raise PioError(f"binding '{name}': device model {type(device).__name__} has no "
                           f"io_read/io_write methods")
        with self._lock:
            self._check_free(name, base, length)
        prog, run, lints = self._prepare(program, mem_words, notifiers, engine, name)
        binding = Binding(self, name, base, length, device, mem_words, clock_hz, notifiers, engine)
        binding.program, binding._run, binding.lints = prog, run, lints
        binding._access = binding._make_access(run, prog)
        hook = getattr(device, "attach", None)
        if callable(hook):
            try:
                hook(binding)
            except BpfError:
                self._close_binding(binding)
                raise
            except Exception as exc:
                self._close_binding(binding)
                raise PioError(f"binding '{name}': device model {type(device).__name__}.attach "
                               f"failed: {type(exc).__name__}: {exc}") from exc
        with self._lock:
            self._check_free(name, base, length)  # again: another thread may have won
            self.bindings[name] = binding
            self._table[base:base + length] = [binding._access] * length
        return binding

    def _publish(self, binding: Binding) -> None:
        """Point the binding's ports at its current event function."""
        with self._lock:
            if self.bindings.get(binding.name) is binding:
                self._table[binding.base:binding.base + binding.length] = \
                    [binding._access] * binding.length

    def _check_free(self, name: str, base: int, length: int) -> None:
        if name in self.bindings:
            raise PioError(f"a binding named '{name}' already exists")
        end = base + length
        for port in range(base, end):
            other = self._table[port]
            if other is not None:
                other = other.binding
                raise PioError(
                    f"binding '{name}' (ports {base:#x}..{end - 1:#x}) overlaps binding "
                    f"'{other.name}' (ports {other.base:#x}..{other.base + other.length - 1:#x})"
                    f" at port {port:#x}", port=port)

    def detach(self, name: str) -> None:
        """Remove a binding; its ports become unmapped and its notifiers close."""
        with self._lock:
            binding = self.bindings.pop(name, None)
            if binding is None:
                raise PioError(f"no binding named '{name}'")
            self._table[binding.base:binding.base + binding.length] = [None] * binding.length
        with binding.lock:  # an event already past the table look-up finishes first
            self._close_binding(binding)

    @staticmethod
    def _close_binding(binding: Binding) -> None:
        for n in binding.notifiers:
            n.close()

    def close(self) -> None:
        """Detach every binding and close its notifiers."""
        for name in list(self.bindings):
            self.detach(name)

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _prepare(self, program, mem_words: int, notifiers: int, engine: str, name: str):
        """Verify and load a program; return (Program, runner, lints) or (None, None, [])."""
        if program is None:
            return None, None, []
        from ..verifier import verify
        prog = to_program(program)
        lints = verify(prog, profile="pio", mem_words=mem_words, notifiers=notifiers)
        return prog, load_runner(bytes(prog), engine), lints

    def binding_at(self, port: int) -> Binding | None:
        """The binding a first port dispatches to, or None."""
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < _PORTS:
            raise bad_access(port, 1)
        access = self._table[port]
        return None if access is None else access.binding

    # -- accesses -----------------------------------------------------------
    def pio_in(self, port: int, size: int, vcpu: int = 0) -> int:
        """The guest reads ``size`` bytes at ``port``; return the value it receives."""
        try:
            if port >> 16 or vcpu >> 32:
                raise TypeError
            mask = SIZE_MASK[size]
        except (TypeError, KeyError, AttributeError):
            raise bad_access(port, size, vcpu) from None
        access = self._table[port]
        if access is None:
            self._count_unmapped()
            return mask
        return access(port, size, mask, _IN, 0, vcpu)

    def pio_out(self, port: int, size: int, value: int, vcpu: int = 0) -> None:
        """The guest writes ``value`` (``size`` bytes) to ``port``."""
        try:
            if port >> 16 or vcpu >> 32:
                raise TypeError
            mask = SIZE_MASK[size]
        except (TypeError, KeyError, AttributeError):
            raise bad_access(port, size, vcpu) from None
        try:
            if value & ~mask or value.__class__ is bool:
                raise TypeError
        except TypeError:
            raise bad_value(port, size, value) from None
        access = self._table[port]
        if access is None:
            self._count_unmapped()
            return
        access(port, size, mask, _OUT, value, vcpu)

    def pio_ins(self, port: int, size: int, count: int, vcpu: int = 0) -> list[int]:
        """String IN (``rep insb/w/l``): ``count`` reads of one port, in order."""
        _check_int("string I/O count", count, 0, 1 << 31)
        self._mask(port, size, vcpu)
        return [self.pio_in(port, size, vcpu) for _ in range(count)]

    def pio_outs(self, port: int, size: int, values: Sequence[int], vcpu: int = 0) -> None:
        """String OUT (``rep outsb/w/l``): write each value to one port, in order.

        Every value is checked before the first is written, so a bad element
        leaves the device untouched.
        """
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise PioError(f"string OUT values must be a sequence of integers, "
                           f"not {type(values).__name__}")
        values = list(values)
        mask = self._mask(port, size, vcpu)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or v & ~mask:
                raise bad_value(port, size, v)
        for v in values:
            self.pio_out(port, size, v, vcpu)

    def _count_unmapped(self) -> None:
        lock = self._lock
        lock.acquire()
        self.unmapped += 1
        lock.release()

    @staticmethod
    def _mask(port, size, vcpu) -> int:
        """Validate an access; return its value mask."""
        try:
            if port >> 16 or vcpu >> 32:
                raise TypeError
            return SIZE_MASK[size]
        except (TypeError, KeyError, AttributeError):
            raise bad_access(port, size, vcpu) from None

    # -- statistics ---------------------------------------------------------
    def _record_fault(self, fault: Fault) -> None:
        self._faults.append(fault)

    def faults(self) -> list[Fault]:
        """The most recent contained device-model faults (at most ``FAULTS_KEPT``)."""
        return list(self._faults)

    def stats(self) -> dict[str, Any]:
        """Counters as plain data: per binding, the unmapped count and machine totals.

        ``fast_path_share`` is the fraction of all accesses (unmapped ones
        included, as they would exit to a VMM too) that a program handled
        without going to userspace.
        """
        bindings = {name: b.stats() for name, b in self.bindings.items()}
        events = sum(b["events"] for b in bindings.values()) + self.unmapped
        handled = sum(b["handled"] for b in bindings.values())
        return {"name": self.name, "engine": self.engine, "bindings": bindings,
                "unmapped": self.unmapped, "events": events, "handled": handled,
                "fast_path_share": handled / events if events else 0.0,
                "faults": sum(b["faults"] for b in bindings.values())}
