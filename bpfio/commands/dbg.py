"""``bpfio dbg``: the bpf_dbg-style debugger, interactive or driven by a script."""

from __future__ import annotations

import os
import sys

import click

from bpfio.commands.common import BpfClickError, render_error
from bpfio.errors import BpfError
from bpfio.commands.common import int_callback, parse_define, socket_context_option

HISTORY_FILE = "~/.bpfio_dbg_history"
HISTORY_LENGTH = 1000
PROMPT = "> "


_port_option = int_callback(0, 0xffff, "is not a port (0..0xffff)")


@click.command("dbg")
@click.argument("program", required=False, metavar="[PROGRAM]")
@click.option("--profile", type=click.Choice(("socket", "seccomp", "pio")), default=None,
              help="socket (default), seccomp or pio; --events/--machine imply pio, "
                   "--syscall implies seccomp.")
@click.option("--pcap", "pcap_file", metavar="FILE", help="socket: load this capture (pcap/pcapng).")
@click.option("--packet", "packets", multiple=True, metavar="HEX", help="socket: load a packet.")
@click.option("--ctx", "ctx_fields", multiple=True, metavar="FIELD=VALUE",
              help="socket: a context field for ancillary loads, e.g. ifindex=2, protocol=0x800.")
@click.option("--syscall", "syscalls", multiple=True, metavar="'NAME [ARG...] [arch=A]'",
              help="seccomp: load a system call (repeatable).")
@click.option("--events", "events_file", metavar="FILE",
              help="pio: load JSON Lines events or kvm_pio trace text.")
@click.option("--base", callback=_port_option, metavar="PORT",
              help="pio: the binding's first port (PIO_OFFSET = port - base); default: the "
                   "lowest port of the events.")
@click.option("--mem-words", type=click.IntRange(1, 1024), default=16, show_default=True,
              help="pio: shared memory words.")
@click.option("--notifiers", type=click.IntRange(0, 0x10000), default=16, show_default=True,
              help="pio: notifiers a NOTIFY verdict may name.")
@click.option("--clock-hz", type=click.IntRange(0, 10 ** 12), default=None,
              help="pio: the binding clock for PIO_TICKS (default: none, ticks read 0).")
@click.option("--machine", "machine_config", metavar="CONFIG",
              help="pio: debug a binding of this machine config in place (with --binding).")
@click.option("--binding", "binding_name", metavar="NAME", help="The binding of --machine to debug.")
@click.option("-x", "--commands", "script", metavar="FILE",
              help="Run commands from FILE ('-' for stdin) instead of the prompt; stop at the "
                   "first error (exit 1).")
@click.option("--keep-going", is_flag=True, help="With -x: report errors and carry on (exit 1 at the end).")
@click.option("-I", "--include-dir", "include_path", multiple=True, type=click.Path(file_okay=False),
              metavar="DIR", help="Search DIR for #include files (asm/ is always searched).")
@click.option("-D", "--define", "defines", multiple=True, callback=parse_define,
              metavar="NAME[=VALUE]", help="Define a constant, as cpp -D.")
def dbg(program, profile, pcap_file, packets, ctx_fields, syscalls, events_file, base, mem_words, notifiers,
        clock_hz, machine_config, binding_name, script, keep_going, include_path, defines):
    """Debug PROGRAM step by step, as the kernel's tools/bpf/bpf_dbg does.

    \b
    Commands (type 'help' at the prompt; Tab completes them):
      load bpf FILE|CODE     load pcap FILE     load packet HEX
      load syscall NAME [ARG...]                load events FILE [base=PORT]
      select N   step [N|-N]   run [N]   breakpoint [PC|reset]
      disassemble [PC]   dump   regs   input   mem   help   quit
    \b
    Examples:
      bpfio dbg filter.bpf --pcap capture.pcap
      bpfio dbg asm/rtc.asm --events rtc.jsonl --base 0x70
      bpfio dbg --machine pc.toml --binding rtc --events boot.trace
      bpfio dbg filter.bpf --pcap capture.pcap -x session.dbg
    Without a terminal on standard input, commands are read from it.
    """
    from bpfio.dbg.debugger import Debugger
    if profile is None:
        profile = ("pio" if events_file or machine_config else
                   "seccomp" if syscalls else "socket")
    if bool(machine_config) != bool(binding_name):
        raise click.UsageError("--machine and --binding go together")
    if machine_config and program:
        raise click.UsageError("--machine debugs the binding's own program: give no PROGRAM "
                               "(use 'load bpf' to try another)")
    if script == "-" and program == "-":
        raise click.UsageError("standard input cannot hold both the program and the commands")
    session = Debugger(profile, mem_words=mem_words, notifiers=notifiers, clock_hz=clock_hz,
                       base=base, include_path=include_path, defines=defines,
                       context=_context(ctx_fields, profile))
    try:
        setup = _setup(session, program, pcap_file, packets, syscalls, events_file,
                       machine_config, binding_name, include_path, defines)
        interactive = script is None and sys.stdin.isatty()
        if interactive:
            status = _repl(session, setup)
        else:
            for line in setup:
                click.echo(line)
            status = _script(session, script or "-", keep_going)
    finally:
        session.close()
    sys.exit(status)


def _context(fields, profile) -> dict:
    """``--ctx FIELD=VALUE`` options as SocketContext keyword arguments."""
    if fields and profile != "socket":
        raise click.UsageError("--ctx applies to --profile socket")
    return socket_context_option(fields)


def _setup(session, program, pcap_file, packets, syscalls, events_file, machine_config,
           binding_name, include_path, defines) -> list[str]:
    """Apply the command-line options; return what they printed."""
    out = []
    if machine_config:
        out += session.attach_machine(machine_config, binding_name)
    if program:
        from bpfio.text.formats import load_program
        prog = load_program(program, include_path=include_path, defines=defines)
        out += session.set_program(prog, "<stdin>" if program == "-" else program)
    if pcap_file:
        out += session.execute(f"load pcap {pcap_file}")
    for hexbytes in packets:
        out += session.execute(f"load packet {hexbytes}")
    for spec in syscalls:
        out += session.execute(f"load syscall {spec}")
    if events_file:
        out += session.execute(f"load events {events_file}")
    return out


def _script(session, path: str, keep_going: bool) -> int:
    """Run the commands of a file; echo each as '> command' then its output."""
    if path == "-":
        data, name = sys.stdin.buffer.read(), "<stdin>"
    else:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise BpfClickError(f"{path}: error: cannot read: {exc.strerror}") from None
        name = path
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise BpfClickError(f"{name}:{line}: error: not UTF-8 text "
                            f"(byte {data[exc.start]:#04x})") from None
    status = 0
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        click.echo(PROMPT + line.strip())
        try:
            for out in session.execute(line):
                click.echo(out)
        except BpfError as err:
            sys.stdout.flush()
            click.echo(f"{name}:{number}: {render_error(err)}", err=True)
            status = 1
            if not keep_going:
                return 1
        if session.quit:
            break
    return status


def _repl(session, setup) -> int:
    """The interactive prompt: readline editing, history and Tab completion."""
    try:
        import readline
    except ImportError:  # pragma: no cover - every CPython on Linux has it
        readline = None
    history = os.path.expanduser(os.environ.get("BPFIO_DBG_HISTORY", HISTORY_FILE))
    if readline is not None:
        _init_readline(readline, session, history)
    click.echo(f"bpfio dbg ({session.profile} profile): 'help' lists the commands, Tab completes")
    for line in setup:
        click.echo(line)
    try:
        while not session.quit:
            try:
                line = input(PROMPT)
            except EOFError:
                click.echo()
                break
            except KeyboardInterrupt:
                click.echo()
                continue
            try:
                for out in session.execute(line):
                    click.echo(out)
            except KeyboardInterrupt:
                click.echo("(interrupted)")
            except BpfError as err:
                click.echo(render_error(err))
                if readline is not None and line.strip():
                    # As bpf_dbg: only commands that worked go into the history.
                    n = readline.get_current_history_length()
                    if n and readline.get_history_item(n) == line:
                        readline.remove_history_item(n - 1)
    finally:
        if readline is not None:
            try:
                readline.set_history_length(HISTORY_LENGTH)
                readline.write_history_file(history)
            except OSError:
                pass
    return 0


def _init_readline(readline, session, history: str) -> None:
    def complete(text, state):
        if state == 0:
            line = readline.get_line_buffer()[:readline.get_endidx()]
            complete.matches = session.completions(line, text)
        return complete.matches[state] if state < len(complete.matches) else None
    complete.matches = []
    readline.set_completer(complete)
    readline.set_completer_delims(" \t\n")
    if "libedit" in (readline.__doc__ or ""):  # pragma: no cover - macOS
        readline.parse_and_bind("bind ^I rl_complete")
    else:
        readline.parse_and_bind("tab: complete")
    try:
        readline.read_history_file(history)
    except OSError:
        pass
