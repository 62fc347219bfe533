"""The package tree is the data path: stages import downwards only, no cycles, small modules.

The stage table is :data:`bpfio.STAGES`.  Every import counts, including one inside a
function (a lazy import that dodges a cycle is still a cycle) and the module names that
``bpfio/__init__.py`` (``_LAZY``) and ``bpfio/cli.py`` (``COMMANDS``) import by string.
"""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import pytest

import bpfio
from bpfio import _moved
from bpfio.cli import COMMANDS

PKG = Path(bpfio.__file__).resolve().parent
MAX_LINES = 500
GENERATED = {"bpfio.text._parsetab"}   # ply's tables: written by python -m bpfio.text.parser


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The bpfio modules ``name`` imports, anywhere in its body."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES or sub in _moved.MOVED else base)
    if name == "bpfio":
        found.update(bpfio._LAZY.values())
    if name == "bpfio.cli":
        found.update(module for module, _, _ in COMMANDS.values())
    return {m for m in found if m.split(".")[0] == "bpfio" and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def stage_of(name: str) -> int:
    """The index in bpfio.STAGES of the stage that owns module ``name``."""
    for index, (_, prefixes) in enumerate(bpfio.STAGES):
        if any(name == p or name.startswith(p + ".") and p != "bpfio" for p in prefixes):
            return index
    raise AssertionError(f"{name} is in no stage: add it to bpfio.STAGES")


def test_every_module_has_a_stage():
    for name in MODULES:
        stage_of(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_stages(name):
    mine = stage_of(name)
    for dep in sorted(GRAPH[name]):
        assert dep not in _moved.MOVED, f"{name} imports {dep}, an old path: use {_moved.MOVED[dep]}"
        assert dep in MODULES, f"{name} imports {dep}, which does not exist"
        theirs = stage_of(dep)
        assert theirs <= mine, (f"{name} (stage {bpfio.STAGES[mine][0]}) imports {dep} "
                                f"(stage {bpfio.STAGES[theirs][0]}, above it)")


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as a path that starts and ends at the same module; None if none."""
    colour, stack = {}, []

    def visit(node):
        colour[node] = "grey"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if colour.get(dep) == "grey":
                return stack[stack.index(dep):] + [dep]
            if dep not in colour and (found := visit(dep)):
                return found
        colour[node] = "black"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in colour and (found := visit(node)):
            return found
    return None


def test_no_import_cycles():
    # A package's __init__ re-exporting its own module is not a cycle with that module
    # unless the module imports the package back, which the graph shows as it is.
    cycle = _cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", sorted(set(MODULES) - GENERATED))
def test_no_module_over_500_lines(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(PKG.parent)} has {lines} lines"


def test_every_stage_package_says_what_it_owns_and_may_import():
    for _, prefixes in bpfio.STAGES:
        for prefix in prefixes:
            if prefix in MODULES and MODULES[prefix].name == "__init__.py" and prefix != "bpfio":
                doc = ast.get_docstring(ast.parse(MODULES[prefix].read_text())) or ""
                assert "import" in doc, f"{prefix}/__init__.py: say what it may import"


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_old_paths_still_import_as_the_new_module(old):
    import sys
    sys.modules.pop(old, None)      # import it afresh, so the finder runs and warns
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(_moved.MOVED[old])
    assert any(issubclass(w.category, DeprecationWarning) and _moved.MOVED[old] in str(w.message)
               for w in caught), f"{old}: no deprecation warning"
    assert not (PKG.parent / (old.replace(".", "/") + ".py")).exists(), f"{old}: file still there"


# Public names of the modules split along a seam, as they were before the split: every one
# must still import from the old path (taken from the last flat-layout tree, 265aa6c).
OLD_PUBLIC = [
    ("bpfio.interp", "trace"), ("bpfio.interp", "Execution"), ("bpfio.interp", "Step"),
    ("bpfio.interp", "step_op"), ("bpfio.interp", "skb_offset"), ("bpfio.interp", "run"),
    ("bpfio.interp", "SocketContext"), ("bpfio.interp", "outcome"),
    ("bpfio.kernel_run", "ORACLE_ANCILLARY"), ("bpfio.kernel_run", "random_program"),
    ("bpfio.kvm_offload", "Outcome"), ("bpfio.kvm_offload", "MAX_STATES"),
    ("bpfio.kvm", "DEV_KVM"), ("bpfio.kvm", "DEFAULT_MEM"), ("bpfio.kvm", "TSS_ADDR"),
    ("bpfio.kvm", "GDT_ADDR"), ("bpfio.kvm", "STACK_TOP"), ("bpfio.kvm", "STACK_STRIDE"),
    ("bpfio.kvm", "run_guest"), ("bpfio.pio.machine", "Binding"),
    ("bpfio.verifier", "Lint"), ("bpfio.debugger", "DbgError"),
]


@pytest.mark.parametrize("old, name", OLD_PUBLIC)
def test_split_modules_keep_their_public_names_at_the_old_path(old, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(old)
    assert getattr(module, name, None) is not None, f"from {old} import {name} fails"


def test_the_old_path_of_a_split_module_is_still_one_module(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("bpfio.interp")
    assert old is importlib.import_module("bpfio.exec.interp")
    assert old.trace is importlib.import_module("bpfio.exec.trace").trace
    marker = object()
    monkeypatch.setattr(old, "run", marker)     # patching the old path patches the module
    assert importlib.import_module("bpfio.exec.interp").run is marker
