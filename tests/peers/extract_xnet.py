"""Extract golang.org/x/net/bpf's test tables into tests/peers/xnet_bpf_*.json (run by hand).

    python tests/peers/extract_xnet.py GOLANG_NET_CHECKOUT COMMIT

Reads ``bpf/vm_*_test.go`` and ``bpf/instructions_test.go`` plus the two
``bpf/testdata`` files and writes the facts they state -- each test's
program (as x/net/bpf instruction values), input bytes, expected output or
expected error -- as JSON.  Nothing is executed and no Go code is copied:
the Go composite literals are parsed by the small tokenizer below, which
understands exactly the shapes these files use (and fails loudly on any
other shape, so a changed upstream file cannot be half-read).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# x/net/bpf's exported enum values (bpf/constants.go).  The instruction table
# test (allInstructions -> all_instructions.bpf) checks them indirectly.
GO_CONSTANTS = {
    "RegA": 0, "RegX": 1,
    "ALUOpAdd": 0x00, "ALUOpSub": 0x10, "ALUOpMul": 0x20, "ALUOpDiv": 0x30, "ALUOpOr": 0x40,
    "ALUOpAnd": 0x50, "ALUOpShiftLeft": 0x60, "ALUOpShiftRight": 0x70, "ALUOpMod": 0x90,
    "ALUOpXor": 0xa0,
    "JumpEqual": 0, "JumpNotEqual": 1, "JumpGreaterThan": 2, "JumpLessThan": 3,
    "JumpGreaterOrEqual": 4, "JumpLessOrEqual": 5, "JumpBitsSet": 6, "JumpBitsNotSet": 7,
    "ExtLen": 1, "ExtProto": 0, "ExtType": 4, "ExtPayloadOffset": 52, "ExtInterfaceIndex": 8,
    "ExtNetlinkAttr": 12, "ExtNetlinkAttrNested": 16, "ExtMark": 20, "ExtQueue": 24,
    "ExtLinkLayerType": 28, "ExtRXHash": 32, "ExtCPUID": 36, "ExtVLANTag": 44,
    "ExtVLANTagPresent": 48, "ExtVLANProto": 60, "ExtRand": 56,
}
LOCAL_CONSTANTS = {"dhcp4Port": 53}   # vm_load_test.go

_TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"|`[^`]*`|0[xX][0-9a-fA-F]+|\d+'
                    r'|[A-Za-z_][A-Za-z0-9_]*|:=|\.\.\.|!=|==|[-+*/()\[\]{},.:;&|<>=!]', re.S)


def tokens(text: str) -> list[str]:
    """Go tokens without whitespace and comments."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise SystemExit(f"cannot tokenize at {text[pos:pos + 40]!r}")
        tok = m.group()
        pos = m.end()
        if not tok.isspace() and not tok.startswith(("//", "/*")):
            out.append(tok)
    return out


class Parser:
    """Composite literals and small constant expressions over a token list."""

    def __init__(self, toks: list[str], env: dict):
        self.t, self.i, self.env = toks, 0, env

    def peek(self, n=0):
        return self.t[self.i + n] if self.i + n < len(self.t) else None

    def take(self, want=None):
        tok = self.t[self.i]
        if want is not None and tok != want:
            raise SystemExit(f"expected {want!r}, got {tok!r} near {' '.join(self.t[self.i - 5:self.i + 5])}")
        self.i += 1
        return tok

    def type_name(self) -> str:
        name = ""
        if self.peek() == "[":
            self.take("[")
            self.take("]")
            name = "[]"
        first = self.take()
        if self.peek() == ".":
            self.take(".")
            return name + first + "." + self.take()
        return name + first

    def is_composite(self) -> bool:
        j = self.i
        if self.t[j] == "[":
            return True
        j += 3 if self.t[j + 1] == "." else 1
        return self.t[j] == "{"

    def value(self):
        if self.is_composite():
            return self.composite()
        return self.expr()

    def composite(self):
        name = self.type_name()
        self.take("{")
        items, fields = [], {}
        while self.peek() != "}":
            if self.peek(1) == ":" and re.fullmatch(r"[A-Za-z_]\w*", self.peek()):
                key = self.take()
                self.take(":")
                fields[key] = self.value()
            else:
                items.append(self.value())
            if self.peek() == ",":
                self.take(",")
        self.take("}")
        if name == "[]byte":
            return bytes(items)
        if name.startswith("[]"):
            return items
        assert not items, name
        return {"type": name.removeprefix("bpf."), **fields}

    def expr(self):
        depth, parts = 0, []
        while True:
            tok = self.peek()
            if depth == 0 and tok in (",", "}", ")", ";"):
                break
            self.take()
            if tok in "([":
                depth += 1
            elif tok in ")]":
                depth -= 1
            parts.append(tok)
        return evaluate(parts, self.env)


def evaluate(parts: list[str], env: dict) -> int:
    """The value of a constant Go expression such as ``uint32(len(pkt) - 1)``."""
    py, i = [], 0
    while i < len(parts):
        tok = parts[i]
        if tok == "bpf" and parts[i + 1] == ".":
            py.append(str(GO_CONSTANTS[parts[i + 2]]))
            i += 3
            continue
        if tok == "len" and parts[i + 1] == "(":
            py.append(str(len(env[parts[i + 2]])))
            i += 4
            continue
        if tok == "uint32":
            i += 1
            continue
        py.append(str(env.get(tok, LOCAL_CONSTANTS.get(tok, GO_CONSTANTS.get(tok, tok)))))
        i += 1
    text = " ".join(py)
    if not re.fullmatch(r"[0-9a-fA-FxX()+\- ]+", text):
        raise SystemExit(f"unsupported expression {' '.join(parts)!r}")
    return eval(text)  # noqa: S307 -- digits, parentheses, + and - only (checked above)


def functions(text: str) -> dict[str, list[str]]:
    """Top-level ``func NAME(...) ... { body }`` -> body tokens."""
    toks, out, i = tokens(text), {}, 0
    while i < len(toks):
        if toks[i] == "func" and toks[i + 2] == "(":
            name = toks[i + 1]
            j = toks.index("{", i)
            while toks[j - 1] not in (")", "}") and not toks[j - 1].isidentifier():
                j = toks.index("{", j + 1)
            depth, k = 0, j
            while True:
                depth += {"{": 1, "}": -1}.get(toks[k], 0)
                if depth == 0:
                    break
                k += 1
            out[name] = toks[j + 1:k]
            i = k
        i += 1
    return out


def dhcp_header() -> bytes:
    """``ipv4.Header{Len: 20, Src: 192.168.1.1, Dst: 192.168.1.2}.Marshal()`` on Linux (ipv4/header.go)."""
    return bytes([0x45, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 192, 168, 1, 1, 192, 168, 1, 2])


def vm_case(file: str, name: str, body: list[str], funcs: dict) -> dict:
    """One Test function of a vm_*_test.go file as a case record."""
    env: dict = {}
    case = {"name": name, "file": f"bpf/{file}", "program": None, "input": None,
            "want": None, "error": None, "error_stage": None}
    i = 0
    while i < len(body):
        tok = body[i]
        if tok == "testVM" and body[i + 1] == "(":
            p = Parser(body, env)
            p.i = i + 4           # testVM ( t , <composite>
            case["program"] = p.composite()
            i = p.i
            continue
        if tok == "testDHCPv4":
            helper = funcs["testDHCPv4"]
            j = helper.index("testVM")
            p = Parser(helper, env)
            p.i = j + 4
            case["program"] = p.composite()
            env["in"] = b"\xff" * 8 + dhcp_header()
            case["note"] = "input: 8 pseudo-UDP bytes + ipv4.Header{Len: 20, Src: 192.168.1.1, Dst: 192.168.1.2}.Marshal() + the appended UDP header"
        if tok in ("pkt", "in") and body[i + 1] in (":=", "="):
            p = Parser(body, env)
            p.i = i + 2
            if body[i + 2] == "append":
                p.i = i + 6                   # append ( in , <composite> ...
                env[tok] = env[tok] + p.composite()
            else:
                env[tok] = p.composite()
            i = p.i
            continue
        if tok == "Run" and body[i - 2] == "vm":
            p = Parser(body, env)
            p.i = i + 2
            case["input"] = (p.composite() if p.is_composite() else env[p.take()]).hex()
            i = p.i
            continue
        if tok == "want" and body[i + 1] == "," and body[i + 3] == ":=":
            p = Parser(body, env)
            p.i = i + 4
            case["want"] = p.expr()
            i = p.i
            continue
        if tok == "errStr" and body[i + 4] == "!=":
            case["error"] = json.loads(body[i + 5])
            case["error_stage"] = "run" if case["input"] is not None else "load"
        i += 1
    if case["program"] is None and name != "TestVMNoInputInstructions":
        raise SystemExit(f"{name}: no program found")
    return case


def example_case(body: list[str], want: int) -> dict:
    """ExampleNewVM (vm_test.go): an ARP filter and an Ethernet frame; output is trimmed to the frame.

    ``want`` comes from the example's ``// Output: out: N bytes`` comment.
    """
    env = {"etOff": 12, "etLen": 2, "etARP": 0x0806}
    p = Parser(body, env)
    p.i = body.index("NewVM") + 2
    program = p.composite()
    j = body.index("frame")
    p.i = j + 2
    frame = p.composite()
    return {"name": "ExampleNewVM", "file": "bpf/vm_test.go", "program": program,
            "input": frame.hex(), "want": want, "error": None, "error_stage": None,
            "trim": "input"}


def instruction_tables(src: Path) -> dict:
    """instructions_test.go: allInstructions, the bpf_asm files it is checked against, TestString's table."""
    toks = tokens((src / "instructions_test.go").read_text())
    # Inside package bpf the type names are unqualified: parse "Name{...}" as bpf.Name.
    p = Parser(toks, {})
    p.i = toks.index("allInstructions") + 2          # allInstructions = <composite>
    all_insns = p.composite()
    body = functions((src / "instructions_test.go").read_text())["TestString"]
    p = Parser(body, {})
    p.i = body.index("}") + 1      # past the anonymous struct type: {instruction Instruction; assembler string}
    while body[p.i] != "{":
        p.i += 1
    p.take("{")
    strings = []
    while p.peek() != "}":
        p.take("{")
        p.take("instruction")
        p.take(":")
        insn = p.composite()
        p.take(",")
        p.take("assembler")
        p.take(":")
        strings.append({"instruction": insn, "string": json.loads(p.take())})
        p.take(",")
        p.take("}")
        p.take(",")
    return {"all_instructions": all_insns,
            "all_instructions_txt": (src / "testdata/all_instructions.txt").read_text(),
            "all_instructions_bpf": (src / "testdata/all_instructions.bpf").read_text(),
            "string_cases": strings}


def main(argv) -> int:
    root, commit = Path(argv[0]), argv[1]
    src = root / "bpf"
    cases = []
    files = sorted(src.glob("vm_*_test.go")) + [src / "vm_test.go"]
    for path in files:
        funcs = functions(path.read_text())
        for name, body in funcs.items():
            if name.startswith("Test"):
                cases.append(vm_case(path.name, name, body, funcs))
    text = (src / "vm_test.go").read_text()
    m = re.search(r"//\s*Output:\s*//\s*out: (\d+) bytes", text)
    cases.append(example_case(functions(text)["ExampleNewVM"], int(m.group(1))))
    header = {
        "source": "golang.org/x/net/bpf",
        "repository": "https://github.com/golang/net",
        "commit": commit,
        "paths": [f"bpf/{p.name}" for p in files],
        "license": "BSD-3-Clause (Go Authors); test vectors, facts only -- no code copied",
        "extracted_by": "tests/peers/extract_xnet.py",
        "semantics": ("Each Test* builds a VM with testVM(t, program); the VM's Run(in) returns the "
                      "program's untrimmed return value (int(A) or the ret constant; 0 after an "
                      "out-of-bounds load or a division by X == 0). The test wrapper "
                      "(vm_bpf_test.go multiVirtualMachine.Run) treats the first 8 input bytes as a "
                      "UDP header: out = ret - 8 if ret >= 8 else ret, then min(out, len(in) - 8); "
                      "'want' is compared with that. ExampleNewVM trims to len(input) instead "
                      "(trim: input). 'error' is the expected error text of NewVM (error_stage "
                      "load) or of Run (error_stage run)."),
    }
    (HERE / "xnet_bpf_vm.json").write_text(json.dumps({"header": header, "cases": cases}, indent=1) + "\n")
    print(f"{len(cases)} VM cases")
    tables = instruction_tables(src)
    header = dict(header, paths=["bpf/instructions_test.go", "bpf/testdata/all_instructions.txt",
                                 "bpf/testdata/all_instructions.bpf"],
                  semantics=("TestInterop: Assemble(all_instructions) must equal all_instructions.bpf, "
                             "which the kernel's bpf_asm produced from all_instructions.txt. "
                             "TestAsmDisasm: Disassemble(Assemble(x)) == x. TestString: each "
                             "instruction value's String() text."))
    (HERE / "xnet_bpf_instructions.json").write_text(json.dumps({"header": header, **tables}, indent=1) + "\n")
    print(f"{len(tables['all_instructions'])} instructions, {len(tables['string_cases'])} String cases")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
