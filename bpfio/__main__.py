"""``python -m bpfio`` runs the command line."""

from .cli import run_main

run_main()
