"""Byte-sink ports: POST codes at 0x80 and the debug console at 0xE9.

The reference model of ``asm/debugport.asm``.  QEMU semantics:

* port 0x80 (``ioport80`` in hw/i386/pc.c): writes are ignored, reads return
  0xff.  The model still records the last byte (the POST code) and a count,
  which is what a firmware developer wants to see.  ``PostPort()``.
* debugcon (hw/char/debugcon.c, ``-device isa-debugcon``, iobase 0xE9): each
  written byte goes to the character device; a read returns the ``readback``
  property (default 0xe9).  ``DebugCon(readback=0xe9)``.

Both are byte devices (``impl`` 1..1): a wider write puts its low byte here
and the higher bytes on the next ports, which belong to other devices, so
the model keeps the low byte only; a wider read gets 0xff for the bytes past
this one-port binding.

Output ordering: the program appends bytes to a 128-byte ring in shared
memory (four bytes per word, first byte most significant); the
model drains the ring before it handles any write itself, and
:meth:`DebugPort.output` drains it on demand, so the bytes always come out
in the order the guest wrote them.
"""

from __future__ import annotations

from typing import Callable

from bpfio.devices.base import Bytes, Model, layout, split_read

L = layout("debugport")
READBACK, SINK, LAST, COUNT = L["DBG_READBACK"], L["DBG_SINK"], L["DBG_LAST"], L["DBG_COUNT"]
HEAD, RING = L["DBG_HEAD"], L["DBG_RING"]
RING_WORDS, RING_BYTES = L["DBG_RING_WORDS"], L["DBG_RING_BYTES"]


class DebugPort(Model):
    """A one-port byte sink: ``readback`` for reads, written bytes kept if ``sink``.

    ``on_byte(byte)`` (optional) is called for every byte as it is drained,
    e.g. ``sys.stdout.buffer.write``.
    """

    MEM_WORDS = L["DBG_MEM_WORDS"]

    def __init__(self, readback: int = 0xff, sink: bool = False,
                 on_byte: Callable[[int], None] | None = None):
        if not 0 <= int(readback) <= 0xff:
            raise ValueError(f"readback {readback} is not a byte")
        self.readback = int(readback)
        self.sink = bool(sink)
        self.on_byte = on_byte
        self._out = bytearray()

    def reset(self) -> None:
        """Power-on: empty ring, no code written yet."""
        for i in range(len(self.mem)):
            self.mem[i] = 0
        self.mem[READBACK] = self.readback
        self.mem[SINK] = int(self.sink)
        self.ring = Bytes(self.mem, RING, RING_BYTES)
        self._out.clear()

    # -- the ring ---------------------------------------------------------
    def _pending(self) -> bytes:
        return bytes(self.ring[i] for i in range(min(self.mem[HEAD], RING_BYTES)))

    def _drain(self) -> None:
        """Emit the ring's bytes; zero its words (the program ORs bytes into them)."""
        for byte in self._pending():
            self._emit(byte)
        for i in range(RING_WORDS):
            self.mem[RING + i] = 0
        self.mem[HEAD] = 0

    def _emit(self, byte: int) -> None:
        self._out.append(byte)
        if self.on_byte is not None:
            self.on_byte(byte)

    def output(self) -> bytes:
        """Every byte written so far (drains the shared ring first)."""
        b = self._need_binding()
        with b.lock:
            self._drain()
            return bytes(self._out)

    @property
    def post_code(self) -> int | None:
        """The last byte written, or None before the first write."""
        return self.mem[LAST] if self.mem[COUNT] else None

    # -- guest accesses ---------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        """Readback in the low byte; all ones for ports past this one."""
        return split_read(lambda _o: self.mem[READBACK], offset, size, self.length)

    def io_write(self, offset: int, size: int, value: int) -> None:
        """Keep the low byte (the one addressed to this port)."""
        byte = value & 0xff
        self.mem[LAST] = byte
        self.mem[COUNT] = self.mem[COUNT] + 1
        if self.mem[SINK]:
            self._drain()          # program-buffered bytes come first
            self._emit(byte)

    def state(self) -> dict:
        """Comparable state: the logical output (drained + ringed bytes), code, count."""
        return {"output": bytes(self._out) + self._pending(), "last": self.mem[LAST],
                "count": self.mem[COUNT], "readback": self.mem[READBACK],
                "sink": self.mem[SINK]}


class PostPort(DebugPort):
    """Port 0x80: reads 0xff, writes ignored by QEMU (the last POST code is kept)."""

    def __init__(self, readback: int = 0xff):
        super().__init__(readback=readback, sink=False)


class DebugCon(DebugPort):
    """QEMU isa-debugcon at 0xE9: reads ``readback`` (0xe9), written bytes are output."""

    def __init__(self, readback: int = 0xe9, on_byte: Callable[[int], None] | None = None,
                 echo: bool = False):
        if echo:
            import sys

            def on_byte(b, _w=sys.stdout.buffer.write, _f=sys.stdout.buffer.flush):
                _w(bytes((b,)))
                _f()
        super().__init__(readback=readback, sink=True, on_byte=on_byte)
