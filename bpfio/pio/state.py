"""Per-binding state the engine keeps: shared memory, counters, fault records, a fake clock."""

from __future__ import annotations

from typing import NamedTuple

from bpfio.errors import PioError

_U32 = 0xffffffff


class FakeClock:
    """A settable clock for tests and replays: ``clock()`` returns ``clock.ns``."""

    __slots__ = ("ns",)

    def __init__(self, ns: int = 0):
        self.ns = ns

    def __call__(self) -> int:
        return self.ns

    def advance(self, ns: int) -> int:
        """Move the clock forward by ``ns`` and return the new reading."""
        self.ns += ns
        return self.ns


def _word(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise PioError(f"shared memory: a word is an int, not {type(value).__name__} "
                       f"({value!r})")
    return value & _U32


class SharedMemory:
    """A binding's N shared 32-bit words, seen by its program and its model.

    ``mem[i]`` reads a word, ``mem[i] = v`` stores the int ``v & 0xffffffff`` (a u32
    store; a float, a str or a bool is a ``PioError``, not converted);
    indexes are bounds-checked (``IndexError``).  ``mem.words`` is the very
    storage the program reads with ``ld M[k]`` and ``ld [x + PIO_MEM]``: a list,
    or -- once the native vCPU loop runs the binding -- a big-endian ctypes array
    inside the native context buffer (``bpfio.kvm.native``), shared in place.
    """

    __slots__ = ("words",)

    def __init__(self, n: int):
        self.words = [0] * n

    def __len__(self) -> int:
        return len(self.words)

    def __getitem__(self, i):
        return self.words[i]

    def __setitem__(self, i, value) -> None:
        if isinstance(i, slice):
            values = [_word(v) for v in value]
            if len(range(*i.indices(len(self.words)))) != len(values):
                raise ValueError("shared memory has a fixed size: slice assignment must keep it")
            self.words[i] = values
        else:
            self.words[i] = _word(value)

    def __iter__(self):
        return iter(self.words)

    def __repr__(self) -> str:
        return f"SharedMemory({list(self.words)!r})"


class Counters:
    """Per-binding event counters (plain ints).

    Every event ends either handled by the program (``handled``, which
    includes ``notified``) or as an exit to userspace (``exits``, which
    includes ``aborts``, ``bad_verdicts``, ``faults`` and ``unserved`` --
    exits with no device model), so ``events == handled + exits``.
    """

    __slots__ = ("handled", "notified", "exits", "aborts", "bad_verdicts", "insns", "faults",
                 "unserved")
    FIELDS = ("events", *__slots__)

    def __init__(self):
        for name in self.__slots__:
            setattr(self, name, 0)

    @property
    def events(self) -> int:
        """All accesses dispatched to the binding."""
        return self.handled + self.exits

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict, in a stable order."""
        return {name: getattr(self, name) for name in self.FIELDS}


class Fault(NamedTuple):
    """One contained device-model exception."""

    binding: str
    port: int
    size: int
    direction: int
    traceback: str
