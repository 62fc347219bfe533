"""Input limits, and the one place where text becomes integers and JSON values.

Every reader (the lexer and preprocessor, the program formats, event files,
configs, dbg inputs, ``--assert`` expressions, command-line values) reads
integers with :func:`parse_int` and JSON with :func:`load_json`, so one limit
holds everywhere and breaking it gives one :class:`~bpfio.errors.LimitError`
that the reader places (``file:line: error: ...``).  ``docs/limits.md`` states
these numbers; keep the two in step.

Why limits at all: Python refuses to convert decimal strings over 4,300
digits (``sys.int_info.str_digits_check_threshold``) and its JSON decoder
recurses once per nesting level, so without a check of our own such inputs
end in a raw ``ValueError`` or ``RecursionError``.
"""

from __future__ import annotations

import json
import re
import tomllib

from bpfio.errors import LimitError

MAX_DIGITS = 1000        # characters in one integer literal, prefix and sign not counted
MAX_JSON_DEPTH = 100     # nested arrays/objects in one JSON document
MAX_INT_BITS = 3000      # an int handed over by the API (``defines=``): its decimal text
                         # (at most 904 digits) stays under MAX_DIGITS

_PREFIX = re.compile(r"[+-]?(?:0[xXoObB])?")


def parse_int(text: str, base: int = 0) -> int:
    """``int(text, base)`` with a length limit: LimitError past :data:`MAX_DIGITS`.

    Any other malformed text raises ``ValueError`` as ``int`` does; callers
    place both.
    """
    text = text.strip()
    digits = len(text) - _PREFIX.match(text).end()
    if digits > MAX_DIGITS:
        raise LimitError(f"number of {digits} digits is too long (the limit is {MAX_DIGITS})")
    return int(text, base)


def check_int(value: int) -> int:
    """Return ``value`` unchanged, or raise LimitError when it is wider than :data:`MAX_INT_BITS`."""
    if value.bit_length() > MAX_INT_BITS:
        raise LimitError(f"integer of {value.bit_length()} bits is too large "
                         f"(the limit is {MAX_INT_BITS} bits)")
    return value


# A JSON string (escapes included) or one bracket; anything else cannot nest.
_JSON_NEST = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def _json_int(text: str) -> int:
    return parse_int(text, 10)


def load_json(text, *, max_depth: int = MAX_JSON_DEPTH):
    """``json.loads`` with a nesting limit and the integer limit (LimitError past either).

    Syntax errors raise ``json.JSONDecodeError`` as usual.
    """
    if isinstance(text, (bytes, bytearray)):
        text = text.decode("utf-8")
    if text.count("[") + text.count("{") > max_depth:   # the common case needs no scan
        depth = 0
        for m in _JSON_NEST.finditer(text):
            c = m.group()
            if c in "[{":
                depth += 1
                if depth > max_depth:
                    raise LimitError(f"JSON nested more than {max_depth} levels deep "
                                     f"(at character {m.start() + 1})")
            elif c in "]}":
                depth -= 1
    try:
        return json.loads(text, parse_int=_json_int)
    except RecursionError:   # cannot happen below max_depth; kept so it never escapes
        raise LimitError(f"JSON nested more than {max_depth} levels deep") from None


def load_toml(text: str) -> dict:
    """``tomllib.loads`` whose Python limits surface as LimitError.

    tomllib recurses once per nested array or inline table and converts
    integers with ``int``; its own syntax errors stay ``TOMLDecodeError``.
    """
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raise
    except RecursionError:
        raise LimitError("TOML arrays or tables nested too deeply") from None
    except ValueError:   # int() past sys.get_int_max_str_digits()
        raise LimitError("TOML integer too long (the limit is 4300 digits)") from None
