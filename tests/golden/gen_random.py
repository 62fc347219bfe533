"""Write the generated part of the golden bpf_asm corpus (seeded, reproducible).

    python tests/golden/gen_random.py            # rewrite asm/random_*.bpf, asm/big_*.bpf,
                                                 # asm_errors/big_*.bpf
    python tests/golden/gen_random.py --count 50 --seed 7   # other sizes / seeds

Every random program is *valid* for the kernel's bpf_asm: conditional jumps go
forward by at most 255 instructions, ``ja``/``jmp`` go anywhere (backward too),
labels have at least two characters and are never keywords, and a ``+`` is
never glued to a number starting with 1-9 (``[x+5]`` is the lexer trap).  The
variety is in the spelling: every mnemonic and alias, ``x``/``%x``/``a``/``%a``,
extension words with and without ``#``, numbers in decimal, signed decimal
(wrapping), hex, octal and binary, random case for keywords, random spacing,
all three comment kinds, several instructions on one line, ``label:`` glued or
spaced.  The outputs (``.bpf_asm``, ``.c``) come from ``regen.py``.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Words the lexer turns into tokens; a label equal to one of them (caselessly)
# is not a label.  Longer words that merely start with them are fine.
KEYWORDS = {
    "ldb", "ldh", "ld", "ldi", "ldx", "ldxi", "ldxb", "st", "stx", "jmp", "ja",
    "jeq", "jneq", "jne", "jlt", "jle", "jgt", "jge", "jset", "add", "sub", "mul",
    "div", "mod", "neg", "and", "xor", "or", "lsh", "rsh", "ret", "tax", "txa",
    "len", "proto", "type", "poff", "ifidx", "nla", "nlan", "mark", "queue",
    "hatype", "rxhash", "cpu", "vlan_tci", "vlan_pr", "vlan_avail", "vlan_tpid",
    "rand",
}
EXTENSIONS = ["proto", "type", "poff", "ifidx", "nla", "nlan", "mark", "queue",
              "hatype", "rxhash", "cpu", "vlan_tci", "vlan_pr", "vlan_avail",
              "vlan_tpid", "rand"]
ALU = ["add", "sub", "mul", "div", "mod", "and", "or", "xor", "lsh", "rsh"]
COND2 = ["jeq", "jgt", "jge", "jset"]          # one or two targets
COND1 = ["jneq", "jne", "jlt", "jle"]          # exactly one (false) target
LABEL_STEMS = ["lbl", "drop", "pass", "L", "ok", "ld", "ret", "x", "M", "a",
               "jmp", "proto", "Out", "_t", "tgt", "len"]


class Gen:
    """One random program writer; all choices come from ``self.r``."""

    def __init__(self, r: random.Random):
        self.r = r

    def case(self, word: str) -> str:
        """Random letter case for a caseless keyword."""
        r = self.r
        mode = r.random()
        if mode < 0.7:
            return word
        if mode < 0.85:
            return word.upper()
        return "".join(c.upper() if r.random() < 0.5 else c for c in word)

    def sp(self, need: bool = False) -> str:
        """Random horizontal whitespace."""
        r = self.r
        return r.choice([" ", " ", "  ", "\t", " \t "] if need else ["", " ", " ", "  ", "\t"])

    def value(self) -> int:
        """An interesting u32."""
        r = self.r
        pick = r.random()
        if pick < 0.35:
            return r.randrange(0, 16)
        if pick < 0.6:
            return r.randrange(0, 0x10000)
        if pick < 0.7:
            return r.choice([0x7fffffff, 0x80000000, 0xffffffff, 0xfffff000, 0xfff00000,
                             0xffe00000, 0x7fff0000, 0x100, 0xff])
        return r.randrange(0, 1 << 32)

    def number(self, v: int) -> str:
        """Spell the u32 ``v`` in one of the ways bpf_asm reads as ``v``."""
        r = self.r
        forms = ["dec", "hex", "hex", "oct", "bin"]
        if v >= 1:
            forms.append("plus")
        if v >= 0x80000000:
            forms += ["neg", "neg"]
        forms.append("wrap")
        form = r.choice(forms)
        if form == "dec":
            return str(v)
        if form == "hex":
            digits = format(v, "x")
            digits = "".join(c.upper() if r.random() < 0.3 else c for c in digits)
            if r.random() < 0.2:
                digits = "0" * r.randrange(1, 4) + digits
            return self.case("0x") + digits
        if form == "oct":
            return "0" + format(v, "o") if v else r.choice(["0", "00", "000"])
        if form == "bin":
            return self.case("0b") + format(v, "b")
        if form == "plus":
            return "+" + str(v)
        if form == "neg":
            return str(v - (1 << 32))
        # A decimal that differs from v by a multiple of 2^32 (still inside a C long).
        if v == 0:
            return r.choice(["4294967296", "-4294967296", "8589934592"])
        m = r.choice([1, 2, 3, -1, -2])
        w = v + m * (1 << 32)
        return str(w) if w != 0 else str(v)

    def msh(self) -> str:
        """The ``4*([k]&0xf)`` operand with random spellings of 4 and 0xf."""
        r = self.r
        # 2^32 + 4 also reads as 4 in bpf_asm (u32), but bpfc rejects it: keep it rare.
        four = "4294967300" if r.random() < 0.03 else r.choice(["4", "0x4", "04", "0b100", "+4"])
        fifteen = r.choice(["0xf", "0XF", "15", "017", "0b1111", "+15"])
        s = self.sp
        return f"{four}{s()}*{s()}({s()}[{s()}{self.number(r.randrange(0, 64))}{s()}]{s()}&{s()}{fifteen}{s()})"

    def xreg(self) -> str:
        return self.r.choice(["", "", "%"]) + self.case("x")

    def areg(self) -> str:
        return self.r.choice(["", "", "%"]) + self.case("a")

    def ind(self) -> str:
        """``[x + k]`` with legal spacing (never '+' glued to a digit 1-9)."""
        r = self.r
        num = self.number(self.value() if r.random() < 0.3 else r.randrange(0, 64))
        after = self.sp()
        if after == "" and num[0] in "123456789":
            after = " "
        return f"[{self.sp()}{self.xreg()}{self.sp()}+{after}{num}{self.sp()}]"

    def ext(self) -> str:
        return self.r.choice(["", "#"]) + self.case(self.r.choice(EXTENSIONS))

    def mem(self) -> str:
        s = self.sp
        return f"{self.case('M')}{s()}[{s()}{self.number(self.r.randrange(0, 16))}{s()}]"

    def simple(self) -> str:
        """A random non-jump instruction (mnemonic + operand text)."""
        r = self.r
        c, s = self.case, self.sp
        kind = r.randrange(16)
        if kind == 0:
            return c("ld") + s() + "#" + s() + self.number(self.value())
        if kind == 1:
            return c("ld") + s(True) + r.choice(["", "#"]) + c("len")
        if kind == 2:
            ext = self.ext()
            return c(r.choice(["ld", "ldh", "ldb"])) + s(not ext.startswith("#")) + ext
        if kind == 3:
            return c("ld") + s(True) + self.mem()
        if kind == 4:
            return c(r.choice(["ld", "ldh", "ldb"])) + s() + self.ind()
        if kind == 5:
            return (c(r.choice(["ld", "ldh", "ldb"])) + s() + "[" + s()
                    + self.number(r.randrange(0, 1600) if r.random() < 0.8 else self.value()) + s() + "]")
        if kind == 6:
            op = r.choice(["ldi", "ldxi"])
            if r.random() < 0.5:
                return c(op) + s() + "#" + s() + self.number(self.value())
            return c(op) + s(True) + self.number(self.value())
        if kind == 7:
            return c("ldx") + s() + "#" + s() + self.number(self.value())
        if kind == 8:
            return c("ldx") + s(True) + r.choice(["", "#"]) + c("len")
        if kind == 9:
            return c("ldx") + s(True) + self.mem()
        if kind == 10:
            return c(r.choice(["ldx", "ldxb"])) + s(True) + self.msh()
        if kind == 11:
            return c(r.choice(["st", "stx"])) + s(True) + self.mem()
        if kind == 12:
            op = r.choice(ALU)
            if r.random() < 0.6:
                k = r.randrange(1, 32) if op in ("lsh", "rsh", "div", "mod") else self.value()
                return c(op) + s() + "#" + s() + self.number(k)
            return c(op) + s(True) + self.xreg()
        if kind == 13:
            return c(r.choice(["neg", "tax", "txa"]))
        if kind == 14:
            return c("ld") + s() + "#" + s() + self.number(self.value())
        return c("ret") + s() + "#" + s() + self.number(self.value())

    def ret(self) -> str:
        r, c, s = self.r, self.case, self.sp
        if r.random() < 0.6:
            return c("ret") + s() + "#" + s() + self.number(self.value())
        return c("ret") + s(True) + self.areg()

    def cond(self, targets: list[str]) -> str:
        """A conditional jump to the given labels (one or two)."""
        r, c, s = self.r, self.case, self.sp
        if len(targets) == 2:
            op = r.choice(COND2)
        else:
            op = r.choice(COND2 + COND1)
        if r.random() < 0.6:
            src = "#" + s() + self.number(self.value())
            head = c(op) + s() + src
        else:
            head = c(op) + s(True) + self.xreg()
        return head + "".join(f"{s()},{s()}{t}" for t in targets)

    def label_name(self, used: set[str]) -> str:
        r = self.r
        while True:
            stem = r.choice(LABEL_STEMS)
            name = stem + r.choice(["", "_", ""]) + str(r.randrange(0, 1000))
            if r.random() < 0.2:
                name = name.upper()
            if len(name) >= 2 and name.lower() not in KEYWORDS and name not in used:
                used.add(name)
                return name

    def comment(self) -> tuple[str, bool]:
        """(text, needs_newline_after)."""
        r = self.r
        words = r.choice(["check", "A = A op k", "x: y", "drop it", "see filter.rst",
                          "jt/jf", "#hash inside", "; semicolon", "/ slash", "*star*"])
        kind = r.randrange(3)
        if kind == 0:
            return f"/* {words} */", False
        if kind == 1:
            body = words.replace("*/", "")
            return "/*" + body + "\n" + body + " */", False
        return "; " + words, True

    def program(self) -> str:
        r = self.r
        n = r.choice([r.randrange(1, 8), r.randrange(4, 40), r.randrange(20, 120)])
        kinds = []
        for i in range(n):
            if i == n - 1:
                kinds.append("ret")
            elif r.random() < 0.25:
                kinds.append("cond")
            elif r.random() < 0.06:
                kinds.append("ja")
            else:
                kinds.append("simple")
        used: set[str] = set()
        labels: dict[int, str] = {}

        def label_at(idx: int) -> str:
            if idx not in labels:
                labels[idx] = self.label_name(used)
            return labels[idx]

        bodies = []
        for i, kind in enumerate(kinds):
            if kind == "cond":
                hi = min(n - 1, i + 256)
                if i + 1 > hi:
                    kind = "simple"
                else:
                    lo = i + 1
                    pick = lambda: r.randrange(lo, hi + 1) if r.random() < 0.3 else r.randrange(lo, min(hi, i + 6) + 1)
                    targets = [label_at(pick()) for _ in range(r.choice([1, 2]))]
                    bodies.append(self.cond(targets))
                    continue
            if kind == "ja":
                if r.random() < 0.2 and i > 0:
                    tgt = r.randrange(0, i + 1)     # backward ja (even to itself)
                else:
                    tgt = r.randrange(i + 1, n)
                bodies.append(self.case(r.choice(["ja", "jmp"])) + self.sp(True) + label_at(tgt))
                continue
            if kind == "ret":
                bodies.append(self.ret())
                continue
            bodies.append(self.simple())
        # A few unused labels.
        for _ in range(r.randrange(0, 3)):
            label_at(r.randrange(0, n))

        out = []
        if r.random() < 0.4:
            out.append("# generated by gen_random.py\n")
        line_open = False
        for i, body in enumerate(bodies):
            text = body
            if i in labels:
                text = labels[i] + ":" + self.sp() + body
            if line_open and r.random() < 0.25:
                out.append(self.sp(True))            # another insn on the same line
            elif line_open:
                out.append("\n")
                line_open = False
            if not line_open:
                out.append(r.choice(["", "", "    ", "\t"]))
            out.append(text)
            line_open = True
            if r.random() < 0.2:
                ctext, needs_nl = self.comment()
                out.append(self.sp(True) + ctext)
                if needs_nl:
                    out.append("\n")
                    line_open = False
            if r.random() < 0.05:
                out.append("\n\n# column-0 hash comment\n")
                line_open = False
        out.append(r.choice(["\n", "\n", "", "\n\n", " \n"]))
        return "".join(out)


def big_programs() -> dict[str, str]:
    """Deterministic large sources: the limits bpf_asm accepts and just exceeds."""
    progs = {}
    # Longest legal conditional jumps (jt = 255, jf = 254) and long ja both ways.
    lines = ["jeq #1, far, near", "ja over"]
    lines += ["ld #%d" % i for i in range(253)]
    lines += ["near: ld #1", "far: ld #2"]
    lines += ["ld M[%d]" % (i % 16) for i in range(700)]
    lines += ["over: jmp back", "back: ja start", "start: ret #0"]
    progs["asm/big_long_jumps.bpf"] = "\n".join(lines) + "\n"
    # Exactly BPF_MAXINSNS (4096) instructions, the last one labelled.
    lines = ["ja last"] + ["ldb [%d]" % (i % 1500) for i in range(4094)] + ["last: ret a"]
    progs["asm/big_4096.bpf"] = "\n".join(lines) + "\n"
    # One too many.
    lines = ["ld #%d" % i for i in range(4096)] + ["ret a"]
    progs["asm_errors/big_4097_insns.bpf"] = "\n".join(lines) + "\n"
    # A label met when 4096 instructions already exist.
    lines = ["ld #0"] * 4096 + ["end: ret a"]
    progs["asm_errors/big_label_after_4096.bpf"] = "\n".join(lines) + "\n"
    # jt of 256 (one past the largest encodable delta).
    lines = ["jeq #1, far"] + ["ld #0"] * 256 + ["far: ret a"]
    progs["asm_errors/big_jt_256.bpf"] = "\n".join(lines) + "\n"
    # jf of 256 through the one-target negated form.
    lines = ["jne x, far"] + ["tax"] * 256 + ["far: ret a"]
    progs["asm_errors/big_jf_256.bpf"] = "\n".join(lines) + "\n"
    return progs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=20251125)
    ap.add_argument("--count", type=int, default=200)
    args = ap.parse_args()
    asm = HERE / "asm"
    for old in asm.glob("random_*.bpf"):
        old.unlink()
    gen = Gen(random.Random(args.seed))
    for i in range(args.count):
        (asm / f"random_{i:03d}.bpf").write_text(gen.program())
    for rel, text in big_programs().items():
        (HERE / rel).write_text(text)
    print(f"wrote {args.count} random programs (seed {args.seed}) and {len(big_programs())} big ones")


if __name__ == "__main__":
    main()
