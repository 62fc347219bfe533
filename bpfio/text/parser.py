"""The ply grammar for bpf_asm: tokens -> :class:`Stmt` list (no encoding here).

The lexer sorts mnemonics into classes that take the same operands (``ldh``
and ``ldb``; all ALU ops; ...), so the grammar stays small -- one rule per
operand family, not per mnemonic -- yet accepts exactly bpf_exp.y's programs
and fails at the same token bison fails at.  The syntax error then also
names the operands the mnemonic takes.

The tables are shipped in ``bpfio/text/_parsetab.py`` (regenerate with
``python -m bpfio.text.parser``) so start-up does not rebuild them.
"""

from __future__ import annotations

import functools
import itertools
import os
from dataclasses import dataclass, field

import ply.yacc as yacc

from bpfio.errors import BpfError
from bpfio.text.lexer import Lexer, OPERAND_HELP


@dataclass(slots=True)
class Value:
    """A number operand: a literal, or a #define'd name (then ``name`` is set too)."""

    value: int
    name: str | None
    pos: int
    lineno: int
    text: str = ""


@dataclass(slots=True)
class Stmt:
    """One source instruction: mnemonic, operand shape and operands, with its place."""

    mnemonic: str
    shape: str                      # see the grammar below
    values: list = field(default_factory=list)    # Value operands in source order
    targets: list = field(default_factory=list)   # (label, pos, 0) jump targets
    label: tuple | None = None      # (name, pos, 0) of a label on this insn
    pos: int = 0


class Parser:
    """LALR parser over :class:`bpfio.text.lexer.Lexer` tokens."""

    tokens = Lexer.tokens

    def __init__(self):
        here = os.path.dirname(__file__)
        self.parser = yacc.yacc(module=self, tabmodule="bpfio.text._parsetab", outputdir=here,
                                write_tables=False, debug=False, optimize=True,
                                errorlog=yacc.NullLogger())
        self.lexer = None

    def parse(self, text: str, lexer: Lexer, resolve=None) -> list[Stmt]:
        """Parse ``text`` into statements, lexing lazily as bison does.

        Tokens are produced on demand, so a syntax error is reported before
        an unknown character further down, in the same order as bpf_asm.
        """
        self.lexer = lexer
        self.resolve = resolve
        try:
            # Fast path: lex the whole text first and feed ply from a list iterator (a C
            # call per token instead of two Python frames).  Any lexer error sends the
            # text down the lazy path, so that the error bison would meet first wins.
            tokens = lexer.tokenize(text)
        except BpfError:
            tokens = None
        if tokens is None:
            self.tokens_seen = []
            lazy = lexer.tokens_of(text)
            first = next(lazy, None)
            feed = _TokenFeed(itertools.chain((first,), lazy), self.tokens_seen)
        else:
            self.tokens_seen = tokens   # p_error only looks at tokens before the bad one
            first = tokens[0] if tokens else None
            feed = _ListFeed(tokens)
        if first is None:
            raise lexer.error("empty program: bpf_asm needs at least one instruction",
                              len(text))
        return self.parser.parse(lexer=feed, tracking=False)

    # --- grammar ------------------------------------------------------------------
    # Mnemonics arrive as token classes (see lexer.MNEMONIC_CLASS) so that, as in
    # bpf_exp.y, a wrong operand fails at the same token bison fails at.
    # The rules are flat (operand shapes inlined where they are used) because every
    # reduction costs a Python call: half the reductions, a third less parse time.
    def p_prog_first(self, p):
        """prog : instr
                | LABEL COLON instr"""
        if len(p) == 4:
            p[3].label = (p[1], p.slice[1].lexpos, 0)
        p[0] = [p[len(p) - 1]]

    def p_prog_more(self, p):
        """prog : prog instr
                | prog LABEL COLON instr"""
        if len(p) == 5:
            p[4].label = (p[2], p.slice[2].lexpos, 0)
        p[1].append(p[len(p) - 1])
        p[0] = p[1]

    def p_instr(self, p):
        """instr : OP_LD imm
                 | OP_LD len
                 | OP_LD ext
                 | OP_LD mem
                 | OP_LD ind
                 | OP_LD abs
                 | OP_LDHB ind
                 | OP_LDHB abs
                 | OP_LDHB ext
                 | OP_LDI imm
                 | OP_LDI bare
                 | OP_LDX imm
                 | OP_LDX len
                 | OP_LDX mem
                 | OP_LDX msh
                 | OP_LDXB msh
                 | OP_STORE mem
                 | OP_JA target
                 | OP_JCOND cond1
                 | OP_JCOND cond2
                 | OP_JINV cond1
                 | OP_ALU imm
                 | OP_ALU xreg
                 | OP_RET imm
                 | OP_RET xreg
                 | OP_RET areg
                 | OP_NOARG"""
        tok = p.slice[1]
        shape, values, targets = p[2] if len(p) == 3 else ("none", [], [])
        p[0] = Stmt(tok.value, shape, values, targets, pos=tok.lexpos)

    def p_instr_insn(self, p):
        "instr : DOT_INSN value COMMA value COMMA value COMMA value"
        p[0] = Stmt(".insn", "insn", [p[2], p[4], p[6], p[8]], pos=p.slice[1].lexpos)

    def p_imm(self, p):
        """imm : HASH NUMBER
               | HASH LABEL
               | IMM"""
        p[0] = ("imm", [self._value(p, len(p) - 1)], [])

    def p_bare(self, p):
        """bare : NUMBER
                | LABEL"""
        p[0] = ("bare", [self._value(p, 1)], [])

    def p_len(self, p):
        "len : LEN"
        p[0] = ("len", [], [])

    def p_ext(self, p):
        "ext : EXT"
        p[0] = ("ext", [Value(p[1], None, p.slice[1].lexpos, 0)], [])

    def p_mem(self, p):
        """mem : M LBRACKET NUMBER RBRACKET
               | M LBRACKET LABEL RBRACKET
               | M ABSNUM
               | MEMNUM"""
        p[0] = ("mem", [self._value(p, {5: 3, 3: 2, 2: 1}[len(p)])], [])

    def p_abs(self, p):
        """abs : LBRACKET NUMBER RBRACKET
               | LBRACKET LABEL RBRACKET
               | ABSNUM"""
        p[0] = ("abs", [self._value(p, 2 if len(p) == 4 else 1)], [])

    def p_ind(self, p):
        """ind : LBRACKET X PLUS NUMBER RBRACKET
               | LBRACKET X PLUS LABEL RBRACKET
               | LBRACKET PERCENT X PLUS NUMBER RBRACKET
               | LBRACKET PERCENT X PLUS LABEL RBRACKET"""
        p[0] = ("ind", [self._value(p, len(p) - 2)], [])

    def p_msh(self, p):
        """msh : NUMBER STAR LPAREN LBRACKET value RBRACKET AMP value RPAREN
               | NUMBER STAR LPAREN ABSNUM AMP value RPAREN"""
        if len(p) == 10:
            p[0] = ("msh", [self._value(p, 1), p[5], p[8]], [])
        else:
            p[0] = ("msh", [self._value(p, 1), self._value(p, 4), p[6]], [])

    def p_target(self, p):
        "target : LABEL"
        p[0] = ("bare", [], [self._target(p, 1)])

    def p_xreg(self, p):
        """xreg : X
                | PERCENT X"""
        p[0] = ("x", [], [])

    def p_areg(self, p):
        """areg : A
                | PERCENT A"""
        p[0] = ("a", [], [])

    def p_cond1(self, p):
        """cond1 : HASH NUMBER COMMA LABEL
                 | HASH LABEL COMMA LABEL
                 | IMM COMMA LABEL
                 | X COMMA LABEL
                 | PERCENT X COMMA LABEL"""
        if p.slice[1].type == "IMM":
            p[0] = ("k1", [self._value(p, 1)], [self._target(p, 3)])
        elif p.slice[1].type == "HASH":
            p[0] = ("k1", [self._value(p, 2)], [self._target(p, 4)])
        else:
            p[0] = ("x1", [], [self._target(p, len(p) - 1)])

    def p_cond2(self, p):
        """cond2 : HASH NUMBER COMMA LABEL COMMA LABEL
                 | HASH LABEL COMMA LABEL COMMA LABEL
                 | IMM COMMA LABEL COMMA LABEL
                 | X COMMA LABEL COMMA LABEL
                 | PERCENT X COMMA LABEL COMMA LABEL"""
        n = len(p)
        if p.slice[1].type == "IMM":
            p[0] = ("k2", [self._value(p, 1)], [self._target(p, 3), self._target(p, 5)])
        elif p.slice[1].type == "HASH":
            p[0] = ("k2", [self._value(p, 2)], [self._target(p, 4), self._target(p, 6)])
        else:
            p[0] = ("x2", [], [self._target(p, n - 3), self._target(p, n - 1)])

    def p_value(self, p):
        """value : NUMBER
                 | LABEL"""
        p[0] = self._value(p, 1)

    def p_error(self, tok):
        lexer = self.lexer
        if tok is None:
            raise lexer.error("syntax error: unexpected end of input", len(lexer.text))
        text = tok.value[1] if isinstance(tok.value, tuple) else tok.value
        if tok.type in ("EXT", "LEN") or tok.type.startswith("OP_"):
            text = lexer.text[tok.lexpos:].split()[0]
        hint = ""
        before = [t for t in self.tokens_seen if t.lexpos < tok.lexpos]
        mnemonic = next((t for t in reversed(before) if t.type.startswith("OP_")
                         or t.type == "DOT_INSN"), None)
        if mnemonic is not None and mnemonic.value in OPERAND_HELP:
            hint = f" ('{mnemonic.value}' takes {OPERAND_HELP[mnemonic.value]})"
        raise lexer.error(f"syntax error at '{text}'{hint}", tok.lexpos)

    # --- helpers ------------------------------------------------------------------
    def _value(self, p, i):
        tok = p.slice[i]
        if tok.type == "NUMBER":
            return Value(tok.value[0], None, tok.lexpos, 0, tok.value[1])
        if tok.type in ("IMM", "ABSNUM", "MEMNUM"):  # the number inside a combined token
            return Value(tok.value[0], None, tok.value[2], 0, tok.value[1])
        # A name in a number position: a #define'd constant, resolved now so that an
        # unknown name is reported where bison reports its syntax error.
        if self.resolve is None:
            raise self.lexer.error(f"syntax error at '{tok.value}'", tok.lexpos)
        return Value(self.resolve(tok.value, tok.lexpos), tok.value, tok.lexpos, 0, tok.value)

    @staticmethod
    def _target(p, i):
        tok = p.slice[i]
        return (tok.value, tok.lexpos, 0)


class _TokenFeed:
    """Adapts a token iterator to ply's ``lexer.token()`` protocol, keeping what it gave."""

    def __init__(self, it, seen: list):
        self._it = it
        self._seen = seen

    def token(self):
        tok = next(self._it, None)
        if tok is not None:
            self._seen.append(tok)
        return tok


class _ListFeed:
    """ply's ``lexer.token()`` over a ready token list: ``token`` is a C-level callable."""

    def __init__(self, tokens: list):
        self.token = functools.partial(next, iter(tokens), None)


def write_tables() -> str:
    """Regenerate ``bpfio/text/_parsetab.py`` from the grammar; return its path."""
    here = os.path.dirname(__file__)
    path = os.path.join(here, "_parsetab.py")
    if os.path.exists(path):
        os.unlink(path)  # else ply may keep a stale table it can still import
    yacc.yacc(module=Parser.__new__(Parser), tabmodule="_parsetab", outputdir=here,
              write_tables=True, debug=False)
    return path


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    print(write_tables())
