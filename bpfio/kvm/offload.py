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
from dataclasses import dataclass

from bpfio import isa
from bpfio.abi import pio as abi
from bpfio.kvm import abi as K
from bpfio.kvm.analysis import MAX_STATES, SIZES, Outcome, analyze_out  # noqa: F401 - were here

_U32 = 0xFFFFFFFF
_U32_FIELD = struct.Struct("<I")
MAX_PORTS = 256              # bindings longer than this are not analysed
MAX_DATAMATCH = 64           # candidate datamatch values per binding


# --- eligibility -------------------------------------------------------------
#
# The decision is a proof (``DECIDE = "proof"``, bpfio.prove.offload: for all memory,
# clocks and vCPUs); ``"analysis"`` uses the path analysis above, which accepts a
# subset (tests/test_kvm_offload.py cross-checks the two).

DECIDE = "proof"


def eventfd_index(program, *, port: int, base: int, size: int, data: int, mem_words: int):
    """The notifier an OUT of ``data`` always signals, changing nothing else; else None."""
    if DECIDE == "proof":
        from bpfio.prove.offload import eventfd_index as proved
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
        from bpfio.prove.offload import coalescable as proved
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
