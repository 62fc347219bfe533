"""``bpfio run`` through CliRunner and one real subprocess; pcap/pcapng reading."""

from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from bpfio.exec.pcap import PcapError, read_packets, write_pcap
from devtools import bpfio_exe

ARP = "ldh [12]\njne #0x806, drop\nret #-1\ndrop: ret #0\n"
ARP_PKT = "ffffffffffff" + "001122334455" + "0806" + "0001"
IP_PKT = "ffffffffffff" + "001122334455" + "0800" + "4500"
SECCOMP = "ld [0]\njeq #110, deny, next\nnext: ld [16]\njeq #5, trap, allow\n" \
          "deny: ret #0x50001\ntrap: ret #0x30000\nallow: ret #0x7fff0000\n"


@pytest.fixture
def arp_file(tmp_path):
    path = tmp_path / "arp.asm"
    path.write_text(ARP)
    return str(path)


def _pcapng(packets) -> bytes:
    """A minimal big-endian pcapng: SHB, IDB (Ethernet), one EPB per packet."""
    def block(btype, body):
        body += bytes(-len(body) % 4)
        n = 12 + len(body)
        return struct.pack(">II", btype, n) + body + struct.pack(">I", n)
    out = block(0x0a0d0d0a, struct.pack(">IHHq", 0x1a2b3c4d, 1, 0, -1))
    out += block(1, struct.pack(">HHI", 1, 0, 65535))
    for i, p in enumerate(packets):
        out += block(6, struct.pack(">IIIII", 0, 0, i, len(p), len(p)) + p)
    return out


_NO_JIT = __import__("bpfio.exec.jit.mem", fromlist=["x"]).unavailable_reason()
ENGINES = ["compiled", "interp",
           pytest.param("jit", marks=pytest.mark.skipif(_NO_JIT is not None, reason=str(_NO_JIT)))]


@pytest.mark.parametrize("engine", ENGINES)
def test_packets_one_verdict_per_line(runner, cli, arp_file, engine):
    res = runner.invoke(cli, ["run", arp_file, "--packet", ARP_PKT, "--packet", IP_PKT,
                              "--packet", "00", "--engine", engine])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == ["4294967295", "0", "0"]


@pytest.mark.parametrize("order,nano", [("<", False), (">", False), ("<", True), (">", True)])
def test_pcap_both_byte_orders(runner, cli, arp_file, tmp_path, order, nano):
    pcap = tmp_path / "c.pcap"
    pcap.write_bytes(write_pcap([bytes.fromhex(ARP_PKT), bytes.fromhex(IP_PKT), b""],
                                byteorder=order, nano=nano))
    res = runner.invoke(cli, ["run", arp_file, "--pcap", str(pcap)])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == ["4294967295", "0", "0"]


def test_pcapng(runner, cli, arp_file, tmp_path):
    path = tmp_path / "c.pcapng"
    path.write_bytes(_pcapng([bytes.fromhex(IP_PKT), bytes.fromhex(ARP_PKT)]))
    res = runner.invoke(cli, ["run", arp_file, "--pcap", str(path)])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == ["0", "4294967295"]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
@pytest.mark.parametrize("kind", ["pcap-le", "pcap-be", "pcapng"])
def test_tcpdump_reads_the_same_packets(tmp_path, kind):
    pkts = [bytes.fromhex(ARP_PKT) + bytes(20), bytes.fromhex(IP_PKT) + bytes(30)]
    raw = _pcapng(pkts) if kind == "pcapng" else write_pcap(pkts, byteorder="<" if kind == "pcap-le" else ">")
    path = tmp_path / "f"
    path.write_bytes(raw)
    out = subprocess.run(["tcpdump", "-r", str(path), "-nn", "-xx"], capture_output=True,
                         text=True, check=True).stdout
    dumped = []
    for line in out.splitlines():
        if line.startswith("\t0x"):
            dumped[-1] += "".join(line.split(":", 1)[1].split())
        else:
            dumped.append("")
    assert [bytes.fromhex(d) for d in dumped] == [p.data for p in read_packets(raw)] == pkts


def test_bad_pcap_is_one_line_error(runner, cli, arp_file, tmp_path):
    path = tmp_path / "bad.pcap"
    path.write_bytes(write_pcap([b"abcdef"])[:-3])
    res = runner.invoke(cli, ["run", arp_file, "--pcap", str(path)])
    assert res.exit_code == 1
    assert res.stderr.strip() == f"{path}: byte 24: error: record of 6 bytes runs past the end of the file"
    with pytest.raises(PcapError, match="not a pcap"):
        read_packets(b"hello world")


def test_trace(runner, cli, arp_file):
    res = runner.invoke(cli, ["run", arp_file, "--packet", "00", "--trace"])
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0].startswith("     0: ldh [") and "aborted: load of 2 byte(s) at offset 12" in lines[0]
    assert lines[-1] == "0"


def test_seccomp(runner, cli, tmp_path):
    path = tmp_path / "sc.asm"
    path.write_text(SECCOMP)
    for args, want in ((["--syscall", "getppid"], "ERRNO(1) 0x00050001"),
                       (["--syscall", "1", "--arg", "0=5"], "TRAP(0) 0x00030000"),
                       (["--syscall", "write"], "ALLOW 0x7fff0000")):
        res = runner.invoke(cli, ["run", "--profile", "seccomp", str(path), *args])
        assert res.exit_code == 0, res.output
        assert res.stdout.strip() == want
    res = runner.invoke(cli, ["run", "--profile", "seccomp", str(path), "--syscall", "nosuch"])
    assert res.exit_code == 1 and res.stderr.strip() == "error: unknown syscall name 'nosuch'"


def test_pio_events_share_memory(runner, cli, tmp_path):
    path = tmp_path / "count.asm"
    path.write_text("#include <pio.inc>\nld M[0]\nadd #1\nst M[0]\nret #PIO_DONE\n")
    res = runner.invoke(cli, ["run", "--profile", "pio", str(path), "--event", "in 0x70 1",
                              "--event", "in 0x70 2", "--event", "out 0x70 1 0x8f", "--mem", "0=0x1ff"])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == ["DONE 0x00010000 in=0x0", "DONE 0x00010000 in=0x201",
                                       "DONE 0x00010000"]


def test_pio_abort_and_fields(runner, cli, tmp_path):
    path = tmp_path / "t.asm"
    path.write_text("ldx #0\nld [24]\ndiv x\nret #0x10000\n")
    res = runner.invoke(cli, ["run", "--profile", "pio", str(path), "--event", "in 0x608 4 ticks=7"])
    assert res.exit_code == 0 and res.stdout.strip() == "EXIT 0x00000000 (aborted)"


@pytest.mark.parametrize("args,message", [
    ([], "give --packet HEX or --pcap FILE"),
    (["--packet", "zz"], "'zz' is not hex bytes"),
    (["--profile", "seccomp"], "give --syscall NAME|NR"),
    (["--packet", "00", "--syscall", "1"], "--syscall and --arg apply to --profile seccomp"),
    (["--profile", "pio", "--event", "in 0x70 3"], "size must be 1, 2 or 4"),
    (["--packet", "00", "--ctx", "bogus=1"], "unknown context field 'bogus'"),
])
def test_usage_errors_exit_2(runner, cli, arp_file, args, message):
    res = runner.invoke(cli, ["run", arp_file, *args])
    assert res.exit_code == 2
    assert message in res.stderr
    assert "Traceback" not in res.output


def test_rejected_program_exits_1(runner, cli, tmp_path):
    path = tmp_path / "bad.asm"
    path.write_text("ld M[3]\nret a\n")
    res = runner.invoke(cli, ["run", str(path), "--packet", "00"])
    assert res.exit_code == 1
    assert res.stderr == ("error: pc 0 (ld M[3]): M[3] is read by the first instruction, "
                          "before anything stores it [uninit-mem, EINVAL]\n")


def test_show_source(runner, cli, arp_file):
    res = runner.invoke(cli, ["run", arp_file, "--packet", ARP_PKT, "--show-source"])
    assert res.exit_code == 0
    assert res.stdout.startswith("def _filter(p") and res.stdout.splitlines()[-1] == "4294967295"


def test_context_option(runner, cli, tmp_path):
    path = tmp_path / "c.asm"
    path.write_text("ld #3\nld ifidx\nret a\n")
    res = runner.invoke(cli, ["run", str(path), "--packet", "00", "--packet", "00", "--ctx", "ifindex=9"])
    assert res.stdout.splitlines() == ["9", "9"]
    res = runner.invoke(cli, ["run", str(path), "--packet", "00"])
    assert res.stdout.splitlines() == ["3"]


def test_installed_entry_point(tmp_path):
    path = tmp_path / "arp.asm"
    path.write_text(ARP)
    proc = subprocess.run([bpfio_exe(), "run", str(path), "--packet", ARP_PKT], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (0, "4294967295\n")
    proc = subprocess.run([bpfio_exe(), "run", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "give --packet HEX or --pcap FILE" in proc.stderr
