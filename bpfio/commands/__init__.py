"""One module per ``bpfio`` subcommand; ``bpfio.cli`` imports them lazily.

Stage 10, just below :mod:`bpfio.cli`.  A command may import any stage below it, plus
:mod:`.common` (shared options and the error type the CLI shows); never ``bpfio.cli``.
"""
