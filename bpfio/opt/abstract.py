"""Share a code tail between absolute and X-relative copies (dual-stack port tests).

libpcap tests IPv6 ports with absolute loads (``ldh [54]``) and IPv4 ports
with loads relative to the header length (``ldh [x + 14]``), so a filter
such as ``tcp port 80`` carries two copies of the same tail that differ only
in the addressing.  When the absolute copy at i behaves exactly like the
relative copy at j run with ``X = c`` (every absolute ``[k]`` matched by an
``[x + k']`` with ``k = c + k'``, nothing else reading X, and X dead where
the copies rejoin), the first copy becomes ``ldx #c; ja j``.  The load at
``[x + k']`` with X = c reads the same bytes with the same bounds check, so
the rewrite is exact in every profile; it is kept only when it shortens the
program.
"""

from __future__ import annotations

from bpfio.isa import BPF_ABS, BPF_IND, BPF_LD, U32
from bpfio.opt.flow import drop_trivial_jumps, merge_tails, remove_unreachable, tail_classes
from bpfio.opt.ir import JA, LDX_IMM, NEG_OFFSET, Op, lower, reads, resolve, successors, writes
from bpfio.opt.values import analyse, liveness

_X_FREE_WRITES = {0x01, 0x81, 0x61, 0xb1}  # ldx #k, ldx len, ldx M[k], ldxb msh: X from scratch


def _match(ops, p, q, c, rep, live, memo, depth=0, pairs=None) -> bool:
    """The tail at p (X untouched) equals the tail at q run with X = c."""
    p, q = resolve(ops, p), resolve(ops, q)
    key = (p, q)
    if key in memo:
        return memo[key]
    memo[key] = False            # no cycles (forward jumps), but be safe while recursing
    ok = _match_op(ops, p, q, c, rep, live, memo, depth, pairs)
    memo[key] = ok
    return ok


def _match_op(ops, p, q, c, rep, live, memo, depth, pairs) -> bool:
    if p >= len(ops) or q >= len(ops) or depth > 200:
        return False
    if p == q or rep[p] == rep[q]:
        # Same code from here: only X differs (c versus the original), so X must be dead.
        return "X" not in _live_in(ops, p, live)
    a, b = ops[p], ops[q]
    if a.info.cls == BPF_LD and a.info.mode == BPF_ABS and b.info.cls == BPF_LD \
            and b.info.mode == BPF_IND:
        if a.info.size != b.info.size or a.k >= NEG_OFFSET or (c + b.k) & U32 != a.k:
            return False
        if pairs is not None:
            pairs.append((p, q))
    elif (a.code, a.k) == (b.code, b.k):
        if "X" in reads(a):
            return False
        if "X" in writes(a):
            # X is rebuilt from scratch in both: from here on the tails must be the same code.
            return a.code in _X_FREE_WRITES and rep[resolve(ops, p + 1)] == rep[resolve(ops, q + 1)]
    else:
        return False
    if a.is_ret():
        return True
    if a.is_ja():
        return _match(ops, a.jt, b.jt, c, rep, live, memo, depth + 1, pairs)
    if a.is_cond():
        return (_match(ops, a.jt, b.jt, c, rep, live, memo, depth + 1, pairs)
                and _match(ops, a.jf, b.jf, c, rep, live, memo, depth + 1, pairs))
    return _match(ops, p + 1, q + 1, c, rep, live, memo, depth + 1, pairs)


def _live_in(ops, i, live_out):
    op = ops[i]
    return (live_out[i] - writes(op)) | reads(op)


def share_x_tails(ops, ctx) -> int:
    """Replace an absolute-load tail by a jump to its X-relative twin with ``X = c``.

    Two shapes are tried: ``ldx #c`` inserted before each jump into the tail
    (or once before a dominator, when X is dead there), or the tail's first
    two slots turned into ``ldx #c; ja j``; the shortest wins, and only if it
    is shorter than now.  In the socket profile a later absolute tail where X
    is a known constant ``cx`` (often 0: nothing set X yet) also qualifies:
    its ``[k]`` loads are read as ``[x + (k - cx)]``, the same bytes.
    """
    if ctx.prefer == "speed":
        return 0              # the shared tail is reached through an added ldx (and ja)
    rep = tail_classes(ops)
    live = liveness(ops, ctx.profile, ctx.mem_words)
    entry = analyse(ops, ctx.profile) if ctx.profile == "socket" else None
    base = len(lower(ops) or ops)
    views: dict = {}
    for i, a in enumerate(ops):
        if a is None or a.info.cls != BPF_LD or a.info.mode != BPF_ABS or a.k >= NEG_OFFSET:
            continue
        if "X" in _live_in(ops, i, live) or i + 1 >= len(ops):
            continue
        for j in range(i + 2, len(ops)):
            b = ops[j]
            if b is None or b.info.cls != BPF_LD or b.info.size != a.info.size \
                    or not _same_next(ops, i, j):
                continue
            view, vrep, vlive = ops, rep, live
            if b.info.mode == BPF_ABS and entry is not None:
                if j not in views:
                    views[j] = _relative_view(ops, entry, j, ctx)
                if views[j] is None:
                    continue
                view, vrep, vlive = views[j]
            elif b.info.mode != BPF_IND:
                continue
            found = _share(view, i, j, vrep, vlive, base, ctx)
            if found is not None:
                ops[:] = found
                return 1
    # The X-relative copy comes first: make the later absolute copy identical to it
    # (X = c set on the way in), then merge-tails keeps only the later one.
    for j, a in enumerate(ops):
        if a is None or a.info.cls != BPF_LD or a.info.mode != BPF_ABS or a.k >= NEG_OFFSET:
            continue
        if "X" in _live_in(ops, j, live):
            continue
        for i in range(j):
            b = ops[i]
            if b is None or b.info.cls != BPF_LD or b.info.size != a.info.size \
                    or not _same_next(ops, i, j):
                continue
            view, vrep, vlive = ops, rep, live
            if b.info.mode == BPF_ABS and entry is not None:
                # An earlier absolute copy where X is known (often 0) reads as X-relative.
                if i not in views:
                    views[i] = _relative_view(ops, entry, i, ctx)
                if views[i] is None:
                    continue
                view, vrep, vlive = views[i]
                b = view[i]
                if "X" in _live_in(view, j, vlive):
                    continue
            elif b.info.mode != BPF_IND:
                continue
            found = _rewrite_later(view, j, i, (a.k - b.k) & U32, vrep, vlive, base, ctx)
            if found is not None:
                ops[:] = found
                return 1
    return 0


def _rewrite_later(ops, j, i, c, rep, live, base, ctx):
    """The absolute tail at j rewritten as the X-relative tail at i, X = c set before j."""
    pairs: list = []
    if not _match(ops, j, i, c, rep, live, {}, 0, pairs):
        return None
    copy = [None if op is None else Op(op.code, op.k, op.jt, op.jf) for op in ops]
    for p, q in pairs:
        copy[p] = Op(ops[q].code, ops[q].k)
    best = None
    for at_dominator in (False, True):
        trial = _hoisted(copy, j, j, c, live, at_dominator)
        if trial is None:
            continue
        for _ in range(3):
            merge_tails(trial, ctx)
            remove_unreachable(trial, ctx)
            drop_trivial_jumps(trial, ctx)
        low = lower(trial)
        if low is not None and len(low) < base and (best is None or len(low) < best[0]):
            best = (len(low), trial)
    return None if best is None else best[1]


def _same_next(ops, i, j) -> bool:
    """Cheap filter before matching: the instructions after i and j could match."""
    p, q = resolve(ops, i + 1), resolve(ops, j + 1)
    if p >= len(ops) or q >= len(ops):
        return False
    a, b = ops[p], ops[q]
    if (a.code, a.k) == (b.code, b.k):
        return True
    return a.info.cls == b.info.cls == BPF_LD and a.info.size == b.info.size \
        and {a.info.mode, b.info.mode} <= {BPF_ABS, BPF_IND}


def _relative_view(ops, entry, j, ctx):
    """ops with the absolute loads reachable from j written X-relative (X known there).

    Returns ``(view, tail classes, liveness)`` or None when X is not a known
    constant at j.  ``[k]`` with X = cx is ``[x + (k - cx)]``: the same bytes
    and the same bounds check (the offset wraps at 32 bits).
    """
    if entry[j] is None or entry[j].x[0] != "c" or ops[j].k >= NEG_OFFSET:
        return None
    out = list(ops)
    seen = [False] * (len(ops) + 1)
    seen[j] = True
    for t in range(j, len(ops)):
        op, st = ops[t], entry[t]
        if not seen[t] or op is None:
            if seen[t] and t + 1 <= len(ops):
                seen[t + 1] = True
            continue
        for s in successors(ops, t):
            seen[min(s, len(ops))] = True
        if op.info.cls == BPF_LD and op.info.mode == BPF_ABS and op.k < NEG_OFFSET \
                and st is not None and st.x[0] == "c":
            out[t] = Op(op.code & ~BPF_ABS | BPF_IND, (op.k - st.x[1]) & U32)
    return out, tail_classes(out), liveness(out, ctx.profile, ctx.mem_words)


def _share(ops, i, j, rep, live, base, ctx):
    """The shortest rewrite of the tail at i into a jump to the tail at j, or None."""
    a, b = ops[i], ops[j]
    c = (a.k - b.k) & U32
    if "X" in _live_in(ops, i, live) or not _match(ops, i, j, c, rep, live, {}):
        return None
    best = None
    for trial in (_hoisted(ops, i, j, c, live, False), _hoisted(ops, i, j, c, live, True),
                  _jumped(ops, i, j, c)):
        if trial is None:
            continue
        remove_unreachable(trial, ctx)
        low = lower(trial)
        if low is not None and len(low) < base and (best is None or len(low) < best[0]):
            best = (len(low), trial)
    return None if best is None else best[1]


def _jumped(ops, i, j, c):
    """The tail at i becomes ``ldx #c; ja j``."""
    trial = list(ops)
    nxt = resolve(trial, i + 1)
    if nxt != i + 1 or nxt >= len(trial) or _entered_elsewhere(ops, nxt):
        return None
    trial[i] = Op(LDX_IMM, c)
    trial[nxt] = Op(JA, 0, j, 0)
    return trial


def _hoisted(ops, i, j, c, live, at_dominator: bool):
    """Each jump into i goes to j instead, with ``ldx #c`` inserted before it.

    With ``at_dominator`` one ``ldx #c`` goes before the nearest dominator of
    i where X is dead and from which nothing writes X on the way to i.
    """
    prev = i - 1
    while prev >= 0 and ops[prev] is None:
        prev -= 1
    if prev >= 0 and not ops[prev].ends_block():
        return None                      # i is entered by falling through
    preds = [p for p, op in enumerate(ops) if op is not None and op.info.is_jump
             and i in (resolve(ops, op.jt), resolve(ops, op.jf) if op.is_cond() else -1)]
    if not preds or any("X" in _live_in(ops, p, live) for p in preds):
        return None
    places = preds
    if at_dominator:
        places = [_dominator_slot(ops, i, live)]
        if places[0] is None:
            return None
    trial = [None if op is None else Op(op.code, op.k, op.jt, op.jf) for op in ops]
    for p in preds:
        op = trial[p]
        if resolve(ops, op.jt) == i:
            op.jt = j
        if op.is_cond() and resolve(ops, op.jf) == i:
            op.jf = j
    for p in sorted(places, reverse=True):
        trial = _insert(trial, p, Op(LDX_IMM, c))
    return trial


def _dominator_slot(ops, i, live):
    """The nearest strict dominator d of i with X dead at d and no X write in [d, i)."""
    idom = _idoms(ops)
    d = idom.get(i)
    while d is not None:
        if any(ops[t] is not None and "X" in writes(ops[t]) for t in range(d, i)):
            return None
        if "X" not in _live_in(ops, d, live):
            return d
        d = idom.get(d)
    return None


def _idoms(ops) -> dict:
    """Immediate dominators of the live instructions (pc order is a topological order)."""
    preds: dict = {}
    for p, op in enumerate(ops):
        if op is None:
            continue
        for s in ((op.jt, op.jf) if op.is_cond() else (op.jt,) if op.is_ja()
                  else () if op.is_ret() else (p + 1,)):
            preds.setdefault(resolve(ops, s), set()).add(p)
    idom: dict = {}
    depth = {0: 0}
    for n, op in enumerate(ops):
        if op is None or n == 0 or n not in preds:
            continue
        cands = [p for p in preds[n] if p in depth]
        if not cands:
            continue
        d = cands[0]
        for p in cands[1:]:
            a, b = d, p
            while a != b:
                if depth[a] < depth[b]:
                    a, b = b, a
                a = idom[a]
            d = a
        idom[n], depth[n] = d, depth[d] + 1
    return idom


def _insert(ops, p, new):
    """A copy of ops with ``new`` at index p; jumps to p now reach ``new`` first."""
    out = []
    for op in ops:
        if op is not None and op.info.is_jump:
            op = Op(op.code, op.k, op.jt + (op.jt > p), op.jf + (op.jf > p))
        out.append(op)
    out.insert(p, new)
    return out


def _entered_elsewhere(ops, idx) -> bool:
    """True when some jump targets idx (its old instruction must then stay)."""
    for op in ops:
        if op is not None and op.info.is_jump:
            if resolve(ops, op.jt) == idx or (op.is_cond() and resolve(ops, op.jf) == idx):
                return True
    return False


__all__ = ["share_x_tails"]
