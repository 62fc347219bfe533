"""``python -m bpfio`` runs the command line."""

from bpfio.cli import run_main

run_main()
