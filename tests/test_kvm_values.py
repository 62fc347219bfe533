"""Issue 17 (values): `bpfio vm` ranges, and no vCPU thread outlives Vm.run (the mmap race).

The CLI cases need no /dev/kvm (click refuses them first); the VMM cases skip cleanly
without a usable /dev/kvm.
"""

from __future__ import annotations

import os
import shutil
import threading

import pytest
from click.testing import CliRunner

from bpfio import kvm
from bpfio.cli import main
from bpfio.kvm.guests import loop_guest
from devtools import EXAMPLES
from test_kvm_helpers import needs_kvm

GUEST = str(EXAMPLES / "guests" / "hello.asm")
PC = str(EXAMPLES / "pc.toml")


@pytest.mark.parametrize("args,line", [
    (["--entry", "-1"], "Error: Invalid value for '--entry': '-1' is negative "
                        "(a guest-physical address is >= 0)"),
    (["--load", "-1"], "Error: Invalid value for '--load': '-1' is negative "
                       "(a guest-physical address is >= 0)"),
    (["--load", "-4096"], "Error: Invalid value for '--load': '-4096' is negative "
                          "(a guest-physical address is >= 0)"),
    (["--timeout", "-1"], "Error: Invalid value for '--timeout': '-1.0' is not a number of "
                          "seconds >= 0"),
    (["--timeout", "nan"], "Error: Invalid value for '--timeout': 'nan' is not a number of "
                           "seconds >= 0"),
    (["--timeout", "inf"], "Error: Invalid value for '--timeout': 'inf' is not a number of "
                           "seconds >= 0"),
])
def test_vm_option_ranges_are_usage_errors(args, line):
    result = CliRunner().invoke(main, ["vm", GUEST, "--machine", PC, *args])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == line


@needs_kvm
@pytest.mark.parametrize("args,line", [
    (["--entry", "0x300000", "--load", "0x1000"],
     f"{GUEST}: error: entry 0x300000 is not an address in RAM (0..0x1fffff)"),
    (["--load", "0x1fff00"],
     f"{GUEST}: error: guest image at 0x1fff00..0x200133 does not fit in 0x200000 bytes of RAM"),
])
def test_vm_addresses_outside_ram_are_placed_errors(args, line):
    result = CliRunner().invoke(main, ["vm", GUEST, "--machine", PC, *args])
    assert result.exit_code == 1
    assert result.output == line + "\n"


@pytest.mark.skipif(shutil.which("nasm") is None, reason="nasm is not installed")
@pytest.mark.parametrize("value,line", [
    # Found by the fuzz harness: nasm echoes a define's bytes, not always UTF-8 (an
    # internal error); the define values were also part of the image's file name.
    (b"\xc3zz", "g.asm:2: error: symbol `\ufffdzz' not defined"),
    (b"/../" + b"9" * 300, "g.asm:2: error: expression syntax error"),
])
def test_guest_defines_of_any_bytes_give_nasm_s_line(tmp_path, value, line):
    source = tmp_path / "g.asm"
    source.write_text("bits 16\nmov ax, BAD\nhlt\n")
    with pytest.raises(kvm.KvmError) as err:
        kvm.build_guest(source, tmp_path, defines={"BAD": os.fsdecode(value)})
    assert str(err.value).replace(str(tmp_path) + os.sep, "").startswith(line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.asm"]


@needs_kvm
@pytest.mark.parametrize("timeout", [float("nan"), -1.0, float("inf"), True])
def test_vm_run_refuses_a_timeout_that_is_not_seconds(timeout):
    with kvm.Vm() as vm:
        vm.load(loop_guest(0x80, 1, 1))
        with pytest.raises(kvm.KvmError, match="is not a number of seconds >= 0"):
            vm.run(timeout=timeout)


@needs_kvm
def test_no_vcpu_thread_outlives_run_when_the_wait_fails(monkeypatch):
    """The wait loop failing (as join(nan) once did) must stop and join the vCPUs first.

    Before the fix run() returned with the vCPU thread still in its exit loop, and close()
    unmapped its kvm_run under it ("mmap closed or invalid" from the thread).
    """
    seen = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    real_join = threading.Thread.join

    def failing_join(self, timeout=None):
        if threading.current_thread() is threading.main_thread() and timeout is not None:
            raise ValueError("the wait failed")
        return real_join(self, timeout)

    with kvm.Vm() as vm:
        vm.load(loop_guest(0x80, 1, 0xFFFFFFFF))     # spins on port exits for minutes
        monkeypatch.setattr(threading.Thread, "join", failing_join)
        with pytest.raises(ValueError, match="the wait failed"):
            vm.run(timeout=30)
        monkeypatch.setattr(threading.Thread, "join", real_join)
        threads = list(vm._threads)
        assert threads and not any(t.is_alive() for t in threads)
    assert seen == []
