"""Module paths from before the stage layout, kept working for one release (until 0.3).

Each entry is the one-line re-export of a moved module: ``import bpfio.interp`` gives the
module :mod:`bpfio.exec.interp` itself (so attributes, private names and monkeypatching
all behave as before) and warns once with a :class:`DeprecationWarning` naming the new
path.  An old module split in two whose new module cannot re-import the moved names
(:data:`SPLIT`: the sibling imports the module) gets them added when the old path is
imported.  ``CHANGELOG.md`` lists the moves.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "bpfio.seccomp": "bpfio.abi.seccomp",
    "bpfio.pio.abi": "bpfio.abi.pio",
    "bpfio.lexer": "bpfio.text.lexer",
    "bpfio.parser": "bpfio.text.parser",
    "bpfio.preprocess": "bpfio.text.preprocess",
    "bpfio.assembler": "bpfio.text.assembler",
    "bpfio.disasm": "bpfio.text.disasm",
    "bpfio.formats": "bpfio.text.formats",
    "bpfio.verifier": "bpfio.check.verifier",
    "bpfio.lint": "bpfio.check.lint",
    "bpfio.interp": "bpfio.exec.interp",
    "bpfio.compiler": "bpfio.exec.compiler",
    "bpfio.kernel": "bpfio.exec.kernel",
    "bpfio.kernel_run": "bpfio.exec.kernel_run",
    "bpfio.pcap": "bpfio.exec.pcap",
    "bpfio.kvm_abi": "bpfio.kvm.abi",
    "bpfio.kvm_guests": "bpfio.kvm.guests",
    "bpfio.kvm_offload": "bpfio.kvm.offload",
    "bpfio.debugger": "bpfio.dbg.debugger",
    "bpfio.dbg_inputs": "bpfio.dbg.inputs",
    "bpfio.dbg_format": "bpfio.dbg.format",
    "bpfio.cfg": "bpfio.dbg.cfg",
}

# Old modules split along a seam where the new module cannot re-import the moved names (the
# split-off sibling imports it): importing the old path adds those names to the new module,
# so the old path is still one module object.
SPLIT = {
    "bpfio.interp": ("bpfio.exec.trace", ("trace", "Execution", "Step", "step_op")),
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module path to the module at its new path."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} is now {MOVED[spec.name]}; the old path goes away in 0.3",
                      DeprecationWarning, stacklevel=2)
        module = importlib.import_module(MOVED[spec.name])
        if spec.name in SPLIT:
            sibling, names = SPLIT[spec.name]
            sibling = importlib.import_module(sibling)
            for name in names:
                module.__dict__.setdefault(name, getattr(sibling, name))
        return module

    def exec_module(self, module):
        """Nothing to run: the module was loaded at its new path."""


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
