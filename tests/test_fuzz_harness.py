"""The fuzz harness (issue 17): no input reaches "internal error", a traceback or a hang.

Every target of ``tests/fuzz_targets.py`` (each reader, the command line on each, option
values, the public API) gets a bounded number of Hypothesis-chosen mutations of real seed
files; ``KNOWN_BUGS`` (tests/fuzzing.py) filters the failures other branches are fixing.
Inputs found by the long run (``python tests/fuzzing.py --seconds 3600``, or this file with
``--run-slow`` and ``BPFIO_FUZZ_SECONDS``) are kept in ``tests/data/fuzz_found/`` and
replayed here.  A small sample also goes through the installed console script in a
subprocess (the real entry point, whose catch-all prints "internal error").
See docs/fuzzing.md.
"""

from __future__ import annotations

import os
import random
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzzing
from devtools import bpfio_exe
from fuzz_targets import BY_NAME, TARGETS, option_args
from fuzzing import check, found_cases, known, mutate

# Examples per target in the default run (times the target's budget share); the whole
# file stays well under a minute.
EXAMPLES = int(os.environ.get("BPFIO_FUZZ_EXAMPLES", "60"))


def _skip_without_kvm(target_name):
    if target_name == "vm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("bpfio vm needs a usable /dev/kvm")


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_mutated_inputs_fail_only_in_documented_ways(target, tmp_path):
    _skip_without_kvm(target.name)
    @settings(max_examples=max(1, round(EXAMPLES * target.budget)), deadline=None,
              database=None, suppress_health_check=list(HealthCheck))
    @given(st.randoms(use_true_random=False))
    def fuzz(rng):
        data = mutate(rng, target.seeds(), target.tokens, repeat=target.repeat)
        failure = check(target, data, tmp_path)
        if failure is not None and known(failure) is None:
            if os.environ.get("BPFIO_FUZZ_SAVE"):
                fuzzing.save(failure)
            raise AssertionError(f"{failure}\ninput ({len(data)} bytes): {data[:300]!r}")

    fuzz()


def _replay_params():
    for target, path, bug in found_cases():
        marks = []
        if bug is not None:        # goes with its KNOWN_BUGS entry when that branch is merged
            marks = [pytest.mark.xfail(strict=True, reason=f"fixed on branch {bug.branch}")]
        yield pytest.param(target, path, marks=marks, id=f"{target}/{path.stem}")


@pytest.mark.parametrize("target_name,path", list(_replay_params()))
def test_found_inputs_stay_fixed(target_name, path, tmp_path):
    _skip_without_kvm(target_name)
    # A hang here is an input that never ends (an exponential expansion): 3 s tell it apart
    # from the milliseconds a fixed reader takes, and keep the default run short.  A `vm`
    # input starts a process and a guest (~1.5 s idle, over 3 s on a loaded host): 15 s.
    hang = fuzzing._noted(path).kind == "hang"
    limit = (15.0 if target_name == "vm" else 3.0) if hang else fuzzing.TIME_LIMIT
    failure = check(BY_NAME[target_name], path.read_bytes(), tmp_path, limit=limit)
    assert failure is None, str(failure)


def test_known_bugs_name_their_branch_and_item():
    for bug in fuzzing.KNOWN_BUGS:
        assert bug.branch in ("i17-io", "i17-api") and 1 <= bug.item <= 11, bug
    for _, path, _ in found_cases():
        assert path.with_suffix(".txt").exists(), f"{path}: no note of how it failed"


def test_the_watchdog_stops_a_hang(tmp_path):
    class Spin:
        name = "spin"

        @staticmethod
        def run(data, tmp):
            while True:
                pass

    failure = check(Spin, b"", tmp_path, limit=0.2)
    assert failure is not None and failure.kind == "hang"


def test_a_clobbered_output_is_reported(tmp_path, monkeypatch):
    """The -o rule itself: a failing run that changed the target is a failure."""
    from types import SimpleNamespace

    from click.testing import CliRunner
    out = tmp_path / "out.bpf"

    def failing_write(self, cli, args, **kwargs):
        out.write_bytes(b"half")
        return SimpleNamespace(exception=None, output="", stderr="error: no space", exit_code=1)

    class Clobber:
        name = "clobber"

        @staticmethod
        def run(data, tmp):
            fuzzing.invoke(["asm", "-o", out, "x.asm"], outputs=(out,))

    monkeypatch.setattr(CliRunner, "invoke", failing_write)
    failure = check(Clobber, b"", tmp_path)
    assert failure is not None and failure.kind == "clobbered", failure


# -- the real entry point, in a subprocess ---------------------------------------------
SUBPROCESS_CASES = 3


@pytest.mark.parametrize("name", ["program", "events", "options"])
def test_the_console_script_never_prints_internal_error(name, tmp_path):
    """The same mutations through ``bpfio`` itself: exit 0/1/2, no catch-all line."""
    target = BY_NAME[name]
    rng = random.Random(f"subprocess-{name}")
    for _ in range(SUBPROCESS_CASES):
        data = mutate(rng, target.seeds(), target.tokens)
        inp = tmp_path / "input"
        inp.write_bytes(data)
        if name == "program":
            args = ["check", str(inp)]
        elif name == "events":
            args = ["machine", "run", str(fuzzing.ROOT / "examples" / "pc.toml"),
                    "--events", str(inp)]
        else:
            args = option_args(data, tmp_path)
            if args is None:
                continue
        proc = subprocess.run([bpfio_exe(), *args], capture_output=True, text=True,
                              timeout=120, errors="replace", input="run\nstep\n",
                              cwd=tmp_path)
        assert proc.returncode in (0, 1, 2), (data[:200], proc.stderr)
        if "internal error" in proc.stderr:
            failure = fuzzing.Failure(name, "internal-error", proc.stderr.strip(), data)
            assert known(failure) is not None, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr


# -- the long run ----------------------------------------------------------------------
@pytest.mark.slow
def test_long_run_finds_nothing_new():
    """The long run, from pytest (BPFIO_FUZZ_SECONDS; see docs/fuzzing.md)."""
    seconds = float(os.environ.get("BPFIO_FUZZ_SECONDS", "300"))
    assert fuzzing.long_run(seconds) == 0, "new failing inputs: see tests/data/fuzz_found/"
