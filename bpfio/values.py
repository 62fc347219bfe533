"""The one validation layer for values that enter the library through its Python API.

Integers are exact: ``bool`` (``True`` is 1 to Python) and ``float`` are refused, and a
value outside its kernel width (u8/u16/u32/u64, or a stated range) is an error -- never
masked into range.  Every check raises :class:`~bpfio.errors.UsageError` (a ``BpfError``
and a ``ValueError``) with ``place: problem``, where the place names the argument.
``Insn`` fields are checked by :func:`bpfio.insn.check_fields`, which every ``Program``
goes through.
"""

from __future__ import annotations

import math

from bpfio.errors import UsageError

U8, U16, U32, U64 = 0xff, 0xffff, 0xffffffff, 0xffffffffffffffff
_WIDTH = {U8: "u8", U16: "u16", U32: "u32", U64: "u64"}


def check_int(what: str, value, lo: int, hi: int) -> int:
    """Return ``value`` when it is an int (not a bool) in ``lo..hi``; else raise UsageError."""
    if type(value) is not int:
        if isinstance(value, int) and not isinstance(value, bool):
            value = int(value)          # an IntEnum or another int subclass: its value
        else:
            raise UsageError(f"{what}: {value!r} is not an integer "
                             f"({type(value).__name__})")
    if not lo <= value <= hi:
        kind = f"a {_WIDTH[hi]} " if lo == 0 and hi in _WIDTH else ""
        raise UsageError(f"{what}: {value} is not {kind}in {_show(lo)}..{_show(hi)}")
    return value


def check_uint(what: str, value, top: int) -> int:
    """:func:`check_int` for ``0..top`` (``top`` is one of U8, U16, U32, U64 or any bound)."""
    return check_int(what, value, 0, top)


def check_choice(what: str, value, choices) -> str:
    """Return ``value`` when it is one of ``choices``; else raise UsageError."""
    if not isinstance(value, str) or value not in choices:
        raise UsageError(f"{what}: {value!r} is not one of {', '.join(choices)}")
    return value


def _show(n: int) -> str:
    return f"{n:#x}" if abs(n) > 0xffff else str(n)


def check_seconds(what: str, value, lo: float = 0.0, hi: float | None = None) -> float:
    """Return ``value`` when it is a finite number of seconds in ``lo..hi``; else UsageError.

    ``nan`` and ``inf`` are refused: every comparison with ``nan`` is false, so a range
    check alone lets it through (and ``int(nan * 1000)`` then fails far away).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{what}: {value!r} is not a number of seconds")
    if not math.isfinite(value) or value < lo or (hi is not None and value > hi):
        bound = f"{lo:g}..{hi:g}" if hi is not None else f">= {lo:g}"
        raise UsageError(f"{what}: {value!r} is not a finite number of seconds {bound}")
    return value
