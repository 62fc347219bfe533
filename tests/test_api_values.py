"""Issue 17 (values and the API): bad API arguments raise documented BpfError subclasses.

Every case reproduces an input of the issue: a field outside its kernel width, a float or a
bool where an integer is meant, an unverified program's scratch access past the memory.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import bpfio
from bpfio import Insn, Program, UsageError, VMError
from bpfio.abi.pio import PioEvent
from bpfio.abi.seccomp import SeccompData
from bpfio.cli import main
from bpfio.pio.machine import FakeClock, Machine

BAD_INSNS = [
    (Insn(6, 0, 0, 2**40), "pc 0: k=1099511627776 is not a u32 (an int in 0..0xffffffff)"),
    (Insn(0x15, -1, 0, 1), "pc 0: jt=-1 is not a u8 (an int in 0..0xff)"),
    (Insn(6, 0, 0, None), "pc 0: k=None is not a u32 (an int in 0..0xffffffff)"),
    (Insn(6.0, 0, 0, 1), "pc 0: code=6.0 is not a u16 (an int in 0..0xffff)"),
    (Insn(True, 0, 0, 1), "pc 0: code=True is not a u16 (an int in 0..0xffff)"),
    (Insn(6, 0, 256, 0), "pc 0: jf=256 is not a u8 (an int in 0..0xff)"),
]

ENTRY_POINTS = {
    "verify": lambda p: bpfio.verify(p),
    "format_program": lambda p: bpfio.format_program(p, "bpf_asm"),
    "disassemble": lambda p: bpfio.disassemble(p),
    "compile": lambda p: bpfio.compile(p)(b""),
    "run": lambda p: bpfio.run(p, b""),
    "Program": lambda p: Program(p),
    "attach": lambda p: Machine().attach(0x60, 1, program=p),
}


@pytest.mark.parametrize("insn,message", BAD_INSNS, ids=[m.split(": ")[1].split("=")[0]
                                                          + str(i) for i, (_, m) in
                                                          enumerate(BAD_INSNS)])
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_insn_fields_are_checked_where_a_program_enters(insn, message, entry):
    with pytest.raises(UsageError) as info:
        ENTRY_POINTS[entry]([insn])
    assert str(info.value) == message


def test_usage_error_is_a_bpf_error_and_a_value_and_type_error():
    assert issubclass(UsageError, bpfio.BpfError)
    assert issubclass(UsageError, ValueError) and issubclass(UsageError, TypeError)


def test_valid_insns_still_pass_and_insn_checked_raises_usage_error():
    assert Program([Insn(6, 0, 0, 0xffffffff)]) == (Insn(6, 0, 0, 0xffffffff),)
    assert Insn(0xffff, 255, 255, 0).checked() == (0xffff, 255, 255, 0)
    with pytest.raises(UsageError, match="k=-1"):
        Insn(6, 0, 0, -1).checked()


@pytest.mark.parametrize("engine", ["interp", "compiled"])
@pytest.mark.parametrize("source,text", [("ld M[16]\nret a", "ld M[16]"),
                                         ("st M[16]\nret #1", "st M[16]"),
                                         ("ldx M[99]\nret #1", "ldx M[99]"),
                                         ("ld #1\nstx M[16]\nret #1", "stx M[16]")])
@pytest.mark.parametrize("profile,data", [("socket", b"\0"), ("seccomp", SeccompData(0)),
                                          ("pio", PioEvent(0x60, 1, 0))])
def test_unverified_scratch_access_is_a_vm_error_in_every_engine(engine, source, text,
                                                                  profile, data):
    prog = bpfio.assemble(source)
    pc = 1 if source.startswith("ld #1") else 0
    runner = bpfio.run if engine == "interp" else (lambda p, d, profile: bpfio.compile(
        p, profile=profile)(d))
    with pytest.raises(VMError) as info:
        runner(prog, data, profile=profile)
    words = 16 if profile != "pio" else 16
    k = text.split("[")[1].rstrip("]")
    assert str(info.value) == (f"pc {pc} ({text}): scratch word M[{k}] is out of range "
                               f"(the memory has {words} words)")
    assert info.value.pc == pc


def test_unverified_pio_scratch_access_uses_the_callers_memory_length():
    prog = bpfio.assemble("ld M[3]\nret a")
    for call in (lambda m: bpfio.run(prog, PioEvent(0x60, 1, 0), profile="pio", mem=m),
                 lambda m: bpfio.compile(prog, profile="pio")(PioEvent(0x60, 1, 0), mem=m)):
        assert call([0, 0, 0, 7]) == 7
        with pytest.raises(VMError, match=r"M\[3\] is out of range \(the memory has 2 words\)"):
            call([0, 0])


@pytest.mark.parametrize("engine", ["interp", "compiled"])
def test_cli_run_no_verify_scratch_is_one_line(engine, tmp_path):
    src = tmp_path / "m16.asm"
    src.write_text("ld M[16]\nret a\n")
    result = CliRunner().invoke(main, ["run", "--no-verify", "--engine", engine,
                                       "--packet", "00", str(src)])
    assert result.exit_code == 1
    assert result.output == ("error: pc 0 (ld M[16]): scratch word M[16] is out of range "
                             "(the memory has 16 words)\n")


def test_cli_trace_scratch_is_one_line(tmp_path):
    src = tmp_path / "st16.asm"
    src.write_text("st M[16]\nret #1\n")
    result = CliRunner().invoke(main, ["run", "--no-verify", "--trace", "--packet", "00",
                                       str(src)])
    assert result.exit_code == 1
    assert result.output.endswith("error: pc 0 (st M[16]): scratch word M[16] is out of range "
                                  "(the memory has 16 words)\n")


# --- the pio engine's arguments --------------------------------------------------------------

@pytest.fixture
def machine():
    m = Machine()
    m.attach(0x60, 4, program=bpfio.assemble("ret #0x10000"))
    return m


@pytest.mark.parametrize("call,message", [
    (lambda m: m.pio_in(0x60, 4.0), "port 0x60: access size 4.0 is not 1, 2 or 4"),
    (lambda m: m.pio_in(0x60, True), "port 0x60: access size True is not 1, 2 or 4"),
    (lambda m: m.pio_in(True, 1), "port must be an integer, not bool"),
    (lambda m: m.pio_in(0x60, 1, vcpu=False), "port 0x60: vcpu False is not an integer 0..0xffffffff"),
    (lambda m: m.pio_in(0x60, 1, vcpu=2**32), "port 0x60: vcpu 4294967296 is not an integer 0..0xffffffff"),
    (lambda m: m.pio_out(0x60, 1, 1.0), "port 0x60: value must be an integer, not float"),
    (lambda m: m.pio_out(0x60, 1, True), "port 0x60: value must be an integer, not bool"),
    (lambda m: m.pio_ins(0x60, 2.0, 1), "port 0x60: access size 2.0 is not 1, 2 or 4"),
])
def test_machine_access_arguments_are_exact_ints(machine, call, message):
    with pytest.raises(bpfio.PioError) as info:
        call(machine)
    assert str(info.value) == message


@pytest.mark.parametrize("reading", [1.5, None, "5", True])
def test_a_clock_reading_that_is_not_an_int_is_a_pio_error(reading):
    clock = FakeClock()
    m = Machine(clock=clock)
    m.attach(0x60, 4, program=bpfio.assemble("ld [24]\nor #0x10000\nret a"), clock_hz=1000)
    clock.ns = 5_000_000
    assert m.pio_in(0x60, 4) == 0x10005     # DONE, with A = ticks | 0x10000
    clock.ns = reading
    with pytest.raises(bpfio.PioError) as info:
        m.pio_in(0x60, 4)
    assert str(info.value) == (f"machine clock returned {reading!r}: a clock returns integer "
                               "nanoseconds")


def test_an_int_clock_wraps_at_2_64_as_the_abi_counter_does():
    clock = FakeClock(2**64 + 5_000_000)
    m = Machine(clock=clock)
    m.attach(0x60, 4, program=bpfio.assemble("ld [24]\nor #0x10000\nret a"), clock_hz=1000)
    assert m.pio_in(0x60, 4) == 0x10005


def test_a_clock_that_is_not_callable_is_a_pio_error():
    with pytest.raises(bpfio.PioError, match="clock must be a callable"):
        Machine(clock=5)


# --- inputs of run/compile -------------------------------------------------------------------

@pytest.mark.parametrize("call,message", [
    (lambda p: bpfio.run(p, "abc"), "run: a packet is bytes, not str"),
    (lambda p: bpfio.run(p, 5), "run: a packet is bytes, not int"),
    (lambda p: bpfio.run(p, b"", ifindex=2**40),
     "socket context: ifindex: 1099511627776 is not a u32 in 0..0xffffffff"),
    (lambda p: bpfio.run(p, b"", protocol=-1), "socket context: protocol: -1 is not a u16 in 0..65535"),
    (lambda p: bpfio.run(p, b"", mark=1.0), "socket context: mark: 1.0 is not an integer (float)"),
    (lambda p: bpfio.compile(p)(b"", vlan_tci=0x10000),
     "socket context: vlan_tci: 65536 is not a u16 in 0..65535"),
    (lambda p: bpfio.run(p, b"", profile="nope"),
     "run: unknown profile 'nope' (expected one of socket, seccomp, pio)"),
    (lambda p: bpfio.run(p, SeccompData(2**32), profile="seccomp"),
     "seccomp_data: nr: 4294967296 is not in -0x80000000..0xffffffff"),
    (lambda p: bpfio.run(p, SeccompData(0, 2**32 + 1), profile="seccomp"),
     "seccomp_data: arch: 4294967297 is not a u32 in 0..0xffffffff"),
    (lambda p: bpfio.compile(p, profile="seccomp")(SeccompData(0, args=(2**64,))),
     "seccomp_data: args[0]: 18446744073709551616 is not a u64 in 0..0xffffffffffffffff"),
    (lambda p: bpfio.run(p, PioEvent(0x60, 4, 0, vcpu=2**40), profile="pio"),
     "pio event: vcpu: 1099511627776 is not a u32 in 0..0xffffffff"),
    (lambda p: bpfio.compile(p, profile="pio")(PioEvent(0x60, 4, 0, ticks=-1)),
     "pio event: ticks: -1 is not a u64 in 0..0xffffffffffffffff"),
    (lambda p: bpfio.run(p, PioEvent(0x60, 4, 0), profile="pio", mem=[2**32]),
     "pio mem: word 0: 4294967296 is not a u32 in 0..0xffffffff"),
    (lambda p: bpfio.verify(p, profile="pio", mem_words=4.0),
     "verify: mem_words must be an int, not float"),
    (lambda p: bpfio.format_program(p, "nope"),
     "format_program: unknown format 'nope'; choose from bpf_asm, xt_bpf, c, tcpdump, "
     "tcpdump-c, bpfc, bpfc-tcpdump, raw, json, asm"),
    (lambda p: bpfio.assemble(5), "assemble: source must be str or bytes, not int"),
    (lambda p: bpfio.parse_program(5), "parse_program: data must be str or bytes, not int"),
])
def test_api_arguments_raise_usage_error(call, message):
    with pytest.raises(UsageError) as info:
        call(bpfio.assemble("ret #1"))
    assert str(info.value) == message


def test_in_range_edges_are_accepted():
    prog = bpfio.assemble("ld [0]\nret a")
    assert bpfio.run(prog, SeccompData(-1, 0xffffffff, 2**64 - 1, (2**64 - 1,) * 6),
                     profile="seccomp") == 0xffffffff
    assert bpfio.run(prog, SeccompData(0xffffffff), profile="seccomp") == 0xffffffff
    assert bpfio.run(bpfio.assemble("ld ifidx\nret a"), b"", ifindex=0xffffffff) == 0xffffffff


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), -1, True, "1"])
def test_prover_timeout_must_be_finite_seconds(timeout):
    from bpfio.prove.equiv import equivalent
    prog = bpfio.assemble("ret #0")
    with pytest.raises(UsageError, match=r"^timeout: .* is not a (finite )?number of seconds"):
        equivalent(prog, prog, timeout=timeout)


@pytest.mark.parametrize("kwargs,message", [
    ({"mem_size": 1.5}, "memory size 1.5 must be an int, a multiple of 4 KiB and >= 128 KiB"),
    ({"vcpus": True}, "--vcpus must be 1..8, got True"),
])
def test_vm_sizes_are_exact_ints(kwargs, message):
    from bpfio import kvm
    with pytest.raises(kvm.KvmError) as info:
        kvm.Vm(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("packet", ["abcdefghijklmnop", None, 5, 1.5, [0] * 16])
@pytest.mark.parametrize("engine", ["run", "compiled", "Interpreter", "outcome"])
def test_a_packet_that_is_not_bytes_is_a_usage_error(engine, packet):
    if isinstance(packet, list) and engine in ("compiled", "Interpreter"):
        pytest.skip("the fast paths' calls read any sequence of byte values; run() checks")
    from bpfio.exec.interp import Interpreter, outcome
    prog = bpfio.assemble("ldh [12]\nret a")
    call = {"run": lambda d: bpfio.run(prog, d), "compiled": bpfio.compile(prog),
            "Interpreter": Interpreter(prog), "outcome": lambda d: outcome(prog, d)}[engine]
    with pytest.raises(UsageError) as info:
        call(packet)
    assert str(info.value) == f"run: a packet is bytes, not {type(packet).__name__}"


@pytest.mark.parametrize("engine", ["run", "compiled"])
def test_bytes_like_packets_still_run_in_the_try_guarded_fast_path(engine):
    prog = bpfio.assemble("ldh [12]\nret a")
    call = bpfio.run if engine == "run" else (lambda p, d: bpfio.compile(p)(d))
    for packet in (bytes(12) + b"\x08\x00", bytearray(12) + b"\x08\x00",
                   memoryview(bytes(12) + b"\x08\x00")):
        assert call(prog, packet) == 0x800


@pytest.mark.parametrize("value", [1.5, -1, 2**32, None])
def test_a_rand_source_outside_u32_is_a_usage_error(value):
    prog = bpfio.assemble("ld rand\nret a")
    for call in (lambda: bpfio.run(prog, b"", rand=lambda: value),
                 lambda: bpfio.compile(prog)(b"", rand=lambda: value)):
        with pytest.raises(UsageError, match=r"^socket context: rand\(\): "):
            call()


@pytest.mark.parametrize("call,message", [
    (lambda: bpfio.run(bpfio.assemble("ret #1"), b"", context=5),
     "socket context: context= must be a SocketContext, not int"),
    (lambda: bpfio.assemble("ret #1", defines=5),
     "assemble: defines must be a mapping of names to values, not int"),
    (lambda: bpfio.assemble("ret #N", defines={"N": 1.5}),
     "assemble: define 'N'=1.5: a name is a str and a value an int, a str or None"),
    (lambda: bpfio.assemble("ret #1", include_path=5),
     "assemble: include_path must be a sequence, not int"),
    (lambda: bpfio.assemble("ret #1", include_path="asm"),
     "assemble: include_path must be a sequence of folder paths"),
    (lambda: bpfio.assemble("ret #1", filename=None),
     "assemble: filename must be a str, not NoneType"),
    (lambda: Program.from_bytes(5), "Program.from_bytes: data must be bytes, not int"),
])
def test_more_api_arguments_raise_usage_error(call, message):
    with pytest.raises(UsageError) as info:
        call()
    assert str(info.value) == message


@pytest.mark.parametrize("kwargs,message", [
    ({"prefer": "x"}, "optimize: prefer: 'x' is not one of size, speed"),
    ({"timeout": float("nan")}, "optimize: timeout: nan is not a finite number of seconds >= 0"),
    ({"search_budget": float("inf")},
     "optimize: search_budget: inf is not a finite number of seconds >= 0"),
])
def test_optimize_arguments_raise_usage_error(kwargs, message):
    from bpfio.opt import optimize
    with pytest.raises(UsageError) as info:
        optimize(bpfio.assemble("ret #0"), **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("value", [1.7, "5", True, None])
def test_shared_memory_words_are_ints(value):
    from bpfio.pio.state import SharedMemory
    mem = SharedMemory(2)
    mem[0] = -1                      # an int: a u32 store, as documented
    assert mem[0] == 0xffffffff
    with pytest.raises(bpfio.PioError, match="^shared memory: a word is an int, not "):
        mem[1] = value
    with pytest.raises(bpfio.PioError):
        mem[0:2] = [1, value]
    assert list(mem) == [0xffffffff, 0]


@pytest.mark.parametrize("kwargs,message", [
    ({"profile": "pio", "mem_words": True}, "prove: mem_words: True is not an integer (bool)"),
    ({"profile": "pio", "mem_words": 2**70},
     "prove: mem_words: 1180591620717411303424 is not in 1..1024"),
    ({"max_len": -1}, "prove: max_len: -1 is not in 0..0x7fffffff"),
    ({"profile": "pio", "ports": (0x3f8, 0x10000)},
     "prove: ports count: 65536 is not in 1..64520"),
    ({"profile": "pio", "ports": 5}, "prove: ports must be (base, count), not 5"),
    ({"context": "nope"}, "prove: context: 'nope' is not one of default, free"),
])
def test_prover_options_raise_usage_error(kwargs, message):
    from bpfio.prove import equivalent
    prog = bpfio.assemble("ret #0")
    with pytest.raises(UsageError) as info:
        equivalent(prog, prog, **kwargs)
    assert str(info.value) == message


def test_prover_programs_go_through_the_insn_check():
    from bpfio.prove import equivalent
    with pytest.raises(UsageError, match=r"^pc 0: k=-1 is not a u32"):
        equivalent([Insn(6, 0, 0, -1)], [Insn(6, 0, 0, 0)])
    with pytest.raises(UsageError, match=r"^program: a program is a sequence of Insn"):
        equivalent(5, [Insn(6, 0, 0, 0)])
