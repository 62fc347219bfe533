"""The ply lexer for the kernel's ``bpf_asm`` language (``tools/bpf/bpf_exp.l``).

flex picks the *longest* match and, on a tie, the earliest rule; ply tries
rules in order.  The rules below are arranged so both give the same tokens:

* One word rule classifies identifiers: a whole-word keyword (caseless) wins
  over a label of the same length; any longer word is a label; labels need
  two characters, so a lone ``x``/``a``/``M`` is a register token and any
  other lone letter is an unknown character, as in ``bpf_asm``.
* ``#`` followed by an extension word (``#len``, ``#proto`` ...) is one token
  even when more letters follow (flex's longest match stops at the keyword:
  ``#lenfoo`` is ``#len`` then the label ``foo``).  bpfio extension: when the
  whole word after ``#`` is a ``#define``\\ d name, it is that name instead.
* Numbers: hex ``0x…`` (strtoul), binary ``0b…``, octal ``0[0-7]+`` and
  signed decimal ``0 | [-+]?[1-9][0-9]*`` (strtol), each clamped like the C
  call and then truncated to 32 bits.  ``+5`` is one number, so ``[x+5]``
  is a syntax error exactly as in ``bpf_asm``.
* Comments: ``/* … */`` (flex's pattern, so a body ending in ``**/`` does not
  close), ``;`` to end of line, and ``#`` in column 0 to end of line (a line
  that is exactly ``#len``/``#proto``/``#`` lexes as that token, as in flex).
* Whitespace is space, tab and newline only; ``\\r`` is an unknown character.
"""

from __future__ import annotations

import re

import ply.lex as lex

from .errors import AsmError
from .isa import ASM_EXTENSIONS

MNEMONICS = ("ldb", "ldh", "ld", "ldi", "ldx", "ldxi", "ldxb", "st", "stx", "jmp", "ja",
             "jeq", "jneq", "jne", "jlt", "jle", "jgt", "jge", "jset", "add", "sub", "mul",
             "div", "mod", "neg", "and", "xor", "or", "lsh", "rsh", "ret", "tax", "txa")
# Keywords that may follow '#' in one token: len and the extension words.
_HASH_WORDS = sorted(["len", *ASM_EXTENSIONS], key=len, reverse=True)
_HASH_RE = re.compile("#(" + "|".join(_HASH_WORDS) + ")", re.IGNORECASE)
_WORD_TAIL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

LONG_MAX = (1 << 63) - 1
LONG_MIN = -(1 << 63)
ULONG_MAX = (1 << 64) - 1


def c_number(text: str) -> int:
    """Convert a bpf_asm number token the way bpf_exp.l does, to a u32."""
    low = text.lower()
    if low.startswith("0x"):
        value = min(int(low[2:], 16), ULONG_MAX)            # strtoul
    elif low.startswith("0b"):
        value = min(int(low[2:], 2), LONG_MAX)              # strtol(, 2)
    elif len(low) > 1 and low[0] == "0":
        value = min(int(low[1:], 8), LONG_MAX)              # strtol(, 8)
    else:
        value = max(min(int(low, 10), LONG_MAX), LONG_MIN)  # strtol(, 10)
    return value & 0xffffffff


class Lexer:
    """Tokenizer for bpf_asm source; ``tokenize(text)`` returns a token list."""

    tokens = ("MNEMONIC", "LABEL", "LABELDEF", "NUMBER", "LEN", "EXT", "HASH",
              "X", "A", "M", "PERCENT", "COLON", "COMMA", "LBRACKET", "RBRACKET",
              "LPAREN", "RPAREN", "PLUS", "STAR", "AMP", "DOT_INSN")

    t_ignore = " \t"

    def __init__(self, *, filename: str = "<input>", defines=None, line_map=None):
        self.filename = filename
        self.defines = defines or {}
        self.line_map = line_map
        self.lexer = lex.lex(module=self, reflags=re.VERBOSE | re.IGNORECASE,
                             optimize=False, debug=False)

    # --- comments and newlines -------------------------------------------------
    def t_COMMENT_C(self, t):
        r"/\*([^*]|\*[^/])*\*/"
        t.lexer.lineno += t.value.count("\n")

    def t_COMMENT_SEMI(self, t):
        r";[^\n]*"

    def t_newline(self, t):
        r"\n+"
        t.lexer.lineno += len(t.value)

    # --- bpfio extension: `.insn code, jt, jf, k` for instructions bpf_asm cannot spell
    def t_DOT_INSN(self, t):
        r"\.insn(?![a-zA-Z0-9_])"
        return t

    # --- '#': column-0 comment, extension token, or the immediate marker --------
    def t_HASH(self, t):
        r"\#"
        data, pos = t.lexer.lexdata, t.lexpos
        eol = data.find("\n", pos)
        eol = len(data) if eol < 0 else eol
        at_col0 = pos == 0 or data[pos - 1] == "\n"
        word = _WORD_TAIL.match(data, pos + 1)
        if word and word.group(0) in self.defines and not at_col0:
            return t  # '#NAME' of a #define: the name follows as its own token
        kw = _HASH_RE.match(data, pos)
        kw_len = kw.end() - pos if kw else 1
        if at_col0 and eol - pos > kw_len:
            t.lexer.lexpos = eol  # ^#.* comment: longest match wins
            return None
        if kw:
            t.lexer.lexpos = kw.end()
            name = kw.group(1).lower()
            if name == "len":
                t.type, t.value = "LEN", "#len"
            else:
                t.type, t.value = "EXT", ASM_EXTENSIONS[name]
        return t

    def t_NUMBER(self, t):
        r"0[xX][0-9a-fA-F]+ | 0[bB][01]+ | 0[0-7]+ | 0 | [-+]?[1-9][0-9]*"
        t.value = (c_number(t.value), t.value)
        return t

    def t_WORD(self, t):
        r"[a-zA-Z_][a-zA-Z0-9_]*"
        low = t.value.lower()
        if low in MNEMONICS:
            t.type = "MNEMONIC"
            t.value = low
        elif low == "len":
            t.type = "LEN"
        elif low in ASM_EXTENSIONS:
            t.type, t.value = "EXT", ASM_EXTENSIONS[low]
        elif len(low) == 1:
            if low in "xam":
                t.type = {"x": "X", "a": "A", "m": "M"}[low]
            else:
                self._unknown(t.value, t.lexpos, t.lexer)
        else:
            t.type = "LABEL"
        return t

    t_PERCENT = r"%"
    t_COLON = r":"
    t_COMMA = r","
    t_LBRACKET = r"\["
    t_RBRACKET = r"\]"
    t_LPAREN = r"\("
    t_RPAREN = r"\)"
    t_PLUS = r"\+"
    t_STAR = r"\*"
    t_AMP = r"&"

    def t_error(self, t):
        self._unknown(t.value[0], t.lexpos, t.lexer)

    def _unknown(self, char, pos, lexer):
        shown = {"\r": "\\r", "\t": "\\t"}.get(char, char)
        raise self.error(f"unknown character '{shown}'", pos, lexer.lineno)

    # --- positions ----------------------------------------------------------------
    def error(self, message: str, pos: int, lineno: int) -> AsmError:
        """Build an AsmError for a position in the (preprocessed) text."""
        data = self.lexer.lexdata
        start = data.rfind("\n", 0, pos) + 1
        end = data.find("\n", pos)
        source = data[start:len(data) if end < 0 else end]
        filename, line = self.filename, lineno
        if self.line_map is not None and 0 < lineno <= len(self.line_map):
            filename, line = self.line_map[lineno - 1]
        return AsmError(message, filename=filename, line=line,
                        column=pos - start + 1, source_line=source)

    def tokenize(self, text: str) -> list:
        """Return every token of ``text``; LABEL before ':' becomes LABELDEF."""
        lexer = self.lexer
        lexer.input(text)
        lexer.lineno = 1
        toks = list(iter(lexer.token, None))
        for i, tok in enumerate(toks[:-1]):
            if tok.type == "LABEL" and toks[i + 1].type == "COLON":
                tok.type = "LABELDEF"
        return toks
