"""bpf_asm-compatible assembler: source text -> :class:`Program`.

Two stages, as in ``tools/bpf/bpf_exp.y``: stage 1 parses statements and
lowers each to an instruction with pending label references; stage 2
resolves labels -- all ``ja`` targets, then all ``jt``, then all ``jf``, so
the first error reported is the one ``bpf_asm`` would report.

What bpf_asm does, and so does this (kernel-cbpf.md §3):

* ``jneq``/``jne``, ``jlt`` and ``jle`` lower to JEQ, JGE and JGT with the
  target in ``jf``; single-target forms leave the other offset 0.
* ``ja L`` gets ``k = idx(L) - pc - 1`` as a u32, so a backward ``ja``
  assembles (the verifier rejects it).
* A conditional offset outside 0..255 is an error (``--relax`` inserts ``ja``
  trampolines instead, as libpcap's code generator does).
* Duplicate labels: the first definition wins (bpfio also warns).
* At most 4096 instructions.  No range checks on operands: ``ld M[16]``,
  ``div #0`` and ``ret x`` assemble; rejecting them is the verifier's job.

bpfio additions that no bpf_asm-valid program can contain: the preprocessor
(``#define`` names in number positions, see ``bpfio.text.preprocess``) and
``.insn code, jt, jf, k`` for instructions bpf_asm cannot spell (the
disassembler emits it for such instructions).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from bpfio.errors import AsmError, UsageError
from bpfio.insn import Insn, Program
from bpfio.isa import (BPF_A, BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_DIV, BPF_H,
                       BPF_IMM, BPF_IND, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_JSET,
                       BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MAXINSNS, BPF_MEM, BPF_MISC,
                       BPF_MOD, BPF_MSH, BPF_MUL, BPF_NEG, BPF_OR, BPF_RET, BPF_RSH, BPF_ST,
                       BPF_STX, BPF_SUB, BPF_TAX, BPF_TXA, BPF_W, BPF_X, BPF_XOR, SKF_AD_OFF)
from bpfio.text.lexer import Lexer
from bpfio.text.parser import Parser, Stmt, Value
from bpfio.text.preprocess import ConstEval, Preprocessor

_LOADS = {"ld": BPF_W, "ldh": BPF_H, "ldb": BPF_B}
_ALU = {"add": BPF_ADD, "sub": BPF_SUB, "mul": BPF_MUL, "div": BPF_DIV, "mod": BPF_MOD,
        "and": BPF_AND, "or": BPF_OR, "xor": BPF_XOR, "lsh": BPF_LSH, "rsh": BPF_RSH}
# Conditional jumps: mnemonic -> (opcode, inverted: target goes to jf, one target only).
_JUMPS = {"jeq": (BPF_JEQ, False), "jgt": (BPF_JGT, False), "jge": (BPF_JGE, False),
          "jset": (BPF_JSET, False), "jneq": (BPF_JEQ, True), "jne": (BPF_JEQ, True),
          "jlt": (BPF_JGE, True), "jle": (BPF_JGT, True)}

@dataclass
class AsmWarning:
    """A non-fatal finding (duplicate label, name shadowing...), with its place."""

    message: str
    filename: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.column}: warning: {self.message}"


@dataclass
class Assembly:
    """What the assembler produced: the program, warnings and label positions."""

    program: Program
    warnings: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)


@dataclass
class _Item:
    """An instruction under construction with its symbolic jump targets."""

    code: int
    jt: int
    jf: int
    k: int
    stmt: Stmt | None
    ref_k: tuple | None = None    # (label, pos) for ja
    ref_jt: tuple | None = None
    ref_jf: tuple | None = None


@lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser()


def assemble(text: str, *, filename: str = "<input>", include_path=(), defines=None,
             relax: bool = False) -> Program:
    """Assemble bpf_asm source text into a :class:`Program` (raises AsmError)."""
    return assemble_source(text, filename=filename, include_path=include_path,
                           defines=defines, relax=relax).program


def assemble_source(text: str, *, filename: str = "<input>", include_path=(), defines=None,
                    relax: bool = False) -> Assembly:
    """Assemble and also return warnings and label positions."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AsmError(f"source is not UTF-8 text (byte {exc.start})",
                           filename=filename) from None
    elif not isinstance(text, str):
        raise UsageError(f"assemble: source must be str or bytes, not {type(text).__name__}")
    _check_arguments(filename, include_path, defines)
    source = Preprocessor(include_path=include_path, defines=defines).run(text, filename)
    lexer = Lexer(filename=filename, defines=source.history, line_map=source.line_map)
    asm = _Assembler(lexer, source, relax)
    return asm.run(_parser().parse(source.text, lexer, asm.resolve_name))


def _check_arguments(filename, include_path, defines) -> None:
    """UsageError for API arguments of the wrong type (each would fail far from here)."""
    if not isinstance(filename, str):
        raise UsageError(f"assemble: filename must be a str, not {type(filename).__name__}")
    if isinstance(include_path, (str, bytes)) or not all(
            isinstance(d, (str, os.PathLike)) for d in _iterable(include_path, "include_path")):
        raise UsageError("assemble: include_path must be a sequence of folder paths")
    if defines is not None:
        if not isinstance(defines, Mapping):
            raise UsageError(f"assemble: defines must be a mapping of names to values, "
                             f"not {type(defines).__name__}")
        for name, value in defines.items():
            if not isinstance(name, str) or (
                    value is not None and (isinstance(value, (bool, float))
                                           or not isinstance(value, (int, str)))):
                raise UsageError(f"assemble: define {name!r}={value!r}: a name is a str and "
                                 f"a value an int, a str or None")


def _iterable(value, what: str):
    try:
        return list(value)
    except TypeError:
        raise UsageError(f"assemble: {what} must be a sequence, not {type(value).__name__}") from None


class _Assembler:
    def __init__(self, lexer: Lexer, source, relax: bool):
        self.lexer = lexer
        self.source = source
        self.relax = relax
        self.warnings: list[AsmWarning] = []

    def error(self, message: str, pos: int) -> AsmError:
        return self.lexer.error(message, pos)

    def warn(self, message: str, pos: int) -> None:
        err = self.error(message, pos)
        self.warnings.append(AsmWarning(message, err.filename, err.line, err.column))

    # --- stage 1 ----------------------------------------------------------------
    def run(self, stmts: list[Stmt]) -> Assembly:
        items: list[_Item] = []
        labels: dict[str, int] = {}
        for stmt in stmts:
            if len(items) >= BPF_MAXINSNS:
                raise self.error(f"only {BPF_MAXINSNS} instructions are allowed",
                                 stmt.pos)
            if stmt.label:
                name, pos, _ = stmt.label
                if name in labels:
                    self.warn(f"duplicate label '{name}' (the first one, at insn "
                              f"#{labels[name]}, wins as in bpf_asm)", pos)
                else:
                    labels[name] = len(items)
            items.append(self.lower(stmt))
        insns = self.resolve(items, labels)
        return Assembly(Program(insns), self.warnings, labels)

    def number(self, v: Value) -> int:
        return v.value

    def resolve_name(self, name: str, pos: int) -> int:
        """The value of a #define'd name as of the line that uses it."""
        consts = ConstEval(self.source.defines_at(self.lexer.lineno(pos)))
        try:
            return consts.value(name)
        except KeyError:
            raise self.error(f"'{name}' is not a number or a #define'd constant", pos) from None
        except ValueError as exc:
            raise self.error(f"cannot evaluate '{name}': {exc}", pos) from None

    def lower(self, s: Stmt) -> _Item:
        """Encode one statement; jump targets stay symbolic."""
        if s.mnemonic == ".insn":
            code, jt, jf, k = (self.number(v) for v in s.values)
            for val, name, top, v in ((code, "code", 0xffff, s.values[0]),
                                      (jt, "jt", 0xff, s.values[1]), (jf, "jf", 0xff, s.values[2])):
                if val > top:
                    raise self.error(f".insn {name} {val:#x} does not fit in "
                                     f"{top.bit_length()} bits", v.pos)
            return _Item(code, jt, jf, k, s)
        m, shape, vals = s.mnemonic, s.shape, s.values
        item = _Item(0, 0, 0, 0, s)
        if m in _LOADS or m == "ldi":
            size = _LOADS.get(m, BPF_W)
            if shape in ("imm", "bare"):
                item.code, item.k = BPF_LD | BPF_IMM, self.number(vals[0])
            elif shape == "len":
                item.code = BPF_LD | BPF_W | BPF_LEN
            elif shape == "ext":
                item.code, item.k = BPF_LD | size | BPF_ABS, SKF_AD_OFF + vals[0].value
            elif shape == "mem":
                item.code, item.k = BPF_LD | BPF_MEM, self.number(vals[0])
            elif shape == "ind":
                item.code, item.k = BPF_LD | size | BPF_IND, self.number(vals[0])
            else:
                item.code, item.k = BPF_LD | size | BPF_ABS, self.number(vals[0])
        elif m in ("ldx", "ldxi", "ldxb"):
            if shape in ("imm", "bare"):
                item.code, item.k = BPF_LDX | BPF_IMM, self.number(vals[0])
            elif shape == "len":
                item.code = BPF_LDX | BPF_W | BPF_LEN
            elif shape == "mem":
                item.code, item.k = BPF_LDX | BPF_MEM, self.number(vals[0])
            else:
                mul, off, mask = (self.number(v) for v in vals)
                if mul != 4 or mask != 0xf:
                    raise self.error("ldxb offset not supported: only 4*([k]&0xf) exists",
                                     s.pos)
                item.code, item.k = BPF_LDX | BPF_MSH | BPF_B, off
        elif m in ("st", "stx"):
            item.code = BPF_ST if m == "st" else BPF_STX
            item.k = self.number(vals[0])
        elif m in ("jmp", "ja"):
            item.code = BPF_JMP | BPF_JA
            item.ref_k = s.targets[0]
        elif m in _JUMPS:
            op, inverted = _JUMPS[m]
            src = BPF_X if shape[0] == "x" else BPF_K
            item.code = BPF_JMP | op | src
            if src == BPF_K:
                item.k = self.number(vals[0])
            if inverted:
                item.ref_jf = s.targets[0]
            else:
                item.ref_jt = s.targets[0]
                if len(s.targets) == 2:
                    item.ref_jf = s.targets[1]
        elif m in _ALU:
            item.code = BPF_ALU | _ALU[m] | (BPF_X if shape == "x" else BPF_K)
            if shape == "imm":
                item.k = self.number(vals[0])
        elif m == "neg":
            item.code = BPF_ALU | BPF_NEG
        elif m == "ret":
            item.code = BPF_RET | {"a": BPF_A, "x": BPF_X, "imm": BPF_K}[shape]
            if shape == "imm":
                item.k = self.number(vals[0])
        elif m == "tax":
            item.code = BPF_MISC | BPF_TAX
        elif m == "txa":
            item.code = BPF_MISC | BPF_TXA
        return item

    # --- stage 2 ----------------------------------------------------------------
    def lookup(self, ref, labels) -> int:
        name, pos, _ = ref
        if name not in labels:
            raise self.error(f"no such label '{name}'", pos)
        return labels[name]

    def resolve(self, items: list[_Item], labels: dict) -> list[Insn]:
        # Same order as bpf_stage_2_reduce_labels: every k, then every jt, then every jf.
        for attr in ("ref_k", "ref_jt", "ref_jf"):
            for item in items:
                ref = getattr(item, attr)
                if ref is not None:
                    setattr(item, attr, (ref, self.lookup(ref, labels)))
        if self.relax:
            items = self._relax(items)
        out = []
        for i, item in enumerate(items):
            if item.ref_k is not None:
                item.k = (item.ref_k[1] - i - 1) & 0xffffffff
            for attr in ("jt", "jf"):
                ref = getattr(item, "ref_" + attr)
                if ref is not None:
                    (name, pos, _), target = ref
                    delta = target - i - 1
                    if not 0 <= delta <= 255:
                        hint = "" if delta < 0 else " (use --relax for ja trampolines)"
                        raise self.error(f"insn #{i} jumps to insn #{target} ('{name}'), which "
                                         f"is out of range: conditional offsets are 0..255{hint}",
                                         pos)
                    setattr(item, attr, delta)
            out.append(Insn(item.code, item.jt, item.jf, item.k & 0xffffffff))
        return out

    def _relax(self, items: list[_Item]) -> list[_Item]:
        """Insert ``ja`` trampolines for forward conditional offsets over 255."""
        # Work with object identities: targets point at items, not indexes.
        for idx, item in enumerate(items):
            for attr in ("ref_k", "ref_jt", "ref_jf"):
                ref = getattr(item, attr)
                if ref is not None:
                    setattr(item, attr, (ref[0], items[ref[1]]))
            if item.code & 0x07 == BPF_JMP and item.code & 0xf0 != BPF_JA:
                # An implicit offset 0 is "the next source instruction" and must stay so.
                nxt = items[idx + 1] if idx + 1 < len(items) else None
                for attr in ("ref_jt", "ref_jf"):
                    if getattr(item, attr) is None and nxt is not None:
                        setattr(item, attr, (("<next>", item.stmt.pos, 0), nxt))
        changed = True
        while changed:
            changed = False
            pos = {id(it): i for i, it in enumerate(items)}
            for i, item in enumerate(items):
                for attr in ("ref_jt", "ref_jf"):
                    ref = getattr(item, attr)
                    if ref is None:
                        continue
                    delta = pos[id(ref[1])] - i - 1
                    if delta > 255:
                        tramp = _Item(BPF_JMP | BPF_JA, 0, 0, 0, item.stmt, ref_k=ref)
                        items.insert(i + 1, tramp)
                        setattr(item, attr, (ref[0], tramp))
                        changed = True
                        break
                if changed:
                    break
        pos = {id(it): i for i, it in enumerate(items)}
        for item in items:
            for attr in ("ref_k", "ref_jt", "ref_jf"):
                ref = getattr(item, attr)
                if ref is not None:
                    setattr(item, attr, (ref[0], pos[id(ref[1])]))
        return items
