"""bpfio.kvm: the VMM itself -- entry modes, the PIO exit loop, string I/O,
fatal exits with clear messages, timeouts and fd teardown.

These tests drive small guests against a recording port handler, so they
check the VMM without depending on any device model; the guests against
the real pc machine are in test_kvm_guests.py.  They skip cleanly without
a usable /dev/kvm (and without nasm for the nasm-built guests).
"""

from __future__ import annotations

import os
import threading

import pytest

from bpfio import kvm
from bpfio.kvm import abi as K
from test_kvm_helpers import nasm_image, needs_kvm, needs_nasm

pytestmark = [needs_kvm, pytest.mark.usefixtures("kvm_loop")]


class Recorder:
    """A port handler that logs every access and answers INs from a table."""

    def __init__(self, answers=None):
        self.log = []
        self.answers = answers or {}
        self.lock = threading.Lock()

    def pio_in(self, port, size, vcpu=0):
        with self.lock:
            self.log.append(("in", port, size, vcpu))
            value = self.answers.get(port, 0xFFFFFFFF)
            return value(len(self.log)) if callable(value) else value

    def pio_out(self, port, size, value, vcpu=0):
        with self.lock:
            self.log.append(("out", port, size, value, vcpu))


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# --- the ABI mirror ----------------------------------------------------------

def test_ioctl_numbers_match_the_kernel_headers():
    # Values of the _IO/_IOR/_IOW macros in include/uapi/linux/kvm.h on x86-64.
    assert K.KVM_RUN == 0xAE80
    assert K.KVM_CREATE_VCPU == 0xAE41
    assert K.KVM_SET_USER_MEMORY_REGION == 0x4020AE46
    assert K.KVM_GET_REGS == 0x8090AE81
    assert K.KVM_SET_SREGS == 0x4138AE84
    assert K.KVM_IOEVENTFD == 0x4040AE79
    assert K.KVM_REGISTER_COALESCED_MMIO == 0x4010AE67
    assert K.RING_MAX == 170


# --- the exit loop -------------------------------------------------------------

def test_loop_guest_every_in_reaches_the_handler_once():
    rec = Recorder()
    result = kvm.run_guest(kvm.loop_guest(0x608, 4, 500), rec)
    assert rec.log == [("in", 0x608, 4, 0)] * 500
    assert result.io_exits == 500
    assert result.vcpus[0].stop == "hlt"


@needs_nasm
@pytest.mark.parametrize("mode", ["real", "protected"])
def test_in_values_reach_the_guest_and_out_values_the_handler(tmp_path, mode):
    # The guest reads a byte, a word and a dword and echoes each one back
    # (plus a derived value) to another port: what the handler returned must
    # be what the guest computed with.
    src = """
        mov dx, 0x500
        in al, dx
        add al, 1
        mov dx, 0x501
        out dx, al
        mov dx, 0x502
        in ax, dx
        xor ax, 0xffff
        mov dx, 0x503
        out dx, ax
        mov dx, 0x504
        in eax, dx
        bswap eax
        mov dx, 0x505
        out dx, eax
        hlt
    """
    rec = Recorder({0x500: 0x41, 0x502: 0x1234, 0x504: 0xDEADBEEF})
    kvm.run_guest(nasm_image(src, tmp_path, mode), rec, mode=mode)
    outs = [e for e in rec.log if e[0] == "out"]
    assert outs == [("out", 0x501, 1, 0x42, 0), ("out", 0x503, 2, 0x1234 ^ 0xFFFF, 0),
                    ("out", 0x505, 4, 0xEFBEADDE, 0)]


@needs_nasm
def test_in_result_is_masked_to_the_access_size(tmp_path):
    src = """
        mov dx, 0x500
        mov eax, 0x55555555
        in al, dx
        mov dx, 0x501
        out dx, eax
        hlt
    """
    rec = Recorder({0x500: 0x12345678})
    kvm.run_guest(nasm_image(src, tmp_path), rec)
    assert rec.log[-1] == ("out", 0x501, 4, 0x55555578, 0)


@needs_nasm
def test_string_io_count_greater_than_one_runs_every_element_in_order(tmp_path):
    # rep insw fills a buffer from successive reads; rep outsw writes it back
    # to another port: the values come out in read order.
    src = """
        cld
        mov edi, buf
        mov ecx, 6
        mov dx, 0x500
        a32 rep insw
        mov esi, buf
        mov ecx, 6
        mov dx, 0x502
        a32 rep outsw
        hlt
    buf: times 6 dw 0
    """
    counter = iter(range(0x100, 0x200))
    rec = Recorder({0x500: lambda n: next(counter)})
    result = kvm.run_guest(nasm_image(src, tmp_path), rec)
    outs = [e[3] for e in rec.log if e[0] == "out"]
    assert outs == list(range(0x100, 0x106))
    assert [e[:3] for e in rec.log if e[0] == "in"] == [("in", 0x500, 2)] * 6
    assert result.accesses == 12
    assert result.io_exits < 12     # KVM batched at least one of the string ops
    assert result.vcpus[0].string_exits >= 1


@needs_nasm
def test_string_io_prefers_pio_ins_and_pio_outs_when_the_handler_has_them(tmp_path):
    class Batch(Recorder):
        def pio_ins(self, port, size, count, vcpu=0):
            self.log.append(("ins", port, size, count))
            return list(range(1, count + 1))

        def pio_outs(self, port, size, values, vcpu=0):
            self.log.append(("outs", port, size, list(values)))

    src = """
        cld
        mov edi, buf
        mov ecx, 4
        mov dx, 0x500
        a32 rep insb
        mov esi, buf
        mov ecx, 4
        mov dx, 0x501
        a32 rep outsb
        hlt
    buf: times 4 db 0
    """
    rec = Batch()
    kvm.run_guest(nasm_image(src, tmp_path), rec)
    ins = [e for e in rec.log if e[0] == "ins"]
    outs = [v for e in rec.log if e[0] == "outs" for v in e[3]]
    outs += [e[3] for e in rec.log if e[0] == "out"]
    assert ins and sum(e[3] for e in ins) + sum(1 for e in rec.log if e[0] == "in") == 4
    assert sorted(outs) == [1, 2, 3, 4] or outs == [1, 2, 3, 4]


@needs_nasm
def test_protected_mode_entry_is_flat_32_bit(tmp_path):
    # In 32-bit mode a 32-bit immediate move is one instruction and the
    # segments are flat: write a dword through a high linear address alias.
    src = """
        mov eax, 0x11223344
        mov [0x180000], eax
        mov ebx, [0x180000]
        mov eax, cr0
        mov dx, 0x500
        out dx, eax
        mov eax, ebx
        out dx, eax
        mov ax, cs
        out dx, eax
        hlt
    """
    rec = Recorder()
    kvm.run_guest(nasm_image(src, tmp_path, "protected"), rec, mode="protected")
    cr0, value, cs = (e[3] for e in rec.log)
    assert cr0 & 1 == 1
    assert value == 0x11223344
    assert cs & 0xFFFF == 0x08


def test_entry_registers_give_each_vcpu_its_index_and_the_count():
    # mov dx,0x500; mov eax,ebx; out dx,eax; mov eax,ecx; out dx,eax; hlt (16-bit code)
    code = bytes.fromhex("ba0005" "6689d8" "66ef" "6689c8" "66ef" "f4")
    rec = Recorder()
    result = kvm.run_guest(code, rec, vcpus=3)
    got = sorted((e[4], e[3]) for e in rec.log)
    assert got == [(0, 0), (0, 3), (1, 1), (1, 3), (2, 2), (2, 3)]
    assert [v.stop for v in result.vcpus] == ["hlt"] * 3


# --- fatal exits ----------------------------------------------------------------

@needs_nasm
def test_mmio_is_reported_as_unsupported(tmp_path):
    src = "mov eax, 7\nmov [0x300000], eax\nhlt"
    with pytest.raises(kvm.KvmError) as err:
        kvm.run_guest(nasm_image(src, tmp_path, "protected"), Recorder(), mode="protected")
    msg = str(err.value)
    assert "vcpu 0: KVM_EXIT_MMIO: 4-byte write of 0x300000" in msg
    assert "not supported" in msg and "rip 0x" in msg
    assert err.value.reason == "mmio"


@needs_nasm
def test_triple_fault_is_a_shutdown(tmp_path):
    # #UD with an empty IDT: #GP, then #DF, then the triple fault.
    src = "lidt [zero]\nud2\nhlt\nzero: dq 0"
    with pytest.raises(kvm.KvmError) as err:
        kvm.run_guest(nasm_image(src, tmp_path, "protected"), Recorder(), mode="protected")
    assert err.value.reason == "shutdown"
    assert str(err.value) == ("vcpu 0: KVM_EXIT_SHUTDOWN: the guest triple-faulted "
                              f"(or asked for a reset) at rip {err.value.rip:#x}")
    assert 0x1000 <= err.value.rip < 0x1010


@needs_nasm
def test_an_undeliverable_software_interrupt_is_reported_with_its_reason(tmp_path):
    # int3 through an empty IDT: KVM reports it as INTERNAL_ERROR (emulation)
    # on some hosts and as a triple fault on others; either way one clear line.
    src = "lidt [zero]\nint3\nhlt\nzero: dq 0"
    with pytest.raises(kvm.KvmError) as err:
        kvm.run_guest(nasm_image(src, tmp_path, "protected"), Recorder(), mode="protected")
    assert err.value.reason in ("internal_error", "shutdown")
    assert str(err.value).startswith("vcpu 0: KVM_EXIT_")
    assert "\n" not in str(err.value)


@needs_nasm
def test_executing_outside_ram_is_an_internal_error_or_mmio(tmp_path):
    # Fetching code from unbacked memory: KVM cannot emulate it.
    src = "jmp 0x08:0x300000"
    with pytest.raises(kvm.KvmError) as err:
        kvm.run_guest(nasm_image(src, tmp_path, "protected"), Recorder(), mode="protected")
    assert err.value.reason in ("internal_error", "mmio", "shutdown")
    assert str(err.value).startswith("vcpu 0: KVM_EXIT_")


def test_an_error_in_the_port_handler_stops_the_vm_and_propagates():
    class Boom(Recorder):
        def pio_in(self, port, size, vcpu=0):
            raise RuntimeError("handler exploded")

    with pytest.raises(RuntimeError, match="handler exploded"):
        kvm.run_guest(kvm.loop_guest(0x500, 1, 10), Boom())


def test_a_guest_that_never_halts_times_out_promptly():
    spin = b"\xEB\xFE"                      # jmp $ : no exits at all
    before = open_fds()
    with pytest.raises(kvm.KvmError, match=r"did not halt within 0\.3 s") as err:
        kvm.run_guest(spin, Recorder(), timeout=0.3, vcpus=2)
    assert err.value.reason == "timeout"
    assert open_fds() == before


def test_bad_arguments_are_kvm_errors():
    with pytest.raises(kvm.KvmError, match="vcpus must be 1..8"):
        kvm.Vm(vcpus=0)
    with pytest.raises(kvm.KvmError, match="unknown mode 'long'"):
        kvm.run_guest(b"\xF4", mode="long")
    with pytest.raises(kvm.KvmError, match="does not fit"):
        kvm.run_guest(b"\x90" * 0x2000, mem_size=0x20000, entry=0x1F000)
    with pytest.raises(kvm.KvmError, match="overlaps the GDT"):
        kvm.run_guest(b"\xF4", entry=0x500)


# --- teardown -------------------------------------------------------------------

def test_every_fd_is_closed_after_runs_and_errors():
    before = open_fds()
    for _ in range(3):
        kvm.run_guest(kvm.loop_guest(0x500, 1, 5), Recorder(), vcpus=2)
    with pytest.raises(RuntimeError):
        class Boom(Recorder):
            def pio_in(self, port, size, vcpu=0):
                raise RuntimeError("x")
        kvm.run_guest(kvm.loop_guest(0x500, 1, 5), Boom())
    vm = kvm.Vm(vcpus=2)
    vm.close()
    vm.close()                               # idempotent
    assert open_fds() == before


def test_bench_exit_roundtrip_returns_a_positive_time_per_exit():
    ns = kvm.bench_exit_roundtrip(2000)
    assert 10 < ns < 10_000_000


@needs_nasm
def test_an_error_on_one_vcpu_stops_a_spinning_sibling(tmp_path):
    # vCPU 0 writes to MMIO (fatal); vCPU 1 spins in the guest without exits.
    src = """
        test ebx, ebx
        jnz spin
        mov eax, 1
        mov [0x300000], eax
    spin:
        jmp spin
    """
    import time as _time
    t0 = _time.perf_counter()
    with pytest.raises(kvm.KvmError, match="KVM_EXIT_MMIO"):
        kvm.run_guest(nasm_image(src, tmp_path, "protected"), Recorder(), mode="protected",
                      vcpus=2, timeout=30)
    assert _time.perf_counter() - t0 < 10          # not the 30 s timeout


class FakeVcpu:
    """Just enough of a Vcpu for _fatal_exit: a kvm_run page we fill by hand."""

    def __init__(self):
        self.index = 1
        self.run_map = bytearray(4096)
        self.stats = kvm.VcpuStats(1)

    def rip(self):
        return 0x1234


@pytest.mark.parametrize("reason, fill, message", [
    (K.KVM_EXIT_FAIL_ENTRY, lambda b: K.RUN_FAIL_ENTRY.pack_into(b, 32, 0x80000021, 3),
     "vcpu 1: KVM_EXIT_FAIL_ENTRY: VM entry failed, hardware reason 0x80000021 on host cpu 3"
     " at rip 0x1234"),
    (K.KVM_EXIT_INTERNAL_ERROR, lambda b: K.RUN_INTERNAL.pack_into(b, 32, 1, 0),
     "vcpu 1: KVM_EXIT_INTERNAL_ERROR: EMULATION (instruction KVM cannot emulate) at rip 0x1234"),
    (K.KVM_EXIT_MMIO, lambda b: K.RUN_MMIO.pack_into(b, 32, 0xFEE00000, b"", 4, 0),
     "vcpu 1: KVM_EXIT_MMIO: 4-byte read of 0xfee00000 -- MMIO is not supported "
     "(only port I/O goes through bpfio) at rip 0x1234"),
    (4, lambda b: None, "vcpu 1: unexpected exit KVM_EXIT_DEBUG at rip 0x1234"),
])
def test_fatal_exit_messages_decode_the_kvm_run_union(reason, fill, message):
    # FAIL_ENTRY cannot be provoked on every host (SVM accepts most bad
    # states), so the decoding of each union member is checked directly.
    vcpu = FakeVcpu()
    fill(vcpu.run_map)
    with kvm.Vm() as vm:
        with pytest.raises(kvm.KvmError) as err:
            vm._fatal_exit(vcpu, reason)
    assert str(err.value) == message
    assert vcpu.stats.stop == K.EXIT_REASONS[reason].lower()
