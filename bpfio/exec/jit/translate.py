"""cBPF -> x86-64: one case per class of the pre-decoded program, in the kernel JIT's style.

The input is :func:`bpfio.exec.interp.predecode`'s form, so the JIT decodes every
instruction exactly as the interpreter does (which loads are ancillary, which go
through the socket's header offsets).  Register map (as in ubpf's JIT, one comment each):
"""

from __future__ import annotations

import secrets

from bpfio.abi.pio import PIO_HDR_LEN
from bpfio.exec import interp as I
from bpfio.exec.jit import x86
from bpfio.exec.jit.ancillary import aux, nla, rand
from bpfio.exec.jit.layout import Jump, Label, Source, assemble, compress
from bpfio.exec.jit.x86 import (R8, R9, R10, R11, RAX, RCX, RDI, RDX, RSI, RSP, mem)
from bpfio.isa import SKF_AD, SKF_AD_OFF, U32, to_s32

REG_A = RAX      # the accumulator A (and the return value)
REG_X = RCX      # the index register X: CL is the shift count, so lsh/rsh by X need no move
REG_TMP = RDX    # scratch: div's high half, the offset of an indexed load
REG_DATA = RDI   # the input: packet bytes, struct seccomp_data, or the pio context
REG_LEN = RSI    # the input's length (zero-extended; ld len)
REG_AUX = R8     # socket: the SocketAux block; pio: the rand cursor (third argument)
REG_COUNT = R9   # pio: instructions executed so far
TMP1, TMP2 = R10, R11   # scratch

CC = x86.CC
SCRATCH = -64           # socket/seccomp M[k] at rsp-64+4k: the red zone of this leaf function


# Ancillary loads read straight from SocketAux (the rest are special cases below).
_AUX_FIELD = {"PROTOCOL": "protocol", "PKTTYPE": "pkt_type", "MARK": "mark", "QUEUE": "queue",
              "RXHASH": "rxhash", "CPU": "cpu", "VLAN_TAG": "vlan_tci",
              "VLAN_TAG_PRESENT": "vlan_present", "PAY_OFFSET": "poff", "VLAN_TPID": "vlan_tpid"}
_AD_NAME = {SKF_AD_OFF + off: name for name, off in SKF_AD.items()}
_TRUE = {I.JEQ_K: "je", I.JGT_K: "ja", I.JGE_K: "jae", I.JSET_K: "jne",
         I.JEQ_X: "je", I.JGT_X: "ja", I.JGE_X: "jae", I.JSET_X: "jne"}
_FALSE = {"je": "jne", "ja": "jbe", "jae": "jb", "jne": "je"}
_ALU_NAME = {I.ADD_K: "add", I.SUB_K: "sub", I.AND_K: "and", I.OR_K: "or", I.XOR_K: "xor",
             I.ADD_X: "add", I.SUB_X: "sub", I.AND_X: "and", I.OR_X: "or", I.XOR_X: "xor"}
_FAULTS = {I.LD_ABS, I.LDH_ABS, I.LDB_ABS, I.LD_IND, I.LDX_MSH, I.LD_GEN, I.LD_ANC,
           I.DIV_X, I.MOD_X, I.DIV_K, I.MOD_K}
_ENDS = {I.RET_K, I.RET_A, I.RET_X, I.JA, *_TRUE}
_PC_DEPENDENT = {I.JA, *_TRUE}            # their code names other pcs
_NLA = {SKF_AD_OFF + SKF_AD["NLATTR"], SKF_AD_OFF + SKF_AD["NLATTR_NEST"]}  # local labels


def has_movbe() -> bool:
    """Whether this CPU has MOVBE (CPUID.01H:ECX bit 22), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "movbe" in line.split()
    except OSError:
        pass
    return False


class Image:
    """The translated program: code, listing, and where the entry points are."""

    def __init__(self, code, listing, labels, rand_reads, harden_key):
        self.code = code
        self.listing = listing
        self.labels = labels
        self.rand_reads = rand_reads        # ld rand instructions: values a run may read
        self.harden_key = harden_key


class Translator:
    """Translate one pre-decoded program; :meth:`run` returns the items for :func:`assemble`."""

    def __init__(self, ops, profile: str, *, harden: bool = False, movbe: bool | None = None,
                 extra=None):
        self.ops = ops
        self.profile = profile
        self.key = secrets.randbits(32) | 1 if harden else None
        self.movbe = has_movbe() if movbe is None else movbe
        self.items: list = []
        self.stubs: list = []
        self.rand_reads = 0 if profile == "seccomp" else sum(
            1 for o in ops if o[0] == I.LD_ANC and _AD_NAME.get(o[1]) == "RANDOM")
        self.extra = extra or []

    # -- small helpers --------------------------------------------------------------------
    def emit(self, *ins):
        self.items.extend(ins)

    def jcc(self, name: str, target):
        self.items.append(Jump(CC[name], target))

    def jmp(self, target):
        self.items.append(Jump(None, target))

    def imm(self, k: int, reg: int = TMP1) -> int:
        """Put a user immediate in ``reg`` blinded (``harden``): ``mov reg, k^key; xor reg, key``."""
        self.emit(x86.mov_r32_imm32(reg, k ^ self.key), x86.xor_r32_imm32(reg, self.key))
        return reg

    def mov_k(self, reg: int, k: int):
        if self.key is None:
            self.emit(x86.mov_r32_imm32(reg, k))
        else:
            self.imm(k, reg)

    def scratch(self, k: int):
        """M[k]: pio's shared memory (big-endian, in the context), else the native stack."""
        if self.profile == "pio":
            return mem(REG_DATA, PIO_HDR_LEN + 4 * k)
        return mem(RSP, SCRATCH + 4 * k)

    def load_be(self, dst: int, m, size: int):
        """``dst = size`` big-endian bytes at ``m`` (movbe, or mov + bswap)."""
        if size == 4:
            if self.movbe:
                self.emit(x86.movbe_r32_m32(dst, m))
            else:
                self.emit(x86.mov_r32_m32(dst, m), x86.bswap_r32(dst))
        elif size == 2:
            self.emit(x86.movzx_r32_m16(dst, m), x86.rol_r16_imm8(dst, 8))
        else:
            self.emit(x86.movzx_r32_m8(dst, m))

    def leave(self):
        """Return to the caller: socket/seccomp A is in EAX; pio packs rdx = A | count << 32."""
        if self.profile == "pio":
            self.emit(x86.shl_r64_imm8(REG_COUNT, 32), x86.or_r64_r64(RDX, REG_COUNT))
        self.emit(x86.ret())

    # -- the program --------------------------------------------------------------------------
    def run(self) -> list:
        self.prologue()
        counts = self.segments() if self.profile == "pio" else {}
        targets = {t for op, _k, t, f in self.ops if op in _TRUE or op == I.JA}
        targets |= {f for op, _k, t, f in self.ops if op in _TRUE}
        # An instruction's code depends only on (op, k, t) unless it jumps to another pc or
        # has local labels: emit it once, then reuse the template (fresh Jump objects).
        memo = {}
        items = self.items
        for pc, op in enumerate(self.ops):
            items.append(Label(pc) if pc in targets else Source(pc))
            if pc in counts:
                self.emit(x86.add_r32_imm(REG_COUNT, counts[pc]))
            template = memo.get(op[:3])
            if template is not None:
                if template[0]:     # its jumps (to shared exits) are fresh objects each time
                    items += [Jump(it.cc, it.target) if type(it) is Jump else it
                              for it in template[1]]
                else:
                    items += template[1]
                continue
            start = len(items)
            self.insn(pc, *op)
            if not (op[0] in _PC_DEPENDENT or (op[0] == I.LD_IND and self.profile == "socket")
                    or (op[0] == I.LD_ANC and op[1] in _NLA)):
                items[start:] = code = compress(items[start:])
                memo[op[:3]] = (any(type(it) is Jump for it in code), code)
        self.epilogues()
        return self.items + self.stubs + self.extra

    def prologue(self):
        self.items.append(Label("entry"))
        self.emit(x86.xor_r32_r32(REG_A, REG_A), x86.xor_r32_r32(REG_X, REG_X))
        if self.profile != "seccomp":
            self.emit(x86.mov_r32_r32(REG_LEN, REG_LEN))     # a u32 argument: clear bits 32-63
        if self.profile == "socket" or self.rand_reads:
            self.emit(x86.mov_r64_r64(REG_AUX, RDX))
        if self.profile == "socket":
            # verified programs store before they load; zero the words they read anyway
            for k in sorted({o[1] for o in self.ops if o[0] in (I.LD_MEM, I.LDX_MEM)}):
                self.emit(x86.mov_m32_imm32(self.scratch(k), 0))
        if self.profile == "pio":
            self.emit(x86.xor_r32_r32(REG_COUNT, REG_COUNT))

    def epilogues(self):
        self.items.append(Label("abort"))       # a runtime fault: the program returns 0
        if self.profile == "pio":                # ... and pio reports it (bit 32 of rax)
            self.emit(x86.mov_r32_r32(RDX, REG_A), x86.mov_r64_imm64(RAX, 1 << 32))
        else:
            self.emit(x86.xor_r32_r32(REG_A, REG_A))
        self.leave()
        if self.profile == "socket" and any(
                o[0] == I.LD_ANC and _AD_NAME.get(o[1]) in ("IFINDEX", "HATYPE") for o in self.ops):
            self.items.append(Label("ret_a"))   # ifidx/hatype without a device: return A
            self.leave()

    def segments(self) -> dict[int, int]:
        """pio counting: pc -> instructions to add there, so a count is exact at every exit.

        A segment starts at a jump target, after a jump, or after an instruction that can
        fault; it ends at the first jump, ret or faulting instruction.
        """
        leaders = {0}
        for pc, (op, k, t, f) in enumerate(self.ops):
            if op in _TRUE or op == I.JA:
                leaders |= {t, f, pc + 1}
            elif op in _FAULTS or op in _ENDS:
                leaders.add(pc + 1)
        out = {}
        start = None
        for pc, (op, *_rest) in enumerate(self.ops):
            if pc in leaders:
                start = pc
                out[pc] = 0
            out[start] += 1
        return out

    def insn(self, pc, op, k, t, f):
        e = self.emit
        if op in _TRUE:
            return self.jump(pc, op, k, t, f)
        if op == I.JA:
            if t != pc + 1:
                self.jmp(t)
        elif op in (I.RET_K, I.RET_A, I.RET_X):
            if self.profile == "pio":
                e(x86.mov_r32_r32(RDX, REG_A))
            if op == I.RET_K:
                self.mov_k(REG_A, k)
            elif op == I.RET_X:
                e(x86.mov_r32_r32(REG_A, REG_X))
            self.leave()
        elif op in (I.LD_IMM, I.LDX_IMM):
            self.mov_k(REG_A if op == I.LD_IMM else REG_X, k)
        elif op in (I.LD_MEM, I.LDX_MEM):
            self.load_mem(REG_A if op == I.LD_MEM else REG_X, k)
        elif op in (I.ST, I.STX):
            self.store_mem(REG_A if op == I.ST else REG_X, k)
        elif op == I.TAX:
            e(x86.mov_r32_r32(REG_X, REG_A))
        elif op == I.TXA:
            e(x86.mov_r32_r32(REG_A, REG_X))
        elif op in (I.LD_LEN, I.LDX_LEN):
            dst = REG_A if op == I.LD_LEN else REG_X
            if self.profile == "seccomp":
                e(x86.mov_r32_imm32(dst, 64))
            else:
                e(x86.mov_r32_r32(dst, REG_LEN))
        elif I.ADD_K <= op <= I.RSH_X:
            self.alu(op, k)
        elif op == I.LD_ANC:
            self.ancillary(pc, k)
        else:
            self.load(pc, op, k, t)

    # -- ALU ----------------------------------------------------------------------------------
    def alu(self, op, k):
        e = self.emit
        if op in _ALU_NAME:
            name = _ALU_NAME[op]
            if op >= I.ADD_X:
                e(getattr(x86, f"{name}_r32_r32")(REG_A, REG_X))
            elif self.key is not None:
                e(getattr(x86, f"{name}_r32_r32")(REG_A, self.imm(k)))
            else:
                e(getattr(x86, f"{name}_r32_imm")(REG_A, k))
        elif op == I.MUL_K:
            if self.key is not None:
                e(x86.imul_r32_r32(REG_A, self.imm(k)))
            else:
                e(x86.imul_r32_r32_imm32(REG_A, REG_A, k))
        elif op == I.MUL_X:
            e(x86.imul_r32_r32(REG_A, REG_X))
        elif op in (I.DIV_K, I.MOD_K, I.DIV_X, I.MOD_X):
            if op in (I.DIV_X, I.MOD_X):
                # bpf_convert_filter: "if (X == 0) return 0" before div/mod by X; never #DE
                e(x86.test_r32_r32(REG_X, REG_X))
                self.jcc("je", "abort")
                divisor = REG_X
            elif k == 0:         # the verifier refuses it; the interpreter aborts
                return self.jmp("abort")
            else:
                divisor = self.imm(k) if self.key is not None else TMP1
                if self.key is None:
                    e(x86.mov_r32_imm32(TMP1, k))
            e(x86.xor_r32_r32(RDX, RDX), x86.div_r32(divisor))
            if op in (I.MOD_K, I.MOD_X):
                e(x86.mov_r32_r32(REG_A, RDX))
        elif op in (I.LSH_K, I.RSH_K):
            fn = x86.shl_r32_imm8 if op == I.LSH_K else x86.shr_r32_imm8
            if k & 31:
                e(fn(REG_A, k & 31))
        elif op in (I.LSH_X, I.RSH_X):
            # the hardware masks CL to 5 bits: exactly the kernel's "A << (X & 31)"
            e(x86.shl_r32_cl(REG_A) if op == I.LSH_X else x86.shr_r32_cl(REG_A))
        else:   # NEG
            e(x86.neg_r32(REG_A))

    # -- jumps --------------------------------------------------------------------------------
    def jump(self, pc, op, k, t, f):
        """bpf_jit_comp.c's rule: jmp if jt == jf; else jcc(true) + jmp, or jcc(false)."""
        nxt = pc + 1
        if t == f:
            if t != nxt:
                self.jmp(t)
            return
        e = self.emit
        jset = op in (I.JSET_K, I.JSET_X)
        if op >= I.JEQ_X:
            e((x86.test_r32_r32 if jset else x86.cmp_r32_r32)(REG_A, REG_X))
        elif self.key is not None:
            e((x86.test_r32_r32 if jset else x86.cmp_r32_r32)(REG_A, self.imm(k)))
        else:
            e(x86.test_r32_imm32(REG_A, k) if jset else x86.cmp_r32_imm(REG_A, k))
        cc = _TRUE[op]
        if t != nxt:
            self.jcc(cc, t)
            if f != nxt:
                self.jmp(f)
        else:
            self.jcc(_FALSE[cc], f)

    # -- scratch memory ---------------------------------------------------------------------
    def load_mem(self, dst, k):
        if self.profile == "pio":
            self.load_be(dst, self.scratch(k), 4)
        else:
            self.emit(x86.mov_r32_m32(dst, self.scratch(k)))

    def store_mem(self, src, k):
        m = self.scratch(k)
        if self.profile != "pio":
            self.emit(x86.mov_m32_r32(m, src))
        elif self.movbe:
            self.emit(x86.movbe_m32_r32(m, src))
        else:
            self.emit(x86.mov_r32_r32(TMP1, src), x86.bswap_r32(TMP1), x86.mov_m32_r32(m, TMP1))

    # -- input loads --------------------------------------------------------------------------
    def load(self, pc, op, k, t):
        size = 1 if op == I.LDX_MSH else (t if op in (I.LD_IND, I.LD_GEN) else
                                           {I.LD_ABS: 4, I.LDH_ABS: 2, I.LDB_ABS: 1}[op])
        dst = REG_X if op == I.LDX_MSH else REG_A
        if self.profile == "seccomp":
            self.seccomp_load(op, k, size)
        elif op == I.LD_IND:
            self.indexed(pc, k, size, dst)
        elif self.profile == "pio" or to_s32(k) >= 0:
            if k + size > U32:
                return self.jmp("abort")
            self.emit(x86.cmp_r32_imm(REG_LEN, k + size))
            self.jcc("jb", "abort")
            self.load_be(dst, mem(REG_DATA, k), size)
        else:
            self.header_offset(to_s32(k))
            self.checked_load(dst, size)
        if op == I.LDX_MSH:        # ldx 4*([k]&0xf)
            self.emit(x86.and_r32_imm(REG_X, 0xF), x86.shl_r32_imm8(REG_X, 2))

    def seccomp_load(self, op, k, size):
        # seccomp_check_filter lets only ld [k] with k % 4 == 0 and k < 64 through;
        # the words are host-order, as the kernel's struct seccomp_data is.
        if op == I.LD_GEN and size == 4 and not k & 3 and k < 64:
            self.emit(x86.mov_r32_m32(REG_A, mem(REG_DATA, k)))
        else:
            self.jmp("abort")

    def header_offset(self, s: int):
        """RDX = the data offset of the negative constant offset ``s`` (bpf_skb_load_helper)."""
        if s >= -0x100000:          # SKF_NET_OFF + n
            self.emit(x86.mov_r64_m64(RDX, aux("net_off")), x86.add_r64_imm32(RDX, s + 0x100000))
        elif s >= -0x200000:        # SKF_LL_OFF + n: an error without a link-layer header
            self.emit(x86.mov_r32_m32(TMP1, aux("has_ll")), x86.test_r32_r32(TMP1, TMP1))
            self.jcc("je", "abort")
            self.emit(x86.mov_r64_m64(RDX, aux("ll_off")), x86.add_r64_imm32(RDX, s + 0x200000))
        else:
            self.jmp("abort")

    def checked_load(self, dst, size):
        """Load ``size`` bytes at data offset RDX (a signed 64-bit value) or abort."""
        e = self.emit
        # A start before the data reads the context's head bytes (laid out just before the
        # packet): in bounds from -len(head) on, as bpfio.exec.skb.skb_load.
        e(x86.mov_r64_m64(TMP1, aux("head_min")), x86.cmp_r64_r64(RDX, TMP1))
        self.jcc("jl", "abort")
        e(x86.lea_r64_m(TMP1, mem(RDX, size)), x86.cmp_r64_r64(TMP1, REG_LEN))
        self.jcc("jg", "abort")        # signed: the end may lie before the data too
        self.load_be(dst, mem(REG_DATA, 0, RDX), size)

    def indexed(self, pc, k, size, dst):
        """``[x + k]``: the sum wraps at 32 bits, then is read as a signed offset (socket)."""
        e = self.emit
        e(x86.lea_r32_m(RDX, mem(REG_X, to_s32(k))))
        if self.profile == "socket":
            e(x86.test_r32_r32(RDX, RDX))
            self.jcc("js", ("neg", pc))
        e(x86.lea_r64_m(TMP1, mem(RDX, size)), x86.cmp_r64_r64(TMP1, REG_LEN))
        self.jcc("ja", "abort")
        if self.profile == "socket":
            self.items.append(Label(("load", pc)))     # where the negative path rejoins
        self.load_be(dst, mem(REG_DATA, 0, RDX), size)
        if self.profile == "socket":
            self.negative_stub(pc, size)

    def negative_stub(self, pc, size):
        """Out of line: a negative ``x + k`` goes through SKF_NET_OFF / SKF_LL_OFF."""
        s = self.stubs
        s += [Label(("neg", pc)), Source(pc), x86.add_r32_imm32(RDX, 0x100000),
              Jump(CC["jns"], ("net", pc)), x86.add_r32_imm32(RDX, 0x100000),
              Jump(CC["js"], "abort"), x86.mov_r32_m32(TMP1, aux("has_ll")),
              x86.test_r32_r32(TMP1, TMP1), Jump(CC["je"], "abort"),
              x86.mov_r64_m64(TMP1, aux("ll_off")), Jump(None, ("join", pc)),
              Label(("net", pc)), x86.mov_r64_m64(TMP1, aux("net_off")),
              Label(("join", pc)), x86.add_r64_r64(RDX, TMP1),
              x86.mov_r64_m64(TMP1, aux("head_min")), x86.cmp_r64_r64(RDX, TMP1),
              Jump(CC["jl"], "abort"), x86.lea_r64_m(TMP1, mem(RDX, size)),
              x86.cmp_r64_r64(TMP1, REG_LEN), Jump(CC["jg"], "abort"),
              Jump(None, ("load", pc))]

    # -- ancillary loads ----------------------------------------------------------------------
    def ancillary(self, pc, k):
        e = self.emit
        name = _AD_NAME.get(k)
        if self.profile == "seccomp" or (self.profile == "pio" and name != "RANDOM"):
            return self.jmp("abort")        # pio: only rand; seccomp: none
        if name in _AUX_FIELD:
            e(x86.mov_r32_m32(REG_A, aux(_AUX_FIELD[name])))
        elif name in ("IFINDEX", "HATYPE"):
            field = name.lower()
            e(x86.mov_r32_m32(TMP1, aux("has_" + field)), x86.test_r32_r32(TMP1, TMP1))
            self.jcc("je", "ret_a")
            e(x86.mov_r32_m32(REG_A, aux(field)))
        elif name == "ALU_XOR_X":
            e(x86.xor_r32_r32(REG_A, REG_X))
        elif name == "RANDOM":
            e(*rand(self.profile))
        else:
            self.items += nla(pc, name == "NLATTR_NEST")


def translate(program, profile: str, *, harden: bool = False, movbe: bool | None = None,
              extra=None) -> Image:
    """Translate a verified program; ``extra`` items (drivers) are laid out after it."""
    ops = I.predecode(program, profile)
    if ops[-1][0] == I.LD_GEN and ops[-1][3] == -1:
        raise I.VMError("program does not end with ret", pc=len(program) - 1)
    tr = Translator(ops, profile, harden=harden, movbe=movbe, extra=extra)
    code, listing, labels = assemble(tr.run())
    return Image(code, listing, labels, tr.rand_reads, tr.key)
