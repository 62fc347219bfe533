"""What a program sees in each profile: the input layouts and return-value meanings.

Bottom stage, beside :mod:`bpfio.isa` and :mod:`bpfio.insn`: :mod:`.seccomp` is
``struct seccomp_data`` and the ``SECCOMP_RET_*`` actions (as the kernel defines
them), :mod:`.pio` the port-I/O event context and verdicts of ``docs/pio-abi.md``,
read from ``asm/pio.inc``.  It may import only :mod:`bpfio.errors` and
:mod:`bpfio.resources`.
"""
