"""A small VMM over ``/dev/kvm`` whose guests' port I/O goes through bpfio.

The machine model: one VM with ``mem_size`` bytes of RAM at guest-physical 0,
a flat binary loaded at ``load`` (default 0x1000), and N vCPUs that all start
at ``entry`` either in 16-bit real mode (CS = 0 when the entry is below 64 KiB)
or in 32-bit protected mode with a flat 4 GiB code/data GDT that the VMM
writes at 0x500 and loads through ``KVM_SET_SREGS`` (the guest needs no setup).
At entry EBX holds the vCPU index, ECX the vCPU count, and ESP a per-vCPU
stack below 0xF000.  No in-kernel irqchip or PIT is created, so every port
access of the guest exits to us and ``HLT`` ends a vCPU.

Every ``KVM_EXIT_IO`` is routed to a port handler -- a
:class:`bpfio.pio.machine.Machine` or anything with ``pio_in(port, size,
vcpu=)`` and ``pio_out(port, size, value, vcpu=)`` -- element by element for
string I/O (``count > 1``, data at ``data_offset`` in the vCPU page).  MMIO,
SHUTDOWN (a triple fault), FAIL_ENTRY and INTERNAL_ERROR stop the VM with a
:class:`KvmError` naming the vCPU, the reason and the guest's RIP.  Several
vCPUs run in Python threads (``KVM_RUN`` releases the GIL inside ``ioctl``).

Example::

    from bpfio.kvm import run_guest
    from bpfio.pio.config import load_machine
    machine = load_machine("examples/pc.toml")
    result = run_guest(open("hello.bin", "rb").read(), machine)
    print(result.exits, result.exits_per_second)
"""

from __future__ import annotations

import ctypes
import fcntl
import math
import mmap
import os
import signal
import struct
import threading
import time
from dataclasses import dataclass, field

from bpfio.errors import KvmError
from bpfio.kvm import abi as K
from bpfio.kvm.guests import build_guest, guests_dir, loop_guest
from bpfio.kvm.ports import NullPorts, TimedPorts
from bpfio.kvm.vcpu import GDT_ADDR, Vcpu, VcpuStats, _ioctl
from bpfio.kvm.runinfo import (DEV_KVM, LOOPS, RunResult, available,  # noqa: F401
                               choose_loop)

__all__ = ["KvmError", "Vm", "Vcpu", "RunResult", "VcpuStats", "NullPorts", "TimedPorts",
           "available", "choose_loop", "run_guest", "bench_exit_roundtrip", "build_guest",
           "guests_dir", "loop_guest", "DEFAULT_LOAD", "MAX_VCPUS"]

DEFAULT_MEM = 2 << 20
DEFAULT_LOAD = 0x1000
MAX_VCPUS = 8
TSS_ADDR = 0xFFFBD000        # three pages KVM needs below 4 GiB on VMX; unused RAM here

_U32 = struct.Struct("<I")
_MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}


class Vm:
    """A KVM virtual machine: RAM, vCPUs, and a port handler for every PIO exit.

    Use as a context manager (or call :meth:`close`) so that every fd and
    mapping is released.
    """

    def __init__(self, ports=None, *, mem_size: int = DEFAULT_MEM, vcpus: int = 1):
        if type(vcpus) is not int or not 1 <= vcpus <= MAX_VCPUS:
            raise KvmError(f"--vcpus must be 1..{MAX_VCPUS}, got {vcpus!r}")
        if type(mem_size) is not int or mem_size < 0x20000 or mem_size % K.PAGE_SIZE:
            raise KvmError(f"memory size {mem_size!r} must be an int, a multiple of 4 KiB and >= 128 KiB")
        self.ports = ports if ports is not None else NullPorts()
        self.mem_size = mem_size
        self.sys_fd = self.fd = -1
        self.memory: mmap.mmap | None = None
        self._mem_view = None
        self.vcpus: list[Vcpu] = []
        self.offload = None          # a bpfio.kvm.offload.Offload once enabled
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._done: dict[threading.Thread, threading.Event] = {}
        self._lock = threading.Lock()
        try:
            self._open(vcpus)
        except BaseException:
            self.close()
            raise

    def _open(self, vcpus: int) -> None:
        try:
            self.sys_fd = os.open(DEV_KVM, os.O_RDWR | os.O_CLOEXEC)
        except OSError as err:
            raise KvmError(f"{DEV_KVM} cannot be opened: {err.strerror}") from None
        version = _ioctl(self.sys_fd, K.KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")
        if version != K.KVM_API_VERSION:
            raise KvmError(f"KVM API version {version}, expected {K.KVM_API_VERSION}")
        self.fd = _ioctl(self.sys_fd, K.KVM_CREATE_VM, 0, "KVM_CREATE_VM")
        self.run_size = _ioctl(self.sys_fd, K.KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE")
        # Needed on Intel hosts without unrestricted guest, harmless elsewhere.  The
        # address does not fit fcntl.ioctl's C int, so go through libc directly.
        ctypes.CDLL(None, use_errno=True).ioctl(self.fd, ctypes.c_ulong(K.KVM_SET_TSS_ADDR),
                                                ctypes.c_ulong(TSS_ADDR))
        self.memory = mmap.mmap(-1, self.mem_size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        self._mem_view = (ctypes.c_char * self.mem_size).from_buffer(self.memory)
        region = K.UserspaceMemoryRegion(slot=0, flags=0, guest_phys_addr=0,
                                         memory_size=self.mem_size,
                                         userspace_addr=ctypes.addressof(self._mem_view))
        _ioctl(self.fd, K.KVM_SET_USER_MEMORY_REGION, region, "KVM_SET_USER_MEMORY_REGION")
        # The flat GDT for protected-mode entry: null, code 0x08, data 0x10.
        gdt = struct.pack("<QQQ", 0, 0x00CF9B000000FFFF, 0x00CF93000000FFFF)
        self.memory[GDT_ADDR:GDT_ADDR + len(gdt)] = gdt
        for index in range(vcpus):
            self.vcpus.append(Vcpu(self, index))

    def check_extension(self, cap: int) -> int:
        """Return KVM_CHECK_EXTENSION for ``cap`` on this VM (0 = unsupported)."""
        try:
            return fcntl.ioctl(self.fd, K.KVM_CHECK_EXTENSION, cap)
        except OSError:
            return 0

    def load(self, image: bytes, addr: int = DEFAULT_LOAD) -> None:
        """Copy a flat binary into guest RAM at ``addr``."""
        if type(addr) is not int or addr < 0:
            raise KvmError(f"load address {_addr(addr)} is not an address in RAM "
                           f"(0..{self.mem_size - 1:#x})")
        end = addr + len(image)
        if addr < GDT_ADDR + 24 and end > GDT_ADDR:
            raise KvmError(f"guest image at {addr:#x}..{end:#x} overlaps the GDT at {GDT_ADDR:#x}")
        if end > self.mem_size:
            raise KvmError(f"guest image at {addr:#x}..{end:#x} does not fit in "
                           f"{self.mem_size:#x} bytes of RAM")
        self.memory[addr:end] = image

    def read_memory(self, addr: int, length: int) -> bytes:
        """Return ``length`` bytes of guest RAM at ``addr``."""
        return self.memory[addr:addr + length]

    # --- running ---------------------------------------------------------

    def run(self, *, entry: int = DEFAULT_LOAD, mode: str = "real",
            timeout: float | None = 60.0, loop: str | None = None) -> RunResult:
        """Start every vCPU at ``entry`` in ``mode`` and run until all of them halt.

        ``loop`` is ``"native"`` (the emitted exit loop of :mod:`bpfio.kvm.native`),
        ``"python"``, or None for :func:`choose_loop`'s default.  Raises
        :class:`KvmError` if a vCPU stops for any other reason, or when ``timeout``
        seconds pass first (the vCPUs are kicked out of the guest).
        """
        if type(entry) is not int or not 0 <= entry < self.mem_size:
            raise KvmError(f"entry {_addr(entry)} is not an address in RAM (0..{self.mem_size - 1:#x})")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not math.isfinite(timeout) or timeout < 0):
            raise KvmError(f"timeout {timeout!r} is not a number of seconds >= 0")
        loop, _notice = choose_loop(loop)
        engine = None
        if loop == "native":
            from bpfio.kvm.native import NativeEngine
            engine = NativeEngine.for_ports(self.ports)
        for vcpu in self.vcpus:
            vcpu.stats = VcpuStats(vcpu.index)
            vcpu.enter(mode, entry, len(self.vcpus))
        self._stop.clear()
        errors: list[BaseException] = []
        # Set when a vCPU thread's loop has finished (its finally blocks included):
        # after a KeyboardInterrupt inside Thread.join, join and is_alive can report a
        # thread as stopped too early (CPython), and the native loop's buffer export
        # must be gone before close() unmaps kvm_run.
        done = [threading.Event() for _ in self.vcpus]
        threads = [threading.Thread(target=self._thread_main, args=(v, errors, engine, d),
                                    name=f"bpfio-vcpu{v.index}", daemon=True)
                   for v, d in zip(self.vcpus, done)]
        self._threads = threads
        self._done = dict(zip(threads, done))   # is_alive() is unreliable after Ctrl-C
        restore = self._install_kick_handler()
        start = time.perf_counter()
        try:
            for t in threads:
                t.start()
            deadline = None if timeout is None else start + timeout
            for t in threads:
                while t.is_alive():
                    left = None if deadline is None else deadline - time.perf_counter()
                    if left is not None and left <= 0:
                        self._kick(threads)
                        errors.append(KvmError(f"guest did not halt within {timeout:g} s",
                                               reason="timeout"))
                        deadline = None
                        continue
                    t.join(0.05 if left is None else min(left, 0.05))
        finally:
            # Whatever ends the wait (HLT, an error here, Ctrl-C), no vCPU thread outlives
            # run(): close() unmaps each kvm_run, which a running thread still reads.
            self._stop_threads(threads)
            seconds = time.perf_counter() - start
            restore()
        if self.offload is not None:
            self.offload.flush()
        if engine is not None:
            engine.fold()
        result = RunResult([v.stats for v in self.vcpus], seconds,
                           self.offload.stats() if self.offload is not None else {}, loop=loop)
        if errors:
            timeout_errors = [e for e in errors if getattr(e, "reason", "") == "timeout"]
            raise (timeout_errors or errors)[0]
        return result

    def _stop_threads(self, threads) -> None:
        """Kick the vCPU threads still running and wait for every started one to finish.

        Waits on each thread's "done" event rather than ``join``/``is_alive``: after a
        KeyboardInterrupt inside ``Thread.join`` CPython can report a thread as stopped
        while it is still in KVM_RUN (the kick would skip it and close() would unmap
        its kvm_run under it).
        """
        done = getattr(self, "_done", {})
        started = [t for t in threads if t.ident is not None]
        if any(not done[t].is_set() if t in done else t.is_alive() for t in started):
            self._kick(threads)
        for t in started:
            if t in done:
                done[t].wait()
            t.join()

    def _install_kick_handler(self):
        """Install a no-op SIGUSR1 handler (main thread only) so a kick interrupts KVM_RUN."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        old = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
        return lambda: signal.signal(signal.SIGUSR1, old)

    def _kick(self, threads) -> None:
        """Stop every vCPU: immediate_exit for the next KVM_RUN, a signal for the current one."""
        self._stop.set()
        for vcpu in self.vcpus:
            if vcpu.run_map is not None:
                vcpu.run_map[K.RUN_IMMEDIATE_EXIT] = 1
        if signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None):
            for t in threads:
                done = self._done.get(t)
                running = not done.is_set() if done is not None else t.is_alive()
                if running and t.ident is not None:
                    try:
                        signal.pthread_kill(t.ident, signal.SIGUSR1)
                    except (ProcessLookupError, OSError):
                        pass

    def _thread_main(self, vcpu: Vcpu, errors: list, engine=None, done=None) -> None:
        try:
            if engine is None:
                self._loop(vcpu)
            else:
                from bpfio.kvm.native import run_vcpu
                run_vcpu(self, vcpu, engine)
        except BaseException as err:        # reported by run(); stop the other vCPUs too
            errors.append(err)
            self._kick([t for t in self._threads if t is not threading.current_thread()])
        finally:
            if done is not None:
                done.set()

    def _loop(self, vcpu: Vcpu) -> None:
        """The exit loop of one vCPU: KVM_RUN, dispatch the exit, repeat until HLT."""
        fd, run, index, stats = vcpu.fd, vcpu.run_map, vcpu.index, vcpu.stats
        ports = self.ports
        pio_in, pio_out = ports.pio_in, ports.pio_out
        pio_ins = getattr(ports, "pio_ins", None)
        pio_outs = getattr(ports, "pio_outs", None)
        unpack_reason = _U32.unpack_from
        unpack_io = K.RUN_IO.unpack_from
        ioctl = fcntl.ioctl
        kvm_run = K.KVM_RUN
        exit_io = K.KVM_EXIT_IO
        offload = self.offload
        flush = offload.flush if offload is not None else None
        exits = io_exits = accesses = 0
        try:
            while True:
                try:
                    ioctl(fd, kvm_run, 0)
                except InterruptedError:
                    exits += 1
                    if self._stop.is_set():
                        stats.stop = "stopped"
                        return
                    continue
                except OSError as err:
                    raise KvmError(f"KVM_RUN failed: {err.strerror}", vcpu=index,
                                   rip=vcpu.rip()) from None
                exits += 1
                if flush is not None:
                    flush()
                reason = unpack_reason(run, K.RUN_EXIT_REASON)[0]
                if reason == exit_io:
                    io_exits += 1
                    accesses += self._io_exit(run, index, stats, unpack_io(run, K.RUN_UNION),
                                              pio_in, pio_out, pio_ins, pio_outs)
                    continue
                self._last_exit(vcpu, reason)
                return
        finally:
            stats.exits += exits
            stats.io_exits += io_exits
            stats.accesses += accesses
            stats.rip = vcpu.rip()

    def _io_exit(self, run, index, stats, io, pio_in, pio_out, pio_ins, pio_outs) -> int:
        """Complete one KVM_EXIT_IO in Python (both exit loops); return the elements served."""
        direction, size, port, count, off = io
        if count == 1:
            if direction:
                pio_out(port, size, int.from_bytes(run[off:off + size], "little"), vcpu=index)
            else:
                value = pio_in(port, size, vcpu=index) & _MASKS[size]
                run[off:off + size] = value.to_bytes(size, "little")
            return 1
        self._string_io(run, index, direction, size, port, count, off,
                        pio_in, pio_out, pio_ins, pio_outs)
        stats.string_exits += 1
        return count

    def _last_exit(self, vcpu: Vcpu, reason: int) -> None:
        """An exit that ends the vCPU's loop: a stop request, HLT, or a fatal reason (raises)."""
        if self._stop.is_set():
            vcpu.stats.stop = "stopped"
        elif reason == K.KVM_EXIT_HLT:
            vcpu.stats.stop = "hlt"
        else:
            self._fatal_exit(vcpu, reason)

    @staticmethod
    def _string_io(run, index, direction, size, port, count, off,
                   pio_in, pio_out, pio_ins, pio_outs) -> None:
        """INS/OUTS: ``count`` elements of ``size`` bytes, in order, through the handler."""
        end = off + size * count
        if direction:
            values = [int.from_bytes(run[p:p + size], "little") for p in range(off, end, size)]
            if pio_outs is not None:
                pio_outs(port, size, values, vcpu=index)
            else:
                for value in values:
                    pio_out(port, size, value, vcpu=index)
        else:
            if pio_ins is not None:
                values = pio_ins(port, size, count, vcpu=index)
            else:
                values = [pio_in(port, size, vcpu=index) for _ in range(count)]
            mask = _MASKS[size]
            run[off:end] = b"".join((v & mask).to_bytes(size, "little") for v in values)

    def _fatal_exit(self, vcpu: Vcpu, reason: int) -> None:
        run = vcpu.run_map
        name = K.EXIT_REASONS.get(reason, str(reason))
        vcpu.stats.stop = name.lower()
        rip = vcpu.rip()
        if reason == K.KVM_EXIT_MMIO:
            addr, data, length, is_write = K.RUN_MMIO.unpack_from(run, K.RUN_UNION)
            verb = "write" if is_write else "read"
            raise KvmError(f"KVM_EXIT_MMIO: {length}-byte {verb} of {addr:#x} -- MMIO is "
                           "not supported (only port I/O goes through bpfio)",
                           vcpu=vcpu.index, reason="mmio", rip=rip)
        if reason == K.KVM_EXIT_SHUTDOWN:
            raise KvmError("KVM_EXIT_SHUTDOWN: the guest triple-faulted (or asked for a reset)",
                           vcpu=vcpu.index, reason="shutdown", rip=rip)
        if reason == K.KVM_EXIT_FAIL_ENTRY:
            hw, cpu = K.RUN_FAIL_ENTRY.unpack_from(run, K.RUN_UNION)
            raise KvmError(f"KVM_EXIT_FAIL_ENTRY: VM entry failed, hardware reason {hw:#x} "
                           f"on host cpu {cpu}", vcpu=vcpu.index, reason="fail_entry", rip=rip)
        if reason == K.KVM_EXIT_INTERNAL_ERROR:
            sub, ndata = K.RUN_INTERNAL.unpack_from(run, K.RUN_UNION)
            text = K.INTERNAL_SUBERRORS.get(sub, f"suberror {sub}")
            raise KvmError(f"KVM_EXIT_INTERNAL_ERROR: {text}", vcpu=vcpu.index,
                           reason="internal_error", rip=rip)
        raise KvmError(f"unexpected exit KVM_EXIT_{name}", vcpu=vcpu.index,
                       reason=name.lower(), rip=rip)

    def close(self) -> None:
        """Release every vCPU, the VM fd, the /dev/kvm fd and guest RAM (idempotent)."""
        self._stop_threads(self._threads)   # no-op after run(); never unmap under a vCPU
        if self.offload is not None:
            self.offload.close()
            self.offload = None
        for vcpu in self.vcpus:
            vcpu.close()
        self.vcpus = []
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.sys_fd >= 0:
            os.close(self.sys_fd)
            self.sys_fd = -1
        self._mem_view = None
        if self.memory is not None:
            self.memory.close()
            self.memory = None

    def __enter__(self) -> "Vm":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_guest(image: bytes, ports=None, *, entry: int = DEFAULT_LOAD, load: int | None = None,
              mode: str = "real", vcpus: int = 1, mem_size: int = DEFAULT_MEM,
              timeout: float | None = 60.0, offload: bool = False,
              timed: bool = False, loop: str | None = None) -> RunResult:
    """Create a VM, load ``image`` (at ``load``, default ``entry``), run it to HLT, tear down.

    ``offload`` registers eligible bindings with KVM (see bpfio.kvm.offload);
    ``timed`` measures the time spent in the port handler (``handler_seconds``;
    under the native loop only exits that reach Python are timed); ``loop``
    picks the exit loop (see :meth:`Vm.run`).
    """
    timer = TimedPorts(ports if ports is not None else NullPorts()) if timed else None
    with Vm(timer or ports, mem_size=mem_size, vcpus=vcpus) as vm:
        vm.load(image, entry if load is None else load)
        if offload:
            from bpfio.kvm.offload import Offload
            vm.offload = Offload(vm, ports)
            vm.offload.register()
        result = vm.run(entry=entry, mode=mode, timeout=timeout, loop=loop)
    if timer is not None:
        result.handler_seconds = timer.seconds
    return result


# --- benchmark hook ----------------------------------------------------------

def bench_exit_roundtrip(n: int = 100_000, machine=None, *, port: int = 0x608,
                         size: int = 4, loop: str = "python") -> float:
    """Return nanoseconds per PIO exit round trip for a guest looping on ``in``.

    With ``machine=None`` the exits go to :class:`NullPorts` (no engine): that
    is the cost of KVM_RUN plus the exit loop (``loop``, Python by default) alone.
    """
    result = run_guest(loop_guest(port, size, n), machine, loop=loop)
    return result.seconds * 1e9 / max(result.io_exits, 1)


def _addr(value) -> str:
    """An address for a message: hex for an int, repr otherwise."""
    return f"{value:#x}" if type(value) is int else repr(value)
