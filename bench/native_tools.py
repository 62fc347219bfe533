"""Helpers for bench_native: build the C harnesses, write their inputs, build QEMU's guest.

Everything here degrades to ``(None, why)`` instead of raising: a missing
``cc``, libpcap, ``/dev/kvm`` or QEMU makes a row say so, never fails the bench.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import struct
import subprocess
from pathlib import Path

C_DIR = Path(__file__).resolve().parent / "c"


def compiler() -> str | None:
    """The C compiler the harnesses are built with (``$CC``, then ``cc``), or None."""
    cc = os.environ.get("CC", "cc")
    return shutil.which(cc)


def _build(cc: str, source: Path, out: Path, libs: list[str]) -> str | None:
    """Compile ``source`` into ``out``; return None on success, else the compiler's last line."""
    cmd = [cc, "-O2", "-o", str(out), str(source), *libs]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def libpcap_path() -> str | None:
    """The full path of the libpcap shared library this process can load, or None.

    Loaded through ctypes and looked up in ``/proc/self/maps``, so it is the
    very file the ctypes row calls (and works when only ``libpcap.so.0.8``,
    not the ``libpcap.so`` development symlink, is installed).
    """
    name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
    try:
        ctypes.CDLL(name)
    except OSError:
        return None
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "libpcap" in os.path.basename(path) and os.path.isfile(path):
                    return path
    except OSError:
        pass
    return None


def build_pcap_grid(tmp: Path) -> tuple[Path | None, str]:
    """Compile ``c/pcap_grid.c`` linked with libpcap; return (binary, how it was linked)."""
    cc = compiler()
    if cc is None:
        return None, "absent: no C compiler (cc)"
    out = tmp / "pcap_grid"
    err = _build(cc, C_DIR / "pcap_grid.c", out, ["-lpcap"])
    if err is None:
        return out, "-lpcap"
    full = libpcap_path()
    if full is None:
        return None, f"absent: libpcap not found ({err})"
    err = _build(cc, C_DIR / "pcap_grid.c", out, [full])
    if err is None:
        return out, full
    return None, f"absent: build failed ({err})"


def build_kvm_loop(tmp: Path) -> tuple[Path | None, str]:
    """Compile ``c/kvm_loop.c`` (needs <linux/kvm.h>); return (binary, why not)."""
    cc = compiler()
    if cc is None:
        return None, "absent: no C compiler (cc)"
    out = tmp / "kvm_loop"
    err = _build(cc, C_DIR / "kvm_loop.c", out, [])
    return (out, "") if err is None else (None, f"absent: build failed ({err})")


def write_programs(path: Path, programs) -> None:
    """The harness's program file: u32 count, then u32 length + struct bpf_insn each."""
    with open(path, "wb") as f:
        f.write(struct.pack("<I", len(programs)))
        for prog in programs:
            f.write(struct.pack("<I", len(prog)))
            f.write(b"".join(struct.pack("<HBBI", i.code, i.jt, i.jf, i.k) for i in prog))


def write_packets(path: Path, pkts) -> None:
    """The harness's packet file: u32 count, then u32 length + bytes each."""
    with open(path, "wb") as f:
        f.write(struct.pack("<I", len(pkts)))
        for p in pkts:
            f.write(struct.pack("<I", len(p)) + p)


def run_tool(cmd: list, timeout: float = 300) -> tuple[dict | None, str]:
    """Run a harness; parse its ``key value ...`` stdout line into floats, or say why not."""
    try:
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"absent: {exc}"
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return None, f"failed: {lines[-1] if lines else f'exit status {proc.returncode}'}"
    words = proc.stdout.split()
    return {k: float(v) for k, v in zip(words[::2], words[1::2])}, ""


# --- QEMU ------------------------------------------------------------------

#: Where QEMU's real ACPI PM timer answers port 0x608: the default ``pc``
#: machine.  Its PIIX4 PM base is set by the firmware, and SeaBIOS moves it to
#: 0x600 (its debug log says "Moving pm_base to 0x600"), so PMTMR is 0x608.
#: Checked on QEMU 7.2 / SeaBIOS 1.16.2: 0x608 reads a 24-bit counter that
#: advances; with ``-M pc,acpi=off`` it reads all ones (QEMU's unassigned-port
#: path).  The guest checks this on every run (exit status 3 otherwise).
QEMU_MACHINE = "pc"
PM_HZ = 3_579_545           # ACPI PM timer frequency
DEBUGCON_PORT = 0xE9        # the guest reports its measured ticks here


def boot_sector(chunks: int, per_chunk: int, port: int = 0x608) -> bytes:
    """A boot sector that reads ``port`` ``chunks x (per_chunk + 1)`` times, then exits QEMU.

    The inner loop is bpfio's read-storm guest (``in eax, dx; dec ecx; jnz``);
    each chunk first reads the timer once and adds ``last - first`` (24-bit) to
    a total in EDI, so the guest times its own loop on QEMU's PM-timer clock
    without wrapping (a chunk stays well under 2^24 / 3.58 MHz = 4.7 s).  It
    then writes the total (4 bytes, little-endian) to the debug console at
    0xE9 and leaves through isa-debug-exit at 0xF4: value 0 (QEMU exit status
    1) when the last chunk's reads advanced and fit in 24 bits, else 1
    (status 3: port 0x608 is not the PM timer here).
    """
    if not (1 <= chunks <= 0xFFFF and 1 <= per_chunk <= 0xFFFFFFFF):
        raise ValueError("loop counts out of range")
    code = (b"\xFA"                                      # cli
            + b"\xBA" + struct.pack("<H", port)          # mov dx, port
            + b"\x66\x31\xFF"                            # xor edi, edi
            + b"\xBD" + struct.pack("<H", chunks)        # mov bp, chunks
            # chunk:
            + b"\x66\xED\x66\x89\xC3"                    # in eax, dx; mov ebx, eax
            + b"\x66\xB9" + struct.pack("<I", per_chunk)  # mov ecx, per_chunk
            + b"\x66\xED\x66\x49\x75\xFA"                # L: in eax, dx; dec ecx; jnz L
            + b"\x66\x89\xC6\x66\x29\xD8"                # mov esi, eax; sub eax, ebx
            + b"\x66\x25\xFF\xFF\xFF\x00"                # and eax, 0xffffff
            + b"\x66\x01\xC7\x4D\x75\xDD"                # add edi, eax; dec bp; jnz chunk
            + b"\xBA" + struct.pack("<H", DEBUGCON_PORT)  # mov dx, 0xe9
            + b"\x66\x89\xF8\xB9\x04\x00"                # mov eax, edi; mov cx, 4
            + b"\xEE\x66\xC1\xE8\x08\xE2\xF9"            # P: out dx, al; shr eax, 8; loop P
            + b"\x66\x39\xDE\x74\x0D"                    # cmp esi, ebx; je bad
            + b"\x66\xF7\xC6\x00\x00\x00\xFF\x75\x04"    # test esi, 0xff000000; jnz bad
            + b"\xB0\x00\xEB\x02"                        # mov al, 0; jmp out
            + b"\xB0\x01"                                # bad: mov al, 1
            + b"\xE6\xF4"                                # out: out 0xf4, al
            + b"\xF4\xEB\xFD")                           # hlt; jmp $-1
    return code + bytes(510 - len(code)) + b"\x55\xAA"


def qemu_command(exe: str, disk: Path, debug_log: Path) -> list[str]:
    """The QEMU command line for one read-storm run."""
    return [exe, "-enable-kvm", "-cpu", "host", "-M", QEMU_MACHINE, "-m", "16",
            "-display", "none", "-nodefaults", "-no-reboot", "-boot", "menu=off",
            "-chardev", f"file,id=bench,path={debug_log}",
            "-device", f"isa-debugcon,iobase={DEBUGCON_PORT:#x},chardev=bench",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-drive", f"file={disk},format=raw,if=ide"]
