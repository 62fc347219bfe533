"""``bpfio asm``: assemble bpf_asm source into any program format."""

from __future__ import annotations

import click

from bpfio.commands.common import program_options, write_program
from bpfio.text.assembler import assemble_source
from bpfio.text.formats import FORMATS, read_input


@click.command("asm")
@click.argument("source", default="-", metavar="[SOURCE|-]")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="bpf_asm",
              show_default=True, help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="Write here instead of standard output.")
@click.option("-W", "--no-warnings", is_flag=True, help="Do not print warnings.")
@program_options
def asm(source, fmt, output, no_warnings, include_path, defines, relax):
    """Assemble bpf_asm SOURCE (default: standard input).

    The language is exactly the kernel's tools/bpf/bpf_asm (byte-identical
    output), plus #define/#include/#ifdef so no external cpp is needed.

    \b
    Formats:
      bpf_asm    N,code jt jf k,...   (bpf_asm, xt_bpf, bpf_dbg 'load bpf')
      c          bpf_asm -c           { 0x28,  0,  0, 0x0000000c },
      tcpdump    tcpdump -ddd         count, then 'code jt jf k' lines
      tcpdump-c  tcpdump -dd          { 0x28, 0, 0, 0x0000000c },
      bpfc       bpfc -f C            { 0x28, 0, 0, 0x0000000c },
      bpfc-tcpdump  bpfc -f tcpdump   'code jt jf k' lines, no count
      xt_bpf     bpfc -f xt_bpf       bpf_asm line without the newline
      raw        struct sock_filter[] binary, little-endian
      json       [{"code": 40, "jt": 0, "jf": 0, "k": 12}, ...]
      asm        normalised source from the disassembler

    \b
    Examples:
      bpfio asm asm/pmtimer.asm
      echo 'ld #1 ret a' | bpfio asm -f c -
      bpfio asm -D PORT=0x3f8 -f raw -o uart.bin asm/uart.asm
    """
    data, name = read_input(source)
    result = assemble_source(data, filename=name, include_path=include_path,
                             defines=defines, relax=relax)
    if not no_warnings:
        for warning in result.warnings:
            click.echo(str(warning), err=True)
    write_program(result.program, fmt, output)
