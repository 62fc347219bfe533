"""A native subset of the C preprocessor, so programs need no external ``cpp``.

Directives (a ``#`` that starts the line, leading blanks allowed):
``#define NAME value``, ``#undef NAME``, ``#include "file"`` / ``#include
<file>``, ``#ifdef`` / ``#ifndef`` / ``#if EXPR`` / ``#elif`` / ``#else`` /
``#endif``, ``#error``.  Any other column-0 ``#`` line (cpp line markers,
plain comments) is left alone: bpf_asm treats it as a comment.

Macros are object-like and numeric: a name stands for a constant expression
(numbers in bpf_asm/C notation, other names, ``+ - * / % << >> & | ^ ~`` and
parentheses), evaluated modulo 2**32 where the assembler wants a number.  The
assembler substitutes names only in number positions, so no program that
``bpf_asm`` accepts changes meaning.

``""`` includes search the including file's folder first; both forms then
search ``include_path`` and finally bpfio's ``asm/`` folder (``pio.inc``
and the device layouts).
"""

from __future__ import annotations

import ast
import bisect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from bpfio.errors import AsmError, LimitError
from bpfio.limits import check_int, parse_int
from bpfio.text.lexer import c_number
from bpfio.resources import asm_dir

_DIRECTIVE = re.compile(r"^[ \t]*\#[ \t]*(define|undef|include|ifdef|ifndef|if|elif|else|endif|error)"
                        r"(?![A-Za-z0-9_])(.*)$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"\s*(?:(0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)|([A-Za-z_]\w*)|(<<|>>|[-+*/%&|^~()!]|==|!=|&&|\|\|))")
MAX_INCLUDE_DEPTH = 32
MAX_MACRO_DEPTH = 64      # a #define may name another one, at most this many levels
# Operands and operators in one constant expression (after macros became numbers).  The
# evaluator recurses once per operator; past this a long flat chain ("1+1+...") would
# exhaust Python's stack (RecursionError, or MemoryError in the parser) instead of failing.
MAX_EXPR_TOKENS = 256


@dataclass
class Define:
    """One macro: its replacement text and where it was defined."""

    text: str
    filename: str
    line: int


@dataclass
class Source:
    """Preprocessed text plus, for each output line, its (file, line) origin.

    ``history`` records every #define/#undef with the output line it sits on,
    so a name means what it meant on the line that uses it (as with cpp).
    """

    text: str
    line_map: list = field(default_factory=list)
    history: dict = field(default_factory=dict)  # name -> [(output line, Define | None)]
    files: dict = field(default_factory=dict)    # filename -> list of lines (for carets)

    def defines_at(self, line: int) -> "DefinesAt":
        """The macros in force on 1-based output ``line``."""
        return DefinesAt(self.history, line)


class DefinesAt:
    """A read-only mapping view of the macros in force on one output line."""

    def __init__(self, history: dict, line: int):
        self.history = history
        self.line = line

    def __contains__(self, name) -> bool:
        return self.get(name) is not None

    def __getitem__(self, name) -> Define:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name, default=None):
        entries = self.history.get(name)
        if not entries:
            return default
        # Entries are in line order; take the last one on an earlier line.
        i = bisect.bisect_left(entries, self.line, key=lambda e: e[0]) - 1
        return default if i < 0 or entries[i][1] is None else entries[i][1]


def _strip_comment(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text)
    for marker in (";", "//", "/*"):
        idx = text.find(marker)
        if idx >= 0:
            text = text[:idx]
    return text.strip()


class ConstEval:
    """Evaluates a constant expression over #define'd names, modulo 2**32."""

    _BIN = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
            ast.Mult: lambda a, b: a * b, ast.LShift: lambda a, b: a << (b & 63),
            ast.RShift: lambda a, b: a >> (b & 63), ast.BitAnd: lambda a, b: a & b,
            ast.BitOr: lambda a, b: a | b, ast.BitXor: lambda a, b: a ^ b}

    def __init__(self, defines: dict):
        self.defines = defines   # must not change while this evaluator is in use (memo)
        self._memo: dict[str, int] = {}
        self._open: set[str] = set()

    def value(self, name: str, *, _depth: int = 0) -> int:
        """Return the u32 value of a defined name (KeyError if undefined).

        Each name is evaluated once per evaluator and remembered, so a chain
        ``X1 (X0+X0)``, ``X2 (X1+X1)``, ... costs one step per name, not 2**n.
        """
        if name in self._memo:
            return self._memo[name]
        if name in self._open:
            raise ValueError(f"'{name}' is defined in terms of itself")
        if _depth >= MAX_MACRO_DEPTH:
            raise ValueError(f"#define names nest more than {MAX_MACRO_DEPTH} levels deep "
                             f"(at '{name}')")
        d = self.defines[name]
        self._open.add(name)
        try:
            value = self.expr(d.text, _depth=_depth + 1) & 0xffffffff
        finally:
            self._open.discard(name)
        self._memo[name] = value
        return value

    def expr(self, text: str, *, _depth: int = 0, allow_defined: bool = False) -> int:
        """Evaluate ``text``; raise ValueError with a reason when it is not constant."""
        out, pos = [], 0
        text = text.strip()
        if not text:
            raise ValueError("empty value")
        while pos < len(text):
            if len(out) >= MAX_EXPR_TOKENS:
                raise ValueError(f"constant expression has more than {MAX_EXPR_TOKENS} tokens")
            m = _TOKEN.match(text, pos)
            if not m:
                raise ValueError(f"cannot read '{text[pos:].strip()}' as part of a constant")
            num, name, op = m.groups()
            pos = m.end()
            if num is not None:
                if len(num) > 1 and num[0] == "0" and num[1] not in "xXbB" and not set(num) <= set("01234567"):
                    raise ValueError(f"'{num}' is not a valid octal number")
                out.append(str(c_number(num) if num[:2].lower() in ("0x", "0b") or num[0] == "0"
                               else parse_int(num, 10)))
            elif name is not None:
                if allow_defined and name == "defined":
                    m2 = re.match(r"\s*\(?\s*([A-Za-z_]\w*)\s*\)?", text[pos:])
                    if not m2:
                        raise ValueError("defined needs a name")
                    out.append("1" if m2.group(1) in self.defines else "0")
                    pos += m2.end()
                elif name in self.defines:
                    out.append(str(self.value(name, _depth=_depth)))
                elif allow_defined:
                    out.append("0")  # cpp: an unknown name in #if is 0
                else:
                    raise ValueError(f"'{name}' is not defined")
            else:
                out.append({"&&": " and ", "||": " or ", "!": " not ", "/": "//"}.get(op, op))
        try:
            tree = ast.parse(" ".join(out), mode="eval")
        except SyntaxError:
            raise ValueError(f"'{text}' is not a constant expression") from None
        except (RecursionError, MemoryError):   # CPython's parser on very deep nesting
            raise ValueError("constant expression is nested too deeply") from None
        try:
            return self._eval(tree.body)
        except RecursionError:
            raise ValueError("constant expression is nested too deeply") from None

    def _eval(self, node) -> int:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in self._BIN:
            return self._BIN[type(node.op)](self._eval(node.left), self._eval(node.right))
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.FloorDiv, ast.Mod)):
            a, b = self._eval(node.left), self._eval(node.right)
            if b == 0:
                raise ValueError("division by zero in a constant")
            return a // b if isinstance(node.op, ast.FloorDiv) else a % b
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand)
            if isinstance(node.op, ast.USub):
                return -v
            if isinstance(node.op, ast.UAdd):
                return v
            if isinstance(node.op, ast.Invert):
                return ~v & 0xffffffff
            if isinstance(node.op, ast.Not):
                return int(not v)
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            a, b = self._eval(node.left), self._eval(node.comparators[0])
            if isinstance(node.ops[0], ast.Eq):
                return int(a == b)
            if isinstance(node.ops[0], ast.NotEq):
                return int(a != b)
        if isinstance(node, ast.BoolOp):
            vals = [self._eval(v) for v in node.values]
            return int(all(vals) if isinstance(node.op, ast.And) else any(vals))
        raise ValueError("not a constant expression")


class Preprocessor:
    """Expands directives into a :class:`Source` for the lexer."""

    def __init__(self, *, include_path=(), defines=None):
        self.include_path = [Path(p) for p in include_path]
        self.defines: dict[str, Define] = {}
        for name, value in (defines or {}).items():
            if isinstance(value, int):
                try:
                    check_int(value)
                except LimitError as exc:
                    raise AsmError(f"define '{name}': {exc}", filename="<command line>") from None
            self.defines[name] = Define("1" if value is None else str(value), "<command line>", 0)

    def run(self, text: str, filename: str = "<input>") -> Source:
        """Preprocess ``text`` (from ``filename``) and everything it includes."""
        src = Source("", [], {}, {})
        for name, d in self.defines.items():
            src.history[name] = [(0, d)]
        out: list[str] = []
        self._src = src
        self._file(text, filename, src, out, depth=0)
        src.text = "\n".join(out)
        return src

    def _error(self, message, filename, line, source_line, column=1):
        return AsmError(message, filename=filename, line=line, column=column,
                        source_line=source_line)

    def _file(self, text, filename, src, out, depth):
        lines = text.split("\n")
        src.files[filename] = lines
        stack: list[list] = []  # [active, taken, else_seen, line]
        active = True
        for number, line in enumerate(lines, 1):
            m = _DIRECTIVE.match(line)
            if not m:
                out.append(line if active else "")
                src.line_map.append((filename, number))
                continue
            out.append("")
            src.line_map.append((filename, number))
            word, rest = m.group(1), _strip_comment(m.group(2))
            err = lambda msg: self._error(msg, filename, number, line)  # noqa: E731
            if word in ("ifdef", "ifndef", "if"):
                if word == "if":
                    cond = self._cond(rest, err) if active else False
                else:
                    name = self._name(rest, word, err)
                    cond = (name in self.defines) == (word == "ifdef")
                stack.append([active, cond, False, number])
                active = active and cond
                continue
            if word in ("elif", "else", "endif"):
                if not stack:
                    raise err(f"#{word} without #if")
                frame = stack[-1]
                if word == "endif":
                    stack.pop()
                    active = frame[0]
                    continue
                if frame[2]:
                    raise err(f"#{word} after #else")
                if word == "else":
                    frame[2] = True
                    active = frame[0] and not frame[1]
                    frame[1] = True
                else:
                    cond = (not frame[1]) and frame[0] and self._cond(rest, err)
                    active = cond
                    frame[1] = frame[1] or cond
                continue
            if not active:
                continue
            if word == "define":
                name_m = _NAME.match(rest)
                if not name_m:
                    raise err("#define needs a name")
                name = name_m.group(0)
                body = rest[name_m.end():]
                if body.startswith("("):
                    raise err(f"#define {name}(...): only object-like macros are supported")
                self.defines[name] = Define(body.strip() or "1", filename, number)
                src.history.setdefault(name, []).append((len(out), self.defines[name]))
            elif word == "undef":
                name = self._name(rest, word, err)
                self.defines.pop(name, None)
                src.history.setdefault(name, []).append((len(out), None))
            elif word == "include":
                self._include(rest, filename, src, out, depth, err)
            elif word == "error":
                raise err(f"#error {rest}".rstrip())
        if stack:
            raise self._error(f"#if without #endif (opened at line {stack[-1][3]})",
                              filename, stack[-1][3], lines[stack[-1][3] - 1])

    @staticmethod
    def _name(rest, word, err):
        m = _NAME.fullmatch(rest.strip())
        if not m:
            raise err(f"#{word} needs one name")
        return m.group(0)

    def _cond(self, rest, err) -> bool:
        try:
            return bool(ConstEval(self.defines).expr(rest, allow_defined=True))
        except ValueError as exc:
            raise err(f"#if: {exc}") from None

    def _include(self, rest, filename, src, out, depth, err):
        m = re.fullmatch(r'"([^"]+)"|<([^>]+)>', rest.strip())
        if not m:
            raise err('#include needs "file" or <file>')
        name = m.group(1) or m.group(2)
        candidates = []
        if m.group(1) and filename not in ("<input>", "<stdin>", "-"):
            candidates.append(Path(filename).parent / name)
        candidates += [d / name for d in self.include_path]
        try:
            candidates.append(asm_dir() / name)
        except FileNotFoundError:
            pass
        for path in candidates:
            if os.path.isfile(path):       # never raises (a name too long: False)
                break
        else:
            where = ", ".join(str(d) for d in [*self.include_path, "asm/"])
            raise err(f"cannot find include file '{name}' (searched: {where})")
        if depth >= MAX_INCLUDE_DEPTH:
            raise err(f"#include nested more than {MAX_INCLUDE_DEPTH} deep (recursive include?)")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise err(f"cannot read include file '{path}': {exc}") from None
        self._file(text, str(path), src, out, depth + 1)
