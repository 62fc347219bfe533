"""Control-flow graphs of classic BPF programs: basic blocks, edges, DOT output.

A *basic block* starts at pc 0, at every jump target and after every jump
or ``ret``; it ends at the instruction before the next start.  Edges:

* ``true`` / ``false`` -- a conditional jump's two ways (``both`` when
  ``jt == jf``: the test cannot change the path);
* ``always`` -- ``ja``;
* ``next`` -- falling into the next block (the block ended because the
  next pc is a jump target).

A block that ends in ``ret`` has no edge out; its *verdict* says what the
returned value means for the profile (``drop``, ``ERRNO(1)``, ``DONE``...).
Classic BPF jumps only forward, so the graph is acyclic and block order is
a topological order.

:func:`to_dot` renders Graphviz text; :func:`render` runs ``dot`` for SVG
or PNG.  The library never prints: callers decide where text goes.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import NamedTuple

from bpfio.errors import BpfError
from bpfio.isa import BPF_JA, BPF_K, BPF_RET, BPF_X, OPCODES

EDGE_KINDS = ("true", "false", "both", "always", "next")
RENDER_FORMATS = ("svg", "png")


class Block(NamedTuple):
    """Instructions ``start..end`` (inclusive) that always run together."""

    start: int
    end: int


class Edge(NamedTuple):
    """A way from block ``src`` to block ``dst`` (both named by their start pc)."""

    src: int
    dst: int
    kind: str


class Cfg(NamedTuple):
    """A program's blocks in pc order and its edges."""

    blocks: tuple
    edges: tuple

    def block_of(self, pc: int) -> Block:
        """Return the block holding ``pc``."""
        for block in self.blocks:
            if block.start <= pc <= block.end:
                return block
        raise IndexError(f"pc {pc} is not in the program")

    def successors(self, start: int) -> list[Edge]:
        """The edges leaving the block that starts at ``start``."""
        return [e for e in self.edges if e.src == start]

    def reachable(self) -> set[int]:
        """Start pcs of the blocks some input can reach from pc 0 (jumps only go forward)."""
        seen = {0}
        for b in self.blocks:                     # pc order is a topological order
            if b.start in seen:
                seen.update(e.dst for e in self.edges if e.src == b.start)
        return seen


def _targets(pc: int, insn, n: int) -> list[tuple[int, str]]:
    """Where control goes after ``insn`` at ``pc``: ``[(pc, kind)]``, [] for ret."""
    info = OPCODES.get(insn.code)
    if info is None:
        raise BpfError(f"pc {pc}: unknown opcode {insn.code:#06x}: no control flow to draw")
    if info.cls == BPF_RET:
        return []
    if info.is_jump:
        if info.op == BPF_JA:
            out = [(pc + 1 + insn.k, "always")]
        elif insn.jt == insn.jf:
            out = [(pc + 1 + insn.jt, "both")]
        else:
            out = [(pc + 1 + insn.jt, "true"), (pc + 1 + insn.jf, "false")]
    else:
        out = [(pc + 1, "next")]
    for target, _ in out:
        if target >= n:
            raise BpfError(f"pc {pc}: control goes to pc {target}, past the last instruction "
                           f"({n - 1})")
    return out


def build_cfg(program) -> Cfg:
    """Split ``program`` into basic blocks and connect them.

    Raises :class:`~bpfio.errors.BpfError` for a program whose control flow
    leaves it (an unknown code, a jump past the end, no final ``ret``).
    """
    n = len(program)
    if n == 0:
        raise BpfError("program is empty: no control flow to draw")
    flows = [_targets(pc, insn, n) for pc, insn in enumerate(program)]
    leaders = {0}
    for pc, flow in enumerate(flows):
        if flow != [(pc + 1, "next")]:      # a jump or a ret ends its block
            leaders.add(pc + 1)
            leaders.update(t for t, _ in flow)
    starts = sorted(s for s in leaders if s < n)
    blocks = tuple(Block(s, (starts[i + 1] if i + 1 < len(starts) else n) - 1)
                   for i, s in enumerate(starts))
    edges = tuple(Edge(b.start, target, kind)
                  for b in blocks for target, kind in flows[b.end])
    return Cfg(blocks, edges)


# --- verdicts ----------------------------------------------------------------------

def describe_verdict(value: int, profile: str = "socket") -> str:
    """A short meaning of a returned value for ``profile`` (``drop``, ``ALLOW``, ``DONE``...)."""
    if profile == "seccomp":
        from bpfio.abi.seccomp import SeccompResult
        return SeccompResult(value).describe()
    if profile == "pio":
        from bpfio.abi.pio import decode_verdict
        action, data = decode_verdict(value)
        return f"NOTIFY({data})" if action == "NOTIFY" else action
    if value == 0:
        return "drop"
    return f"accept up to {value} byte{'s' if value != 1 else ''}"


def ret_meaning(insn, profile: str = "socket") -> str:
    """What a ``ret`` instruction returns, in words (``drop``, ``A``, ``DONE``...)."""
    info = OPCODES[insn.code]
    if info.src == BPF_K:
        return describe_verdict(insn.k, profile)
    reg = "X" if info.src == BPF_X else "A"
    if profile == "socket":
        return f"accept {reg} bytes (drop if 0)"
    return f"the verdict in {reg}"


# --- DOT -----------------------------------------------------------------------

_EDGE_STYLE = {
    "true": 'label="true", color="darkgreen", fontcolor="darkgreen"',
    "false": 'label="false", color="red3", fontcolor="red3", style="dashed"',
    "both": 'label="true/false"',
    "always": 'label="ja"',
    "next": "",
}


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _fill(insn, profile: str) -> str:
    info = OPCODES[insn.code]
    if info.src != BPF_K:
        return "lightyellow"
    if profile == "socket":
        return "mistyrose" if insn.k == 0 else "honeydew"
    meaning = describe_verdict(insn.k, profile)
    if meaning in ("ALLOW", "DONE") or meaning.startswith("NOTIFY"):
        return "honeydew"
    if meaning in ("EXIT", "LOG", "USER_NOTIF", "TRACE"):
        return "lightyellow"
    return "mistyrose"


def to_dot(program, *, profile: str = "socket", name: str = "bpf",
           cfg: Cfg | None = None, highlight=()) -> str:
    """Graphviz DOT text for ``program``'s control-flow graph.

    Nodes are ``b<start pc>``, one per block, listing its instructions in
    bpf_asm syntax (jump targets as ``L<pc>``); blocks no input reaches are
    grey and dashed, marked ``(unreachable)``; a ``ret`` block is filled
    (green: accept/allow/handled, red: drop/deny/kill, yellow: depends on A
    or goes to userspace) and ends with ``-> verdict``.  ``highlight`` is a
    set of executed pcs whose blocks and edges are drawn bold.
    """
    from bpfio.text.disasm import format_insn
    cfg = cfg or build_cfg(program)
    n = len(program)
    hot = set(highlight)
    live = cfg.reachable()
    lines = [f'digraph "{_dot_escape(name)}" {{',
             '  node [shape=box, fontname="monospace", fontsize=10];',
             '  edge [fontname="monospace", fontsize=9];']
    for b in cfg.blocks:
        rows = [f"pc {b.start}-{b.end}" if b.end > b.start else f"pc {b.start}"]
        for pc in range(b.start, b.end + 1):
            rows.append(f"L{pc}: {format_insn(program[pc], pc, length=n)}")
        last = program[b.end]
        attrs, styles = [], []
        if b.start not in live:
            rows[0] += " (unreachable)"
            attrs.append('color="gray50", fontcolor="gray50"')
            styles.append("dashed")
        if OPCODES[last.code].cls == BPF_RET:
            rows.append(f"-> {ret_meaning(last, profile)}")
            styles.insert(0, "filled")
            attrs.append(f'fillcolor="{_fill(last, profile)}"')
        if styles:
            attrs.append(f'style="{",".join(styles)}"')
        if b.start in hot:
            attrs.append("penwidth=3")
        label = "".join(_dot_escape(r) + "\\l" for r in rows)
        extra = ", " + ", ".join(attrs) if attrs else ""
        lines.append(f'  b{b.start} [label="{label}"{extra}];')
    for e in cfg.edges:
        style = _EDGE_STYLE[e.kind]
        if e.src in hot and e.dst in hot:
            style = (style + ", " if style else "") + "penwidth=3"
        lines.append(f"  b{e.src} -> b{e.dst}" + (f" [{style}]" if style else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_available() -> bool:
    """True when Graphviz ``dot`` is on PATH."""
    return shutil.which("dot") is not None


def render(dot_text: str, fmt: str) -> bytes:
    """Run Graphviz ``dot -T<fmt>`` on ``dot_text`` and return the image bytes."""
    if fmt not in RENDER_FORMATS:
        raise BpfError(f"cannot render '{fmt}': choose one of {', '.join(RENDER_FORMATS)}")
    exe = shutil.which("dot")
    if exe is None:
        raise BpfError("Graphviz 'dot' is not installed")
    proc = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True,
                          timeout=60)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise BpfError(f"dot -T{fmt} failed: {err[0] if err else f'exit {proc.returncode}'}")
    return proc.stdout
