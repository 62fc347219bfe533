"""Running programs: the reference interpreter, the compiled fast path, the kernel oracles.

Stage 3.  It owns :mod:`.interp` (kernel runtime semantics) and :mod:`.trace`
(stepping and traces), :mod:`.compiler` (program -> Python source), the live-kernel
oracles :mod:`.kernel` (accept/reject) and :mod:`.kernel_run` (execution), the random
program and packet generators :mod:`.gen`, and :mod:`.pcap` (capture files to run on).
It may import the core, :mod:`bpfio.text` and :mod:`bpfio.check`.
"""
