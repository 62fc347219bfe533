"""The reference interpreter: kernel runtime rules, profiles, traces and stepping.

Every socket case in CASES states the value the kernel's rules give; the same
table also runs through the live kernel (tests/test_kernel_run.py) so the
expectations themselves are checked, not only our reading of them.
"""

from __future__ import annotations

import pytest

from bpfio import assemble
from bpfio.errors import VMError
from bpfio.insn import Insn, Program
from bpfio.exec.interp import EXIT_WITH_A, Interpreter, SocketContext, ancillary, outcome
from bpfio.exec.trace import Execution
from bpfio.exec.interp import pio_runner, run
from bpfio.exec.trace import trace
from bpfio.abi.pio import PIO_DONE, PIO_IN, PioEvent
from bpfio.abi.seccomp import AUDIT_ARCH_X86_64, SeccompData, SeccompResult

PKT = bytes(range(1, 101))          # 100 bytes: byte i is i + 1


def asm(text) -> Program:
    return text if isinstance(text, Program) else assemble(text)


# (name, source, packet, expected verdict or None for an abort)
CASES = [
    ("add wraps", "ld #0xffffffff\nadd #5\nret a", PKT, 4),
    ("sub wraps", "ld #1\nsub #2\nret a", PKT, 0xffffffff),
    ("mul wraps", "ld #0x10001\nmul #0x10001\nret a", PKT, 0x20001),
    ("neg", "ld #1\nneg\nret a", PKT, 0xffffffff),
    ("lsh x masks 32", "ld #5\nldx #32\nlsh x\nret a", PKT, 5),
    ("lsh x masks 33", "ld #5\nldx #33\nlsh x\nret a", PKT, 10),
    ("rsh x masks -1", "ld #0x80000000\nldx #0xffffffff\nrsh x\nret a", PKT, 1),
    ("div x zero aborts", "ld #7\nldx #0\ndiv x\nret #9", PKT, None),
    ("mod x zero aborts", "ld #7\nldx #0\nmod x\nret #9", PKT, None),
    ("div unsigned", "ld #0xfffffffe\ndiv #2\nret a", PKT, 0x7fffffff),
    ("mod x", "ld #17\nldx #5\nmod x\nret a", PKT, 2),
    ("jgt unsigned", "ld #0xffffffff\njgt #1, yes, no\nyes: ret #1\nno: ret #2", PKT, 1),
    ("jgt 0x7fffffff vs 0x80000000", "ld #0x7fffffff\njgt #0x80000000, yes, no\nyes: ret #1\nno: ret #2", PKT, 2),
    ("jset", "ld #6\njset #4, yes, no\nyes: ret #1\nno: ret #2", PKT, 1),
    ("ld [96] in bounds", "ld [96]\nret a", PKT, 0x61626364),
    ("ld [97] out of bounds", "ld [97]\nret a", PKT, None),
    ("ldh [99] out of bounds", "ldh [99]\nret a", PKT, None),
    ("ldb [100] out of bounds", "ldb [100]\nret a", PKT, None),
    ("ld [0x80000000]", "ldb [0x80000000]\nret a", PKT, None),
    ("net_off", "ldb [0xfff00000]\nret a", PKT, 1),
    ("net_off+5 h", "ldh [0xfff00005]\nret a", PKT, 0x0607),
    ("ll_off without mac header", "ldb [0xffe00000]\nret a", PKT, None),
    ("below ll_off", "ldb [0xffdfffff]\nret a", PKT, None),
    ("ind wraps", "ldx #0xfffffff0\nldb [x + 0x20]\nret a", PKT, 0x11),
    ("ind negative k", "ldx #1\nldb [x + 0xffffffff]\nret a", PKT, 1),
    ("ind reaches net_off", "ldx #0xfff00000\nldb [x + 1]\nret a", PKT, 2),
    ("ind ancillary k is not special", "ldx #0\nldb [x + 0xfffff000]\nret a", PKT, None),
    ("msh", "ldxb 4*([0]&0xf)\ntxa\nret a", PKT, 4),
    ("msh net_off", "ldxb 4*([0xfff00003]&0xf)\ntxa\nret a", PKT, 16),
    ("msh oob", "ldxb 4*([100]&0xf)\nret #1", PKT, None),
    ("len", "ld len\nret a", PKT, 100),
    ("ldx len", "ldx len\ntxa\nret a", PKT, 100),
    ("proto is 0", "ld #7\nld proto\nret a", PKT, 0),
    ("ldb proto ignores size", "ld #7\nldb proto\nret a", PKT, 0),
    ("xor_x", "ld #0xf0\nldx #0x0f\nld [0xfffff028]\nret a", PKT, 0xff),
    ("ifidx without device returns A", "ld #77\nld ifidx\nret #1", PKT, 77),
    ("hatype without device returns A", "ld #5\nldh hatype\nret #1", PKT, 5),
    ("ret #0 is not an abort", "ret #0", PKT, 0),
    ("empty packet len", "ld len\nadd #3\nret a", b"", 3),
    ("scratch memory", "ld #9\nst M[3]\nld #1\nldx M[3]\ntxa\nret a", PKT, 9),
    # Raw instructions: the assembler's `ja label` is exercised in its own tests.
    ("ja", Program([Insn(0x05, 0, 0, 1), Insn(0x06, 0, 0, 1), Insn(0x06, 0, 0, 2)]), PKT, 2),
]


@pytest.mark.parametrize("name,source,packet,expected", CASES, ids=[c[0] for c in CASES])
def test_socket_rules(name, source, packet, expected):
    prog = asm(source)
    verdict, _, _ = outcome(prog, packet)
    assert verdict == expected
    assert run(prog, packet) == (expected or 0)
    assert Interpreter(prog)(packet) == (expected or 0)
    v, steps = trace(prog, packet)
    assert v == (expected or 0)
    assert (steps[-1].fault is not None) == (expected is None)


def test_context_fields_reach_ancillary_loads():
    prog = asm("ld ifidx\ntax\nld hatype\nadd x\nld mark\nadd x\nret a")
    assert run(prog, PKT, ifindex=3, hatype=1, mark=0) == 3
    ctx = SocketContext(ifindex=2, hatype=1, mark=10)
    assert run(prog, PKT, context=ctx) == 12
    assert run(asm("ld vlan_avail\nret a"), PKT, vlan_present=1) == 1
    assert run(asm("ld rand\nret a"), PKT, rand=lambda: 0x1234) == 0x1234
    assert run(asm("ld cpu\nret a"), PKT, cpu=1) == 1


def test_ll_off_when_the_socket_has_a_mac_header():
    eth = bytes(14) + b"\x45" + bytes(19)
    assert run(asm("ldb [0xfff00000]\nret a"), eth, net_off=14, ll_off=0) == 0x45
    assert run(asm("ldb [0xffe0000e]\nret a"), eth, net_off=14, ll_off=0) == 0x45


def test_unknown_context_field_is_an_error():
    with pytest.raises(TypeError, match="nosuch"):
        run(asm("ret #1"), PKT, nosuch=1)


def _nla(attr_type: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return length.to_bytes(2, "little") + attr_type.to_bytes(2, "little") + payload + bytes(-length % 4)


def test_netlink_attribute_search():
    pkt = _nla(1, b"abcd") + _nla(2, b"xy") + _nla(3, _nla(9, b"zz") + _nla(4, b"q"))
    assert ancillary(12, 0, 2, pkt, SocketContext()) == 8          # type 2 at offset 8
    assert ancillary(12, 0, 7, pkt, SocketContext()) == 0          # absent
    assert ancillary(12, 8, 3, pkt, SocketContext()) == 16         # search from A = 8
    assert ancillary(16, 16, 4, pkt, SocketContext()) == 28        # nested in type 3 at 16
    assert ancillary(12, len(pkt) - 3, 1, pkt, SocketContext()) == 0   # A past len - 4
    assert ancillary(4 * 2, 0, 0, pkt, SocketContext()) == EXIT_WITH_A  # ifidx, no device


# -- seccomp ----------------------------------------------------------------

def test_seccomp_reads_host_order_words_and_names_the_action():
    prog = asm("ld [0]\njeq #110, deny, next\nnext: ld [16]\njeq #5, trap, allow\n"
               "deny: ret #0x50001\ntrap: ret #0x30000\nallow: ret #0x7fff0000")
    r = run(prog, SeccompData(110), profile="seccomp")
    assert isinstance(r, SeccompResult) and r == 0x50001
    assert (r.action, r.data, r.errno, r.describe()) == ("ERRNO", 1, 1, "ERRNO(1)")
    assert run(prog, SeccompData(1, args=(5, 0, 0, 0, 0, 0)), profile="seccomp").action == "TRAP"
    assert run(prog, SeccompData(1), profile="seccomp").action == "ALLOW"
    raw = SeccompData(110).pack()
    assert len(raw) == 64 and run(prog, raw, profile="seccomp") == 0x50001


def test_seccomp_fields_arch_args_high_halves_and_len():
    data = SeccompData(3, AUDIT_ARCH_X86_64, 0x1122334455667788, (0xdeadbeef12345678,) + (0,) * 5)
    for k, want in ((4, AUDIT_ARCH_X86_64), (8, 0x55667788), (12, 0x11223344),
                    (16, 0x12345678), (20, 0xdeadbeef)):
        assert run(asm(f"ld [{k}]\nret a"), data, profile="seccomp") == want
    assert run(asm("ld len\nret a"), data, profile="seccomp") == 64
    assert run(asm("ld [0]\nret a"), SeccompData(-1), profile="seccomp") == 0xffffffff


def test_seccomp_unknown_action_kills_the_process():
    r = SeccompResult(0x00010000)
    assert (r.action, r.known) == ("KILL_PROCESS", False)
    assert SeccompResult(0x80000000).action == "KILL_PROCESS"
    assert SeccompResult(0).action == "KILL_THREAD"
    assert SeccompResult(0x50000 | 9999).errno == 4095


# -- pio --------------------------------------------------------------------

EVENT = PioEvent(port=0x608, size=4, direction=PIO_IN, data=0, offset=8, vcpu=2,
                 ticks=0x1_0000_0005, ns=0x2_0000_0007)


@pytest.mark.parametrize("k,want", [(0, 0x608), (4, 4), (8, PIO_IN), (16, 8), (20, 2),
                                    (24, 5), (28, 1), (32, 7), (36, 2)])
def test_pio_header_words(k, want):
    assert outcome(asm(f"ld [{k}]\nret a"), EVENT, profile="pio", mem=[0] * 4)[1] == want


def test_pio_memory_is_shared_and_live():
    mem = [0x11223344, 0, 0, 0]
    prog = asm("ld M[0]\nadd #1\nst M[1]\nldh [46]\nst M[2]\nld [44]\nret #0x10000")
    verdict, a, executed = outcome(prog, EVENT, profile="pio", mem=mem)
    # The tail of the context IS the memory: the store to M[1] is visible to ld [44].
    assert (verdict, a, executed) == (PIO_DONE, 0x11223345, 7)
    assert mem == [0x11223344, 0x11223345, 0x3345, 0]
    assert run(asm("ld len\nret a"), EVENT, profile="pio", mem=mem) == 40 + 16


def test_pio_indexed_loads_are_bounds_checked_at_run_time():
    prog = asm("ldx #12\nld [x + 40]\nret a")
    assert outcome(prog, EVENT, profile="pio", mem=[1, 2, 3, 4])[0] == 4
    assert outcome(prog, EVENT, profile="pio", mem=[1, 2, 3])[0] is None
    # Only len and rand are available as ancillary loads in pio.
    assert outcome(asm("ld proto\nret a"), EVENT, profile="pio", mem=[0])[0] is None


def test_pio_runner_matches_outcome():
    prog = asm("ld [0]\nst M[0]\nld [24]\nret #0x10000")
    mem = [0] * 2
    runner = pio_runner(prog)
    assert runner.pio(*EVENT, mem) == (PIO_DONE, 5, 4)
    assert mem == [0x608, 0]


# -- traces and stepping ----------------------------------------------------

def test_trace_shows_registers_before_each_instruction():
    prog = asm("ld #1\ntax\nadd x\nst M[0]\nret a")
    verdict, steps = trace(prog, b"")
    assert verdict == 2
    assert [(s.pc, s.a, s.x) for s in steps] == [(0, 0, 0), (1, 1, 0), (2, 1, 1), (3, 2, 1), (4, 2, 1)]
    assert steps[3].mem_writes == ((0, 2),)
    assert steps[2].a_after == 2 and steps[-1].next_pc is None and steps[-1].verdict == 2


def test_execution_single_steps_and_stops():
    ex = Execution(asm("ldh [0]\nret a"), b"\x01")
    step = ex.step()
    assert ex.done and step.fault.startswith("load of 2 byte(s) at offset 0")
    assert ex.verdict == 0
    with pytest.raises(VMError):
        ex.step()


def test_unverifiable_instructions_raise_vmerror_not_crash():
    with pytest.raises(VMError, match="unknown opcode"):
        run(Program([Insn(0xff, 0, 0, 0)]), b"")
    with pytest.raises(VMError, match="past the last"):
        run(Program([Insn(0x00, 0, 0, 0)]), b"")
    with pytest.raises(VMError, match="past the end"):
        run(Program([Insn(0x15, 5, 0, 0), Insn(0x06, 0, 0, 0)]), b"")
    assert run(Program([Insn(0x01, 0, 0, 7), Insn(0x0e, 0, 0, 0)]), b"") == 7   # ret x


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile"):
        run(asm("ret #1"), b"", profile="bogus")


def test_syscall_names_resolve():
    from bpfio.errors import BpfError
    from bpfio.abi.seccomp import syscall_name, syscall_number
    assert syscall_number("getppid") == 110 and syscall_number("0x6e") == 110
    assert syscall_number("openat") == 257 and syscall_name(257) == "openat"
    with pytest.raises(BpfError, match="unknown syscall name 'nosuch'"):
        syscall_number("nosuch")


def test_pcap_timestamps_and_wire_length():
    from bpfio.exec.pcap import Packet, read_packets, write_pcap
    raw = write_pcap([Packet(b"ab", 60, 1, 0), b"xyz"], nano=True, byteorder=">")
    pkts = read_packets(raw)
    assert [(p.data, p.wirelen, p.ts_ns) for p in pkts] == [(b"ab", 60, 0), (b"xyz", 3, 1_000_000_000)]
    micro = read_packets(write_pcap([b"q", b"r"]))
    assert micro[1].ts_ns == 1_000_000_000 and micro[0].linktype == 1


def test_interpreter_object_contexts():
    prog = asm("ld #3\nld ifidx\nret a")
    assert Interpreter(prog)(b"x") == 3
    assert Interpreter(prog, ifindex=8)(b"x") == 8
    assert Interpreter(prog).run(b"x", ifindex=9) == 9
    uses_mem = asm("ld #4\nst M[1]\nldx M[1]\ntxa\nret a")
    assert Interpreter(uses_mem)(b"") == 4
    sec = Interpreter(asm("ld [0]\nret a"), profile="seccomp")
    assert sec(SeccompData(7)) == 7 and isinstance(sec(SeccompData(7)), SeccompResult)
    with pytest.raises(TypeError):
        Interpreter(prog, profile="seccomp", ifindex=1)
