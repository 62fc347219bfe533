"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import math
import sys

import click

from bpfio.errors import BpfError
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


def parse_define(ctx, param, values):
    """Turn ``-D NAME[=VALUE]`` options into a dict."""
    out = {}
    for item in values:
        name, _, value = item.partition("=")
        if not name.isidentifier():
            raise click.BadParameter(f"'{item}': expected NAME or NAME=VALUE", ctx=ctx, param=param)
        out[name] = value if value else None
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
    if isinstance(rendered, str):
        rendered = rendered.encode()
    if output == "-":
        sys.stdout.buffer.write(rendered)
        sys.stdout.buffer.flush()
    else:
        with open(output, "wb") as fh:
            fh.write(rendered)
