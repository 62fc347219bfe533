"""The reference interpreter: classic BPF with the Linux kernel's runtime semantics.

Machine model: 32-bit ``A`` and ``X`` (both 0 at entry), scratch words ``M[]``,
read-only input bytes, ``pc`` from 0; every instruction except jumps and
``ret`` moves to ``pc + 1``.  The rules, each measured against Linux 6.18
(``docs/interpreter.md`` lists the measurements):

* ALU is 32-bit with wrap-around; compares are unsigned; ``lsh``/``rsh`` by X
  shift by ``X & 31``; ``div``/``mod`` by ``X == 0`` end the program with 0.
* A load outside the input ends the program with 0 (an *abort*).  Offsets are
  signed 32-bit: ``[x + k]`` wraps at 32 bits; ``SKF_NET_OFF + n`` reads the
  network header + n, ``SKF_LL_OFF + n`` the link-layer header + n (an error
  when the socket has none); anything below ``SKF_LL_OFF`` fails.
* ``ld``/``ldh``/``ldb`` of an ancillary k (``SKF_AD_OFF + n``) read the
  :class:`SocketContext` whatever the size bits say.  ``ifidx`` and ``hatype``
  on a socket without a device (AF_UNIX, the default) end the program
  returning the current A, as the kernel's converted code does.

Profiles choose the input: ``socket`` (packet bytes + :class:`SocketContext`),
``seccomp`` (:class:`~bpfio.abi.seccomp.SeccompData`, host-order words, result a
:class:`~bpfio.abi.seccomp.SeccompResult`) and ``pio`` (a
:class:`~bpfio.abi.pio.PioEvent` plus the binding's shared words ``mem``:
``M[k]`` *is* ``mem[k]`` and ``ld [PIO_MEM + 4i]`` reads the live word i).

The interpreter may assume a verified program; it never raises on one.  An
instruction no verified program can hold (an unknown code, a jump past the
end) raises :class:`~bpfio.errors.VMError`.

Example::

    >>> from bpfio.insn import Insn
    >>> run([Insn(0x28, 0, 0, 12), Insn(0x16, 0, 0, 0)], bytes(12) + b"\\x08\\x00")
    2048
"""

from __future__ import annotations

import random as _random
from itertools import count as _count
from typing import Callable, NamedTuple

from bpfio import isa
from bpfio.errors import UsageError, VMError
from bpfio.insn import Program
from bpfio.isa import (BPF_ABS, BPF_ALU, BPF_IMM, BPF_IND, BPF_JMP, BPF_LD, BPF_LDX, BPF_LEN,
                       BPF_MEM, BPF_MSH, BPF_RET, BPF_ST, BPF_STX, OPCODES, SKF_AD, SKF_AD_OFF, U32)
from bpfio.abi.pio import PIO_HDR_LEN, PIO_MEM_DEFAULT, PioEvent, check_mem
from bpfio.abi.seccomp import SECCOMP_DATA_LEN, SeccompResult, as_seccomp_data
from bpfio.exec.skb import (DEFAULT_CONTEXT, EXIT_WITH_A, SocketContext, ancillary, bad_packet,
                            skb_load, skb_offset, socket_context)  # noqa: F401 - names from before the split

PROFILES = ("socket", "seccomp", "pio")


# --- loads -----------------------------------------------------------------


class _Input(NamedTuple):
    """A profile's view of the input: how loads and ``len`` behave.

    ``load(pkt, off_u32, size)`` and ``anc(pkt, k, a, x)`` return an int, or
    None for a fault; ``anc`` may return :data:`EXIT_WITH_A`.  ``length``
    is what ``ld len`` gives (None: the packet's length).
    """

    profile: str
    length: int | None
    load: Callable
    anc: Callable


def socket_input(context: SocketContext = DEFAULT_CONTEXT) -> _Input:
    """The socket profile's loads for one context (reusable across packets)."""
    net, ll, head = context.net_off, context.ll_off, context.head

    def load(pkt, off, size):
        return skb_load(pkt, off - 0x100000000 if off & 0x80000000 else off, size, net, ll, head)

    def anc(pkt, k, a, x):
        return ancillary(k - SKF_AD_OFF, a, x, pkt, context)
    return _Input("socket", None, load, anc)


_DEFAULT_SOCKET = socket_input()
_RANDOM_K = SKF_AD_OFF + SKF_AD["RANDOM"]


def pio_input(event, mem) -> _Input:
    """The pio profile's loads: header words of ``event``, then the live words of ``mem``."""
    return _pio_words_input(event.words(), mem)


def _pio_words_input(header, mem) -> _Input:
    length = PIO_HDR_LEN + 4 * len(mem)

    def word(j):
        return header[j] if j < 10 else mem[j - 10] & U32

    def load(pkt, off, size):
        if off + size > length:
            return None
        if size == 4 and not off & 3:
            return word(off >> 2)
        value = 0
        for i in range(off, off + size):
            value = (value << 8) | ((word(i >> 2) >> (8 * (3 - (i & 3)))) & 0xff)
        return value

    def anc(pkt, k, a, x):
        return _random.getrandbits(32) if k == _RANDOM_K else None
    return _Input("pio", length, load, anc)


def seccomp_input(data) -> _Input:
    """The seccomp profile's loads: host-order words of ``struct seccomp_data``."""
    words = as_seccomp_data(data).words()

    def load(pkt, off, size):
        # seccomp_check_filter lets only LD|W|ABS with k % 4 == 0 and k < 64 through.
        if size == 4 and not off & 3 and off < SECCOMP_DATA_LEN:
            return words[off >> 2]
        return None
    return _Input("seccomp", SECCOMP_DATA_LEN, load, lambda pkt, k, a, x: None)


def _prepare(profile: str, data, context: dict):
    """Return ``(pkt, mem, input)`` for one run."""
    if profile == "socket":
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise UsageError(f"run: a packet is bytes, not {type(data).__name__}")
        pkt = bytes(data)
        if context:
            inp = socket_input(socket_context(context.pop("context", None), **context))
        else:
            inp = _DEFAULT_SOCKET
        return pkt, [0] * isa.BPF_MEMWORDS, inp
    if profile == "seccomp":
        if context:
            raise UsageError(f"run: seccomp takes no context, got {', '.join(context)}")
        return b"", [0] * isa.BPF_MEMWORDS, seccomp_input(data)
    if profile == "pio":
        mem = context.pop("mem", None)
        if context:
            raise UsageError(f"run: pio takes only mem=, got {', '.join(context)}")
        mem = [0] * PIO_MEM_DEFAULT if mem is None else check_mem(mem)
        if type(data) is not PioEvent:
            raise UsageError(f"run: a pio input is a PioEvent, not {type(data).__name__}")
        return b"", mem, pio_input(data.checked(), mem)
    raise UsageError(f"run: unknown profile {profile!r} (expected one of {', '.join(PROFILES)})")


# --- the pre-decoded fast loop ------------------------------------------------

# Op kinds of the pre-decoded form, roughly in order of how often tcpdump output uses them.
(JEQ_K, LDH_ABS, RET_K, LDB_ABS, JSET_K, LD_ABS, JGT_K, LDX_MSH, LD_IND, JGE_K, JA,
 RET_A, LD_IMM, LDX_IMM, LD_MEM, LDX_MEM, ST, STX, TAX, TXA, LD_LEN, LDX_LEN,
 ADD_K, SUB_K, MUL_K, DIV_K, MOD_K, AND_K, OR_K, XOR_K, LSH_K, RSH_K, NEG,
 ADD_X, SUB_X, MUL_X, DIV_X, MOD_X, AND_X, OR_X, XOR_X, LSH_X, RSH_X,
 JEQ_X, JGT_X, JGE_X, JSET_X, LD_GEN, LD_ANC, RET_X) = range(50)

_ALU_K = {isa.BPF_ADD: ADD_K, isa.BPF_SUB: SUB_K, isa.BPF_MUL: MUL_K, isa.BPF_DIV: DIV_K,
          isa.BPF_MOD: MOD_K, isa.BPF_AND: AND_K, isa.BPF_OR: OR_K, isa.BPF_XOR: XOR_K,
          isa.BPF_LSH: LSH_K, isa.BPF_RSH: RSH_K}
_ALU_X = {isa.BPF_ADD: ADD_X, isa.BPF_SUB: SUB_X, isa.BPF_MUL: MUL_X, isa.BPF_DIV: DIV_X,
          isa.BPF_MOD: MOD_X, isa.BPF_AND: AND_X, isa.BPF_OR: OR_X, isa.BPF_XOR: XOR_X,
          isa.BPF_LSH: LSH_X, isa.BPF_RSH: RSH_X}
_JMP_K = {isa.BPF_JEQ: JEQ_K, isa.BPF_JGT: JGT_K, isa.BPF_JGE: JGE_K, isa.BPF_JSET: JSET_K}
_JMP_X = {isa.BPF_JEQ: JEQ_X, isa.BPF_JGT: JGT_X, isa.BPF_JGE: JGE_X, isa.BPF_JSET: JSET_X}
_ABS_FAST = {4: LD_ABS, 2: LDH_ABS, 1: LDB_ABS}


def predecode(program, profile: str = "socket") -> list[tuple]:
    """Turn a program into ``(op, k, t, f)`` tuples for the fast loop.

    ``t``/``f`` are absolute jump targets; for a packet load ``t`` is its size
    and ``f`` its mode.  Socket absolute loads at non-negative offsets become
    inline byte reads; every other input access goes through the profile's
    loader.  Raises :class:`VMError` for what no verified program contains.
    """
    program = Program(program)   # validates Insn fields (u16/u8/u8/u32); free for a Program
    ops = []
    n = len(program)
    for pc, insn in enumerate(program):
        code, jt, jf, k = insn
        info = OPCODES.get(code)
        if info is None:
            raise VMError(f"unknown opcode {code:#06x}", pc=pc)
        cls = info.cls
        if cls in (BPF_LD, BPF_LDX):
            mode = info.mode
            if mode == BPF_IMM:
                ops.append((LD_IMM if cls == BPF_LD else LDX_IMM, k, 0, 0))
            elif mode == BPF_MEM:
                ops.append((LD_MEM if cls == BPF_LD else LDX_MEM, k, 0, 0))
            elif mode == BPF_LEN:
                ops.append((LD_LEN if cls == BPF_LD else LDX_LEN, k, 0, 0))
            elif mode == BPF_MSH:
                ops.append((LDX_MSH, k, 1, BPF_MSH))
            elif mode == BPF_IND:
                ops.append((LD_IND, k, info.size, BPF_IND))
            elif k >= SKF_AD_OFF and (profile != "socket" or k in isa.ANCILLARY_BY_K):
                ops.append((LD_ANC, k, info.size, BPF_ABS))
            elif profile == "socket" and k < 0x80000000:
                ops.append((_ABS_FAST[info.size], k, k + info.size, BPF_ABS))
            else:
                ops.append((LD_GEN, k, info.size, BPF_ABS))
        elif cls == BPF_ST or cls == BPF_STX:
            ops.append((ST if cls == BPF_ST else STX, k, 0, 0))
        elif cls == BPF_ALU:
            if info.op == isa.BPF_NEG:
                ops.append((NEG, 0, 0, 0))
            elif info.src == isa.BPF_X:
                ops.append((_ALU_X[info.op], 0, 0, 0))
            else:
                ops.append((_ALU_K[info.op], k, 0, 0))
        elif cls == BPF_JMP:
            if info.op == isa.BPF_JA:
                target = pc + 1 + k
                if target >= n:
                    raise VMError(f"ja target {target} is past the end", pc=pc)
                ops.append((JA, 0, target, target))
            else:
                t, f = pc + 1 + jt, pc + 1 + jf
                if max(t, f) >= n:
                    raise VMError(f"jump target {max(t, f)} is past the end", pc=pc)
                table = _JMP_X if info.src == isa.BPF_X else _JMP_K
                ops.append((table[info.op], k, t, f))
        elif cls == BPF_RET:
            ops.append({isa.BPF_K: (RET_K, k, 0, 0), isa.BPF_A: (RET_A, 0, 0, 0),
                        isa.BPF_X: (RET_X, 0, 0, 0)}[info.src])
        else:  # BPF_MISC
            ops.append((TAX if info.op == isa.BPF_TAX else TXA, 0, 0, 0))
    if not ops or ops[-1][0] not in (RET_K, RET_A, RET_X, JA):
        # A verified program ends with ret; guard the loop against running off the end.
        ops.append((LD_GEN, 0, 0, -1))
    return ops


def execute(ops, pkt: bytes, mem: list, inp: _Input):
    """Run pre-decoded ``ops``; return ``(verdict or None on an abort, A, executed)``."""
    load = inp.load
    a = x = 0
    pc = 0
    try:    # free in CPython 3.11 unless raised: M[k] past the memory, a packet not bytes-like
        n = len(pkt)
        length = n if inp.length is None else inp.length
        for count in _count(1):     # counts executed instructions at C speed
            op, k, t, f = ops[pc]
            if op == JEQ_K:
                pc = t if a == k else f
            elif op == LDH_ABS:
                if t > n:
                    return None, a, count
                a = (pkt[k] << 8) | pkt[k + 1]
                pc += 1
            elif op == RET_K:
                return k, a, count
            elif op == LDB_ABS:
                if t > n:
                    return None, a, count
                a = pkt[k]
                pc += 1
            elif op == JSET_K:
                pc = t if a & k else f
            elif op == LD_ABS:
                if t > n:
                    return None, a, count
                a = int.from_bytes(pkt[k:t], "big")
                pc += 1
            elif op == JGT_K:
                pc = t if a > k else f
            elif op == LDX_MSH or op == LD_IND:
                off = k if op == LDX_MSH else (x + k) & U32
                if pkt and off + t <= n:
                    v = int.from_bytes(pkt[off:off + t], "big")
                else:
                    v = load(pkt, off, t)
                    if v is None:
                        return None, a, count
                if op == LDX_MSH:
                    x = (v & 0xf) << 2
                else:
                    a = v
                pc += 1
            elif op == JGE_K:
                pc = t if a >= k else f
            elif op == JA:
                pc = t
            elif op == RET_A:
                return a, a, count
            elif op <= LDX_LEN:
                if op == LD_IMM:
                    a = k
                elif op == LDX_IMM:
                    x = k
                elif op == LD_MEM:
                    a = mem[k]
                elif op == LDX_MEM:
                    x = mem[k]
                elif op == ST:
                    mem[k] = a
                elif op == STX:
                    mem[k] = x
                elif op == TAX:
                    x = a
                elif op == TXA:
                    a = x
                elif op == LD_LEN:
                    a = length
                else:
                    x = length
                pc += 1
            elif op <= NEG:
                if op == ADD_K:
                    a = (a + k) & U32
                elif op == SUB_K:
                    a = (a - k) & U32
                elif op == MUL_K:
                    a = (a * k) & U32
                elif op == DIV_K or op == MOD_K:
                    if not k:
                        return None, a, count
                    a = a // k if op == DIV_K else a % k
                elif op == AND_K:
                    a &= k
                elif op == OR_K:
                    a |= k
                elif op == XOR_K:
                    a ^= k
                elif op == LSH_K:
                    a = (a << (k & 31)) & U32
                elif op == RSH_K:
                    a >>= k & 31
                else:
                    a = -a & U32
                pc += 1
            elif op <= RSH_X:
                if op == ADD_X:
                    a = (a + x) & U32
                elif op == SUB_X:
                    a = (a - x) & U32
                elif op == MUL_X:
                    a = (a * x) & U32
                elif op == DIV_X or op == MOD_X:
                    if not x:  # the converter's "if X == 0 return 0"
                        return None, a, count
                    a = a // x if op == DIV_X else a % x
                elif op == AND_X:
                    a &= x
                elif op == OR_X:
                    a |= x
                elif op == XOR_X:
                    a ^= x
                elif op == LSH_X:
                    a = (a << (x & 31)) & U32
                else:
                    a >>= x & 31
                pc += 1
            elif op <= JSET_X:
                if op == JEQ_X:
                    pc = t if a == x else f
                elif op == JGT_X:
                    pc = t if a > x else f
                elif op == JGE_X:
                    pc = t if a >= x else f
                else:
                    pc = t if a & x else f
            elif op == LD_GEN:
                if f == -1:
                    raise VMError("ran past the last instruction", pc=pc)
                v = load(pkt, k, t)
                if v is None:
                    return None, a, count
                a = v
                pc += 1
            elif op == LD_ANC:
                v = inp.anc(pkt, k, a, x)
                if v is None:
                    return None, a, count
                if v == EXIT_WITH_A:
                    return a, a, count
                a = v
                pc += 1
            else:  # RET_X: bpf_asm emits it; the kernel refuses it
                return x, a, count
    except IndexError:
        err = scratch_error(ops[pc], pc, mem)
        if err is None:
            raise
        raise err from None
    except TypeError:
        err = bad_packet(pkt)
        if err is None:
            raise
        raise err from None


_MEM_TEXT = {LD_MEM: "ld M[{}]", LDX_MEM: "ldx M[{}]", ST: "st M[{}]", STX: "stx M[{}]"}


def scratch_error(op_tuple, pc: int, mem) -> VMError | None:
    """The VMError for ``M[k]`` outside ``mem`` at ``pc`` (an unverified program), else None."""
    op, k = op_tuple[0], op_tuple[1]
    if op not in _MEM_TEXT or k < len(mem):
        return None
    return VMError(f"scratch word M[{k}] is out of range (the memory has {len(mem)} words)",
                   pc=pc, insn=_MEM_TEXT[op].format(k))


def _finish(profile: str, verdict):
    if profile == "seccomp":
        return SeccompResult(verdict or 0)
    return verdict or 0


def run(program, data, *, profile: str = "socket", **context):
    """Run ``program`` on one input and return its verdict (0 after an abort).

    ``socket``: ``data`` is the packet; keyword arguments are
    :class:`SocketContext` fields (or ``context=SocketContext(...)``).
    ``seccomp``: ``data`` is a :class:`~bpfio.abi.seccomp.SeccompData` (or its
    64 bytes); the result is a :class:`~bpfio.abi.seccomp.SeccompResult`.
    ``pio``: ``data`` is a :class:`~bpfio.abi.pio.PioEvent`; ``mem=`` the
    binding's shared words, changed in place by ``st``/``stx``.
    """
    pkt, mem, inp = _prepare(profile, data, dict(context))
    verdict, _, _ = execute(predecode(program, profile), pkt, mem, inp)
    return _finish(profile, verdict)


def outcome(program, data, *, profile: str = "socket", **context):
    """Like :func:`run` but return ``(verdict or None when aborted, A, executed)``."""
    pkt, mem, inp = _prepare(profile, data, dict(context))
    return execute(predecode(program, profile), pkt, mem, inp)


class Interpreter:
    """A program decoded once, run many times: ``Interpreter(prog)(packet)``.

    For the socket profile the context is fixed at construction
    (``Interpreter(prog, ifindex=2)``), and calling the instance goes
    straight to the fast loop.  :meth:`run` takes a per-call context for any
    profile, with the same arguments and result as :func:`run`.
    """

    def __init__(self, program, *, profile: str = "socket", **context):
        self.program = program
        self.profile = profile
        self.ops = predecode(program, profile)
        if profile == "socket":
            ctx = socket_context(context.pop("context", None), **context)
            inp = _DEFAULT_SOCKET if ctx == DEFAULT_CONTEXT and ctx.rand is None else socket_input(ctx)
            # A calling class of its own whose __call__ IS the closure (no method frame).
            self.__class__ = type("SocketInterpreter", (Interpreter,),
                                  {"__call__": staticmethod(_socket_call(self.ops, inp))})
        elif context:
            raise UsageError("Interpreter: a context at construction is only for the socket profile")

    def __call__(self, data, **context):
        """Run on one input; same arguments and result as :func:`run`."""
        return self.run(data, **context)

    def run(self, data, **context):
        """Run on one input with an optional per-call context."""
        pkt, mem, inp = _prepare(self.profile, data, context)
        verdict, _, _ = execute(self.ops, pkt, mem, inp)
        return _finish(self.profile, verdict)


def _socket_call(ops, inp):
    """The socket hot path: one closure, scratch memory only when the program uses it."""
    uses_mem = any(op[0] in (LD_MEM, LDX_MEM, ST, STX) for op in ops)
    no_mem: list = []

    def call(data):
        return execute(ops, data, [0] * 16 if uses_mem else no_mem, inp)[0] or 0
    return call


def pio_runner(program):
    """Return ``f(port, size, direction, data, offset, vcpu, ticks, ns, mem)`` for the engine.

    The result is ``(verdict or None on a runtime fault, A at return, executed)``,
    the same as :meth:`bpfio.exec.compiler.CompiledProgram.pio`.
    """
    ops = predecode(program, "pio")

    def pio(port, size, direction, data, offset, vcpu, ticks, ns, mem):
        header = (port, size, direction, data & U32, offset, vcpu, ticks & U32,
                  (ticks >> 32) & U32, ns & U32, (ns >> 32) & U32)
        return execute(ops, b"", mem, _pio_words_input(header, mem))
    pio.pio = pio
    return pio


# --- single stepping and traces ---------------------------------------------
