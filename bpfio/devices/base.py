"""Shared helpers for the reference device models.

A device model is the *whole* device as QEMU implements it: it is the
fallback a program exits to and the oracle the differential tests compare
against.  State that a fast-path program needs lives in the binding's shared
memory words; the word numbers come from the device's ``asm/<device>.inc``
(read by :func:`layout`), so a program and its model can never disagree.

Helpers here:

* :func:`layout` -- the ``#define`` names of an include file, as a dict.
* :class:`Bytes` -- a byte array packed big-endian into shared words, so a
  program reads byte ``i`` with ``ldb [x + base]`` (X = i).
* :func:`split_read` / :func:`split_write` -- QEMU's ``impl.max_access_size
  = 1`` rule: a wide access to a byte-only device becomes one byte access per
  port, low byte first; bytes that fall past the binding read as all ones and
  their writes vanish (on a PC they would reach a neighbouring device).
* :class:`LocalBinding` -- a stand-in binding (shared words plus a clock) for
  using a model without a :class:`~bpfio.pio.machine.Machine`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable

from bpfio.errors import PioError
from bpfio.resources import asm_dir

_DEFINE = re.compile(r"^#define\s+([A-Za-z_]\w*)\s+(0[xX][0-9a-fA-F]+|\d+)\s*(?:;.*)?$")
_NS_PER_S = 1_000_000_000
U32 = 0xffffffff
SIZE_MASK = {1: 0xff, 2: 0xffff, 4: 0xffffffff}


@lru_cache(maxsize=None)
def layout(name: str) -> dict[str, int]:
    """Return every numeric ``#define`` of ``asm/<name>.inc`` as ``{NAME: value}``."""
    names: dict[str, int] = {}
    for line in (asm_dir() / f"{name}.inc").read_text().splitlines():
        m = _DEFINE.match(line.strip())
        if m:
            names[m.group(1)] = int(m.group(2), 0)
    return names


class Bytes:
    """``n`` bytes stored four to a shared word, most significant byte first.

    Byte ``i`` lives in word ``first + i // 4`` at shift ``24 - 8 * (i % 4)``,
    which is where a big-endian ``ldb [x + PIO_MEM + 4 * first]`` finds it.
    """

    __slots__ = ("mem", "first", "n")

    def __init__(self, mem, first: int, n: int):
        if first + (n + 3) // 4 > len(mem):
            raise PioError(f"{n} bytes at shared word {first} need "
                           f"{first + (n + 3) // 4} words; the binding has {len(mem)}")
        self.mem, self.first, self.n = mem, first, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return (self.mem[self.first + (i >> 2)] >> (24 - 8 * (i & 3))) & 0xff

    def __setitem__(self, i: int, value: int) -> None:
        if not 0 <= i < self.n:
            raise IndexError(i)
        w = self.first + (i >> 2)
        shift = 24 - 8 * (i & 3)
        self.mem[w] = (self.mem[w] & ~(0xff << shift) & U32) | ((value & 0xff) << shift)

    def tobytes(self) -> bytes:
        """All ``n`` bytes as a bytes object."""
        return bytes(self[i] for i in range(self.n))


def split_read(read_byte: Callable[[int], int], offset: int, size: int, length: int) -> int:
    """Read ``size`` bytes as byte accesses at ``offset``, ``offset + 1``, ...

    Ports past the binding's ``length`` read 0xff (nothing of ours is there).
    """
    value = 0
    for i in range(size):
        byte = read_byte(offset + i) if offset + i < length else 0xff
        value |= (byte & 0xff) << (8 * i)
    return value


def split_write(write_byte: Callable[[int, int], None], offset: int, size: int,
                value: int, length: int) -> None:
    """Write ``size`` bytes of ``value`` as byte accesses, low byte first."""
    for i in range(size):
        if offset + i < length:
            write_byte(offset + i, (value >> (8 * i)) & 0xff)


class LocalBinding:
    """Shared words and a clock, shaped like a :class:`~bpfio.pio.machine.Binding`.

    For unit tests of a model on its own and for scripts that want a model
    without a machine: ``LocalBinding(mem_words, clock_hz, clock)`` where
    ``clock()`` returns host nanoseconds.
    """

    def __init__(self, mem_words: int = 16, clock_hz: int | None = None,
                 clock: Callable[[], int] | None = None, base: int = 0, length: int = 1):
        import threading
        self.mem = [0] * mem_words
        self.clock_hz = clock_hz
        self.clock = clock or (lambda: 0)
        self.base, self.length = base, length
        self.lock = threading.Lock()
        self.machine = None

    def now_ns(self) -> int:
        """The clock's current reading in nanoseconds."""
        return self.clock()

    def ticks(self, ns: int | None = None) -> int:
        """floor(ns * clock_hz / 1e9) (0 without a clock rate)."""
        if ns is None:
            ns = self.now_ns()
        return ns * self.clock_hz // _NS_PER_S if self.clock_hz else 0


class Model:
    """Base of the reference models: keeps the binding and its shared memory.

    Subclasses set ``MEM_WORDS`` (the minimum shared words they need) and
    override :meth:`reset` to lay out their state.
    """

    MEM_WORDS = 1
    binding = None

    def attach(self, binding) -> None:
        """Take the binding's shared memory and clock; put the device in its reset state."""
        if len(binding.mem) < self.MEM_WORDS:
            raise PioError(f"{type(self).__name__} needs mem_words >= {self.MEM_WORDS}, "
                           f"binding '{getattr(binding, 'name', '?')}' has {len(binding.mem)}")
        self.binding = binding
        self.mem = binding.mem
        self.length = getattr(binding, "length", 1)
        self.reset()

    def reset(self) -> None:
        """Put the device in its power-on state (override)."""

    def _need_binding(self):
        if self.binding is None:
            raise PioError(f"{type(self).__name__} is not attached to a binding")
        return self.binding


def device_program(name: str, defines: dict | None = None):
    """Assemble ``asm/<name>.asm`` (the device's fast-path program) and return it."""
    from bpfio.text.assembler import assemble
    path = asm_dir() / f"{name}.asm"
    return assemble(path.read_text(), filename=str(path), include_path=(asm_dir(),),
                    defines=defines)


def replay(machine, clock, steps) -> list[int]:
    """Run access steps on ``machine`` and return the value of every IN, in order.

    Each step is ``(advance_ns, port, size, value)``: the clock (a
    :class:`~bpfio.pio.machine.FakeClock`) moves forward by ``advance_ns``,
    then the guest reads (``value`` None) or writes ``value``.
    """
    out = []
    for dt, port, size, value in steps:
        clock.ns += dt
        if value is None:
            out.append(machine.pio_in(port, size))
        else:
            machine.pio_out(port, size, value)
    return out
