"""The exception hierarchy: every bad input becomes one of these.

The library never prints or exits; ``bpfio.cli`` turns a :class:`BpfError`
into a one-line message and exit status 1.  Each class carries structured
fields so that callers and tests need not parse the message.
"""

from __future__ import annotations

import errno as _errno


class BpfError(Exception):
    """Base class of every error bpfio raises for bad input."""


class AsmError(BpfError):
    """A source program the assembler (or its preprocessor) cannot accept.

    ``str(err)`` is ``file:line:col: error: message`` followed, when the
    source line is known, by that line and a caret under the column.
    """

    def __init__(self, message: str, *, filename: str = "<input>",
                 line: int = 0, column: int = 0, source_line: str | None = None):
        self.message = message
        self.filename = filename
        self.line = line
        self.column = column
        self.source_line = source_line
        super().__init__(self.render())

    @property
    def location(self) -> str:
        """``file:line:col`` (or the shorter forms when unknown)."""
        parts = [self.filename]
        if self.line:
            parts.append(str(self.line))
            if self.column:
                parts.append(str(self.column))
        return ":".join(parts)

    def render(self, *, caret: bool = True) -> str:
        """Return the message, optionally with the source line and a caret."""
        head = f"{self.location}: error: {self.message}"
        if not caret or self.source_line is None:
            return head
        col = max(self.column, 1)
        return f"{head}\n  {self.source_line}\n  {' ' * (col - 1)}^"


class DecodeError(BpfError):
    """Input in one of the program formats that cannot be decoded."""

    def __init__(self, message: str, *, filename: str = "<input>",
                 line: int | None = None, offset: int | None = None):
        self.message = message
        self.filename = filename
        self.line = line
        self.offset = offset
        where = filename
        if line is not None:
            where += f":{line}"
        elif offset is not None:
            where += f": byte {offset}"
        super().__init__(f"{where}: error: {message}")


class VerifierError(BpfError):
    """A program a verifier profile rejects, with the pc and the rule.

    ``errno`` is what the Linux kernel returns for the same program
    (``EINVAL`` for almost every rule).
    """

    def __init__(self, reason: str, *, pc: int | None, insn=None,
                 rule: str, errno: int = _errno.EINVAL, profile: str = "socket",
                 disasm: str | None = None):
        self.reason = reason
        self.pc = pc
        self.insn = insn
        self.rule = rule
        self.errno = errno
        self.profile = profile
        self.disasm = disasm
        where = "program" if pc is None else f"pc {pc}"
        if disasm:
            where += f" ({disasm})"
        super().__init__(f"{where}: {reason} [{rule}, {_errno.errorcode.get(errno, errno)}]")


class VMError(BpfError):
    """An instruction no verified program can contain reached the interpreter."""

    def __init__(self, message: str, *, pc: int):
        self.pc = pc
        super().__init__(f"pc {pc}: {message}")


class PioError(BpfError):
    """A port access or binding request the PIO engine cannot accept."""

    def __init__(self, message: str, *, port: int | None = None,
                 size: int | None = None):
        self.port = port
        self.size = size
        super().__init__(message)


class ConfigError(BpfError):
    """A machine configuration that cannot be loaded.

    ``str(err)`` is ``file: error: binding 'name': problem``.
    """

    def __init__(self, message: str, *, filename: str = "<config>",
                 binding: str | None = None):
        self.message = message
        self.filename = filename
        self.binding = binding
        within = f"binding '{binding}': " if binding else ""
        super().__init__(f"{filename}: error: {within}{message}")


class TraceError(BpfError):
    """A malformed line in an event file or a kvm_pio trace: ``file:line: error: problem``."""

    def __init__(self, message: str, *, filename: str = "<events>",
                 line: int | None = None):
        self.message = message
        self.filename = filename
        self.line = line
        where = filename + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: error: {message}")


class KvmError(BpfError):
    """The VMM cannot start a guest, or a guest stopped for a reason other than HLT."""

    def __init__(self, message: str, *, vcpu: int | None = None, reason: str | None = None,
                 rip: int | None = None, filename: str | None = None):
        self.message = message
        self.vcpu = vcpu
        self.reason = reason
        self.rip = rip
        self.filename = filename
        where = "" if vcpu is None else f"vcpu {vcpu}: "
        at = "" if rip is None else f" at rip {rip:#x}"
        text = f"{where}{message}{at}"
        super().__init__(text if filename is None else f"{filename}: error: {text}")

    def at(self, filename: str) -> "KvmError":
        """The same error, placed in ``filename`` (for the command line)."""
        if self.filename is not None or ": error:" in str(self).split("\n", 1)[0]:
            return self
        return KvmError(self.message, vcpu=self.vcpu, reason=self.reason, rip=self.rip,
                        filename=filename)


class JitUnavailable(BpfError):
    """Native code cannot run here (not x86-64 Linux, exec mappings refused, ``BPFIO_JIT=0``).

    Callers that chose the JIT by default fall back to the compiled path.
    """
