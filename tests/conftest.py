"""Shared fixtures and options.

``--run-slow`` runs the exhaustive sweeps marked ``@pytest.mark.slow``
(e.g. >= 1M kernel differential cases); CI runs bounded samples instead.
"""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner
from hypothesis import settings

# CI runs every property on the same fixed examples (a failure there is reproducible);
# local runs explore new random examples each time.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="run the exhaustive sweeps marked slow")
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite golden files from the real tools where installed")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="exhaustive sweep: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def runner():
    """A click CliRunner (stderr kept apart from stdout)."""
    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 always separates them
        return CliRunner()


@pytest.fixture
def cli():
    """The bpfio click group."""
    from bpfio.cli import main
    return main


def _jit_skip():
    try:
        from bpfio.exec.jit.mem import unavailable_reason
    except ImportError:
        return "bpfio.exec.jit not built"
    return unavailable_reason()


@pytest.fixture(params=["compiled", pytest.param("jit", marks=pytest.mark.skipif(
    _jit_skip() is not None, reason=f"JIT unavailable: {_jit_skip()}"))])
def pio_engine(request, monkeypatch):
    """Run the test once per engine: every ``Machine()`` without an explicit engine uses it.

    Device-program tests use it (``pytestmark = pytest.mark.usefixtures("pio_engine")``),
    so each device program's tests also run through the JIT.
    """
    from bpfio.pio.machine import Machine
    monkeypatch.setitem(Machine.__init__.__kwdefaults__, "engine", request.param)
    inner = getattr(request.function, "_hypothesis_internal_use_settings", None)
    if request.param == "jit" and inner is not None:
        # the compiled run explores the full budget; the JIT's repeats a third of it
        monkeypatch.setattr(request.function, "_hypothesis_internal_use_settings",
                            settings(inner, max_examples=max(10, inner.max_examples // 3)))
    return request.param


@pytest.fixture(params=["python", "native"])
def kvm_loop(request, monkeypatch):
    """Run a /dev/kvm test under both exit loops (``bpfio.kvm.runinfo.DEFAULT_LOOP``)."""
    from bpfio.kvm import runinfo
    monkeypatch.setattr(runinfo, "DEFAULT_LOOP", request.param)
    return request.param
