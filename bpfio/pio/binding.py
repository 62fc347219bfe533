"""One binding: a port range with its program, model, shared memory, notifiers and counters.

A :class:`Binding` owns everything one device needs on the fast path and generates its
event function once (``_make_access``): the compiled program's statements inlined
(:func:`bpfio.exec.compiler.fused_body`), then the verdict handled in place -- the value
for a handled IN, the notifier for ``PIO_NOTIFY``, the model for ``PIO_EXIT``.  A
per-binding lock makes each access atomic against the model.  :mod:`bpfio.pio.machine`
puts bindings in the 64K-entry port table and dispatches to them.
"""

from __future__ import annotations

import re
import threading
import traceback
from functools import lru_cache
from threading import get_ident
from typing import Any, Callable

from bpfio.abi import pio as abi
from bpfio.errors import PioError
from bpfio.insn import Program
from bpfio.pio.notify import Notifier
from bpfio.pio.program import clock_fields, load_runner
from bpfio.pio.state import Counters, Fault, SharedMemory

_IN = abi.PIO_IN
_OUT = abi.PIO_OUT
_EXIT = abi.PIO_EXIT
_DONE = abi.PIO_DONE
_NOTIFY = abi.PIO_NOTIFY
_ACTION = abi.PIO_ACTION_MASK
_INDEX = abi.PIO_DATA_MASK
_PORTS = abi.PIO_PORTS
_NS_PER_S = 1_000_000_000
_U32 = 0xffffffff
_U64 = (1 << 64) - 1


# Access size in bytes -> value mask.  Sizes not in this table are errors.
SIZE_MASK = {1: 0xff, 2: 0xffff, 4: 0xffffffff}
ENGINES = ("compiled", "interp", "jit")
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
    if type(port) is not int:
        return PioError(f"port must be an integer, not {type(port).__name__}", port=None, size=size)
    if not 0 <= port < _PORTS:
        return PioError(f"port {port} is out of range 0..0xffff", port=port, size=size)
    if type(size) is not int or size not in SIZE_MASK:
        return PioError(f"port {port:#x}: access size {size!r} is not 1, 2 or 4", port=port, size=size)
    if type(vcpu) is not int or not 0 <= vcpu <= _U32:
        return PioError(f"port {port:#x}: vcpu {vcpu!r} is not an integer 0..0xffffffff",
                        port=port, size=size)
    return PioError(f"port {port:#x}: bad access", port=port, size=size)


def bad_value(port: int, size: int, value) -> PioError:
    """Return the error for an OUT value that does not fit its access size."""
    if type(value) is not int:
        return PioError(f"port {port:#x}: value must be an integer, not {type(value).__name__}",
                        port=port, size=size)
    return PioError(f"port {port:#x}: value {value:#x} does not fit a {size}-byte access"
                    if value >= 0 else f"port {port:#x}: value {value} is negative",
                    port=port, size=size)


@lru_cache(maxsize=256)
def _access_factory(source: str) -> Callable:
    """Compile an event-function factory once per distinct source."""
    from bpfio.exec.compiler import fused_names
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

    def __init__(self, machine, name: str, base: int, length: int,
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
        self._clock = machine._read_clock
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

    def _go_native(self, lock, words) -> None:
        """Move the lock and the shared words to native storage (the native vCPU loop).

        ``words`` is a big-endian ctypes array the native program reads in place;
        it takes the current values, becomes ``mem.words`` (so models keep their
        :class:`SharedMemory`), and the event function is rebuilt around it and
        ``lock``.  Called by :mod:`bpfio.kvm.native` while no event runs.
        """
        words[:] = list(self._words)
        self.lock = lock
        self.mem.words = self._words = words
        access = self._make_access(self._run, self.program)
        machine = self.machine
        with machine._lock:
            self._access = access
            if machine.bindings.get(self.name) is self:
                machine._table[self.base:self.base + self.length] = [access] * self.length

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
        from bpfio.exec.compiler import fused_body
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
