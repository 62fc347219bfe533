"""The free variables and loads of each profile: what the prover quantifies over.

:class:`SocketInputs` (packet bytes, length, the socket context),
:class:`SeccompInputs` (``struct seccomp_data``) and :class:`PioInputs` (a
port event and the shared words).  Each implements :class:`.encode.Inputs`:
``load`` and ``ancillary`` return terms with exactly the interpreter's rules.
"""

from __future__ import annotations

import z3

from bpfio import isa
from bpfio.errors import UsageError
from bpfio.exec.skb import PACKET_MAX
from bpfio.isa import SKF_AD, SKF_AD_OFF
from bpfio.values import check_choice, check_int, check_uint
from bpfio.prove.encode import _NET, BV, Inputs, ProveError, _alu, bv, select

_LL = 0xffe00000      # SKF_LL_OFF as u32: [_LL, _NET) reads the link-layer header + (off - _LL)

# Every length ``ld len`` can return: skb->len is a u32, but the kernel's own bounds checks
# compare it as an int (``skb_copy_bits``: ``offset > (int)skb->len - len``), and a socket
# buffer is at most INT_MAX (``sk_sndbuf``), so no packet reaches 2**31 bytes.  The longest
# AF_UNIX datagram Linux 6.18 delivers is 4,263,616 bytes (4 MiB linear plus 17 pages).
LEN_MAX = 0x7fffffff
# How far before the data a header may start (``context="free"``): a TCP or UDP filter's data
# begins at the transport header, with the network and link headers before it; IPv6 extension
# headers are at most 64 KiB, so 1 MiB (the SKF_NET_OFF window) is ample.
HEAD_MAX = 0x100000


def _concat(parts):
    """Big-endian bytes as one zero-extended 32-bit term."""
    term = parts[0] if len(parts) == 1 else z3.Concat(*parts)
    return term if len(parts) == 4 else z3.ZeroExt(32 - 8 * len(parts), term)


# SocketContext field -> (SKF_AD_* name, the largest value the interpreter's load returns).
CONTEXT_FIELDS = {
    "protocol": ("PROTOCOL", 0xffff), "pkt_type": ("PKTTYPE", 7), "mark": ("MARK", isa.U32),
    "queue": ("QUEUE", 0xffff), "rxhash": ("RXHASH", isa.U32), "cpu": ("CPU", isa.U32),
    "vlan_tci": ("VLAN_TAG", 0xffff), "vlan_present": ("VLAN_TAG_PRESENT", 1),
    "vlan_tpid": ("VLAN_TPID", 0xffff), "poff": ("PAY_OFFSET", isa.U32),
    "ifindex": ("IFINDEX", isa.U32), "hatype": ("HATYPE", 0xffff)}
CONTEXTS = ("default", "free")


def random_stream():
    """The values ``ld rand`` reads, in order: one fresh array per set of inputs.

    Both programs of an equivalence query share one set of inputs, so one stream; a
    query that wants independent randomness (offload's replay) makes a second set.
    """
    return z3.FreshConst(z3.ArraySort(z3.BitVecSort(BV), z3.BitVecSort(BV)), "rand")


class SocketInputs(Inputs):
    """Packet bytes (an array), a free length up to ``max_len``, and the socket context.

    ``context="default"``: the interpreter's default AF_UNIX socket (every
    ancillary field 0, no device: ``ifidx``/``hatype`` return A).
    ``context="free"``: every ancillary field is free within what its load can
    return, and the socket may or may not have a device (then ``ifidx`` and
    ``hatype`` are free too); the network header starts anywhere from
    ``HEAD_MAX`` bytes before the data on (``net_off``), and the link-layer
    header is absent or starts anywhere from there on (``ll_off``).  The
    bytes before the data are the same array as the packet's, at negative
    (wrapped) indices: ``len <= LEN_MAX < 2**31`` keeps them apart.
    ``ld rand`` reads one random stream shared by both programs: the n-th read of a run
    gets its n-th value (``get_random_u32`` per load, as in the kernel), so a program is
    equivalent to itself and to any rewrite that reads the stream the same way.
    ``nla``/``nlan`` are one
    uninterpreted function of (A, X, len, bytes), shared by both programs; a
    counterexample that depends on it is checked in the interpreter before it
    is reported.
    """

    profile = "socket"

    def __init__(self, max_len: int = LEN_MAX, context: str = "default"):
        if context not in CONTEXTS:
            raise ProveError(f"unknown socket context '{context}' (expected default or free)")
        self.context = context
        self.ctx = {name: z3.BitVec(f"ctx_{name}", BV) for name in CONTEXT_FIELDS} \
            if context == "free" else {}
        self.device = z3.Bool("ctx_device")
        self.net_off = z3.BitVec("ctx_net_off", BV)
        self.ll_off = z3.BitVec("ctx_ll_off", BV)
        self.ll_set = z3.Bool("ctx_ll_set")
        if not 0 <= max_len <= LEN_MAX:
            raise ProveError(f"max_len {max_len} is outside 0..{LEN_MAX}")
        self.max_len = max_len
        self.pkt = z3.Array("pkt", z3.BitVecSort(BV), z3.BitVecSort(8))
        self.length = z3.BitVec("len", BV)
        self.random = random_stream()
        self.nla = z3.Function("nlattr", z3.BitVecSort(BV), z3.BitVecSort(BV), z3.BitVecSort(BV),
                               self.pkt.sort(), z3.BitVecSort(BV))
        self.nlan = z3.Function("nlattr_nest", z3.BitVecSort(BV), z3.BitVecSort(BV),
                                z3.BitVecSort(BV), self.pkt.sort(), z3.BitVecSort(BV))
        self.mem0 = (0,) * isa.BPF_MEMWORDS

    def constraints(self):
        facts = [z3.ULE(self.length, self.max_len)] + [
            z3.ULE(var, CONTEXT_FIELDS[name][1]) for name, var in self.ctx.items()]
        if self.ctx:
            facts += [self.net_off >= -HEAD_MAX, self.ll_off >= -HEAD_MAX]
        return facts

    def preferred(self):
        zeros = z3.K(z3.BitVecSort(BV), z3.BitVecVal(0, 8))
        ladder = [z3.ULE(self.length, n) for n in (0, 8, 16, 24, 32, 48, 64, 128, 256, 1514,
                                                   0xffff, 0x10000, 1 << 17, 1 << 20, 1 << 22,
                                                   PACKET_MAX)]
        ctx = []
        if self.ctx:
            near = [z3.And(off >= -n, off <= n) for off in (self.net_off, self.ll_off)
                    for n in (1, 20, 64)]
            ctx = [z3.Not(self.device), self.net_off == 0, z3.Not(self.ll_set)] + near + [
                var == 0 for var in self.ctx.values()]
        return ladder + ctx + [self.pkt == zeros] + [z3.Select(self.pkt, i) == 0 for i in range(64)]

    def context_values(self, model) -> dict:
        """The SocketContext fields a model chose (free context only; defaults left out).

        ``head`` is not among them: it is bytes of the packet array (see :meth:`head_start`).
        """
        if not self.ctx:
            return {}
        device = z3.is_true(model.eval(self.device, model_completion=True))
        out = {}
        net = isa.to_s32(model.eval(self.net_off, model_completion=True).as_long())
        if net:
            out["net_off"] = net
        if z3.is_true(model.eval(self.ll_set, model_completion=True)):
            out["ll_off"] = isa.to_s32(model.eval(self.ll_off, model_completion=True).as_long())
        for name, var in self.ctx.items():
            value = model.eval(var, model_completion=True).as_long()
            if name in ("ifindex", "hatype"):
                if device:
                    out[name] = value
            elif value:
                out[name] = value
        return out

    @staticmethod
    def head_start(values: dict) -> int:
        """Where the bytes before the data begin (<= 0) for :meth:`context_values`' answer."""
        return min(0, values.get("net_off", 0), values.get("ll_off") or 0)

    def byte(self, i):
        return z3.Select(self.pkt, bv(i))

    def load(self, state, off, size):
        if self.ctx and not (isinstance(off, int) and off < 0x80000000):
            return self._free_load(off, size)     # a header offset, or one not known yet
        if isinstance(off, int):
            if off < 0x80000000:
                start = off
            elif off >= _NET:
                start = off - _NET
            else:
                return False, 0        # SKF_LL_OFF without a link layer, or below it
            if start + size > self.max_len:
                return False, 0
            ok = z3.UGE(self.length, start + size)
            return ok, _concat([self.byte(start + i) for i in range(size)])
        neg = z3.UGE(off, 0x80000000)
        start = z3.If(neg, off - _NET, off)
        ok = z3.And(z3.Or(z3.Not(neg), z3.UGE(off, _NET)),
                    z3.UGE(self.length, size), z3.ULE(start, self.length - size))
        return ok, _concat([z3.Select(self.pkt, start + i) for i in range(size)])

    def _free_load(self, off, size):
        """A load with the header offsets free (``bpf_skb_load_helper_*`` rules).

        ``[k]`` with k < 2**31 reads the data, in bounds when ``k + size <= len``;
        ``SKF_NET_OFF + n`` reads at ``net_off + n`` and ``SKF_LL_OFF + n`` at
        ``ll_off + n`` (only when there is a link-layer header), in bounds when
        that position (possibly before the data) plus ``size`` is at most ``len``;
        any other negative offset faults.  Positions are added in 64 bits.
        """
        off = bv(off)
        neg = z3.UGE(off, 0x80000000)
        net = z3.UGE(off, _NET)
        ll = z3.And(z3.UGE(off, _LL), z3.Not(net))
        base = z3.If(net, self.net_off, self.ll_off)
        pos = z3.SignExt(32, base) + z3.ZeroExt(32, off - z3.If(net, bv(_NET), bv(_LL)))
        head_ok = z3.And(z3.Or(net, z3.And(ll, self.ll_set)),
                         pos + size <= z3.ZeroExt(32, self.length))
        data_ok = z3.And(z3.UGE(self.length, size), z3.ULE(off, self.length - size))
        ok = z3.If(neg, head_ok, data_ok)
        start = z3.If(neg, z3.Extract(31, 0, pos), off)
        return ok, _concat([z3.Select(self.pkt, start + i) for i in range(size)])

    def ancillary(self, state, k, pc, tag):
        off = k - SKF_AD_OFF
        if self.ctx:
            for name, (kernel_name, _) in CONTEXT_FIELDS.items():
                if off == SKF_AD[kernel_name]:
                    if name in ("ifindex", "hatype"):   # without a device: end returning A
                        return "exit_unless", (self.device, self.ctx[name])
                    return "value", self.ctx[name]
        if off in (SKF_AD["IFINDEX"], SKF_AD["HATYPE"]):
            return "exit", 0          # no device on the default AF_UNIX socket
        if off == SKF_AD["ALU_XOR_X"]:
            return "value", _alu(isa.BPF_XOR, state.a, state.x)
        if off == SKF_AD["RANDOM"]:      # the n-th read of a run: the stream's n-th value
            return "rand", z3.Select(self.random, bv(state.nrand))
        if off in (SKF_AD["NLATTR"], SKF_AD["NLATTR_NEST"]):
            f = self.nla if off == SKF_AD["NLATTR"] else self.nlan
            return "value", f(bv(state.a), bv(state.x), self.length, self.pkt)
        return "value", 0             # protocol, mark, ... are 0 in the default context


class SeccompInputs(Inputs):
    """The sixteen host-order words of ``struct seccomp_data``, all free."""

    profile = "seccomp"

    def __init__(self):
        self.words = [z3.BitVec(f"w{i}", BV) for i in range(16)]
        self.length = 64
        self.mem0 = (0,) * isa.BPF_MEMWORDS

    def preferred(self):
        from bpfio.abi.seccomp import AUDIT_ARCH_X86_64
        return [self.words[1] == AUDIT_ARCH_X86_64] + [w == 0 for w in self.words]

    def load(self, state, off, size):
        if size != 4:
            return False, 0
        if isinstance(off, int):
            if off & 3 or off >= 64:
                return False, 0
            return True, self.words[off >> 2]
        ok = z3.And((off & 3) == 0, z3.ULT(off, 64))
        return ok, select([(off == 4 * i, w) for i, w in enumerate(self.words[:-1])], self.words[-1])


class PioInputs(Inputs):
    """Every header word of a port event, every shared word (``M[k]`` is word k), free.

    The event is one ``bpfio run --event`` can express: size 1, 2 or 4,
    direction IN or OUT, port < 0x10000, an OUT's data fits the size and an
    IN's data is 0.  ``ports=(base, length)`` restricts it to one binding's
    ports (``offset`` is then ``port - base``).  ``ld rand`` reads the shared
    random stream, as in the socket profile.
    """

    profile = "pio"
    NAMES = ("port", "size", "dir", "data", "offset", "vcpu", "ticks", "ticks_hi", "ns", "ns_hi")

    def __init__(self, mem_words: int = 16, ports: tuple | None = None):
        from bpfio.abi.pio import PIO_HDR_LEN
        self.ports = ports          # (base, length) of a binding: port in range, offset = port - base
        self.header = [z3.BitVec(name, BV) for name in self.NAMES]
        self.mem0 = tuple(z3.BitVec(f"m{i}", BV) for i in range(mem_words))
        self.length = PIO_HDR_LEN + 4 * mem_words
        self.random = random_stream()

    def field(self, name):
        """The free variable of a header field."""
        return self.header[self.NAMES.index(name)]

    def constraints(self):
        from bpfio.abi.pio import PIO_IN, PIO_OUT
        port, size, direction, data = self.header[:4]
        facts = [z3.ULE(port, 0xffff), z3.Or(size == 1, size == 2, size == 4),
                 z3.Or(direction == PIO_IN, direction == PIO_OUT),
                 z3.Implies(direction == PIO_IN, data == 0),
                 z3.Implies(size == 1, z3.ULE(data, 0xff)),
                 z3.Implies(size == 2, z3.ULE(data, 0xffff))]
        if self.ports is not None:
            base, length = self.ports
            facts += [z3.UGE(port, base), z3.ULT(port, base + length),
                      self.field("offset") == port - base]
        return facts

    def preferred(self):
        keep = ("size", "dir")
        return [v == 0 for name, v in zip(self.NAMES, self.header) if name not in keep] + \
            [m == 0 for m in self.mem0]

    def _words(self, state):
        return list(self.header) + list(state.mem)

    def load(self, state, off, size):
        words = self._words(state)
        if isinstance(off, int):
            if off + size > self.length:
                return False, 0
            if size == 4 and not off & 3:
                return True, words[off >> 2]
            parts = [z3.Extract(31 - 8 * (i & 3), 24 - 8 * (i & 3), bv(words[i >> 2]))
                     for i in range(off, off + size)]
            return True, _concat(parts)
        ok = z3.And(z3.ULE(off, self.length - size))
        arr = z3.K(z3.BitVecSort(BV), z3.BitVecVal(0, 8))
        for j, w in enumerate(words):
            for b in range(4):
                arr = z3.Store(arr, 4 * j + b, z3.Extract(31 - 8 * b, 24 - 8 * b, bv(w)))
        return ok, _concat([z3.Select(arr, off + i) for i in range(size)])

    def ancillary(self, state, k, pc, tag):
        if k == SKF_AD_OFF + SKF_AD["RANDOM"]:    # the n-th read: the stream's n-th value
            return "rand", z3.Select(self.random, bv(state.nrand))
        return "fault", 0


def _check_options(mem_words, max_len, ports, context) -> None:
    """UsageError for prover options of the wrong type or range (one place for every entry)."""
    from bpfio.abi.pio import PIO_MEM_MAX, PIO_MEM_MIN
    check_int("prove: mem_words", mem_words, PIO_MEM_MIN, PIO_MEM_MAX)
    check_uint("prove: max_len", max_len, LEN_MAX)
    check_choice("prove: context", context, ("default", "free"))
    if ports is not None:
        if not isinstance(ports, (tuple, list)) or len(ports) != 2:
            raise UsageError(f"prove: ports must be (base, count), not {ports!r}")
        base = check_uint("prove: ports base", ports[0], 0xffff)
        check_int("prove: ports count", ports[1], 1, 0x10000 - base)


def inputs_for(profile: str, *, mem_words: int = 16, max_len: int = LEN_MAX,
               ports: tuple | None = None, context: str = "default") -> Inputs:
    """A fresh set of free variables for ``profile`` (``ports`` pio, ``context`` socket only)."""
    _check_options(mem_words, max_len, ports, context)
    if profile == "socket":
        return SocketInputs(max_len, context)
    if profile == "seccomp":
        return SeccompInputs()
    if profile == "pio":
        return PioInputs(mem_words, ports)
    raise ProveError(f"unknown profile '{profile}' (expected socket, seccomp or pio)")
