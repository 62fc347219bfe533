"""What the debugger runs a program on: packets, system calls or port events.

Each source is a list of inputs the debugger walks in order (``select``,
``step``, ``run``).  A source builds the :class:`~bpfio.exec.trace.Execution`
for input ``i`` (:meth:`start`), describes it (:meth:`dump`, :meth:`title`),
explains the verdict (:meth:`verdict`) and, once the program has returned,
commits what the input changed (:meth:`finish`).

Packets and system calls are independent of each other.  Port events are
not: a pio program's shared words persist from one event to the next, so
the memory event ``i`` starts with is what events ``0 .. i-1`` left.
:class:`PioEvents` replays the program alone; :class:`MachineEvents`
replays a whole machine config (program, device model, other bindings), so
the words also carry what the model wrote when a program said ``EXIT``.
"""

from __future__ import annotations

from typing import NamedTuple

from bpfio.errors import BpfError
from bpfio.exec.interp import outcome
from bpfio.exec.trace import Execution
from bpfio.isa import U32


class Access(NamedTuple):
    """One port access of an event file (a string access is ``count`` of these)."""

    line: int
    op: str                 # "in" or "out"
    port: int
    size: int
    value: int | None       # out: the value written; in: the recorded value (None: unknown)
    t_ns: int               # replay clock at this access
    vcpu: int = 0


def read_accesses(path: str) -> tuple[list[Access], str]:
    """Read a JSON Lines or kvm_pio trace file into single accesses; return (accesses, format)."""
    from bpfio.pio.events import EventReader
    reader = EventReader(path)
    out, now = [], 0
    for ev in reader:
        if ev.t_ns is not None:
            now = ev.t_ns
        for v in ev.values:
            out.append(Access(ev.line, ev.op, ev.port, ev.size, v, now, ev.vcpu))
    return out, reader.format or "empty"


def _size_mask(size: int) -> int:
    return (1 << (8 * size)) - 1


class Source:
    """Base class: a list of inputs of one profile."""

    profile = "socket"
    noun = "packet"

    def __len__(self) -> int:
        raise NotImplementedError

    def start(self, i: int, program) -> Execution:
        """A fresh execution of ``program`` on input ``i``."""
        raise NotImplementedError

    def title(self, i: int) -> str:
        """One line naming input ``i``."""
        raise NotImplementedError

    def dump(self, i: int) -> list[str]:
        """The input's contents (bpf_dbg's packet dump for packets)."""
        raise NotImplementedError

    def verdict(self, i: int, exe: Execution) -> str:
        """The returned value and what it means for this profile."""
        raise NotImplementedError

    def finish(self, i: int, exe: Execution, program) -> list[str]:
        """Commit input ``i`` after its program returned; lines worth telling."""
        return []

    def reset(self) -> None:
        """Forget any state carried between inputs (a new program was loaded)."""


class Packets(Source):
    """Socket-filter input: packets (bytes, wire length) and the socket context."""

    def __init__(self, packets, context: dict | None = None):
        self.packets = list(packets)
        self.context = dict(context or {})

    def __len__(self):
        return len(self.packets)

    def start(self, i, program):
        return Execution(program, self.packets[i][0], profile="socket", **self.context)

    def title(self, i):
        data, wirelen = self.packets[i]
        extra = f" (captured {len(data)})" if wirelen != len(data) else ""
        return f"packet #{i + 1} of {len(self)}: {wirelen} bytes{extra}"

    def dump(self, i):
        from bpfio.dbg.format import packet_dump
        data, wirelen = self.packets[i]
        return packet_dump(data, wirelen)

    def verdict(self, i, exe):
        v = int(exe.verdict)
        n = len(self.packets[i][0])
        if exe.fault:
            return f"0 (drop: the program aborted: {exe.fault})"
        if v == 0:
            return "0 (drop)"
        if v >= n:
            return f"{v:#x} (accept: the whole packet, {n} byte{'s' if n != 1 else ''})"
        return f"{v:#x} (accept: the first {v} of {n} bytes)"


class Syscalls(Source):
    """Seccomp input: ``struct seccomp_data`` records."""

    profile = "seccomp"
    noun = "syscall"

    def __init__(self, calls=()):
        self.calls = list(calls)

    def __len__(self):
        return len(self.calls)

    def start(self, i, program):
        return Execution(program, self.calls[i], profile="seccomp")

    def title(self, i):
        from bpfio.abi.seccomp import syscall_name
        d = self.calls[i]
        name = syscall_name(d.nr) or "?"
        args = ", ".join(f"{a:#x}" for a in d.args)
        return f"syscall #{i + 1} of {len(self)}: {name} (nr {d.nr}) args ({args})"

    def dump(self, i):
        from bpfio.abi.seccomp import syscall_name
        d = self.calls[i]
        lines = [f"nr:       {d.nr} ({syscall_name(d.nr) or 'unknown'})",
                 f"arch:     {d.arch:#010x}",
                 f"ip:       {d.instruction_pointer:#x}"]
        lines += [f"args[{j}]:  {a:#x}" for j, a in enumerate(d.args)]
        return lines

    def verdict(self, i, exe):
        r = exe.verdict
        why = f" (the program aborted: {exe.fault})" if exe.fault else ""
        return f"{r.describe()} {int(r):#010x}{why}"


def _pio_verdict(exe, direction: int, size: int) -> str:
    from bpfio.abi.pio import PIO_IN, decode_verdict
    v = int(exe.verdict)
    if exe.fault:
        return f"EXIT {v:#010x} (the program aborted: {exe.fault}; the device model serves it)"
    action, data = decode_verdict(v)
    if action == "EXIT":
        return f"EXIT {v:#010x} (not handled: the device model serves the access)"
    if action == "BAD":
        return f"BAD {v:#010x} (unknown action: the device model serves the access)"
    name = f"NOTIFY({data})" if action == "NOTIFY" else "DONE"
    what = f"handled; notifier {data} fires" if action == "NOTIFY" else "handled"
    if direction == PIO_IN:
        mask = _size_mask(size)
        what += f"; the guest reads A & {mask:#x} = {exe.a & mask:#x}"
    return f"{name} {v:#010x} ({what})"


def _handled(exe, notifiers: int) -> bool:
    """Whether the engine treats this verdict as handled (DONE, or NOTIFY of an existing notifier)."""
    from bpfio.abi.pio import decode_verdict
    if exe.fault:
        return False
    action, data = decode_verdict(int(exe.verdict))
    return action == "DONE" or (action == "NOTIFY" and data < notifiers)


def _mem_changes(before, after, label: str = "") -> list[str]:
    tag = f" ({label})" if label else ""
    return [f"M[{j}]: {b:#010x} -> {a:#010x}{tag}"
            for j, (b, a) in enumerate(zip(before, after)) if a != b]


class _PortEvents(Source):
    """What port-event inputs share: a title, a field dump and a verdict per access."""

    profile = "pio"
    noun = "event"
    accesses: list[Access]

    def access(self, i: int) -> Access:
        """The recorded access behind input ``i``."""
        return self.accesses[i]

    def where(self) -> str:
        """Words after ``of N`` in a title (which binding, for a machine replay)."""
        return ""

    def title(self, i):
        acc = self.access(i)
        what = (f"OUT port {acc.port:#x} size {acc.size} value {acc.value:#x}" if acc.op == "out"
                else f"IN port {acc.port:#x} size {acc.size}"
                + (f" (recorded {acc.value:#x})" if acc.value is not None else ""))
        return f"event #{i + 1} of {len(self)}{self.where()} (line {acc.line}): {what}"

    def dump(self, i):
        from bpfio.abi.pio import CONSTANTS, FIELDS
        ev = self.event(i)
        lines = [self.title(i)]
        lines += [f"{name + ':':<14}{w:#x}" for name, w in
                  sorted(zip(FIELDS, ev.words()), key=lambda f: CONSTANTS[f[0]])]
        return lines

    def verdict(self, i, exe):
        acc = self.access(i)
        return _pio_verdict(exe, 1 if acc.op == "out" else 0, acc.size)


class PioEvents(_PortEvents):
    """Port events run through the program alone; shared words persist between events.

    ``base`` is the binding's first port (``PIO_OFFSET = port - base``);
    ``clock_hz`` gives ``PIO_TICKS`` from each access's replay time.
    """

    def __init__(self, accesses, *, base: int, mem_words: int = 16, mem_init=None,
                 clock_hz: int | None = None):
        self.accesses = list(accesses)
        self.base = base
        self.clock_hz = clock_hz
        self.initial = list(mem_init) if mem_init is not None else [0] * mem_words
        self.mem = list(self.initial)
        self.pos = 0           # the next access whose effects are not in self.mem
        self.before: list[int] = []

    def __len__(self):
        return len(self.accesses)

    def event(self, i: int):
        """The :class:`~bpfio.abi.pio.PioEvent` access ``i`` gives the program."""
        from bpfio.abi.pio import PIO_IN, PIO_OUT, PioEvent, ticks_at
        acc = self.accesses[i]
        out = acc.op == "out"
        return PioEvent(acc.port, acc.size, PIO_OUT if out else PIO_IN,
                        acc.value if out else 0, acc.port - self.base, acc.vcpu,
                        ticks_at(acc.t_ns, self.clock_hz) & ((1 << 64) - 1), acc.t_ns).checked()

    def reset(self):
        self.mem = list(self.initial)
        self.pos = 0

    def _seek(self, i: int, program) -> None:
        if i < self.pos:
            self.reset()
        while self.pos < i:
            outcome(program, self.event(self.pos), profile="pio", mem=self.mem)
            self.pos += 1

    def start(self, i, program):
        self._seek(i, program)
        self.before = list(self.mem)
        return Execution(program, self.event(i), profile="pio", mem=list(self.mem))

    def finish(self, i, exe, program):
        self._seek(i, program)
        lines = _mem_changes(self.mem, exe.mem)
        self.mem[:] = exe.mem
        self.pos = i + 1
        if not _handled(exe, 1 << 16):
            lines.append("(no device model here: --machine CONFIG --binding NAME runs it)")
        return lines


class MachineEvents(_PortEvents):
    """Port events replayed through a machine config; the debugger steps one binding's program.

    Accesses to other ports are replayed too, silently, in order.  Moving
    backwards reloads the config and replays from the start.
    """

    def __init__(self, config: str, binding: str):
        self.config = config
        self.binding_name = binding
        self.accesses: list[Access] = []
        self.index: list[int] = []     # input i -> position in self.accesses
        self.program = None            # a replacement program (load bpf), else the config's
        self._load()

    def _load(self) -> None:
        from bpfio.pio.config import load_machine
        from bpfio.pio.machine import FakeClock
        old = getattr(self, "machine", None)
        if old is not None:
            old.close()
        self.clock = FakeClock(0)
        self.machine = load_machine(self.config, clock=self.clock)
        b = self.machine.bindings.get(self.binding_name)
        if b is None:
            names = ", ".join(sorted(self.machine.bindings)) or "none"
            self.machine.close()
            raise BpfError(f"{self.config}: no binding named '{self.binding_name}' "
                           f"(bindings: {names})")
        self.binding = b
        if self.program is not None:
            b.replace_program(self.program)
        self.pos = 0
        self.before: list[int] = []

    def close(self) -> None:
        """Close the machine (its notifiers)."""
        self.machine.close()

    def set_accesses(self, accesses) -> None:
        """Use a new event list; inputs are the accesses that reach the binding."""
        self.accesses = list(accesses)
        b = self.binding
        self.index = [j for j, acc in enumerate(self.accesses) if b.base <= acc.port < b.base + b.length]
        self.reset()

    def set_program(self, program) -> None:
        """Swap the binding's program (verified by the engine) and replay from the start."""
        self.binding.replace_program(program)
        self.program = program
        self.reset()

    def __len__(self):
        return len(self.index)

    def reset(self):
        self._load()

    def _dispatch(self, acc: Access):
        self.clock.ns = acc.t_ns
        if acc.op == "out":
            self.machine.pio_out(acc.port, acc.size, acc.value, acc.vcpu)
            return None
        return self.machine.pio_in(acc.port, acc.size, acc.vcpu)

    def _seek(self, j: int) -> None:
        if j < self.pos:
            self._load()
        while self.pos < j:
            self._dispatch(self.accesses[self.pos])
            self.pos += 1

    def event(self, i: int):
        """The PioEvent the binding's program sees for input ``i`` (at its replay time)."""
        from bpfio.abi.pio import PIO_IN, PIO_OUT, PioEvent
        acc = self.accesses[self.index[i]]
        b = self.binding
        out = acc.op == "out"
        ns = acc.t_ns & ((1 << 64) - 1)
        return PioEvent(acc.port, acc.size, PIO_OUT if out else PIO_IN, acc.value if out else 0,
                        acc.port - b.base, acc.vcpu, b.ticks(ns), ns)

    def start(self, i, program):
        self._seek(self.index[i])
        self.before = list(self.binding.mem.words)
        return Execution(program, self.event(i), profile="pio", mem=list(self.binding.mem.words))

    def access(self, i):
        return self.accesses[self.index[i]]

    def where(self):
        return f" for binding '{self.binding_name}'"

    def finish(self, i, exe, program):
        j = self.index[i]
        self._seek(j)
        acc = self.accesses[j]
        b, c = self.binding, self.binding.counters
        before = list(b.mem.words)
        exits = c.exits
        got = self._dispatch(acc)
        self.pos = j + 1
        lines = []
        served = c.exits > exits
        if served:
            model = type(b.device).__name__ if b.device is not None else None
            lines.append(f"device model {model} served the access" if model
                         else "no device model: the access got the unmapped default")
        if got is not None:
            line = f"guest reads {got:#x}"
            if acc.value is not None:
                line += f" (recorded {acc.value:#x}" + (")" if got == acc.value else ": MISMATCH)")
            lines.append(line)
        lines += _mem_changes(before, exe.mem, "program")
        lines += _mem_changes(exe.mem, b.mem.words, "model" if served else "engine")
        if _handled(exe, len(b.notifiers)) == served:
            lines.append("note: the engine's run of this event differs from the stepped run")
        return lines
