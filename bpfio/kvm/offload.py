"""Offload: hand a binding's writes to KVM's own in-kernel mechanisms when a
verified program provably does nothing more than they do.

Two mechanisms exist in KVM for port writes that need no userspace exit
(``Documentation/virt/kvm/api.rst``):

* ``KVM_IOEVENTFD`` with ``DATAMATCH``: a write of exactly ``len`` bytes of
  value ``datamatch`` to ``addr`` signals an eventfd and the guest continues.
  Eligible: for that port, size and data, *every* path of the program ends in
  the same ``ret #PIO_NOTIFY_n`` and stores nothing -- then the program's
  whole effect is "signal notifier n", which is what the eventfd does.  The
  eventfd's count is forwarded to notifier n on the next exit (and at the end).
* Coalesced PIO (``KVM_REGISTER_COALESCED_MMIO`` with ``pio = 1``): writes
  inside a zone are appended to a ring page instead of exiting, and this VMM
  replays the ring through the machine before it handles any other exit.
  Eligible: for every port of the zone and every access size, every path of
  the program for an OUT returns ``PIO_DONE`` (so no model call and no
  notification is delayed), and the program never reads the clock
  (``PIO_TICKS``/``PIO_NS``) or ``PIO_VCPU``, which differ at replay time,
  nor ``rand``.  Stores are fine: the replay performs them in order.

The proof is a path-sensitive abstract interpretation of the program with the
event's known fields (port, size, direction, offset, and the data for the
ioeventfd check) as constants and everything else -- shared memory, time,
unknown data -- as "unknown"; a conditional jump on an unknown value follows
both edges.  Anything it cannot decide (an indexed load with an unknown X,
too many states) makes the access ineligible.  Programs are analysed when the
VM starts; a program replaced later through ``Binding.replace_program`` keeps
the offload decided for the old one only until the next exit, when it is
unregistered (``Offload.flush`` checks).
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import threading
from dataclasses import dataclass, field

from . import isa
from . import kvm_abi as K
from .pio import abi

_U32 = 0xFFFFFFFF
_U32_FIELD = struct.Struct("<I")
MAX_STATES = 20_000          # abstract states per (port, size, data) before giving up
MAX_PORTS = 256              # bindings longer than this are not analysed
MAX_DATAMATCH = 64           # candidate datamatch values per binding
SIZES = (1, 2, 4)

_F = abi.CONSTANTS
_TIME_FIELDS = range(_F["PIO_TICKS"], _F["PIO_HDR_LEN"])
_VCPU_FIELD = range(_F["PIO_VCPU"], _F["PIO_VCPU"] + 4)
_RAND_K = isa.SKF_AD_OFF + isa.SKF_AD["RANDOM"]


@dataclass
class Outcome:
    """What every path of a program can do for one abstract OUT event."""

    verdicts: set = field(default_factory=set)   # constant verdicts; None = unknown
    stores: bool = False
    reads_time: bool = False
    reads_vcpu: bool = False
    reads_rand: bool = False
    undecided: str = ""                           # why the analysis gave up, if it did

    @property
    def decided(self) -> bool:
        """True when the analysis covered every path."""
        return not self.undecided


def _header(port: int, size: int, offset: int, data):
    """The 40 header bytes as a list of ints or None (unknown)."""
    words = [port, size, abi.PIO_OUT, data, offset, None, None, None, None, None]
    out = []
    for w in words:
        out.extend([None] * 4 if w is None else list((w & _U32).to_bytes(4, "big")))
    return out


def analyze_out(program, *, port: int, base: int, size: int, data, mem_words: int) -> Outcome:
    """Explore every path of ``program`` for an OUT of ``size`` bytes at ``port``.

    ``data`` is the written value, or None for "any value".  Shared memory
    is always unknown.  Returns the :class:`Outcome` over all paths.
    """
    header = _header(port, size, port - base, data)
    ctx_len = abi.PIO_HDR_LEN + 4 * mem_words
    out = Outcome()
    insns = [(isa.OPCODES.get(i.code), i) for i in program]
    n = len(insns)

    def load(k: int, width: int):
        """Abstract value of a big-endian context load at byte k (None = unknown).

        Returns (value, fault) where fault means the load may run past the context.
        """
        if k + width > ctx_len or k < 0:
            return None, True
        raw = []
        for b in range(k, k + width):
            if b in _TIME_FIELDS:
                out.reads_time = True
            if b in _VCPU_FIELD:
                out.reads_vcpu = True
            raw.append(header[b] if b < abi.PIO_HDR_LEN else None)
        if any(v is None for v in raw):
            return None, False
        return int.from_bytes(bytes(raw), "big"), False

    seen = set()
    stack = [(0, 0, 0)]       # (pc, A, X); both registers start at 0 as in the kernel
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        if len(seen) > MAX_STATES:
            out.undecided = f"more than {MAX_STATES} abstract states"
            return out
        pc, a, x = state
        if not 0 <= pc < n:
            out.undecided = f"pc {pc} runs off the program"
            return out
        info, insn = insns[pc]
        if info is None:
            out.undecided = f"pc {pc}: unknown opcode {insn.code:#x}"
            return out
        k = insn.k & _U32
        cls = info.cls
        nxt = pc + 1
        if cls in (isa.BPF_LD, isa.BPF_LDX):
            mode = info.mode
            if mode == isa.BPF_IMM:
                v = k
            elif mode == isa.BPF_MEM:
                v = None
            elif mode == isa.BPF_LEN:
                v = ctx_len
            elif mode == isa.BPF_ABS:
                if k >= isa.SKF_AD_OFF:
                    if k == _RAND_K:
                        out.reads_rand = True
                        v = None
                    else:
                        out.undecided = f"pc {pc}: ancillary load"
                        return out
                else:
                    v, fault = load(k, info.size)
                    if fault:
                        out.verdicts.add(abi.PIO_EXIT)   # runtime fault: verdict 0
                        continue
            elif mode == isa.BPF_IND:
                if x is None:
                    out.undecided = f"pc {pc}: indexed load with an unknown X"
                    return out
                v, fault = load((x + k) & _U32, info.size)
                if fault:
                    out.verdicts.add(abi.PIO_EXIT)
                    continue
            elif mode == isa.BPF_MSH:
                byte, fault = load(k, 1)
                if fault:
                    out.verdicts.add(abi.PIO_EXIT)
                    continue
                v = None if byte is None else 4 * (byte & 0xF)
            else:
                out.undecided = f"pc {pc}: load mode {mode:#x}"
                return out
            if cls == isa.BPF_LD:
                a = v
            else:
                x = v
        elif cls in (isa.BPF_ST, isa.BPF_STX):
            out.stores = True
        elif cls == isa.BPF_ALU:
            if info.op == isa.BPF_NEG:
                a = None if a is None else (-a) & _U32
            else:
                operand = k if info.src == isa.BPF_K else x
                if info.op in (isa.BPF_DIV, isa.BPF_MOD) and operand == 0:
                    out.verdicts.add(abi.PIO_EXIT)         # division by zero X: verdict 0
                    continue
                if info.op in (isa.BPF_DIV, isa.BPF_MOD) and operand is None:
                    out.verdicts.add(abi.PIO_EXIT)         # X may be zero
                    a = None
                elif a is None or operand is None:
                    a = None
                else:
                    a = _alu(info.op, a, operand)
        elif cls == isa.BPF_JMP:
            if info.op == isa.BPF_JA:
                stack.append((pc + 1 + k, a, x))
                continue
            operand = k if info.src == isa.BPF_K else x
            taken = _jump(info.op, a, operand)
            if taken is None or taken:
                stack.append((pc + 1 + insn.jt, a, x))
            if taken is None or not taken:
                stack.append((pc + 1 + insn.jf, a, x))
            continue
        elif cls == isa.BPF_RET:
            if info.op == isa.BPF_K:
                out.verdicts.add(k)
            elif info.op == isa.BPF_A:
                out.verdicts.add(a)
            else:
                out.verdicts.add(x)
            continue
        elif cls == isa.BPF_MISC:
            if info.op == isa.BPF_TAX:
                x = a
            else:
                a = x
        stack.append((nxt, a, x))
    return out


def _alu(op: int, a: int, b: int) -> int:
    if op == isa.BPF_ADD:
        return (a + b) & _U32
    if op == isa.BPF_SUB:
        return (a - b) & _U32
    if op == isa.BPF_MUL:
        return (a * b) & _U32
    if op == isa.BPF_DIV:
        return a // b
    if op == isa.BPF_MOD:
        return a % b
    if op == isa.BPF_OR:
        return a | b
    if op == isa.BPF_AND:
        return a & b
    if op == isa.BPF_XOR:
        return a ^ b
    if op == isa.BPF_LSH:
        return (a << b) & _U32 if b < 32 else 0
    if op == isa.BPF_RSH:
        return a >> b if b < 32 else 0
    raise ValueError(op)


def _jump(op: int, a, b):
    """True/False for a decided conditional jump, None when an operand is unknown."""
    if a is None or b is None:
        return None
    if op == isa.BPF_JEQ:
        return a == b
    if op == isa.BPF_JGT:
        return a > b
    if op == isa.BPF_JGE:
        return a >= b
    if op == isa.BPF_JSET:
        return bool(a & b)
    raise ValueError(op)


# --- eligibility -------------------------------------------------------------
#
# The decision is a proof (``DECIDE = "proof"``, bpfio.prove.offload: for all memory,
# clocks and vCPUs); ``"analysis"`` uses the path analysis above, which accepts a
# subset (tests/test_kvm_offload.py cross-checks the two).

DECIDE = "proof"


def eventfd_index(program, *, port: int, base: int, size: int, data: int, mem_words: int):
    """The notifier an OUT of ``data`` always signals, changing nothing else; else None."""
    if DECIDE == "proof":
        from .prove.offload import eventfd_index as proved
        return proved(program, port=port, base=base, size=size, data=data, mem_words=mem_words)
    o = analyze_out(program, port=port, base=base, size=size, data=data, mem_words=mem_words)
    if not o.decided or o.stores or len(o.verdicts) != 1:
        return None
    (verdict,) = o.verdicts
    if verdict is None or verdict & abi.PIO_ACTION_MASK != abi.PIO_NOTIFY:
        return None
    return verdict & abi.PIO_DATA_MASK


def coalescable(program, *, port: int, base: int, mem_words: int) -> bool:
    """True when every OUT at ``port`` returns PIO_DONE with an effect a replay repeats."""
    if DECIDE == "proof":
        from .prove.offload import coalescable as proved
        return proved(program, port=port, base=base, mem_words=mem_words)
    for size in SIZES:
        o = analyze_out(program, port=port, base=base, size=size, data=None, mem_words=mem_words)
        if (not o.decided or o.reads_time or o.reads_vcpu or o.reads_rand
                or o.verdicts != {abi.PIO_DONE}):
            return False
    return True


@dataclass(frozen=True)
class EventFdPlan:
    """An ioeventfd: a ``size``-byte write of ``datamatch`` to ``port`` signals ``index``."""

    binding: str
    port: int
    size: int
    datamatch: int
    index: int


@dataclass(frozen=True)
class CoalescePlan:
    """A coalesced PIO zone ``[port, port + length)`` whose writes are replayed later."""

    binding: str
    port: int
    length: int


def _candidates(program, size: int) -> list[int]:
    """Datamatch candidates: 0 and the constants the program compares against, +-1.

    Only candidates are proved; a value the program treats like its
    neighbours but that is not listed simply keeps exiting (conservative).
    """
    mask = (1 << (8 * size)) - 1
    values = [0]
    for insn in program:
        info = isa.OPCODES.get(insn.code)
        if info is not None and info.is_cond_jump and info.src == isa.BPF_K:
            k = insn.k & _U32
            for v in (k, k - 1, k + 1):
                if 0 <= v <= mask and v not in values:
                    values.append(v)
    return values[:MAX_DATAMATCH]


def ioeventfd_plans(binding) -> list[EventFdPlan]:
    """Every (port, size, datamatch) whose OUT provably only signals one notifier."""
    program = binding.program
    if program is None or not binding.notifiers or binding.length > MAX_PORTS:
        return []
    mem = len(binding.mem)
    plans = []
    for port in range(binding.base, binding.base + binding.length):
        for size in SIZES:
            for data in _candidates(program, size):
                index = eventfd_index(program, port=port, base=binding.base, size=size,
                                      data=data, mem_words=mem)
                if index is not None and index < len(binding.notifiers):
                    plans.append(EventFdPlan(binding.name, port, size, data, index))
    return plans


def coalesce_plans(binding, exclude: set[int] = frozenset()) -> list[CoalescePlan]:
    """Maximal runs of ports where every OUT provably returns PIO_DONE without time or vCPU."""
    program = binding.program
    if program is None or binding.length > MAX_PORTS:
        return []
    mem = len(binding.mem)

    def ok(port: int) -> bool:
        return port not in exclude and coalescable(program, port=port, base=binding.base,
                                                   mem_words=mem)

    plans, start = [], None
    end = binding.base + binding.length
    for port in range(binding.base, end + 1):
        good = port < end and ok(port)
        if good and start is None:
            start = port
        elif not good and start is not None:
            plans.append(CoalescePlan(binding.name, start, port - start))
            start = None
    return plans


# --- registering with KVM ------------------------------------------------------

class Offload:
    """The ioeventfds and coalesced zones of one VM, and their replay/forwarding."""

    def __init__(self, vm, machine):
        self.vm = vm
        self.machine = machine
        self.eventfds: list[tuple[EventFdPlan, int]] = []
        self.zones: list[CoalescePlan] = []
        self.programs = {}                 # binding name -> program analysed
        self.hits: dict[str, int] = {}     # binding -> ioeventfd writes forwarded
        self.coalesced: dict[str, int] = {}
        self._ring = None
        self._lock = threading.RLock()
        self._wake = -1                    # eventfd that wakes the forwarding thread
        self._stopping = False
        self._thread: threading.Thread | None = None

    def plan(self) -> tuple[list[EventFdPlan], list[CoalescePlan]]:
        """Decide what is eligible, binding by binding (no KVM calls)."""
        efds, zones = [], []
        for b in getattr(self.machine, "bindings", {}).values():
            e = ioeventfd_plans(b)
            efds.extend(e)
            zones.extend(coalesce_plans(b, exclude={p.port for p in e}))
        return efds, zones

    def register(self) -> None:
        """Register every eligible ioeventfd and zone that this kernel supports."""
        efds, zones = self.plan()
        if efds and self.vm.check_extension(K.KVM_CAP_IOEVENTFD):
            for p in efds:
                fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                req = K.IoEventFd(datamatch=p.datamatch, addr=p.port, len=p.size, fd=fd,
                                  flags=K.KVM_IOEVENTFD_FLAG_PIO | K.KVM_IOEVENTFD_FLAG_DATAMATCH)
                try:
                    fcntl.ioctl(self.vm.fd, K.KVM_IOEVENTFD, req)
                except OSError:
                    os.close(fd)
                    continue
                self.eventfds.append((p, fd))
                self.programs[p.binding] = self.machine.bindings[p.binding].program
        page = self.vm.check_extension(K.KVM_CAP_COALESCED_MMIO)
        if zones and page and self.vm.check_extension(K.KVM_CAP_COALESCED_PIO) \
                and (page + 1) * K.PAGE_SIZE <= self.vm.run_size:
            for z in zones:
                zone = K.CoalescedZone(addr=z.port, size=z.length, pio=1)
                try:
                    fcntl.ioctl(self.vm.fd, K.KVM_REGISTER_COALESCED_MMIO, zone)
                except OSError:
                    continue
                self.zones.append(z)
                self.programs[z.binding] = self.machine.bindings[z.binding].program
            if self.zones:
                self._ring = (self.vm.vcpus[0].run_map, page * K.PAGE_SIZE)
        if self.eventfds:
            self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._thread = threading.Thread(target=self._forward_loop, daemon=True,
                                            name="bpfio-ioeventfd")
            self._thread.start()

    def _forward_loop(self) -> None:
        """Wake on any ioeventfd and pass its count to the binding's notifier at once.

        An ioeventfd wakes its consumer without a vCPU exit; this thread keeps
        that property for bpfio's notifiers (exits and the end of the run
        forward too, whichever reads the counter first).
        """
        while not self._stopping:
            poller = select.poll()
            poller.register(self._wake, select.POLLIN)
            with self._lock:
                for _p, fd in self.eventfds:
                    poller.register(fd, select.POLLIN)
            for fd, events in poller.poll():
                if fd == self._wake or events & (select.POLLNVAL | select.POLLERR):
                    try:
                        os.eventfd_read(self._wake)
                    except (BlockingIOError, OSError):
                        pass
                    break                   # stop, or the set of eventfds changed
            else:
                with self._lock:
                    self._forward_eventfds()

    def _poke(self) -> None:
        if self._wake >= 0:
            os.eventfd_write(self._wake, 1)

    def flush(self) -> None:
        """Replay coalesced writes and forward eventfd counts (call before any exit)."""
        with self._lock:
            if self._ring is not None:
                self._drain_ring()
            self._forward_eventfds()
            self._check_programs()

    def _forward_eventfds(self) -> None:
        for p, fd in self.eventfds:
            try:
                n = os.eventfd_read(fd)
            except BlockingIOError:
                continue
            self.hits[p.binding] = self.hits.get(p.binding, 0) + n
            binding = self.machine.bindings.get(p.binding)
            if binding is not None:
                binding.notifiers[p.index].signal(n)

    def _drain_ring(self) -> None:
        run, off = self._ring
        first, last = K.RING_HEADER.unpack_from(run, off)
        if first == last:
            return
        pio_out = self.machine.pio_out
        by_port = {}
        while first != last:
            addr, length, _pio, data = K.RING_ENTRY.unpack_from(
                run, off + K.RING_HEADER.size + first * K.RING_ENTRY.size)
            value = int.from_bytes(data[:length], "little")
            pio_out(addr, length, value, 0)
            binding = self.machine.binding_at(addr)
            name = binding.name if binding is not None else "?"
            by_port[name] = by_port.get(name, 0) + 1
            first = (first + 1) % K.RING_MAX
            # Only `first` is ours: `last` belongs to the kernel, which may be
            # appending for another vCPU right now.
            _U32_FIELD.pack_into(run, off, first)
        for name, n in by_port.items():
            self.coalesced[name] = self.coalesced.get(name, 0) + n

    def _check_programs(self) -> None:
        """Drop the offload of a binding whose program was replaced since the analysis."""
        for name, prog in list(self.programs.items()):
            b = self.machine.bindings.get(name)
            if b is None or b.program is not prog:
                self._unregister(name)

    def _unregister(self, name: str) -> None:
        keep = []
        for p, fd in self.eventfds:
            if p.binding == name:
                self._deassign(p, fd)
            else:
                keep.append((p, fd))
        self.eventfds = keep
        self._poke()
        for z in [z for z in self.zones if z.binding == name]:
            self._unzone(z)
            self.zones.remove(z)
        self.programs.pop(name, None)

    def _deassign(self, p: EventFdPlan, fd: int) -> None:
        req = K.IoEventFd(datamatch=p.datamatch, addr=p.port, len=p.size, fd=fd,
                          flags=K.KVM_IOEVENTFD_FLAG_PIO | K.KVM_IOEVENTFD_FLAG_DATAMATCH
                          | K.KVM_IOEVENTFD_FLAG_DEASSIGN)
        try:
            fcntl.ioctl(self.vm.fd, K.KVM_IOEVENTFD, req)
        except OSError:
            pass
        try:
            n = os.eventfd_read(fd)
            self.hits[p.binding] = self.hits.get(p.binding, 0) + n
            binding = self.machine.bindings.get(p.binding)
            if binding is not None:
                binding.notifiers[p.index].signal(n)
        except (BlockingIOError, OSError):
            pass
        os.close(fd)

    def _unzone(self, z: CoalescePlan) -> None:
        if self._ring is not None:
            self._drain_ring()
        try:
            fcntl.ioctl(self.vm.fd, K.KVM_UNREGISTER_COALESCED_MMIO,
                        K.CoalescedZone(addr=z.port, size=z.length, pio=1))
        except OSError:
            pass

    def stats(self) -> dict:
        """What was registered and how many writes never exited."""
        return {"registered": [f"ioeventfd {p.binding} {p.port:#x}/{p.size} == {p.datamatch:#x}"
                               f" -> notifier {p.index}" for p, _ in self.eventfds]
                + [f"coalesced {z.binding} {z.port:#x}+{z.length}" for z in self.zones],
                "ioeventfd_hits": sum(self.hits.values()),
                "coalesced": sum(self.coalesced.values()),
                "hits": dict(self.hits), "coalesced_by_binding": dict(self.coalesced)}

    def close(self) -> None:
        """Flush, deassign every ioeventfd, unregister every zone, close the eventfds."""
        if self._thread is not None:
            self._stopping = True
            self._poke()
            self._thread.join()
            self._thread = None
        if self._wake >= 0:
            os.close(self._wake)
            self._wake = -1
        with self._lock:
            if self._ring is not None:
                self._drain_ring()
            for p, fd in self.eventfds:
                self._deassign(p, fd)
            self.eventfds = []
            for z in self.zones:
                self._unzone(z)
            self.zones = []
            self._ring = None
