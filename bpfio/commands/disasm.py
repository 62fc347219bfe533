"""``bpfio disasm``: render a program as re-assemblable source or tcpdump -d text."""

from __future__ import annotations

import click

from bpfio.text.disasm import disassemble
from bpfio.commands.common import load, program_options


@click.command("disasm")
@click.argument("program", default="-", metavar="[PROGRAM|-]")
@click.option("--style", type=click.Choice(["bpf_asm", "tcpdump"]), default="bpf_asm",
              show_default=True,
              help="bpf_asm: source that re-assembles to the same bytes; tcpdump: tcpdump -d text.")
@program_options
def disasm(program, style, include_path, defines, relax):
    """Disassemble PROGRAM (any format, auto-detected; default: standard input).

    Reads bpf_asm lines, tcpdump -dd/-ddd output, C arrays, JSON, raw
    struct sock_filter binary, or assembly source.

    \b
    Examples:
      tcpdump -ddd -y EN10MB 'ip and tcp port 80' | bpfio disasm
      bpfio disasm --style tcpdump filter.bin
    """
    click.echo(disassemble(load(program, include_path, defines, relax), style=style), nl=False)
