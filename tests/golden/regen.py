"""Regenerate the golden outputs by running the real reference tools.

    python tests/golden/regen.py                 # everything the installed tools allow
    python tests/golden/regen.py asm errors      # only some corpora (asm, errors, tcpdump, bpfc)

Tools: the kernel's ``bpf_asm`` built as described in README.md (path from
``$BPF_ASM``, default ``/opt/bpf_asm/bpf_asm``), ``tcpdump`` (4.99.3 / libpcap
1.10.3) and netsniff-ng ``bpfc`` (0.6.8).  A corpus whose tool is missing is
left as it is.  ``pytest --update-golden`` calls :func:`regenerate` too.

Nothing here interprets the outputs: they are stored byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ASM_DIR = HERE / "asm"
ERR_DIR = HERE / "asm_errors"
TCPDUMP_DIR = HERE / "tcpdump"
BPFC_DIR = HERE / "bpfc"

BPF_ASM = os.environ.get("BPF_ASM", "/opt/bpf_asm/bpf_asm")
LINKTYPES = {"NULL": 0, "EN10MB": 1, "PPP": 9, "RAW": 101, "IEEE802_11": 105, "LOOP": 108,
             "LINUX_SLL": 113, "IEEE802_11_RADIO": 127, "LINUX_SLL2": 276}
BPFC_FORMATS = {"C": "C", "xt_bpf": "xt_bpf", "tcpdump": "tcpdump"}
LINE_RE = re.compile(r"at line (\d+)")


def have_bpf_asm() -> bool:
    """True when the rebuilt kernel bpf_asm is runnable."""
    return os.access(BPF_ASM, os.X_OK)


def have(tool: str) -> bool:
    """True when ``tool`` is on PATH."""
    return shutil.which(tool) is not None


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a tool with stdin closed, capturing bytes."""
    return subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=60)


def regen_asm() -> int:
    """asm/X.bpf -> X.bpf_asm (default output) and X.c (-c output)."""
    n = 0
    for src in sorted(ASM_DIR.glob("*.bpf")):
        for args, suffix in (([], ".bpf_asm"), (["-c"], ".c")):
            res = run([BPF_ASM, *args, src.name], ASM_DIR)
            if res.returncode != 0 or res.stderr:
                raise SystemExit(f"{src}: bpf_asm rejected a corpus program: "
                                 f"{res.stderr.decode(errors='replace').strip()}")
            src.with_suffix(suffix).write_bytes(res.stdout)
        n += 1
    return n


def expect_record(res: subprocess.CompletedProcess) -> dict:
    """The .expect content: exit status, exact stdout/stderr, line if bpf_asm named one."""
    stderr = res.stderr.decode("utf-8", "backslashreplace")
    m = LINE_RE.search(stderr)
    return {
        "exit": res.returncode,
        "stdout": res.stdout.decode("utf-8", "backslashreplace"),
        "stderr": stderr,
        "line": int(m.group(1)) if m else None,
    }


def regen_errors() -> int:
    """asm_errors/X.bpf -> X.expect (JSON: exit, stdout, stderr, line)."""
    n = 0
    for src in sorted(ERR_DIR.glob("*.bpf")):
        res = run([BPF_ASM, src.name], ERR_DIR)
        rec = expect_record(res)
        if rec["exit"] == 0 and not rec["stderr"]:
            raise SystemExit(f"{src}: bpf_asm accepted an error-corpus program")
        src.with_suffix(".expect").write_text(json.dumps(rec, indent=1, ensure_ascii=False) + "\n")
        n += 1
    return n


def read_exprs() -> list[tuple[str, str]]:
    """(linktype, expression) pairs from tcpdump/exprs.txt, in order."""
    out = []
    for line in (TCPDUMP_DIR / "exprs.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        linktype, _, expr = line.partition("\t")
        out.append((linktype, expr))
    return out


def empty_pcap(linktype: int) -> bytes:
    """A classic pcap header (no packets): magic, v2.4, snaplen 262144."""
    return struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 0x40000, linktype)


def tcpdump_argv(linktype: str, expr: str, flag: str, tmp: Path) -> list[str]:
    """The tcpdump command for one corpus line: an empty pcap of that link type in
    ``tmp``, or ``-i DEV`` for ``IFACE:DEV`` (a live device; libpcap then uses
    the kernel's ancillary loads for vlan tests)."""
    if linktype.startswith("IFACE:"):
        source = ["-i", linktype.split(":", 1)[1]]
    else:
        pcap = Path(tmp) / f"{linktype}.pcap"
        if not pcap.exists():
            pcap.write_bytes(empty_pcap(LINKTYPES[linktype]))
        source = ["-r", str(pcap)]
    return ["tcpdump", *source, "-" + flag] + ([expr] if expr else [])


def regen_tcpdump() -> int:
    """tcpdump/NNN.{d,dd,ddd} from ``tcpdump -r empty.pcap -d/-dd/-ddd EXPR``."""
    for old in TCPDUMP_DIR.glob("[0-9][0-9][0-9].*"):
        old.unlink()
    exprs = read_exprs()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (linktype, expr) in enumerate(exprs):
            for flag in ("d", "dd", "ddd"):
                argv = tcpdump_argv(linktype, expr, flag, Path(tmp))
                res = run(argv, HERE)
                if res.returncode != 0:
                    raise SystemExit(f"tcpdump {linktype} {expr!r}: "
                                     f"{res.stderr.decode(errors='replace').strip()}")
                (TCPDUMP_DIR / f"{i:03d}.{flag}").write_bytes(res.stdout)
    return len(exprs)


def image_rows() -> list[tuple[int, int, int, int, int]]:
    """(code, jt, jf, k, pc) rows for the bpf_image table: every u8 code and a few
    wider ones with edge k values, plus every ancillary k on the ABS loads."""
    rows = []
    codes = list(range(256)) + [0x100, 0x1ff, 0xffff]
    for code in codes:
        for k in (0, 5, 0x7fffffff, 0x80000000, 0xffffffff):
            rows.append((code, 3, 200, k, 7))
    for code in (0x20, 0x28, 0x30):
        for k in [0xfffff000 + off for off in range(0, 0x44, 4)] + [0xfff00000, 0xffe00000, 0xfffff001]:
            rows.append((code, 0, 0, k, 0))
    for k in (0, 1, 0xfffffff7, 0xfffffff8, 0xffffffff):  # ja: absolute target pc + 1 + k
        rows.append((0x05, 0, 0, k, 8))
    return rows


def regen_bpf_image() -> int:
    """tcpdump/bpf_image.tsv: libpcap's own ``bpf_image()`` (what ``tcpdump -d`` prints)
    for each row of :func:`image_rows`, called through ctypes."""
    import ctypes

    class BpfInsn(ctypes.Structure):
        _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                    ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]

    lib = ctypes.CDLL("libpcap.so.0.8")
    lib.bpf_image.restype = ctypes.c_char_p
    lib.bpf_image.argtypes = [ctypes.POINTER(BpfInsn), ctypes.c_int]
    lines = ["# code\tjt\tjf\tk\tpc\tbpf_image(insn, pc) from libpcap.so.0.8 (1.10.3)\n"]
    for code, jt, jf, k, pc in image_rows():
        insn = BpfInsn(code, jt, jf, k)
        image = lib.bpf_image(ctypes.byref(insn), pc).decode("ascii")
        lines.append(f"{code}\t{jt}\t{jf}\t{k}\t{pc}\t{image}\n")
    (TCPDUMP_DIR / "bpf_image.tsv").write_text("".join(lines))
    return len(lines) - 1


def have_libpcap() -> bool:
    """True when libpcap's shared library can be loaded."""
    import ctypes
    try:
        ctypes.CDLL("libpcap.so.0.8")
    except OSError:
        return False
    return True


def bpf_asm_words(src: Path) -> list[list[int]] | None:
    """bpf_asm's program for src as [[code, jt, jf, k], ...] (from the stored .bpf_asm)."""
    text = src.with_suffix(".bpf_asm").read_text().strip().rstrip(",")
    parts = text.split(",")
    return [[int(x) for x in p.split()] for p in parts[1:]]


def regen_bpfc() -> int:
    """bpfc/X.{C,xt_bpf,tcpdump} for the asm sources bpfc accepts with bpf_asm's meaning.

    Sources bpfc rejects are listed in bpfc/REJECTED.txt; sources it accepts
    but encodes differently from bpf_asm are listed in bpfc/DIFFERENT.txt and
    get no golden output (the test assembles with bpf_asm semantics).
    """
    for old in BPFC_DIR.glob("*"):
        if old.suffix in (".C", ".xt_bpf", ".tcpdump") or old.name in ("REJECTED.txt", "DIFFERENT.txt"):
            old.unlink()
    rejected, different, n = [], [], 0
    for src in sorted(ASM_DIR.glob("*.bpf")):
        outs = {}
        for fmt in BPFC_FORMATS:
            res = run(["bpfc", "-f", fmt, "-i", str(src)], HERE)
            if res.returncode != 0:
                msg = (res.stderr or res.stdout).decode(errors="replace").strip().splitlines()
                rejected.append(f"{src.name}\t{msg[0] if msg else 'exit %d' % res.returncode}")
                break
            outs[fmt] = res.stdout
        else:
            theirs = [[int(x) for x in line.split()] for line in outs["tcpdump"].decode().splitlines()]
            ours = bpf_asm_words(src)
            if theirs != ours:
                first = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b),
                             min(len(theirs), len(ours)))
                different.append(f"{src.name}\tinsn {first}: bpfc "
                                 f"{theirs[first] if first < len(theirs) else None} != bpf_asm "
                                 f"{ours[first] if first < len(ours) else None}")
                continue
            for fmt, data in outs.items():
                (BPFC_DIR / f"{src.stem}.{fmt}").write_bytes(data)
            n += 1
    (BPFC_DIR / "REJECTED.txt").write_text("".join(r + "\n" for r in rejected))
    (BPFC_DIR / "DIFFERENT.txt").write_text("".join(r + "\n" for r in different))
    return n


def regenerate(which: tuple[str, ...] = ("asm", "errors", "tcpdump", "bpfc")) -> dict[str, int | str]:
    """Rebuild the named corpora whose tools exist; report counts or why skipped."""
    report: dict[str, int | str] = {}
    if "asm" in which:
        report["asm"] = regen_asm() if have_bpf_asm() else f"skipped: no {BPF_ASM}"
    if "errors" in which:
        report["errors"] = regen_errors() if have_bpf_asm() else f"skipped: no {BPF_ASM}"
    if "tcpdump" in which:
        report["tcpdump"] = regen_tcpdump() if have("tcpdump") else "skipped: no tcpdump"
    if "tcpdump" in which:
        report["bpf_image"] = regen_bpf_image() if have_libpcap() else "skipped: no libpcap"
    if "bpfc" in which:
        ok = have("bpfc") and (ASM_DIR / "arp.bpf_asm").exists()
        report["bpfc"] = regen_bpfc() if ok else "skipped: no bpfc or no asm outputs"
    return report


if __name__ == "__main__":
    names = tuple(sys.argv[1:]) or ("asm", "errors", "tcpdump", "bpfc")
    for name, result in regenerate(names).items():
        print(f"{name}: {result}")
