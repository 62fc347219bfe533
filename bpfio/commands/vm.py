"""``bpfio vm``: run a real guest on /dev/kvm with its port I/O going through bpfio."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import click

from bpfio import kvm
from bpfio.pio.config import load_machine
from bpfio.pio.stats import format_stats
from bpfio.commands.common import int_callback, parse_define

UART_PORT = 0x3F8


# The upper bound of an address is the RAM size (--mem): checked when the VM exists.
_address = int_callback(0, None, "is negative (a guest-physical address is >= 0)")


def _seconds(ctx, param, value):
    if not math.isfinite(value) or value < 0:
        raise click.BadParameter(f"'{value}' is not a number of seconds >= 0", ctx=ctx,
                                 param=param)
    return value


def uart_output(machine, port: int = UART_PORT) -> bytes:
    """The bytes the guest wrote to the UART model at ``port`` (b"" if none)."""
    binding = machine.binding_at(port)
    model = getattr(binding, "device", None)
    out = getattr(model, "output", None)
    if out is None:
        return b""
    return bytes(out() if callable(out) else out)


def _native_share(stats: dict) -> str:
    kinds = stats.get("native_kinds")
    if not kinds:
        return ""
    native = sorted(name for name, kind in kinds.items() if kind == "native")
    return (f" ({len(native)} of {len(kinds)} bindings' programs ran natively"
            + (f"; in Python: {', '.join(sorted(set(kinds) - set(native)))}"
               if len(native) < len(kinds) else "") + ")")


def summary(result: kvm.RunResult, stats: dict) -> list[str]:
    """Lines describing the run: exits, exits per second, and the fast-path share."""
    handled, events = stats["handled"], stats["events"]
    lines = [f"vcpus: {len(result.vcpus)}, wall time {result.seconds * 1e3:.1f} ms, "
             f"KVM_RUN returns {result.exits}, PIO exits {result.io_exits} "
             f"({result.exits_per_second:,.0f}/s), port accesses {result.accesses}",
             f"fast path served {handled} of {events} port accesses"
             + (f" ({100.0 * handled / events:.1f}%)" if events else "")]
    lines.append(f"exit loop: {result.loop}" + _native_share(stats))
    if result.handler_seconds is not None and result.io_exits and result.loop == "python":
        per_exit = result.seconds * 1e6 / result.io_exits
        in_bpfio = result.handler_seconds * 1e6 / result.io_exits
        lines.append(f"per PIO exit: {per_exit:.1f} us, of which {in_bpfio:.1f} us in bpfio "
                     f"(engine + models, {100.0 * result.handler_share:.1f}% of the run)")
    for v in result.vcpus:
        lines.append(f"  vcpu {v.index}: {v.io_exits} PIO exits ({v.string_exits} string), "
                     f"stopped by {v.stop or '?'} at rip {v.rip:#x}")
    off = result.offload
    if off:
        lines.append(f"offload: {off.get('ioeventfd_hits', 0)} ioeventfd writes and "
                     f"{off.get('coalesced', 0)} coalesced writes never exited "
                     f"({', '.join(off.get('registered', [])) or 'nothing registered'})")
    return lines


@click.command("vm")
@click.argument("guest", type=click.Path(dir_okay=False))
@click.option("--machine", "config", required=True, type=click.Path(dir_okay=False),
              metavar="CONFIG", help="Machine config (TOML) whose bindings serve the ports.")
@click.option("--entry", callback=_address, default=hex(kvm.DEFAULT_LOAD), show_default=True,
              metavar="ADDR", help="Guest-physical address the vCPUs start at: inside RAM "
              "(real mode: below 1 MiB); negative is a usage error (exit 2), outside RAM an "
              "error (exit 1).")
@click.option("--load", "load_addr", callback=_address, default=None, metavar="ADDR",
              help="Where the image is loaded (default: the entry address); the image must "
              "fit in RAM (else an error, exit 1); negative is a usage error (exit 2).")
@click.option("--mode", type=click.Choice(["real", "protected"]), default="real",
              show_default=True, help="16-bit real mode, or 32-bit protected mode on a flat GDT.")
@click.option("--vcpus", type=click.IntRange(1, kvm.MAX_VCPUS), default=1, show_default=True,
              help="Number of vCPUs (threads); all start at the entry, EBX = index.")
@click.option("--mem", "mem_mib", type=click.IntRange(1, 1024), default=2, show_default=True,
              help="Guest RAM in MiB.")
@click.option("--timeout", type=float, default=60.0, show_default=True, callback=_seconds,
              help="Stop the guest after this many seconds (0: never; negative, nan or inf "
              "is a usage error, exit 2).")
@click.option("--offload", is_flag=True,
              help="Register eligible bindings with KVM (ioeventfd / coalesced PIO).")
@click.option("--stats", is_flag=True,
              help="Print the per-binding table, the exit counts and which exit loop ran.")
@click.option("--loop", type=click.Choice(["native", "python"]), default=None,
              help="The vCPU exit loop: native (machine code that serves programs' exits "
                   "without Python; the default where native code can run) or python.")
@click.option("-D", "--define", "defines", multiple=True, callback=parse_define,
              metavar="NAME[=VALUE]", help="nasm -D when GUEST is a .asm source.")
def vm(guest, config, entry, load_addr, mode, vcpus, mem_mib, timeout, offload, stats, loop,
       defines):
    """Run GUEST (a flat binary, or a nasm .asm source) on /dev/kvm until it halts.

    Every port access of the guest goes through the bindings of CONFIG:
    programs first, device models on PIO_EXIT.  The guest's UART output
    (COM1, 0x3f8) is printed; --stats adds the per-binding counter table and
    how many exits the fast path served.

    By default each vCPU runs the native exit loop: KVM_RUN, the port table
    and the bindings' programs in machine code, back to Python only for device
    models and other exits.  --loop python forces the Python loop.

    \b
    Example:
      bpfio vm examples/guests/hello.asm --machine examples/pc.toml --stats
      bpfio vm examples/guests/pmtimer.asm --machine examples/pc.toml --loop python
    """
    try:
        _run(guest, config, entry, load_addr, mode, vcpus, mem_mib, timeout, offload, stats,
             defines, loop)
    except kvm.KvmError as err:
        raise err.at(guest) from None


def _run(guest, config, entry, load_addr, mode, vcpus, mem_mib, timeout, offload, stats,
         defines, loop=None):
    ok, why = kvm.available()
    if not ok:
        raise kvm.KvmError(f"cannot run guests: {why}")
    loop, notice = kvm.choose_loop(loop)
    if notice:
        click.echo(notice, err=True)
    path = Path(guest)
    if not os.path.isfile(path):       # never raises (a name too long: False)
        raise kvm.KvmError("no such file")
    machine = load_machine(config)
    try:
        with tempfile.TemporaryDirectory(prefix="bpfio-vm-") as tmp:
            if path.suffix == ".asm":
                defs = dict(defines)
                defs.setdefault("MODE", 32 if mode == "protected" else 16)
                defs.setdefault("LOAD", hex(entry if load_addr is None else load_addr))
                path = kvm.build_guest(path, tmp, defines=defs)
            image = path.read_bytes()
        if not image:
            raise kvm.KvmError("empty guest image")
        try:
            result = kvm.run_guest(image, machine, entry=entry, load=load_addr, mode=mode,
                                   vcpus=vcpus, mem_size=mem_mib << 20,
                                   timeout=timeout or None, offload=offload,
                                   timed=stats, loop=loop)
        finally:
            out = uart_output(machine)
            if out:
                click.echo(out.decode("latin-1"), nl=not out.endswith(b"\n"))
        if stats:
            st = machine.stats()
            if machine._native is not None and result.loop == "native":
                st["native_kinds"] = machine._native.kinds()
            click.echo("")
            click.echo(format_stats(st))
            click.echo("")
            for line in summary(result, st):
                click.echo(line)
    finally:
        machine.close()
