"""Issue 17 (readers and writes): hostile inputs reach a placed one-line error, never a hang,
an internal error or a raw ValueError/RecursionError; limits are the ones docs/limits.md states."""

import pytest
from click.testing import CliRunner

import bpfio
from bpfio.cli import main
from bpfio.errors import AsmError, LimitError
from bpfio.limits import MAX_DIGITS, MAX_JSON_DEPTH, load_json, parse_int
from bpfio.text.preprocess import MAX_MACRO_DEPTH

BIG = "9" * 5000          # over Python's 4,300-digit int-string limit


def _cli(args, data=None):
    result = CliRunner().invoke(main, args, input=data)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _one_line_error(result, expected: str):
    assert result.exit_code == 1, result.output
    first = result.stderr.splitlines()[0]
    assert first == expected
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


# --- item 1: #define chains are evaluated once per name -----------------------------

def _chain(n: int, use: str) -> str:
    lines = ["#define X0 1"] + [f"#define X{i} (X{i - 1}+X{i - 1})" for i in range(1, n + 1)]
    return "\n".join(lines + [use, "ret a", ""])


def test_define_chain_of_40_is_linear():
    # 2**39 is 0 modulo 2**32; the old evaluator expanded 2**40 names and never returned
    src = _chain(39, f"#if X39 == 0\nld #X39\n#endif\nldx #X31")
    prog = bpfio.assemble(src)
    assert [i.k for i in prog] == [0, 1 << 31, 0]


def test_define_chain_inside_if_is_linear():
    prog = bpfio.assemble(_chain(39, "#if X39\nld #1\n#else\nld #2\n#endif"))
    assert prog[0].k == 2


def test_define_nesting_past_the_limit_is_a_placed_error():
    n = MAX_MACRO_DEPTH
    lines = ["#define Y0 1"] + [f"#define Y{i} Y{i - 1}" for i in range(1, n + 1)]
    ok = "\n".join(lines[:-1] + [f"ld #Y{n - 1}", "ret a"])
    assert bpfio.assemble(ok)[0].k == 1
    with pytest.raises(AsmError) as err:
        bpfio.assemble("\n".join(lines + [f"ld #Y{n}", "ret a"]), filename="d.asm")
    assert str(err.value).splitlines()[0] == (
        f"d.asm:{n + 2}:5: error: cannot evaluate 'Y{n}': #define names nest more than "
        f"{n} levels deep (at 'Y0')")


def test_long_or_deep_if_expressions_are_placed_errors():
    for expr, problem in (("+".join(["1"] * 3000), "constant expression has more than 4096 tokens"),
                          ("-" * 100_000 + "1", "constant expression has more than 4096 tokens"),
                          ("-" * 3000 + "1", "constant expression is nested too deeply")):
        with pytest.raises(AsmError) as err:
            bpfio.assemble(f"#if {expr}\n#endif\nret a\n", filename="e.asm")
        assert str(err.value).splitlines()[0] == f"e.asm:1:1: error: #if: {problem}"


# --- item 3: integer literals -----------------------------------------------------------

def test_parse_int_limit():
    assert parse_int("9" * MAX_DIGITS) == int("9" * MAX_DIGITS)
    assert parse_int("-0x" + "f" * MAX_DIGITS, 0) == -int("f" * MAX_DIGITS, 16)
    with pytest.raises(LimitError, match=f"number of {MAX_DIGITS + 1} digits is too long"):
        parse_int("1" * (MAX_DIGITS + 1))
    with pytest.raises(ValueError):
        parse_int("12z")
    assert issubclass(LimitError, bpfio.BpfError)


@pytest.mark.parametrize("literal", [BIG, "0x" + "f" * 5000, "0b" + "1" * 5000, "0" + "7" * 5000])
def test_asm_long_literal(literal, tmp_path):
    path = tmp_path / "big.asm"
    path.write_text(f"ld #{literal}\nret a\n")
    _one_line_error(_cli(["asm", str(path)]),
                    f"{path}:1:5: error: number of 5000 digits is too long (the limit is {MAX_DIGITS})")


def test_asm_long_define_value_on_the_command_line():
    result = _cli(["asm", "-D", f"N={BIG}", "-"], "ld #N\nret a\n")
    _one_line_error(result, f"<stdin>:1:5: error: cannot evaluate 'N': number of 5000 digits "
                            f"is too long (the limit is {MAX_DIGITS})")


def test_api_define_of_a_huge_int():
    with pytest.raises(AsmError) as err:
        bpfio.assemble("ld #N\nret a", defines={"N": 10**5000})
    assert str(err.value) == ("<command line>: error: define 'N': integer of 16610 bits is too "
                              "large (the limit is 3000 bits)")
    assert bpfio.assemble("ld #N\nret a", defines={"N": 2**31})[0].k == 2**31
