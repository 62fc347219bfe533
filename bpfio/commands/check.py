"""``bpfio check``: verify a program as the kernel (or the pio ABI) would."""

from __future__ import annotations

import errno as _errno
import json

import click

from bpfio.commands.common import BpfClickError

from bpfio.errors import BpfError, VerifierError
from bpfio.abi import pio as abi
from bpfio.check.verifier import PROFILES, verify
from bpfio.commands.common import load, program_options


def _errno_name(value: int | None) -> str | None:
    return None if value is None else _errno.errorcode.get(value, str(value))


def _lint_json(w) -> dict:
    return {"pc": w.pc, "rule": w.rule, "message": w.message, "disasm": w.disasm}


@click.command("check")
@click.argument("program", default="-", metavar="[PROGRAM|-]")
@click.option("--profile", type=click.Choice(PROFILES), default="socket", show_default=True,
              help="socket: SO_ATTACH_FILTER rules; seccomp: seccomp(2) rules; "
                   "pio: the port-I/O ABI.")
@click.option("--mem-words", type=click.IntRange(abi.PIO_MEM_MIN, abi.PIO_MEM_MAX),
              metavar="N", help=f"pio: shared memory words M[0..N-1] "
                                f"(default {abi.PIO_MEM_DEFAULT}).")
@click.option("--notifiers", type=click.IntRange(0, 0x10000), metavar="N",
              help="pio: number of notifiers a NOTIFY verdict may name (default 0).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the verdict, the error and the warnings as JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing when the program is accepted.")
@program_options
def check(program, profile, mem_words, notifiers, as_json, quiet, include_path, defines, relax):
    """Verify PROGRAM (any format; default: standard input).

    Exit status 0 when the profile accepts the program, 1 when it rejects it
    (the pc, the instruction, the rule and the kernel's errno go to stderr),
    2 for usage errors.  Warnings (lints) never change the exit status.

    \b
    Examples:
      tcpdump -ddd -y EN10MB 'tcp port 80' | bpfio check
      bpfio check --profile seccomp policy.bpf
      bpfio check --profile pio --mem-words 4 --notifiers 1 asm/pmtimer.asm
    """
    if profile != "pio" and (mem_words is not None or notifiers is not None):
        raise click.UsageError("--mem-words and --notifiers only apply to --profile pio")
    name = "<stdin>" if program == "-" else program
    options = {}
    if profile == "pio":
        options = {"mem_words": abi.PIO_MEM_DEFAULT if mem_words is None else mem_words,
                   "notifiers": notifiers or 0}
    report = {"file": name, "profile": profile, **options}
    try:
        prog = load(program, include_path, defines, relax)
    except BpfError as err:
        if not as_json:
            raise
        report.update(accepted=False, instructions=None, warnings=[],
                      error={"rule": "input", "reason": str(err)})
        click.echo(json.dumps(report, indent=2))
        raise SystemExit(1) from None
    report["instructions"] = len(prog)
    try:
        warnings = verify(prog, profile=profile, **options)
    except VerifierError as err:
        if as_json:
            report.update(accepted=False, warnings=[], error={
                "pc": err.pc, "rule": err.rule, "errno": err.errno,
                "errno_name": _errno_name(err.errno), "reason": err.reason,
                "insn": None if err.insn is None else list(err.insn),
                "disasm": err.disasm})
            click.echo(json.dumps(report, indent=2))
            raise SystemExit(1) from None
        raise BpfClickError(f"{name}: error: {err}") from None
    if as_json:
        report.update(accepted=True, error=None, warnings=[_lint_json(w) for w in warnings])
        click.echo(json.dumps(report, indent=2))
        return
    for w in warnings:
        click.echo(f"{name}: warning: {w}", err=True)
    if not quiet:
        extra = "".join(f", {k.replace('_', ' ')} {v}" for k, v in options.items())
        count = f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""
        click.echo(f"{name}: accepted by the {profile} profile "
                   f"({len(prog)} instruction{'s' if len(prog) != 1 else ''}{extra}{count})")
