"""Seccomp: ``struct seccomp_data``, filter return actions and syscall names.

``struct seccomp_data`` (``<linux/seccomp.h>``) is 64 bytes of host-order
fields: ``nr`` (int), ``arch`` (u32), ``instruction_pointer`` (u64) and
``args[6]`` (u64).  A seccomp filter may only read it with ``ld [k]``, k a
multiple of 4 below 64 (``seccomp_check_filter``); on x86-64 the low half of
``args[i]`` is at 16 + 8i and the high half at 20 + 8i.

The return value is decoded as ``__seccomp_filter`` does: the action is
``ret & SECCOMP_RET_ACTION_FULL`` and the data ``ret & SECCOMP_RET_DATA``;
an action the kernel does not know kills the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import struct
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from bpfio.errors import BpfError, LimitError, UsageError
from bpfio.limits import parse_int
from bpfio.values import U32, U64, check_int, check_uint

AUDIT_ARCH_X86_64 = 0xc000003e
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_AARCH64 = 0xc00000b7

SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_KILL_THREAD = 0x00000000
SECCOMP_RET_TRAP = 0x00030000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7fc00000
SECCOMP_RET_TRACE = 0x7ff00000
SECCOMP_RET_LOG = 0x7ffc0000
SECCOMP_RET_ALLOW = 0x7fff0000
SECCOMP_RET_ACTION_FULL = 0xffff0000
SECCOMP_RET_DATA = 0x0000ffff
MAX_ERRNO = 4095

ACTIONS = {
    SECCOMP_RET_KILL_PROCESS: "KILL_PROCESS",
    SECCOMP_RET_KILL_THREAD: "KILL_THREAD",
    SECCOMP_RET_TRAP: "TRAP",
    SECCOMP_RET_ERRNO: "ERRNO",
    SECCOMP_RET_USER_NOTIF: "USER_NOTIF",
    SECCOMP_RET_TRACE: "TRACE",
    SECCOMP_RET_LOG: "LOG",
    SECCOMP_RET_ALLOW: "ALLOW",
}
ARCHES = {"x86_64": AUDIT_ARCH_X86_64, "i386": AUDIT_ARCH_I386, "aarch64": AUDIT_ARCH_AARCH64}

# struct seccomp_data in x86-64 byte order (little-endian), chosen once.
SECCOMP_DATA = struct.Struct("<iIQ6Q")
SECCOMP_DATA_LEN = SECCOMP_DATA.size  # 64


class SeccompData(NamedTuple):
    """The input of a seccomp filter: one system call as the kernel describes it."""

    nr: int
    arch: int = AUDIT_ARCH_X86_64
    instruction_pointer: int = 0
    args: tuple = (0, 0, 0, 0, 0, 0)

    def pack(self) -> bytes:
        """Return the 64-byte ``struct seccomp_data`` (UsageError for a field out of its width)."""
        # nr is the kernel's int: a negative number or its u32 spelling; nothing wider.
        nr = check_int("seccomp_data: nr", self.nr, -0x80000000, U32)
        nr = nr - (1 << 32) if nr > 0x7fffffff else nr
        if not isinstance(self.args, (tuple, list)) or len(self.args) > 6:
            raise UsageError(f"seccomp_data: args must be a tuple of at most 6 integers, "
                             f"not {self.args!r}")
        args = tuple(check_uint(f"seccomp_data: args[{i}]", a, U64)
                     for i, a in enumerate(self.args)) + (0,) * (6 - len(self.args))
        return SECCOMP_DATA.pack(nr, check_uint("seccomp_data: arch", self.arch, U32),
                                 check_uint("seccomp_data: instruction_pointer",
                                            self.instruction_pointer, U64), *args)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "SeccompData":
        """Decode a 64-byte ``struct seccomp_data``."""
        if len(raw) != SECCOMP_DATA_LEN:
            raise BpfError(f"seccomp_data must be {SECCOMP_DATA_LEN} bytes, got {len(raw)}")
        nr, arch, ip, *args = SECCOMP_DATA.unpack(raw)
        return cls(nr, arch, ip, tuple(args))

    def words(self) -> tuple[int, ...]:
        """The sixteen u32 words a filter's ``ld [4*i]`` reads."""
        return struct.unpack("<16I", self.pack())


def as_seccomp_data(data) -> SeccompData:
    """Accept a SeccompData, the raw 64 bytes, or a bare syscall number."""
    if isinstance(data, SeccompData):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return SeccompData.from_bytes(bytes(data))
    if isinstance(data, int) and not isinstance(data, bool):
        return SeccompData(data)
    raise UsageError(f"seccomp input must be SeccompData or 64 bytes, not {type(data).__name__}")


class SeccompResult(int):
    """A seccomp filter's u32 return value that also names the action the kernel takes.

    ``.action`` is one of :data:`ACTIONS`' names; an unknown action is
    reported as ``KILL_PROCESS`` (what ``__seccomp_filter`` does) with
    ``.known`` False.  ``.data`` is the low 16 bits; ``.errno`` the value an
    ERRNO action returns (capped at 4095).
    """

    __slots__ = ()

    @property
    def action_value(self) -> int:
        """``ret & SECCOMP_RET_ACTION_FULL``."""
        return int(self) & SECCOMP_RET_ACTION_FULL

    @property
    def known(self) -> bool:
        """Whether the kernel knows this action."""
        return self.action_value in ACTIONS

    @property
    def action(self) -> str:
        """The action's name (unknown actions kill the process)."""
        return ACTIONS.get(self.action_value, "KILL_PROCESS")

    @property
    def data(self) -> int:
        """``ret & SECCOMP_RET_DATA``."""
        return int(self) & SECCOMP_RET_DATA

    @property
    def errno(self) -> int | None:
        """For ERRNO, the errno the syscall fails with; else None."""
        return min(self.data, MAX_ERRNO) if self.action == "ERRNO" else None

    def describe(self) -> str:
        """``ALLOW``, ``ERRNO(1)``, ``TRACE(7)``, or ``KILL_PROCESS (unknown action 0x10000)``."""
        if not self.known:
            return f"KILL_PROCESS (unknown action {self.action_value:#x})"
        if self.action in ("ERRNO", "TRAP", "TRACE") or (self.data and self.action != "ALLOW"):
            return f"{self.action}({self.data})"
        return self.action

    def __repr__(self) -> str:
        return f"SeccompResult({int(self):#010x}, {self.describe()})"


# --- syscall names -----------------------------------------------------------

_FALLBACK_X86_64 = {
    "read": 0, "write": 1, "open": 2, "close": 3, "stat": 4, "fstat": 5, "lstat": 6,
    "poll": 7, "lseek": 8, "mmap": 9, "mprotect": 10, "munmap": 11, "brk": 12,
    "rt_sigaction": 13, "rt_sigprocmask": 14, "rt_sigreturn": 15, "ioctl": 16,
    "pread64": 17, "pwrite64": 18, "readv": 19, "writev": 20, "access": 21, "pipe": 22,
    "select": 23, "sched_yield": 24, "madvise": 28, "dup": 32, "dup2": 33, "nanosleep": 35,
    "getpid": 39, "socket": 41, "connect": 42, "accept": 43, "sendto": 44, "recvfrom": 45,
    "bind": 49, "listen": 50, "clone": 56, "fork": 57, "vfork": 58, "execve": 59,
    "exit": 60, "wait4": 61, "kill": 62, "uname": 63, "fcntl": 72, "getcwd": 79,
    "chdir": 80, "mkdir": 83, "rmdir": 84, "unlink": 87, "getuid": 102, "getgid": 104,
    "geteuid": 107, "getegid": 108, "getppid": 110, "prctl": 157, "gettid": 186,
    "futex": 202, "exit_group": 231, "openat": 257, "seccomp": 317, "getrandom": 318,
}


@lru_cache(maxsize=None)
def _libseccomp():
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    return lib


@lru_cache(maxsize=None)
def _unistd_table() -> dict[str, int]:
    """x86-64 syscall numbers from the installed kernel headers, if any."""
    table = dict(_FALLBACK_X86_64)
    for path in ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h"):
        p = Path(path)
        if p.is_file():
            for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", p.read_text()):
                table[m.group(1)] = int(m.group(2))
            break
    return table


def syscall_number(name_or_nr: str | int) -> int:
    """Resolve a syscall name (or a decimal/hex number) to its x86-64 number.

    Uses libseccomp's ``seccomp_syscall_resolve_name`` when the library is
    installed, else the kernel headers, else a built-in table.
    """
    if isinstance(name_or_nr, int):
        return name_or_nr
    text = name_or_nr.strip()
    try:
        return parse_int(text, 0)
    except LimitError as exc:
        raise BpfError(f"syscall number: {exc}") from None
    except ValueError:
        pass
    if not (text.isascii() and text.isprintable()):   # e.g. undecodable bytes of argv
        raise BpfError(f"unknown syscall name {ascii(text)}")
    lib = _libseccomp()
    if lib is not None:
        nr = lib.seccomp_syscall_resolve_name(text.encode())
        if nr >= 0:
            return nr
    nr = _unistd_table().get(text)
    if nr is None:
        raise BpfError(f"unknown syscall name '{text}'")
    return nr


def syscall_name(nr: int) -> str | None:
    """The x86-64 name of syscall ``nr``, or None."""
    for name, value in _unistd_table().items():
        if value == nr:
            return name
    return None
