"""A bpf_dbg-class debugger: step a program through packets, system calls or port events.

The kernel's ``tools/bpf/bpf_dbg`` is the model: the same commands with the
same meanings (``load bpf``/``load pcap``, ``select``, ``step [±N]``,
``run [N]``, ``breakpoint``, ``disassemble``, ``dump``, ``quit``) and its
output layouts (see :mod:`bpfio.dbg.format`).  What it gets wrong is fixed
(docs/debugger.md lists each difference), it runs the real semantics of
:mod:`bpfio.exec.interp` (extensions included), and it knows the seccomp and
pio profiles: ``load syscall``, ``load events``, ``mem`` and a machine mode
that steps one binding of a machine config with its device model behind it.

A :class:`Debugger` holds one session.  :meth:`Debugger.execute` runs one
command line and returns the lines to show; a problem raises
:class:`DbgError` (or another :class:`~bpfio.errors.BpfError`).  The REPL,
scripts (``-x``) and tests all drive it through that one method.

State model: the program runs on input ``cur`` (0-based; shown 1-based as
bpf_dbg does) in an :class:`~bpfio.exec.trace.Execution`.  A dump shows the
state *before* the instruction at ``pc`` -- the instruction ``step`` runs
next.  When the program returns, the verdict is shown and the session moves
to the next input, as bpf_dbg does.
"""

from __future__ import annotations

import os
from collections import Counter

from bpfio.dbg import format as fmt
from bpfio.dbg.load import LOAD_USAGE, LOAD_WHAT, DbgError, Loading, _int, _prefix
from bpfio.isa import BPF_ST, BPF_STX, OPCODES

PROFILES = ("socket", "seccomp", "pio")

# name -> (usage, one-line help); the order is the help order.
COMMANDS = {
    "load": (LOAD_USAGE, "load a program (any format) or inputs"),
    "select": ("select N", "make input N (1-based) the current one"),
    "step": ("step [N|-N]", "run N instructions (default 1); -N goes back N"),
    "run": ("run [N]", "run the current and following inputs (all, or N) until a breakpoint"),
    "breakpoint": ("breakpoint [PC|reset]", "list, set (before PC runs) or clear breakpoints"),
    "disassemble": ("disassemble [PC]", "the program, or the instruction at PC"),
    "dump": ("dump", "the program as C initializers"),
    "regs": ("regs", "the register dump of the current state"),
    "input": ("input", "the current packet, system call or event"),
    "mem": ("mem", "scratch/shared words: at the start of the input and now"),
    "path": ("path", "the instructions run so far on this input, and why each went on"),
    "help": ("help", "this list"),
    "quit": ("quit", "leave the debugger"),
}


class Debugger(Loading):
    """One debugging session; see the module docstring."""

    def __init__(self, profile: str = "socket", *, mem_words: int = 16, notifiers: int = 16,
                 clock_hz: int | None = None, base: int | None = None, include_path=(),
                 defines=None, context: dict | None = None):
        if profile not in PROFILES:
            raise DbgError(f"unknown profile '{profile}' (one of {', '.join(PROFILES)})")
        from bpfio.dbg.inputs import Packets, Syscalls
        self.profile = profile
        self.mem_words = mem_words if profile == "pio" else 16
        self.notifiers = notifiers if profile == "pio" else 0
        self.clock_hz = clock_hz
        self.base = base
        self.include_path = tuple(include_path)
        self.defines = defines
        self.program = None
        self.machine = None                  # MachineEvents in machine mode
        self.source = {"socket": lambda: Packets([], context),
                       "seccomp": lambda: Syscalls(), "pio": lambda: None}[profile]()
        self.cur = 0
        self.exe = None
        self.undo: list[tuple] = []
        self.trail: list[tuple] = []         # (Step, old M value) per executed instruction
        self.breakpoints: list[int] = []
        self.stopped_at: tuple[int, int] | None = None
        self.passes = self.fails = 0
        self.verdicts: Counter = Counter()
        self.last_mem: tuple[int, list, list] | None = None
        self.quit = False

    # -- setup ------------------------------------------------------------------------
    def attach_machine(self, config: str, binding: str) -> list[str]:
        """Debug binding ``binding`` of machine config ``config`` in place (pio profile)."""
        from bpfio.dbg.inputs import MachineEvents
        if self.profile != "pio":
            raise DbgError("--machine needs the pio profile")
        self.machine = MachineEvents(config, binding)
        b = self.machine.binding
        if b.program is None:
            self.machine.close()
            raise DbgError(f"{config}: binding '{binding}' has no program to debug")
        self.program = b.program
        self.mem_words, self.notifiers = len(b.mem), len(b.notifiers)
        self.source = self.machine
        self._reset_run()
        end = b.base + b.length - 1
        return [f"binding '{binding}': ports {b.base:#x}-{end:#x}, {len(b.program)} instructions, "
                f"{len(b.mem)} shared words"
                + (f", model {type(b.device).__name__}" if b.device is not None else "")]

    def close(self) -> None:
        """Release the machine of machine mode."""
        if self.machine is not None:
            self.machine.close()

    def _reset_run(self) -> None:
        self.cur = 0
        self._drop_execution()
        self.passes = self.fails = 0
        self.verdicts.clear()
        self.last_mem = None

    def _drop_execution(self) -> None:
        self.exe = None
        self.undo = []
        self.trail = []
        self.stopped_at = None

    # -- command dispatch ------------------------------------------------------------
    def execute(self, line: str) -> list[str]:
        """Run one command line; return the lines to print."""
        words = line.strip().split(None, 1)
        if not words or words[0].startswith("#"):
            return []
        name, arg = words[0], words[1].strip() if len(words) > 1 else ""
        if name not in COMMANDS:
            raise DbgError(f"unknown command '{name}' (commands: {', '.join(COMMANDS)})")
        return getattr(self, "cmd_" + name)(arg)

    def completions(self, line: str, text: str) -> list[str]:
        """Tab-completion candidates for ``text`` at the end of ``line``."""
        words = line.split()
        if len(words) == 0 or (len(words) == 1 and not line.endswith(" ")):
            return [c + " " for c in COMMANDS if c.startswith(text)]
        if words[0] == "load" and (len(words) == 1 or (len(words) == 2 and not line.endswith(" "))):
            return [w + " " for w in LOAD_WHAT if w.startswith(text)]
        if words[0] == "breakpoint" and len(words) <= 2 and "reset".startswith(text) and text:
            return ["reset"]
        if words[0] == "load" and _prefix(words[1], LOAD_WHAT) in ("bpf", "pcap", "events"):
            return _paths(text)
        return []

    # -- helpers ---------------------------------------------------------------------
    def _need_program(self) -> None:
        if self.program is None:
            raise DbgError("no bpf program loaded (load bpf FILE|CODE)")

    def _need_inputs(self) -> None:
        self._need_program()
        if self.source is None or len(self.source) == 0:
            hint = {"socket": "load pcap FILE or load packet HEX",
                    "seccomp": "load syscall NAME [ARG...]",
                    "pio": "load events FILE"}[self.profile]
            noun = {"socket": "packets", "seccomp": "system calls", "pio": "events"}[self.profile]
            raise DbgError(f"no {noun} loaded ({hint})")

    def _current(self):
        if self.exe is None:
            self.exe = self.source.start(self.cur, self.program)
            self.undo = []
            self.trail = []
        return self.exe

    def _step_one(self, exe):
        insn = self.program[exe.pc]
        cls = OPCODES[insn.code].cls
        old = exe.mem[insn.k] if cls in (BPF_ST, BPF_STX) else None
        self.undo.append((exe.pc, exe.a, exe.x, exe.executed, old))
        step = exe.step()
        self.trail.append((step, old))
        return step, old

    def _dump(self, exe) -> list[str]:
        ret = int(exe.verdict) if exe.done else None
        return fmt.register_dump(self.program, exe.pc, exe.a, exe.x, exe.mem, ret)

    def _finish(self, exe, out: list[str], quiet: bool = False) -> None:
        """The program returned on input ``cur``: commit it and move to the next input."""
        before = list(getattr(self.source, "before", []) or [])
        lines = self.source.finish(self.cur, exe, self.program)
        if self.profile == "pio":
            self.last_mem = (self.cur, before, list(getattr(self.source, "mem", None)
                                                    or self.source.binding.mem.words))
        if not quiet:
            out.append(f"verdict:  {self.source.verdict(self.cur, exe)}")
            out.extend(lines)
        self._drop_execution()
        noun = self.source.noun
        if self.cur + 1 < len(self.source):
            self.cur += 1
            if not quiet:
                out.append(f"(next {noun})")
        else:
            self.cur = 0
            if not quiet:
                out.append(f"(going back to first {noun})")

    # -- commands --------------------------------------------------------------------
    def cmd_help(self, arg):
        """List the commands."""
        width = max(len(form) for usage, _ in COMMANDS.values() for form in usage.split(" | "))
        out = []
        for usage, text in COMMANDS.values():
            forms = usage.split(" | ")
            out.append(f"{forms[0]:<{width}}  {text}")
            out += forms[1:]
        return out

    def cmd_quit(self, arg):
        """Leave."""
        self.quit = True
        return []

    def cmd_select(self, arg):
        """``select N``: input N (1-based) becomes current, from its first instruction."""
        self._need_inputs()
        if not arg:
            raise DbgError("usage: select N")
        n = _int(arg, "input number")
        out = []
        if n == 0:
            out.append(f"{self.source.noun} count starts with 1, clamping!")
            n = 1
        if not 1 <= n <= len(self.source):
            raise DbgError(f"no {self.source.noun} #{n} available! (there are {len(self.source)})")
        self.cur = n - 1
        self._drop_execution()
        self.last_mem = None
        out.append(self.source.title(self.cur))
        return out

    def cmd_step(self, arg):
        """``step [N]`` runs N instructions; ``step -N`` goes back N."""
        self._need_inputs()
        n = _int(arg, "steps") if arg else 1
        if n == 0:
            n = 1
        exe = self._current()
        self.stopped_at = None
        if n < 0:
            if -n > len(self.undo):
                raise DbgError(f"reached bottom of register history stack! (only {len(self.undo)} "
                               f"instruction(s) ran on this {self.source.noun})")
            for _ in range(-n):
                pc, a, x, executed, old = self.undo.pop()
                self.trail.pop()
                if old is not None:
                    exe.mem[self.program[pc].k] = old
                exe.pc, exe.a, exe.x, exe.executed = pc, a, x, executed
            exe.done, exe.verdict, exe.fault = False, None, None
            return ["-- register dump --", *self._dump(exe)]
        out = []
        for _ in range(n):
            step, old = self._step_one(exe)
            out.append(self._trace_line(step, old))
            if exe.done:
                break
        out += ["-- register dump --", *self._dump(exe)]
        if exe.done:
            self._count(exe)
            self._finish(exe, out)
        return out

    def _trace_line(self, step, old) -> str:
        why = fmt.explain(step, self.program, self.profile, old)
        return f"{fmt.disasm_short(step.insn, step.pc):<34} ; {why}"

    def cmd_path(self, arg):
        """The instructions executed so far on the current input, with what each did."""
        self._need_inputs()
        self._current()
        head = f"{self.source.title(self.cur)}: {len(self.trail)} instruction(s) run"
        return [head, *(self._trace_line(step, old) for step, old in self.trail)]

    def _count(self, exe) -> None:
        if int(exe.verdict) > 0:     # unsigned: bpf_dbg's int makes 0x80000000.. a "breakpoint"
            self.passes += 1
        else:
            self.fails += 1
        self.verdicts[self.source.verdict(self.cur, exe).split(" ")[0]] += 1

    def cmd_run(self, arg):
        """``run [N]``: run inputs to their verdicts, stopping before a breakpoint's instruction."""
        self._need_inputs()
        limit = _int(arg, "input count") if arg else 0
        if limit < 0:
            raise DbgError("run takes a count of inputs (N >= 0)")
        done = 0
        # Like gdb's continue: an instruction we are already stopped at (by a breakpoint or
        # by stepping onto it) runs without stopping again.
        resume = self.stopped_at
        if self.exe is not None and self.exe.executed:
            resume = (self.cur, self.exe.pc)
        self.stopped_at = None
        while True:
            exe = self._current()
            while not exe.done:
                if exe.pc in self.breakpoints and resume != (self.cur, exe.pc):
                    self.stopped_at = (self.cur, exe.pc)
                    return ["-- register dump --", *self._dump(exe),
                            f"-- {self.source.noun} dump --", *self.source.dump(self.cur),
                            "(breakpoint)"]
                resume = None
                self._step_one(exe)
            self._count(exe)
            last = self.cur + 1 >= len(self.source)
            self._finish(exe, [], quiet=True)
            done += 1
            if last or (limit and done >= limit):
                break
        out = [f"bpf passes:{self.passes} fails:{self.fails}"]
        if self.profile != "socket":
            out.append("verdicts: " + " ".join(f"{k}:{v}" for k, v in sorted(self.verdicts.items())))
        self.passes = self.fails = 0
        self.verdicts.clear()
        self.cur = 0
        self._drop_execution()
        return out

    def cmd_breakpoint(self, arg):
        """``breakpoint`` lists, ``breakpoint PC`` sets, ``breakpoint reset`` clears."""
        self._need_program()
        if not arg:
            return ["breakpoints: " + "".join(f"{pc} " for pc in self.breakpoints)]
        if _prefix(arg, ("reset",)):
            self.breakpoints = []
            return []
        text = arg[1:] if arg[:1] in "lL" and arg[1:].isdigit() else arg
        pc = _int(text, "instruction")
        if not 0 <= pc < len(self.program):
            raise DbgError(f"no instruction {pc}: the program has {len(self.program)} (0.."
                           f"{len(self.program) - 1})")
        out = []
        if pc in self.breakpoints:
            out.append("breakpoint already set!")
        else:
            self.breakpoints.append(pc)
        out.append("breakpoint at: " + fmt.disasm_line(self.program[pc], pc))
        return out

    def cmd_disassemble(self, arg):
        """The whole program, or one instruction."""
        self._need_program()
        if arg:
            pc = _int(arg[1:] if arg[:1] in "lL" else arg, "instruction")
            if not 0 <= pc < len(self.program):
                raise DbgError(f"no instruction {pc}: the program has {len(self.program)}")
            return [fmt.disasm_line(self.program[pc], pc)]
        return [fmt.disasm_line(insn, pc) for pc, insn in enumerate(self.program)]

    def cmd_dump(self, arg):
        """The program as ``{ code, jt, jf, k },`` lines."""
        self._need_program()
        return fmt.program_dump(self.program)

    def cmd_regs(self, arg):
        """The register dump of the current state."""
        self._need_inputs()
        exe = self._current()
        return [self.source.title(self.cur), "-- register dump --", *self._dump(exe)]

    def cmd_input(self, arg):
        """The current input."""
        self._need_inputs()
        return [f"-- {self.source.noun} dump --", *self.source.dump(self.cur)]

    def cmd_mem(self, arg):
        """Scratch (socket, seccomp) or shared (pio) words: at the input's start and now."""
        self._need_inputs()
        exe = self._current()
        if exe.executed == 0 and self.last_mem is not None:
            i, before, after = self.last_mem
            head = f"mem: {len(after)} words, {self.source.noun} #{i + 1}: before -> after"
        else:
            before = list(getattr(self.source, "before", []) or [0] * len(exe.mem))
            after = exe.mem
            head = (f"mem: {len(after)} words, {self.source.noun} #{self.cur + 1} at pc {exe.pc}: "
                    "start -> now")
        rows = [f"M[{j}]: {fmt.reg(b)} -> {fmt.reg(a)}" + ("  *" if a != b else "")
                for j, (b, a) in enumerate(zip(before, after)) if a or b]
        return [head, *(rows or [f"M[0,{len(after) - 1}]:  {fmt.reg(0)}"])]


def _paths(text: str) -> list[str]:
    """File-name completions for ``text``."""
    import glob
    out = []
    for p in sorted(glob.glob(os.path.expanduser(text) + "*")):
        out.append(p + "/" if os.path.isdir(p) else p + " ")
    return out
