"""The verifier: the kernel's classic-BPF checks, per profile, with reasons.

Three profiles share one pass over the program:

``socket``
    exactly ``bpf_check_basics_ok`` + ``bpf_check_classic`` +
    ``check_load_and_stores`` from ``net/core/filter.c``: same rules, same
    order, so the same first failure and the same errno as
    ``setsockopt(SO_ATTACH_FILTER)``.
``seccomp``
    the socket rules, then ``seccomp_check_filter`` (``kernel/seccomp.c``):
    the 41-opcode allow-list, ``ld [k]`` aligned with k < 64.
``pio``
    the socket rules with ``M[k]`` bounded by the binding's ``mem_words``
    and no scratch-initialisation check (the memory persists), then the PIO
    ABI's own rules: absolute loads inside the context, only the ``len``
    and ``rand`` extensions, ``ret #k`` with a known action and an existing
    notifier.

A rejection raises :class:`~bpfio.errors.VerifierError` with the pc, the
instruction, a stable rule id and the errno.  An accepted program returns a
list of :class:`Lint` warnings (see :mod:`bpfio.check.lint`), which never change
the decision.  Two warnings mirror what the kernel refuses only *after* the
classic checks, when it converts the program to eBPF: a converted jump that
does not fit eBPF's 16-bit offset (EINVAL) and, for sockets, a converted
program larger than ``net.core.optmem_max`` (ENOMEM).

Example::

    >>> from bpfio.insn import Insn
    >>> verify([Insn(0x06, 0, 0, 0xffff)])
    []
"""

from __future__ import annotations

import errno as _errno
from functools import lru_cache

from bpfio.check.lint import Lint, format_insn, lint_program
from bpfio.errors import UsageError, VerifierError
from bpfio.insn import Program
from bpfio.isa import (ANCILLARY_BY_K, BPF_ABS, BPF_ALU, BPF_B, BPF_DIV, BPF_IND,
                       BPF_JA, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_LDX, BPF_LSH,
                       BPF_MAXINSNS, BPF_MEM, BPF_MEMWORDS, BPF_MOD, BPF_MSH,
                       BPF_RET, BPF_RSH, BPF_ST, BPF_STX, BPF_W, BPF_X, KERNEL_CODES,
                       OPCODES, SECCOMP_CODES, SKF_AD, SKF_AD_OFF, to_s32)

PROFILES = ("socket", "seccomp", "pio")
SECCOMP_DATA_SIZE = 64          # sizeof(struct seccomp_data)
S16_MAX = 32767                 # eBPF jump offsets are s16
DEFAULT_OPTMEM_MAX = 131072     # net.core.optmem_max on current kernels
# offsetof(struct bpf_prog, insns) on x86-64 Linux 6.18 (any of 96..103 fits), measured with
# SO_ATTACH_FILTER at the optmem_max boundary (tests/test_kernel_verify.py).
BPF_PROG_HEADER = 96


def _codes(pred) -> frozenset[int]:
    return frozenset(c for c, i in OPCODES.items() if i.kernel and pred(i))


# Opcode groups the checks switch on, derived from the one table.
DIVMOD_K = _codes(lambda i: i.cls == BPF_ALU and i.op in (BPF_DIV, BPF_MOD) and i.src == BPF_K)
SHIFT_K = _codes(lambda i: i.cls == BPF_ALU and i.op in (BPF_LSH, BPF_RSH) and i.src == BPF_K)
MEM_LOADS = _codes(lambda i: i.cls in (BPF_LD, BPF_LDX) and i.mode == BPF_MEM)
MEM_STORES = _codes(lambda i: i.cls in (BPF_ST, BPF_STX))
MEM_ACCESS = MEM_LOADS | MEM_STORES
JA = BPF_JMP | BPF_JA
COND_JUMPS = _codes(lambda i: i.is_cond_jump)
ABS_LOADS = _codes(lambda i: i.cls == BPF_LD and i.mode == BPF_ABS)
IND_LOADS = _codes(lambda i: i.cls == BPF_LD and i.mode == BPF_IND)
MSH = BPF_LDX | BPF_B | BPF_MSH
RET_OK = _codes(lambda i: i.is_ret)           # RET K and RET A (RET X is not kernel)
RET_K = BPF_RET | BPF_K
SECCOMP_LD_ABS = BPF_LD | BPF_W | BPF_ABS

# pio: the only ancillary loads that mean something for a port access.
PIO_ANCILLARY_OK = frozenset({SKF_AD_OFF + SKF_AD["RANDOM"]})


@lru_cache(maxsize=1)
def optmem_max() -> int:
    """This machine's ``net.core.optmem_max`` (the default when unreadable)."""
    try:
        with open("/proc/sys/net/core/optmem_max") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return DEFAULT_OPTMEM_MAX


class _Checker:
    """One verification: raises on the first failure, in the kernel's order."""

    def __init__(self, prog: Program, profile: str, mem_words: int, notifiers: int):
        self.prog = prog
        self.profile = profile
        self.mem_words = mem_words
        self.notifiers = notifiers

    def fail(self, pc: int | None, rule: str, reason: str,
             errno: int = _errno.EINVAL) -> VerifierError:
        insn = None if pc is None else self.prog[pc]
        disasm = None if insn is None else format_insn(insn, pc)
        return VerifierError(reason, pc=pc, insn=insn, rule=rule, errno=errno,
                             profile=self.profile, disasm=disasm)

    # -- bpf_check_basics_ok ------------------------------------------------
    def check_basics(self) -> None:
        n = len(self.prog)
        if n == 0:
            raise self.fail(None, "empty", "the program has no instructions; "
                            "the kernel takes 1 to 4096")
        if n > BPF_MAXINSNS:
            raise self.fail(None, "too-long", f"the program has {n} instructions; "
                            f"the kernel takes at most {BPF_MAXINSNS}")

    # -- bpf_check_classic --------------------------------------------------
    def check_classic(self) -> None:
        prog, n = self.prog, len(self.prog)
        words = self.mem_words
        for pc, (code, jt, jf, k) in enumerate(prog):
            if code not in KERNEL_CODES:
                raise self.fail(pc, "opcode-not-allowed", _bad_code_reason(code))
            if code in DIVMOD_K:
                if k == 0:
                    what = "division" if OPCODES[code].op == BPF_DIV else "modulo"
                    raise self.fail(pc, "div-by-zero", f"{what} by the constant 0")
            elif code in SHIFT_K:
                if k >= 32:
                    raise self.fail(pc, "shift-too-large",
                                    f"shift by {k}; the kernel allows 0 to 31")
            elif code in MEM_ACCESS:
                if k >= words:
                    raise self.fail(pc, "mem-index", f"M[{k}] does not exist; "
                                    f"{self._memory_name()} is M[0] to M[{words - 1}]")
            elif code == JA:
                if k >= n - pc - 1:
                    raise self.fail(pc, "ja-out-of-range", _ja_reason(pc, k, n))
            elif code in COND_JUMPS:
                for name, off in (("jt", jt), ("jf", jf)):
                    if pc + off + 1 >= n:
                        raise self.fail(pc, "jump-out-of-range",
                                        f"{name} {off} lands at pc {pc + off + 1}, past "
                                        f"the last instruction (pc {n - 1})")
            elif code in ABS_LOADS:
                if k >= SKF_AD_OFF and k not in ANCILLARY_BY_K:
                    raise self.fail(pc, "unknown-ancillary",
                                    f"k {k:#x} is in the ancillary area (SKF_AD_OFF + "
                                    f"{k - SKF_AD_OFF}) but names no SKF_AD_* field")
        if prog[n - 1].code not in RET_OK:
            raise self.fail(n - 1, "last-not-ret",
                            "the last instruction must be 'ret #k' or 'ret a'")

    def _memory_name(self) -> str:
        if self.profile == "pio":
            return f"the binding's shared memory ({self.mem_words} words)"
        return "scratch memory"

    # -- check_load_and_stores ----------------------------------------------
    def check_load_and_stores(self) -> None:
        prog = self.prog
        masks = [0xffff] * len(prog)
        memvalid = 0
        for pc, (code, jt, jf, k) in enumerate(prog):
            memvalid &= masks[pc]
            if code in MEM_STORES:
                memvalid |= 1 << k
            elif code in MEM_LOADS:
                if not memvalid >> k & 1:
                    raise self.fail(pc, "uninit-mem", self._uninit_reason(pc, k))
            elif code == JA:
                masks[pc + 1 + k] &= memvalid
                memvalid = 0xffff
            elif code in COND_JUMPS:
                masks[pc + 1 + jt] &= memvalid
                masks[pc + 1 + jf] &= memvalid
                memvalid = 0xffff

    def _uninit_reason(self, load_pc: int, k: int) -> str:
        """Name one path (in the kernel's linear model) that never stores M[k]."""
        prog = self.prog
        bit = 1 << k
        out = [0] * (load_pc + 1)       # memvalid after each pc (or passed on by a jump)
        preds: list[list[tuple[int, str]]] = [[] for _ in range(load_pc + 1)]
        masks = [0xffff] * len(prog)
        memvalid = 0
        for pc in range(load_pc + 1):
            code, jt, jf, kk = prog[pc]
            memvalid &= masks[pc]
            if code in MEM_STORES:
                memvalid |= 1 << kk
            out[pc] = memvalid
            targets = ()
            if code == JA:
                targets = (pc + 1 + kk,)
            elif code in COND_JUMPS:
                targets = (pc + 1 + jt, pc + 1 + jf)
            for t in targets:
                masks[t] &= memvalid
                if t <= load_pc:
                    preds[t].append((pc, "jump"))
            if targets:
                memvalid = 0xffff
            elif pc + 1 <= load_pc:
                preds[pc + 1].append((pc, "ret" if code in RET_OK else "next"))
        path, via_ret, cur = [load_pc], [], load_pc
        while cur != 0:
            cands = [(p, how) for p, how in preds[cur] if not out[p] & bit]
            # Prefer real control flow over the kernel's fall-through after 'ret'.
            cands.sort(key=lambda c: (c[1] == "ret", -c[0]))
            cur, how = cands[0]
            if how == "ret":
                via_ret.append(cur)
            path.append(cur)
        path.reverse()
        shown = " -> ".join(map(str, path)) if len(path) <= 12 else (
            " -> ".join(map(str, path[:5])) + " -> ... -> " + " -> ".join(map(str, path[-5:])))
        if len(path) == 1:
            return f"M[{k}] is read by the first instruction, before anything stores it"
        reason = (f"M[{k}] may be read before it is written: on the path "
                  f"pc {shown} no instruction stores M[{k}]")
        if via_ret:
            reason += (f" (the kernel's linear check lets 'ret' at pc "
                       f"{', '.join(map(str, sorted(via_ret)))} fall through)")
        return reason

    # -- seccomp_check_filter -----------------------------------------------
    def check_seccomp(self) -> None:
        for pc, (code, _jt, _jf, k) in enumerate(self.prog):
            if code == SECCOMP_LD_ABS:
                if k >= SECCOMP_DATA_SIZE:
                    raise self.fail(pc, "seccomp-load-bounds",
                                    f"ld [{k:#x}] is outside struct seccomp_data "
                                    f"({SECCOMP_DATA_SIZE} bytes)")
                if k & 3:
                    raise self.fail(pc, "seccomp-load-align",
                                    f"ld [{k}] is not 4-byte aligned; seccomp reads "
                                    "whole words of struct seccomp_data")
            elif code not in SECCOMP_CODES:
                raise self.fail(pc, "seccomp-opcode",
                                f"'{OPCODES[code].mnemonic}' ({_form(code)}) is not on "
                                "seccomp's allow-list")

    # -- the PIO ABI --------------------------------------------------------
    def check_pio(self) -> None:
        from bpfio.abi import pio as abi
        ctx_len = abi.PIO_HDR_LEN + 4 * self.mem_words
        known = {abi.PIO_EXIT >> 16, abi.PIO_DONE >> 16, abi.PIO_NOTIFY >> 16}
        for pc, (code, _jt, _jf, k) in enumerate(self.prog):
            if code in ABS_LOADS:
                anc = ANCILLARY_BY_K.get(k)
                if anc is not None:
                    if k not in PIO_ANCILLARY_OK:
                        raise self.fail(pc, "pio-ancillary",
                                        f"ancillary load '{anc.asm_name or anc.pcap_name}' "
                                        "means nothing for port I/O; only 'len' and "
                                        "'rand' are available")
                    continue
                size = OPCODES[code].size
                if k + size > ctx_len:
                    raise self.fail(pc, "pio-load-bounds", _bounds_reason(k, size, ctx_len))
            elif code == MSH:
                if k + 1 > ctx_len:
                    raise self.fail(pc, "pio-load-bounds", _bounds_reason(k, 1, ctx_len))
            elif code == RET_K:
                action, index = k >> 16, k & 0xffff
                if action not in known:
                    raise self.fail(pc, "pio-action",
                                    f"verdict {k:#010x} carries action {action:#x}; known "
                                    "actions are EXIT (0), DONE (1) and NOTIFY (2)")
                if action == abi.PIO_NOTIFY >> 16 and index >= self.notifiers:
                    raise self.fail(pc, "pio-notifier",
                                    f"NOTIFY names notifier {index}, but the binding has "
                                    f"{self.notifiers} (0 to {self.notifiers - 1})"
                                    if self.notifiers else
                                    f"NOTIFY names notifier {index}, but the binding has none")


def _form(code: int) -> str:
    return f"code {code:#04x}"


def _bad_code_reason(code: int) -> str:
    info = OPCODES.get(code)
    if info is not None and info.is_ret:
        return "'ret x' (code 0x0e) is not accepted by the kernel; use 'txa' then 'ret a'"
    return f"code {code:#06x} is not one of the kernel's 49 classic BPF opcodes"


def _ja_reason(pc: int, k: int, n: int) -> str:
    if k >= 0x80000000:
        return (f"ja offset {to_s32(k)} jumps backwards; classic BPF jumps only forward")
    return f"ja lands at pc {pc + 1 + k}, past the last instruction (pc {n - 1})"


def _bounds_reason(k: int, size: int, ctx_len: int) -> str:
    return (f"a {size}-byte load at offset {k:#x} ends past the {ctx_len}-byte context "
            f"(40-byte header + shared memory)")


def _as_program(program) -> Program:
    return program if isinstance(program, Program) else Program(program)


def check_options(profile: str, mem_words: int, notifiers: int) -> None:
    """Raise UsageError (a ValueError) for an unknown profile or out-of-range pio options."""
    if profile not in PROFILES:
        raise UsageError(f"verify: unknown verifier profile {profile!r}; choose one of "
                         f"{', '.join(PROFILES)}")
    for name, value in (("mem_words", mem_words), ("notifiers", notifiers)):
        if type(value) is not int:
            raise UsageError(f"verify: {name} must be an int, not {type(value).__name__}")
    if profile == "pio":
        from bpfio.abi import pio as abi
        if not abi.PIO_MEM_MIN <= mem_words <= abi.PIO_MEM_MAX:
            raise UsageError(f"verify: mem_words {mem_words} is outside "
                             f"{abi.PIO_MEM_MIN}..{abi.PIO_MEM_MAX}")
        if not 0 <= notifiers <= 0x10000:
            raise UsageError(f"verify: notifiers {notifiers} is outside 0..65536")


def verify(program, *, profile: str = "socket", mem_words: int = BPF_MEMWORDS,
           notifiers: int = 0, lints: bool = True) -> list[Lint]:
    """Check ``program`` as the chosen profile would; return warnings or raise.

    Raises :class:`~bpfio.errors.VerifierError` at the first rule the
    program breaks (in the kernel's order); otherwise returns the lints
    (``lints=False`` skips them).  ``mem_words`` and ``notifiers`` only
    matter for the ``pio`` profile.
    """
    check_options(profile, mem_words, notifiers)
    prog = _as_program(program)
    words = mem_words if profile == "pio" else BPF_MEMWORDS
    checker = _Checker(prog, profile, words, notifiers)
    checker.check_basics()
    checker.check_classic()
    if profile == "pio":
        checker.check_pio()
    else:
        checker.check_load_and_stores()
        if profile == "seccomp":
            checker.check_seccomp()
    if not lints:
        return []
    found = lint_program(prog, profile=profile, mem_words=words, notifiers=notifiers)
    if profile != "pio":
        found += conversion_warnings(prog, profile=profile)
    found.sort(key=lambda w: (-1 if w.pc is None else w.pc, w.rule))
    return found


# -- what the kernel refuses after the classic checks -------------------------

def _ld_abs_len(k: int, size: int, indirect: bool) -> int:
    """eBPF length of convert_bpf_ld_abs on x86-64 (unaligned access is fine)."""
    offset = to_s32(k)
    slow = 8 + (1 if indirect and k else 0)
    if indirect or offset < 0:
        return slow
    fast = 1 + (offset != 0) + 1 + (1 if offset <= S16_MAX else 3) + (size != 1) + 1
    return fast + slow


# convert_bpf_extensions: eBPF instructions per ancillary field (x86-64).
_EXTENSION_LEN = {"PROTOCOL": 2, "PKTTYPE": 2, "IFINDEX": 4, "HATYPE": 4, "MARK": 1,
                  "RXHASH": 1, "QUEUE": 1, "VLAN_TAG": 1, "VLAN_TAG_PRESENT": 3,
                  "VLAN_TPID": 2, "PAY_OFFSET": 4, "NLATTR": 4, "NLATTR_NEST": 4,
                  "CPU": 4, "RANDOM": 4, "ALU_XOR_X": 1}


def _static_len(code: int) -> int | None:
    """eBPF length of an opcode whose expansion does not depend on its fields."""
    info = OPCODES[code]
    if code in ABS_LOADS or code in IND_LOADS or code == MSH or code in COND_JUMPS:
        return None
    if info.cls == BPF_ALU and info.op in (BPF_DIV, BPF_MOD) and info.src != BPF_K:
        return 5                                    # the X == 0 test and exit
    return 2 if code == RET_K else 1


_STATIC_LEN = {code: _static_len(code) for code in KERNEL_CODES}
# The longest expansion of one instruction (MSH with a large offset; for
# seccomp, div/mod by X): used to skip the model for programs that cannot
# reach any limit.
_MAX_EXPANSION = {"socket": 1 + 16 + 5, "seccomp": 5}


def converted_layout(program, *, profile: str = "socket") -> tuple[list[int], int]:
    """Model ``bpf_convert_filter``: (eBPF address of each insn, total length).

    Only meaningful for programs the classic checks accept.  Addresses count
    the prologue (3 instructions, 7 once the program loads packet bytes).
    """
    addrs, total, _jumps = _convert(program, profile)
    return addrs, total


def _convert(program, profile: str):
    """(addresses, total length, [(pc, target pc, slot of the eBPF jump)])."""
    addrs, jumps, pos, seen_ld_abs = [], [], 0, False
    static = _STATIC_LEN
    for pc, (code, jt, jf, k) in enumerate(program):
        addrs.append(pos)
        n = static[code]
        if n is None:
            if code in COND_JUMPS:
                # A negative immediate is first moved into a register (eBPF imm is signed).
                slot = 1 if k >= 0x80000000 and not code & BPF_X else 0
                if jf == 0:
                    jumps.append((pc, pc + 1 + jt, slot))
                elif jt == 0 and code & 0xf0 != BPF_JSET:   # JEQ/JGT/JGE invert
                    jumps.append((pc, pc + 1 + jf, slot))
                else:                                       # Jxx to jt, then JA to jf
                    jumps.append((pc, pc + 1 + jt, slot))
                    slot += 1
                    jumps.append((pc, pc + 1 + jf, slot))
                n = slot + 1
            elif profile == "seccomp" and code == SECCOMP_LD_ABS:
                n = 1                               # rewritten to LDX|W|ABS
            elif k in ANCILLARY_BY_K and code in ABS_LOADS:
                n = _EXTENSION_LEN[ANCILLARY_BY_K[k].kernel_name]
            elif code == MSH:
                n = 1 + _ld_abs_len(k, 1, False) + 5
                seen_ld_abs = True
            else:
                n = _ld_abs_len(k, OPCODES[code].size, code in IND_LOADS)
                seen_ld_abs = True
        elif code == JA:
            jumps.append((pc, pc + 1 + k, 0))
        pos += n
    base = 7 if seen_ld_abs else 3
    return [a + base for a in addrs], pos + base, jumps


def conversion_warnings(program, *, profile: str = "socket") -> list[Lint]:
    """Warnings for what the kernel refuses when converting an accepted program."""
    prog = _as_program(program)
    limit = optmem_max()
    smallest = S16_MAX                              # seccomp is not charged to a socket
    if profile == "socket":
        smallest = min(smallest, (limit - BPF_PROG_HEADER) // 8 - 1)
    if 7 + 2 + _MAX_EXPANSION[profile] * len(prog) < smallest:
        return []                                   # far from every limit
    addrs, total, jumps = _convert(prog, profile)
    for pc, target, slot in jumps:
        here = addrs[pc] + slot
        # The converter's first addressed pass sees 0 for every forward
        # target, so a jump placed past 32768 fails there already.
        if addrs[target] - here - 1 > S16_MAX or here + 1 > S16_MAX + 1:
            return [Lint(pc, "convert-jump-range",
                         f"after conversion to eBPF this jump sits at or spans more "
                         f"than {S16_MAX} instructions; the kernel refuses the "
                         "program with EINVAL", prog[pc])]
    if profile == "socket":
        size = BPF_PROG_HEADER + 8 * total
        if size >= limit:
            return [Lint(None, "convert-too-large",
                         f"the converted program ({total} eBPF instructions, {size} "
                         f"bytes) reaches net.core.optmem_max ({limit}); "
                         "SO_ATTACH_FILTER fails with ENOMEM")]
    return []


def kernel_errno(program, *, profile: str = "socket") -> int:
    """The errno the live kernel would return for ``program`` (0 = accepted).

    For ``socket`` and ``seccomp`` this is the classic checks plus the
    conversion limits that :func:`verify` only warns about.
    """
    try:
        verify(program, profile=profile, lints=False)
    except VerifierError as err:
        return err.errno
    for warning in conversion_warnings(program, profile=profile):
        return _errno.ENOMEM if warning.rule == "convert-too-large" else _errno.EINVAL
    return 0
