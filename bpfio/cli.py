"""The ``bpfio`` command line: a click group whose subcommands load lazily.

Each subcommand lives in ``bpfio.commands.<name>`` so that ``bpfio asm`` does
not pay for importing the engine, and ``bpfio run`` does not build the
assembler tables.  Library errors (:class:`bpfio.errors.BpfError`) become a
one-line ``Error: ...`` on stderr and exit status 1; usage errors exit 2.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from bpfio.commands.common import BpfClickError, render_error
from bpfio.errors import BpfError

# name -> (module, attribute, one-line help shown by `bpfio --help`).
COMMANDS = {
    "asm": ("bpfio.commands.asm", "asm", "Assemble bpf_asm source into a program format."),
    "disasm": ("bpfio.commands.disasm", "disasm", "Disassemble a program into re-assemblable text."),
    "check": ("bpfio.commands.check", "check", "Verify a program as the kernel (or the pio profile) would."),
    "run": ("bpfio.commands.run", "run", "Run a program on packets, a syscall or a port event."),
    "jit": ("bpfio.commands.jit", "jit", "Show a program's native x86-64 code (the JIT)."),
    "dbg": ("bpfio.commands.dbg", "dbg", "Debug a program step by step (bpf_dbg-style REPL)."),
    "cfg": ("bpfio.commands.cfg", "cfg", "Draw a program's control-flow graph."),
    "machine": ("bpfio.commands.machine", "machine", "Check or run a machine config of port bindings."),
    "vm": ("bpfio.commands.vm", "vm", "Run a real guest on /dev/kvm with port I/O through bpfio."),
    "equiv": ("bpfio.commands.equiv", "equiv", "Prove two programs equivalent, or show a counterexample."),
    "prove": ("bpfio.commands.prove", "prove", "Prove properties of a program for every input."),
    "bench": ("bpfio.commands.bench", "bench", "Run the benchmark suite."),
    "opt": ("bpfio.commands.opt", "opt", "Optimize a program; the result is proved equivalent first."),
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when it runs."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        entry = COMMANDS.get(name)
        if entry is None:
            return None
        module, attr, short = entry
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError:
            if not os.environ.get("BPFIO_DEBUG"):
                @click.command(name, help=f"{short} (not available in this build)")
                def missing():
                    raise click.ClickException(f"'bpfio {name}' is not available in this build")
                return missing
            raise

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BpfError as err:
            raise BpfClickError(render_error(err)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="bpfio")
def main():
    """bpfio: a classic-BPF toolchain and port-I/O filter engine.

    \b
    Assemble, check and run a program:
      bpfio asm asm/pmtimer.asm -f c
      bpfio check --profile pio asm/pmtimer.asm
      bpfio run --profile pio --event "in 0x608 4" asm/pmtimer.asm
    Every FILE argument accepts '-' for standard input and any program
    format bpfio can read (bpf_asm source, bpf_asm/tcpdump/C output, raw).
    """


def run_main(argv=None) -> int:
    """Entry point for the console script and ``python -m bpfio``.

    Bad input is reported by the commands themselves.  Anything else that
    escapes is a bug in bpfio: it is still one line (and exit status 1) for
    the user, with the traceback kept for ``BPFIO_DEBUG=1``.  Tests drive
    ``main`` directly, so they still see such exceptions.
    """
    try:
        return main.main(args=argv, prog_name="bpfio", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # pragma: no cover - only reached through a bug
        if os.environ.get("BPFIO_DEBUG"):
            raise
        click.echo(f"bpfio: internal error: {type(exc).__name__}: {exc} "
                   "(a bug; BPFIO_DEBUG=1 shows the traceback)", err=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_main())
