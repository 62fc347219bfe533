"""One module per ``bpfio`` subcommand; ``bpfio.cli`` imports them lazily."""
