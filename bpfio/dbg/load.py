"""Loading into a debug session: the program (any format, verified) and its inputs.

:class:`Loading` is the ``load`` command family of :class:`bpfio.dbg.debugger.Debugger`:
``load bpf`` (a file or inline code, verified for the session's profile), ``load pcap`` and
``load packet`` (socket), ``load syscall`` (seccomp) and ``load events`` (pio, or a machine
binding's accesses).  Each checks that the input fits the session's profile and resets the
run; the rest of the debugger (stepping, breakpoints, dumps) only reads what it loaded.
"""

from __future__ import annotations

import os
import shlex

from bpfio.errors import BpfError, LimitError, TraceError
from bpfio.limits import parse_int

LOAD_USAGE = ("load bpf FILE|CODE | load pcap FILE | load packet HEX | "
              "load syscall NAME|NR [ARG...] [arch=A] [ip=N] | load events FILE [base=PORT]")


LOAD_WHAT = ("bpf", "pcap", "packet", "syscall", "events")


class DbgError(BpfError):
    """A debugger command that cannot be carried out."""


def _int(text: str, what: str) -> int:
    try:
        return parse_int(text, 0)
    except LimitError as exc:
        raise DbgError(f"{what}: {exc}") from None
    except ValueError:
        raise DbgError(f"'{text}' is not a number ({what})") from None


def _ranged(text: str, what: str, lo: int, hi: int) -> int:
    """A number in ``lo..hi``: out of range is an error, never masked."""
    value = _int(text, what)
    if not lo <= value <= hi:
        raise DbgError(f"{what} {text} is outside {lo}..{hi:#x}")
    return value


def _split(text: str) -> list[str]:
    """Shell-like words (quotes allowed), or a DbgError."""
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise DbgError(f"cannot split '{text}' into words: {exc}") from None


def _prefix(word: str, choices) -> str | None:
    """bpf_dbg's sub-word rule: any prefix of a choice selects it (the first that matches)."""
    for choice in choices:
        if word and choice.startswith(word):
            return choice
    return None


class Loading:
    """The ``load`` commands; mixed into the debugger, whose state they set."""

    def cmd_load(self, arg):
        """``load bpf|pcap|packet|syscall|events ...``."""
        sub, _, rest = arg.partition(" ")
        what = _prefix(sub, LOAD_WHAT)
        rest = rest.strip()
        if what is None or not rest:
            raise DbgError("usage: " + LOAD_USAGE)
        return getattr(self, "_load_" + what)(rest)

    def _load_bpf(self, text):
        from bpfio.text.formats import load_program, parse_program
        if os.path.isfile(text):
            prog = load_program(text, include_path=self.include_path, defines=self.defines)
            origin = text
        else:
            try:
                prog = parse_program(text, filename="<load bpf>", include_path=self.include_path,
                                     defines=self.defines)
            except BpfError:
                if not any(c.isspace() or c == "," for c in text):
                    raise DbgError(f"cannot load '{text}': no such file, and not a program "
                                   "either") from None
                raise
            origin = "the command line"
        return self.set_program(prog, origin)

    def set_program(self, prog, origin: str = "the caller") -> list[str]:
        """Verify ``prog`` for the session's profile and debug it from now on."""
        from bpfio.check.verifier import verify
        verify(prog, profile=self.profile, mem_words=self.mem_words, notifiers=self.notifiers,
               lints=False)
        if self.machine is not None:
            self.machine.set_program(prog)
        elif self.source is not None:
            self.source.reset()
        self.program = prog
        self.breakpoints = []
        self._reset_run()
        n = len(prog)
        return [f"bpf: {n} instruction{'s' if n != 1 else ''} from {origin} ({self.profile} profile)"]

    def _require(self, profile, what):
        if self.profile != profile:
            raise DbgError(f"load {what} needs --profile {profile} (this session is {self.profile})")

    def _load_pcap(self, path):
        from bpfio.dbg.inputs import Packets
        from bpfio.text.formats import read_input
        from bpfio.exec.pcap import read_packets
        self._require("socket", "pcap")
        raw, name = read_input(path)
        packets = [(p.data, p.wirelen) for p in read_packets(raw, filename=name)]
        self.source = Packets(packets, self.source.context)
        self._reset_run()
        return [f"pcap: {len(packets)} packets from {name}"]

    def _load_packet(self, text):
        self._require("socket", "packet")
        from bpfio.exec.skb import parse_hex
        try:
            data = parse_hex(text)
        except ValueError as err:
            raise DbgError(f"'{text[:40]}' is not hex bytes ({err})") from None
        self.source.packets.append((data, len(data)))
        return [f"packet #{len(self.source)}: {len(data)} bytes"]

    def _load_syscall(self, text):
        from bpfio.abi.seccomp import ARCHES, SeccompData, syscall_number
        self._require("seccomp", "syscall")
        words = _split(text)
        fields = {"arch": "x86_64", "ip": "0"}
        args = []
        for w in words[1:]:
            name, eq, value = w.partition("=")
            if eq:
                if name not in fields:
                    raise DbgError(f"unknown field '{name}' (arch=, ip=)")
                fields[name] = value
            else:
                args.append(_ranged(w, f"argument {len(args)}", 0, (1 << 64) - 1))
        if len(args) > 6:
            raise DbgError(f"a system call has at most 6 arguments, got {len(args)}")
        arch = ARCHES.get(fields["arch"].lower())
        if arch is None:
            arch = _ranged(fields["arch"], "arch", 0, 0xffffffff)
        nr = syscall_number(words[0])
        if not -0x80000000 <= nr <= 0xffffffff:     # seccomp_data.nr is an int
            raise DbgError(f"system call number {words[0]} is outside -2147483648..0xffffffff")
        data = SeccompData(nr, arch, _ranged(fields["ip"], "ip", 0, (1 << 64) - 1),
                           tuple(args) + (0,) * (6 - len(args)))
        self.source.calls.append(data)
        return [self.source.title(len(self.source) - 1)]

    def _load_events(self, text):
        from bpfio.dbg.inputs import PioEvents, read_accesses
        self._require("pio", "events")
        words = _split(text)
        base = self.base
        for w in words[1:]:
            name, eq, value = w.partition("=")
            if name != "base" or not eq:
                raise DbgError(f"unknown option '{w}' (base=PORT)")
            base = _ranged(value, "base port", 0, 0xffff)
        accesses, form = read_accesses(words[0])
        if self.machine is not None:
            self.machine.set_accesses(accesses)
            self._reset_run()
            return [f"events: {len(accesses)} accesses ({form}) from {words[0]}, "
                    f"{len(self.machine)} for binding '{self.machine.binding_name}'"]
        if base is None:
            base = min((a.port for a in accesses), default=0)
        for acc in accesses:   # PIO_OFFSET = port - base is a port offset: never wrapped
            if not 0 <= acc.port - base <= 0xffff:
                raise TraceError(f"port {acc.port:#x} is below the base port {base:#x} "
                                 f"(PIO_OFFSET = port - base would be negative)",
                                 filename=words[0], line=acc.line)
        self.source = PioEvents(accesses, base=base, mem_words=self.mem_words,
                                clock_hz=self.clock_hz)
        self._reset_run()
        return [f"events: {len(accesses)} accesses ({form}) from {words[0]}; "
                f"base port {base:#x} (PIO_OFFSET = port - {base:#x})"]
