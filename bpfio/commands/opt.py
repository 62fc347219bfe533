"""``bpfio opt``: a shorter program, proved equivalent before it is written."""

from __future__ import annotations

import click

from bpfio.commands.common import BpfClickError, finite, program_options, write_program
from bpfio.errors import VerifierError
from bpfio.text.formats import FORMATS, detect_format, parse_program, read_input
from bpfio.abi import pio as abi
from bpfio.check.verifier import PROFILES


def _stats_lines(name, result, profile) -> list[str]:
    before, after = len(result.original), len(result.program)
    saved = before - after
    pct = f", {100 * saved / before:.0f}% fewer" if before and saved else ""
    lines = [f"{name}: {before} -> {after} instructions{pct}"]
    fired = ", ".join(f"{n} {c}" for n, c in sorted(result.fired.items())) or "none"
    lines.append(f"passes fired: {fired}")
    lines.append(f"passes took {result.pass_seconds:.3f} s"
                 + (f", search {result.search_seconds:.3f} s" if result.search_seconds else ""))
    if result.status == "optimized":
        lines.append(f"proved equivalent in {result.proof_seconds:.2f} s ({profile} profile)")
    elif result.status == "unchanged":
        lines.append("no shorter program found; nothing to prove")
    return lines


@click.command("opt")
@click.argument("program", default="-", metavar="[PROGRAM|-]")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS),
              help="Output format (default: the input's format; 'asm' for assembly source).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="Write here instead of standard output.")
@click.option("--profile", type=click.Choice(PROFILES), default="socket", show_default=True,
              help="Whose rules and inputs: socket filter, seccomp policy or pio binding.")
@click.option("--mem-words", type=click.IntRange(abi.PIO_MEM_MIN, abi.PIO_MEM_MAX),
              metavar="N", help=f"pio: shared memory words M[0..N-1] "
                                f"(default {abi.PIO_MEM_DEFAULT}).")
@click.option("--notifiers", type=click.IntRange(0, 0x10000), metavar="N",
              help="pio: number of notifiers a NOTIFY verdict may name (default 0).")
@click.option("--timeout", type=click.FloatRange(0.1, 3600), default=10.0, show_default=True,
              callback=finite, metavar="S",
              help="Seconds the proof may take; past it the input is written unchanged.")
@click.option("--search", "search_budget", type=click.FloatRange(0, 3600), default=1.0, callback=finite,
              show_default=True, metavar="S",
              help="Seconds for the window search (0 = off); each find is proved on its own.")
@click.option("--prefer", type=click.Choice(("size", "speed")), default="size",
              show_default=True,
              help="size: fewest instructions; speed: no rewrite that makes any input "
                   "execute more instructions (shared tails, reordered loads).")
@click.option("--stats", is_flag=True,
              help="Print instructions before/after, the passes that fired and the proof time "
                   "(standard error).")
@program_options
def opt(program, fmt, output, profile, mem_words, notifiers, timeout, search_budget, prefer,
        stats, include_path, defines, relax):
    """Optimize PROGRAM (any format; default: standard input) and prove it unchanged.

    The passes remove unreachable code, thread jumps through jumps whose
    outcome the path decides, drop jumps to the next instruction, fold
    constants, delete loads whose value a register already holds and code
    whose result nothing reads, merge identical tails, and undo libpcap's
    habits (scratch stores around X operands, IPv6 and IPv4 copies of the
    same port test).  A short time-boxed search then tries shorter
    replacements for 2-3 instruction windows.

    Nothing is written before the prover (bpfio.prove) shows that the result
    returns what PROGRAM returns on EVERY input of the profile (every packet,
    every seccomp_data, every port event and shared-memory content).  If the
    proof times out, or finds a difference (an optimizer bug), PROGRAM is
    written unchanged with a warning.  In the pio profile M[] is shared with
    the device model, so stores are never removed.

    \b
    Examples:
      tcpdump -ddd -y EN10MB 'tcp port 80' | bpfio opt --stats
      tcpdump -ddd -y EN10MB 'ip[0] - ip[1] = 0' | bpfio opt -f asm -
      bpfio opt --profile seccomp policy.bpf -o policy.opt.bpf
      bpfio opt --profile pio --mem-words 48 --stats asm/pit.asm
      bpfio opt --timeout 2 --search 0 prog.json      # quick, no window search
      bpfio opt --prefer speed prog.bpf       # never more instructions on any path
    Exit status 0 when a program (optimized or not) was written, 1 for bad
    input (the place and the problem on one line), 2 for usage errors.
    """
    if profile != "pio" and (mem_words is not None or notifiers is not None):
        raise click.UsageError("--mem-words and --notifiers only apply to --profile pio")
    from bpfio.opt import optimize
    data, name = read_input(program)
    if not data.strip():
        raise BpfClickError(f"{name}: error: file is empty")
    prog = parse_program(data, filename=name, include_path=include_path, defines=defines,
                         relax=relax)
    words = (abi.PIO_MEM_DEFAULT if mem_words is None else mem_words) if profile == "pio" else 16
    try:
        result = optimize(prog, profile=profile, mem_words=words, notifiers=notifiers or 0,
                          timeout=timeout,
                          search_budget=search_budget, prefer=prefer)
    except VerifierError as err:
        raise BpfClickError(f"{name}: error: {err}") from None
    for warning in result.warnings:
        click.echo(f"{name}: warning: {warning}", err=True)
    if stats:
        for line in _stats_lines(name, result, profile):
            click.echo(line, err=True)
    if fmt is None:
        fmt = detect_format(data)
        fmt = "bpf_asm" if fmt not in FORMATS else fmt
    write_program(result.program, fmt, output)
