"""Assembler behaviour beyond the golden corpus: every form, errors, preprocessor, relax."""

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

import bpfio
from bpfio import AsmError, Insn
from bpfio.text.assembler import assemble, assemble_source
from bpfio.text.formats import format_program

# One source line per instruction form and its encoding (re-derived from bpf_exp.y's rules
# and kernel-cbpf.md §3.2; the golden corpus checks the same against the real bpf_asm).
FORMS = [
    ("ld #5", Insn(0x00, 0, 0, 5)), ("ldi #5", Insn(0x00, 0, 0, 5)), ("ldi 5", Insn(0x00, 0, 0, 5)),
    ("ld len", Insn(0x80, 0, 0, 0)), ("ld #len", Insn(0x80, 0, 0, 0)),
    ("ld proto", Insn(0x20, 0, 0, 0xfffff000)), ("ld #proto", Insn(0x20, 0, 0, 0xfffff000)),
    ("ld rand", Insn(0x20, 0, 0, 0xfffff038)), ("ld vlan_pr", Insn(0x20, 0, 0, 0xfffff030)),
    ("ldh vlan_tpid", Insn(0x28, 0, 0, 0xfffff03c)), ("ldb type", Insn(0x30, 0, 0, 0xfffff004)),
    ("ld M[3]", Insn(0x60, 0, 0, 3)), ("ld [x + 4]", Insn(0x40, 0, 0, 4)),
    ("ld [%x + 4]", Insn(0x40, 0, 0, 4)), ("ld [12]", Insn(0x20, 0, 0, 12)),
    ("ldh [x + 1]", Insn(0x48, 0, 0, 1)), ("ldh [12]", Insn(0x28, 0, 0, 12)),
    ("ldb [x + -4]", Insn(0x50, 0, 0, 0xfffffffc)), ("ldb [23]", Insn(0x30, 0, 0, 23)),
    ("ldx #7", Insn(0x01, 0, 0, 7)), ("ldxi 7", Insn(0x01, 0, 0, 7)), ("ldx len", Insn(0x81, 0, 0, 0)),
    ("ldx M[15]", Insn(0x61, 0, 0, 15)), ("ldx 4*([14]&0xf)", Insn(0xb1, 0, 0, 14)),
    ("ldxb 4 * ( [ 14 ] & 15 )", Insn(0xb1, 0, 0, 14)),
    ("st M[1]", Insn(0x02, 0, 0, 1)), ("stx M[2]", Insn(0x03, 0, 0, 2)),
    ("add #1", Insn(0x04, 0, 0, 1)), ("add x", Insn(0x0c, 0, 0, 0)), ("sub %x", Insn(0x1c, 0, 0, 0)),
    ("mul #3", Insn(0x24, 0, 0, 3)), ("div #2", Insn(0x34, 0, 0, 2)), ("mod #2", Insn(0x94, 0, 0, 2)),
    ("and #0xff", Insn(0x54, 0, 0, 0xff)), ("or x", Insn(0x4c, 0, 0, 0)), ("xor #1", Insn(0xa4, 0, 0, 1)),
    ("lsh #3", Insn(0x64, 0, 0, 3)), ("rsh x", Insn(0x7c, 0, 0, 0)), ("neg", Insn(0x84, 0, 0, 0)),
    ("tax", Insn(0x07, 0, 0, 0)), ("txa", Insn(0x87, 0, 0, 0)),
    ("ret a", Insn(0x16, 0, 0, 0)), ("ret %a", Insn(0x16, 0, 0, 0)), ("ret x", Insn(0x0e, 0, 0, 0)),
    ("ret #-1", Insn(0x06, 0, 0, 0xffffffff)),
]


@pytest.mark.parametrize("line, insn", FORMS, ids=[f for f, _ in FORMS])
def test_every_form(line, insn):
    assert assemble(line + "\nret #0") [0] == insn


JUMPS = [  # 'ff' is 2 and 'tt' 3 instructions after the jump
    ("jeq #1, tt", Insn(0x15, 2, 0, 1)), ("jeq #1, tt, ff", Insn(0x15, 2, 1, 1)),
    ("jeq x, tt", Insn(0x1d, 2, 0, 0)), ("jeq %x, tt, ff", Insn(0x1d, 2, 1, 0)),
    ("jne #1, tt", Insn(0x15, 0, 2, 1)), ("jneq x, tt", Insn(0x1d, 0, 2, 0)),
    ("jlt #5, tt", Insn(0x35, 0, 2, 5)), ("jlt %x, tt", Insn(0x3d, 0, 2, 0)),
    ("jle #5, tt", Insn(0x25, 0, 2, 5)), ("jgt #5, tt, ff", Insn(0x25, 2, 1, 5)),
    ("jge x, tt, ff", Insn(0x3d, 2, 1, 0)), ("jset #0x1fff, tt, ff", Insn(0x45, 2, 1, 0x1fff)),
    ("ja tt", Insn(0x05, 0, 0, 2)), ("jmp tt", Insn(0x05, 0, 0, 2)),
]


@pytest.mark.parametrize("line, insn", JUMPS, ids=[j for j, _ in JUMPS])
def test_jump_forms(line, insn):
    prog = assemble(f"{line}\nret #0\nff: ret #1\ntt: ret #3")
    assert prog[0] == insn


def test_backward_ja_assembles_with_wrapped_k():
    assert assemble("start: ret #0\njmp start")[1] == Insn(0x05, 0, 0, 0xfffffffe)


def test_duplicate_label_first_wins_and_warns():
    result = assemble_source("a1: ld #1\na1: ld #2\nja a1", filename="d.bpf")
    assert result.program[2].k == 0xfffffffd
    assert [str(w) for w in result.warnings] == [
        "d.bpf:2:1: warning: duplicate label 'a1' (the first one, at insn #0, wins as in bpf_asm)"]


def test_caseless_keywords_case_sensitive_labels():
    prog = assemble("LD #1\nJEQ #1, Foo\nRet A\nFoo: RET #0X10")
    assert prog[3] == Insn(6, 0, 0, 16)
    with pytest.raises(AsmError, match="no such label 'foo'"):
        assemble("ja foo\nFoo: ret #0")


def test_numbers_wrap_like_strtol():
    cases = {"0x10": 16, "0b101": 5, "010": 8, "-1": 0xffffffff, "+7": 7, "4294967296": 0,
             "2147483648": 0x80000000, "-2147483649": 0x7fffffff, "0xfffffffff": 0xffffffff}
    for text, value in cases.items():
        assert assemble(f"ret #{text}")[0].k == value, text


def test_many_instructions_on_one_line_and_comments():
    src = "ld#1 /* c\nomment */ tax ; tail\n# col0 comment\nret a"
    assert [i.code for i in assemble(src)] == [0x00, 0x07, 0x16]


# One exact message per error kind: the rendered first line documents the format.
ERRORS = [
    ("ld [x+5]", "t.bpf:1:6: error: syntax error at '+5' ('ld' takes #k, len, an extension word, M[k], [k] or [x + k])"),
    ("b: ret #0", "t.bpf:1:1: error: unknown character 'b'"),
    ("ret #0\r\n", "t.bpf:1:7: error: unknown character '\\r'"),
    ("ja 5", "t.bpf:1:4: error: syntax error at '5' ('ja' takes one label)"),
    ("", "t.bpf:1:1: error: empty program: bpf_asm needs at least one instruction"),
    ("ret #0\nend:", "t.bpf:2:5: error: syntax error: unexpected end of input"),
    ("ja nowhere\nret #0", "t.bpf:1:4: error: no such label 'nowhere'"),
    ("jeq #1, far\n" + "ld #0\n" * 256 + "far: ret #0",
     "t.bpf:1:9: error: insn #0 jumps to insn #257 ('far'), which is out of range: "
     "conditional offsets are 0..255 (use --relax for ja trampolines)"),
    ("back: ld #0\njeq #1, back\nret #0",
     "t.bpf:2:9: error: insn #1 jumps to insn #0 ('back'), which is out of range: conditional offsets are 0..255"),
    ("ldx 3*([14]&0xf)\nret #0", "t.bpf:1:1: error: ldxb offset not supported: only 4*([k]&0xf) exists"),
    ("ld #1 # note\nret a", "t.bpf:1:7: error: syntax error at '#' ('ld' takes #k, len, an extension word, M[k], [k] or [x + k])"),
    ("ret #UNDEFINED_NAME", "t.bpf:1:6: error: 'UNDEFINED_NAME' is not a number or a #define'd constant"),
    ("ld #0\n" * 4097, "t.bpf:4097:1: error: only 4096 instructions are allowed"),
    ("#include \"missing.inc\"\nret #0", "t.bpf:1:1: error: cannot find include file 'missing.inc'"),
    ("#ifdef X\nret #0\n", "t.bpf:1:1: error: #if without #endif (opened at line 1)"),
    # Found by the fuzz harness: a name the OS refuses (ENAMETOOLONG) was a raw OSError.
    ('#include "' + "f" * 300 + '"\nret #0', "t.bpf:1:1: error: cannot find include file 'fff"),
    (".insn 0x10000, 0, 0, 0", "t.bpf:1:7: error: .insn code 0x10000 does not fit in 16 bits"),
    # Found by the fuzz harness: long flat chains were a RecursionError or a MemoryError.
    ("#define Q " + "+".join(["1"] * 5000) + "\nld #Q\nret a",
     "t.bpf:2:5: error: cannot evaluate 'Q': constant expression has more than 256 tokens"),
    ("#if " + "-" * 20000 + "1\n#endif\nret a",
     "t.bpf:1:1: error: #if: constant expression has more than 256 tokens"),
    # Error order is bison's, whose scanner runs one token ahead of the parser: a syntax
    # error wins over a bad character further down, and the other way round (the parser
    # lexes the whole text first and falls back to lazy lexing on any lexer error).
    ("ldb #1\nret $", "t.bpf:1:5: error: syntax error at '#1'"),
    ("ret $\nldb #1", "t.bpf:1:5: error: unknown character '$'"),
    ("ldb #1\nret #" + "9" * 2000, "t.bpf:1:5: error: syntax error at '#1'"),
    ("ret #UNDEFINED_NAME\nret $", "t.bpf:1:6: error: 'UNDEFINED_NAME' is not a number"),
]


@pytest.mark.parametrize("src, first_line", ERRORS, ids=[e[1].split("error: ")[1][:30] for e in ERRORS])
def test_error_messages(src, first_line):
    with pytest.raises(AsmError) as exc:
        assemble(src, filename="t.bpf")
    got = str(exc.value).splitlines()[0]
    assert got.startswith(first_line)
    err = exc.value
    assert (err.filename, err.line) == ("t.bpf", int(first_line.split(":")[1]))


def test_error_has_source_line_and_caret():
    with pytest.raises(AsmError) as exc:
        assemble("ld #1\n  ld [x+5]\nret a", filename="c.bpf")
    assert str(exc.value) == ("c.bpf:2:8: error: syntax error at '+5' ('ld' takes #k, len, an extension "
                              "word, M[k], [k] or [x + k])\n    ld [x+5]\n         ^")
    assert (exc.value.line, exc.value.column) == (2, 8)


# --- preprocessor -----------------------------------------------------------------------

def test_define_undef_ifdef_and_command_line(tmp_path):
    src = """#include <pio.inc>
#define PORT 0x3f8
#define LSR (PORT + 5)
#ifdef FAST
ret #1
#else
ld [LSR]
#endif
#undef PORT
#ifndef PORT
ret #PIO_DONE
#endif
"""
    (tmp_path / "x.asm").write_text(src)
    prog = assemble((tmp_path / "x.asm").read_text(), filename=str(tmp_path / "x.asm"))
    assert list(prog) == [Insn(0x20, 0, 0, 0x3fd), Insn(6, 0, 0, 0x10000)]
    prog = assemble(src, defines={"FAST": None})
    assert prog[0] == Insn(6, 0, 0, 1)
    assert assemble("ret #V", defines={"V": "7"})[0].k == 7


def test_include_quotes_search_own_folder_then_path(tmp_path):
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "a.inc").write_text("#define AA 5\n")
    (tmp_path / "b.inc").write_text("#define B 6\n")
    main = tmp_path / "main.asm"
    main.write_text('#include <a.inc>\n#include "b.inc"\nld #AA\nret #B\n')
    prog = assemble(main.read_text(), filename=str(main), include_path=[inc])
    assert [i.k for i in prog] == [5, 6]


def test_error_inside_include_names_the_included_file(tmp_path):
    (tmp_path / "bad.inc").write_text("ret #0\nld [x+1]\n")
    main = tmp_path / "m.asm"
    main.write_text('ld #1\n#include "bad.inc"\n')
    with pytest.raises(AsmError) as exc:
        assemble(main.read_text(), filename=str(main))
    assert exc.value.filename == str(tmp_path / "bad.inc") and exc.value.line == 2


def test_recursive_include_is_an_error(tmp_path):
    (tmp_path / "r.inc").write_text('#include "r.inc"\n')
    with pytest.raises(AsmError, match="nested more than"):
        assemble('#include "r.inc"\nret #0', filename=str(tmp_path / "m.asm"))


def test_constant_expressions_up_to_the_token_limit():
    from bpfio.text.preprocess import MAX_EXPR_TOKENS
    terms = (MAX_EXPR_TOKENS + 1) // 2                  # n terms and n - 1 operators
    assert assemble("#define Q " + "+".join(["1"] * terms) + "\nld #Q\nret a")[0].k == terms


def test_redefinition_applies_from_its_line_on():
    prog = assemble("#define V 1\nld #V\n#undef V\n#define V 2\nld #V\n#define W (V + 1)\nret #W")
    assert [i.k for i in prog] == [1, 2, 3]
    with pytest.raises(AsmError, match="'V' is not a number"):
        assemble("#define V 1\n#undef V\nret #V")


def test_other_hash_lines_stay_comments():
    # cpp line markers and free text in column 0 are bpf_asm comments.
    assert len(assemble('# 1 "file.c"\n#pragma whatever\nret #0')) == 1


def test_defines_never_change_bpf_asm_valid_programs():
    # A label that happens to share a #define's name is still a label.
    prog = assemble("#define done 7\njeq #1, done\nret #0\ndone: ret #done")
    assert prog[0] == Insn(0x15, 1, 0, 1) and prog[2].k == 7


def test_define_after_hash_beats_extension_prefix():
    # '#lenfoo' is '#len' then 'foo' to bpf_asm; a #define'd LEN_MAX is used whole.
    assert assemble("#define LEN_MAX 9\nld #LEN_MAX\nret a")[0] == Insn(0, 0, 0, 9)
    assert assemble("ld #lenfoo: ret a")[0] == Insn(0x80, 0, 0, 0)


# --- relax --------------------------------------------------------------------------------

def test_relax_inserts_trampolines_and_keeps_semantics():
    src = "jeq #1, far, near\nnear: ret #2\n" + "ld #0\n" * 300 + "far: ret #1"
    with pytest.raises(AsmError):
        assemble(src)
    prog = assemble(src, relax=True)
    assert len(prog) == 304  # one trampoline
    jump, tramp = prog[0], prog[1]
    assert (jump.jt, jump.jf) == (0, 1) and tramp.code == 0x05
    assert 2 + tramp.k == 303 and prog[303] == Insn(6, 0, 0, 1)
    assert prog[2] == Insn(6, 0, 0, 2)


def test_relax_keeps_implicit_fallthrough():
    src = "jeq #1, far\nret #2\n" + "ld #0\n" * 300 + "far: ret #1"
    prog = assemble(src, relax=True)
    assert prog[0].jt == 0 and prog[0].jf == 1 and prog[2] == Insn(6, 0, 0, 2)


# --- fuzz: only AsmError may come out -------------------------------------------------------
_ALPHABET = st.sampled_from(list("ldxbhjeqntgsaumrkM#%[]()+*&:,;/ \t\n0123456789-xXabf_\r.") +
                            ["ld", "jeq", "ret", "#len", "proto", "/*", "*/", "#define A 1\n",
                             "#include <pio.inc>\n", "#ifdef A\n", "#endif\n", ".insn", "aa:", "aa"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ALPHABET, max_size=40).map("".join))
def test_fuzzed_text_only_raises_asm_error(text):
    try:
        prog = assemble(text)
    except AsmError as err:
        assert str(err).startswith("<input>")
    else:
        assert 1 <= len(prog) <= 4096
        format_program(prog, "bpf_asm")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_fuzzed_bytes_only_raise_asm_error(data):
    try:
        assemble(data)
    except AsmError:
        pass


def test_public_api_exports():
    assert bpfio.assemble is assemble
    assert {"assemble", "disassemble", "format_program", "Program", "Insn", "AsmError",
            "BpfError"} <= set(bpfio.__all__)


def test_shipped_parser_tables_are_current():
    """bpfio/text/_parsetab.py must match the grammar (else ply would rebuild it at start-up)."""
    import ply.yacc as yacc
    from bpfio.text import _parsetab
    from bpfio.text.parser import Parser
    pinfo = yacc.ParserReflect({k: getattr(Parser, k) for k in dir(Parser)})
    pinfo.get_all()
    assert pinfo.signature() == _parsetab._lr_signature, "run: python -m bpfio.text.parser"
