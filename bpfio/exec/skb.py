"""What a socket filter sees beyond its bytes: the socket context, header offsets, ancillary loads.

The defaults are what Linux 6.18 gives a filter on an AF_UNIX datagram socket (measured with
:mod:`bpfio.exec.kernel_run`).  ``SKF_NET_OFF + n`` and ``SKF_LL_OFF + n`` resolve through
:func:`skb_offset`; ``ld`` of ``SKF_AD_OFF + n`` reads :func:`ancillary`, whose
``EXIT_WITH_A`` result ends the program returning A (``ifidx``/``hatype`` without a
device, as the kernel's converted code does).
"""

from __future__ import annotations

import random as _random
from dataclasses import dataclass, field, replace
from typing import Callable

from bpfio.errors import UsageError
from bpfio.isa import SKF_AD, U32
from bpfio.values import check_int, check_uint


_S32_MIN_LL = -0x200000   # SKF_LL_OFF as a signed offset


_S32_MIN_NET = -0x100000  # SKF_NET_OFF as a signed offset


EXIT_WITH_A = -1          # an ancillary handler's "end the program returning A"


@dataclass(frozen=True, slots=True)
class SocketContext:
    """What a socket filter's ancillary loads and header offsets see.

    The defaults are what Linux 6.18 gives a filter on an AF_UNIX datagram
    socket, measured with :mod:`bpfio.exec.kernel_run`: every field 0, no device
    (``ifindex``/``hatype`` None: those loads end the program returning A),
    the network header at offset 0 of the data and no link-layer header
    (``ll_off`` None).  On a UDP or TCP socket the filter's data starts at the
    transport header and the headers lie before it: ``net_off`` and ``ll_off``
    are then negative and ``head`` holds the bytes from the lowest header up
    to the data (on loopback UDP/IPv4: ``net_off=-20``, ``ll_off=-34`` and
    ``head`` the 14-byte Ethernet header plus the 20-byte IP header).  ``cpu`` is the sending CPU (0 when pinned there);
    ``rand`` supplies ``ld rand`` (default: ``random.getrandbits(32)``).
    """

    protocol: int = 0          # SKF_AD_PROTOCOL: ntohs(skb->protocol)
    pkt_type: int = 0          # SKF_AD_PKTTYPE
    ifindex: int | None = None  # SKF_AD_IFINDEX; None = no device
    hatype: int | None = None   # SKF_AD_HATYPE; None = no device
    mark: int = 0
    queue: int = 0
    rxhash: int = 0
    cpu: int = 0
    vlan_tci: int = 0
    vlan_present: int = 0
    vlan_tpid: int = 0
    poff: int = 0              # SKF_AD_PAY_OFFSET (flow dissector; 0 when unknown)
    net_off: int = 0           # network header offset from the data start (< 0: before it)
    ll_off: int | None = None  # link-layer header offset; None = not set
    head: bytes = b""          # the bytes just before the data (headers a negative offset reads)
    rand: Callable[[], int] | None = field(default=None, compare=False)

    def __post_init__(self):
        # The kernel's widths (what each ancillary load reads); out of range is an error,
        # never masked.  Header offsets are signed ints: a header may sit before the data.
        for name, top in _WIDTHS.items():
            value = getattr(self, name)
            if value is not None or name not in ("ifindex", "hatype", "ll_off"):
                if name in ("net_off", "ll_off"):
                    check_int(f"socket context: {name}", value, -0x80000000, 0x7fffffff)
                else:
                    check_uint(f"socket context: {name}", value, top)
        if not isinstance(self.head, (bytes, bytearray)):
            raise UsageError(f"socket context: head must be bytes, not {type(self.head).__name__}")
        if self.rand is not None and not callable(self.rand):
            raise UsageError(f"socket context: rand must be callable, not {type(self.rand).__name__}")

    def rand_u32(self) -> int:
        """One ``ld rand`` value."""
        if self.rand is None:
            return _random.getrandbits(32)
        return check_uint("socket context: rand()", self.rand(), U32)


_WIDTHS = {"protocol": 0xffff, "pkt_type": 7, "ifindex": U32, "hatype": 0xffff, "mark": U32,
           "queue": 0xffff, "rxhash": U32, "cpu": U32, "vlan_tci": 0xffff, "vlan_present": 1,
           "vlan_tpid": 0xffff, "poff": U32, "net_off": 0xffff, "ll_off": 0xffff}


DEFAULT_CONTEXT = SocketContext()


def socket_context(context=None, **fields) -> SocketContext:
    """Build a SocketContext from an existing one and/or keyword fields."""
    base = context if context is not None else DEFAULT_CONTEXT
    if type(base) is not SocketContext:
        raise UsageError(f"socket context: context= must be a SocketContext, "
                         f"not {type(base).__name__}")
    unknown = set(fields) - set(SocketContext.__dataclass_fields__)
    if unknown:
        raise UsageError(f"socket context: unknown field(s): {', '.join(sorted(unknown))}")
    return replace(base, **fields) if fields else base


def bad_packet(pkt) -> UsageError | None:
    """The error for a socket input that is not bytes-like (None when it is bytes-like)."""
    if isinstance(pkt, (bytes, bytearray, memoryview)):
        return None
    return UsageError(f"run: a packet is bytes, not {type(pkt).__name__}")


def skb_offset(off: int, net_off: int, ll_off: int | None) -> int | None:
    """Map a signed load offset to a data offset (``bpf_skb_load_helper`` rules), or None."""
    if off >= 0:
        return off
    if off >= _S32_MIN_NET:
        return off - _S32_MIN_NET + net_off
    if off >= _S32_MIN_LL and ll_off is not None:
        return off - _S32_MIN_LL + ll_off
    return None


def skb_load(pkt: bytes, off: int, size: int, net_off: int = 0, ll_off: int | None = None,
             head: bytes = b""):
    """Read ``size`` big-endian bytes at signed offset ``off``; None when out of bounds.

    A header offset may resolve before the data (into ``head``, the bytes just
    before it); as in ``bpf_skb_load_helper_*`` the load is in bounds when it
    ends within the packet (``start + size <= len``).
    """
    start = skb_offset(off, net_off, ll_off)
    if start is None or start + size > len(pkt):
        return None
    if start >= 0:
        return int.from_bytes(pkt[start:start + size], "big")
    if start < -len(head):
        return None             # before the lowest header the context describes
    end = start + size
    data = head[len(head) + start:len(head) + min(end, 0)] + pkt[:max(end, 0)]
    return int.from_bytes(data, "big")


PACKET_MAX = 1 << 26      # the longest packet a hex text may describe (64 MiB)
_RUN = 8                  # hex_text writes runs of this many equal bytes or more as XX*N


def hex_text(data: bytes) -> str:
    """``data`` as hex; a run of 8 or more equal bytes is a ``:XX*N:`` token (N decimal).

    ``''`` when empty; :func:`parse_hex` reads it back.
    """
    out, i, n = [], 0, len(data)
    while i < n:
        j = i
        while j < n and data[j] == data[i]:
            j += 1
        if j - i >= _RUN:
            out.append(f":{data[i]:02x}*{j - i}:")
        else:
            out.append(data[i:j].hex())
        i = j
    return "".join(out).replace("::", ":").strip(":") or "''"


def parse_hex(text: str) -> bytes:
    """Bytes from hex text: a ``0x`` prefix, spaces and colons allowed, ``XX*N`` repeats a byte.

    A repeat is a token of its own (``00*70000:01`` is 70,000 zeros and a 1).
    Raises ValueError with the problem for bad digits or a length past
    :data:`PACKET_MAX`.
    """
    text = text.strip()
    if text.startswith(("0x", "0X")):
        text = text[2:]
    out = bytearray()
    for token in text.replace(":", " ").split():
        byte, star, count = token.partition("*")
        if star:
            if len(byte) != 2 or not count.isdigit() or len(count) > 9:
                raise ValueError(f"'{token[:20]}': a repeat is one byte, '*' and a count")
            if len(out) + int(count) > PACKET_MAX:
                raise ValueError(f"longer than {PACKET_MAX} bytes")
            out += bytes.fromhex(byte) * int(count)
        else:
            out += bytes.fromhex(token)
        if len(out) > PACKET_MAX:
            raise ValueError(f"longer than {PACKET_MAX} bytes")
    return bytes(out)


def _nla_find(pkt: bytes, start: int, length: int, attrtype: int) -> int:
    """Offset of the first netlink attribute of ``attrtype`` in pkt[start:start+length], else 0."""
    pos, rem = start, length
    while rem >= 4:
        nla_len = int.from_bytes(pkt[pos:pos + 2], "little")
        if nla_len < 4 or nla_len > rem:
            break
        if int.from_bytes(pkt[pos + 2:pos + 4], "little") & 0x3fff == attrtype:
            return pos
        step = (nla_len + 3) & ~3
        pos += step
        rem -= step
    return 0


def ancillary(offset: int, a: int, x: int, pkt: bytes, ctx: SocketContext) -> int:
    """Value of the ancillary load ``SKF_AD_OFF + offset`` (``convert_bpf_extensions``).

    Returns :data:`EXIT_WITH_A` for ``ifidx``/``hatype`` without a device.
    """
    if offset == SKF_AD["PROTOCOL"]:
        return ctx.protocol & 0xffff
    if offset == SKF_AD["PKTTYPE"]:
        return ctx.pkt_type & 7
    if offset == SKF_AD["IFINDEX"]:
        return EXIT_WITH_A if ctx.ifindex is None else ctx.ifindex & U32
    if offset == SKF_AD["HATYPE"]:
        return EXIT_WITH_A if ctx.hatype is None else ctx.hatype & 0xffff
    if offset == SKF_AD["NLATTR"] or offset == SKF_AD["NLATTR_NEST"]:
        n = len(pkt)
        # __skb_get_nlattr(_nest): attribute header at data + A, types compared as int.
        if n < 4 or a > n - 4 or x > 0x3fff:
            return 0
        if offset == SKF_AD["NLATTR"]:
            return _nla_find(pkt, a, n - a, x)
        nla_len = int.from_bytes(pkt[a:a + 2], "little")
        if nla_len > n - a:
            return 0
        return _nla_find(pkt, a + 4, nla_len - 4, x)   # a short nla_len finds nothing
    if offset == SKF_AD["MARK"]:
        return ctx.mark & U32
    if offset == SKF_AD["QUEUE"]:
        return ctx.queue & 0xffff
    if offset == SKF_AD["RXHASH"]:
        return ctx.rxhash & U32
    if offset == SKF_AD["CPU"]:
        return ctx.cpu & U32
    if offset == SKF_AD["ALU_XOR_X"]:
        return a ^ x
    if offset == SKF_AD["VLAN_TAG"]:
        return ctx.vlan_tci & 0xffff
    if offset == SKF_AD["VLAN_TAG_PRESENT"]:
        return 1 if ctx.vlan_present else 0
    if offset == SKF_AD["PAY_OFFSET"]:
        return ctx.poff & U32
    if offset == SKF_AD["RANDOM"]:
        return ctx.rand_u32()
    if offset == SKF_AD["VLAN_TPID"]:
        return ctx.vlan_tpid & 0xffff
    raise ValueError(f"not an ancillary offset: {offset}")
