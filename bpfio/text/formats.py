"""Program formats: render a :class:`Program` and read one back, auto-detected.

=============  ==============================================================
name           what it is (byte-exact with the tool it is named after)
=============  ==============================================================
``bpf_asm``    ``bpf_asm`` default: ``N,code jt jf k,...,`` and a newline
``xt_bpf``     ``bpfc -f xt_bpf``: the same line without the newline
``c``          ``bpf_asm -c``: ``{ %#04x, %2u, %2u, %#010x },`` (C's ``#`` flag)
``tcpdump``    ``tcpdump -ddd``: the count, then ``code jt jf k`` lines
``tcpdump-c``  ``tcpdump -dd``: ``{ 0x%x, %d, %d, 0x%08x },`` lines
``bpfc``       ``bpfc -f C``: ``{ 0x%x, %u, %u, 0x%08x },`` lines
``bpfc-tcpdump`` ``bpfc -f tcpdump``: ``code jt jf k`` lines, no count line
``raw``        binary ``struct sock_filter`` array, little-endian
``json``       ``[{"code": …, "jt": …, "jf": …, "k": …}, …]``
``asm``        bpfio's re-assemblable disassembly
=============  ==============================================================

:func:`parse_program` reads every one of them (and assembly source) back.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from bpfio.errors import BpfError, DecodeError, LimitError, UsageError
from bpfio.insn import Insn, Program
from bpfio.limits import load_json, parse_int

FORMATS = ("bpf_asm", "xt_bpf", "c", "tcpdump", "tcpdump-c", "bpfc", "bpfc-tcpdump", "raw",
           "json", "asm")


def c_alt_hex(value: int, width: int) -> str:
    """C's ``%#0{width}x``: no ``0x`` prefix for zero (``%#04x`` of 0 is ``0000``)."""
    if value == 0:
        return "0" * width
    return f"{value:#0{width}x}"


def format_program(program, fmt: str = "bpf_asm") -> str | bytes:
    """Render ``program`` in one of :data:`FORMATS` (``raw`` gives bytes)."""
    program = Program(program)
    if fmt in ("bpf_asm", "xt_bpf"):
        body = f"{len(program)}," + "".join(f"{i.code} {i.jt} {i.jf} {i.k}," for i in program)
        return body + "\n" if fmt == "bpf_asm" else body
    if fmt == "c":
        return "".join(f"{{ {c_alt_hex(i.code, 4)}, {i.jt:2d}, {i.jf:2d}, {c_alt_hex(i.k, 10)} }},\n"
                       for i in program)
    if fmt in ("tcpdump", "bpfc-tcpdump"):
        body = "".join(f"{i.code} {i.jt} {i.jf} {i.k}\n" for i in program)
        return body if fmt == "bpfc-tcpdump" else f"{len(program)}\n" + body
    if fmt in ("tcpdump-c", "bpfc"):
        return "".join(f"{{ 0x{i.code:x}, {i.jt}, {i.jf}, 0x{i.k:08x} }},\n" for i in program)
    if fmt == "raw":
        return bytes(Program(program))
    if fmt == "json":
        rows = ",\n".join(f'  {{"code": {i.code}, "jt": {i.jt}, "jf": {i.jf}, "k": {i.k}}}'
                          for i in program)
        return "[\n" + rows + "\n]\n"
    if fmt == "asm":
        from bpfio.text.disasm import disassemble
        return disassemble(program)
    raise UsageError(f"format_program: unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


# --- reading ------------------------------------------------------------------------

_INT = r"(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_C_INSN = re.compile(r"\{\s*(" + _INT + r")\s*,\s*(" + _INT + r")\s*,\s*(" + _INT + r")\s*,\s*("
                     + _INT + r")\s*\}\s*,?")
_C_NOISE = re.compile(r"^\s*(?:$|//.*|/\*.*\*/\s*$|(?:static\s+)?(?:const\s+)?struct\s+sock_filter\b.*"
                      r"|\}\s*;?\s*$|\{\s*$)")
_FOUR = re.compile(r"^[ \t\r]*([0-9]+)[ \t]+([0-9]+)[ \t]+([0-9]+)[ \t]+([0-9]+)[ \t\r]*$")
_ONE = re.compile(r"^[ \t\r]*([0-9]+)[ \t\r]*$")


def _show(text: str) -> str:
    """A line for an error message: blanks trimmed, unprintable characters escaped."""
    text = text.strip(" \t\r")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)[:80]


def _c_int(text: str) -> int:
    """A C integer literal (hex, octal, decimal); ValueError when it is not one."""
    if text.lower().startswith("0x"):
        return parse_int(text, 16)
    if len(text) > 1 and text[0] == "0":
        return parse_int(text, 8)  # C's %#x of zero prints zeros; octal 0...0 is 0 too
    return parse_int(text, 10)


def _ints(groups, filename, line) -> tuple:
    """Decimal fields of a text format, through the one limited integer reader."""
    try:
        return tuple(parse_int(g, 10) for g in groups)
    except LimitError as exc:
        raise DecodeError(str(exc), filename=filename, line=line) from None


def _make(fields, filename, line) -> Insn:
    try:
        return Insn(*fields).checked()
    except ValueError:
        raise DecodeError(f"instruction {tuple(fields)} has a field out of range "
                          "(code u16, jt/jf u8, k u32)", filename=filename, line=line) from None


def detect_format(data) -> str:
    """Guess the format of ``data`` (bytes or str); 'asm' means assembly source."""
    if isinstance(data, bytes):
        if b"\0" in data:
            return "raw"
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            return "raw"
    text = data.strip()
    if text.startswith("["):
        return "json"
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if text[:1].isdigit():  # assembly never starts with a digit: one of the numeric forms
        if "," in lines[0]:
            return "bpf_asm"
        return "tcpdump" if _ONE.match(lines[0]) else "bpfc-tcpdump"
    for ln in lines:
        if _C_NOISE.match(ln) and not _C_INSN.search(ln):
            continue
        # Assembly never starts with '{' (an unknown character to bpf_asm).
        return "c" if ln.strip().startswith("{") else "asm"
    return "asm"


def parse_program(data, *, filename: str = "<input>", include_path=(), defines=None,
                  relax: bool = False) -> Program:
    """Read a program in any supported format (bytes or str), detected from content."""
    if not isinstance(data, (str, bytes)):
        raise UsageError(f"parse_program: data must be str or bytes, not {type(data).__name__}")
    fmt = detect_format(data)
    if fmt == "raw":
        if isinstance(data, str):   # surrogateescape: a str made from undecodable bytes
            data = data.encode("utf-8", "surrogateescape")
        return Program.from_bytes(data, filename=filename)
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    if fmt == "json":
        return _parse_json(data, filename)
    if fmt == "bpf_asm":
        return _parse_bpf_asm(data, filename)
    if fmt in ("tcpdump", "bpfc-tcpdump"):
        return _parse_lines(data, filename, counted=fmt == "tcpdump")
    if fmt == "c":
        return _parse_c(data, filename)
    from bpfio.text.assembler import assemble
    return assemble(data, filename=filename, include_path=include_path, defines=defines,
                    relax=relax)


def _parse_json(text, filename):
    try:
        rows = load_json(text)
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc.msg}", filename=filename, line=exc.lineno) from None
    except LimitError as exc:
        raise DecodeError(str(exc), filename=filename) from None
    if not isinstance(rows, list):
        raise DecodeError("JSON program must be a list of instructions", filename=filename)
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, dict) and set(row) >= {"code", "jt", "jf", "k"}:
            fields = (row["code"], row["jt"], row["jf"], row["k"])
        elif isinstance(row, list) and len(row) == 4:
            fields = tuple(row)
        else:
            raise DecodeError(f"instruction {i} must be {{code, jt, jf, k}} or [code, jt, jf, k]",
                              filename=filename)
        if not all(isinstance(f, int) and not isinstance(f, bool) for f in fields):
            raise DecodeError(f"instruction {i}: fields must be integers", filename=filename)
        out.append(_make(fields, filename, None))
    return Program(out)


def _parse_bpf_asm(text, filename):
    lines = text.strip().split("\n")
    if len(lines) > 1:
        raise DecodeError("a bpf_asm program is one line: 'N,code jt jf k,...'",
                          filename=filename, line=2)
    parts = lines[0].split(",")
    head = _ONE.match(parts[0])
    if not head:
        raise DecodeError(f"'{_show(parts[0])}' is not an instruction count",
                          filename=filename, line=1)
    count = _ints(head.groups(), filename, 1)[0]
    if parts[-1].strip():
        raise DecodeError(f"'{_show(parts[-1])}' after the last ',': every record ends with ','",
                          filename=filename, line=1)
    records = parts[1:-1]
    out = []
    for i, record in enumerate(records):
        m = _FOUR.match(record)
        if not m:
            raise DecodeError(f"record {i + 1} '{_show(record)}' is not 'code jt jf k'",
                              filename=filename, line=1)
        out.append(_make(_ints(m.groups(), filename, 1), filename, 1))
    if count != len(out):
        raise DecodeError(f"bpf_asm line says {count} instructions but holds {len(out)}",
                          filename=filename, line=1)
    return Program(out)


def _parse_lines(text, filename, *, counted):
    lines = text.split("\n")
    out, count, first = [], None, True
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if first and counted:
            head = _ONE.match(line)
            if not head:
                raise DecodeError(f"'{_show(line)}' is not an instruction count",
                                  filename=filename, line=number)
            count, first = _ints(head.groups(), filename, number)[0], False
            continue
        first = False
        m = _FOUR.match(line)
        if not m:
            raise DecodeError(f"'{_show(line)}' is not 'code jt jf k'", filename=filename,
                              line=number)
        out.append(_make(_ints(m.groups(), filename, number), filename, number))
    if counted and count != len(out):
        raise DecodeError(f"count line says {count} instructions but {len(out)} follow",
                          filename=filename, line=1)
    return Program(out)


def _parse_c(text, filename):
    out = []
    for number, line in enumerate(text.split("\n"), 1):
        rest = line
        found = False
        for m in _C_INSN.finditer(line):
            found = True
            try:
                fields = tuple(_c_int(g) for g in m.groups())
            except LimitError as exc:
                raise DecodeError(str(exc), filename=filename, line=number) from None
            except ValueError:
                raise DecodeError(f"'{_show(m.group(0))}' has a number that is not a C integer "
                                  "literal", filename=filename, line=number) from None
            out.append(_make(fields, filename, number))
        if found:
            rest = _C_INSN.sub("", line)
            rest = re.sub(r"/\*.*?\*/|//.*", "", rest)
        if rest.strip() and not _C_NOISE.match(rest):
            raise DecodeError(f"cannot read '{_show(line)}' as a C instruction "
                              "'{ code, jt, jf, k },'", filename=filename, line=number)
    if not out:
        raise DecodeError("no instructions found", filename=filename)
    return Program(out)


def read_input(path: str) -> tuple[bytes, str]:
    """Read a file (``-`` = stdin) as bytes; return (data, display name)."""
    if path == "-":
        return sys.stdin.buffer.read(), "<stdin>"
    try:
        return Path(path).read_bytes(), path
    except OSError as exc:
        raise DecodeError(f"cannot read file: {exc.strerror}", filename=path) from None
    except ValueError:      # a name with a NUL byte (a dbg script or the API can pass one)
        raise DecodeError("cannot read file: its name contains a NUL byte",
                          filename=ascii(path)) from None


def load_program(path: str, *, include_path=(), defines=None, relax: bool = False) -> Program:
    """Load a program from a file or ``-`` in any format (CLI helper)."""
    data, name = read_input(path)
    if not data.strip():
        raise DecodeError("file is empty", filename=name)
    return parse_program(data, filename=name, include_path=include_path, defines=defines,
                         relax=relax)


__all__ = ["FORMATS", "BpfError", "detect_format", "format_program", "load_program",
           "parse_program", "read_input"]
