"""The native anchors of bench/bench_native.py compute what they claim (timings never asserted)."""

import os
import shutil
import struct
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import bench_native, native_tools  # noqa: E402
from bench.bench_interp import corpus, packets  # noqa: E402
from bpfio.exec.interp import Interpreter  # noqa: E402

capstone = pytest.importorskip("capstone")


def _disasm(code: bytes, at: int = 0x7C00):
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16)
    return [(i.address, i.mnemonic, i.op_str) for i in md.disasm(code, at)]


def test_boot_sector_is_the_read_storm_loop_with_its_own_clock():
    sector = native_tools.boot_sector(7, 123456)
    assert len(sector) == 512 and sector[-2:] == b"\x55\xaa"
    insns = _disasm(sector[:0x60])
    text = [f"{m} {o}".strip() for _, m, o in insns]
    assert text[:4] == ["cli", "mov dx, 0x608", "xor edi, edi", "mov bp, 7"]
    addr = {i: a for i, (a, _, _) in enumerate(insns)}
    # chunk: first read, then bpfio's loop_guest body, jnz back to its own in
    assert text[4:7] == ["in eax, dx", "mov ebx, eax", f"mov ecx, {123456:#x}"]
    assert text[7:9] == ["in eax, dx", "dec ecx"]
    assert insns[9][1] == "jne" and int(insns[9][2], 16) == addr[7]
    # the 24-bit delta is summed in edi, then the chunk loop closes on the first read
    assert text[10:14] == ["mov esi, eax", "sub eax, ebx", "and eax, 0xffffff", "add edi, eax"]
    assert text[14] == "dec bp" and insns[15][1] == "jne" and int(insns[15][2], 16) == addr[4]
    assert text[16:19] == [f"mov dx, {native_tools.DEBUGCON_PORT:#x}", "mov eax, edi", "mov cx, 4"]
    assert text[19:21] == ["out dx, al", "shr eax, 8"] and insns[21][1] == "loop"
    assert int(insns[21][2], 16) == addr[19]
    # status: al = 1 (QEMU status 3) when the timer did not advance or is wider than 24 bits
    bad = next(a for a, m, o in insns if m == "mov" and o == "al, 1")
    ok = next(a for a, m, o in insns if m == "mov" and o == "al, 0")
    jumps = [int(o, 16) for _, m, o in insns[22:] if m in ("je", "jne")]
    assert jumps == [bad, bad] and ok < bad
    out = next(a for a, m, o in insns if m == "out" and o == "0xf4, al")
    jmp = next(int(o, 16) for a, m, o in insns if m == "jmp" and a < out)
    assert jmp == out and text[text.index("out 0xf4, al") + 1] == "hlt"


def test_boot_sector_rejects_counts_it_cannot_encode():
    for chunks, per in ((0, 1), (0x10000, 1), (1, 0), (1, 1 << 32)):
        with pytest.raises(ValueError):
            native_tools.boot_sector(chunks, per)


def test_program_and_packet_files_have_the_documented_layout(tmp_path):
    progs = corpus()[:2]
    native_tools.write_programs(tmp_path / "p", progs)
    native_tools.write_packets(tmp_path / "k", [b"ab", b""])
    raw = (tmp_path / "p").read_bytes()
    assert struct.unpack_from("<II", raw) == (2, len(progs[0]))
    assert struct.unpack_from("<HBBI", raw, 8) == tuple(progs[0][0])
    assert (tmp_path / "k").read_bytes() == struct.pack("<II", 2, 2) + b"ab" + struct.pack("<I", 0)


@pytest.mark.skipif(native_tools.compiler() is None, reason="no C compiler")
def test_libpcap_in_c_agrees_with_the_interpreter(tmp_path):
    programs, pkts = corpus()[:12], packets()[:16]
    ns, verdicts, how = bench_native._pcap_native(programs, pkts, 1, tmp_path)
    if ns is None:
        pytest.skip(how)
    assert verdicts == [Interpreter(p)(pkt) for p in programs for pkt in pkts]
    assert any(verdicts) and not all(verdicts)


def test_rows_say_absent_without_a_compiler(monkeypatch):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    rows = {r["name"]: r for r in bench_native.jit_rows(True)}
    native = rows[bench_native.PCAP_NATIVE]
    assert native["value"] is None and native["goal"].startswith("absent: no C compiler")
    assert rows["jit run_many"]["baseline"] == bench_native.PCAP_NATIVE


def test_qemu_rows_say_absent_without_qemu(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("qemu-system-x86_64") is None
    wall, guest = bench_native._qemu(True)
    assert wall == guest == "absent: qemu-system-x86_64 not installed"


def _kvm_usable():
    return os.access("/dev/kvm", os.R_OK | os.W_OK) and native_tools.compiler() is not None


@pytest.mark.skipif(not _kvm_usable(), reason="needs /dev/kvm and a C compiler")
def test_bare_kvm_loop_runs_bpfios_guest_to_its_hlt(tmp_path):
    from bpfio import kvm
    exe, why = native_tools.build_kvm_loop(tmp_path)
    assert exe is not None, why
    (tmp_path / "g.bin").write_bytes(kvm.loop_guest(0x608, 4, 1234))
    out, why = native_tools.run_tool([exe, tmp_path / "g.bin", hex(kvm.DEFAULT_LOAD), 2])
    assert out is not None, why
    assert out["exits"] == 1234 and out["ns_per_exit"] > 0
