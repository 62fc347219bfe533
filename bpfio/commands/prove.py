"""``bpfio prove``: prove properties of one program for every input, or show where they fail."""

from __future__ import annotations

import json

import click

from bpfio.commands.common import program_options
from bpfio.commands.equiv import (EXIT_DIFFERENT, EXIT_UNKNOWN, check_ports, load_checked,
                                  profile_options, verdict_text)


def _verdict_table(prog, name, profile, opts, limit):
    """``(lines, complete, entries)``: the verdict classes (pio: per direction and size),
    each with a witness, as text lines and as JSON-ready dicts."""
    from bpfio.prove import verdict_classes
    groups = [("", None)]
    if profile == "pio":
        groups = [(f"{d} size {s}", f"dir == {d.upper()} and size == {s}")
                  for d in ("in", "out") for s in (1, 2, 4)]
    lines, complete_all, entries = [], True, []
    for title, when in groups:
        classes, complete = verdict_classes(prog, limit=limit, when=when, **opts)
        complete_all &= complete
        if title:
            lines.append(f"{title}:")
        for verdict, witness in sorted(classes):
            run_opts = witness if profile == "socket" else f"--profile {profile} {witness}"
            example = witness if witness.startswith("(") else f"e.g. bpfio run {run_opts} {name}"
            lines.append(f"  {verdict_text(profile, verdict):<22} {example}")
            entries.append({"group": title or None, "verdict": verdict,
                            "shown": verdict_text(profile, verdict), "witness": witness,
                            "complete": complete})
        if not complete:
            lines.append(f"  ... possibly more (stopped after {len(classes)}; "
                         "raise --limit or --timeout)")
    return lines, complete_all, entries


@click.command("prove")
@click.argument("program", default="-", metavar="[PROGRAM|-]")
@click.option("--assert", "assertions", multiple=True, metavar="EXPR",
              help="A property to prove (repeatable); the language is above.")
@click.option("--verdicts", is_flag=True,
              help="List every verdict the program can return, with an input for each.")
@click.option("--limit", type=click.IntRange(1, 4096), default=16, show_default=True,
              help="--verdicts: stop after this many distinct verdicts per group.")
@profile_options
@program_options
def prove(program, assertions, verdicts, limit, profile, mem_words, ports, context, max_len,
          timeout, as_json, no_verify, include_path, defines, relax):
    """Prove properties of PROGRAM for every input of the profile, or print a counterexample.

    \b
    An assertion is CLAIM [when COND]:
      CLAIM  FIELD OP VALUE | FIELD in V1,V2 | never-reads M[a..b] |
             never-writes M[a..] | never-touches M[i]
      COND   comparisons joined by 'and' / 'or' (and binds tighter)
      OP     == != < <= > >=  (unsigned)
    Fields: ret (u32 verdict, 0 after an abort), action (ret & 0xffff0000);
      socket: len, pkt[i]; seccomp: nr, arch, ip, arg0..arg5;
      pio: port size dir data offset vcpu ticks ns, in (what a handled IN
      returns), M[i] (after the run in a claim, before it in a 'when').
    Values: numbers, pio ABI names (DONE, NOTIFY_1, OUT), seccomp actions
      (ALLOW, ERRNO(13)), arch names, syscall names (nr == openat).

    Exit status: 0 all proved, 1 one disproved (a checked counterexample is
    printed as 'bpfio run' options) or bad input, 3 one unknown (timeout).

    \b
    Examples:
      bpfio prove --profile pio asm/pmtimer.asm --assert 'ret == DONE'
      bpfio prove --profile pio --mem-words 32 asm/uart.asm --assert 'never-writes M[0..6]'
      bpfio prove --profile seccomp policy.asm --assert 'ret == ALLOW when nr == read'
      bpfio prove --profile pio --ports 0xc000+32 --verdicts examples/guests/bpf/virtio-kick.asm
    """
    from bpfio.prove import prove_property
    if not assertions and not verdicts:
        raise click.UsageError("give --assert EXPR (repeatable) or --verdicts")
    check_ports(profile, ports, context)
    prog = load_checked(program, profile, mem_words, no_verify, include_path, defines, relax)
    name = "<stdin>" if program == "-" else program
    opts = {"profile": profile, "timeout": timeout, "mem_words": mem_words, "max_len": max_len,
            "ports": ports, "context": context}
    results = [(text, prove_property(prog, text, **opts)) for text in assertions]
    report = []
    worst = 0
    for text, r in results:
        worst = max(worst, {"proved": 0, "disproved": 2, "unknown": 1}[r.status])
        if as_json:
            entry = {"assert": text, "status": r.status, "seconds": round(r.seconds, 4)}
            if r.status == "disproved":
                entry.update(counterexample=r.cex_text, result=int(r.results[0]))
            if r.reason:
                entry["reason"] = r.reason
            report.append(entry)
            continue
        if r.status == "proved":
            click.echo(f"proved: {text}")
        elif r.status == "unknown":
            click.echo(f"unknown ({r.reason}): {text}")
        else:
            click.echo(f"disproved: {text}")
            cex = r.cex_text if profile == "socket" else f"--profile {profile} {r.cex_text}"
            shown = verdict_text(profile, r.results[0], r.observed[0], r.counterexample)
            click.echo(f"  bpfio run {cex} {name}  ->  {shown}")
    if verdicts:
        lines, complete, entries = _verdict_table(prog, name, profile, opts, limit)
        if as_json:
            report.append({"verdicts": entries, "complete": complete})
        else:
            click.echo(f"{name}: verdicts{'' if complete else ' (incomplete)'}:")
            for line in lines:
                click.echo(line)
    if as_json:
        click.echo(json.dumps({"file": name, "profile": profile, "results": report}, indent=2))
    if worst == 2:
        raise SystemExit(EXIT_DIFFERENT)
    if worst == 1:
        raise SystemExit(EXIT_UNKNOWN)


__all__ = ["prove"]
