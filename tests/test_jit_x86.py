"""The x86-64 emitter, checked byte for byte against two independent decoders.

Every public emit function of ``bpfio.exec.jit.x86`` is listed in ``FORMS`` with
the operands to try (all registers, edge immediates, every addressing shape);
capstone must decode each encoding to exactly the emitter's text and length, and
iced-x86 to the same length and (after normalizing its immediate style) text.
"""

from __future__ import annotations

import ctypes
import itertools

import pytest

from bpfio.exec.jit import mem as jmem
from bpfio.exec.jit import x86

capstone = pytest.importorskip("capstone")
iced = pytest.importorskip("iced_x86")

REGS = range(16)
IMMS = (0, 1, 9, 10, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, -1, -128)
IMM8 = (0, 1, 9, 10, 127, -1, -128)
DISPS = (0, 4, -64, 127, 128, -129, 0x7FFFFFFF, -0x80000000)
INDEXES = (None, x86.RAX, x86.RCX, x86.RBP, x86.R9, x86.R12, x86.R13, x86.R15)
RELS = (0, 5, -2, 127, -128, 128, -129, 0x7FFFFFFF, -0x80000000)


def mems():
    for base in REGS:
        for disp in DISPS:
            yield x86.mem(base, disp)
        for index, scale in itertools.product(INDEXES[1:], (1, 2, 4, 8)):
            yield x86.mem(base, 12, index, scale)
            yield x86.mem(base, 0, index, scale)


MEMS = list(mems())


def r(fn):
    return lambda: (fn(a) for a in REGS)


def rr(fn):
    return lambda: (fn(a, b) for a in REGS for b in REGS)


def ri(fn, imms=IMMS):
    return lambda: (fn(a, i) for a in REGS for i in imms)


def rm(fn):
    return lambda: (fn(a, m) for a in REGS for m in MEMS)


def mr(fn):
    return lambda: (fn(m, a) for a in REGS for m in MEMS)


def rel(fn, rels=RELS):
    return lambda: (fn(v) for v in rels)


FORMS = {
    "mov_r32_imm32": ri(x86.mov_r32_imm32),
    "mov_r64_imm64": ri(x86.mov_r64_imm64, IMMS + (1 << 63, 0x7FFF12345678)),
    "mov_r32_r32": rr(x86.mov_r32_r32), "mov_r64_r64": rr(x86.mov_r64_r64),
    "mov_r32_m32": rm(x86.mov_r32_m32), "mov_r64_m64": rm(x86.mov_r64_m64),
    "movzx_r32_m8": rm(x86.movzx_r32_m8), "movzx_r32_m16": rm(x86.movzx_r32_m16),
    "movbe_r32_m32": rm(x86.movbe_r32_m32),
    "lea_r32_m": rm(x86.lea_r32_m), "lea_r64_m": rm(x86.lea_r64_m),
    "mov_m32_r32": mr(x86.mov_m32_r32), "mov_m64_r64": mr(x86.mov_m64_r64),
    "movbe_m32_r32": mr(x86.movbe_m32_r32),
    "mov_m32_imm32": lambda: (x86.mov_m32_imm32(m, i) for m in MEMS[::7] for i in IMMS),
    "test_r32_r32": rr(x86.test_r32_r32), "test_r64_r64": rr(x86.test_r64_r64),
    "test_r32_imm32": ri(x86.test_r32_imm32),
    "imul_r32_r32": rr(x86.imul_r32_r32),
    "imul_r32_r32_imm32": lambda: (x86.imul_r32_r32_imm32(a, b, i)
                                   for a in REGS for b in (0, 3, 8, 13) for i in IMMS),
    "div_r32": r(x86.div_r32), "neg_r32": r(x86.neg_r32), "not_r32": r(x86.not_r32),
    "mul_r32": r(x86.mul_r32),
    "shl_r32_imm8": ri(x86.shl_r32_imm8, range(32)),
    "shr_r32_imm8": ri(x86.shr_r32_imm8, range(32)),
    "shl_r64_imm8": ri(x86.shl_r64_imm8, range(64)),
    "shl_r32_cl": r(x86.shl_r32_cl), "shr_r32_cl": r(x86.shr_r32_cl),
    "rol_r16_imm8": ri(x86.rol_r16_imm8, (1, 8, 15)),
    "bswap_r32": r(x86.bswap_r32),
    "jcc_rel8": lambda: (x86.jcc_rel8(c, v) for c in range(16) for v in RELS if -128 <= v < 128),
    "jcc_rel32": lambda: (x86.jcc_rel32(c, v) for c in range(16) for v in RELS),
    "jmp_rel8": rel(x86.jmp_rel8, [v for v in RELS if -128 <= v < 128]),
    "jmp_rel32": rel(x86.jmp_rel32), "call_rel32": rel(x86.call_rel32),
    "jcc": lambda: (x86.jcc(c, v) for c in range(16) for v in RELS[:-2]),
    "jmp": rel(x86.jmp, RELS[:-2]),
    "call_r64": r(x86.call_r64), "push_r64": r(x86.push_r64), "pop_r64": r(x86.pop_r64),
    "ret": lambda: [x86.ret()], "nop": lambda: [x86.nop()], "syscall": lambda: [x86.syscall()],
}
for _alu in x86.ALU:
    FORMS.update({
        f"{_alu}_r32_imm32": ri(getattr(x86, f"{_alu}_r32_imm32")),
        f"{_alu}_r32_imm8": ri(getattr(x86, f"{_alu}_r32_imm8"), IMM8),
        f"{_alu}_r32_imm": ri(getattr(x86, f"{_alu}_r32_imm")),
        f"{_alu}_r32_r32": rr(getattr(x86, f"{_alu}_r32_r32")),
        f"{_alu}_r64_imm32": ri(getattr(x86, f"{_alu}_r64_imm32")),
        f"{_alu}_r64_imm8": ri(getattr(x86, f"{_alu}_r64_imm8"), IMM8),
        f"{_alu}_r64_r64": rr(getattr(x86, f"{_alu}_r64_r64")),
    })


def emit_functions():
    """Every public emit function of the module (anything callable but the operand types)."""
    return {n for n, v in vars(x86).items()
            if callable(v) and not n.startswith("_") and not isinstance(v, type)
            and n not in ("mem",)}


def test_every_emit_function_is_listed():
    assert emit_functions() == set(FORMS)


_cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
ADDR = 0x100000


def _iced_formatter():
    f = iced.Formatter(iced.FormatterSyntax.INTEL)
    f.hex_prefix, f.hex_suffix, f.uppercase_hex = "0x", "", False
    f.space_after_operand_separator = True
    f.space_between_memory_add_operators = True
    f.memory_size_options = iced.MemorySizeOptions.ALWAYS
    f.show_branch_size = False
    f.branch_leading_zeros = False
    f.use_pseudo_ops = False
    return f


_fmt = _iced_formatter()


def _iced_style(ins: x86.Ins) -> str:
    """The emitter's text in iced's style: unsigned immediates, ``mov`` for ``movabs``."""
    text = ins.asm(ADDR).replace("movabs", "mov")
    if ins.rel is not None or ", " not in text:
        return text
    head, _, last = text.rpartition(", ")
    if last.startswith("-") and "[" not in last:
        bits = 64 if head.split()[1] in x86.NAMES64 else 32
        last = hex(int(last.replace("0x", ""), 16 if "0x" in last else 10) & ((1 << bits) - 1))
        if int(last, 16) <= 9:
            last = str(int(last, 16))
    return f"{head}, {last}"


@pytest.mark.parametrize("name", sorted(FORMS))
def test_capstone_and_iced_agree_with_the_emitter(name):
    seen = 0
    for ins in FORMS[name]():
        assert isinstance(ins, x86.Ins)
        got = list(_cs.disasm(bytes(ins), ADDR))
        assert len(got) == 1, (name, ins.hex())
        text = f"{got[0].mnemonic} {got[0].op_str}".strip()
        assert (text, got[0].size) == (ins.asm(ADDR), len(ins)), (name, ins.hex())
        dec = iced.Decoder(64, bytes(ins), ip=ADDR)
        one = dec.decode()
        assert one.len == len(ins) and not one.is_invalid, (name, ins.hex())
        assert _fmt.format(one) == _iced_style(ins), (name, ins.hex())
        seen += 1
    assert seen


def test_short_forms_are_chosen():
    assert x86.add_r32_imm(x86.RAX, 1) == bytes.fromhex("83c001")
    assert x86.add_r32_imm(x86.RAX, 0x1000) == bytes.fromhex("0500100000")
    assert x86.cmp_r32_imm(x86.RCX, 0xFFFFFFFF) == bytes.fromhex("83f9ff")
    assert x86.jcc(x86.CC["je"], 10) == bytes.fromhex("740a")
    assert x86.jcc(x86.CC["je"], 200) == bytes.fromhex("0f84c4000000")
    assert x86.jmp(-300) == bytes.fromhex("e9d1feffff")


@pytest.mark.parametrize("bad", [
    lambda: x86.jcc_rel8(4, 128), lambda: x86.jmp_rel8(-129), lambda: x86.mov_r32_imm32(0, 1 << 32),
    lambda: x86.add_r32_imm8(0, 200), lambda: x86.mem(x86.RAX, 0, x86.RSP),
    lambda: x86.mem(x86.RAX, 0, x86.RCX, 3),
])
def test_out_of_range_operands_are_refused(bad):
    with pytest.raises(ValueError):
        bad()


def _maps_for(address: int) -> str:
    for line in open("/proc/self/maps"):
        lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
        if lo <= address < hi:
            return line.split()[1]
    return ""


needs_native = pytest.mark.skipif(jmem.unavailable_reason() is not None,
                                  reason=str(jmem.unavailable_reason()))


@needs_native
def test_exec_memory_is_read_execute_and_runs():
    code = (x86.mov_r32_r32(x86.RAX, x86.RDI) + x86.imul_r32_r32(x86.RAX, x86.RSI)
            + x86.add_r32_imm(x86.RAX, 7) + x86.ret())
    m = jmem.ExecMemory(code)
    assert _maps_for(m.address) == "r-xp"
    assert m.read() == code
    f = m.function(ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32)
    assert f(6, 7) == 49
    m.free()
    assert not m.alive and _maps_for(m.address) != "r-xp"
    m.free()                            # idempotent


@needs_native
def test_exec_memory_is_freed_with_its_owner():
    m = jmem.ExecMemory(x86.ret())
    addr = m.address
    f = m.function(ctypes.c_int)
    del m
    assert _maps_for(addr) == "r-xp"    # the callable keeps it alive
    f()
    del f
    import gc
    gc.collect()
    assert _maps_for(addr) != "r-xp"


def test_jit_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("BPFIO_JIT", "0")
    import bpfio
    with pytest.raises(bpfio.JitUnavailable, match="BPFIO_JIT=0"):
        jmem.ExecMemory(x86.ret())
