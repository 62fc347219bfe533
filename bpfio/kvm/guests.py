"""Guest images for ``bpfio.kvm``: nasm builds of examples/guests and a tiny IN loop.

``build_guest`` assembles a nasm source into a flat binary (``-f bin``) with
``-D`` defines (``MODE=16|32``, ``LOAD=addr``, per-guest knobs); ``loop_guest``
hand-encodes the 16-bit ``in``-loop guest that ``bench_exit_roundtrip`` times,
so the benchmark needs no assembler.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from bpfio.errors import KvmError


def _error(message: str) -> KvmError:
    return KvmError(message)


def guests_dir() -> Path:
    """The folder of example guests (``examples/guests`` in a source checkout)."""
    return Path(__file__).resolve().parents[2] / "examples" / "guests"


def build_guest(source, out_dir, *, defines: dict | None = None) -> Path:
    """Assemble a nasm guest source (a path or a name in ``examples/guests``) to a flat binary."""
    source = Path(source)
    if not source.suffix and not os.path.exists(source):
        source = guests_dir() / f"{source}.asm"
    if not os.path.isfile(source):       # never raises (a name too long: False)
        raise _error(f"{source}: no such guest source")
    nasm = shutil.which("nasm")
    if nasm is None:
        raise _error("nasm is not installed (apt-get install nasm) -- cannot build guests")
    flags = [f"-D{name}" if value is None else f"-D{name}={value}"
             for name, value in sorted((defines or {}).items())]
    # One image per source and defines; a hash keeps any define value (a '/', a long or
    # undecodable one) out of the file name.
    tag = hashlib.sha1("\0".join(flags).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    out = Path(out_dir) / f"{source.stem}-{tag}.bin"
    cmd = [nasm, "-f", "bin", "-w+all", "-I", str(source.parent) + os.sep, "-o", str(out),
           *flags, str(source)]
    # nasm echoes define values and source text in its messages: not always UTF-8.
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        # nasm already says "file:line: error: message", the place-first form.
        first = (proc.stderr.strip().splitlines() or ["nasm failed"])[0]
        if ": error:" not in first:
            first = f"{source}: error: nasm: {first}"
        raise _error(first)
    return out


def loop_guest(port: int, size: int, n: int) -> bytes:
    """A 16-bit guest doing ``n`` IN instructions of ``size`` bytes from ``port``, then HLT."""
    if not 1 <= n <= 0xFFFFFFFF:
        raise _error(f"loop count {n} out of range")
    ins = {1: b"\xEC", 2: b"\xED", 4: b"\x66\xED"}[size]      # in al/ax/eax, dx
    head = b"\xBA" + port.to_bytes(2, "little") + b"\x66\xB9" + n.to_bytes(4, "little")
    body = ins + b"\x66\x49"                                     # dec ecx
    back = -(len(body) + 2)
    return head + body + b"\x75" + (back & 0xFF).to_bytes(1, "little") + b"\xF4"
