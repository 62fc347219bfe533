"""``bpfio.jit``: a verified program as native x86-64 code, called like ``bpfio.compile``.

Native calling conventions (System V; docs/jit.md has the details):

* socket:  ``uint32_t f(const uint8_t *pkt, uint32_t len, const struct SocketAux *aux)``
* seccomp: ``uint32_t f(const struct seccomp_data *data)``
* pio:     ``uint32_t f(uint8_t *ctx, uint32_t ctx_len, uint32_t **rand)`` -- ctx is the
  40-byte event header then the binding's N shared words, all big-endian; ``M[k]`` is
  ctx+40+4k, read and written in place; ctx_len = 40 + 4N.  Beyond the u32 verdict in
  EAX, bit 32 of RAX is set after a runtime fault and RDX = A | executed << 32.
  ``rand`` is only read by programs with ``ld rand`` (``rand_reads`` > 0): each read
  takes ``*(*rand)++``.

One mapping holds the program at offset 0 and small drivers after it: ``run_many``
runs a whole batch in one native call, and ``pio_call`` returns RDX to Python.
"""

from __future__ import annotations

import ctypes
import random
import struct
from array import array
from itertools import accumulate

from bpfio.abi.pio import PIO_HDR_LEN, PIO_MEM_DEFAULT
from bpfio.abi.seccomp import SeccompResult, as_seccomp_data
from bpfio.check.verifier import verify
from bpfio.exec.jit import x86
from bpfio.exec.jit.layout import Jump, Label
from bpfio.exec.jit.mem import ExecMemory, check_available
from bpfio.exec.jit.ancillary import SocketAux
from bpfio.exec.jit.translate import translate
from bpfio.exec.skb import DEFAULT_CONTEXT, socket_context
from bpfio.insn import Program
from bpfio.isa import BPF_LD, BPF_LDX, BPF_MEM, BPF_ST, BPF_STX, U32
from bpfio.text.disasm import format_insn
from bpfio.exec.jit.x86 import (R8, R9, R12, R13, R14, R15, RAX, RBP, RBX, RCX, RDI, RDX, RSI,
                                RSP, mem)

_MEM_CODES = (BPF_ST, BPF_STX, BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM)
_U64 = ctypes.c_uint64
_ZEROS = array("I", [0])
_VP = ctypes.c_void_p
_U32 = ctypes.c_uint32


def _loop(body, name):
    """``for i in range(r12d): body`` over the callee-saved registers (r12d counts down)."""
    return [x86.test_r32_r32(R12, R12), Jump(x86.CC["je"], name + "_done"), Label(name + "_loop"),
            *body, x86.sub_r32_imm8(R12, 1), Jump(x86.CC["jne"], name + "_loop"),
            Label(name + "_done")]


_SAVED = (RBX, R12, R13, R14, R15)
# one packet: f(base + off[i], off[i+1] - off[i], aux) -> out[i]; rbx = &off[i], rbp = base,
# r13 = &out[i], r14 = aux, r15 = the program's entry
_call_one = [x86.mov_r64_m64(RDI, mem(RBX, 0)), x86.mov_r64_m64(RSI, mem(RBX, 8)),
             x86.sub_r64_r64(RSI, RDI), x86.add_r64_r64(RDI, RBP), x86.mov_r64_r64(RDX, R14),
             x86.call_r64(R15), x86.mov_m32_r32(mem(R13, 0), RAX), x86.add_r64_imm8(RBX, 8),
             x86.add_r64_imm8(R13, 4)]


def drivers() -> list:
    """The batch and pio drivers, laid out after the program."""
    push = [x86.push_r64(r) for r in _SAVED]       # 5 pushes: rsp is 16-aligned for the calls
    pop = [x86.pop_r64(r) for r in reversed(_SAVED)]
    # drive(base, offsets u64[n+1], n, out u32[n], aux, entry): f(base+off[i], off[i+1]-off[i], aux)
    drive = [Label("drive"), *push, x86.push_r64(RBP), x86.sub_r64_imm8(RSP, 8),
             x86.mov_r64_r64(RBX, RSI), x86.mov_r32_r32(R12, RDX), x86.mov_r64_r64(R13, RCX),
             x86.mov_r64_r64(R14, R8), x86.mov_r64_r64(R15, R9), x86.mov_r64_r64(RBP, RDI),
             *_loop(_call_one, "drive"),
             x86.add_r64_imm8(RSP, 8), x86.pop_r64(RBP), *pop, x86.ret()]
    # drive_pio(headers, n, out u32[n], ctx, ctx_len, entry, rand): copy header i into ctx,
    # call entry(ctx, ctx_len, rand); rand (the 7th argument) is on the stack at rsp+64
    drive_pio = [Label("drive_pio"), *push, x86.push_r64(RBP), x86.sub_r64_imm8(RSP, 8),
                 x86.mov_r64_r64(RBX, RDI), x86.mov_r32_r32(R12, RSI), x86.mov_r64_r64(R13, RDX),
                 x86.mov_r64_r64(R14, RCX), x86.mov_r32_r32(R15, R8), x86.mov_r64_r64(RBP, R9),
                 *_loop([*(i for off in range(0, PIO_HDR_LEN, 8) for i in (
                     x86.mov_r64_m64(RAX, mem(RBX, off)), x86.mov_m64_r64(mem(R14, off), RAX))),
                     x86.mov_r64_r64(RDI, R14), x86.mov_r32_r32(RSI, R15),
                     x86.mov_r64_m64(RDX, mem(RSP, 64)), x86.call_r64(RBP),
                     x86.mov_m32_r32(mem(R13, 0), RAX), x86.add_r64_imm8(RBX, PIO_HDR_LEN),
                     x86.add_r64_imm8(R13, 4)], "drive_pio"),
                 x86.add_r64_imm8(RSP, 8), x86.pop_r64(RBP), *pop, x86.ret()]
    # pio_call(ctx, ctx_len, rand, entry): f(ctx, ctx_len, rand), then RAX and RDX are
    # stored right after the context (ctx + ctx_len), where Python reads them back
    pio_call = [Label("pio_call"), x86.push_r64(RBX), x86.mov_r32_r32(RSI, RSI),
                x86.lea_r64_m(RBX, mem(RDI, 0, RSI)), x86.call_r64(RCX),
                x86.mov_m64_r64(mem(RBX, 0), RAX), x86.mov_m64_r64(mem(RBX, 8), RDX),
                x86.pop_r64(RBX), x86.ret()]
    # grid(table, header, out): table = [count, then per program: entry, aux, the byte
    # offset of its row in out]; header = a Batch's [base, n, offsets u64[n+1]];
    # program-outer, packet-inner, as libpcap's loop in bench/c/pcap_grid.c.
    # Stack: [rsp] table cursor, [rsp+8] programs left, [rsp+16] header, [rsp+24] out.
    grid = [Label("grid"), *push, x86.push_r64(RBP), x86.sub_r64_imm8(RSP, 40),
            x86.mov_m64_r64(mem(RSP, 16), RSI), x86.mov_m64_r64(mem(RSP, 24), RDX),
            x86.mov_r64_m64(RAX, mem(RDI, 0)), x86.add_r64_imm8(RDI, 8),
            x86.mov_m64_r64(mem(RSP, 0), RDI), x86.mov_m64_r64(mem(RSP, 8), RAX),
            x86.test_r64_r64(RAX, RAX), Jump(x86.CC["je"], "grid_end"), Label("grid_next"),
            x86.mov_r64_m64(RAX, mem(RSP, 16)), x86.mov_r64_m64(RBP, mem(RAX, 0)),
            x86.mov_r64_m64(R12, mem(RAX, 8)), x86.lea_r64_m(RBX, mem(RAX, 16)),
            x86.mov_r64_m64(RAX, mem(RSP, 0)), x86.mov_r64_m64(R15, mem(RAX, 0)),
            x86.mov_r64_m64(R14, mem(RAX, 8)), x86.mov_r64_m64(R13, mem(RAX, 16)),
            x86.mov_r64_m64(RCX, mem(RSP, 24)), x86.add_r64_r64(R13, RCX),
            x86.add_r64_imm8(RAX, 24), x86.mov_m64_r64(mem(RSP, 0), RAX),
            *_loop(_call_one, "grid"),
            x86.mov_r64_m64(RAX, mem(RSP, 8)), x86.sub_r32_imm8(RAX, 1),
            x86.mov_m64_r64(mem(RSP, 8), RAX), Jump(x86.CC["jne"], "grid_next"),
            Label("grid_end"), x86.add_r64_imm8(RSP, 40), x86.pop_r64(RBP), *pop, x86.ret()]
    return drive + drive_pio + pio_call + grid


class JitProgram:
    """A verified program compiled to native code; call it like a :class:`CompiledProgram`.

    ``prog(data, **context)`` runs once (same arguments and result as
    :func:`bpfio.exec.interp.run`); ``run_many(inputs)`` runs a batch in one native
    call; for pio, ``.pio(port, size, direction, data, offset, vcpu, ticks, ns, mem)``
    returns ``(verdict or None after a fault, A, executed)`` like the compiled path.
    ``.code`` is the native code, ``.disasm()`` the listing.  The code is freed
    with the object.  Socket calls without a context share one SocketAux block: a program
    with ``ld rand`` is not thread-safe (its cursor lives there).
    """

    def __init__(self, program, *, profile: str = "socket", harden: bool = False,
                 mem_words: int | None = None, movbe: bool | None = None):
        check_available()
        prog = program if isinstance(program, Program) else Program(list(program))
        self.mem_words = (mem_words or PIO_MEM_DEFAULT) if profile == "pio" else None
        verify(prog, profile=profile, mem_words=self.mem_words or 16,
               notifiers=0x10000 if profile == "pio" else 0, lints=False)
        self.program = prog
        self.profile = profile
        self.harden = harden
        image = translate(prog, profile, harden=harden, movbe=movbe, extra=drivers())
        self.image = image
        self.rand_reads = image.rand_reads     # values one run may take from the rand stream
        self.length = image.labels["drive"]         # the program's own bytes
        self.code = image.code[:self.length]
        self._mem = ExecMemory(image.code)
        base = self._mem.address
        self.address = base
        fn = self._mem.function
        self._plain = profile == "socket" and not self.rand_reads
        if profile == "socket":
            self._fn = fn(_U32, ctypes.c_char_p, _U32, _VP)
            self._fn_at = fn(_U32, _VP, _U32, _VP)     # data at an address (after head bytes)
            self._aux = SocketAux.from_context(DEFAULT_CONTEXT)
            self._aux_ptr = ctypes.addressof(self._aux)
            # a ready c_void_p: converting an int argument costs more than the native run
            self._aux_arg = ctypes.c_void_p(self._aux_ptr)
        elif profile == "seccomp":
            self._fn = fn(_U32, ctypes.c_char_p)
        else:
            self._call = fn(None, _VP, _U32, _VP, _VP, offset=image.labels["pio_call"])
            self._layouts = {}
            self._drive_pio = fn(None, _VP, _U32, _VP, _VP, _U32, _VP, _VP,
                                 offset=image.labels["drive_pio"])
            self._stores = sorted({i.k for i in prog if i.code in (BPF_ST, BPF_STX)})
            # M[k] is ctx+40+4k: a shorter memory than the program addresses must never run
            self._min_words = 1 + max((i.k for i in prog if i.code in _MEM_CODES), default=-1)
        self._drive = fn(None, _VP, _VP, _U32, _VP, _VP, _VP, offset=image.labels["drive"])
        self._grid = fn(None, _VP, _VP, _VP, offset=image.labels["grid"])
        if self._plain:     # run_many's common case: this program alone over a Batch
            self._table = array("Q", [1, base, self._aux_ptr, 0])
            self._table_arg = _VP(self._table.buffer_info()[0])

    # -- one input ------------------------------------------------------------------------
    def __call__(self, data, **context):
        """Run on one input; same arguments and result as :func:`bpfio.exec.interp.run`."""
        if self._plain and not context and type(data) is bytes:   # the socket fast path
            return self._fn(data, len(data), self._aux_arg)
        if self.profile == "socket":
            if not isinstance(data, bytes):
                data = bytes(data)
            if not context and not self.rand_reads:
                return self._fn(data, len(data), self._aux_arg)
            aux, ctx = self._socket_aux(context)
            values = self._rand(aux, ctx, 1)
            try:
                if ctx.head:    # the head bytes lie just before the packet (aux.head_min)
                    buf = ctypes.create_string_buffer(ctx.head + data, len(ctx.head) + len(data))
                    return self._fn_at(ctypes.addressof(buf) + len(ctx.head), len(data),
                                       ctypes.addressof(aux))
                return self._fn(data, len(data), ctypes.addressof(aux))
            finally:
                del values      # the drawn values live until the native call returns
        if self.profile == "seccomp":
            if context:
                raise TypeError(f"seccomp takes no context, got {', '.join(context)}")
            return SeccompResult(self._fn(as_seccomp_data(data).pack()))
        mem_ = context.pop("mem", None)
        if context:
            raise TypeError(f"pio takes only mem=, got {', '.join(context)}")
        return self.pio(*data, self._mem_list(mem_))[0] or 0

    def _socket_aux(self, context):
        """``(SocketAux, SocketContext)`` for a call's context (the shared block when none)."""
        if not context:
            return self._aux, DEFAULT_CONTEXT
        ctx = socket_context(context.pop("context", None), **context)
        return SocketAux.from_context(ctx), ctx

    def _rand(self, aux, ctx, runs: int):
        """Draw the ``ld rand`` values ``runs`` runs may take and point the cursor at them."""
        if not self.rand_reads:
            return None
        draw = ctx.rand_u32 if self.profile == "socket" else lambda: random.getrandbits(32)
        values = array("I", [draw() for _ in range(self.rand_reads * runs)])
        if aux is not None:
            aux.rand_next = values.buffer_info()[0]
            return values
        return values, _U64(values.buffer_info()[0])

    def _mem_list(self, mem_):
        if mem_ is None:
            mem_ = [0] * self.mem_words
        if len(mem_) != self.mem_words:
            raise ValueError(f"pio program compiled for {self.mem_words} shared words, "
                             f"got {len(mem_)}")
        return mem_

    def pio(self, port, size, direction, data, offset, vcpu, ticks, ns, mem):
        """The engine's entry: ``(verdict or None after a fault, A, executed)``."""
        n = len(mem)
        if n < self._min_words:
            raise ValueError(f"the program addresses M[{self._min_words - 1}]; "
                             f"the memory has {n} words")
        layout = self._layouts.get(n) or self._layout(n)
        pack, size_, unpack = layout
        buf = ctypes.create_string_buffer(size_)
        pack(buf, 0, port & U32, size & U32, direction & U32, data & U32, offset & U32,
             vcpu & U32, ticks & U32, (ticks >> 32) & U32, ns & U32, (ns >> 32) & U32,
             *[w & U32 for w in mem])
        if self.rand_reads:
            values, cursor = self._rand(None, None, 1)
            self._call(buf, size_ - 16, ctypes.byref(cursor), self.address)
        else:
            self._call(buf, size_ - 16, None, self.address)
        words = unpack(buf)
        for k in self._stores:
            mem[k] = words[k]
        rax, rdx = words[n], words[n + 1]
        return (None if rax >> 32 else rax & U32), rdx & U32, rdx >> 32

    def _layout(self, n):
        """``(pack_into, buffer size, unpack)`` for N shared words: the context, then the
        16 bytes where ``pio_call`` leaves RAX and RDX."""
        pack = struct.Struct(f">{10 + n}I").pack_into
        words = struct.Struct(f">{n}I")
        regs = struct.Struct("<QQ")
        at = PIO_HDR_LEN + 4 * n

        def unpack(buf):
            return words.unpack_from(buf, PIO_HDR_LEN) + regs.unpack_from(buf, at)
        self._layouts[n] = layout = (pack, at + 16, unpack)
        return layout

    def outcome(self, data, **context):
        """``(verdict or None after a fault, A, executed)`` -- pio only (the engine's view)."""
        if self.profile != "pio":
            raise TypeError("outcome() is for the pio profile; call the program instead")
        mem_ = self._mem_list(context.pop("mem", None))
        return self.pio(*data, mem_)

    # -- a batch in one native call --------------------------------------------------------
    def run_many(self, inputs, out=None, **context):
        """Run over many inputs in ONE native call; return the verdicts in order.

        socket: packets (bytes-like) or a :class:`Batch`, with one optional context for
        all; seccomp: SeccompData (or their 64 bytes); pio: events, with ``mem=`` the
        shared words seen (and changed) by each event in turn.  The verdicts are a list
        of ints (SeccompResult for seccomp); with ``out``, a writable buffer of at least
        ``len(inputs)`` u32 (``array('I')``, a ``memoryview`` cast to ``'I'``), they are
        the raw u32 verdicts written into ``out``, which is returned as is.
        """
        if self._plain and not context:     # the common case, lean: a 3-argument call
            if type(inputs) is not Batch:
                inputs = Batch(inputs)
            n = inputs._n
            if out is None:
                buf = _ZEROS * n
                self._grid(self._table_arg, inputs._header_arg, buf.buffer_info()[0])
                return buf.tolist()
            self._grid(self._table_arg, inputs._header_arg, out_address(out, n))
            return out
        if self.profile == "pio":
            return self._run_many_pio(inputs, context, out)
        batch = inputs if isinstance(inputs, Batch) else Batch(inputs, self.profile)
        n = len(batch)
        result = out
        out = _ZEROS * n if out is None else out
        aux_ptr = values = None
        if self.profile == "socket":
            aux, ctx = self._socket_aux(context)
            if ctx.head:        # head bytes go before each packet: one native call per packet
                got = array("I", [self(pkt, context=ctx) for pkt in batch.packets()])
                ctypes.memmove(out_address(out, n), got.buffer_info()[0], 4 * n)
                return result if result is not None else out.tolist()
            values = self._rand(aux, ctx, n)
            aux_ptr = ctypes.addressof(aux)
        elif context:
            raise TypeError(f"{self.profile} takes no context")
        self._drive(batch.base, batch.offsets_address, n, out_address(out, n), aux_ptr,
                    self.address)
        del values
        if result is not None:
            return result
        if self.profile == "seccomp":
            return [SeccompResult(v) for v in out]
        return out.tolist()

    def _run_many_pio(self, events, context, result=None):
        mem_ = self._mem_list(context.pop("mem", None))
        if context:
            raise TypeError(f"pio takes only mem=, got {', '.join(context)}")
        events = list(events)
        n = len(mem_)
        headers = b"".join(struct.pack(">10I", *e.words()) for e in events)
        ctx = ctypes.create_string_buffer(struct.pack(f">{n}I", *(w & U32 for w in mem_))
                                          .rjust(PIO_HDR_LEN + 4 * n, b"\0"),
                                          PIO_HDR_LEN + 4 * n)
        out = array("I", bytes(4 * len(events))) if result is None else result
        rand = self._rand(None, None, len(events))
        self._drive_pio(headers, len(events), out_address(out, len(events)), ctx,
                        PIO_HDR_LEN + 4 * n, self.address, rand and ctypes.byref(rand[1]))
        mem_[:] = struct.unpack_from(f">{n}I", ctx.raw, PIO_HDR_LEN)
        return out if result is not None else out.tolist()

    # -- reading the code --------------------------------------------------------------------
    def disasm(self, *, drivers: bool = False) -> str:
        """The native code interleaved with the cBPF lines it came from."""
        lines = []
        last = object()
        n = len(self.program)
        for offset, pc, ins in self.image.listing:
            if offset >= self.length and not drivers:
                break
            if pc != last:
                if pc is None:
                    lines.append("; prologue" if offset == 0 else "; exits")
                else:
                    lines.append(f"; {pc:4d}: {format_insn(self.program[pc], pc, length=n)}")
                last = pc
            lines.append(f"  {offset:5x}:  {ins.hex(' '):<30s} {ins.asm(offset)}")
        lines.append(f"; {self.length} bytes of native code for {n} instructions")
        return "\n".join(lines) + "\n"

    def free(self) -> None:
        """Unmap the code now (the object must not be called afterwards)."""
        self._mem.free()


class Batch:
    """Inputs prepared once for :meth:`JitProgram.run_many`: one buffer and an offset table."""

    def __init__(self, inputs, profile: str = "socket"):
        if profile == "seccomp":
            inputs = [as_seccomp_data(d).pack() for d in inputs]
        elif type(inputs) is not list:
            inputs = list(inputs)
        buf = b"".join(inputs)      # any bytes-like items
        # the grid driver's header: base, n, then the n + 1 offsets
        self._header = header = array("Q", [0, 0, 0, *accumulate(map(len, inputs))])
        if header[-1] != len(buf):  # a memoryview of wider items: len() counts its items
            inputs = [bytes(d) for d in inputs]
            header[3:] = array("Q", accumulate(map(len, inputs)))
        self._buf = buf or b"\0"
        self.base = header[0] = _VP.from_buffer(ctypes.c_char_p(self._buf)).value
        self._n = header[1] = len(inputs)
        self._header_arg = _VP(self._header.buffer_info()[0])
        self.offsets_address = self._header_arg.value + 16

    def __len__(self):
        return self._n

    def packets(self) -> list[bytes]:
        """The inputs again, one bytes object each."""
        off = self._header[2:]
        return [self._buf[a:b] for a, b in zip(off, off[1:])]


def out_address(out, n: int) -> int:
    """The address of a writable buffer of at least ``n`` u32 verdicts (``ValueError`` else)."""
    if type(out) is array and out.itemsize == 4 and out.typecode in "IL":
        if len(out) < n:
            raise ValueError(f"out holds {len(out)} verdicts, the batch has {n}")
        return out.buffer_info()[0]
    view = memoryview(out)
    if view.readonly or view.itemsize != 4 or view.format not in ("I", "L", "=I", "<I") \
            or not view.c_contiguous:
        raise ValueError("out must be a writable contiguous buffer of u32 ('I') items")
    if view.nbytes < 4 * n:
        raise ValueError(f"out holds {view.nbytes // 4} verdicts, the batch has {n}")
    return ctypes.addressof(ctypes.c_char.from_buffer(view)) if n else 0


class Grid:
    """Socket programs prepared once to run over whole batches: ``Grid(programs).run(batch)``.

    The verdict of program ``i`` on packet ``j`` is ``out[i * n + j]`` in a u32 buffer of
    ``len(programs) * n`` items (returned as is), or ``result[i][j]`` without ``out``.
    Programs without ``ld rand`` run in ONE native call, program-outer and packet-inner
    as libpcap's loop in ``bench/c/pcap_grid.c``; the others each by ``run_many``.
    """

    def __init__(self, programs):
        self.programs = list(programs)
        self._table = array("Q", [0])
        self._others = []
        for i, p in enumerate(self.programs):
            if getattr(p, "profile", None) != "socket":
                raise ValueError(f"Grid runs socket JIT programs; program {i} is not one")
            if p._plain:
                self._table.extend((p.address, p._aux_ptr, i))
            else:
                self._others.append(i)
        self._table[0] = (len(self._table) - 1) // 3
        self._rows = self._table[3::3]              # the program index of each table entry
        self._tables = {}       # batch size -> (table with its row offsets, its address)

    def run(self, inputs, out=None):
        """Every program over every input of ``inputs`` (a :class:`Batch` or packets)."""
        batch = inputs if type(inputs) is Batch else Batch(inputs)
        n, count = batch._n, len(self.programs)
        given = out is not None
        out = out if given else array("I", bytes(4 * n * count))
        base = out_address(out, n * count)
        table = self._tables.get(n)
        if table is None:       # the row offsets depend on the batch size; never changed
            rows = array("Q", self._table)
            rows[3::3] = array("Q", [4 * n * i for i in self._rows])
            if len(self._tables) >= 16:
                self._tables.clear()
            self._tables[n] = table = (rows, _VP(rows.buffer_info()[0]))
        if self._table[0]:
            self.programs[0]._grid(table[1], batch._header_arg, base)
        for i in self._others:
            row = array("I", self.programs[i].run_many(batch))
            ctypes.memmove(base + 4 * n * i, row.buffer_info()[0], 4 * n)
        if given:
            return out
        return [out[i * n:(i + 1) * n].tolist() for i in range(count)]


def run_grid(programs, inputs, out=None):
    """``Grid(programs).run(inputs, out)``: every socket program over every input."""
    return Grid(programs).run(inputs, out)


def jit(program, *, profile: str = "socket", harden: bool = False,
        mem_words: int | None = None) -> JitProgram:
    """Compile a program to native x86-64 code after verifying it for ``profile``.

    Raises :class:`~bpfio.errors.VerifierError` for a program the profile refuses and
    :class:`~bpfio.errors.JitUnavailable` where native code cannot run (not x86-64
    Linux, exec mappings refused, ``BPFIO_JIT=0``).  ``harden`` blinds user immediates
    with a random key (the kernel's ``bpf_jit_harden``); ``mem_words`` is the pio
    binding's shared-memory size (default 16).
    """
    return JitProgram(program, profile=profile, harden=harden, mem_words=mem_words)
