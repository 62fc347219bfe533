"""Program generators and real-program corpora for the kernel differential tests.

* :func:`random_program` -- 1 to 40 instructions, biased to be valid so that
  roughly half are accepted, with every kernel rule hit regularly.
* :func:`mutate` -- one or two small edits of a program (field tweaks,
  boundary values, inserted/deleted instructions).
* :func:`tcpdump_programs` / :func:`libseccomp_programs` -- real filters
  from the installed tcpdump and libseccomp (empty when missing).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import tempfile

from bpfio.insn import Insn, Program
from bpfio.isa import (ANCILLARY, KERNEL_CODES, OPCODES, SECCOMP_CODES, SKF_AD_OFF,
                       SKF_LL_OFF, SKF_NET_OFF)

VALID = sorted(KERNEL_CODES)
SECCOMP = sorted(SECCOMP_CODES)
BOUNDARY_K = (0, 1, 2, 3, 4, 7, 8, 12, 14, 15, 16, 17, 31, 32, 33, 60, 61, 62, 63, 64, 65,
              255, 256, 0x7fff, 0x8000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff,
              SKF_NET_OFF, SKF_LL_OFF, SKF_AD_OFF - 1)
ANC_K = tuple(a.k for a in ANCILLARY) + tuple(SKF_AD_OFF + o for o in (1, 2, 3, 5, 64, 68, 0xffc))


def _k(rng, code: int, seccomp: bool, clean: bool = False) -> int:
    info = OPCODES.get(code)
    r = rng.random() * (0.8 if clean else 1.0)
    if info is not None:
        if info.mode == 0x60 or info.cls in (2, 3):          # M[k]
            return rng.randrange(16) if r < 0.93 else rng.choice((16, 17, 31, 255, 0xffffffff))
        if info.cls == 4 and info.op in (0x60, 0x70) and info.src == 0:   # shifts
            return rng.randrange(32) if r < 0.9 else rng.choice((32, 33, 64, 0xffffffff))
        if info.cls == 4 and info.op in (0x30, 0x90) and info.src == 0:   # div/mod
            return rng.randrange(1, 100) if r < 0.92 else 0
        if info.mode in (0x20, 0x40, 0xa0):                   # packet loads
            if seccomp and (clean or r < 0.85):
                return rng.randrange(16) * 4
            if r < 0.5:
                return rng.randrange(64)
            if clean:
                return rng.choice([a.k for a in ANCILLARY])
            if r < 0.8:
                return rng.choice(ANC_K)
            return rng.choice(BOUNDARY_K)
    if r < 0.5:
        return rng.randrange(64)
    if r < 0.8:
        return rng.choice(BOUNDARY_K)
    return rng.getrandbits(32)


def _code(rng, seccomp: bool, clean: bool = False) -> int:
    if clean:
        return rng.choice(SECCOMP if seccomp else VALID)
    r = rng.random()
    if r < 0.01:
        return rng.getrandbits(16)
    if r < 0.02:
        return rng.randrange(0x100)
    if r < 0.025:
        return 0x0e                                           # ret x
    return rng.choice(SECCOMP if seccomp and r < 0.97 else VALID)


def random_program(rng, *, seccomp: bool = False, max_len: int = 40) -> Program:
    """A random program, biased to valid (about half pass the kernel)."""
    n = rng.randint(1, max_len)
    clean = rng.random() < 0.5        # no deliberate faults (may still fail)
    stored: list[int] = []
    insns = []
    for pc in range(n):
        code = _code(rng, seccomp, clean)
        if pc == n - 1 and (clean or rng.random() < 0.9):
            code = rng.choice((0x06, 0x16))
        info = OPCODES.get(code)
        k = _k(rng, code, seccomp, clean)
        jt = jf = 0
        left = n - pc - 2                                     # largest in-range offset
        if info is not None and info.is_cond_jump and left < 0 and clean:
            code, info = 0x16, OPCODES[0x16]
        if info is not None and info.is_cond_jump:
            if left >= 0 and (clean or rng.random() < 0.97):
                jt, jf = rng.randint(0, left), rng.randint(0, left)
            else:
                jt, jf = rng.randrange(256), rng.randrange(256)
        elif code == 0x05:
            if left < 0 and clean:
                code, k = 0x06, 0
            else:
                k = (rng.randint(0, left) if left >= 0 and (clean or rng.random() < 0.95)
                     else _k(rng, -1, seccomp))
        elif rng.random() < 0.05:
            jt, jf = rng.randrange(256), rng.randrange(256)   # ignored fields
        if info is not None and info.mode == 0x60 and stored and (clean or rng.random() < 0.8):
            k = rng.choice(stored)                            # mostly read what was stored
        if info is not None and info.cls in (2, 3) and k < 16:
            stored.append(k)
        insns.append(Insn(code & 0xffff, jt, jf, k & 0xffffffff))
    return Program(insns)


def mutate(rng, prog: Program, *, seccomp: bool = False) -> Program:
    """One or two small edits of ``prog``."""
    insns = list(prog)
    for _ in range(rng.randint(1, 2)):
        if not insns:
            insns.append(Insn(0x06, 0, 0, 0))
            continue
        pc = rng.randrange(len(insns))
        code, jt, jf, k = insns[pc]
        r = rng.random()
        if r < 0.25:
            code = _code(rng, seccomp)
        elif r < 0.45:
            k = _k(rng, code, seccomp) if rng.random() < 0.5 else k ^ (1 << rng.randrange(32))
        elif r < 0.6:
            jt = (jt + rng.choice((-1, 1, 2, 255))) & 0xff
        elif r < 0.7:
            jf = (jf + rng.choice((-1, 1, 2, 255))) & 0xff
        elif r < 0.8:
            k = (k + rng.choice((-1, 1, 16, -16))) & 0xffffffff
        elif r < 0.9 and len(insns) > 1:
            del insns[pc]
            continue
        else:
            insns.insert(pc, Insn(_code(rng, seccomp), 0, 0, _k(rng, 0, seccomp)))
            continue
        insns[pc] = Insn(code & 0xffff, jt, jf, k & 0xffffffff)
    return Program(insns)


TCPDUMP_EXPRESSIONS = (
    "ip", "ip6", "arp", "tcp", "udp", "icmp", "tcp port 80", "ip and tcp port 80",
    "udp port 53 or udp port 5353", "host 10.0.0.1", "net 192.168.0.0/16",
    "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0", "ip[0] - ip[1] = 0", "len > 100",
    "greater 1000", "less 64", "ether broadcast", "ether multicast", "vlan 10",
    "vlan and tcp", "mpls", "ip6 protochain 6", "ip proto 47", "portrange 1000-2000",
    "tcp dst port 22 and not src net 10.0.0.0/8", "icmp[icmptype] = icmp-echo",
    "ip[2:2] > 576", "ether host 00:11:22:33:44:55", "not arp and not ip6",
    "udp and ip[6:2] & 0x1fff = 0", "ip6 and tcp port 443", "pppoes and ip",
    "geneve", "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420", "src portrange 1-1023",
    "ip multicast", "ip broadcast", "dst port 123 and udp", "(tcp or udp) and port 7",
)


def tcpdump_programs() -> list[tuple[str, Program]]:
    """Compile each expression with ``tcpdump -ddd -y EN10MB``; [] without tcpdump."""
    exe = shutil.which("tcpdump")
    if exe is None:
        return []
    out = []
    for expr in TCPDUMP_EXPRESSIONS:
        proc = subprocess.run([exe, "-ddd", "-y", "EN10MB", expr], capture_output=True,
                              text=True, timeout=30)
        if proc.returncode != 0:
            continue
        lines = proc.stdout.split("\n")
        count = int(lines[0])
        insns = [Insn(*map(int, line.split())) for line in lines[1:1 + count]]
        out.append((expr, Program(insns)))
    return out


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


# (default action, [(action, syscall, [(arg, op, a, b)...])...], extra arches)
SCMP_ACT_ALLOW, SCMP_ACT_KILL, SCMP_ACT_TRAP = 0x7fff0000, 0x00000000, 0x00030000
SCMP_ACT_LOG = 0x7ffc0000
SCMP_ACT_ERRNO = lambda e: 0x00050000 | e          # noqa: E731
SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ = 1, 2, 3, 4
SCMP_CMP_GE, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ = 5, 6, 7
AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, AUDIT_ARCH_X32 = 0x40000003, 0xc000003e, 0x4000003e
SECCOMP_POLICIES = (
    (SCMP_ACT_ALLOW, [(SCMP_ACT_ERRNO(1), "ptrace", [])], ()),
    (SCMP_ACT_KILL, [(SCMP_ACT_ALLOW, n, []) for n in
                     ("read", "write", "exit", "exit_group", "brk", "mmap", "munmap",
                      "rt_sigreturn", "futex", "close", "openat", "fstat")], ()),
    (SCMP_ACT_ALLOW, [(SCMP_ACT_ERRNO(13), "openat", [(2, SCMP_CMP_MASKED_EQ, 3, 1)]),
                      (SCMP_ACT_TRAP, "socket", [(0, SCMP_CMP_EQ, 17, 0)]),
                      (SCMP_ACT_LOG, "kill", [(1, SCMP_CMP_GT, 9, 0)])], ()),
    (SCMP_ACT_ALLOW, [(SCMP_ACT_ERRNO(1), "ioctl", [(1, SCMP_CMP_NE, 0x5401, 0)]),
                      (SCMP_ACT_ERRNO(22), "mprotect", [(2, SCMP_CMP_GE, 7, 0)]),
                      (SCMP_ACT_KILL, "clone", [(0, SCMP_CMP_LT, 0x10000, 0)])],
     (AUDIT_ARCH_I386, AUDIT_ARCH_X32)),
    (SCMP_ACT_ERRNO(38), [(SCMP_ACT_ALLOW, n, []) for n in
                          ("read", "write", "readv", "writev", "pread64", "pwrite64",
                           "lseek", "getpid", "gettid", "clock_gettime", "nanosleep",
                           "exit_group", "sched_yield", "getrandom")]
     + [(SCMP_ACT_ALLOW, "fcntl", [(1, SCMP_CMP_LE, 4, 0)])], (AUDIT_ARCH_I386,)),
)


def libseccomp_programs() -> list[tuple[str, Program]]:
    """Filters exported by the installed libseccomp; [] when it is missing."""
    path = ctypes.util.find_library("seccomp")
    if path is None:
        return []
    lib = ctypes.CDLL(path)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    out = []
    for i, (default, rules, arches) in enumerate(SECCOMP_POLICIES):
        ctx = lib.seccomp_init(default)
        try:
            for arch in arches:
                lib.seccomp_arch_add(ctx, arch)
            for action, name, cmps in rules:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                arr = (_ArgCmp * max(len(cmps), 1))(*[_ArgCmp(*c) for c in cmps])
                if lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), arr) != 0:
                    raise OSError(f"seccomp_rule_add_array failed for {name}")
            with tempfile.TemporaryFile() as fh:
                if lib.seccomp_export_bpf(ctx, fh.fileno()) != 0:
                    raise OSError("seccomp_export_bpf failed")
                fh.seek(0)
                out.append((f"libseccomp policy {i}", Program.from_bytes(fh.read())))
        finally:
            lib.seccomp_release(ctx)
    return out


def kernel_oracles() -> dict:
    """Import the oracles lazily (they need Linux)."""
    from bpfio.exec import kernel
    return {"socket": kernel.socket_attach_errnos, "seccomp": kernel.seccomp_check_errnos}


__all__ = ["random_program", "mutate", "tcpdump_programs", "libseccomp_programs",
           "kernel_oracles", "os"]
