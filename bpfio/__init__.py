"""bpfio: classic BPF (cBPF) toolchain and port-I/O filter engine.

The machine model is the kernel's classic BPF: a 32-bit accumulator ``A``, an
index register ``X``, scratch words ``M[0..15]`` and read-only input bytes
(a packet, ``struct seccomp_data`` or a PIO event context).  Programs run
forward only and end with ``ret``; the returned u32 is the verdict.  A load
outside the input, or a division by ``X == 0``, ends the program with verdict
0 -- a defined result, never an exception.

The verifier (:func:`verify`) enforces what Linux enforces for the chosen
profile: ``socket`` (``bpf_check_classic``), ``seccomp``
(``seccomp_check_filter``) or ``pio`` (the port-I/O ABI in ``docs/pio-abi.md``).

Example::

    >>> import bpfio
    >>> prog = bpfio.assemble('''
    ...     ldh [12]
    ...     jne #0x806, drop
    ...     ret #-1
    ... drop: ret #0
    ... ''')
    >>> bpfio.format_program(prog, "bpf_asm")
    '4,40 0 0 12,21 0 1 2054,6 0 0 4294967295,6 0 0 0,\\n'

The port-I/O engine (:class:`Machine`) dispatches guest port accesses to
verified programs first and to userspace device models on ``PIO_EXIT``.
"""

from __future__ import annotations

import importlib

from bpfio import _moved
from bpfio.errors import (AsmError, BpfError, ConfigError, DecodeError, JitUnavailable,
                          PioError, TraceError, VerifierError, VMError)
from bpfio.insn import Insn, Program

# The data path, bottom to top: text -> Insn -> verify -> run/compile -> prove/opt ->
# dispatch -> device -> guest, with the tools on top.  A module imports only from its own
# stage and the stages below it, and the import graph has no cycles (tests/test_layout.py).
STAGES = (
    ("core", ("bpfio.errors", "bpfio.isa", "bpfio.insn", "bpfio.resources", "bpfio.abi")),
    ("text", ("bpfio.text",)),          # assembler, disassembler, formats
    ("check", ("bpfio.check",)),        # verifier, lints
    ("exec", ("bpfio.exec",)),          # interpreter, compiler, kernel oracles
    ("prove", ("bpfio.prove",)),        # SMT equivalence and properties
    ("opt", ("bpfio.opt",)),            # the proven optimizer
    ("pio", ("bpfio.pio",)),            # the port-I/O engine
    ("devices", ("bpfio.devices",)),    # userspace reference models
    ("kvm", ("bpfio.kvm",)),            # real guests on /dev/kvm
    ("dbg", ("bpfio.dbg",)),            # debugger, control-flow graphs
    ("commands", ("bpfio.commands",)),  # one module per subcommand
    ("cli", ("bpfio.cli", "bpfio.__main__", "bpfio._moved", "bpfio")),
)

_moved.install()    # old module paths (bpfio.interp, ...) keep working for one release

# Public names that live in heavier modules, imported on first use.
_LAZY = {
    "assemble": "bpfio.text.assembler",
    "disassemble": "bpfio.text.disasm",
    "format_program": "bpfio.text.formats",
    "parse_program": "bpfio.text.formats",
    "verify": "bpfio.check.verifier",
    "run": "bpfio.exec.interp",
    "compile": "bpfio.exec.compiler",
    "jit": "bpfio.exec.jit.program",
    "Machine": "bpfio.pio.machine",
    "Binding": "bpfio.pio.machine",
}

__all__ = ["AsmError", "BpfError", "ConfigError", "DecodeError", "Insn", "JitUnavailable",
           "PioError", "Program", "TraceError", "VMError", "VerifierError", *_LAZY]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bpfio' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
