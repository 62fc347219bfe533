"""Extract the classic-BPF cases of the kernel's lib/test_bpf.c into tests/peers/linux_test_bpf.json (run by hand).

    python tests/peers/extract_linux.py LINUX_SOURCE_TREE VERSION [WHERE_FROM]

The committed file was made from the tree in Debian's ``linux-source-6.12``
6.12.118-1~deb12u1 (``apt-get download``, unpack ``linux-source-6.12.tar.xz``),
VERSION ``6.12.118``, WHERE_FROM naming that package.

Reads ``lib/test_bpf.c`` (plus the uapi headers ``linux/bpf_common.h``,
``linux/filter.h`` and ``linux/if_ether.h`` for the constants its cases
name) and writes the facts each ``CLASSIC`` case states: its name, the
instructions (``BPF_STMT``/``BPF_JUMP`` evaluated to code/jt/jf/k), the
packet data, the fragment data, the ``{len, result}`` pairs and, for
``FLAG_EXPECTED_FAIL`` cases, the expected errno.  Nothing is executed and
no C code is copied: the initializers are read by the small tokenizer and
constant-expression evaluator below, which knows exactly the shapes this
file uses and stops on any other (so a changed upstream file cannot be
half-read).  Programs made by a ``.fill_helper`` function are recorded by
the helper's name; the harness re-creates them from their described
behaviour (``tests/test_peers_linux.py`` ``FILL``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "linux_test_bpf.json"

_TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"|0[xX][0-9a-fA-F]+|\d+'
                    r"|[A-Za-z_][A-Za-z0-9_]*|<<|>>|'(?:\\.|[^'\\])*'|.", re.S)
_DEFINE = re.compile(r"^#define\s+([A-Za-z_][A-Za-z0-9_]*)[ \t]+([^\n]*?)\s*(?:/\*.*)?$", re.M)
# struct bpf_test members in declaration order (positional initializers follow it).
MEMBERS = ("descr", "u", "aux", "data", "test", "fill_helper", "expected_errcode",
           "frag_data", "stack_depth", "nr_testruns")
FLAG_NAMES = ("FLAG_NO_DATA", "FLAG_EXPECTED_FAIL", "FLAG_SKB_FRAG", "FLAG_VERIFIER_ZEXT",
              "FLAG_LARGE_MEM")
MAX_INSNS = 512


def tokens(text: str) -> list[str]:
    """C tokens without whitespace and comments (any other character is a token of its own)."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise SystemExit(f"cannot tokenize at {text[pos:pos + 40]!r}")
        pos = m.end()
        tok = m.group()
        if not tok.isspace() and not tok.startswith(("//", "/*")):
            out.append(tok)
    return out


# What the x86-64 build that runs the test module has: little-endian, 64-bit.
UNDEFINED = ("__BIG_ENDIAN", "CONFIG_32BIT")


def x86_64_lines(text: str) -> str:
    """Resolve ``#ifdef`` blocks as an x86-64 build does and drop the other directives."""
    out, keep, inside, cont = [], True, False, False
    for line in text.splitlines():
        s = line.strip()
        if cont or s.startswith(("#define", "#undef", "#include")):
            cont = s.endswith("\\")      # macro definitions are read by Env, not tokenized
        elif s.startswith("#ifdef "):
            if inside or s.split()[1] not in UNDEFINED:
                raise SystemExit(f"unexpected conditional {s!r}")
            inside, keep = True, False
        elif s == "#else" and inside:
            keep = True
        elif s == "#endif" and inside:
            inside, keep = False, True
        elif s.startswith(("#if", "#elif")):
            raise SystemExit(f"unexpected conditional {s!r}")
        elif keep:
            out.append(line)
    return "\n".join(out)


class Env:
    """Integer ``#define``s and a C constant-expression evaluator over them."""

    def __init__(self):
        self.raw: dict[str, str] = {}

    def read_defines(self, text: str) -> None:
        for name, value in _DEFINE.findall(text):
            self.raw.setdefault(name, value)

    def value(self, name: str) -> int:
        if name not in self.raw:
            raise SystemExit(f"unknown constant {name}")
        return self.eval(tokens(self.raw[name]))

    def eval(self, toks: list[str]) -> int:
        """Evaluate a constant expression: | ^ & << >> + - * / unary - ~ ! and parentheses."""
        saved = getattr(self, "t", None), getattr(self, "i", 0)   # a name's value nests a call
        self.t, self.i = toks, 0
        v = self._binary(0)
        if self.i != len(toks):
            raise SystemExit(f"trailing tokens in {' '.join(toks)}")
        self.t, self.i = saved
        return v

    _LEVELS = (("|",), ("^",), ("&",), ("<<", ">>"), ("+", "-"), ("*", "/"))
    _OPS = {"|": lambda v, w: v | w, "^": lambda v, w: v ^ w, "&": lambda v, w: v & w,
            "<<": lambda v, w: v << w, ">>": lambda v, w: v >> w, "+": lambda v, w: v + w,
            "-": lambda v, w: v - w, "*": lambda v, w: v * w, "/": lambda v, w: int(v / w)}

    def _binary(self, level: int) -> int:
        if level == len(self._LEVELS):
            return self._unary()
        v = self._binary(level + 1)
        while self.i < len(self.t) and self.t[self.i] in self._LEVELS[level]:
            op = self.t[self.i]
            self.i += 1
            w = self._binary(level + 1)
            v = self._OPS[op](v, w)
        return v

    def _unary(self) -> int:
        tok = self.t[self.i]
        self.i += 1
        if tok == "-":
            return -self._unary()
        if tok == "~":
            return ~self._unary()
        if tok == "!":
            return int(not self._unary())
        if tok == "(":
            v = self._binary(0)
            self._expect(")")
            return v
        if re.fullmatch(r"0[xX][0-9a-fA-F]+|\d+", tok):
            return int(tok, 16) if tok[:2].lower() == "0x" else int(tok, 8 if tok.startswith("0") and len(tok) > 1 else 10)
        if tok == "BIT":
            self._expect("(")
            v = self._binary(0)
            self._expect(")")
            return 1 << v
        if re.fullmatch(r"[A-Za-z_]\w*", tok):
            return self.value(tok)
        raise SystemExit(f"unexpected token {tok!r} in {' '.join(self.t)}")

    def _expect(self, tok: str) -> None:
        if self.t[self.i] != tok:
            raise SystemExit(f"expected {tok!r}, got {self.t[self.i]!r}")
        self.i += 1


def split_top(toks: list[str], sep: str = ",") -> list[list[str]]:
    """Split a token list at top-level separators (ignoring a trailing one)."""
    parts, cur, depth = [], [], 0
    for tok in toks:
        if tok in "({[":
            depth += 1
        elif tok in ")}]":
            depth -= 1
        if tok == sep and depth == 0:
            parts.append(cur)
            cur = []
        else:
            cur.append(tok)
    if cur:
        parts.append(cur)
    return parts


def braced(toks: list[str]) -> list[str]:
    """The tokens inside ``{ ... }``."""
    if toks[0] != "{" or toks[-1] != "}":
        raise SystemExit(f"expected a braced list, got {' '.join(toks[:8])}")
    return toks[1:-1]


def entries(toks: list[str]) -> list[list[str]]:
    """The initializers of ``static struct bpf_test tests[] = { ... };``."""
    for i in range(len(toks) - 6):
        if toks[i:i + 7] == ["static", "struct", "bpf_test", "tests", "[", "]", "="]:
            start = i + 7
            break
    else:
        raise SystemExit("no tests[] array")
    depth = 0
    for j in range(start, len(toks)):
        depth += toks[j] == "{"
        depth -= toks[j] == "}"
        if depth == 0:
            return split_top(braced(toks[start:j + 1]))
    raise SystemExit("unterminated tests[] array")


def insn(env: Env, toks: list[str]) -> list[int]:
    """BPF_STMT(code, k) or BPF_JUMP(code, k, jt, jf) as [code, jt, jf, k]."""
    macro = toks[0]
    args = [env.eval(a) for a in split_top(toks[2:-1])]
    if macro == "BPF_STMT" and len(args) == 2:
        code, k, jt, jf = args[0], args[1], 0, 0
    elif macro == "BPF_JUMP" and len(args) == 4:
        code, k, jt, jf = args
    else:
        raise SystemExit(f"not a classic instruction: {' '.join(toks)}")
    return [code & 0xffff, jt & 0xff, jf & 0xff, k & 0xffffffff]


def byte_array(env: Env, toks: list[str]) -> bytes:
    """A ``__u8 [MAX_DATA]`` initializer, with ``[i] = v`` designators."""
    out, pos = bytearray(128), 0
    for part in split_top(braced(toks)):
        if part[0] == "[":
            close = part.index("]")
            pos = env.eval(part[1:close])
            part = part[close + 2:]
        out[pos] = env.eval(part) & 0xff
        pos += 1
    return bytes(out).rstrip(b"\0")


def parse_case(env: Env, index: int, toks: list[str]) -> dict | None:
    """One tests[] entry as a dict; None when it is not a CLASSIC case."""
    if toks[0] != "{":
        # A macro that expands to an entry (the eBPF atomic tests); main() checks
        # that no macro of the file mentions CLASSIC.
        if not (re.fullmatch(r"[A-Z_][A-Z0-9_]*", toks[0]) and toks[1] == "("):
            raise SystemExit(f"unexpected entry {' '.join(toks[:8])}")
        return None
    fields, member = {}, 0
    for part in split_top(braced(toks)):
        if part[0] == ".":
            eq = part.index("=")
            path = "".join(part[:eq])
            name = part[1]
            member = MEMBERS.index(name)
            fields[path] = part[eq + 1:]
        else:
            fields["." + MEMBERS[member]] = part
        member += 1
    aux = env.eval(fields[".aux"])
    if aux & (env.value("CLASSIC") | env.value("INTERNAL")) != env.value("CLASSIC"):
        return None
    flags = [f for f in FLAG_NAMES if aux & env.value(f)]
    # index: the test number test_bpf prints ("#N name ...").
    case = {"index": index, "name": json.loads(fields[".descr"][0]), "flags": flags}
    fill = fields.get(".fill_helper", ["NULL"])
    case["fill_helper"] = None if fill == ["NULL"] else fill[0]
    if ".u.insns" in fields:
        prog = [insn(env, p) for p in split_top(braced(fields[".u.insns"]))]
        # filter_length(): trailing all-zero slots (code 0 and k 0) are not part of the program.
        n = len(prog)
        while n > 1 and prog[n - 1][0] == 0 and prog[n - 1][3] == 0:
            n -= 1
        case["insns"] = prog[:n]
    elif case["fill_helper"] is None:
        raise SystemExit(f"case {case['name']!r}: neither instructions nor a fill helper")
    else:
        case["insns"] = None
    case["data"] = byte_array(env, fields.get(".data", ["{", "}"])).hex()
    case["frag_data"] = byte_array(env, fields[".frag_data"]).hex() if ".frag_data" in fields else None
    tests = []
    for i, sub in enumerate(split_top(braced(fields.get(".test", ["{", "}"])))):
        size, result = (env.eval(x) for x in split_top(braced(sub)))
        # run_one(): a zero {data_size, result} pair after the first ends the list.
        if i > 0 and size == 0 and result == 0:
            break
        tests.append([size, result & 0xffffffff])
    case["tests"] = tests or [[0, 0]]
    if "FLAG_EXPECTED_FAIL" in flags:
        errcode = fields.get(".expected_errcode")
        case["expected_errcode"] = env.eval(errcode) if errcode else 0
    return case


def main(argv: list[str]) -> int:
    """Read the tree at argv[0], label it argv[1] (argv[2]: where it came from), write the JSON."""
    tree, version = Path(argv[0]), argv[1]
    where = argv[2] if len(argv) > 2 else "a kernel source tree"
    src_path = tree / "lib" / "test_bpf.c"
    raw = src_path.read_text()
    env = Env()
    env.read_defines(raw)
    for header in ("bpf_common.h", "filter.h", "if_ether.h"):
        env.read_defines((tree / "include" / "uapi" / "linux" / header).read_text())
    env.raw.update({"CLASSIC": "BIT(6)", "INTERNAL": "BIT(7)", "EINVAL": "22", "NULL": "0"})
    for macro in re.findall(r"^#define\s+\w+\(.*?[^\\]$", raw, re.M | re.S):
        if "CLASSIC" in macro:
            raise SystemExit("a function-like macro mentions CLASSIC; expand it first")
    toks = tokens(x86_64_lines(raw))
    cases = [c for i, e in enumerate(entries(toks)) if (c := parse_case(env, i, e))]
    header = {
        "source": "Linux kernel lib/test_bpf.c, every CLASSIC case of tests[]",
        "repository": "torvalds/linux",
        "path": "lib/test_bpf.c",
        "kernel_version": version,
        "read_from": where,
        "sha256": hashlib.sha256(raw.encode()).hexdigest(),
        "license": "test_bpf.c is GPL-2.0-only; these are its test vectors, facts only -- no code copied",
        "extracted": datetime.date.today().isoformat(),
        "extracted_by": "tests/peers/extract_linux.py",
        "semantics": (
            "bpf_prog_create() loads each program (FLAG_EXPECTED_FAIL: it must fail with "
            "expected_errcode), then each [len, result] pair runs it on an skb built by "
            "populate_skb(): the first len bytes of data (zero-padded; len < 128), mac header "
            "at offset 0, network header at min(len, ETH_HLEN=14), and the fields in skb. "
            "FLAG_SKB_FRAG appends one 128-byte page fragment holding frag_data (zero-padded), "
            "so the packet is data[:len] + frag_data and skb->len = len + 128. FLAG_NO_DATA runs "
            "with no skb at all (the programs touch no packet). Trailing all-zero instructions "
            "are not part of a program (filter_length). insns is null for a program made by "
            "fill_helper."),
        "skb": {
            "protocol": env.value("ETH_P_IP"), "pkt_type": env.value("SKB_TYPE"),
            "mark": env.value("SKB_MARK"), "rxhash": env.value("SKB_HASH"),
            "queue": env.value("SKB_QUEUE_MAP"), "vlan_tci": env.value("SKB_VLAN_TCI"),
            "vlan_present": 1, "vlan_tpid": env.value("ETH_P_IP"),
            "ifindex": env.value("SKB_DEV_IFINDEX"), "hatype": env.value("SKB_DEV_TYPE"),
            "ll_off": 0, "net_off": "min(len, 14)", "frag_len": 128, "max_len": 127,
        },
    }
    text = json.dumps({"header": header, "cases": cases}, indent=1)
    # One line per instruction and per [len, result] pair.
    text = re.sub(r"\[\s+(\d+),\s+(\d+)(?:,\s+(\d+),\s+(\d+))?\s+\]",
                  lambda m: "[" + ", ".join(g for g in m.groups() if g is not None) + "]", text)
    OUT.write_text(text + "\n")
    print(f"{len(cases)} classic cases -> {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
