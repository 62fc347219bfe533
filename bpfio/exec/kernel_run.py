"""The live kernel as an execution oracle: what does a program really return?

:class:`SocketOracle` attaches a program to the receiving end of an AF_UNIX
datagram socket pair and sends it packets.  The kernel trims a datagram to the
filter's return value (``sk_filter_trim_cap`` with cap 1) or drops it on 0,
so the received length shows ``min(ret, len)`` -- not the whole 32-bit value,
and a program that *aborts* (out-of-bounds load, division by a zero X) looks
exactly like one that returns 0.  To see every bit we rewrite the program
(:func:`chunk_variant`): each ``ret`` becomes a ``ja`` to a short tail that
returns one chunk of the value *plus one*.  A dropped datagram then means the
program aborted, and ``received length - 1`` is the chunk.  The chunk width is
the largest ``w <= 8`` with ``2**w <= len``; packets shorter than 2 bytes use
one-bit chunks read through drop/deliver instead.

:class:`SeccompOracle` does the same for seccomp: in a forked child it installs
one filter per 11-bit chunk that answers ``SECCOMP_RET_ERRNO | (chunk + 1)``
for the test syscall and ``ALLOW`` for everything else, calls the syscall, and
reads the chunk back from ``errno``.

Known blind spots (kept out of the random programs and tested separately):
``ld rand`` (random), ``ld cpu`` (depends on scheduling unless pinned), and
``ld ifidx``/``ld hatype``, which on a socket without a device end the
program returning A directly, bypassing the tail.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct

from bpfio import isa
from bpfio.insn import Insn, Program
from bpfio.exec.kernel import SO_ATTACH_FILTER, _fprog
from bpfio.exec.gen import ORACLE_ANCILLARY, random_program, random_packet  # noqa: F401 - were here

ABORTED = None  # what the oracles report for a program that aborted (kernel verdict 0)


def chunk_variant(program, shift: int, width: int, *, bit_mode: bool = False) -> Program:
    """Rewrite every ``ret`` of ``program`` into a jump to a tail that returns a chunk.

    The tail computes ``((V >> shift) & (2**width - 1)) + 1`` where V is the
    value the original ``ret`` would return; with ``bit_mode`` it returns the
    bare bit ``(V >> shift) & 1`` (so 0 drops the packet), and ``width == 0``
    gives a tail that always returns 1 (an abort probe).
    """
    prog = list(program)
    n = len(prog)
    consts = sorted({i.k for i in prog if i.code == isa.BPF_RET | isa.BPF_K})
    tails: dict[int, int] = {}
    out = []
    pc = n
    for k in consts:           # per constant: ld #k ; ja common
        tails[k] = pc
        pc += 2
    common = pc
    for i, insn in enumerate(prog):
        if insn.code == isa.BPF_RET | isa.BPF_K:
            out.append(Insn(isa.BPF_JMP | isa.BPF_JA, 0, 0, tails[insn.k] - i - 1))
        elif insn.code == isa.BPF_RET | isa.BPF_A:
            out.append(Insn(isa.BPF_JMP | isa.BPF_JA, 0, 0, common - i - 1))
        else:
            out.append(insn)
    for k in consts:
        here = len(out)
        out.append(Insn(isa.BPF_LD | isa.BPF_IMM, 0, 0, k))
        out.append(Insn(isa.BPF_JMP | isa.BPF_JA, 0, 0, common - here - 2))
    alu = isa.BPF_ALU
    if width == 0 and not bit_mode:
        out.append(Insn(isa.BPF_RET | isa.BPF_K, 0, 0, 1))
        return Program(out)
    if shift:
        out.append(Insn(alu | isa.BPF_RSH | isa.BPF_K, 0, 0, shift))
    mask = 1 if bit_mode else (1 << width) - 1
    if mask != 0xffffffff:
        out.append(Insn(alu | isa.BPF_AND | isa.BPF_K, 0, 0, mask))
    if not bit_mode:
        out.append(Insn(alu | isa.BPF_ADD | isa.BPF_K, 0, 0, 1))
    out.append(Insn(isa.BPF_RET | isa.BPF_A, 0, 0, 0))
    return Program(out)


def chunk_plan(length: int) -> list[tuple[int, int, bool]]:
    """Return the (shift, width, bit_mode) variants that read a full u32 for a packet length."""
    if length >= 2:
        width = min(8, length.bit_length() - 1)
        return [(s, width, False) for s in range(0, 32, width)]
    return [(0, 0, False)] + [(s, 1, True) for s in range(32)]


class SocketOracle:
    """Run programs on packets in the kernel through AF_UNIX datagram sockets.

    ``run(program, packets)`` returns, per packet, the program's full 32-bit
    return value or ``None`` when the program aborted.  Sockets are reused:
    one pair per chunk variant, filters replaced by each new program.
    """

    def __init__(self):
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self.sends = 0

    def close(self):
        """Close every socket."""
        for a, b in self._pairs:
            a.close()
            b.close()
        self._pairs.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _pair(self, index: int):
        while len(self._pairs) <= index:
            rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._pairs.append((rx, tx))
        return self._pairs[index]

    @staticmethod
    def _attach(sock: socket.socket, program) -> None:
        fprog, buf = _fprog(program)
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        del buf

    def raw(self, program, packet: bytes) -> int | None:
        """Send one packet through ``program`` unchanged; return the received length or None if dropped."""
        rx, tx = self._pair(0)
        self._attach(rx, program)
        return self._deliver(rx, tx, packet)

    def _deliver(self, rx, tx, packet: bytes) -> int | None:
        self.sends += 1
        tx.send(packet)
        try:
            return len(rx.recv(len(packet) + 64, socket.MSG_DONTWAIT))
        except BlockingIOError:
            return None

    def run(self, program, packets) -> list[int | None]:
        """Return each packet's full u32 verdict (None = the program aborted)."""
        packets = [bytes(p) for p in packets]
        plans = {}
        for p in packets:
            for variant in chunk_plan(len(p)):
                plans.setdefault(variant, None)
        slots = {}
        for index, variant in enumerate(plans):
            rx, _ = self._pair(index)
            self._attach(rx, chunk_variant(program, variant[0], variant[1], bit_mode=variant[2]))
            slots[variant] = index
        results: list[int | None] = []
        for p in packets:
            value = 0
            aborted = False
            for shift, width, bit_mode in chunk_plan(len(p)):
                rx, tx = self._pair(slots[(shift, width, bit_mode)])
                got = self._deliver(rx, tx, p)
                if bit_mode:
                    value |= (got is not None) << shift
                elif got is None:
                    aborted = True
                    break
                elif width:
                    value |= (got - 1) << shift
            results.append(None if aborted else value & 0xffffffff)
        return results


class UdpOracle:
    """A UDP/IPv4 socket on loopback with a filter: does it let a datagram through?

    On a UDP socket the filter's data starts at the UDP header (then the
    payload); the IPv4 header lies 20 bytes before it (``SKF_NET_OFF``) and
    loopback's Ethernet header (all-zero addresses, type 0x0800) 34 bytes
    before (``SKF_LL_OFF``), measured on Linux 6.18.  :meth:`view` gives the
    interpreter the same packet and context.  The kernel trims an accepted
    datagram to the verdict but never below the UDP header, so only
    "delivered or dropped" is read back.
    """

    def __init__(self):
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.tx.bind(("127.0.0.1", 0))

    def close(self):
        """Close both sockets."""
        self.rx.close()
        self.tx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def delivers(self, program, payload: bytes) -> bool:
        """Attach ``program`` to the receiver, send ``payload``; True when it arrives."""
        SocketOracle._attach(self.rx, program)
        self.tx.sendto(payload, self.rx.getsockname())
        try:
            self.rx.recv(len(payload) + 64, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        return True

    def view(self, payload: bytes) -> tuple[bytes, dict]:
        """``(data, context fields)``: what a filter on this socket sees for ``payload``.

        Every other ancillary field is 0 (``cpu`` is the sending CPU: 0 when pinned there).

        Three header fields change from datagram to datagram and are left 0
        here (:data:`UDP_VARYING` lists their offsets from the link-layer
        header): the IPv4 id and header checksum, and the UDP checksum
        (loopback hands the filter a partial one, ``CHECKSUM_PARTIAL``).
        """
        sport, dport = self.tx.getsockname()[1], self.rx.getsockname()[1]
        udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
        eth = bytes(12) + b"\x08\x00"
        # Ancillary values measured on loopback: ETH_P_IP, device lo (ifindex 1,
        # ARPHRD_LOOPBACK), the flow dissector's payload offset past the UDP header.
        return udp, {"net_off": -20, "ll_off": -34, "head": eth + ip, "protocol": 0x800,
                     "ifindex": 1, "hatype": 0x304, "poff": 8}


UDP_VARYING = frozenset((18, 19, 24, 25, 40, 41))   # IP id, IP checksum, UDP checksum


# --- seccomp -----------------------------------------------------------------

SECCOMP_RET_ALLOW = 0x7fff0000
SECCOMP_RET_ERRNO = 0x00050000
_SECCOMP_CHUNK = 11   # ERRNO data is capped at 4095: 11 bits + 1 fit
_RESULT = struct.Struct("<q")


def seccomp_variant(program, test_nr: int, shift: int) -> Program:
    """Guard + ``program`` + a tail answering ERRNO | (chunk + 1) for syscall ``test_nr``.

    Every other syscall is allowed, so the child that installs the filters can
    still write its answer and exit.  A = 0 is restored after the guard.
    """
    guard = [Insn(isa.BPF_LD | isa.BPF_W | isa.BPF_ABS, 0, 0, 0),
             Insn(isa.BPF_JMP | isa.BPF_JEQ | isa.BPF_K, 1, 0, test_nr),
             Insn(isa.BPF_RET | isa.BPF_K, 0, 0, SECCOMP_RET_ALLOW),
             Insn(isa.BPF_LD | isa.BPF_IMM, 0, 0, 0)]
    body = chunk_variant(program, shift, _SECCOMP_CHUNK)
    tail = list(body)
    # chunk_variant ends with add #1; ret a -- turn it into ERRNO | (chunk + 1).
    assert tail[-1].code == isa.BPF_RET | isa.BPF_A
    tail.insert(len(tail) - 1, Insn(isa.BPF_ALU | isa.BPF_OR | isa.BPF_K, 0, 0, SECCOMP_RET_ERRNO))
    return Program(guard + tail)


class SeccompOracle:
    """Run seccomp programs on syscalls in a forked child; return the full u32 verdict.

    ``run(program, nr, args)`` -> the value, or None when the filter killed
    the child (a division by a zero X makes the program return 0, which is
    SECCOMP_RET_KILL_THREAD).  x86_64 only.
    """

    _libc = ctypes.CDLL(None, use_errno=True)

    def run(self, program, nr: int, args=(0,) * 6) -> int | None:
        """Return what ``program`` returns for syscall ``nr`` with ``args``, or None."""
        from bpfio.exec.kernel import PR_SET_NO_NEW_PRIVS, SECCOMP_SET_MODE_FILTER, SYS_seccomp
        variants = []
        bufs = []
        for shift in range(0, 32, _SECCOMP_CHUNK):
            fprog, buf = _fprog(seccomp_variant(program, nr, shift))
            fbuf = ctypes.create_string_buffer(fprog, len(fprog))
            bufs.append((buf, fbuf))
            variants.append(fbuf)
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: raw syscalls only after the first install
            try:
                libc = self._libc
                if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                    os._exit(3)
                for fbuf in variants:
                    if libc.syscall(ctypes.c_long(SYS_seccomp), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                                    ctypes.c_long(0), ctypes.c_void_p(ctypes.addressof(fbuf))) != 0:
                        os._exit(4)
                    ctypes.set_errno(0)
                    rc = libc.syscall(ctypes.c_long(nr), *(ctypes.c_ulong(a & 0xffffffffffffffff)
                                                           for a in args))
                    err = ctypes.get_errno() if rc == -1 else 0
                    os.write(wfd, _RESULT.pack(err))
                os._exit(0)
            finally:
                os._exit(5)
        os.close(wfd)
        data = b""
        while True:
            chunk = os.read(rfd, 64)
            if not chunk:
                break
            data += chunk
        os.close(rfd)
        _, status = os.waitpid(pid, 0)
        del bufs
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) in (3, 4, 5):
            raise OSError(f"seccomp oracle child failed (status {os.WEXITSTATUS(status)})")
        errs = [_RESULT.unpack_from(data, i)[0] for i in range(0, len(data) - len(data) % 8, 8)]
        if len(errs) < len(variants):
            return None  # killed by its filter: the program returned 0 (KILL_THREAD)
        value = 0
        for i, err in enumerate(errs):
            value |= (err - 1) << (i * _SECCOMP_CHUNK)
        return value & 0xffffffff


# --- random cases for differential testing --------------------------------------


# --- differential sweeps (tests and `python -m bpfio.exec.kernel_run`) ---------------

class SweepResult:
    """Counts of a differential sweep and the first few disagreements."""

    def __init__(self):
        self.cases = 0
        self.programs = 0
        self.agree = {"interp": 0, "compiled": 0}
        self.aborted = 0
        self.mismatches: list[tuple] = []

    def __str__(self) -> str:
        return (f"{self.cases} cases on {self.programs} programs ({self.aborted} aborted): "
                f"interp {self.agree['interp']}/{self.cases}, compiled {self.agree['compiled']}/{self.cases}")


def socket_sweep(cases: int, *, seed: int = 0, packets_per_program: int = 8) -> SweepResult:
    """Run random verified programs on random packets in the kernel and both engines."""
    import random
    from bpfio.exec.compiler import compile as compile_program
    from bpfio.exec.interp import outcome
    from bpfio.check.verifier import verify
    rng = random.Random(seed)
    result = SweepResult()
    with SocketOracle() as oracle:
        while result.cases < cases:
            program = random_program(rng)
            try:
                verify(program, lints=False)
            except Exception:
                continue
            packets = [random_packet(rng) for _ in range(packets_per_program)]
            kernel = oracle.run(program, packets)
            compiled = compile_program(program)
            result.programs += 1
            for packet, want in zip(packets, kernel):
                result.cases += 1
                result.aborted += want is None
                got_i = outcome(program, packet)[0]
                got_c = compiled.outcome(packet)[0]
                result.agree["interp"] += got_i == want
                result.agree["compiled"] += got_c == want
                if (got_i != want or got_c != want) and len(result.mismatches) < 20:
                    result.mismatches.append((program, packet, want, got_i, got_c))
    return result


def seccomp_sweep(cases: int, *, seed: int = 0) -> SweepResult:
    """Run random verified seccomp programs on random syscalls in the kernel and both engines."""
    import random
    from bpfio.exec.compiler import compile as compile_program
    from bpfio.exec.interp import outcome
    from bpfio.abi.seccomp import AUDIT_ARCH_X86_64, SeccompData
    from bpfio.check.verifier import verify
    rng = random.Random(seed)
    oracle = SeccompOracle()
    result = SweepResult()
    while result.cases < cases:
        program = random_program(rng, profile="seccomp")
        try:
            verify(program, profile="seccomp", lints=False)
        except Exception:
            continue
        # A syscall number the child never makes itself, so ALLOW covers the rest.
        nr = rng.choice((39, 102, 104, 110, 186, 1000, 4000))
        args = tuple(rng.getrandbits(64) if rng.random() < 0.5 else rng.randrange(0, 300)
                     for _ in range(6))
        want = oracle.run(program, nr, args)
        data = SeccompData(nr, AUDIT_ARCH_X86_64, 0, args)
        result.programs += 1
        result.cases += 1
        result.aborted += want is None
        got_i = outcome(program, data, profile="seccomp")[0]
        got_c = compile_program(program, profile="seccomp").outcome(data)[0]
        result.agree["interp"] += got_i == want
        result.agree["compiled"] += got_c == want
        if (got_i != want or got_c != want) and len(result.mismatches) < 20:
            result.mismatches.append((program, data, want, got_i, got_c))
    return result


def main(argv=None) -> int:
    """``python -m bpfio.exec.kernel_run [--cases N] [--seed S] [--seccomp N]``: print sweep results."""
    import argparse
    import time
    parser = argparse.ArgumentParser(prog="python -m bpfio.exec.kernel_run",
                                     description="Differential sweep: live kernel vs interpreter vs compiled.")
    parser.add_argument("--cases", type=int, default=100000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seccomp", type=int, default=0, help="also run N seccomp cases")
    opts = parser.parse_args(argv)
    start = time.monotonic()
    res = socket_sweep(opts.cases, seed=opts.seed)
    print(f"socket: {res} in {time.monotonic() - start:.0f} s")
    for m in res.mismatches[:5]:
        print("  mismatch:", list(m[0]), m[1].hex(), m[2:])
    ok = not res.mismatches
    if opts.seccomp:
        start = time.monotonic()
        sec = seccomp_sweep(opts.seccomp, seed=opts.seed)
        print(f"seccomp: {sec} in {time.monotonic() - start:.0f} s")
        ok = ok and not sec.mismatches
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
