"""Text the debugger prints, in ``tools/bpf/bpf_dbg``'s formats where it has one.

bpf_dbg prints with C's ``printf``; ``%#08x`` of zero is ``00000000`` (no
``0x``) and of 0x800 is ``0x000800`` -- :func:`bpfio.text.formats.c_alt_hex`
reproduces that.  Layouts kept from bpf_dbg: the disassembly line
``l<pc>:<TAB><mnemonic> <operand>[, l<t>, l<f>]``, the register dump
(``pc:``, ``code:``, ``curr:``, ``jt:``, ``jf:``, ``A:``, ``X:``, ``ret:``,
``M[i]:``), the packet hex dump and ``breakpoints: `` lists.

Where bpf_dbg is wrong the text is fixed (see docs/debugger.md): it prints
``nosup 0x81`` for ``ldx len`` and ``[-4096]`` for ancillary loads; here
they are ``ldx #len`` and ``ld #proto``.

Everything returns strings or lists of lines; nothing prints.
"""

from __future__ import annotations

from bpfio import isa
from bpfio.text.formats import c_alt_hex
from bpfio.isa import (ANCILLARY_BY_K, BPF_A, BPF_ABS, BPF_ALU, BPF_AND, BPF_IMM, BPF_IND,
                       BPF_JA, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_MEM, BPF_MISC,
                       BPF_MSH, BPF_NEG, BPF_OR, BPF_RET, BPF_ST, BPF_STX, BPF_X, BPF_XOR,
                       OPCODES, to_s32)

_HEX_ALU = {BPF_AND, BPF_OR, BPF_XOR}   # bpf_dbg prints these K operands with %#x, the rest %d


def c_hex(value: int) -> str:
    """C's ``%#x``: ``0`` for zero, else ``0x...``."""
    return f"{value:#x}" if value else "0"


def reg(value: int) -> str:
    """bpf_dbg's register cell ``[%#08x][%u]``."""
    return f"[{c_alt_hex(value, 8)}][{value}]"


def operand(insn, pc: int) -> tuple[str, str]:
    """``(mnemonic, operand)`` as bpf_dbg's ``bpf_disasm`` would print them (fixed where it fails)."""
    info = OPCODES.get(insn.code)
    k = insn.k
    if info is None:
        return "nosup", c_hex(insn.code)
    m, cls = info.mnemonic, info.cls
    if cls == BPF_RET:
        return m, {BPF_K: f"#{c_hex(k)}", BPF_A: "a", BPF_X: "x"}[info.src]
    if cls == BPF_MISC or (cls == BPF_ALU and info.op == BPF_NEG):
        return m, ""
    if cls in (BPF_ST, BPF_STX):
        return m, f"M[{to_s32(k)}]"
    if cls in (BPF_LD, BPF_LDX):
        mode = info.mode
        if mode == BPF_IMM:
            return m, f"#{c_hex(k)}"
        if mode == BPF_LEN:
            return m, "#len"
        if mode == BPF_MEM:
            return m, f"M[{to_s32(k)}]"
        if mode == BPF_MSH:
            return m, f"4*([{to_s32(k)}]&0xf)"
        if mode == BPF_IND:
            return m, f"[x+{to_s32(k)}]"
        anc = ANCILLARY_BY_K.get(k)
        if mode == BPF_ABS and anc is not None:
            return m, f"#{anc.asm_name or anc.pcap_name}"
        return m, f"[{to_s32(k)}]"
    if cls == BPF_JMP:
        if info.op == BPF_JA:
            return m, str(to_s32(pc + 1 + k))
        return m, "x" if info.src == BPF_X else f"#{c_hex(k)}"
    # ALU
    if info.src == BPF_X:
        return m, "x"
    return m, f"#{c_hex(k)}" if info.op in _HEX_ALU else f"#{to_s32(k)}"


def disasm_line(insn, pc: int) -> str:
    """One bpf_dbg disassembly line: ``l<pc>:<TAB>mnemonic operand[, l<t>, l<f>]``."""
    m, op = operand(insn, pc)
    info = OPCODES.get(insn.code)
    if info is not None and info.is_cond_jump:
        return f"l{pc}:\t{m} {op}, l{pc + 1 + insn.jt}, l{pc + 1 + insn.jf}"
    return f"l{pc}:\t{m} {op}"


def disasm_short(insn, pc: int) -> str:
    """The same line with a space instead of the tab (for aligned trace lines)."""
    return disasm_line(insn, pc).replace("\t", " ", 1)


def register_dump(program, pc: int, a: int, x: int, mem, ret: int | None = None) -> list[str]:
    """bpf_dbg's ``bpf_dump_curr`` layout for the state *before* the instruction at ``pc``.

    ``ret`` is the returned value once the program has ended (bpf_dbg's ``ret:`` line).
    ``jt:``/``jf:`` lines appear for conditional jumps only (bpf_dbg shows
    them whenever jt or jf is non-zero, reading past the program for a stray
    field on a non-jump).
    """
    insn = program[pc]
    lines = [f"pc:       [{pc}]",
             f"code:     [{insn.code}] jt[{insn.jt}] jf[{insn.jf}] k[{insn.k}]",
             f"curr:     {disasm_line(insn, pc)}"]
    info = OPCODES.get(insn.code)
    if info is not None and info.is_cond_jump and (insn.jt or insn.jf):
        for name, target in (("jt", pc + 1 + insn.jt), ("jf", pc + 1 + insn.jf)):
            lines.append(f"{name}:       {disasm_line(program[target], target)}")
    lines.append(f"A:        {reg(a)}")
    lines.append(f"X:        {reg(x)}")
    if ret is not None:
        lines.append(f"ret:      {reg(ret)}!")
    lines.extend(mem_lines(mem))
    return lines


def mem_lines(mem) -> list[str]:
    """``M[i]: [..][..]`` for each non-zero word, or ``M[0,N-1]:  [00000000][0]`` when all are 0."""
    out = [f"M[{i}]: {reg(v)}" for i, v in enumerate(mem) if v]
    return out or [f"M[0,{len(mem) - 1}]:  {reg(0)}"]


def hex_dump(data: bytes) -> list[str]:
    """bpf_dbg's ``hex_dump``: ``%3u: `` then ``%02x `` per byte, 16 bytes a line."""
    lines = []
    for off in range(0, max(len(data), 1), 16):
        chunk = data[off:off + 16]
        lines.append(f"{off:3d}: " + "".join(f"{b:02x} " for b in chunk))
    return lines


def packet_dump(data: bytes, wirelen: int) -> list[str]:
    """``len: L`` (or ``cap: C, len: L``) then the hex dump."""
    head = f"len: {wirelen}" if wirelen == len(data) else f"cap: {len(data)}, len: {wirelen}"
    return [head, *hex_dump(data)]


def program_dump(program) -> list[str]:
    """bpf_dbg's ``dump``: a C comment header, then ``bpf_asm -c`` lines."""
    lines = ["/* { op, jt, jf, k }, */"]
    lines += [f"{{ {c_alt_hex(i.code, 4)}, {i.jt:2d}, {i.jf:2d}, {c_alt_hex(i.k, 10)} }},"
              for i in program]
    return lines


# --- what one executed instruction did ------------------------------------------

_JMP_SYMBOL = {isa.BPF_JEQ: "==", isa.BPF_JGT: ">", isa.BPF_JGE: ">=", isa.BPF_JSET: "&"}
_ALU_SYMBOL = {isa.BPF_ADD: "+", isa.BPF_SUB: "-", isa.BPF_MUL: "*", isa.BPF_DIV: "/",
               isa.BPF_OR: "|", isa.BPF_AND: "&", isa.BPF_LSH: "<<", isa.BPF_RSH: ">>",
               isa.BPF_MOD: "%", isa.BPF_XOR: "^"}
_SECCOMP_FIELDS = {0: "nr", 4: "arch", 8: "instruction_pointer (low)",
                   12: "instruction_pointer (high)"}


def input_field(profile: str, off: int, size: int) -> str:
    """Name the input bytes a load at ``off`` reads (``bytes 12..13``, ``PIO_PORT``, ``nr``...)."""
    if profile == "seccomp":
        if off in _SECCOMP_FIELDS:
            return _SECCOMP_FIELDS[off]
        if 16 <= off < 64:
            i, half = divmod(off - 16, 8)
            return f"args[{i}] ({'high' if half >= 4 else 'low'})"
        return f"offset {off}"
    if profile == "pio":
        from bpfio.abi.pio import CONSTANTS, FIELDS, PIO_HDR_LEN
        if off >= PIO_HDR_LEN:
            i, rest = divmod(off - PIO_HDR_LEN, 4)
            return f"shared word {i}" + (f" + {rest}" if rest else "")
        for name in FIELDS:
            if CONSTANTS[name] == off:
                return name
        return f"offset {off}"
    s = to_s32(off)
    return f"byte {s}" if size == 1 else f"bytes {s}..{s + size - 1}"


def explain(step, program, profile: str = "socket", old_mem: int | None = None) -> str:
    """Say what the executed ``step`` (an :class:`bpfio.exec.trace.Step`) did, and why it went where it went."""
    insn, a, x = step.insn, step.a, step.x
    if step.next_pc is None:
        if step.fault:
            return f"aborted: {step.fault}; returns 0"
        anc = ANCILLARY_BY_K.get(insn.k)
        if OPCODES[insn.code].cls == BPF_LD and anc is not None:
            # ifidx/hatype on a socket without a device: the kernel's converted code exits with A.
            return f"SKF_AD_{anc.kernel_name} without a device: the program ends returning A = {a:#x}"
        return f"returns {int(step.verdict):#x}"
    info = OPCODES[insn.code]
    cls, k = info.cls, insn.k
    if cls == BPF_JMP:
        if info.op == BPF_JA:
            return f"-> l{step.next_pc}"
        v = x if info.src == BPF_X else k
        sym = _JMP_SYMBOL[info.op]
        if sym == "&":
            cond = bool(a & v)
            test = f"A {a:#x} & {v:#x} = {a & v:#x}"
        else:
            cond = {"==": a == v, ">": a > v, ">=": a >= v}[sym]
            test = f"A {a:#x} {sym} {v:#x}"
        return f"{test}: {'true' if cond else 'false'} -> l{step.next_pc}"
    if cls == BPF_ALU:
        if info.op == BPF_NEG:
            return f"A = -{a:#x} = {step.a_after:#x}"
        v = x if info.src == BPF_X else k
        return f"A = {a:#x} {_ALU_SYMBOL[info.op]} {v:#x} = {step.a_after:#x}"
    if cls in (BPF_ST, BPF_STX):
        value = a if cls == BPF_ST else x
        was = f" (was {old_mem:#x})" if old_mem is not None else ""
        return f"M[{k}] = {'A' if cls == BPF_ST else 'X'} = {value:#x}{was}"
    if cls == BPF_MISC:
        return f"X = A = {step.x_after:#x}" if info.op == isa.BPF_TAX else f"A = X = {step.a_after:#x}"
    reg_name = "A" if cls == BPF_LD else "X"
    value = step.a_after if cls == BPF_LD else step.x_after
    mode = info.mode
    if mode == BPF_IMM:
        return f"{reg_name} = {value:#x}"
    if mode == BPF_LEN:
        return f"{reg_name} = len = {value}"
    if mode == BPF_MEM:
        return f"{reg_name} = M[{k}] = {value:#x}"
    if mode == BPF_MSH:
        return f"X = 4*({input_field(profile, k, 1)} & 0xf) = {value}"
    if mode == BPF_ABS and k in ANCILLARY_BY_K and profile == "socket":
        return f"A = {value:#x} (SKF_AD_{ANCILLARY_BY_K[k].kernel_name})"
    off = (x + k) & 0xffffffff if mode == BPF_IND else k
    return f"A = {value:#x} ({input_field(profile, off, info.size)})"
