"""Kernel constants for classic BPF and the one table that knows every opcode.

The 16-bit ``code`` of ``struct sock_filter`` (``<linux/filter.h>``,
``<linux/bpf_common.h>``) is laid out as::

    LD/LDX:   | mode (3 bits) | size (2 bits) | class (3 bits) |
                 0xe0            0x18            0x07
    ALU/JMP:  | op (4 bits)   | src (1 bit)   | class (3 bits) |
                 0xf0            0x08            0x07
    RET:      | rval in 0x18 (K 0x00, X 0x08, A 0x10)  | class  |
    MISC:     | miscop in 0xf8 (TAX 0x00, TXA 0x80)    | class  |

Every per-opcode fact lives in :data:`OPCODES` (code -> :class:`OpInfo`).
The table is built by crossing small lists, then checked against the
kernel's ``chk_code_allowed`` list of 49 codes.  Disassembler, verifier,
interpreter and compiler all read this table; none repeats the switch.
"""

from __future__ import annotations

from dataclasses import dataclass

# Instruction classes (code & 0x07).
BPF_LD = 0x00    # load into A
BPF_LDX = 0x01   # load into X
BPF_ST = 0x02    # store A into M[k]
BPF_STX = 0x03   # store X into M[k]
BPF_ALU = 0x04   # arithmetic on A
BPF_JMP = 0x05   # jumps
BPF_RET = 0x06   # return
BPF_MISC = 0x07  # register transfers

# Load sizes (code & 0x18).
BPF_W = 0x00   # 32-bit word
BPF_H = 0x08   # 16-bit half word
BPF_B = 0x10   # byte

# Load modes (code & 0xe0).
BPF_IMM = 0x00  # k itself
BPF_ABS = 0x20  # packet[k]
BPF_IND = 0x40  # packet[X + k]
BPF_MEM = 0x60  # M[k]
BPF_LEN = 0x80  # packet length
BPF_MSH = 0xa0  # 4 * (packet[k] & 0xf)

# ALU operations (code & 0xf0).
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xa0

# Jump operations (code & 0xf0).
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40

# Operand source (code & 0x08) for ALU and JMP; return value source for RET.
BPF_K = 0x00
BPF_X = 0x08
BPF_A = 0x10

# MISC operations (code & 0xf8).
BPF_TAX = 0x00
BPF_TXA = 0x80

BPF_MAXINSNS = 4096  # longest program the kernel accepts
BPF_MEMWORDS = 16    # scratch words M[0..15]

SKF_AD_OFF = 0xfffff000   # -0x1000: ancillary data area
SKF_NET_OFF = 0xfff00000  # -0x100000: relative to the network header
SKF_LL_OFF = 0xffe00000   # -0x200000: relative to the link-layer header


@dataclass(frozen=True, slots=True)
class Ancillary:
    """One ancillary (SKF_AD_*) load: offset from SKF_AD_OFF and its names."""

    offset: int        # SKF_AD_* value
    kernel_name: str   # SKF_AD_ suffix in <linux/filter.h>
    asm_name: str      # bpf_asm extension word ("" when bpf_asm has none)
    pcap_name: str     # how tcpdump -d prints it inside [...]

    @property
    def k(self) -> int:
        """The k of an ABS load that reads this field."""
        return SKF_AD_OFF + self.offset


ANCILLARY: tuple[Ancillary, ...] = (
    Ancillary(0, "PROTOCOL", "proto", "proto"),
    Ancillary(4, "PKTTYPE", "type", "type"),
    Ancillary(8, "IFINDEX", "ifidx", "ifidx"),
    Ancillary(12, "NLATTR", "nla", "nla"),
    Ancillary(16, "NLATTR_NEST", "nlan", "nlan"),
    Ancillary(20, "MARK", "mark", "mark"),
    Ancillary(24, "QUEUE", "queue", "queue"),
    Ancillary(28, "HATYPE", "hatype", "hatype"),
    Ancillary(32, "RXHASH", "rxhash", "rxhash"),
    Ancillary(36, "CPU", "cpu", "cpu"),
    Ancillary(40, "ALU_XOR_X", "", "xor_x"),
    Ancillary(44, "VLAN_TAG", "vlan_tci", "vlan_tci"),
    Ancillary(48, "VLAN_TAG_PRESENT", "vlan_avail", "vlanp"),
    Ancillary(52, "PAY_OFFSET", "poff", "poff"),
    Ancillary(56, "RANDOM", "rand", "random"),
    Ancillary(60, "VLAN_TPID", "vlan_tpid", "vlan_tpid"),
)
ANCILLARY_BY_K = {a.k: a for a in ANCILLARY}
SKF_AD = {a.kernel_name: a.offset for a in ANCILLARY}
SKF_AD_MAX = 64

# bpf_asm extension words -> ancillary offset (vlan_pr is an alias of vlan_avail).
ASM_EXTENSIONS = {a.asm_name: a.offset for a in ANCILLARY if a.asm_name}
ASM_EXTENSIONS["vlan_pr"] = SKF_AD["VLAN_TAG_PRESENT"]


@dataclass(frozen=True, slots=True)
class OpInfo:
    """Everything bpfio knows about one opcode value."""

    code: int
    mnemonic: str        # bpf_asm mnemonic (ld, ldh, jeq, add, ret, ...)
    cls: int             # BPF_LD ... BPF_MISC
    size: int            # bytes a packet load reads (4, 2, 1), else 0
    mode: int            # BPF_IMM ... BPF_MSH for LD/LDX, else 0
    op: int              # ALU/JMP op, MISC op or RET rval
    src: int             # BPF_K or BPF_X for ALU/JMP; BPF_K/X/A for RET
    kernel: bool         # accepted by the kernel's chk_code_allowed
    seccomp: bool        # accepted by seccomp_check_filter

    @property
    def is_jump(self) -> bool:
        """True for every JMP-class code (JA and the conditional ones)."""
        return self.cls == BPF_JMP

    @property
    def is_cond_jump(self) -> bool:
        """True for JEQ/JGT/JGE/JSET, the jumps that use jt and jf."""
        return self.cls == BPF_JMP and self.op != BPF_JA

    @property
    def is_ret(self) -> bool:
        """True for RET K and RET A (and the kernel-rejected RET X)."""
        return self.cls == BPF_RET


ALU_OPS = {BPF_ADD: "add", BPF_SUB: "sub", BPF_MUL: "mul", BPF_DIV: "div",
           BPF_OR: "or", BPF_AND: "and", BPF_LSH: "lsh", BPF_RSH: "rsh",
           BPF_MOD: "mod", BPF_XOR: "xor"}
JMP_OPS = {BPF_JEQ: "jeq", BPF_JGT: "jgt", BPF_JGE: "jge", BPF_JSET: "jset"}
LOAD_SIZES = {BPF_W: ("ld", 4), BPF_H: ("ldh", 2), BPF_B: ("ldb", 1)}
# seccomp_check_filter's allow-list misses MOD and every packet access but LD|W|ABS.
_SECCOMP_DENIED_ALU = {BPF_MOD}


def _build() -> dict[int, OpInfo]:
    table: dict[int, OpInfo] = {}

    def add(code, mnemonic, cls, *, size=0, mode=0, op=0, src=0,
            kernel=True, seccomp=True):
        assert code not in table, hex(code)
        table[code] = OpInfo(code, mnemonic, cls, size, mode, op, src,
                             kernel, seccomp)

    add(BPF_LD | BPF_IMM, "ld", BPF_LD, mode=BPF_IMM)
    add(BPF_LDX | BPF_IMM, "ldx", BPF_LDX, mode=BPF_IMM)
    add(BPF_LD | BPF_MEM, "ld", BPF_LD, mode=BPF_MEM)
    add(BPF_LDX | BPF_MEM, "ldx", BPF_LDX, mode=BPF_MEM)
    add(BPF_LD | BPF_W | BPF_LEN, "ld", BPF_LD, mode=BPF_LEN)
    add(BPF_LDX | BPF_W | BPF_LEN, "ldx", BPF_LDX, mode=BPF_LEN)
    for sz, (mnem, nbytes) in LOAD_SIZES.items():
        # Only the word-sized absolute load survives seccomp (rewritten to seccomp_data).
        add(BPF_LD | sz | BPF_ABS, mnem, BPF_LD, size=nbytes, mode=BPF_ABS,
            seccomp=sz == BPF_W)
        add(BPF_LD | sz | BPF_IND, mnem, BPF_LD, size=nbytes, mode=BPF_IND,
            seccomp=False)
    add(BPF_LDX | BPF_B | BPF_MSH, "ldxb", BPF_LDX, size=1, mode=BPF_MSH,
        seccomp=False)
    add(BPF_ST, "st", BPF_ST)
    add(BPF_STX, "stx", BPF_STX)
    for op, mnem in ALU_OPS.items():
        for src in (BPF_K, BPF_X):
            add(BPF_ALU | op | src, mnem, BPF_ALU, op=op, src=src,
                seccomp=op not in _SECCOMP_DENIED_ALU)
    add(BPF_ALU | BPF_NEG, "neg", BPF_ALU, op=BPF_NEG)
    add(BPF_JMP | BPF_JA, "ja", BPF_JMP, op=BPF_JA)
    for op, mnem in JMP_OPS.items():
        for src in (BPF_K, BPF_X):
            add(BPF_JMP | op | src, mnem, BPF_JMP, op=op, src=src)
    add(BPF_RET | BPF_K, "ret", BPF_RET, op=BPF_K, src=BPF_K)
    add(BPF_RET | BPF_A, "ret", BPF_RET, op=BPF_A, src=BPF_A)
    # bpf_asm emits `ret x`, but chk_code_allowed has no entry for it.
    add(BPF_RET | BPF_X, "ret", BPF_RET, op=BPF_X, src=BPF_X,
        kernel=False, seccomp=False)
    add(BPF_MISC | BPF_TAX, "tax", BPF_MISC, op=BPF_TAX)
    add(BPF_MISC | BPF_TXA, "txa", BPF_MISC, op=BPF_TXA)
    return table


OPCODES: dict[int, OpInfo] = _build()
KERNEL_CODES = frozenset(c for c, i in OPCODES.items() if i.kernel)
SECCOMP_CODES = frozenset(c for c, i in OPCODES.items() if i.seccomp)
assert len(KERNEL_CODES) == 49 and len(SECCOMP_CODES) == 41

U32 = 0xffffffff


def to_s32(value: int) -> int:
    """Return the signed 32-bit view of a u32."""
    value &= U32
    return value - 0x100000000 if value & 0x80000000 else value
