"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import math
import os
import stat
import sys
import tempfile

import click

from bpfio.errors import BpfError, LimitError
from bpfio.limits import parse_int
from bpfio.text.formats import format_program, load_program


class BpfClickError(click.ClickException):
    """A library error shown as is: it already names the place and the problem."""

    exit_code = 1

    def show(self, file=None):
        click.echo(self.format_message(), err=True)


def render_error(err: BpfError) -> str:
    """The text shown for a library error: ``place: error: problem`` (plus caret lines)."""
    text = str(err)
    first = text.split("\n", 1)[0]
    return text if ": error:" in first else f"error: {text}"


def finite(ctx, param, value):
    """click callback: a float option must be finite (FloatRange lets nan through; inf too
    when it has no upper bound)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"'{value}' is not a finite number", ctx=ctx, param=param)
    return value


def int_callback(lo: int, hi: int | None, beyond: str):
    """A click callback for an integer option (decimal or 0x...) in ``lo..hi`` (``hi``
    None: no upper bound here); ``beyond`` ends the message for a value outside them."""
    def callback(ctx, param, value):
        if value is None:
            return None
        try:
            number = parse_int(value, 0)
        except LimitError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
        except ValueError:
            raise click.BadParameter(f"'{value}' is not an integer (decimal or 0x...)",
                                     ctx=ctx, param=param) from None
        if number < lo or (hi is not None and number > hi):
            raise click.BadParameter(f"'{value}' {beyond}", ctx=ctx, param=param)
        return number
    return callback


def parse_define(ctx, param, values):
    """Turn ``-D NAME[=VALUE]`` options into a dict."""
    out = {}
    for item in values:
        name, _, value = item.partition("=")
        if not name.isidentifier():
            raise click.BadParameter(f"'{item}': expected NAME or NAME=VALUE", ctx=ctx, param=param)
        out[name] = value if value else None
    return out


def socket_context_option(items) -> dict:
    """``--ctx FIELD=VALUE`` options (``run``, ``dbg``) as SocketContext keyword arguments.

    Numbers are decimal or 0x...; ``none`` clears a field; ``head`` takes hex bytes.  The
    library's ranges apply (u32, u16, ...): an out-of-range value is a usage error, never
    masked.
    """
    from bpfio.errors import UsageError
    from bpfio.exec.skb import SocketContext, parse_hex
    known = sorted(set(SocketContext.__dataclass_fields__) - {"rand"})
    out = {}
    for item in items:
        name, eq, value = (part.strip() for part in item.partition("="))
        if not eq:
            raise click.BadParameter(f"'{item}': expected FIELD=VALUE", param_hint="--ctx")
        if name not in known:
            raise click.BadParameter(f"unknown context field '{name}' (one of "
                                     f"{', '.join(known)})", param_hint="--ctx")
        try:
            if name == "head":
                out[name] = parse_hex(value)
            else:
                out[name] = None if value.lower() == "none" else parse_int(value, 0)
        except LimitError as exc:
            raise click.BadParameter(f"{name}: {exc}", param_hint="--ctx") from None
        except ValueError:
            what = "hex bytes" if name == "head" else "a number"
            raise click.BadParameter(f"{name}: '{value[:40]}' is not {what}",
                                     param_hint="--ctx") from None
    try:
        SocketContext(**out)
    except UsageError as err:
        raise click.BadParameter(str(err).removeprefix("socket context: "),
                                 param_hint="--ctx") from None
    return out


def program_options(func):
    """Add -I/-D/--relax, the options that reach the assembler."""
    func = click.option("--relax", is_flag=True,
                        help="Turn conditional jumps over 255 into ja trampolines.")(func)
    func = click.option("-D", "--define", "defines", multiple=True, callback=parse_define,
                        metavar="NAME[=VALUE]", help="Define a constant, as cpp -D.")(func)
    func = click.option("-I", "--include-dir", "include_path", multiple=True,
                        type=click.Path(file_okay=False), metavar="DIR",
                        help="Search DIR for #include files (asm/ is always searched).")(func)
    return func


def load(path, include_path=(), defines=None, relax=False):
    """Load a program for a command (any format; '-' is stdin)."""
    return load_program(path, include_path=include_path, defines=defines, relax=relax)


def write_program(program, fmt: str, output: str) -> None:
    """Write ``program`` in format ``fmt`` to the file ``output`` (``-``: standard output)."""
    rendered = format_program(program, fmt)
    write_output(output, rendered.encode() if isinstance(rendered, str) else rendered)


def write_output(output: str, data: bytes) -> None:
    """Write a command's whole output to ``output`` (``-``: standard output), atomically.

    Every ``-o``/``--output`` goes through here, and only once the output
    exists: a regular file is replaced by rename from a fsync'ed temporary
    file in the same folder, so a failed run (disk full, ``ulimit -f``)
    leaves the old content whole.  Special files (``/dev/stdout``,
    ``/dev/full``, a FIFO) cannot be renamed over and are written directly.
    A failure is one line, ``OUTPUT: error: cannot write: reason``, exit 1.
    """
    if output == "-":
        try:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except OSError as exc:
            _drop_stdout()
            raise BpfClickError(f"<stdout>: error: cannot write: {_reason(exc)}") from None
        return
    if not output:
        raise BpfClickError("error: the output file name is empty")
    try:
        try:
            mode = os.stat(output).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            with open(output, "wb") as fh:
                fh.write(data)
            return
        target = os.path.realpath(output)   # a symlink's file is replaced, not the link
        if mode is not None and not os.access(target, os.W_OK):
            raise PermissionError(13, os.strerror(13))   # what open(target, "w") would say
        folder = os.path.dirname(target)
        if not os.path.isdir(folder):
            shown = folder if os.path.islink(output) else os.path.dirname(output) or "."
            raise FileNotFoundError(0, f"folder '{shown}' does not exist")
        _replace(target, folder, data, None if mode is None else stat.S_IMODE(mode))
    except OSError as exc:
        raise BpfClickError(f"{output}: error: cannot write: {_reason(exc)}") from None


def _replace(target: str, folder: str, data: bytes, mode: int | None) -> None:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            if mode is None:            # a new file gets what open() would give it
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask
            os.fchmod(fh.fileno(), mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _drop_stdout() -> None:
    """Forget unwritten standard output, so exiting does not fail on it a second time."""
    try:
        sys.stdout = open(os.devnull, "w")   # noqa: SIM115 -- lives until exit
    except OSError:
        pass
