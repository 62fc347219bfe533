"""The PIO engine (see ``bpfio.pio.machine``) and its ABI (``bpfio.pio.abi``)."""
