"""``bpfio cfg``: draw a program's control-flow graph (DOT, or SVG/PNG through Graphviz)."""

from __future__ import annotations

from pathlib import Path

import click

from bpfio.commands.common import load, program_options, write_output

_SUFFIXES = {".dot": "dot", ".gv": "dot", ".svg": "svg", ".png": "png"}


@click.command("cfg")
@click.argument("program", default="-", metavar="[PROGRAM|-]")
@click.option("-o", "--output", type=click.Path(dir_okay=False), metavar="OUT.dot|OUT.svg|OUT.png",
              help="Write the graph here; the suffix picks the format (default: DOT on stdout).")
@click.option("--profile", type=click.Choice(("socket", "seccomp", "pio")), default="socket",
              show_default=True, help="How return values are explained in the graph.")
@click.option("--packet", "packet_hex", metavar="HEX",
              help="socket: draw the path this packet takes in bold.")
@program_options
def cfg(program, output, profile, packet_hex, include_path, defines, relax):
    """Draw the control-flow graph of PROGRAM (any format; default: standard input).

    \b
    Basic blocks list their instructions; edges are 'true' (green),
    'false' (red, dashed), 'ja' and fall-through; blocks ending in ret
    are filled and say what the returned value means for the profile.
    SVG and PNG need Graphviz 'dot'; without it the DOT text is written
    instead (OUT with a .dot suffix) and a one-line hint is printed.
      bpfio cfg filter.bpf -o filter.svg
      tcpdump -ddd -y EN10MB 'ip and tcp port 80' | bpfio cfg - > f.dot
    """
    from bpfio.dbg.cfg import dot_available, render, to_dot
    fmt = "dot"
    if output is not None:
        fmt = _SUFFIXES.get(Path(output).suffix.lower())
        if fmt is None:
            raise click.BadParameter(f"'{output}': the suffix must be one of "
                                     f"{', '.join(_SUFFIXES)}", param_hint="-o")
    prog = load(program, include_path, defines, relax)
    name = "stdin" if program == "-" else Path(program).name
    text = to_dot(prog, profile=profile, name=name, highlight=_path(prog, profile, packet_hex))
    if fmt == "dot":
        if output is None:
            click.echo(text, nl=False)
        else:
            write_output(output, text.encode())
        return
    if not dot_available():
        fallback = str(Path(output).with_suffix(".dot"))
        write_output(fallback, text.encode())
        click.echo(f"hint: Graphviz 'dot' is not installed; wrote DOT text to {fallback} "
                   f"(render it with: dot -T{fmt} {fallback} -o {output})", err=True)
        return
    write_output(output, render(text, fmt))


def _path(prog, profile, packet_hex) -> set[int]:
    """The pcs a packet runs through (empty without --packet)."""
    if packet_hex is None:
        return set()
    if profile != "socket":
        raise click.UsageError("--packet applies to --profile socket")
    from bpfio.exec.skb import parse_hex
    try:
        packet = parse_hex(packet_hex)
    except ValueError as err:
        raise click.BadParameter(f"'{packet_hex[:40]}' is not hex bytes ({err})",
                                 param_hint="--packet") from None
    from bpfio.exec.trace import trace
    from bpfio.check.verifier import verify
    verify(prog, profile="socket", lints=False)
    return {step.pc for step in trace(prog, packet)[1]}

