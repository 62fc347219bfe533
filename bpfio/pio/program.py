"""Programs in the engine: accepted forms, time-field analysis and shared runners."""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

from bpfio.errors import PioError
from bpfio.insn import Insn, Program
from bpfio.isa import BPF_ABS, BPF_B, BPF_H, BPF_IND, BPF_LD, BPF_LDX, BPF_MSH, BPF_W
from bpfio.abi import pio as abi


def to_program(program) -> Program:
    """Return a Program from a Program, a list of Insn, raw sock_filter bytes or assembly text."""
    if isinstance(program, Program):
        return program
    if isinstance(program, str):
        from bpfio.text.assembler import assemble
        return assemble(program, filename="<program>")
    if isinstance(program, (list, tuple)) and all(isinstance(i, Insn) for i in program):
        return Program(program)
    if isinstance(program, (bytes, bytearray)):   # raw struct sock_filter array
        return Program.from_bytes(bytes(program))
    raise PioError(f"program must be a Program, Insn list, raw bytes or assembly text, "
                   f"not {type(program).__name__}")


def clock_fields(program: Program | None) -> bool:
    """True when a program can read PIO_TICKS/PIO_NS (context bytes 24..39).

    Absolute loads (``ld/ldh/ldb [k]``, ``ldx 4*([k]&0xf)``) are checked by
    range; an indexed load (``[x + k]``) may reach anything, so it counts.
    """
    if program is None:
        return False
    lo, hi = abi.CONSTANTS["PIO_TICKS"], abi.PIO_HDR_LEN
    for insn in program:
        cls, mode = insn.code & 0x07, insn.code & 0xe0
        if cls not in (BPF_LD, BPF_LDX):
            continue
        if mode == BPF_IND:
            return True
        if mode in (BPF_ABS, BPF_MSH):
            width = 1 if mode == BPF_MSH else {BPF_W: 4, BPF_H: 2, BPF_B: 1}.get(insn.code & 0x18, 4)
            if insn.k < hi and insn.k + width > lo:
                return True
    return False


@lru_cache(maxsize=1024)
def load_runner(code: bytes, engine: str) -> Callable:
    """Build the runner of a verified program once per (program, engine).

    Runners are pure functions of their arguments (the shared words are
    passed in), so bindings running the same program share one -- and one
    copy of its code, which keeps many-binding machines cache-friendly.
    """
    prog = Program.from_bytes(code)
    if engine == "jit":
        # Native code (bpfio/exec/jit); JitUnavailable where it cannot run.  The binding
        # has verified the program against its own memory size, so the JIT's check only
        # needs the largest one; .pio reads and writes the binding's words in place.
        from bpfio.exec.jit.program import jit
        return jit(prog, profile="pio", mem_words=abi.PIO_MEM_MAX).pio
    if engine == "interp":
        from bpfio.exec.interp import pio_runner
        return pio_runner(prog).pio
    from bpfio.exec.compiler import compile as compile_program
    return compile_program(prog, profile="pio").pio
