"""The ply grammar for bpf_asm: tokens -> :class:`Stmt` list (no encoding here).

The grammar is deliberately generic -- a mnemonic followed by one operand
*shape* -- and ``bpfio.assembler`` checks which shapes each mnemonic takes,
so that a wrong operand gets a message naming the mnemonic instead of a bare
"syntax error".  The set of accepted programs is exactly bpf_exp.y's: every
shape below is one that some bpf_exp.y rule spells, and the assembler rejects
the mnemonic/shape pairs bpf_exp.y has no rule for.

The tables are shipped in ``bpfio/_parsetab.py`` (regenerate with
``python -m bpfio.parser``) so start-up does not rebuild them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import ply.yacc as yacc

from .errors import AsmError
from .lexer import Lexer


@dataclass(slots=True)
class Value:
    """A number operand: a literal (value set) or a #define name (name set)."""

    value: int | None
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
    targets: list = field(default_factory=list)   # (label, pos, lineno) jump targets
    label: tuple | None = None      # (name, pos, lineno) of a label on this insn
    pos: int = 0
    lineno: int = 0


class Parser:
    """LALR parser over :class:`bpfio.lexer.Lexer` tokens."""

    tokens = Lexer.tokens

    def __init__(self):
        here = os.path.dirname(__file__)
        self.parser = yacc.yacc(module=self, tabmodule="bpfio._parsetab", outputdir=here,
                                write_tables=False, debug=False, optimize=True,
                                errorlog=yacc.NullLogger())
        self.lexer = None

    def parse(self, tokens: list, lexer: Lexer) -> list[Stmt]:
        """Parse a token list (from ``lexer.tokenize``) into statements."""
        self.lexer = lexer
        self.tokens_seen = tokens
        if not tokens:
            raise AsmError("empty program: bpf_asm needs at least one instruction",
                           filename=lexer.filename, line=1, column=1)
        it = iter(tokens)
        return self.parser.parse(lexer=_TokenFeed(it), tracking=False)

    # --- grammar ------------------------------------------------------------------
    def p_prog(self, p):
        """prog : line
                | prog line"""
        if len(p) == 2:
            p[0] = [p[1]]
        else:
            p[1].append(p[2])
            p[0] = p[1]

    def p_line(self, p):
        """line : instr
                | LABELDEF COLON instr"""
        if len(p) == 2:
            p[0] = p[1]
        else:
            p[3].label = (p[1], p.slice[1].lexpos, p.slice[1].lineno)
            p[0] = p[3]

    def p_instr(self, p):
        """instr : MNEMONIC operand
                 | DOT_INSN value COMMA value COMMA value COMMA value"""
        tok = p.slice[1]
        if tok.type == "DOT_INSN":
            p[0] = Stmt(".insn", "insn", [p[2], p[4], p[6], p[8]], pos=tok.lexpos,
                        lineno=tok.lineno)
            return
        shape, values, targets = p[2]
        p[0] = Stmt(p[1], shape, values, targets, pos=tok.lexpos, lineno=tok.lineno)

    def p_operand_empty(self, p):
        "operand :"
        p[0] = ("none", [], [])

    def p_operand_imm(self, p):
        "operand : HASH value"
        p[0] = ("imm", [p[2]], [])

    def p_operand_bare(self, p):
        "operand : bare"
        p[0] = ("bare", [p[1]], [])

    def p_operand_len(self, p):
        "operand : LEN"
        p[0] = ("len", [], [])

    def p_operand_ext(self, p):
        "operand : EXT"
        p[0] = ("ext", [Value(p[1], None, p.slice[1].lexpos, p.slice[1].lineno)], [])

    def p_operand_mem(self, p):
        "operand : M LBRACKET value RBRACKET"
        p[0] = ("mem", [p[3]], [])

    def p_operand_abs(self, p):
        "operand : LBRACKET value RBRACKET"
        p[0] = ("abs", [p[2]], [])

    def p_operand_ind(self, p):
        """operand : LBRACKET X PLUS value RBRACKET
                   | LBRACKET PERCENT X PLUS value RBRACKET"""
        p[0] = ("ind", [p[len(p) - 2]], [])

    def p_operand_msh(self, p):
        "operand : bare STAR LPAREN LBRACKET value RBRACKET AMP value RPAREN"
        p[0] = ("msh", [p[1], p[5], p[8]], [])

    def p_operand_x(self, p):
        "operand : xreg"
        p[0] = ("x", [], [])

    def p_operand_a(self, p):
        """operand : A
                   | PERCENT A"""
        p[0] = ("a", [], [])

    def p_operand_cond1(self, p):
        "operand : cond_src COMMA LABEL"
        kind, values = p[1]
        p[0] = (kind + "1", values, [self._target(p, 3)])

    def p_operand_cond2(self, p):
        "operand : cond_src COMMA LABEL COMMA LABEL"
        kind, values = p[1]
        p[0] = (kind + "2", values, [self._target(p, 3), self._target(p, 5)])

    def p_cond_src(self, p):
        """cond_src : HASH value
                    | xreg"""
        p[0] = ("k", [p[2]]) if len(p) == 3 else ("x", [])

    def p_xreg(self, p):
        """xreg : X
                | PERCENT X"""

    def p_value(self, p):
        """value : NUMBER
                 | LABEL"""
        p[0] = self._value(p, 1)

    def p_bare(self, p):
        """bare : NUMBER
                | LABEL"""
        p[0] = self._value(p, 1)

    def p_error(self, tok):
        lexer = self.lexer
        if tok is None:
            last = self.tokens_seen[-1]
            raise lexer.error("syntax error: unexpected end of input", len(lexer.text))
        text = tok.value[1] if isinstance(tok.value, tuple) else tok.value
        if tok.type == "EXT":
            text = lexer.text[tok.lexpos:].split()[0]
        raise lexer.error(f"syntax error at '{text}'", tok.lexpos)

    # --- helpers ------------------------------------------------------------------
    @staticmethod
    def _value(p, i):
        tok = p.slice[i]
        if tok.type == "NUMBER":
            return Value(tok.value[0], None, tok.lexpos, tok.lineno, tok.value[1])
        return Value(None, tok.value, tok.lexpos, tok.lineno, tok.value)

    @staticmethod
    def _target(p, i):
        tok = p.slice[i]
        return (tok.value, tok.lexpos, tok.lineno)


class _TokenFeed:
    """Adapts a token iterator to ply's ``lexer.token()`` protocol."""

    def __init__(self, it):
        self._it = it

    def token(self):
        return next(self._it, None)


def write_tables() -> str:
    """Regenerate ``bpfio/_parsetab.py`` from the grammar; return its path."""
    here = os.path.dirname(__file__)
    yacc.yacc(module=Parser.__new__(Parser), tabmodule="_parsetab", outputdir=here,
              write_tables=True, debug=False)
    return os.path.join(here, "_parsetab.py")


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    print(write_tables())
