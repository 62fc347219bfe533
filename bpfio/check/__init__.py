"""The verifier: accept or reject a program as Linux would, plus the pio profile's rules.

Stage 2.  It owns :mod:`.verifier` (``bpf_check_classic``, ``seccomp_check_filter``,
the pio ABI, the post-conversion checks) and :mod:`.lint` (warnings that never change
accept/reject).  It may import the core and :mod:`bpfio.text` (to show instructions).
"""
