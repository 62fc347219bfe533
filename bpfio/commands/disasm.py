"""``bpfio disasm``: render a program as re-assemblable source or tcpdump -d text."""

from __future__ import annotations

import click

from bpfio.isa import BPF_MAXINSNS
from bpfio.text.disasm import disassemble
from bpfio.commands.common import BpfClickError, load, program_options


@click.command("disasm")
@click.argument("program", default="-", metavar="[PROGRAM|-]")
@click.option("--style", type=click.Choice(["bpf_asm", "tcpdump"]), default="bpf_asm",
              show_default=True,
              help="bpf_asm: source that re-assembles to the same bytes; tcpdump: tcpdump -d text.")
@program_options
def disasm(program, style, include_path, defines, relax):
    """Disassemble PROGRAM (any format, auto-detected; default: standard input).

    Reads bpf_asm lines, tcpdump -dd/-ddd output, C arrays, JSON, raw
    struct sock_filter binary, or assembly source.  The bpf_asm style
    always re-assembles to the same bytes, so it refuses a program that
    bpfio asm could not give back: one with no instructions or more than
    4096 (exit 1).

    \b
    Examples:
      tcpdump -ddd -y EN10MB 'ip and tcp port 80' | bpfio disasm
      bpfio disasm --style tcpdump filter.bin
    """
    prog = load(program, include_path, defines, relax)
    if style == "bpf_asm" and not 1 <= len(prog) <= BPF_MAXINSNS:
        name = "<stdin>" if program == "-" else program
        raise BpfClickError(f"{name}: error: a program of {len(prog)} instructions has no "
                            f"bpf_asm source (asm takes 1 to {BPF_MAXINSNS}); "
                            "--style tcpdump prints it")
    click.echo(disassemble(prog, style=style), nl=False)
