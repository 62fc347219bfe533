"""Disassembler: :class:`Program` -> text, driven by ``isa.OPCODES``.

Two styles:

* ``bpf_asm`` (default): source that :func:`bpfio.assemble` turns back into
  the same bytes for *every* program it can hold (1 to ``BPF_MAXINSNS``
  instructions; ``bpfio disasm`` refuses the others).  Jump targets get labels ``L<pc>``.
  Instructions bpf_asm cannot spell -- unknown codes, stray ``jt``/``jf`` or
  ``k`` bits the encoding ignores, targets past the end -- are written as
  ``.insn code, jt, jf, k`` (a bpfio directive no bpf_asm program contains).
* ``tcpdump``: exactly ``tcpdump -d`` (libpcap ``bpf_image``), one
  ``(NNN) mnemonic operand`` line per instruction.
"""

from __future__ import annotations

from bpfio.errors import UsageError
from bpfio.insn import Insn, Program
from bpfio.isa import (ANCILLARY_BY_K, BPF_A, BPF_ALU, BPF_AND, BPF_IMM, BPF_IND,
                       BPF_JA, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_MEM, BPF_MISC,
                       BPF_MSH, BPF_NEG, BPF_OR, BPF_RET, BPF_ST, BPF_STX, BPF_X, BPF_XOR,
                       OPCODES, to_s32)

_SIGNED_ALU_NOT = {BPF_AND, BPF_OR, BPF_XOR}


def _num(k: int) -> str:
    """A bpf_asm number: decimal below 10, hex above."""
    return str(k) if k < 10 else f"{k:#x}"


def _uses_k(info) -> bool:
    if info.cls in (BPF_LD, BPF_LDX):
        return info.mode != BPF_LEN
    if info.cls in (BPF_ST, BPF_STX):
        return True
    if info.cls == BPF_ALU:
        return info.op != BPF_NEG and info.src == BPF_K
    if info.cls == BPF_JMP:
        return info.op == BPF_JA or info.src == BPF_K
    if info.cls == BPF_RET:
        return info.src == BPF_K
    return False


def _raw(insn: Insn) -> str:
    return f".insn {insn.code:#x}, {insn.jt}, {insn.jf}, {insn.k:#x}"


def format_insn(insn: Insn, pc: int | None = None, *, length: int | None = None,
                label=None) -> str:
    """Render one instruction in bpf_asm syntax.

    ``label(target_pc)`` names jump targets (default ``L<pc>``); without a
    ``pc`` jumps show relative offsets (``+3``) and are for reading only.
    """
    info = OPCODES.get(insn.code)
    if info is None:
        return _raw(insn)
    if not _uses_k(info) and insn.k:
        return _raw(insn)
    if not info.is_cond_jump and (insn.jt or insn.jf):
        return _raw(insn)
    label = label or (lambda t: f"L{t}")
    m, cls = info.mnemonic, info.cls
    k = insn.k
    if cls in (BPF_LD, BPF_LDX):
        if info.mode == BPF_IMM:
            return f"{m} #{_num(k)}"
        if info.mode == BPF_LEN:
            return f"{m} len"
        if info.mode == BPF_MEM:
            return f"{m} M[{k}]"
        if info.mode == BPF_MSH:
            return f"ldxb 4*([{_num(k)}]&0xf)"
        if info.mode == BPF_IND:
            return f"{m} [x + {_num(k)}]"
        anc = ANCILLARY_BY_K.get(k)
        if anc is not None and anc.asm_name:
            return f"{m} {anc.asm_name}"
        return f"{m} [{_num(k)}]"
    if cls in (BPF_ST, BPF_STX):
        return f"{m} M[{k}]"
    if cls == BPF_ALU:
        if info.op == BPF_NEG:
            return "neg"
        return f"{m} x" if info.src == BPF_X else f"{m} #{_num(k)}"
    if cls == BPF_JMP:
        if info.op == BPF_JA:
            if pc is None:
                return f"ja +{k}"
            target = (pc + 1 + k) & 0xffffffff
            if length is not None and target >= length:
                return _raw(insn)
            return f"ja {label(target)}"
        src = "x" if info.src == BPF_X else f"#{_num(k)}"
        if pc is None:
            return f"{m} {src}, +{insn.jt}, +{insn.jf}"
        t, f = pc + 1 + insn.jt, pc + 1 + insn.jf
        if length is not None and (t >= length or f >= length):
            return _raw(insn)
        if insn.jf == 0:
            return f"{m} {src}, {label(t)}"
        return f"{m} {src}, {label(t)}, {label(f)}"
    if cls == BPF_RET:
        if info.src == BPF_K:
            return f"ret #{_num(k)}"
        return "ret a" if info.src == BPF_A else "ret x"
    if cls == BPF_MISC:
        return m
    return _raw(insn)  # pragma: no cover - every class is handled above


def jump_targets(program) -> set[int]:
    """Return the pcs that some jump of ``program`` lands on (inside the program)."""
    n, targets = len(program), set()
    for pc, insn in enumerate(program):
        info = OPCODES.get(insn.code)
        if info is None or info.cls != BPF_JMP:
            continue
        if info.op == BPF_JA:
            t = (pc + 1 + insn.k) & 0xffffffff
            if t < n and not (insn.jt or insn.jf):
                targets.add(t)
        elif pc + 1 + insn.jt < n and pc + 1 + insn.jf < n:
            targets.add(pc + 1 + insn.jt)
            if insn.jf:
                targets.add(pc + 1 + insn.jf)
    return targets


def disassemble(program, *, style: str = "bpf_asm") -> str:
    """Render a whole program in ``bpf_asm`` (re-assemblable) or ``tcpdump`` style."""
    program = Program(program)
    if style == "tcpdump":
        return "".join(tcpdump_line(insn, pc) + "\n" for pc, insn in enumerate(program))
    if style != "bpf_asm":
        raise UsageError(f"disassemble: unknown style {style!r} (bpf_asm or tcpdump)")
    n = len(program)
    targets = jump_targets(program)
    lines = []
    for pc, insn in enumerate(program):
        text = format_insn(insn, pc, length=n)
        lines.append(f"L{pc}:\t{text}" if pc in targets else f"\t{text}")
    return "\n".join(lines) + "\n"


# --- tcpdump -d (libpcap bpf_image) -----------------------------------------------

def tcpdump_line(insn: Insn, pc: int) -> str:
    """One line of ``tcpdump -d`` output, as libpcap's ``bpf_image`` prints it."""
    code, k = insn.code, insn.k
    info = OPCODES.get(code)
    operand = ""
    if info is None or not info.kernel or code == (BPF_LDX | BPF_LEN):
        m, operand = "unimp", f"0x{code:x}"
        if code & 0x07 == BPF_JMP and code & 0xf0 != BPF_JA:  # bpf_image still shows jt/jf
            return f"({pc:03d}) {m:<8} {operand:<16} jt {pc + 1 + insn.jt}\tjf {pc + 1 + insn.jf}"
    else:
        m, cls = info.mnemonic, info.cls
        sk = to_s32(k)
        if cls == BPF_RET:
            operand = f"#{sk}" if info.src == BPF_K else ""
        elif cls in (BPF_LD, BPF_LDX):
            mode = info.mode
            if mode == BPF_IMM:
                operand = f"#0x{k:x}"
            elif mode == BPF_LEN:
                operand = "#pktlen"
            elif mode == BPF_MEM:
                operand = f"M[{sk}]"
            elif mode == BPF_MSH:
                operand = f"4*([{sk}]&0xf)"
            elif mode == BPF_IND:
                operand = f"[x + {sk}]"
            else:
                anc = ANCILLARY_BY_K.get(k)
                operand = f"[{anc.pcap_name}]" if anc else f"[{sk}]"
        elif cls in (BPF_ST, BPF_STX):
            operand = f"M[{sk}]"
        elif cls == BPF_JMP and info.op == BPF_JA:
            operand = f"{to_s32(pc + 1 + k)}"
        elif cls == BPF_JMP:
            src = "x" if info.src == BPF_X else f"#0x{k:x}"
            return (f"({pc:03d}) {m:<8} {src:<16} jt {pc + 1 + insn.jt}\t"
                    f"jf {pc + 1 + insn.jf}")
        elif cls == BPF_ALU:
            if info.op == BPF_NEG:
                operand = ""
            elif info.src == BPF_X:
                operand = "x"
            elif info.op in _SIGNED_ALU_NOT:
                operand = f"#0x{k:x}"
            else:
                operand = f"#{sk}"
        elif cls == BPF_MISC:
            operand = ""
    return f"({pc:03d}) {m:<8} {operand}"
