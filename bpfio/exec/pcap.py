"""Read packets from capture files: classic pcap (both byte orders) and pcapng.

Classic pcap: a 24-byte header whose magic (0xa1b2c3d4 microseconds,
0xa1b23c4d nanoseconds) tells the byte order, then records of
``ts_sec, ts_frac, caplen, len`` (16 bytes) followed by ``caplen`` bytes.

pcapng: a small reader for the blocks that carry packets -- Section Header
(byte order from its magic 0x1a2b3c4d), Interface Description (link type),
Enhanced Packet, Simple Packet and the obsolete Packet block; all other
blocks are skipped.  No library dependency is needed for that much.

Each packet is a :class:`Packet` with its bytes, original length, link type
and timestamp in nanoseconds.  A damaged file raises :class:`PcapError`
naming the file and the byte offset.
"""

from __future__ import annotations

import struct
from typing import Iterator, NamedTuple

from bpfio.errors import BpfError

PCAP_MAGIC_US = 0xa1b2c3d4
PCAP_MAGIC_NS = 0xa1b23c4d
PCAPNG_SHB = 0x0a0d0d0a
PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d
LINKTYPE_ETHERNET = 1


class PcapError(BpfError):
    """A capture file that cannot be read."""

    def __init__(self, message: str, *, filename: str = "<pcap>", offset: int | None = None):
        self.filename = filename
        self.offset = offset
        where = filename if offset is None else f"{filename}: byte {offset}"
        super().__init__(f"{where}: error: {message}")


class Packet(NamedTuple):
    """One captured packet."""

    data: bytes
    wirelen: int          # original length on the wire (>= len(data))
    linktype: int
    ts_ns: int


def read_packets(raw: bytes, *, filename: str = "<pcap>") -> list[Packet]:
    """Decode every packet of a classic pcap or pcapng file's bytes."""
    return list(iter_packets(raw, filename=filename))


def iter_packets(raw: bytes, *, filename: str = "<pcap>") -> Iterator[Packet]:
    """Yield the packets of a classic pcap or pcapng file's bytes."""
    if len(raw) < 4:
        raise PcapError("too short for a capture file", filename=filename, offset=0)
    magic_le = struct.unpack_from("<I", raw)[0]
    if magic_le == PCAPNG_SHB:
        yield from _pcapng(raw, filename)
        return
    for order in "<>":
        magic = struct.unpack_from(order + "I", raw)[0]
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            yield from _pcap(raw, order, magic == PCAP_MAGIC_NS, filename)
            return
    raise PcapError(f"not a pcap or pcapng file (magic {raw[:4].hex()})", filename=filename, offset=0)


def _pcap(raw: bytes, order: str, nano: bool, filename: str) -> Iterator[Packet]:
    if len(raw) < 24:
        raise PcapError("truncated pcap file header", filename=filename, offset=len(raw))
    linktype = struct.unpack_from(order + "I", raw, 20)[0] & 0x0fffffff
    rec = struct.Struct(order + "IIII")
    pos = 24
    scale = 1 if nano else 1000
    while pos < len(raw):
        if pos + 16 > len(raw):
            raise PcapError("truncated record header", filename=filename, offset=pos)
        sec, frac, caplen, wirelen = rec.unpack_from(raw, pos)
        if pos + 16 + caplen > len(raw):
            raise PcapError(f"record of {caplen} bytes runs past the end of the file",
                            filename=filename, offset=pos)
        yield Packet(raw[pos + 16:pos + 16 + caplen], wirelen, linktype, sec * 1_000_000_000 + frac * scale)
        pos += 16 + caplen


# Smallest body (between the 8-byte head and the 4-byte trailing length) of each block
# type read here: SHB byte-order magic, versions and section length; IDB link type,
# reserved and snaplen; EPB interface, timestamp, caplen and len; SPB len; the obsolete
# Packet Block interface, drops, timestamp, caplen and len.
_MIN_BODY = {PCAPNG_SHB: 16, 1: 8, 6: 20, 3: 4, 2: 20}
_BLOCK_NAME = {PCAPNG_SHB: "Section Header", 1: "Interface Description", 6: "Enhanced Packet",
               3: "Simple Packet", 2: "Packet"}


def _pcapng(raw: bytes, filename: str) -> Iterator[Packet]:
    pos = 0
    order = "<"
    links: list[tuple[int, int]] = []   # (linktype, ticks per second) per interface
    while pos < len(raw):
        if pos + 12 > len(raw):
            raise PcapError("truncated pcapng block", filename=filename, offset=pos)
        btype = struct.unpack_from(order + "I", raw, pos)[0]
        if btype == PCAPNG_SHB or struct.unpack_from("<I", raw, pos)[0] == PCAPNG_SHB:
            bom = raw[pos + 8:pos + 12]
            if struct.unpack("<I", bom)[0] == PCAPNG_BYTE_ORDER_MAGIC:
                order = "<"
            elif struct.unpack(">I", bom)[0] == PCAPNG_BYTE_ORDER_MAGIC:
                order = ">"
            else:
                raise PcapError("bad pcapng byte-order magic", filename=filename, offset=pos + 8)
            btype = PCAPNG_SHB
            links = []
        blen = struct.unpack_from(order + "I", raw, pos + 4)[0]
        if blen < 12 or blen % 4 or pos + blen > len(raw):
            raise PcapError(f"bad pcapng block length {blen}", filename=filename, offset=pos + 4)
        body = raw[pos + 8:pos + blen - 4]
        if len(body) < _MIN_BODY.get(btype, 0):
            raise PcapError(f"{_BLOCK_NAME[btype]} Block of {blen} bytes is too short (at least "
                            f"{_MIN_BODY[btype] + 12})", filename=filename, offset=pos + 4)
        trailer = struct.unpack_from(order + "I", raw, pos + blen - 4)[0]
        if trailer != blen:
            raise PcapError(f"block length {blen} and trailing length {trailer} differ",
                            filename=filename, offset=pos + blen - 4)
        if btype == 1:      # Interface Description Block
            linktype = struct.unpack_from(order + "H", body)[0]
            links.append((linktype, _if_tsresol(body[8:], order, filename, pos + 16)))
        elif btype == 6:    # Enhanced Packet Block
            iface, hi, lo, caplen, wirelen = struct.unpack_from(order + "IIIII", body)
            _check_caplen(caplen, len(body) - 20, filename, pos)
            linktype, per_sec = links[iface] if iface < len(links) else (LINKTYPE_ETHERNET, 10**6)
            ts = (hi << 32) | lo
            yield Packet(body[20:20 + caplen], wirelen, linktype, ts * 1_000_000_000 // per_sec)
        elif btype == 3:    # Simple Packet Block
            wirelen = struct.unpack_from(order + "I", body)[0]
            linktype = links[0][0] if links else LINKTYPE_ETHERNET
            yield Packet(body[4:4 + min(wirelen, len(body) - 4)], wirelen, linktype, 0)
        elif btype == 2:    # obsolete Packet Block
            iface, _drops, hi, lo, caplen, wirelen = struct.unpack_from(order + "HHIIII", body)
            _check_caplen(caplen, len(body) - 20, filename, pos)
            linktype, per_sec = links[iface] if iface < len(links) else (LINKTYPE_ETHERNET, 10**6)
            yield Packet(body[20:20 + caplen], wirelen, linktype, ((hi << 32) | lo) * 1_000_000_000 // per_sec)
        pos += blen


def _check_caplen(caplen: int, room: int, filename: str, pos: int) -> None:
    """A packet block's captured length must fit in the block (byte ``pos + 20``: caplen)."""
    if caplen > room:
        raise PcapError(f"captured length {caplen} runs past the end of its block "
                        f"({room} bytes of packet data)", filename=filename, offset=pos + 20)


def _if_tsresol(options: bytes, order: str, filename: str, offset: int) -> int:
    """Ticks per second from an IDB's if_tsresol option (default microseconds)."""
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, pos)
        if code == 0:
            break
        if pos + 4 + length > len(options):
            raise PcapError(f"option {code} of {length} bytes runs past the end of its block",
                            filename=filename, offset=offset + pos)
        if code == 9 and length >= 1:
            v = options[pos + 4]
            return 2 ** (v & 0x7f) if v & 0x80 else 10 ** v
        pos += 4 + ((length + 3) & ~3)
    return 10**6


def write_pcap(packets, *, linktype: int = LINKTYPE_ETHERNET, byteorder: str = "<",
               nano: bool = False) -> bytes:
    """Return a classic pcap file holding ``packets`` (bytes or :class:`Packet`)."""
    out = [struct.pack(byteorder + "IHHiIII", PCAP_MAGIC_NS if nano else PCAP_MAGIC_US,
                       2, 4, 0, 0, 262144, linktype)]
    for i, p in enumerate(packets):
        data = p.data if isinstance(p, Packet) else bytes(p)
        wirelen = p.wirelen if isinstance(p, Packet) else len(data)
        out.append(struct.pack(byteorder + "IIII", i, 0, len(data), wirelen) + data)
    return b"".join(out)
