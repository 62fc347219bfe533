"""bpfio benchmark suite: ``python -m bench`` (or ``bpfio bench``).

Every ``bench/bench_*.py`` module exposes ``run(quick: bool) -> list[dict]``;
each row is ``{"group", "name", "value", "unit", "baseline", "ratio", "goal"}``
where ``baseline`` names a row measured in the same run, so ratios survive a
noisy machine.  Nothing here is a test: ``tests/test_bench_smoke.py`` only
checks that the quick mode still runs.
"""

import time


def best_of(fn, repeat: int) -> float:
    """The shortest wall time (s) of ``repeat`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best
