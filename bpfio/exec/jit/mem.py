"""Executable memory for native code: mapped writable, filled, then made executable.

A mapping is never writable and executable at once (W^X): ``mmap(PROT_READ |
PROT_WRITE)``, copy the code in, ``mprotect(PROT_READ | PROT_EXEC)`` -- the
pattern of FreeBSD's userland ``bpf_jitter`` and ubpf.  Python's :mod:`mmap` has
no ``mprotect``, so libc is called through ctypes.  x86 keeps instruction fetch
coherent with stores, so no cache flush is needed.  The mapping is unmapped when
its :class:`ExecMemory` is garbage-collected (or by :meth:`ExecMemory.free`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import sys
import weakref

from bpfio.errors import JitUnavailable

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
MAP_FAILED = ctypes.c_void_p(-1).value
PAGE = os.sysconf("SC_PAGESIZE") if hasattr(os, "sysconf") else 4096

_libc = None


def _lib():
    """libc with mmap/mprotect/munmap typed (loaded once)."""
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        lib.mmap.restype = ctypes.c_void_p
        lib.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                             ctypes.c_int, ctypes.c_long)
        lib.mprotect.restype = ctypes.c_int
        lib.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        lib.munmap.restype = ctypes.c_int
        lib.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        _libc = lib
    return _libc


def unavailable_reason() -> str | None:
    """Why native code cannot run here (``None`` when it can, as far as the platform goes)."""
    if os.environ.get("BPFIO_JIT", "1") == "0":
        return "disabled by BPFIO_JIT=0"
    if not sys.platform.startswith("linux"):
        return f"needs Linux (this is {sys.platform})"
    if platform.machine() not in ("x86_64", "AMD64"):
        return f"needs x86-64 (this is {platform.machine()})"
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        return "needs a 64-bit Python"
    return None


def check_available() -> None:
    """Raise :class:`JitUnavailable` unless native code can run here."""
    reason = unavailable_reason()
    if reason:
        raise JitUnavailable(f"jit: error: native code unavailable: {reason}")


def _unmap(addr: int, size: int) -> None:
    _lib().munmap(addr, size)


class ExecMemory:
    """``code`` copied into a fresh read+execute mapping; ``address`` is its first byte."""

    def __init__(self, code: bytes):
        check_available()
        lib = _lib()
        size = max(PAGE, (len(code) + PAGE - 1) // PAGE * PAGE)
        addr = lib.mmap(None, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if addr is None or addr == MAP_FAILED:
            err = ctypes.get_errno()
            raise JitUnavailable(f"jit: error: mmap failed: {os.strerror(err)}")
        ctypes.memmove(addr, code, len(code))
        if lib.mprotect(addr, size, PROT_READ | PROT_EXEC) != 0:
            err = ctypes.get_errno()
            lib.munmap(addr, size)
            why = "refused by the system policy" if err in (errno.EACCES, errno.EPERM) else ""
            raise JitUnavailable(f"jit: error: mprotect(PROT_EXEC) failed: "
                                 f"{os.strerror(err)} {why}".rstrip())
        self.address = addr
        self.size = size
        self.length = len(code)
        self._finalizer = weakref.finalize(self, _unmap, addr, size)

    def free(self) -> None:
        """Unmap now (idempotent); the object must not be called afterwards."""
        self._finalizer()

    @property
    def alive(self) -> bool:
        """Whether the mapping still exists."""
        return self._finalizer.alive

    def read(self) -> bytes:
        """The code bytes, read back from the executable mapping."""
        if not self.alive:
            raise ValueError("executable memory already freed")
        return ctypes.string_at(self.address, self.length)

    def function(self, restype, *argtypes, offset: int = 0):
        """A ctypes callable for the code at ``address + offset`` (keeps this object alive)."""
        if not self.alive:
            raise ValueError("executable memory already freed")
        fn = ctypes.CFUNCTYPE(restype, *argtypes)(self.address + offset)
        fn._bpfio_owner = self          # the mapping lives as long as the callable
        return fn
