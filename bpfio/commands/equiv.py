"""``bpfio equiv``: prove two programs return the same on every input, or show one where not."""

from __future__ import annotations

import json

import click

from bpfio.abi import pio as abi
from bpfio.limits import parse_int
from bpfio.commands.common import finite, load, program_options

EXIT_DIFFERENT = 1
EXIT_UNKNOWN = 3


def verdict_text(profile: str, verdict, observed=None, event=None) -> str:
    """A verdict as ``bpfio run`` prints it (pio: action, value and the IN value)."""
    if profile == "socket":
        return str(int(verdict))
    if profile == "seccomp":
        from bpfio.abi.seccomp import SeccompResult
        result = SeccompResult(int(verdict))
        return f"{result.describe()} {int(result):#010x}"
    action, data = abi.decode_verdict(int(verdict))
    text = f"{action}{f'({data})' if action == 'NOTIFY' else ''} {int(verdict):#010x}"
    if observed is not None and event is not None and event.direction == abi.PIO_IN \
            and action in ("DONE", "NOTIFY"):
        text += f" in={observed[1]:#x}"
    return text


def load_checked(path, profile, mem_words, no_verify, include_path, defines, relax):
    """Load a program and verify it for the profile (the prover assumes a verified program)."""
    prog = load(path, include_path, defines, relax)
    if not no_verify:
        from bpfio.check.verifier import verify
        verify(prog, profile=profile, mem_words=mem_words if profile == "pio" else 16,
               notifiers=abi.PIO_NOTIFIERS_MAX if profile == "pio" else 0, lints=False)
    return prog


def _ports(ctx, param, value):
    """``BASE+N`` -> (base, n): the ports of one binding."""
    if value is None:
        return None
    base, sep, count = value.partition("+")
    try:
        base, count = parse_int(base, 0), parse_int(count, 0)
    except ValueError:
        base = count = -1
    if not sep or base < 0 or count < 1 or base + count > 0x10000:
        raise click.BadParameter(f"'{value}': expected BASE+N inside 0..0xffff, e.g. 0x3f8+8",
                                 ctx=ctx, param=param)
    return base, count


def check_ports(profile, ports, context="default"):
    """--ports is a pio option, --context a socket one."""
    if ports is not None and profile != "pio":
        raise click.UsageError("--ports applies to --profile pio")
    if context != "default" and profile != "socket":
        raise click.UsageError("--context applies to --profile socket")


def profile_options(func):
    """--profile, --mem-words, --ports, --max-len, --timeout, --json and --no-verify."""
    func = click.option("--context", type=click.Choice(("default", "free")), default="default",
                        show_default=True,
                        help="socket: the default AF_UNIX context, or every ancillary value "
                             "(proto, mark, ifidx, ...) and both header offsets free.")(func)
    func = click.option("--ports", callback=_ports, metavar="BASE+N",
                        help="pio: only events of a binding of N ports at BASE "
                             "(offset = port - BASE).")(func)
    func = click.option("--no-verify", is_flag=True,
                        help="Skip the profile's verifier (the prover assumes a verified program).")(func)
    func = click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")(func)
    func = click.option("--timeout", type=click.FloatRange(0.001), default=10.0, show_default=True,
                        callback=finite, metavar="SECONDS", help="Give up (exit 3, 'unknown') after this long.")(func)
    func = click.option("--max-len", type=click.IntRange(0, 0x7fffffff), default=0x7fffffff,
                        show_default=True, metavar="N",
                        help="socket: the longest packet considered (default: every length "
                             "a kernel delivers).")(func)
    func = click.option("--mem-words", type=click.IntRange(abi.PIO_MEM_MIN, abi.PIO_MEM_MAX),
                        default=abi.PIO_MEM_DEFAULT, show_default=True, metavar="N",
                        help="pio: shared memory words, all of them free.")(func)
    func = click.option("--profile", type=click.Choice(("socket", "seccomp", "pio")),
                        default="socket", show_default=True,
                        help="What the inputs are (packets, seccomp_data, port events).")(func)
    return func


def counterexample_lines(result, names) -> list[str]:
    """The runnable ``bpfio run`` lines of a counterexample and what each program returned."""
    opts = result.cex_text if result.profile == "socket" else \
        f"--profile {result.profile} {result.cex_text}"
    width = max(len(n) for n in names)
    lines = []
    for name, verdict, obs in zip(names, result.results, result.observed):
        text = verdict_text(result.profile, verdict, obs, result.counterexample)
        lines.append(f"  bpfio run {opts} {name:<{width}}  ->  {text}")
    if result.profile == "pio":
        mem_a, mem_b = (obs[2:] for obs in result.observed)
        for i, (p, q) in enumerate(zip(mem_a, mem_b)):
            if p != q:
                lines.append(f"  shared word {i} after the event: {p:#x} vs {q:#x}")
    if any(result.rand):
        lines.append("  (ld rand read " + "; ".join(
            f"{n}: {', '.join(f'{v:#x}' for v in r.values()) or '-'}"
            for n, r in zip(names, result.rand)) + ")")
    return lines


def result_json(result, names) -> dict:
    """The JSON form of a result."""
    out = {"status": result.status, "profile": result.profile,
           "seconds": round(result.seconds, 4), "programs": list(names)}
    if result.status == "different":
        out["counterexample"] = result.cex_text
        out["results"] = [int(v) for v in result.results]
        out["observed"] = [list(o) for o in result.observed]
    if result.reason:
        out["reason"] = result.reason
    return out


def finish(result, names, as_json, proved_text="equivalent (proved)"):
    """Print a result and exit with its status (0 proved, 1 counterexample, 3 unknown)."""
    if as_json:
        click.echo(json.dumps(result_json(result, names), indent=2))
    elif result.status == "different":
        click.echo("different: a counterexample, checked in the interpreter:")
        for line in counterexample_lines(result, names):
            click.echo(line)
    elif result.status == "unknown":
        click.echo(f"unknown ({result.reason})")
    else:
        click.echo(proved_text)
    if result.status == "different":
        raise SystemExit(EXIT_DIFFERENT)
    if result.status == "unknown":
        raise SystemExit(EXIT_UNKNOWN)


@click.command("equiv")
@click.argument("program_a", metavar="A")
@click.argument("program_b", metavar="B")
@profile_options
@program_options
def equiv(program_a, program_b, profile, mem_words, ports, context, max_len, timeout, as_json,
          no_verify, include_path, defines, relax):
    """Prove that programs A and B return the same on every input, or show an input where not.

    A and B are in any program format ('-' reads one of them from standard
    input).  socket: every packet of 0..--max-len bytes on the default
    AF_UNIX socket (--context free: any ancillary values, with or without a
    device, any network and link-layer header offsets; use it to check a
    rewrite for every socket); seccomp: every seccomp_data; pio: every port event and
    every value of the --mem-words shared words (compared: the verdict, the
    value an IN receives, and the shared memory afterwards).

    Exit status: 0 equivalent (proved), 1 different (the counterexample is
    printed as 'bpfio run' options and was checked in the interpreter) or
    bad input, 3 unknown (the solver ran out of --timeout).

    \b
    Examples:
      tcpdump -ddd 'ip and tcp' > a.bpf; tcpdump -ddd 'tcp and ip' > b.bpf
      bpfio equiv a.bpf b.bpf
      bpfio equiv --profile seccomp old-policy.asm new-policy.asm
      bpfio equiv --profile pio --mem-words 4 asm/pmtimer.asm pmtimer-opt.asm
    """
    from bpfio.prove import equivalent
    if program_a == program_b == "-":
        raise click.UsageError("only one of A and B can be '-' (standard input)")
    check_ports(profile, ports, context)
    progs = [load_checked(p, profile, mem_words, no_verify, include_path, defines, relax)
             for p in (program_a, program_b)]
    result = equivalent(*progs, profile=profile, timeout=timeout, mem_words=mem_words,
                        max_len=max_len, ports=ports, context=context)
    names = ["<stdin>" if p == "-" else p for p in (program_a, program_b)]
    finish(result, names, as_json)
