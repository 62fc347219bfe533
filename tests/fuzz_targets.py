"""The fuzz harness's targets: every reader, the command line and the public API.

Each :class:`Target` has real seed inputs (files of the repository, loaded lazily), tokens
that mean something to its reader, and ``run(data, tmp)`` which feeds one input through the
library and the command line in this process, raising :class:`fuzzing.Reject` when an
outcome breaks a rule (see ``tests/fuzzing.py``).  A documented error
(:class:`bpfio.errors.BpfError`) escaping ``run`` is fine.
"""

from __future__ import annotations

import functools
import json
import random
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from devtools import bpfio_exe
from fuzzing import PROVER_ALLOWED, ROOT, Reject, invoke

ASM = ROOT / "asm"
EXAMPLES = ROOT / "examples"
GOLDEN = ROOT / "tests" / "golden"
PIO_DATA = ROOT / "tests" / "data" / "pio"
INCLUDES = (str(ASM), str(EXAMPLES / "guests" / "bpf"))
FORMATS = ("bpf_asm", "xt_bpf", "c", "tcpdump", "tcpdump-c", "bpfc", "bpfc-tcpdump", "raw",
           "json", "asm")
PROFILES = ("socket", "seccomp", "pio")


@dataclass
class Target:
    """One reader or command under fuzz."""

    name: str
    doc: str
    load_seeds: Callable[[], list[bytes]]
    run: Callable[[bytes, Path], None]
    tokens: list[bytes] = field(default_factory=list)
    budget: float = 1.0         # share of the bounded run's examples (a prover, a guest: less)
    repeat: int = 5000          # how often the mutator may repeat one line

    @functools.cache
    def seeds(self) -> list[bytes]:
        return self.load_seeds()

    __hash__ = object.__hash__


def _files(*patterns, limit=None, head=None) -> list[bytes]:
    out = []
    for pattern in patterns:
        for path in sorted(ROOT.glob(pattern))[:limit]:
            data = path.read_bytes()
            if head is not None:
                data = b"".join(data.splitlines(keepends=True)[:head])
            out.append(data)
    return out


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


# -- programs --------------------------------------------------------------------------
ASM_TOKENS = [t.encode() for t in (
    "#define X 1\n", "#define Y (X+X)\n", "#define F(a) ((a)+1)\n", "#undef X\n", "#if X\n",
    "#ifdef X\n", "#ifndef X\n", "#else\n", "#endif\n", "#elif 1\n", '#include "pio.inc"\n',
    '#include "nope.inc"\n', "#include <pio.inc>\n", '#include "/dev/zero"\n', "#error boom\n",
    "ld ", "ldh ", "ldb ", "ldx ", "ldxb 4*([14]&0xf)", "st M[15]", "stx M[16]", "ld M[-1]",
    "ld #len", "ld #rand", "ld [x+4]", "ld [0xffffffff]", "jmp ", "ja ", "jeq #0, l1, l2",
    "jset #1, a", "jgt x, b", "ret #-1", "ret a", "ret x", "add #", "div #0", "mod x", "lsh #33",
    "neg", "tax", "txa", "l1:", "l2:", "a:", ";", "//", "/*", "*/", "#", "$", "(", ")", "<<",
    ">>", "?", ":", "%", "~", "&&", "||", "defined(X)", "ld poff", "ld nla", "ld vlan_tci",
    "ld cpu", "PIO_MEM", "PIO_DONE", "NOTIFY(3)", "ERRNO(13)", "\\\n",
    "#define E (PIO_MEM + 4 * 3)\n", "ld [E]\n", "ld #E\n", "ret #E\n", "jeq #E, l1\n",
    "#if defined(E) && E == 3 || !(1 << 40)\n", "#define G (E*E*E/0)\n", "-D", "%", "<<")]

PROGRAM_TOKENS = ASM_TOKENS[:12] + [t.encode() for t in (
    "{ 0x6, 0, 0, 0x00000000 },", "[{\"code\": 6, \"jt\": 0, \"jf\": 0, \"k\": 1}]",
    "{\"code\": 6}", "[", "]", "{", "}", ",", "\"k\": -1", "\"jt\": 256", "0xffff ", "65536 ",
    "4097,", "(000) ret #0\n", "(001) jeq #0x800 jt 2 jf 3\n", "6 0 0 0\n", "1\n")]


def _asm_seeds() -> list[bytes]:
    return (_files("asm/*.asm", "asm/*.inc", "examples/guests/bpf/*.asm")
            + _files("tests/golden/asm/*.bpf", limit=40)
            + _files("tests/golden/asm_errors/*.bpf", limit=20))


def _program_seeds() -> list[bytes]:
    from bpfio.text.assembler import assemble
    from bpfio.text.formats import format_program
    seeds = (_files("tests/golden/asm/*.bpf_asm", "tests/golden/asm/*.c", limit=12)
             + _files("tests/golden/tcpdump/00*.d*", limit=12)
             + _files("tests/golden/bpfc/*.C", "tests/golden/bpfc/*.tcpdump",
                      "tests/golden/bpfc/*.xt_bpf", limit=6))
    for src in ("arp", "ipv4_tcp_22", "all_forms"):
        prog = assemble((GOLDEN / "asm" / f"{src}.bpf").read_text())
        for fmt in ("json", "raw", "bpfc"):
            out = format_program(prog, fmt)
            seeds.append(out if isinstance(out, bytes) else out.encode())
    return seeds


def _exercise(prog, tmp: Path) -> None:
    """What every reader's program goes through: verify, format, disassemble, run."""
    from bpfio.check.verifier import verify
    from bpfio.errors import BpfError
    from bpfio.exec.compiler import compile
    from bpfio.exec.interp import run
    from bpfio.text.assembler import assemble
    from bpfio.text.disasm import disassemble
    from bpfio.text.formats import format_program, parse_program
    for fmt in FORMATS:
        out = format_program(prog, fmt)
        if fmt in ("bpf_asm", "c", "json", "raw", "tcpdump"):
            back = parse_program(out, filename="formatted")
            if bytes(back) != bytes(prog):
                raise Reject("round-trip", f"format {fmt} reads back different bytes")
    if 1 <= len(prog) <= 4096:     # issue 17 item 11: outside this disasm's output is refused
        text = disassemble(prog)
        if bytes(assemble(text, filename="disasm")) != bytes(prog):
            raise Reject("round-trip", "disassembly re-assembles to different bytes")
    try:
        verify(prog, profile="socket")
    except BpfError:
        return
    fast = compile(prog)
    for packet in (b"", bytes(range(64)), b"\xff" * 1514):
        want = run(prog, packet)
        got = fast(packet)
        if want != got or not 0 <= want <= 0xFFFFFFFF:
            raise Reject("mismatch", f"interp {want} vs compiled {got} on {len(packet)} bytes")


def run_asm(data: bytes, tmp: Path) -> None:
    from bpfio.text.assembler import assemble
    prog = assemble(_text(data), filename="fuzz.asm", include_path=INCLUDES)
    _exercise(prog, tmp)


def run_program(data: bytes, tmp: Path) -> None:
    from bpfio.text.formats import parse_program
    prog = parse_program(data, filename="fuzz.prog", include_path=INCLUDES)
    _exercise(prog, tmp)


# -- the command line on a program file ------------------------------------------------
def _cli_on_program(cmd, *, outputs=False, allowed=(0, 1, 2)):
    def run(data: bytes, tmp: Path) -> None:
        path = tmp / "p.prog"
        path.write_bytes(data)
        args = [a.replace("{p}", str(path)) for a in cmd]
        outs = ()
        if outputs:
            out = tmp / ("g.dot" if cmd[0] == "cfg" else "out.bpf")
            args += ["-o", str(out)]
            outs = (out,)
        invoke([*args, str(path)], outputs=outs, allowed=allowed)
    return run


CLI_COMMANDS = {
    "asm": (["asm", "-f", "c"], True, False),
    "asm_json": (["asm", "-f", "json", "-D", "X=3", "-I", str(ASM)], True, False),
    "disasm": (["disasm"], False, False),
    "disasm_tcpdump": (["disasm", "--style", "tcpdump"], False, False),
    "check": (["check", "--json"], False, False),
    "check_seccomp": (["check", "--profile", "seccomp"], False, False),
    "check_pio": (["check", "--profile", "pio", "--mem-words", "4", "--notifiers", "2"],
                  False, False),
    "run": (["run", "--packet", "45000054", "--packet", "", "--trace"], False, False),
    "run_seccomp": (["run", "--profile", "seccomp", "--syscall", "read", "--engine", "interp"],
                    False, False),
    "run_pio": (["run", "--profile", "pio", "--event", "in 0x608 4", "--event",
                 "out 0x3f8 1 0x41 vcpu=1"], False, False),
    "cfg": (["cfg", "--packet", "00" * 20], True, False),
    "opt": (["opt", "--timeout", "2", "--search", "0"], True, True),
    "prove": (["prove", "--timeout", "2", "--assert", "ret <= 0xffffffff when len > 0"],
              False, True),
    "equiv": (["equiv", "--timeout", "2", "{p}"], False, True),
}


def _cli_targets() -> list[Target]:
    out = []
    for name, (cmd, outputs, slow) in CLI_COMMANDS.items():
        out.append(Target(f"cli_{name}", "bpfio " + " ".join(cmd[:3]) + " on a mutated program",
                          _program_and_asm_seeds,
                          _cli_on_program(cmd, outputs=outputs,
                                          allowed=PROVER_ALLOWED if slow else (0, 1, 2)),
                          PROGRAM_TOKENS, budget=0.2 if slow else 1.0))
    return out


def _program_and_asm_seeds() -> list[bytes]:
    small = [s for s in _asm_seeds() + _program_seeds() if len(s) < 20_000]
    return small


# -- captures --------------------------------------------------------------------------
def _pcapng_block(btype: int, body: bytes) -> bytes:
    import struct
    pad = body + b"\0" * (-len(body) % 4)
    n = 12 + len(pad)
    return struct.pack("<II", btype, n) + pad + struct.pack("<I", n)


def _pcap_seeds() -> list[bytes]:
    import struct

    from bpfio.exec.pcap import write_pcap
    pkts = [bytes(range(60)), b"\x08\x00" * 30, b""]
    shb = _pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = _pcapng_block(1, struct.pack("<HHI", 1, 0, 65535) + b"\x09\x00\x01\x00\x09\0\0\0")
    epb = _pcapng_block(6, struct.pack("<IIIII", 0, 0, 1000, 4, 4) + b"\x45\0\0\x54")
    spb = _pcapng_block(3, struct.pack("<I", 6) + b"abcdef")
    opb = _pcapng_block(2, struct.pack("<HHIIII", 0, 0, 0, 1, 3, 3) + b"xyz")
    return [write_pcap(pkts, byteorder="<"), write_pcap(pkts, byteorder=">"),
            shb + idb + epb + spb + epb, shb + idb + opb, shb]


def run_pcap(data: bytes, tmp: Path) -> None:
    from bpfio.errors import BpfError
    from bpfio.exec.pcap import iter_packets
    cap = tmp / "c.pcap"
    cap.write_bytes(data)
    try:
        for _ in iter_packets(data, filename=str(cap)):
            pass
    except BpfError:
        pass
    prog = tmp / "f.asm"
    prog.write_text("ldh [12]\njeq #0x800, yes\nret #0\nyes: ret #-1\n")
    invoke(["run", "--pcap", cap, prog])
    invoke(["dbg", "--pcap", cap, "-x", "-", prog], stdin=b"run\nstep 3\ninput\n")


# -- events, configs, debugger scripts --------------------------------------------------
EVENT_TOKENS = [t.encode() for t in (
    '{"op": "in", "port": "0x608", "size": 4}\n', '"op": "ins"', '"op": "outs"',
    '"count": 3', '"values": [1, 2]', '"vcpu": 99999999999', '"t_ns": 1e40', '"size": 3',
    '"port": 65536', '"value": -1', "pio_read at 0x3f8 size 1 count 1 val 0x0\n",
    "pio_write at 0x608 size 4 count 2 val 0x1\n", "kvm:kvm_pio:", "[001]", "1112.869185:",
    "{}", "[1,2,3]", "#", "\n\n")]


def _event_seeds() -> list[bytes]:
    return (_files("examples/*.jsonl", head=30)
            + _files("tests/data/pio/*.txt", head=30))


def run_events(data: bytes, tmp: Path) -> None:
    from bpfio.errors import BpfError
    from bpfio.pio.events import EventReader
    ev = tmp / "ev.jsonl"
    ev.write_bytes(data)
    for fmt in ("auto", "jsonl", "kvm_pio"):
        for skip in (False, True):
            try:
                for _ in EventReader(str(ev), fmt=fmt, skip_bad=skip):
                    pass
            except BpfError:
                pass
    invoke(["machine", "run", EXAMPLES / "pc.toml", "--events", ev, "--json"])
    invoke(["machine", "run", EXAMPLES / "pc.toml", "--events", ev, "--skip-bad",
            "--engine", "interp"])
    invoke(["dbg", "--events", ev, "-x", "-", "--keep-going", ASM / "uart.asm"],
            stdin=b"run\nstep 2\nmem\ninput\n")


CONFIG_TOKENS = [t.encode() for t in (
    "[bindings.x]\n", "base = 0x10000\n", "length = 0\n", "mem_words = 2048\n",
    "notifiers = -1\n", "clock_hz = 1e40\n", 'program = "/dev/zero"\n',
    'program = "nope.asm"\n', 'model = "os:system"\n', 'model = "bpfio.devices.uart:UART"\n',
    'engine = "jit"\n', "[machine]\n", 'defines = { X = 1 }\n', "[[bindings]]\n", "= ", "\"",
    "'''", "inf", "nan", "[", "]", "{", "}")]


def _config_seeds() -> list[bytes]:
    asm_dir = str(ASM).encode()
    out = []
    for data in _files("examples/*.toml", "tests/data/pio/*.toml", "examples/guests/*.toml"):
        out.append(data.replace(b'"../asm/', b'"' + asm_dir + b"/")
                   .replace(b'"asm/', b'"' + asm_dir + b"/"))
    return out


def run_config(data: bytes, tmp: Path) -> None:
    from bpfio.errors import BpfError
    from bpfio.pio.config import check_machine
    cfg = tmp / "m.toml"
    cfg.write_bytes(data)
    try:
        machine, _ = check_machine(cfg)
    except BpfError:
        pass
    else:
        if machine is not None:
            machine.close()
    invoke(["machine", "check", cfg])
    ev = tmp / "one.jsonl"
    ev.write_text('{"op": "in", "port": "0x608", "size": 4}\n'
                  '{"op": "out", "port": "0x3f8", "size": 1, "value": 65}\n')
    invoke(["machine", "run", cfg, "--events", ev])


DBG_SCRIPTS = [
    "load bpf {arp}\nload packet 000000000000000000000000080600\nstep\nstep 2\nstep -1\n"
    "regs\nmem\ninput\npath\nrun\nbreakpoint 2\nbreakpoint\nrun 1\nbreakpoint reset\n"
    "disassemble\ndisassemble 1\ndump\nselect 1\nhelp\n",
    "load bpf ldh [12]\nload pcap {pcap}\nrun\nselect 2\nstep 5\npath\nquit\n",
    "load bpf ld #nr\\njeq #0, a\\nret #0\\na: ret #0x7fff0000\nload syscall read 1 2 3 "
    "arch=x86_64 ip=0x1000\nload syscall 999\nrun\nstep\nregs\n",
    "load bpf {uart}\nload events {events} base=0x3f8\nrun\nstep 3\nmem\ninput\nselect 4\n",
]


def _dbg_seeds() -> list[bytes]:
    return [s.encode() for s in DBG_SCRIPTS]


def run_dbg(data: bytes, tmp: Path) -> None:
    from bpfio.exec.pcap import write_pcap
    pcap = tmp / "d.pcap"
    pcap.write_bytes(write_pcap([bytes(range(60)), b"\x08\x06" * 30]))
    text = (data.replace(b"{arp}", str(GOLDEN / "asm" / "arp.bpf").encode())
            .replace(b"{pcap}", str(pcap).encode())
            .replace(b"{uart}", str(ASM / "uart.asm").encode())
            .replace(b"{events}", str(EXAMPLES / "uart-console.jsonl").encode()))
    script = tmp / "script.dbg"
    script.write_bytes(text)
    profile = "pio" if b"load events" in text else ("seccomp" if b"syscall" in text else "socket")
    invoke(["dbg", "--profile", profile, "-x", script, "--keep-going"])


# -- prove --assert --------------------------------------------------------------------
ASSERT_SEEDS = [
    "socket\nret <= 0xffffffff", "socket\nret == 0 when len < 14", "socket\nret in 0, 65535",
    "socket\nret != 1 when pkt[12] == 0x08 and pkt[13] == 0 or len > 100",
    "seccomp\nret == ALLOW when nr == read", "seccomp\naction != KILL_PROCESS when arch == x86_64",
    "seccomp\nret in ALLOW, ERRNO(13) when arg0 >= 0x100000000",
    "pio\nnever-reads M[2..]", "pio\nnever-writes M[0..3] when dir == IN",
    "pio\nnever-touches M[5]", "pio\naction == DONE when port == 0x608 and size == 4",
    "pio\nin < 0x1000000 when offset == 0 and vcpu > 0", "pio\nM[0] == 0 when M[0] == 0",
]
ASSERT_TOKENS = [t.encode() for t in (
    " when ", " and ", " or ", " in ", "==", "!=", "<=", ">=", "<", ">", ",", "..", "[", "]",
    "(", ")", "ret", "len", "pkt[70000]", "pkt[-1]", "M[16]", "M[1023]", "M[0..]", "nr", "arg5",
    "arg6", "ns", "ticks", "data", "ERRNO(99999)", "NOTIFY_2", "TRAP", "openat", "i386",
    "0x" + "f" * 20)]
PROVE_PROGRAMS = {"socket": GOLDEN / "asm" / "arp.bpf", "pio": ASM / "pmtimer.asm"}
_SECCOMP = "ld [4]\njne #0xc000003e, kill\nld [0]\njeq #0, ok\nkill: ret #0\nok: ret #0x7fff0000\n"


def run_assert(data: bytes, tmp: Path) -> None:
    profile, _, expr = _text(data).partition("\n")
    if profile not in PROFILES:
        profile = "socket"
    prog = PROVE_PROGRAMS.get(profile)
    if prog is None:
        prog = tmp / "seccomp.asm"
        prog.write_text(_SECCOMP)
    invoke(["prove", "--profile", profile, "--timeout", "2", "--assert", expr, prog],
           allowed=PROVER_ALLOWED)


# -- option values of every command -----------------------------------------------------
OPTION_SEEDS = [
    "run --profile pio --event 'in 0x608 4' --event 'out 0x3f8 1 0x41 vcpu=1 ticks=5 ns=9 "
    "offset=0' --mem 0=7 --mem-words 16 --notifiers 2 {asm}/pmtimer.asm",
    "run --profile seccomp --syscall read --arg 0=1 --arg 5=0xffffffffffffffff --arch x86_64 "
    "--ip 0x1000 {seccomp}",
    "run --packet 00112233 --ctx ifindex=2 --ctx protocol=0x800 --ctx ll_off=0 --ctx net_off=14 "
    "{arp}",
    "check --profile pio --mem-words 4 --notifiers 65536 --json {asm}/uart.asm",
    "asm -D N=5 -D M -f tcpdump-c --relax -I {asm} {asm}/rtc.asm",
    "cfg --profile seccomp --packet 0011 {seccomp}",
    "prove --max-len 70000 --limit 3 --verdicts --timeout 2 --context free {arp}",
    "prove --profile pio --ports 0x608+4 --mem-words 2 --timeout 2 --assert 'ret == 0' "
    "{asm}/pmtimer.asm",
    "equiv --profile pio --ports 0x3f8+8 --timeout 2 {asm}/uart.asm {asm}/uart.asm",
    "opt --timeout 1 --search 0 --prefer speed --stats --profile seccomp {seccomp}",
    "dbg --profile pio --events {examples}/pmtimer.jsonl --base 0x608 --clock-hz 3579545 "
    "--mem-words 4 -x - {asm}/pmtimer.asm",
    "dbg --syscall 'read 1 2 arch=i386' --syscall 0 -x - {seccomp}",
    "dbg --machine {examples}/pc.toml --binding uart --events {examples}/uart-console.jsonl -x -",
    "machine run --format kvm_pio --skip-bad --json --events {pio}/smp1-perf.txt "
    "{examples}/uart.toml",
    "disasm --style tcpdump -D X=1 {arp}",
    "run --no-verify --engine interp --packet 00 {m16}",
    "asm -f raw -o {out} {arp}",
    "opt -f json --timeout 1 --search 0 -o {out} {arp}",
    "cfg -o {out}.dot {arp}",
]
OPTION_TOKENS = [t.encode() for t in (
    " --event ", " --mem ", " --ctx ", " --arg ", " --syscall ", " --arch ", " --ip ",
    " --packet ", " --base ", " --ports ", " -D ", " --mem-words ", " --notifiers ",
    " --timeout ", " --max-len ", " --limit ", " --clock-hz ", " --format ", " --profile ",
    "vcpu=", "ticks=", "ns=", "offset=", "ifindex=", "mark=", "=", "+", "'", "-", "--")]


def option_args(data: bytes, tmp: Path) -> list[str] | None:
    """The command line an ``options`` input stands for (None: not one to run here)."""
    seccomp = tmp / "seccomp.asm"
    seccomp.write_text(_SECCOMP)
    m16 = tmp / "m16.asm"                   # for --no-verify: what the verifier would refuse
    m16.write_text("ld M[16]\nst M[16]\nret a\n")
    text = _text(data)
    for key, value in (("{asm}", ASM), ("{examples}", EXAMPLES), ("{pio}", PIO_DATA),
                       ("{arp}", GOLDEN / "asm" / "arp.bpf"), ("{seccomp}", seccomp),
                       ("{m16}", m16), ("{out}", tmp / "out.d" / "out")):
        text = text.replace(key, str(value))
    try:
        args = shlex.split(text)
    except ValueError:
        return None                         # not a command line a shell would run
    if not args or args[0] in ("vm", "bench"):
        return None                         # a real guest / the benchmarks: not per input
    if any("\0" in a for a in args):
        return None                         # no shell passes a NUL in an argument
    return args


def run_options(data: bytes, tmp: Path) -> None:
    import os
    args = option_args(data, tmp)
    if args is not None:
        allowed = PROVER_ALLOWED if args[0] in ("prove", "equiv") else (0, 1, 2)
        cwd = os.getcwd()
        os.chdir(tmp)                   # a mutated relative -o path lands in tmp, not here
        try:
            invoke(args, stdin=b"run\nstep\nregs\n", allowed=allowed)
        finally:
            os.chdir(cwd)


# -- bpfio vm: a real guest, in a subprocess ---------------------------------------------
VM_SEEDS = [
    "{hlt} --machine {examples}/pc.toml --entry 0x1000 --load 0x1000 --mode real --vcpus 1 "
    "--mem 2 --timeout 5 --stats",
    "{hlt} --machine {examples}/pc.toml --mode protected --vcpus 2 --timeout 5 --offload",
    "{examples}/guests/hello.asm --machine {examples}/pc.toml -D X=1 --timeout 5",
]


def run_vm(data: bytes, tmp: Path) -> None:
    """``bpfio vm`` with mutated option values (the vCPU threads make it a subprocess)."""
    import math
    import os
    import subprocess
    hlt = tmp / "hlt.bin"
    hlt.write_bytes(b"\xf4")
    text = (_text(data).replace("{hlt}", str(hlt)).replace("{examples}", str(EXAMPLES)))
    try:
        args = shlex.split(text)
    except ValueError:
        return
    if any("\0" in a for a in args):
        return                              # no shell passes a NUL in an argument
    if sum(len(a.encode("utf-8", "surrogateescape")) + 1 for a in args) > 100_000:
        return      # execve refuses an argument over 128 KiB (E2BIG): no shell runs this line
    timeout = 60.0
    for i, arg in enumerate(args[:-1]):
        if arg == "--timeout":
            try:
                timeout = float(args[i + 1])
            except ValueError:
                pass
    if not 0 < timeout <= 10 or math.isnan(timeout):
        return              # 0 means "never stop": a guest that spins is then no hang
    env = {k: v for k, v in os.environ.items() if k != "BPFIO_DEBUG"}
    try:
        proc = subprocess.run([bpfio_exe(), "vm", *args], capture_output=True,
                              timeout=timeout + 20, cwd=tmp, env=env)
    except subprocess.TimeoutExpired:
        raise Reject("hang", f"bpfio vm still running {timeout + 20:g} s after --timeout") from None
    err = proc.stderr.decode("utf-8", "replace")
    for line in err.splitlines():
        if "internal error" in line:
            raise Reject("internal-error", line)
        if line.startswith("Traceback") or "Traceback (most recent" in line:
            raise Reject("traceback", line)
    if proc.returncode not in (0, 1, 2):
        raise Reject("exit-status", f"exit {proc.returncode}: {err[:300]}")


# -- the public API --------------------------------------------------------------------
_ODD = [0, 1, 6, 255, 256, 0xFFFF, 0x10000, 0xFFFFFFFF, 2 ** 32, 2 ** 40, -1, True, None, 1.5,
        "6", b"\x06", float("nan"), 2 ** 64]


def run_api(data: bytes, tmp: Path) -> None:
    """Random calls into the public API, every argument chosen from ``data``."""
    import bpfio
    rng = random.Random(data)
    pick = lambda: rng.choice(_ODD) if rng.random() < 0.3 else rng.randrange(0, 300)  # noqa
    insns = []
    for _ in range(rng.randint(0, 5)):
        insns.append(bpfio.Insn(rng.choice([0x06, 0x16, 0x20, 0x28, 0x15, 0x04, 0x60, pick()]),
                                pick(), pick(), pick()))
    insns.append(bpfio.Insn(0x06, 0, 0, pick()))
    prog = bpfio.Program(insns) if rng.random() < 0.8 else insns
    profile = rng.choice(PROFILES)
    bpfio.verify(prog, profile=profile)
    for fmt in FORMATS:
        bpfio.format_program(prog, fmt)
    if profile == "socket":
        packet = bytes(rng.randrange(256) for _ in range(rng.randrange(80)))
        for verdict in (bpfio.run(prog, packet), bpfio.compile(prog)(packet)):
            if not isinstance(verdict, int) or not 0 <= verdict <= 0xFFFFFFFF:
                raise Reject("result", f"verdict {verdict!r} is not a u32")
    bpfio.assemble(_text(data[:200]), defines={"N": rng.choice(_ODD)})
    bpfio.parse_program(data[:200])
    m = bpfio.Machine(clock=rng.choice([None, lambda: 5, lambda: 2 ** 70]))
    try:
        m.attach(rng.choice([0x60, pick()]), rng.choice([4, pick()]),
                 program=(ASM / "pmtimer.asm").read_text() if rng.random() < 0.5 else prog,
                 mem_words=rng.choice([16, pick()]), notifiers=rng.choice([0, pick()]),
                 clock_hz=rng.choice([None, 1000, pick()]))
        for _ in range(4):
            port, size, value = rng.choice([0x60, pick()]), rng.choice([1, 2, 4, pick()]), pick()
            if rng.random() < 0.5:
                m.pio_in(port, size, rng.choice([0, pick()]))
            else:
                m.pio_out(port, size, value)
        m.pio_ins(0x60, 1, rng.choice([3, pick()]))
        m.pio_outs(0x60, 1, [pick(), pick()])
    finally:
        m.close()


def _api_seeds() -> list[bytes]:
    return [json.dumps(i).encode() + b"\nld #1\nret a\n" for i in range(16)]


TARGETS = [
    Target("asm", "the assembler and its preprocessor (library), then every format",
           _asm_seeds, run_asm, ASM_TOKENS),
    Target("program", "parse_program: bpf_asm, tcpdump -d/-dd/-ddd, C, JSON, raw, bpfc",
           _program_seeds, run_program, PROGRAM_TOKENS, budget=0.5),
    *_cli_targets(),
    Target("pcap", "pcap/pcapng reader, run --pcap, dbg --pcap", _pcap_seeds, run_pcap,
           [b"\x0a\x0d\x0d\x0a", b"\x4d\x3c\x2b\x1a", b"\xd4\xc3\xb2\xa1", b"\xff\xff\xff\xff",
            b"\x00\x00\x00\x00", b"\x06\x00\x00\x00", b"\x03\x00\x00\x00"]),
    Target("events", "JSONL and kvm_pio events: EventReader, machine run, dbg --events",
           _event_seeds, run_events, EVENT_TOKENS, budget=0.1),
    Target("config", "TOML machine configs: check_machine, machine check/run",
           _config_seeds, run_config, CONFIG_TOKENS, budget=0.5),
    Target("dbg", "dbg -x scripts", _dbg_seeds, run_dbg,
           [t.encode() for t in ("load ", "step ", "run ", "select ", "breakpoint ",
                                 "disassemble ", "\n", " -", "base=", "arch=", "ip=")],
           repeat=100),
    Target("assert", "prove --assert expressions", lambda: [s.encode() for s in ASSERT_SEEDS],
           run_assert, ASSERT_TOKENS, budget=0.2),
    Target("options", "option values of every command (one command line per input)",
           lambda: [s.encode() for s in OPTION_SEEDS], run_options, OPTION_TOKENS, budget=0.2),
    Target("vm", "bpfio vm option values on a real guest (a subprocess; needs /dev/kvm)",
           lambda: [s.encode() for s in VM_SEEDS], run_vm,
           [t.encode() for t in (" --entry ", " --load ", " --vcpus ", " --mem ", " -D ",
                                 " --mode protected", "0x", "-")], budget=0.04),
    Target("api", "the public API: Insn, verify, run, compile, format_program, Machine",
           _api_seeds, run_api),
]
BY_NAME = {t.name: t for t in TARGETS}
