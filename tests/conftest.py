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


@pytest.fixture(params=["python", "native"])
def kvm_loop(request, monkeypatch):
    """Run a /dev/kvm test under both exit loops (``bpfio.kvm.vmm.DEFAULT_LOOP``)."""
    from bpfio.kvm import vmm
    monkeypatch.setattr(vmm, "DEFAULT_LOOP", request.param)
    return request.param
