"""Shared pieces of the /dev/kvm tests (no tests here): skips, guest builds, the pc machine."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bpfio import kvm

ROOT = Path(__file__).resolve().parent.parent
GUESTS = ROOT / "examples" / "guests"
PC_TOML = Path(os.environ.get("BPFIO_PC_TOML", ROOT / "examples" / "pc.toml"))

_ok, _why = kvm.available()
needs_kvm = pytest.mark.skipif(not _ok, reason=f"no usable /dev/kvm: {_why}")
needs_nasm = pytest.mark.skipif(shutil.which("nasm") is None,
                                reason="nasm is not installed (.ci/run installs it)")
needs_pc = pytest.mark.skipif(not PC_TOML.is_file(), reason=f"{PC_TOML} is missing")

_built: dict[tuple, bytes] = {}


def guest(name: str, tmp_dir: Path, mode: str = "real", **defines) -> bytes:
    """Build examples/guests/<name>.asm with nasm (cached per defines) and return the image."""
    defs = {"MODE": 32 if mode == "protected" else 16, **defines}
    key = (name, tuple(sorted(defs.items())))
    if key not in _built:
        _built[key] = kvm.build_guest(GUESTS / f"{name}.asm", tmp_dir, defines=defs).read_bytes()
    return _built[key]


def nasm_image(source: str, tmp_dir: Path, mode: str = "real") -> bytes:
    """Assemble an inline nasm source (``bits``/``org`` supplied) to a flat binary."""
    path = tmp_dir / f"inline{abs(hash((source, mode)))}.asm"
    bits = 32 if mode == "protected" else 16
    path.write_text(f"bits {bits}\norg 0x1000\n{source}\n")
    return kvm.build_guest(path, tmp_dir).read_bytes()


def pc_machine(clock=None):
    """A fresh machine from examples/pc.toml."""
    from bpfio.pio.config import load_machine
    return load_machine(PC_TOML, clock=clock)


def uart_text(machine) -> str:
    """Everything the guest wrote to the UART at 0x3f8."""
    from bpfio.commands.vm import uart_output
    return uart_output(machine).decode("latin-1")


def binding_for(machine, port: int):
    """The binding serving ``port`` (fails the test if the port is unmapped)."""
    b = machine.binding_at(port)
    assert b is not None, f"port {port:#x} is not bound in {PC_TOML}"
    return b
