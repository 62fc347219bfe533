"""The lexer for the kernel's ``bpf_asm`` language (``tools/bpf/bpf_exp.l``).

It feeds ``ply.yacc`` (``bpfio.text.parser``) with ply-compatible tokens.  It is a
single-regex scanner rather than ``ply.lex`` for two reasons: flex picks the
*longest* match (earliest rule on a tie) while ply.lex takes the first rule
that matches, and a scanner loop is about three times faster than ply.lex's
per-token machinery (assembly speed is a benchmarked goal).  The rules are
arranged so that this scanner produces exactly flex's tokens:

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

import bisect
import re

from bpfio.errors import AsmError, LimitError
from bpfio.isa import ASM_EXTENSIONS
from bpfio.limits import parse_int

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
    """Convert a bpf_asm number token the way bpf_exp.l does, to a u32.

    A literal over ``bpfio.limits.MAX_DIGITS`` digits raises LimitError
    (bpf_asm's strtol would saturate it; no real program has one).
    """
    if len(text) < 10 and text[0] in "123456789":
        return int(text)  # the common case: a small positive decimal, no clamping
    low = text.lower()
    if low.startswith("0x"):
        value = min(parse_int(low[2:], 16), ULONG_MAX)            # strtoul
    elif low.startswith("0b"):
        value = min(parse_int(low[2:], 2), LONG_MAX)              # strtol(, 2)
    elif len(low) > 1 and low[0] == "0":
        value = min(parse_int(low[1:], 8), LONG_MAX)              # strtol(, 8)
    else:
        value = max(min(parse_int(low, 10), LONG_MAX), LONG_MIN)  # strtol(, 10)
    return value & 0xffffffff


# Mnemonic -> token class: mnemonics in one class take the same operands.
MNEMONIC_CLASS = {"ld": "OP_LD", "ldh": "OP_LDHB", "ldb": "OP_LDHB", "ldi": "OP_LDI",
                  "ldxi": "OP_LDI", "ldx": "OP_LDX", "ldxb": "OP_LDXB", "st": "OP_STORE",
                  "stx": "OP_STORE", "jmp": "OP_JA", "ja": "OP_JA", "jeq": "OP_JCOND",
                  "jgt": "OP_JCOND", "jge": "OP_JCOND", "jset": "OP_JCOND", "jneq": "OP_JINV",
                  "jne": "OP_JINV", "jlt": "OP_JINV", "jle": "OP_JINV", "neg": "OP_NOARG",
                  "tax": "OP_NOARG", "txa": "OP_NOARG", "ret": "OP_RET",
                  **{m: "OP_ALU" for m in ("add", "sub", "mul", "div", "mod", "and", "or",
                                           "xor", "lsh", "rsh")}}
assert set(MNEMONIC_CLASS) == set(MNEMONICS)
_CLASS_HELP = {"OP_LD": "#k, len, an extension word, M[k], [k] or [x + k]",
               "OP_LDHB": "[k], [x + k] or an extension word", "OP_LDI": "#k or k",
               "OP_LDX": "#k, len, M[k] or 4*([k]&0xf)", "OP_LDXB": "4*([k]&0xf)",
               "OP_STORE": "M[k]", "OP_JA": "one label", "OP_JCOND": "#k or x, then one or two labels",
               "OP_JINV": "#k or x, then exactly one label", "OP_NOARG": "no operand",
               "OP_RET": "a, x or #k", "OP_ALU": "#k or x"}
OPERAND_HELP = {m: _CLASS_HELP[c] for m, c in MNEMONIC_CLASS.items()}
OPERAND_HELP[".insn"] = "code, jt, jf, k"

# One match = optional whitespace/comments, then at most one token.  Skipping the
# blanks inside the same match halves the scanner's Python-level iterations.
_SKIP = r"(?:[ \t\n]+|/\*(?:[^*]|\*[^/])*\*/|;[^\n]*)*"
_NUM = r"0[xX][0-9a-fA-F]+|0[bB][01]+|0[0-7]+|0|[-+]?[1-9][0-9]*"
# Three common spellings -- ``#5``, ``[12]``, ``M[3]`` with nothing in between -- are one
# token each (IMM, ABSNUM, MEMNUM): a quarter fewer tokens for the parser.  Every other
# spelling still lexes piece by piece, and a combined token starts where its first piece
# would, so errors land on the same token as in bison.
_MASTER = re.compile(_SKIP + r"""(?:
    (?P<memnum>[mM]\[(?P<mn>""" + _NUM + r""")\])
  | (?P<word>[a-zA-Z_][a-zA-Z0-9_]*)
  | (?P<num>""" + _NUM + r""")
  | (?P<absnum>\[(?P<an>""" + _NUM + r""")\])
  | (?P<punct>[%:,\[\]()+*&])
  | (?P<imm>\#(?P<in>""" + _NUM + r""")(?![0-9a-zA-Z_]))
  | (?P<hash>\#)
  | (?P<insn>\.insn(?![a-zA-Z0-9_]))
)?""", re.VERBOSE)
_COMBINED = {"memnum": ("MEMNUM", "mn"), "absnum": ("ABSNUM", "an"), "imm": ("IMM", "in")}
_PUNCT = {"%": "PERCENT", ":": "COLON", ",": "COMMA", "[": "LBRACKET", "]": "RBRACKET",
          "(": "LPAREN", ")": "RPAREN", "+": "PLUS", "*": "STAR", "&": "AMP"}
_REGS = {"x": "X", "a": "A", "m": "M"}
# Whole-word keywords (caseless) -> (token type, value or None to keep the source text).
_KEYWORDS = {**{m: (c, m) for m, c in MNEMONIC_CLASS.items()},
             **{w: ("EXT", off) for w, off in ASM_EXTENSIONS.items()},
             "len": ("LEN", None), **{r: (t, None) for r, t in _REGS.items()}}


class Token:
    """A token in the shape ply.yacc expects (type, value, lineno, lexpos)."""

    __slots__ = ("type", "value", "lineno", "lexpos", "lexer")

    def __init__(self, type_, value, lexpos):
        self.type = type_
        self.value = value
        self.lexpos = lexpos
        self.lineno = 0  # computed from lexpos only when an error needs it

    def __repr__(self):
        return f"Token({self.type}, {self.value!r}, {self.lexpos})"


class Lexer:
    """Tokenizer for bpf_asm source; ``tokenize(text)`` returns a token list."""

    tokens = (*sorted(set(MNEMONIC_CLASS.values())), "LABEL", "NUMBER", "IMM", "ABSNUM",
              "MEMNUM", "LEN", "EXT", "HASH",
              "X", "A", "M", "PERCENT", "COLON", "COMMA", "LBRACKET", "RBRACKET",
              "LPAREN", "RPAREN", "PLUS", "STAR", "AMP", "DOT_INSN")

    def __init__(self, *, filename: str = "<input>", defines=None, line_map=None):
        self.filename = filename
        self.defines = defines or {}
        self.line_map = line_map
        self.text = ""
        self._newlines = None

    def tokenize(self, text: str) -> list:
        """Return every token of ``text`` (raises AsmError on an unknown character)."""
        return list(self.tokens_of(text))

    def tokens_of(self, text: str):
        """Yield the tokens of ``text`` one at a time (the parser pulls them lazily)."""
        self.text, self._newlines = text, None
        match = _MASTER.match
        keywords, defines = _KEYWORDS, self.defines
        pos, end = 0, len(text)
        pending: list[Token] = []
        while pos < end:
            m = match(text, pos)
            kind = m.lastgroup
            if kind is None:  # only blanks/comments matched
                pos = m.end()
                if pos < end:
                    raise self._unknown(text[pos], pos)
                return
            value = m.group(kind)
            pos = m.end()
            start = pos - len(value)
            if kind == "word":
                low = value.lower()
                kw = keywords.get(low)
                if kw is not None:
                    yield Token(kw[0], value if kw[1] is None else kw[1], start)
                elif len(low) > 1:
                    yield Token("LABEL", value, start)
                elif value in defines:  # bpfio: a one-letter #define'd name
                    yield Token("LABEL", value, start)
                else:
                    raise self._unknown(value, start)
            elif kind == "num":
                yield Token("NUMBER", (self._number(value, start), value), start)
            elif kind in _COMBINED:
                if kind == "imm" and (start == 0 or text[start - 1] == "\n"):
                    pos = self._hash(text, start, pending.append)  # column 0: flex's ^# rules
                    yield from pending
                    pending.clear()
                    continue
                ttype, group = _COMBINED[kind]
                number = m.group(group)
                yield Token(ttype, (self._number(number, m.start(group)), value, m.start(group)),
                            start)
            elif kind == "punct":
                yield Token(_PUNCT[value], value, start)
            elif kind == "hash":
                pos = self._hash(text, start, pending.append)
                yield from pending
                pending.clear()
            else:
                yield Token("DOT_INSN", value, start)

    def _hash(self, text, pos, append) -> int:
        """Handle '#': column-0 comment, '#len'/'#ext' token, or the immediate marker."""
        eol = text.find("\n", pos)
        eol = len(text) if eol < 0 else eol
        at_col0 = pos == 0 or text[pos - 1] == "\n"
        word = _WORD_TAIL.match(text, pos + 1)
        if (word and word.group(0) in self.defines and not at_col0
                and word.group(0).lower() not in _REGS):
            append(Token("HASH", "#", pos))  # '#NAME' of a #define
            return pos + 1
        kw = _HASH_RE.match(text, pos)
        kw_len = kw.end() - pos if kw else 1
        if at_col0 and eol - pos > kw_len:
            return eol  # ^#.* comment: the longest match wins
        if kw is None:
            append(Token("HASH", "#", pos))
            return pos + 1
        name = kw.group(1).lower()
        if name == "len":
            append(Token("LEN", kw.group(0), pos))
        else:
            append(Token("EXT", ASM_EXTENSIONS[name], pos))
        return kw.end()

    def _number(self, text: str, pos: int) -> int:
        try:
            return c_number(text)
        except LimitError as exc:
            raise self.error(str(exc), pos) from None

    def _unknown(self, char, pos) -> AsmError:
        shown = {"\r": "\\r", "\t": "\\t"}.get(char, char)
        return self.error(f"unknown character '{shown}'", pos)

    # --- positions ----------------------------------------------------------------
    def lineno(self, pos: int) -> int:
        """1-based line of a position in the (preprocessed) text."""
        if self._newlines is None:
            self._newlines = [i for i, c in enumerate(self.text) if c == "\n"]
        return bisect.bisect_left(self._newlines, pos) + 1

    def error(self, message: str, pos: int, lineno: int | None = None) -> AsmError:
        """Build an AsmError for a position in the (preprocessed) text."""
        data = self.text
        pos = min(pos, len(data))
        start = data.rfind("\n", 0, pos) + 1
        end = data.find("\n", pos)
        source = data[start:len(data) if end < 0 else end]
        lineno = self.lineno(pos)
        filename, line = self.filename, lineno
        if self.line_map is not None and 0 < lineno <= len(self.line_map):
            filename, line = self.line_map[lineno - 1]
        return AsmError(message, filename=filename, line=line,
                        column=pos - start + 1, source_line=source)
