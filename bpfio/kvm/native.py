"""The native vCPU loop: the Python side (port table, binding blocks, locks, grace periods).

``Vm.run(loop="native")`` runs each vCPU thread in ONE ctypes call to the emitted loop of
:mod:`bpfio.kvm.native_code` (the GIL is released for as long as it runs).  The loop
returns to this module only when Python must act (``R_*`` in
:mod:`bpfio.kvm.native_layout`); :func:`run_vcpu` then does what the Python loop of
:mod:`bpfio.kvm.vmm` does for that exit and calls the loop again.

:class:`NativeEngine` mirrors a :class:`~bpfio.pio.machine.Machine` natively: a 64K table
of :class:`NBinding` pointers; for each binding a block with its lock word, its native
program, and ONE buffer ``[40-byte event header | shared memory words, big-endian]`` that
the native program reads in place -- and that ``binding.mem`` becomes, so the model, the
Python engine and the program all see the same words.  The machine notifies the engine
of attach/detach/program changes (``machine._native``).  What leaves the table (a
detached binding, a replaced program's code) is kept until every vCPU has passed a
quiescent point (its ``gen`` counter even, or changed): an RCU-style grace period.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import time
import weakref

from bpfio.errors import KvmError
from bpfio.kvm import abi as K
from bpfio.kvm.native_code import functions
from bpfio.kvm.native_layout import (KIND_NATIVE, KIND_PYTHON, NATIVE_COUNTERS, R_ERRNO,
                                     R_MODEL, VCPU_COUNTERS, NBinding, NVcpu)
from bpfio.kvm.native_prog import native_program

_MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}
_U64 = (1 << 64) - 1
_BE32 = ctypes.c_uint32.__ctype_be__
_PORTS = 65536


class NativeLock:
    """A binding's lock word, taken by Python with the same ``lock cmpxchg`` as the loop."""

    __slots__ = ("address", "_owner", "_acquire", "_release")

    def __init__(self, owner: ctypes.Structure):
        fns = functions()
        self._owner = owner                    # the lock word lives as long as its users
        self.address = ctypes.addressof(owner)
        self._acquire, self._release = fns["acquire"], fns["release"]

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock (spinning natively, GIL released); always blocks."""
        self._acquire(self.address)
        return True

    def release(self) -> None:
        """Release the lock."""
        self._release(self.address)

    def locked(self) -> bool:
        """True while someone holds the lock."""
        return ctypes.c_uint32.from_address(self.address).value != 0

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self._release(self.address)


class _Block:
    """One binding's native state: its NBinding, ctx buffer, notifier arrays, program."""

    def __init__(self, binding):
        n = len(binding.mem)
        notifiers = binding.notifiers
        self.binding = binding
        self.nb = NBinding()
        self.ctx = (ctypes.c_uint8 * (40 + 4 * n))()
        self.words = (_BE32 * n).from_buffer(self.ctx, 40)
        self.fds = (ctypes.c_int32 * max(1, len(notifiers)))(*(x.fileno() for x in notifiers))
        self.counts = (ctypes.c_uint64 * max(1, len(notifiers)))()
        self.folded = dict.fromkeys(NATIVE_COUNTERS, 0)
        self.folded_signals = [0] * len(notifiers)
        self.owner = None                      # keeps the native program's code mapped
        nb = self.nb
        nb.base, nb.ctx, nb.ctx_len = binding.base, ctypes.addressof(self.ctx), 40 + 4 * n
        nb.n_notifiers = len(notifiers)
        nb.notify_fds, nb.notify_counts = ctypes.addressof(self.fds), ctypes.addressof(self.counts)
        nb.clock_hz = binding.clock_hz or 0
        self.address = ctypes.addressof(nb)
        self.lock = NativeLock(nb)             # NBinding.lock is at offset 0

    def header_ns(self) -> int:
        """PIO_NS of the event the native loop just ran (big-endian words 8 and 9)."""
        h = (_BE32 * 10).from_buffer(self.ctx)
        return h[8] | h[9] << 32


class NativeEngine:
    """The native mirror of one machine (or of a plain port handler: every port to Python)."""

    def __init__(self, machine=None):
        self.machine = machine
        self.table = (ctypes.c_void_p * _PORTS)()
        self.blocks: dict[str, _Block] = {}
        self.by_address: dict[int, _Block] = {}
        self.vcpus: list[NVcpu] = []
        self._pending: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._unmapped_folded: dict[int, int] = {}    # id(NVcpu) -> unmapped already added
        self._retired: list[tuple[list[tuple[NVcpu, int]], object]] = []
        self._lock = threading.Lock()
        if machine is None:                    # no engine: every exit goes to Python
            self._python = NBinding(kind=KIND_PYTHON)
            self.table[:] = [ctypes.addressof(self._python)] * _PORTS
            return
        for binding in list(machine.bindings.values()):
            self.added(binding)
        machine._native = self

    @classmethod
    def for_ports(cls, ports) -> "NativeEngine":
        """The engine of ``ports``: the machine's own (made once), or a Python-only one."""
        machine = getattr(ports, "ports", ports)       # TimedPorts wraps a machine
        if not hasattr(machine, "bindings") or not hasattr(machine, "_table"):
            return cls(None)
        engine = getattr(machine, "_native", None)
        return engine if engine is not None else cls(machine)

    # -- bindings ---------------------------------------------------------------
    def prepare(self, binding) -> None:
        """A binding is being attached: native memory and lock before anyone can see it.

        ``Machine.attach`` calls this before the binding is published, so no event
        can run on its Python list or lock while they are swapped.
        """
        block = _Block(binding)
        binding._go_native(block.lock, block.words)
        self._pending[binding] = block

    def added(self, binding) -> None:
        """A binding was attached: its block (made now unless prepared), table entries."""
        block = self._pending.pop(binding, None)
        if block is None:
            block = _Block(binding)
            binding._go_native(block.lock, block.words)
        self._set_program(block)
        with self._lock:
            self.blocks[binding.name] = block
            self.by_address[block.address] = block
        self.table[binding.base:binding.base + binding.length] = [block.address] * binding.length
        functions()["fence"]()

    def removed(self, binding) -> None:
        """A binding was detached: clear its entries, stop its program, retire its block."""
        block = self.blocks.pop(binding.name, None)
        if block is None:
            return
        self.table[binding.base:binding.base + binding.length] = [None] * binding.length
        functions()["fence"]()      # the cleared entries are visible before gens are read
        with block.lock:            # a vCPU serving it (R_MODEL included) finishes first
            block.nb.prog, block.nb.kind = 0, KIND_PYTHON
            self._fold_block(block)
        with self._lock:            # a later lock holder sees prog 0: no R_MODEL look-up
            self.by_address.pop(block.address, None)
        self.retire(block)

    def changed(self, binding) -> None:
        """The binding's program changed (called with the binding's lock held)."""
        block = self.blocks.get(binding.name)
        if block is not None:
            old = block.owner
            self._set_program(block)
            self.retire(old)

    def _set_program(self, block: _Block) -> None:
        b = block.binding
        found = native_program(b)
        nb = block.nb
        if found is None:
            nb.prog, nb.kind, block.owner = 0, KIND_PYTHON, None
            return
        owner, address, timed = found
        nb.timed = 1 if timed else 0
        nb.prog, nb.kind, block.owner = address, KIND_NATIVE, owner

    def kinds(self) -> dict[str, str]:
        """Binding name -> "native" or "python": where its programs run under the native loop."""
        return {name: "native" if b.nb.kind == KIND_NATIVE else "python"
                for name, b in self.blocks.items()}

    # -- counters ---------------------------------------------------------------
    def _fold_block(self, block: _Block) -> None:
        """Add what the loop counted since the last fold to the Python counters (lock held)."""
        counters, nb = block.binding.counters, block.nb
        for name in NATIVE_COUNTERS:
            now = getattr(nb, name)
            setattr(counters, name, getattr(counters, name) + now - block.folded[name])
            block.folded[name] = now
        for i, notifier in enumerate(block.binding.notifiers):
            now = block.counts[i]
            notifier.signals += now - block.folded_signals[i]
            block.folded_signals[i] = now

    def fold(self) -> None:
        """Bring every counter up to date (``Machine.stats`` calls this, also mid-run)."""
        for block in list(self.blocks.values()):
            with block.lock:
                self._fold_block(block)
        with self._lock:
            for nv in self.vcpus:
                self._fold_unmapped(nv)
        self.reclaim()

    def _fold_unmapped(self, nv: NVcpu) -> None:
        """Add the unmapped accesses of ``nv`` since the last fold (engine lock held)."""
        now = nv.unmapped
        delta = now - self._unmapped_folded.get(id(nv), 0)
        self._unmapped_folded[id(nv)] = now
        if delta and self.machine is not None:
            with self.machine._lock:
                self.machine.unmapped += delta

    # -- grace periods ----------------------------------------------------------
    def retire(self, obj) -> None:
        """Keep ``obj`` alive until no vCPU can still use what it owns, then drop it."""
        if obj is None:
            return
        functions()["fence"]()
        with self._lock:
            snap = [(v, v.gen) for v in self.vcpus if v.gen & 1]
            self._retired.append((snap, obj))
        self.reclaim()

    def reclaim(self) -> int:
        """Drop every retired object whose grace period has passed; return how many remain."""
        with self._lock:
            self._retired = [(snap, obj) for snap, obj in self._retired
                             if any(v.gen == g for v, g in snap)]
            return len(self._retired)

    def synchronize(self, timeout: float = 5.0) -> bool:
        """Wait until every retired object is dropped (True) or ``timeout`` passes."""
        end = time.monotonic() + timeout
        while self.reclaim():
            if time.monotonic() > end:
                return False
            time.sleep(0.0005)
        return True


def vcpu_block(engine: NativeEngine, vm, vcpu) -> tuple[NVcpu, object]:
    """The NVcpu for one vCPU (and the buffer export to drop before the mapping closes)."""
    fns = functions()
    run = ctypes.c_char.from_buffer(vcpu.run_map)
    base = ctypes.addressof(run)
    nv = NVcpu(run=base, table=ctypes.addressof(engine.table), fd=vcpu.fd, index=vcpu.index,
               one=1, clock_gettime=ctypes.cast(fns["libc"].clock_gettime, ctypes.c_void_p).value)
    ring = getattr(vm.offload, "_ring", None)
    if ring is not None:
        nv.ring = base + ring[1]
    return nv, run


def run_vcpu(vm, vcpu, engine: NativeEngine) -> None:
    """The exit loop of one vCPU, natively; Python handles only what the loop returns."""
    nv, export = vcpu_block(engine, vm, vcpu)
    with engine._lock:
        engine.vcpus.append(nv)
    loop = functions()["loop"]
    address = ctypes.addressof(nv)
    run, index, stats = vcpu.run_map, vcpu.index, vcpu.stats
    ports = vm.ports
    pio_in, pio_out = ports.pio_in, ports.pio_out
    pio_ins, pio_outs = getattr(ports, "pio_ins", None), getattr(ports, "pio_outs", None)
    unpack_io, union = K.RUN_IO.unpack_from, K.RUN_UNION
    flush = vm.offload.flush if vm.offload is not None else None
    exits = accesses = 0
    try:
        while True:
            rc = loop(address)
            if rc == R_ERRNO:
                if nv.err == -errno.EINTR:
                    exits += 1
                    if vm._stop.is_set():
                        stats.stop = "stopped"
                        return
                    continue
                raise KvmError(f"KVM_RUN failed: {os.strerror(-nv.err)}", vcpu=index,
                               rip=vcpu.rip())
            if flush is not None:
                flush()
            if rc == R_MODEL:
                _model(engine.by_address[nv.ret_binding], run, unpack_io(run, union))
                continue
            reason = K.RUN_EXIT_REASON
            reason = int.from_bytes(run[reason:reason + 4], "little")
            if reason == K.KVM_EXIT_IO:
                served = vm._io_exit(run, index, stats, unpack_io(run, union),
                                     pio_in, pio_out, pio_ins, pio_outs)
                if served > 1:                 # a single access was counted by the loop
                    accesses += served
                continue
            vm._last_exit(vcpu, reason)
            return
    finally:
        with engine._lock:
            engine.vcpus.remove(nv)
            engine._fold_unmapped(nv)
            engine._unmapped_folded.pop(id(nv), None)
        for name in VCPU_COUNTERS:
            setattr(stats, name, getattr(stats, name) + getattr(nv, name))
        stats.exits += exits
        stats.accesses += accesses
        stats.rip = vcpu.rip()
        del export


def _model(block: _Block, run, io) -> None:
    """R_MODEL: the program sent the access to userspace; its lock is held, release it."""
    direction, size, port, _count, off = io
    binding = block.binding
    try:
        mask = _MASKS[size]
        data = int.from_bytes(run[off:off + size], "little") if direction else 0
        ns = block.header_ns() if block.nb.timed else binding._clock() & _U64
        value = binding._fallback(port, size, mask, direction, data, ns)
        if not direction:
            run[off:off + size] = (value & mask).to_bytes(size, "little")
    finally:
        block.lock.release()
