"""The native vCPU loop (bpfio.kvm.native*): its emitter, the JIT's pio code called as
the loop calls it against the interpreter, the per-binding lock under SMP, program
replacement under load with its grace period, the clock it builds, and its counters
against the Python loop's.

Everything that runs emitted code on random input runs it in a forked child, so a crash
is a failure naming the seed rather than a dead test run.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import traceback
import weakref

import pytest

from bpfio import kvm
from bpfio.exec.jit.mem import unavailable_reason
from bpfio.pio.machine import Machine
from test_kvm_helpers import ROOT, guest, nasm_image, needs_kvm, needs_nasm

needs_native = pytest.mark.skipif(unavailable_reason() is not None,
                                  reason=f"native code cannot run: {unavailable_reason()}")
pytestmark = needs_native


def in_child(fn, *args) -> str:
    """Run ``fn(*args)`` in a forked child; return "" or what failed (a crash included)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # pragma: no cover - the child
        os.close(r)
        try:
            msg = fn(*args) or ""
        except BaseException:
            msg = traceback.format_exc()
        os.write(w, msg.encode()[:60000])
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"child killed by signal {os.WTERMSIG(status)}; last words: {out}"
    return out


# --- the emitter ----------------------------------------------------------------------

def _forms():
    from bpfio.exec.jit.x86 import R8, R12, R13, RAX, RBX, RCX, RDX, RSP, mem
    from bpfio.kvm import native_x86 as N
    return [
        N.inc_m64(mem(RBX, 0x38)), N.inc_m64(mem(RAX, 0, RCX, 8)), N.inc_m64(mem(R13, 0x100)),
        N.lock_inc_m64(mem(RBX, 0x30)), N.lock_inc_m64(mem(R12)),
        N.lock_cmpxchg_m32_r32(mem(R13, 0), RCX), N.lock_cmpxchg_m32_r32(mem(RSP, 8), R8),
        N.add_m64_r64(mem(R13, 0x70), RDX), N.add_r64_m64(RAX, mem(RSP, 8)),
        N.sub_r32_m32(RAX, mem(R13, 8)), N.cmp_r32_m32(RCX, mem(RAX, 4)),
        N.cmp_m32_imm8(mem(R12, 8), 2), N.cmp_m32_imm8(mem(R13, 4), -1),
        N.cmp_m8_imm8(mem(R12, 0x20), 0), N.movzx_r32_r16(RCX, RAX), N.movzx_r32_r16(R8, R13),
        N.imul_r64_r64_imm32(RAX, RAX, 10 ** 9), N.imul_r64_r64_imm32(R8, RCX, -2),
        N.mul_r64(RCX), N.mul_r64(R8), N.div_r64(RCX), N.div_r64(R13),
        N.shr_r64_imm8(RDX, 32), N.shr_r64_imm8(R12, 1), N.dec_r32(RDX), N.dec_r32(R8),
        N.pause(), N.mfence(),
    ]


def _decode(code: bytes, address: int = 0):
    capstone = pytest.importorskip("capstone")
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    return [(i.address, i.size, f"{i.mnemonic} {i.op_str}".strip())
            for i in md.disasm(code, address)]


def test_every_native_form_decodes_as_named():
    for ins in _forms():
        assert _decode(bytes(ins)) == [(0, len(ins), ins.text)], (bytes(ins).hex(), ins.text)


@pytest.mark.parametrize("emit", ["loop_code", "lock_code", "bare_code", "probe_code"])
def test_every_instruction_of_the_emitted_code_decodes_as_its_listing(emit):
    from bpfio.kvm import native_code
    asm = native_code.Asm()
    out = getattr(native_code, emit)(asm)
    code = out[0] if isinstance(out, tuple) else out
    want = [line.split(": ", 1) for line in asm.listing()]
    got = _decode(code)
    assert sum(size for _, size, _ in got) == len(code)
    assert [(f"{a:#06x}", text) for a, _, text in got] == [(o, t) for o, t in want]


def test_native_code_is_never_mapped_writable_and_executable():
    """The loop's code mappings are r-x, never w.

    (Only ours are checked: z3's ctypes callbacks, for one, get a W+X libffi
    trampoline page in any process that has loaded the prover.)
    """
    from bpfio.kvm import native_code
    mappings = native_code.functions()["memory"]
    with open("/proc/self/maps") as maps:
        spans = [(*(int(x, 16) for x in line.split()[0].split("-")), line.split()[1])
                 for line in maps]
    for m in mappings:
        perms = [p for lo, hi, p in spans if lo <= m.address < hi]
        assert perms == ["r-xp"], (hex(m.address), perms)



def test_no_mapping_of_a_fresh_process_with_the_loop_code_is_writable_and_executable():
    """The whole process, in a fresh interpreter that maps the loop's code (no z3 there)."""
    code = ("import sys\n"
            "from bpfio.kvm import native_code\n"
            "native_code.functions()\n"
            "assert 'z3' not in sys.modules\n"
            "print([l.strip() for l in open('/proc/self/maps')\n"
            "       if 'w' in l.split()[1] and 'x' in l.split()[1]])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

# --- the JIT's pio code, called as the loop calls it, against the interpreter -----------

RULES = {   # one tiny program per semantic rule, named after it
    "div_by_zero_x_aborts": "ldx #0\nld #7\ndiv x\nret #0x10000",
    "mod_by_zero_x_aborts": "ldx #0\nld #7\nmod x\nret #0x10000",
    "shift_by_x_masks_to_31": "ldx #33\nld #1\nlsh x\nret a",
    "rsh_by_x_masks_to_31": "ldx #36\nld #0x80000000\nrsh x\nret a",
    "indexed_load_past_the_context_aborts": "ldx #64\nld [x + 40]\nret #0x10000",
    "indexed_load_x_plus_k_wraps": "ldx #0xffffffff\nld [x + 41]\nret a",
    "indexed_half_word_at_the_end": "ldx #0\nldh [x + 102]\nret a",
    "msh": "ldx 4*([3]&0xf)\ntxa\nret a",
    "mem_in_place": "ld M[2]\nadd #1\nst M[2]\nldx M[2]\nstx M[3]\nret a",
    "ld_len": "ld len\nret a",
    "ret_k_keeps_a": "ld [12]\nret #0x10000",
    "jset_and_jgt": "ld [0]\njset #1, odd\njgt #5, big, small\nodd: ret #1\nbig: ret #2\n"
                    "small: ret #3",
    "mul_div_mod_k": "ld [12]\nmul #2654435761\ndiv #7\nmod #1000\nret a",
    "neg_sub_xor": "ld [12]\nneg\nsub #3\nxor #0xffff\nret a",
}


def _check_programs(cases) -> str:
    """For each (name, program, mem_words, header, mem): the loop's view == interpreter."""
    from bpfio.exec.interp import pio_runner
    from bpfio.exec.jit.program import jit
    from bpfio.kvm.native_prog import _reads_rand, run_native
    bad = []
    for name, prog, words, header, mem in cases:
        if _reads_rand(prog):
            continue                        # kept in Python by native_program
        code = jit(prog, profile="pio", mem_words=words)
        ctx = bytearray(b"".join(w.to_bytes(4, "big") for w in header + mem))
        want_mem = list(mem)
        v, a, c = pio_runner(prog)(*header[:6], header[6] | header[7] << 32,
                                   header[8] | header[9] << 32, want_mem)
        got_v, got_a, got_c = run_native(code.address, ctx)
        got_mem = [int.from_bytes(ctx[40 + 4 * i:44 + 4 * i], "big") for i in range(words)]
        if (got_v, got_mem, got_c) != (v, want_mem, c) or (v is not None and got_a != a):
            bad.append(f"{name}: interp {v}, {a:#x}, {c}, {want_mem} / native {got_v}, "
                       f"{got_a:#x}, {got_c}, {got_mem}\n{prog}")
    return "\n".join(bad[:3])


def _random_cases(seed: int, n: int):
    from bpfio.exec.gen import random_program
    rng = random.Random(seed)
    for i in range(n):
        words = rng.choice((1, 4, 16, 33))
        prog = random_program(rng, profile="pio", mem_words=words)
        header = [rng.randrange(1 << 16), rng.choice((1, 2, 4)), rng.randrange(2),
                  rng.getrandbits(32), rng.randrange(8), rng.randrange(4)] + \
                 [rng.getrandbits(32) for _ in range(4)]
        yield f"seed {seed} case {i}", prog, words, header, [rng.getrandbits(32)
                                                              for _ in range(words)]


def test_the_loops_view_of_jit_code_follows_each_semantic_rule():
    from bpfio.text.assembler import assemble
    from bpfio.check.verifier import verify
    cases = []
    for name, text in RULES.items():
        prog = assemble(text)
        verify(prog, profile="pio", mem_words=16)
        header = [0x608, 4, 0, 0x12345678, 1, 0, 0, 0, 0, 0]
        cases.append((name, prog, 16, header, list(range(16))))
    assert in_child(_check_programs, cases) == ""


@pytest.mark.parametrize("seed", range(4))
def test_the_loops_view_of_jit_code_matches_the_interpreter_on_random_programs(seed):
    assert in_child(_check_programs, list(_random_cases(seed, 300))) == ""


# --- the grace period -------------------------------------------------------------------

def test_retired_objects_live_until_every_busy_vcpu_passes_a_quiescent_point():
    from bpfio.kvm.native import NativeEngine
    from bpfio.kvm.native_layout import NVcpu

    class Owner:
        pass
    engine = NativeEngine(Machine())
    busy, idle = NVcpu(gen=7), NVcpu(gen=4)     # odd: inside the loop's dispatch
    engine.vcpus[:] = [busy, idle]
    obj = Owner()
    ref = weakref.ref(obj)
    engine.retire(obj)
    del obj
    assert ref() is not None and engine.reclaim() == 1
    idle.gen += 2                                # an idle vCPU's progress does not matter
    assert engine.reclaim() == 1 and ref() is not None
    busy.gen += 1                                # busy reached a quiescent point
    assert engine.reclaim() == 0 and ref() is None
    engine.vcpus.clear()


# --- on /dev/kvm ------------------------------------------------------------------------

COUNTER4 = """
#include <pio.inc>
        ld [PIO_DIR]
        jeq #PIO_OUT, out
        ld M[3]
        ret #PIO_DONE
out:    ld [PIO_DATA]
        st M[3]
        jset #1, slow
        ld M[0]
        add #1
        st M[0]
        ret #PIO_DONE
slow:   ret #PIO_EXIT
"""


@needs_kvm
@needs_nasm
@pytest.mark.parametrize("loop", ["native", "python"])
def test_four_vcpus_hammering_one_binding_lose_no_update(tmp_path, loop):
    from test_kvm_guests import CounterModel
    rounds, vcpus = 1500, 4
    m = Machine()
    try:
        b = m.attach(0x510, 2, program=COUNTER4, device=CounterModel(), name="counter")
        from bpfio.devices import uart
        m.attach(0x3F8, 8, program=(ROOT / "asm" / "uart.asm").read_text(),
                 device=uart.UART(), mem_words=uart.MEM_WORDS, name="uart")
        result = kvm.run_guest(guest("smp", tmp_path, ROUNDS=rounds), m, vcpus=vcpus,
                               timeout=120, loop=loop)
        assert result.loop == loop
        if loop == "native":
            assert m._native.kinds()["counter"] == "native"
        from test_kvm_helpers import uart_text
        assert uart_text(m) == f"smp: {vcpus} vcpus x {rounds} out+in rounds done\n"
        odd = rounds // 2 * vcpus
        c = b.counters
        assert c.events == 2 * vcpus * rounds
        assert b.mem[0] == vcpus * rounds - odd           # the program's increments
        assert b.mem[6] == odd == c.exits                 # the model's read-modify-writes
        assert c.handled == 2 * vcpus * rounds - odd
    finally:
        m.close()


def _replace_under_load(image: bytes) -> str:
    """A guest reads port 0x600 in a loop while the host swaps its program 50 times."""
    progs = ["#include <pio.inc>\nld M[0]\nadd #1\nst M[0]\nret #PIO_DONE",
             "#include <pio.inc>\nld M[1]\nadd #1\nst M[1]\nret #PIO_DONE"]
    m = Machine()
    b = m.attach(0x600, 4, program=progs[0], name="swap")
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(r=kvm.run_guest(image, m, loop="native",
                                                                   timeout=120)))
    t.start()
    swaps = 0
    while t.is_alive() and swaps < 50:
        before = b.mem[0] + b.mem[1]
        b.replace_program(progs[(swaps + 1) % 2])
        swaps += 1
        while t.is_alive() and b.mem[0] + b.mem[1] == before:
            time.sleep(0.0005)                     # progress on the new program
    t.join()
    engine = m._native
    if not engine.synchronize(5.0):
        return "retired program code was never reclaimed"
    n = out["r"].io_exits
    c = b.counters
    if b.mem[0] + b.mem[1] != n or c.handled != n or c.exits:
        return f"lost events: mem {b.mem[0]}+{b.mem[1]}, handled {c.handled}, exits {n}"
    if swaps < 2 or not (b.mem[0] and b.mem[1]):
        return f"the swaps did not happen under load ({swaps} swaps, {list(b.mem)[:2]})"
    return ""


@needs_kvm
def test_program_replacement_under_load_loses_nothing_and_reclaims_old_code():
    image = kvm.loop_guest(0x600, 4, 200_000)
    assert in_child(_replace_under_load, image) == ""


TICKS_GUEST = """
        mov dx, 0x608
        in eax, dx
        mov dx, 0x700
        out dx, eax
        mov dx, 0x609
        in eax, dx
        mov dx, 0x700
        out dx, eax
        hlt
"""


class Recorder:
    def __init__(self):
        self.values = []

    def io_read(self, offset, size):
        return 0

    def io_write(self, offset, size, value):
        self.values.append(value)


@needs_kvm
@needs_nasm
@pytest.mark.parametrize("hz", [3579545, 10 ** 9, 10 ** 12])
def test_native_ticks_are_floor_ns_times_hz_over_1e9_in_64_bits(tmp_path, hz):
    m = Machine()
    rec = Recorder()
    m.attach(0x608, 2, clock_hz=hz, name="clk", program="""
#include <pio.inc>
        ld [PIO_OFFSET]
        jeq #1, hi
        ld [PIO_TICKS]
        ret #PIO_DONE
hi:     ld [PIO_TICKS_HI]
        ret #PIO_DONE""")
    m.attach(0x700, 4, device=rec, name="rec")
    t0 = time.monotonic_ns()
    kvm.run_guest(nasm_image(TICKS_GUEST, tmp_path), m, loop="native")
    t1 = time.monotonic_ns()
    assert m._native.kinds()["clk"] == "native"
    lo, hi = rec.values
    ticks = hi << 32 | lo
    mask = (1 << 64) - 1
    # lo and hi come from two events; the high word can only have moved forward
    assert (t0 * hz // 10 ** 9 & mask) >> 32 <= hi <= (t1 * hz // 10 ** 9 & mask) >> 32
    if hi == (t0 * hz // 10 ** 9 & mask) >> 32 == (t1 * hz // 10 ** 9 & mask) >> 32:
        assert t0 * hz // 10 ** 9 & mask <= ticks <= t1 * hz // 10 ** 9 & mask


@needs_kvm
@needs_nasm
@pytest.mark.parametrize("name", ["hello", "pcscan", "post"])
def test_both_loops_give_the_same_output_and_counters(tmp_path, name):
    """These guests' accesses do not depend on time, so every counter must agree."""
    from test_kvm_helpers import pc_machine, uart_text
    seen = {}
    for loop in ("python", "native"):
        m = pc_machine()
        try:
            r = kvm.run_guest(guest(name, tmp_path), m, loop=loop)
            stats = m.stats()
            counters = stats["bindings"]
            seen[loop] = (uart_text(m), counters, stats["unmapped"], r.io_exits, r.accesses)
            if loop == "native":
                assert set(m._native.kinds().values()) == {"native"}
        finally:
            m.close()
    assert seen["python"] == seen["native"]
    assert seen["native"][1]["com1"]["handled"] > 0


@needs_kvm
@needs_nasm
@pytest.mark.parametrize("loop", ["native", "python"])
def test_cli_loop_option_and_stats_say_which_loop_ran(runner, cli, loop):
    from test_kvm_helpers import GUESTS, PC_TOML
    res = runner.invoke(cli, ["vm", str(GUESTS / "hello.asm"), "--machine", str(PC_TOML),
                              "--stats", "--loop", loop])
    assert res.exit_code == 0, res.output
    assert f"\nexit loop: {loop}" in res.output
    if loop == "native":
        assert "9 of 9 bindings' programs ran natively" in res.output


@needs_kvm
@needs_nasm
def test_without_native_code_the_default_is_python_with_one_notice(runner, cli, monkeypatch):
    from test_kvm_helpers import GUESTS, PC_TOML
    monkeypatch.setenv("BPFIO_JIT", "0")
    res = runner.invoke(cli, ["vm", str(GUESTS / "hello.asm"), "--machine", str(PC_TOML),
                              "--stats"])
    assert res.exit_code == 0
    assert res.stderr.splitlines() == ["note: native exit loop unavailable (disabled by "
                                       "BPFIO_JIT=0); using the Python loop"]
    assert "\nexit loop: python" in res.output
    res = runner.invoke(cli, ["vm", str(GUESTS / "hello.asm"), "--machine", str(PC_TOML),
                              "--loop", "native"])
    assert res.exit_code == 1
    assert "the native exit loop cannot run here: disabled by BPFIO_JIT=0" in res.stderr


# --- the Python engine over native state --------------------------------------------------

def test_the_python_engine_over_native_memory_and_locks_matches_a_plain_machine():
    """Once the native engine owns a machine (big-endian words, native locks), the Python
    engine's events (fused fast path and models) give exactly what a plain machine gives."""
    from bpfio.exec.gen import random_program
    from bpfio.kvm.native import NativeEngine, NativeLock
    from bpfio.pio.machine import FakeClock
    rng = random.Random(19)
    for case in range(40):
        words = rng.choice((1, 4, 16))
        prog = random_program(rng, profile="pio", mem_words=words)
        clocks = FakeClock(10 ** 9), FakeClock(10 ** 9)
        machines = [Machine(clock=c) for c in clocks]
        for m in machines:
            m.attach(0x100, 4, program=prog, mem_words=words, clock_hz=1193182, name="b",
                     notifiers=1, device=Recorder())
        NativeEngine(machines[1])
        b0, b1 = (m.bindings["b"] for m in machines)
        assert isinstance(b1.lock, NativeLock) and not isinstance(b0.lock, NativeLock)
        for i in range(words):
            b0.mem[i] = b1.mem[i] = rng.getrandbits(32)
        for _ in range(30):
            port, size = 0x100 + rng.randrange(4), rng.choice((1, 2, 4))
            step = rng.randrange(10 ** 6)
            for c in clocks:
                c.advance(step)
            if rng.random() < 0.5:
                got = [m.pio_in(port, size, vcpu=1) for m in machines]
            else:
                value = rng.getrandbits(8 * size)
                got = [m.pio_out(port, size, value) for m in machines]
            assert got[0] == got[1], (case, prog)
        assert list(b0.mem) == list(b1.mem) and b0.device.values == b1.device.values
        assert machines[0].stats()["bindings"] == machines[1].stats()["bindings"]
        for m in machines:
            m.close()


class Faulty:
    def io_read(self, offset, size):
        raise RuntimeError("model bug")

    def io_write(self, offset, size, value):
        raise RuntimeError("model bug")


@needs_kvm
def test_a_faulting_model_behind_a_native_program_is_contained():
    m = Machine()
    m.attach(0x608, 4, device=Faulty(), name="f",
             program="#include <pio.inc>\nld M[0]\nadd #1\nst M[0]\njset #1, out\n"
                     "ret #PIO_DONE\nout: ret #PIO_EXIT")
    r = kvm.run_guest(kvm.loop_guest(0x608, 4, 100), m, loop="native")
    s = m.stats()["bindings"]["f"]
    assert r.io_exits == 100 and s["events"] == 100 and s["exits"] == s["faults"] == 50
    assert len(m.faults()) == 50 and "model bug" in m.faults()[0].traceback
    m.close()


def _detach_under_load(image: bytes) -> str:
    m = Machine()
    b = m.attach(0x600, 4, program="#include <pio.inc>\nld M[0]\nadd #1\nst M[0]\n"
                                   "ret #PIO_DONE", name="gone")
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(r=kvm.run_guest(image, m, loop="native",
                                                                   timeout=120)))
    t.start()
    while t.is_alive() and b.mem[0] < 1000:
        time.sleep(0.0005)
    m.detach("gone")
    t.join()
    n, handled = out["r"].io_exits, b.counters.handled
    if not m._native.synchronize(5.0):
        return "the detached binding's block was never reclaimed"
    if handled + m.unmapped != n or not handled or not m.unmapped or b.mem[0] != handled:
        return f"{n} exits: {handled} handled + {m.unmapped} unmapped, mem {b.mem[0]}"
    return ""


@needs_kvm
def test_detaching_a_binding_while_vcpus_run_natively():
    assert in_child(_detach_under_load, kvm.loop_guest(0x600, 4, 100_000)) == ""


def _interrupted(loop: str) -> str:
    import _thread
    from bpfio.pio.config import load_machine
    from test_kvm_helpers import PC_TOML
    m = load_machine(PC_TOML)
    before = len(os.listdir("/proc/self/fd"))
    threading.Timer(0.5, _thread.interrupt_main).start()
    try:
        kvm.run_guest(b"\xEB\xFE", m, loop=loop, timeout=60)      # jmp $: never halts
    except KeyboardInterrupt:
        pass
    else:
        return "no KeyboardInterrupt"
    finally:
        m.close()
    after = len(os.listdir("/proc/self/fd"))
    return "" if after <= before else f"{after - before} fds leaked"


@needs_kvm
@pytest.mark.parametrize("loop", ["native", "python"])
def test_ctrl_c_stops_every_vcpu_and_releases_everything(loop):
    assert in_child(_interrupted, loop) == ""


def _attach_under_load(image: bytes) -> str:
    m = Machine()
    m.attach(0x700, 1, name="other", program="ret #0x10000")   # a native engine exists
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(r=kvm.run_guest(image, m, loop="native",
                                                                   timeout=120)))
    t.start()
    while t.is_alive() and m._native is None or (t.is_alive() and m.stats()["unmapped"] < 1000):
        time.sleep(0.0005)
    b = m.attach(0x600, 4, program="#include <pio.inc>\nld M[0]\nadd #1\nst M[0]\n"
                                   "ret #PIO_DONE", name="late")
    t.join()
    n, handled = out["r"].io_exits, b.counters.handled
    if handled + m.unmapped != n or not handled or not m.unmapped or b.mem[0] != handled:
        return f"{n} exits: {handled} handled + {m.unmapped} unmapped, mem {b.mem[0]}"
    if m._native.kinds()["late"] != "native":
        return "the late binding's program does not run natively"
    return ""


@needs_kvm
def test_attaching_a_binding_while_vcpus_run_natively():
    assert in_child(_attach_under_load, kvm.loop_guest(0x600, 4, 100_000)) == ""
