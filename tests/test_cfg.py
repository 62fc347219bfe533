"""bpfio cfg: basic blocks and edges, verdict labels, DOT text and a rendered SVG checked for structure."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from bpfio.dbg.cfg import Block, Edge, build_cfg, describe_verdict, to_dot
from bpfio.errors import BpfError
from bpfio.insn import Insn

from test_dbg import FILTER

SVG = "{http://www.w3.org/2000/svg}"


def prog(text: str):
    from bpfio.text.assembler import assemble
    return assemble(text)


def test_blocks_and_edges_of_a_filter():
    cfg = build_cfg(prog(FILTER))
    # pc: 0 ldh, 1 jeq, 2 ldb, 3 jeq, 4 ldxb, 5 ldh, 6 jeq, 7 ret keep, 8 ret drop
    assert cfg.blocks == (Block(0, 1), Block(2, 3), Block(4, 6), Block(7, 7), Block(8, 8))
    assert set(cfg.edges) == {Edge(0, 2, "true"), Edge(0, 8, "false"), Edge(2, 4, "true"),
                              Edge(2, 8, "false"), Edge(4, 7, "true"), Edge(4, 8, "false")}
    assert cfg.block_of(5) == Block(4, 6)
    assert cfg.successors(7) == []


def test_fall_through_ja_and_equal_branches():
    p = [Insn(0x00, 0, 0, 1),          # 0 ld #1
         Insn(0x15, 1, 1, 1),          # 1 jeq #1, +1, +1: both ways go to 3
         Insn(0x06, 0, 0, 9),          # 2 ret #9 (unreachable)
         Insn(0x05, 0, 0, 1),          # 3 ja +1 -> 5
         Insn(0x06, 0, 0, 8),          # 4 ret #8 (unreachable)
         Insn(0x04, 0, 0, 1),          # 5 add #1: a jump target, falls into 6
         Insn(0x15, 0, 1, 2),          # 6 jeq #2 -> 7 / 8: target 7 splits nothing new
         Insn(0x16, 0, 0, 0),          # 7 ret a
         Insn(0x06, 0, 0, 0)]          # 8 ret #0
    cfg = build_cfg(p)
    assert [b.start for b in cfg.blocks] == [0, 2, 3, 4, 5, 7, 8]
    assert Edge(0, 3, "both") in cfg.edges and Edge(3, 5, "always") in cfg.edges
    assert Edge(5, 7, "true") in cfg.edges and Edge(5, 8, "false") in cfg.edges
    assert cfg.reachable() == {0, 3, 5, 7, 8}
    text = to_dot(p)
    assert 'b2 [label="pc 2 (unreachable)\\l' in text and 'b4 [label="pc 4 (unreachable)' in text
    assert text.count("(unreachable)") == 2 and 'style="filled,dashed"' in text
    # Every block but the ret blocks has an edge out; ret blocks have none.
    for b in cfg.blocks:
        is_ret = p[b.end].code & 0x07 == 0x06
        assert bool(cfg.successors(b.start)) != is_ret


def test_fall_through_into_a_jump_target():
    p = prog("ld #1\njeq #1, one, two\none: add #1\ntwo: add #2\nret a\n")
    cfg = build_cfg(p)
    assert cfg.blocks == (Block(0, 1), Block(2, 2), Block(3, 4))
    assert Edge(2, 3, "next") in cfg.edges


@pytest.mark.parametrize("program, message", [
    ([], "program is empty"),
    ([Insn(0x00, 0, 0, 0)], "pc 0: control goes to pc 1, past the last instruction"),
    ([Insn(0x15, 5, 0, 0), Insn(0x06, 0, 0, 0)], "pc 0: control goes to pc 6"),
    ([Insn(0x10, 0, 0, 0)], "pc 0: unknown opcode 0x0010"),
])
def test_bad_control_flow(program, message):
    with pytest.raises(BpfError, match=re.escape(message)):
        build_cfg(program)


@pytest.mark.parametrize("profile, value, meaning", [
    ("socket", 0, "drop"), ("socket", 0x40000, "accept up to 262144 bytes"),
    ("seccomp", 0x7fff0000, "ALLOW"), ("seccomp", 0x50001, "ERRNO(1)"),
    ("pio", 0x10000, "DONE"), ("pio", 0x20003, "NOTIFY(3)"), ("pio", 0, "EXIT"),
])
def test_verdict_meanings(profile, value, meaning):
    assert describe_verdict(value, profile) == meaning


def dot_graph(text: str):
    """Nodes and edges of our DOT text, read back with regular expressions."""
    nodes = dict(re.findall(r'^  (b\d+) \[label="(.*?)"', text, re.M))
    edges = re.findall(r"^  (b\d+) -> (b\d+)(?: \[(.*)\])?;", text, re.M)
    return nodes, edges


def test_dot_text():
    text = to_dot(prog(FILTER), name="f")
    assert text.startswith('digraph "f" {') and text.endswith("}\n")
    nodes, edges = dot_graph(text)
    assert sorted(nodes) == ["b0", "b2", "b4", "b7", "b8"]
    assert "L6: jeq #0x50, L7, L8" in nodes["b4"]
    assert nodes["b8"].endswith("-> drop\\l") and "accept up to 262144 bytes" in nodes["b7"]
    labels = {(s, d): attrs for s, d, attrs in edges}
    assert 'label="true"' in labels[("b4", "b7")] and 'label="false"' in labels[("b4", "b8")]


def test_dot_escapes_and_highlight():
    p = prog('#include <pio.inc>\nld [PIO_DIR]\njeq #PIO_OUT, wr, rd\nwr: ret #PIO_DONE\nrd: ret #PIO_EXIT\n')
    text = to_dot(p, profile="pio", name='a "quoted" name', highlight={0, 1, 3})
    assert 'digraph "a \\"quoted\\" name"' in text
    assert "-> DONE" in text and "-> EXIT" in text
    nodes = text.splitlines()
    assert any(ln.startswith("  b0 [") and "penwidth=3" in ln for ln in nodes)
    assert any(ln.startswith("  b0 -> b3") and "penwidth=3" in ln for ln in nodes)
    assert not any(ln.startswith("  b0 -> b2") and "penwidth=3" in ln for ln in nodes)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_rendered_svg_structure(tmp_path, runner, cli):
    (tmp_path / "f.asm").write_text(FILTER)
    out = tmp_path / "f.svg"
    res = runner.invoke(cli, ["cfg", str(tmp_path / "f.asm"), "-o", str(out)])
    assert res.exit_code == 0, res.output + res.stderr
    root = ET.parse(out).getroot()
    groups = root.iter(SVG + "g")
    nodes, edges = {}, set()
    for g in groups:
        title = g.find(SVG + "title")
        if g.get("class") == "node":
            nodes[title.text] = " ".join(t.text or "" for t in g.iter(SVG + "text"))
        elif g.get("class") == "edge":
            edges.add(title.text.replace("&#45;", "-"))
    assert set(nodes) == {"b0", "b2", "b4", "b7", "b8"}
    assert edges == {"b0->b2", "b0->b8", "b2->b4", "b2->b8", "b4->b7", "b4->b8"}
    assert "L1: jeq #0x800, L2, L8" in nodes["b0"] and "-> drop" in nodes["b8"]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_png_output(tmp_path, runner, cli):
    (tmp_path / "f.asm").write_text(FILTER)
    res = runner.invoke(cli, ["cfg", str(tmp_path / "f.asm"), "-o", str(tmp_path / "f.png")])
    assert res.exit_code == 0
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_graphviz_writes_dot_and_hints(tmp_path, runner, cli, monkeypatch):
    (tmp_path / "f.asm").write_text(FILTER)
    monkeypatch.setenv("PATH", str(tmp_path))          # no dot on PATH
    res = runner.invoke(cli, ["cfg", str(tmp_path / "f.asm"), "-o", str(tmp_path / "f.svg")])
    assert res.exit_code == 0
    assert not (tmp_path / "f.svg").exists()
    assert (tmp_path / "f.dot").read_text().startswith('digraph "f.asm"')
    assert res.stderr.count("\n") == 1 and "Graphviz 'dot' is not installed" in res.stderr


def test_cli_stdout_stdin_and_errors(tmp_path, runner, cli):
    res = runner.invoke(cli, ["cfg", "-"], input="ld #1\nret a\n")
    assert res.exit_code == 0 and res.output.startswith('digraph "stdin" {')
    res = runner.invoke(cli, ["cfg", "-", "-o", str(tmp_path / "x.txt")], input="ret #0\n")
    assert res.exit_code == 2 and "the suffix must be one of .dot" in res.stderr
    res = runner.invoke(cli, ["cfg", "-"], input="1,0 0 0 0,\n")
    assert res.exit_code == 1
    assert res.stderr == "error: pc 0: control goes to pc 1, past the last instruction (0)\n"


def test_cli_packet_path_in_bold(tmp_path, runner, cli):
    from test_dbg import TCP80
    (tmp_path / "f.asm").write_text(FILTER)
    res = runner.invoke(cli, ["cfg", str(tmp_path / "f.asm"), "--packet", TCP80.hex()])
    assert res.exit_code == 0
    bold = {re.match(r"\s+(b\d+(?: -> b\d+)?) \[", ln).group(1)
            for ln in res.output.splitlines() if "penwidth=3" in ln}
    assert bold == {"b0", "b2", "b4", "b7", "b0 -> b2", "b2 -> b4", "b4 -> b7"}
    res = runner.invoke(cli, ["cfg", str(tmp_path / "f.asm"), "--packet", "zz"])
    assert res.exit_code == 2 and "'zz' is not hex bytes" in res.stderr


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_tcpdump_program_graph(runner, cli):
    ddd = subprocess.run(["tcpdump", "-ddd", "-y", "EN10MB", "ip and tcp port 80"],
                         capture_output=True, text=True, check=True).stdout
    res = runner.invoke(cli, ["cfg", "-"], input=ddd)
    assert res.exit_code == 0
    nodes, edges = dot_graph(res.output)
    # Two return blocks, every other block ends in a conditional jump (two edges or one 'both').
    rets = [n for n, label in nodes.items() if "-> " in label]
    assert len(rets) == 2
    out_degree = {n: sum(1 for s, _, _ in edges if s == n) for n in nodes}
    assert all(out_degree[n] == 0 for n in rets)
    assert all(out_degree[n] == 2 for n in nodes if n not in rets)
