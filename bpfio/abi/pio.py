"""The PIO ABI constants, read from ``asm/pio.inc`` (their single source).

Every ``#define NAME VALUE`` of the include file becomes a module attribute,
so ``abi.PIO_DONE`` here and ``ret #PIO_DONE`` in a program are the same
number by construction.  See ``docs/pio-abi.md`` for the contract.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from bpfio.errors import UsageError
from bpfio.resources import asm_dir
from bpfio.values import U16, U32, U64, check_uint

_DEFINE = re.compile(r"^#define\s+([A-Za-z_]\w*)\s+(0[xX][0-9a-fA-F]+|\d+)\s*(?:;.*)?$")


def _load() -> dict[str, int]:
    names: dict[str, int] = {}
    path = asm_dir() / "pio.inc"
    for line in path.read_text().splitlines():
        m = _DEFINE.match(line.strip())
        if m:
            names[m.group(1)] = int(m.group(2), 0)
    return names


CONSTANTS: dict[str, int] = _load()
globals().update(CONSTANTS)

# Names used below, pulled out for linters and readers.
PIO_HDR_LEN: int = CONSTANTS["PIO_HDR_LEN"]
PIO_MEM: int = CONSTANTS["PIO_MEM"]
PIO_IN: int = CONSTANTS["PIO_IN"]
PIO_OUT: int = CONSTANTS["PIO_OUT"]
PIO_EXIT: int = CONSTANTS["PIO_EXIT"]
PIO_DONE: int = CONSTANTS["PIO_DONE"]
PIO_NOTIFY: int = CONSTANTS["PIO_NOTIFY"]
PIO_ACTION_MASK: int = CONSTANTS["PIO_ACTION_MASK"]
PIO_DATA_MASK: int = CONSTANTS["PIO_DATA_MASK"]
PIO_MEM_MIN: int = CONSTANTS["PIO_MEM_MIN"]
PIO_MEM_MAX: int = CONSTANTS["PIO_MEM_MAX"]
PIO_MEM_DEFAULT: int = CONSTANTS["PIO_MEM_DEFAULT"]
PIO_NOTIFIERS_MAX: int = CONSTANTS["PIO_NOTIFIERS_MAX"]
PIO_PORTS: int = CONSTANTS["PIO_PORTS"]

# Context field offsets in order, for building the byte view.
FIELDS = ("PIO_PORT", "PIO_SIZE", "PIO_DIR", "PIO_DATA", "PIO_OFFSET", "PIO_VCPU",
          "PIO_TICKS", "PIO_TICKS_HI", "PIO_NS", "PIO_NS_HI")
KNOWN_ACTIONS = (PIO_EXIT, PIO_DONE, PIO_NOTIFY)


class PioEvent(NamedTuple):
    """One port access as a program sees it (before shared memory)."""

    port: int
    size: int
    direction: int     # PIO_IN or PIO_OUT
    data: int = 0      # value written by an OUT
    offset: int = 0    # port - binding base
    vcpu: int = 0
    ticks: int = 0     # 64-bit binding clock
    ns: int = 0        # 64-bit host nanoseconds

    def checked(self) -> "PioEvent":
        """Return self, or raise UsageError for a field outside its ABI width (never masked)."""
        if type(self) is not PioEvent:
            raise UsageError(f"pio event must be a PioEvent, not {type(self).__name__}")
        check_uint("pio event: port", self.port, U16)
        if type(self.size) is not int or self.size not in (1, 2, 4):
            raise UsageError(f"pio event: size {self.size!r} is not 1, 2 or 4")
        if type(self.direction) is not int or self.direction not in (PIO_IN, PIO_OUT):
            raise UsageError(f"pio event: direction {self.direction!r} is not "
                             f"PIO_IN ({PIO_IN}) or PIO_OUT ({PIO_OUT})")
        check_uint("pio event: data", self.data, U32)
        check_uint("pio event: offset", self.offset, U16)
        check_uint("pio event: vcpu", self.vcpu, U32)
        check_uint("pio event: ticks", self.ticks, U64)
        check_uint("pio event: ns", self.ns, U64)
        return self

    def words(self) -> tuple[int, ...]:
        """The ten 32-bit header words in context order."""
        m = 0xffffffff
        return (self.port, self.size, self.direction, self.data & m, self.offset,
                self.vcpu, self.ticks & m, (self.ticks >> 32) & m,
                self.ns & m, (self.ns >> 32) & m)


def check_mem(mem) -> list:
    """Return ``mem`` when it is a list of PIO_MEM_MIN..PIO_MEM_MAX u32 words; else UsageError."""
    if type(mem) is not list:
        raise UsageError(f"pio mem: the shared words must be a list, not {type(mem).__name__}")
    if not PIO_MEM_MIN <= len(mem) <= PIO_MEM_MAX:
        raise UsageError(f"pio mem: {len(mem)} words is outside {PIO_MEM_MIN}..{PIO_MEM_MAX}")
    if not _INT_ONLY.issuperset(map(type, mem)) or min(mem) < 0 or max(mem) > U32:
        for i, v in enumerate(mem):
            check_uint(f"pio mem: word {i}", v, U32)
    return mem


_INT_ONLY = frozenset({int})


def context_bytes(event: PioEvent, mem) -> bytes:
    """Return the byte string a program's loads read: header then shared memory."""
    return b"".join(w.to_bytes(4, "big") for w in (*event.words(), *mem))


def ticks_at(ns: int, clock_hz: int | None) -> int:
    """floor(ns * clock_hz / 1e9), computed exactly in integers."""
    return (ns * clock_hz) // 1_000_000_000 if clock_hz else 0


def decode_verdict(verdict: int) -> tuple[str, int]:
    """Return (action name, data) for a verdict; unknown actions are 'BAD'."""
    action = verdict & PIO_ACTION_MASK
    name = {PIO_EXIT: "EXIT", PIO_DONE: "DONE", PIO_NOTIFY: "NOTIFY"}.get(action, "BAD")
    return name, verdict & PIO_DATA_MASK
