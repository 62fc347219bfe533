"""``bpfio run``: run a program on packets, a system call or port events."""

from __future__ import annotations

import click

from bpfio.errors import BpfError, JitUnavailable, LimitError
from bpfio.limits import parse_int
from bpfio.isa import U32
from bpfio.commands.common import load, program_options, socket_context_option

ENGINES = ("jit", "compiled", "interp")


def _int(text: str, what: str) -> int:
    try:
        return parse_int(text, 0)
    except LimitError as exc:
        raise click.BadParameter(f"{what}: {exc}") from None
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a number ({what})") from None


def _ranged(text: str, what: str, lo: int, hi: int, hint: str) -> int:
    """An integer option value in ``lo..hi``: out of range is a usage error, never masked."""
    value = _int(text, what)
    if not lo <= value <= hi:
        raise click.BadParameter(f"{what} {text} is outside {lo}..{hi:#x}", param_hint=hint)
    return value


_U64 = 0xffffffffffffffff
# PioEvent fields after the access: offset is a port offset, vcpu a u32 (the ABI), ticks/ns u64.
_EVENT_FIELDS = {"offset": 0xffff, "vcpu": U32, "ticks": _U64, "ns": _U64}


def _hex_packet(ctx, param, values):
    from bpfio.exec.skb import parse_hex
    out = []
    for text in values:
        try:
            out.append(parse_hex(text))
        except ValueError as err:
            raise click.BadParameter(f"'{text[:40]}' is not hex bytes ({err})", ctx=ctx,
                                     param=param) from None
    return out


def _pairs(ctx, param, values):
    out = []
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"'{item}': expected NAME=VALUE", ctx=ctx, param=param)
        out.append((name.strip(), value.strip()))
    return out


def parse_event(text: str):
    """``in PORT SIZE`` or ``out PORT SIZE VALUE``, then optional offset=/vcpu=/ticks=/ns=."""
    from bpfio.abi.pio import PIO_IN, PIO_OUT, PioEvent
    words = text.split()
    if len(words) < 3 or words[0].lower() not in ("in", "out"):
        raise click.BadParameter(f"'{text}': expected 'in PORT SIZE' or 'out PORT SIZE VALUE'",
                                 param_hint="--event")
    direction = PIO_IN if words[0].lower() == "in" else PIO_OUT
    port = _int(words[1], "port")
    size = _int(words[2], "size")
    rest = words[3:]
    data = 0
    if direction == PIO_OUT:
        if not rest or "=" in rest[0]:
            raise click.BadParameter(f"'{text}': an OUT needs a VALUE", param_hint="--event")
        data = _int(rest.pop(0), "value")
    if not 0 <= port <= 0xffff:
        raise click.BadParameter(f"'{text}': port must be 0..0xffff", param_hint="--event")
    if size not in (1, 2, 4):
        raise click.BadParameter(f"'{text}': size must be 1, 2 or 4", param_hint="--event")
    if not 0 <= data < 1 << (8 * size):
        raise click.BadParameter(f"'{text}': value does not fit in {size} byte(s)", param_hint="--event")
    fields = {"offset": 0, "vcpu": 0, "ticks": 0, "ns": 0}
    for item in rest:
        name, sep, value = item.partition("=")
        if not sep or name not in fields:
            raise click.BadParameter(f"'{text}': unknown field '{item}' (offset=, vcpu=, ticks=, ns=)",
                                     param_hint="--event")
        fields[name] = _ranged(value, f"'{text}': {name}", 0, _EVENT_FIELDS[name], "--event")
    return PioEvent(port, size, direction, data, **fields)


def _runner(prog, profile, engine, mem_words):
    """Return ``(outcome, run_many)``: outcome(data, **context) -> (verdict|None, A, executed);
    run_many(inputs, **context) -> verdicts in one native call (the JIT), else None."""
    if engine == "interp":
        from bpfio.exec.interp import outcome
        return (lambda data, **ctx: outcome(prog, data, profile=profile, **ctx)), None
    if engine == "jit":
        from bpfio.exec.jit.program import jit
        native = jit(prog, profile=profile, mem_words=mem_words if profile == "pio" else None)
        if profile == "pio":
            return native.outcome, native.run_many
        return (lambda data, **ctx: (native(data, **ctx), None, None)), native.run_many
    from bpfio.exec.compiler import compile as compile_program
    return compile_program(prog, profile=profile).outcome, None


def choose_engine(engine: str | None, *, verified: bool = True) -> tuple[str, str | None]:
    """``(engine, notice)``: ``jit`` by default where native code can run, else ``compiled``
    and the one notice line to print (never an error when the JIT was only the default)."""
    if engine is not None:
        return engine, None
    if not verified:
        return "compiled", None     # the JIT only compiles verified programs
    from bpfio.exec.jit.mem import unavailable_reason
    reason = unavailable_reason()
    if reason is None:
        return "jit", None
    return "compiled", _notice(reason)


def _notice(reason: str) -> str:
    return f"bpfio: notice: JIT unavailable ({reason}); using the compiled engine"


def _format_trace(steps) -> list[str]:
    from bpfio.text.disasm import format_insn
    lines = []
    for s in steps:
        text = format_insn(s.insn, s.pc) if s.insn is not None else "?"
        line = f"  {s.pc:4d}: {text:<24} A={s.a:#010x} X={s.x:#010x}"
        for index, value in s.mem_writes:
            line += f" M[{index}]={value:#010x}"
        if s.next_pc is None:
            line += f" -> aborted: {s.fault}" if s.fault else f" -> ret {int(s.verdict):#x}"
        lines.append(line)
    return lines


@click.command("run")
@click.argument("program", default="-", metavar="[PROGRAM|-]")
@click.option("--profile", type=click.Choice(("socket", "seccomp", "pio")), default="socket",
              show_default=True, help="What the program reads and what its verdict means.")
@click.option("--packet", "packets", multiple=True, callback=_hex_packet, metavar="HEX",
              help="socket: a packet in hex, XX*N repeats a byte (repeatable).")
@click.option("--pcap", "pcap_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="socket: every packet of a pcap or pcapng file.")
@click.option("--ctx", "ctx_fields", multiple=True, metavar="FIELD=VALUE",
              help="socket: a context field, e.g. ifindex=2, protocol=0x800, ll_off=0, net_off=14, "
                   "or head=HEX (the bytes before the packet that negative offsets read).")
@click.option("--syscall", metavar="NAME|NR", help="seccomp: the system call (name or number).")
@click.option("--arg", "args", multiple=True, callback=_pairs, metavar="N=VALUE",
              help="seccomp: argument N (0..5) of the call.")
@click.option("--arch", default="x86_64", show_default=True, metavar="NAME|NUM",
              help="seccomp: AUDIT_ARCH (x86_64, i386, aarch64 or a number).")
@click.option("--ip", "ip", default="0", metavar="VALUE",
              help="seccomp: the instruction pointer.")
@click.option("--event", "events", multiple=True, metavar="'in PORT SIZE'|'out PORT SIZE VALUE'",
              help="pio: a port access (repeatable; shared memory persists between events); "
                   "append offset=, vcpu=, ticks=, ns= to set those fields.")
@click.option("--mem-words", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="pio: shared memory words.")
@click.option("--mem", "mem_init", multiple=True, callback=_pairs, metavar="I=VALUE",
              help="pio: initial value of shared word I.")
@click.option("--notifiers", type=click.IntRange(0, 0x10000), default=16, show_default=True,
              help="pio: notifiers a NOTIFY verdict may name.")
@click.option("--engine", type=click.Choice(ENGINES), default=None,
              help="jit: native x86-64 code (the default where it can run, else compiled); "
                   "compiled: generated Python; interp: the reference interpreter.")
@click.option("--trace", "show_trace", is_flag=True,
              help="Print every executed instruction with A and X before it.")
@click.option("--show-source", is_flag=True, help="Print the generated Python source first.")
@click.option("--no-verify", is_flag=True, help="Run without the profile's verifier (unsafe input may fail).")
@program_options
def run(program, profile, packets, pcap_file, ctx_fields, syscall, args, arch, ip, events,
        mem_words, mem_init, notifiers, engine, show_trace, show_source, no_verify,
        include_path, defines, relax):
    """Run PROGRAM (any format; default: standard input) and print one verdict per input.

    \b
    socket:  bpfio run filter.bpf --packet 0800450000 --pcap capture.pcap
             prints the u32 verdict per packet (0 = drop; also after an abort)
    seccomp: bpfio run --profile seccomp policy.asm --syscall openat --arg 2=0x241
             prints the action, e.g. 'ERRNO(13) 0x0005000d'
    pio:     bpfio run --profile pio asm/pmtimer.asm --event 'in 0x608 4'
             prints the action and, for a handled IN, the value the guest receives
    engines: bpfio run --engine interp filter.bpf --packet 0800450000
             (all three give the same verdicts; with the JIT, --pcap runs every
             packet in one native call)
    """
    _check_options(profile, packets, pcap_file, ctx_fields, syscall, args, events, mem_init)
    events = [parse_event(text) for text in events]   # usage errors before reading files
    prog = load(program, include_path, defines, relax)
    if not no_verify:
        from bpfio.check.verifier import verify
        verify(prog, profile=profile, mem_words=mem_words if profile == "pio" else 16,
               notifiers=notifiers if profile == "pio" else 0, lints=False)
    if show_source:
        from bpfio.exec.compiler import generate
        click.echo(generate(prog, profile=profile, mode="detail" if profile == "pio" else "fast"),
                   nl=False)
    if engine == "jit" and no_verify:
        raise click.UsageError("--engine jit runs verified programs only (drop --no-verify)")
    chosen, notice = choose_engine(engine, verified=not no_verify)
    try:
        outcome, run_many = _runner(prog, profile, chosen, mem_words)
    except JitUnavailable as err:
        if engine is not None:      # asked for by name: an error, not a silent fallback
            raise
        # the platform looked fine but the system refused executable memory
        notice = _notice(err.reason)
        outcome, run_many = _runner(prog, profile, "compiled", mem_words)
    if profile == "socket":
        _run_socket(prog, outcome, packets, pcap_file, ctx_fields, show_trace, run_many)
    elif profile == "seccomp":
        _run_seccomp(prog, outcome, syscall, args, arch, ip, show_trace)
    else:
        _run_pio(prog, outcome, events, mem_words, mem_init, show_trace)
    if notice:      # after the results: an input error stays the only line on stderr
        click.echo(notice, err=True)


def _check_options(profile, packets, pcap_file, ctx_fields, syscall, args, events, mem_init):
    socket_opts = bool(packets or pcap_file or ctx_fields)
    if profile != "socket" and socket_opts:
        raise click.UsageError("--packet, --pcap and --ctx apply to --profile socket")
    if profile != "seccomp" and (syscall or args):
        raise click.UsageError("--syscall and --arg apply to --profile seccomp")
    if profile != "pio" and (events or mem_init):
        raise click.UsageError("--event and --mem apply to --profile pio")
    if profile == "socket" and not (packets or pcap_file):
        raise click.UsageError("give --packet HEX or --pcap FILE")
    if profile == "seccomp" and not syscall:
        raise click.UsageError("give --syscall NAME|NR")
    if profile == "pio" and not events:
        raise click.UsageError("give --event 'in PORT SIZE' or --event 'out PORT SIZE VALUE'")


def _run_socket(prog, outcome, packets, pcap_file, ctx_fields, show_trace, run_many=None):
    context = socket_context_option(ctx_fields)
    inputs = list(packets)
    if pcap_file:
        from bpfio.text.formats import read_input
        from bpfio.exec.pcap import read_packets
        raw, name = read_input(pcap_file)
        inputs += [p.data for p in read_packets(raw, filename=name)]
    if run_many is not None and not show_trace:
        for verdict in run_many(inputs, **context):     # one native call for the batch
            click.echo(str(verdict))
        return
    for pkt in inputs:
        if show_trace:
            _echo_trace(prog, pkt, "socket", context)
        verdict = outcome(pkt, **context)[0]
        click.echo(str(verdict or 0))


def _echo_trace(prog, data, profile, context):
    from bpfio.exec.trace import trace
    _, steps = trace(prog, data, profile=profile, **context)
    for line in _format_trace(steps):
        click.echo(line)


def _run_seccomp(prog, outcome, syscall, args, arch, ip, show_trace):
    from bpfio.abi.seccomp import ARCHES, SeccompData, SeccompResult, syscall_number
    nr = syscall_number(syscall)
    if not -0x80000000 <= nr <= U32:    # seccomp_data.nr is an int
        raise click.BadParameter(f"system call number {syscall} is outside "
                                 f"-2147483648..0xffffffff", param_hint="--syscall")
    values = [0] * 6
    for name, value in args:
        index = _int(name, "argument index")
        if not 0 <= index <= 5:
            raise click.BadParameter(f"argument index {index} is not 0..5", param_hint="--arg")
        values[index] = _ranged(value, f"argument {index}", 0, _U64, "--arg")
    arch_value = ARCHES.get(arch.lower())
    if arch_value is None:
        arch_value = _ranged(arch, "arch", 0, U32, "--arch")
    data = SeccompData(nr, arch_value, _ranged(ip, "instruction pointer", 0, _U64, "--ip"),
                       tuple(values))
    if show_trace:
        _echo_trace(prog, data, "seccomp", {})
    result = SeccompResult(outcome(data)[0] or 0)
    click.echo(f"{result.describe()} {int(result):#010x}")


def _run_pio(prog, outcome, events, mem_words, mem_init, show_trace):
    from bpfio.abi.pio import PIO_IN, decode_verdict
    mem = [0] * mem_words
    for name, value in mem_init:
        index = _int(name, "memory index")
        if not 0 <= index < mem_words:
            raise click.BadParameter(f"word {index} is outside 0..{mem_words - 1}", param_hint="--mem")
        mem[index] = _ranged(value, f"word {index}", 0, U32, "--mem")
    for event in events:
        if show_trace:
            _echo_trace(prog, event, "pio", {"mem": list(mem)})
        verdict, a, _ = outcome(event, mem=mem)
        if verdict is None:
            click.echo("EXIT 0x00000000 (aborted)")
            continue
        action, data = decode_verdict(verdict)
        line = f"{action}{f'({data})' if action == 'NOTIFY' else ''} {verdict:#010x}"
        if action in ("DONE", "NOTIFY") and event.direction == PIO_IN:
            line += f" in={a & ((1 << (8 * event.size)) - 1):#x}"
        click.echo(line)


__all__ = ["run", "parse_event", "BpfError"]
