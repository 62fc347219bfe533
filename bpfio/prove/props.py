"""Properties of one program, proved for every input: ``ret == ALLOW when nr == 39``.

The assertion language (one assertion per string)::

    assertion := claim ['when' cond]
    claim     := compare | 'never-reads' words | 'never-writes' words | 'never-touches' words
    cond      := compare {'and' compare} {'or' compare {'and' compare}}
    compare   := FIELD OP VALUE | FIELD 'in' VALUE {',' VALUE}
    OP        := '==' | '!=' | '<' | '<=' | '>' | '>='     (unsigned)
    words     := 'M[' N ']' | 'M[' N '..' N ']' | 'M[' N '..]'

Fields: ``ret`` (the u32 verdict, 0 after an abort) in every profile;
``action`` (``ret`` with the low 16 bits cleared) for seccomp and pio;
socket ``len``, ``pkt[i]`` (byte i); seccomp ``nr``, ``arch``, ``ip``,
``arg0``..``arg5`` (64-bit); pio ``port``, ``size``, ``dir``, ``data``,
``offset``, ``vcpu``, ``ticks``, ``ns`` (64-bit), ``in`` (the value an IN
receives when handled, else 0) and ``M[i]`` (shared word i: in a claim its
value after the run, in a ``when`` condition before).  Values are numbers or
names: pio ABI names from ``asm/pio.inc`` with or without ``PIO_`` (``DONE``,
``NOTIFY_2``, ``OUT``), seccomp actions (``ALLOW``, ``ERRNO(13)``), arch
names and syscall names (``nr == openat``).

``never-reads M[2..]`` means no execution reads those words (``ld M[k]``, or
for pio a load of their bytes at ``PIO_MEM + 4k``); ``never-writes`` no
``st``/``stx`` to them executes.
"""

from __future__ import annotations

import re
import time

import z3

from bpfio import isa
from bpfio.abi import pio as abi
from bpfio.prove.encode import Outputs, ProveError, State, and_, bv, encode
from bpfio.prove.inputs import inputs_for
from bpfio.prove.equiv import (PIO_OBSERVED, Result, as_program, concrete_input, observation,
                               run_execution, run_observed, solve)

_TOKEN = re.compile(r"\s*(?:(==|!=|<=|>=|<|>|,|\.\.|\[|\]|\(|\))|([A-Za-z_][\w-]*)|"
                    r"(0[xX][0-9a-fA-F]+|\d+))")
_OPS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": z3.ULT, "<=": z3.ULE,
        ">": z3.UGT, ">=": z3.UGE}
_FIELDS = {"socket": ("ret", "len", "pkt[i]"),
           "seccomp": ("ret", "action", "nr", "arch", "ip", "arg0..arg5"),
           "pio": ("ret", "action", "in", "port", "size", "dir", "data", "offset", "vcpu",
                   "ticks", "ns", "M[i]")}


def _tokens(text: str):
    pos, out = 0, []
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m:
            raise _error(pos + 1, f"unexpected '{text[pos:].strip()[:10]}'")
        col = m.start(0) + len(m.group(0)) - len(m.group(0).lstrip()) + 1
        out.append((m.group(1) or m.group(2) or m.group(3), col, bool(m.group(3))))
        pos = m.end()
    out.append(("", len(text) + 1, False))
    return out


class AssertionSyntaxError(ProveError):
    """An assertion that does not parse; the place is the assertion and the column."""

    def __init__(self, col: int, problem: str, text: str = ""):
        self.col, self.problem, self.text = col, problem, text
        super().__init__(f"--assert '{text}':{col}: error: {problem}")


def _error(col: int, problem: str) -> ProveError:
    return AssertionSyntaxError(col, problem)


def _int(tok: str, col: int) -> int:
    """A number token as an int; a decimal with a leading 0 (``int(tok, 0)`` refuses it)."""
    if len(tok) > 1 and tok[0] == "0" and tok[1].isdigit():
        raise _error(col, f"'{tok}': a decimal number cannot start with 0")
    return int(tok, 0)


class _Parser:
    """Recursive descent over the tokens; builds z3 terms as it goes."""

    def __init__(self, text, profile, inputs, out):
        self.toks = _tokens(text)
        self.i = 0
        self.profile, self.inputs, self.out = profile, inputs, out

    def peek(self):
        return self.toks[min(self.i, len(self.toks) - 1)][0]

    def take(self, want=None):
        tok, col, _ = self.toks[min(self.i, len(self.toks) - 1)]
        if not tok and want is None:
            raise _error(col, "unexpected end of the assertion")
        if want is not None and tok != want:
            raise _error(col, f"expected '{want}', found '{tok or 'end of text'}'")
        self.i += 1
        return tok, col

    def number(self):
        tok, col, is_num = self.toks[min(self.i, len(self.toks) - 1)]
        if not is_num:
            raise _error(col, f"expected a number, found '{tok or 'end of text'}'")
        self.i += 1
        return _int(tok, col)

    def words(self):
        """``M[a]``, ``M[a..b]`` or ``M[a..]`` -> range of word indexes."""
        tok, col = self.take()
        if tok != "M":
            raise _error(col, f"expected M[...], found '{tok or 'end of text'}'")
        self.take("[")
        lo = self.number()
        hi = lo
        if self.peek() == "..":
            self.take()
            hi = None if self.peek() == "]" else self.number()
        self.take("]")
        nwords = len(self.inputs.mem0)
        hi = nwords - 1 if hi is None else hi
        if hi < lo or lo >= nwords:
            raise _error(col, f"M[{lo}..{hi}] is empty or not inside M[0..{nwords - 1}]")
        return range(lo, min(hi, nwords - 1) + 1)

    def field(self, final: bool):
        tok, col = self.take()
        p, inp = self.profile, self.inputs
        if tok == "ret":
            return bv(self.out.verdict()), 32
        if tok == "action" and p != "socket":
            return bv(self.out.verdict()) & 0xffff0000, 32
        if p == "socket" and tok == "len":
            return inp.length, 32
        if p == "socket" and tok == "pkt":
            self.take("[")
            i = self.number()
            self.take("]")
            return z3.ZeroExt(24, z3.Select(inp.pkt, i)), 32
        if p == "seccomp":
            w = inp.words
            simple = {"nr": w[0], "arch": w[1], "ip": z3.Concat(w[3], w[2])}
            simple.update({f"arg{i}": z3.Concat(w[5 + 2 * i], w[4 + 2 * i]) for i in range(6)})
            if tok in simple:
                return simple[tok], simple[tok].size()
        if p == "pio":
            if tok == "in":
                return observation("pio", inp, self.out, ("in",))[0], 32
            if tok in ("ticks", "ns"):
                return z3.Concat(inp.field(tok + "_hi"), inp.field(tok)), 64
            if tok in inp.NAMES:
                return inp.field(tok), 32
            if tok == "M":
                self.take("[")
                i = self.number()
                self.take("]")
                if i >= len(inp.mem0):
                    raise _error(col, f"M[{i}] is outside M[0..{len(inp.mem0) - 1}]")
                if final:
                    return bv(self.out.final(lambda s: s.mem[i])), 32
                return inp.mem0[i], 32
        raise _error(col, f"unknown field '{tok or 'end of text'}' for the {p} profile "
                          f"(one of {', '.join(_FIELDS[p])})")

    def value(self, width: int, field_name: str):
        tok, col, is_num = self.toks[min(self.i, len(self.toks) - 1)]
        if is_num:
            self.i += 1
            v = _int(tok, col)
        else:
            self.take()
            arg = None
            if self.peek() == "(":
                self.take()
                arg = self.number()
                self.take(")")
            v = _name_value(self.profile, tok, arg, field_name)
            if v is None:
                raise _error(col, f"unknown value '{tok or 'end of text'}'")
        if v >= 1 << width:
            raise _error(col, f"{v:#x} does not fit the {width}-bit field")
        return z3.BitVecVal(v, width)

    def compare(self, final: bool):
        name = self.peek()
        term, width = self.field(final)
        op, col = self.take()
        if op == "in":
            values = [self.value(width, name)]
            while self.peek() == ",":
                self.take()
                values.append(self.value(width, name))
            return z3.Or(*[term == v for v in values])
        if op not in _OPS:
            raise _error(col, f"expected a comparison (== != < <= > >= in), found '{op or 'end of text'}'")
        return _OPS[op](term, self.value(width, name))

    def cond(self, final: bool):
        terms = [self.conj(final)]
        while self.peek() == "or":
            self.take()
            terms.append(self.conj(final))
        return z3.Or(*terms) if len(terms) > 1 else terms[0]

    def conj(self, final):
        terms = [self.compare(final)]
        while self.peek() == "and":
            self.take()
            terms.append(self.compare(final))
        return z3.And(*terms) if len(terms) > 1 else terms[0]

    def end(self):
        tok, col, _ = self.toks[self.i]
        if tok:
            raise _error(col, f"unexpected '{tok}' (expected 'when', 'and', 'or' or the end)")


def _name_value(profile, name, arg, field_name):
    if profile == "pio":
        for key in (name, "PIO_" + name):
            if key in abi.CONSTANTS and arg is None:
                return abi.CONSTANTS[key]
        if name in ("NOTIFY", "PIO_NOTIFY") and arg is not None:
            return abi.PIO_NOTIFY | (arg & 0xffff)
        return None
    if profile == "seccomp":
        from bpfio.abi.seccomp import ACTIONS, ARCHES, syscall_number
        by_name = {v: k for k, v in ACTIONS.items()}
        by_name["KILL"] = by_name["KILL_THREAD"]
        if name in by_name:
            return by_name[name] | ((arg or 0) & 0xffff)
        if name in ARCHES and arg is None:
            return ARCHES[name]
        if field_name == "nr" and arg is None:
            try:
                return syscall_number(name)
            except Exception:
                return None
    return None


class Claim:
    """A parsed assertion: ``holds`` (a term that must be true) under ``when``."""

    def __init__(self, text, profile, inputs, out, accesses):
        try:
            self._build(text, profile, inputs, out, accesses)
        except AssertionSyntaxError as err:
            raise AssertionSyntaxError(err.col, err.problem, text) from None

    def _build(self, text, profile, inputs, out, accesses):
        p = _Parser(text, profile, inputs, out)
        self.text = text
        self.kind = p.peek()
        self.pcs: set = set()
        if self.kind in ("never-reads", "never-writes", "never-touches"):
            p.take()
            words = p.words()
            kinds = {"never-reads": ("read",), "never-writes": ("write",),
                     "never-touches": ("read", "write")}[self.kind]
            hits = [(pc, c) for kind, pc, c in accesses(words) if kind in kinds]
            self.pcs = {pc for pc, _ in hits}
            self.words = words
            self.holds = z3.Not(z3.Or(*[c for _, c in hits])) if hits else z3.BoolVal(True)
        else:
            self.holds = p.cond(final=True)
        self.when = z3.BoolVal(True)
        if p.peek() == "when":
            p.take()
            self.when = p.cond(final=False)
        p.end()


def _access_tracker(program, profile, inputs):
    """``(visit, accesses)``: ``visit`` records each reachable pc for :func:`encode`;
    ``accesses(words)`` then yields ``(kind, pc, condition)`` for every read or
    write of those words (for pio also loads of their bytes at ``PIO_MEM + 4i``)."""
    seen = []

    def visit(pc, cond, state):
        seen.append((pc, cond, state))

    def accesses(words):
        lo, hi = abi.PIO_MEM + 4 * words.start, abi.PIO_MEM + 4 * words.stop
        for pc, cond, state in seen:
            code, _, _, k = program[pc]
            info = isa.OPCODES[code]
            if info.cls in (isa.BPF_ST, isa.BPF_STX) and k in words:
                yield "write", pc, cond
            elif info.cls in (isa.BPF_LD, isa.BPF_LDX) and info.mode == isa.BPF_MEM and k in words:
                yield "read", pc, cond
            elif profile == "pio" and info.cls in (isa.BPF_LD, isa.BPF_LDX) and info.mode in (
                    isa.BPF_ABS, isa.BPF_IND, isa.BPF_MSH) and not (
                    info.mode == isa.BPF_ABS and k >= isa.SKF_AD_OFF):
                size = 1 if info.mode == isa.BPF_MSH else info.size
                off = z3.ZeroExt(32, bv(state.x) + k) if info.mode == isa.BPF_IND \
                    else z3.BitVecVal(k, 64)
                overlap = z3.And(z3.ULE(off + size, inputs.length), z3.ULT(off, hi),
                                 z3.UGT(off + size, lo))
                yield "read", pc, and_(cond, overlap)
    return visit, accesses


def prove_property(program, assertion: str, profile: str = "socket", timeout: float = 10.0, *,
                   mem_words: int = 16, max_len: int = 0xffff, ports=None,
                   context: str = "default") -> Result:
    """Prove ``assertion`` for every input of ``profile``; status proved, disproved or unknown.

    A disproof carries a counterexample checked in the interpreter, as for
    :func:`bpfio.prove.equivalent` (whose ``mem_words``, ``max_len`` and
    ``ports`` and ``context`` mean the same here).  Raises :class:`ProveError` for an
    assertion that does not parse (``--assert:COL: error: problem``).
    """
    start = time.perf_counter()
    prog = as_program(program)
    inputs = inputs_for(profile, mem_words=mem_words, max_len=max_len, ports=ports,
                        context=context)
    visit, accesses = _access_tracker(prog, profile, inputs)
    out = encode(prog, inputs, "p", visit=visit)
    claim = Claim(assertion, profile, inputs, out, accesses)
    answer, model = solve(inputs.constraints() + [claim.when, z3.Not(claim.holds)],
                          timeout=timeout, prefer=inputs.preferred())
    result = Result("unknown", profile)
    if answer == z3.unsat:
        result.status = "proved"
    elif answer == z3.sat:
        result = _disproof(prog, profile, inputs, model, out, claim)
    else:
        result.reason = f"timeout after {timeout:g} s"
    result.seconds = time.perf_counter() - start
    return result


def _disproof(prog, profile, inputs, model, out, claim) -> Result:
    """Turn a model into a counterexample checked in the interpreter ('unknown' if it is not)."""
    from bpfio.exec.trace import trace
    data, context, text = concrete_input(profile, inputs, model)
    rand = {pc: model.eval(v, model_completion=True).as_long() for pc, v in out.rand.items()}
    verdict, obs = run_observed(profile, prog, data, context, rand, PIO_OBSERVED)
    result = Result("disproved", profile, counterexample=data, context=context, cex_text=text,
                    results=(verdict,), observed=(obs,), rand=(rand,))
    if claim.pcs:       # the interpreter must really execute one of the accesses
        ctx = {"mem": list(context["mem"])} if profile == "pio" else dict(context)
        _, steps = trace(prog, data, profile=profile, **ctx)
        reproduced = bool(claim.pcs & {s.pc for s in steps})
    else:
        # The claim again, over the interpreter's results instead of the program's terms,
        # with every input variable pinned to the counterexample: it must come out false.
        ex = run_execution(profile, prog, data, context, rand)
        ran = Outputs([(True, int(ex.verdict), State(ex.a, ex.x, tuple(ex.mem)))], {})
        again = Claim(claim.text, profile, inputs, ran, lambda words: iter(()))
        pins = [(v, model.eval(v, model_completion=True)) for v in _free_vars(profile, inputs)]
        check = z3.simplify(z3.substitute(z3.And(again.when, z3.Not(again.holds)), *pins))
        reproduced = z3.is_true(check)
    if not reproduced:
        result.status, result.reason = "unknown", "the counterexample did not reproduce"
    return result


def _free_vars(profile, inputs):
    if profile == "socket":
        return [inputs.pkt, inputs.length, inputs.device, *inputs.ctx.values()]
    if profile == "seccomp":
        return list(inputs.words)
    return list(inputs.header) + list(inputs.mem0)


def verdict_classes(program, profile: str = "socket", *, limit: int = 16, timeout: float = 10.0,
                    mem_words: int = 16, max_len: int = 0xffff, when=None, ports=None,
                    context: str = "default"):
    """The distinct verdicts a program can return, each with a witness input.

    Returns ``(classes, complete)``: ``classes`` is ``[(verdict, cex_text)]``
    in discovery order; ``complete`` is False when ``limit`` stopped the
    enumeration or the solver timed out.  ``when`` (an assertion-language
    condition) restricts the inputs, e.g. ``"dir == OUT and size == 1"``.
    """
    prog = as_program(program)
    inputs = inputs_for(profile, mem_words=mem_words, max_len=max_len, ports=ports,
                        context=context)
    out = encode(prog, inputs, "p")
    facts = list(inputs.constraints())
    if when:
        try:
            p = _Parser(when, profile, inputs, out)
            facts.append(p.cond(final=False))
            p.end()
        except AssertionSyntaxError as err:
            raise AssertionSyntaxError(err.col, err.problem, when) from None
    verdict = bv(out.verdict())
    classes = []
    deadline = time.perf_counter() + timeout
    while len(classes) < limit:
        left = deadline - time.perf_counter()
        if left <= 0:
            return classes, False
        answer, model = solve(facts + [verdict != c for c, _ in classes], timeout=left,
                              prefer=inputs.preferred())
        if answer == z3.unsat:
            return classes, True
        if answer != z3.sat:
            return classes, False
        value = model.eval(verdict, model_completion=True).as_long()
        classes.append((value, concrete_input(profile, inputs, model)[2]))
    answer, _ = solve(facts + [verdict != c for c, _ in classes], timeout=max(0.001, deadline - time.perf_counter()))
    return classes, answer == z3.unsat
