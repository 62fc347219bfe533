"""``bpfio jit``: show the native x86-64 code of a program, next to the cBPF it came from."""

from __future__ import annotations

import click

from bpfio.commands.common import load, program_options


@click.command("jit")
@click.argument("program", default="-", metavar="[PROGRAM|-]")
@click.option("--profile", type=click.Choice(("socket", "seccomp", "pio")), default="socket",
              show_default=True, help="The profile the program is verified and compiled for.")
@click.option("--mem-words", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="pio: the binding's shared memory words (bounds M[k]).")
@click.option("--harden", is_flag=True,
              help="Blind user immediates with a random key (bpf_jit_harden).")
@click.option("--drivers", is_flag=True, help="Also show the batch and pio drivers.")
@program_options
def jit(program, profile, mem_words, harden, drivers, include_path, defines, relax):
    """Compile PROGRAM to native code and print it with the cBPF lines it came from.

    Like the kernel's `bpftool prog dump jited`: each `;  pc: insn` line is a cBPF
    instruction, followed by the native instructions it became (offset, bytes,
    Intel syntax).  Jump targets are offsets in the same listing.  `; exits` is
    the shared return-0 path (an out-of-range load, a division by X == 0) and the
    out-of-line paths of `[x + k]` loads that reach SKF_NET_OFF / SKF_LL_OFF.
    The last line gives the code size.

    \b
    Examples:
      bpfio jit filter.bpf
      tcpdump -ddd ip | bpfio jit -
      bpfio jit --profile pio --mem-words 32 asm/pmtimer.asm
      bpfio jit --harden filter.asm      # immediates appear XOR-ed with a key
    """
    from bpfio.exec.jit.program import jit as compile_native
    prog = load(program, include_path, defines, relax)
    native = compile_native(prog, profile=profile, harden=harden,
                            mem_words=mem_words if profile == "pio" else None)
    click.echo(native.disasm(drivers=drivers), nl=False)
