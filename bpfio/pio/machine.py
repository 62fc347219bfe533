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

import threading
import time
from collections import deque
from typing import Any, Callable, Iterable, Sequence

from bpfio.abi import pio as abi
from bpfio.errors import BpfError, PioError
from bpfio.pio.binding import (_IN, _OUT, _PORTS, CLOCK_HZ_MAX, ENGINES, FAULTS_KEPT, SIZE_MASK,
                               Binding, _check_int, bad_access, bad_value)
from bpfio.pio.program import clock_fields, load_runner, to_program
from bpfio.pio.state import Counters, FakeClock, Fault, SharedMemory

__all__ = ["Binding", "Counters", "FakeClock", "Fault", "Machine", "SharedMemory", "SIZE_MASK",
           "bad_access", "bad_value", "clock_fields"]

_U32 = 0xffffffff
_U64 = (1 << 64) - 1


def _checked_clock(clock: Callable[[], int]) -> Callable[[], int]:
    """``clock`` with its result checked: integer nanoseconds (mod 2**64), else PioError."""
    def read() -> int:
        ns = clock()
        if ns.__class__ is not int:     # a float, a bool, None: never a reading
            raise PioError(f"machine clock returned {ns!r}: a clock returns integer "
                           f"nanoseconds")
        return ns & _U64
    return read


class Machine:
    """The port space of one guest: a flat table of :class:`Binding` by port.

    ``clock`` is a callable returning host nanoseconds (default
    ``time.monotonic_ns``); tests and replays inject :class:`FakeClock`.
    ``engine`` picks how programs run: ``"compiled"`` (default: inlined into the event
    function), ``"interp"`` or ``"jit"`` (native x86-64 code; raises
    :class:`~bpfio.errors.JitUnavailable` where it cannot run).
    """

    def __init__(self, clock: Callable[[], int] | None = None, *, engine: str = "compiled",
                 name: str = "machine"):
        if engine not in ENGINES:
            raise PioError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
        self.clock = clock if clock is not None else time.monotonic_ns
        if not callable(self.clock):
            raise PioError(f"clock must be a callable returning nanoseconds, "
                           f"not {type(self.clock).__name__}")
        # time.monotonic_ns always gives a u64; an injected clock is checked at every read
        # (an exact int, taken mod 2**64: the ABI's clock is a wrapping 64-bit counter).
        self._read_clock = (self.clock if self.clock is time.monotonic_ns
                            else _checked_clock(self.clock))
        self._clock_is_64bit = True
        self._table: list[Callable | None] = [None] * _PORTS
        self.engine = engine
        self.name = name
        self.bindings: dict[str, Binding] = {}
        self._lock = threading.Lock()          # attach/detach and the unmapped counters
        self.unmapped = 0
        self._faults: deque[Fault] = deque(maxlen=FAULTS_KEPT)
        # The native vCPU loop's mirror of this machine (bpfio.kvm.native.NativeEngine),
        # told of every attach, detach and program change once a native run made it.
        self._native = None

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
        if self._native is not None:     # native memory and lock before it is visible
            self._native.prepare(binding)
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
        if self._native is not None:
            self._native.added(binding)
        return binding

    def _publish(self, binding: Binding) -> None:
        """Point the binding's ports at its current event function."""
        with self._lock:
            if self.bindings.get(binding.name) is binding:
                self._table[binding.base:binding.base + binding.length] = \
                    [binding._access] * binding.length
        if self._native is not None:     # called with binding.lock held (Binding._install)
            self._native.changed(binding)

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
        if self._native is not None:
            self._native.removed(binding)
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
        from bpfio.check.verifier import verify
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
            # Exact ints: 4.0 and True would find SIZE_MASK entries (4.0 == 4, True == 1).
            if (port >> 16 or vcpu >> 32 or size.__class__ is not int
                    or port.__class__ is not int or vcpu.__class__ is not int):
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
            # Exact ints: 4.0 and True would find SIZE_MASK entries (4.0 == 4, True == 1).
            if (port >> 16 or vcpu >> 32 or size.__class__ is not int
                    or port.__class__ is not int or vcpu.__class__ is not int):
                raise TypeError
            mask = SIZE_MASK[size]
        except (TypeError, KeyError, AttributeError):
            raise bad_access(port, size, vcpu) from None
        try:
            if value & ~mask or value.__class__ is not int:
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
            # Exact ints: 4.0 and True would find SIZE_MASK entries (4.0 == 4, True == 1).
            if (port >> 16 or vcpu >> 32 or size.__class__ is not int
                    or port.__class__ is not int or vcpu.__class__ is not int):
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
        if self._native is not None:
            self._native.fold()
        bindings = {name: b.stats() for name, b in self.bindings.items()}
        events = sum(b["events"] for b in bindings.values()) + self.unmapped
        handled = sum(b["handled"] for b in bindings.values())
        return {"name": self.name, "engine": self.engine, "bindings": bindings,
                "unmapped": self.unmapped, "events": events, "handled": handled,
                "fast_path_share": handled / events if events else 0.0,
                "faults": sum(b["faults"] for b in bindings.values())}
