"""The live Linux kernel as an oracle: does it accept a program, what does it return?

* :func:`socket_attach_errno` -- ``setsockopt(SO_ATTACH_FILTER)`` on an
  AF_UNIX datagram socket (no privileges needed); 0 or the errno.
* :func:`seccomp_install_errno` -- ``seccomp(SECCOMP_SET_MODE_FILTER)`` in a
  forked child after ``PR_SET_NO_NEW_PRIVS``; 0 or the errno.
* :func:`socket_attach_errnos` / :func:`seccomp_check_errnos` -- the same
  questions for many programs at once, fast enough for million-program
  differential sweeps (see below).
* :func:`available` -- whether each oracle works on this machine, so tests
  can skip cleanly elsewhere.

The batch seccomp oracle installs nothing.  In a forked child with
``PR_SET_NO_NEW_PRIVS`` and ``RLIMIT_NOFILE`` at 0 it calls ``seccomp()``
with ``SECCOMP_FILTER_FLAG_NEW_LISTENER``: the kernel runs every filter
check first (``seccomp_prepare_user_filter``) and only then allocates the
listener fd, which must fail with EMFILE.  So EMFILE means "accepted" and
any other errno is the verdict on the filter -- about 10 microseconds per
program instead of a fork.  ``tests/test_kernel_verify.py`` checks that it
agrees with real installs.

These are test and diagnosis aids; nothing in the engine depends on them.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import signal
import socket
import struct
import sys
import time
from functools import lru_cache

SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SYS_seccomp = 317       # x86_64
SYS_exit_group = 231    # x86_64
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3

_libc = ctypes.CDLL(None, use_errno=True)


def _fprog(program) -> tuple[bytes, ctypes.Array]:
    """Return (struct sock_fprog bytes, the buffer it points to -- keep it alive)."""
    if not isinstance(program, (bytes, bytearray)):
        from bpfio.insn import Program
        if not isinstance(program, Program):
            program = Program(program)
    raw = bytes(program)
    buf = ctypes.create_string_buffer(raw, len(raw) or 1)
    fprog = struct.pack("HxxxxxxP", len(raw) // 8, ctypes.addressof(buf))
    return fprog, buf


def socket_attach_errno(program, sock: socket.socket | None = None) -> int:
    """Attach ``program`` to an AF_UNIX datagram socket; return 0 or the errno."""
    # Packed first: a field that does not fit struct sock_filter raises UsageError here.
    fprog, buf = _fprog(program)
    own = sock is None
    if own:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        except OSError as err:
            return err.errno
        return 0
    finally:
        del buf
        if own:
            sock.close()


def seccomp_install_errno(program, *, timeout: float = 5.0) -> int:
    """Install ``program`` as a seccomp filter in a forked child; return 0 or the errno.

    The child reports a refused install through its exit status (``100 +
    errno``).  Once a filter is installed the child's own exit may be denied,
    so the parent watches ``/proc/PID/status`` for ``Seccomp: 2`` and kills
    the child; a child killed by its filter also counts as installed.
    """
    fprog, buf = _fprog(program)
    fprog_buf = ctypes.create_string_buffer(fprog, len(fprog))
    pid = os.fork()
    if pid == 0:  # child: only raw syscalls from here on
        try:
            if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                os._exit(100 + ctypes.get_errno())
            rc = _libc.syscall(ctypes.c_long(SYS_seccomp),
                               ctypes.c_long(SECCOMP_SET_MODE_FILTER), ctypes.c_long(0),
                               ctypes.c_void_p(ctypes.addressof(fprog_buf)))
            if rc != 0:
                os._exit(100 + ctypes.get_errno())
            _libc.syscall(ctypes.c_long(SYS_exit_group), ctypes.c_long(0))
            while True:  # exit denied by the filter: wait for the parent's SIGKILL
                pass
        finally:
            os._exit(99)
    deadline = time.monotonic() + timeout
    status_path = f"/proc/{pid}/status"
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                if os.WIFEXITED(status):
                    code = os.WEXITSTATUS(status)
                    return code - 100 if code >= 100 else 0
                return 0  # killed by its own installed filter
            try:
                with open(status_path) as fh:
                    if "Seccomp:\t2" in fh.read():
                        return 0
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("seccomp probe child did not finish")
            time.sleep(0.0002)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        del buf


def socket_attach_errnos(programs) -> list[int]:
    """:func:`socket_attach_errno` for each program, on one reused socket.

    A filter that attaches is detached again at once: the kernel charges a
    new filter to the socket before it releases the old one, so a leftover
    filter would turn a large program's answer into ENOMEM.
    """
    results = []
    attach, detach = socket.SOL_SOCKET, SO_DETACH_FILTER
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        for program in programs:
            fprog, buf = _fprog(program)
            try:
                sock.setsockopt(attach, SO_ATTACH_FILTER, fprog)
            except OSError as err:
                results.append(err.errno)
                continue
            sock.setsockopt(attach, detach, 0)
            results.append(0)
    return results


def seccomp_check_errnos(programs) -> list[int]:
    """What ``seccomp(SECCOMP_SET_MODE_FILTER)`` says about each program (0 = accepted).

    Runs in one forked child that cannot install anything (see the module
    docstring); raises OSError if the child does not answer as expected.
    """
    programs = list(programs)
    fprogs = [_fprog(p) for p in programs]
    holders = [ctypes.create_string_buffer(fp, len(fp)) for fp, _buf in fprogs]
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 3
        try:
            os.close(rfd)
            import resource
            if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                os._exit(2)
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (0, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            out = bytearray()
            call, nr = _libc.syscall, ctypes.c_long(SYS_seccomp)
            mode = ctypes.c_long(SECCOMP_SET_MODE_FILTER)
            flags = ctypes.c_long(SECCOMP_FILTER_FLAG_NEW_LISTENER)
            for holder in holders:
                rc = call(nr, mode, flags, ctypes.c_void_p(ctypes.addressof(holder)))
                if rc >= 0:         # installed after all: nothing here can be trusted
                    os._exit(4)
                err = ctypes.get_errno()
                out += struct.pack("<H", 0 if err == _errno.EMFILE else err)
                if len(out) >= 65536:
                    os.write(wfd, out)
                    out.clear()
            os.write(wfd, out)
            status = 0
        finally:
            os._exit(status)
    os.close(wfd)
    chunks = []
    with os.fdopen(rfd, "rb") as fh:
        while True:
            chunk = fh.read(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0 \
            or len(data) != 2 * len(programs):
        raise OSError(f"seccomp check child failed (status {status:#x}, "
                      f"{len(data) // 2} of {len(programs)} answers)")
    del fprogs
    return [v for (v,) in struct.iter_unpack("<H", data)]


@lru_cache(maxsize=None)
def available(oracle: str = "socket") -> str | None:
    """Return None when the oracle works here, else a reason to skip."""
    if not sys.platform.startswith("linux"):
        return "the live-kernel oracle needs Linux"
    from bpfio.insn import Program, Insn
    ok = Program([Insn(0x06, 0, 0, 1)])
    bad = Program([Insn(0x0e, 0, 0, 0)])
    try:
        if oracle == "socket":
            good, refused = socket_attach_errno(ok), socket_attach_errno(bad)
        elif oracle == "seccomp":
            if os.uname().machine != "x86_64":
                return "seccomp oracle uses x86_64 syscall numbers"
            good, refused = seccomp_install_errno(ok), seccomp_install_errno(bad)
        elif oracle == "seccomp-batch":
            if os.uname().machine != "x86_64":
                return "seccomp oracle uses x86_64 syscall numbers"
            good, refused = seccomp_check_errnos([ok, bad])
        else:
            raise ValueError(oracle)
    except (OSError, TimeoutError) as err:
        return f"{oracle} oracle unavailable: {err}"
    if good != 0 or refused != _errno.EINVAL:
        return f"{oracle} oracle misbehaves (accept -> {good}, ret x -> {refused})"
    return None
