"""The fuzz harness's engine (issue 17): mutate real inputs, run them, judge the outcome.

A *target* (``tests/fuzz_targets.py``) is one reader or command: real seed files, a few
tokens that matter to it, and a function that feeds one input through the library and/or
the command line in this process.  :func:`check` runs a target on one input under a
watchdog and returns a :class:`Failure` or ``None``.  An input fails when it

* raises anything but a documented error (:class:`bpfio.errors.BpfError` subclasses for
  the library; for the command line a click usage error, exit 2),
* makes the command line print ``internal error`` or a ``Traceback``, or exit with a
  status other than 0, 1, 2 (and 3, "unknown", for the prover),
* runs longer than the per-input time limit (``Hang``),
* changes an ``-o`` target although the run failed (the target is pre-created with known
  content).

``KNOWN_BUGS`` names the classes of failure that other branches are fixing; the bounded
run in CI ignores them (remove an entry once its branch is merged).  ``python
tests/fuzzing.py --seconds 3600`` is the long run: it writes each new kind of failure,
minimized, to ``tests/data/fuzz_found/<target>/`` where the default test run replays it.
See docs/fuzzing.md.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOUND = ROOT / "tests" / "data" / "fuzz_found"

# Seconds one input may take before it counts as a hang.  Generous: the machine is shared
# and slow, and a real hang (exponential macro expansion) never ends.
TIME_LIMIT = float(os.environ.get("BPFIO_FUZZ_TIME_LIMIT", "20"))


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so that no ``except Exception`` eats it."""


@dataclass
class Failure:
    """Why one input failed."""

    target: str
    kind: str   # exception internal-error traceback exit-status unplaced hang clobbered round-trip
    detail: str        # the exception or the offending output line
    data: bytes = field(repr=False, default=b"")

    def signature(self) -> str:
        """What makes two failures the same bug: target, kind and the detail's shape."""
        shape = re.sub(r"0x[0-9a-fA-F]+|\d+", "N", self.detail.split("\n", 1)[0])
        shape = re.sub(r"'[^']*'|\"[^\"]*\"|/\S+", "S", shape)[:120]
        return f"{self.target}:{self.kind}:{shape}"

    def __str__(self):
        return f"{self.target}: {self.kind}: {self.detail[:400]}"


class Reject(Exception):
    """Raised by a target's run function for an outcome that breaks the rules."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


@contextmanager
def watchdog(seconds: float):
    """Raise :class:`Hang` in this (main) thread after ``seconds``."""
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        yield
        return

    def fire(signum, frame):
        raise Hang(f"no result after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check(target, data: bytes, tmp: Path, *, limit: float = TIME_LIMIT) -> Failure | None:
    """Run ``target`` on ``data``; the failure, or None when every rule held."""
    from bpfio.errors import BpfError
    try:
        with watchdog(limit):
            target.run(data, tmp)
    except Hang as err:
        return Failure(target.name, "hang", str(err), data)
    except Reject as err:
        return Failure(target.name, err.kind, err.detail, data)
    except BpfError:
        return None
    except Exception as err:  # noqa: BLE001 - that is the point
        return Failure(target.name, "exception", f"{type(err).__name__}: {err}", data)
    return None


# -- the command line, in process ------------------------------------------------------
_PROVER_UNKNOWN = 3


def invoke(args, *, stdin: bytes | None = None, outputs=(), allowed=(0, 1, 2)):
    """Run ``bpfio ARGS`` in this process and apply the command-line rules.

    ``outputs`` are ``-o`` targets the caller pre-created with :data:`KEEP`; a failing run
    must leave them unchanged.
    """
    from click.testing import CliRunner

    from bpfio.cli import main
    for path in outputs:
        Path(path).write_bytes(KEEP)
    result = CliRunner().invoke(main, [str(a) for a in args], input=stdin)
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        raise Reject("exception", f"{type(exc).__name__}: {exc}")
    text = result.output + _stderr(result)        # click >= 8.2: output has both
    for line in text.splitlines():
        if "internal error" in line:
            raise Reject("internal-error", line)
        if line.startswith("Traceback"):
            raise Reject("traceback", line)
    if result.exit_code != 0:
        for path in outputs:
            if not Path(path).exists() or Path(path).read_bytes() != KEEP:
                raise Reject("clobbered", f"exit {result.exit_code} changed {Path(path).name}")
    if result.exit_code not in allowed:
        raise Reject("exit-status", f"exit {result.exit_code}: {text.strip()[:300]}")
    lines = _stderr(result).strip().splitlines()
    if result.exit_code == 1 and (lines or not result.output.strip()):
        # One placed line: "place: error: problem" (or "error: problem" for the program);
        # `check --json` and a disproof exit 1 with their answer on standard output.
        if not any(": error:" in line or line.startswith(("error:", "Error:")) for line in lines):
            raise Reject("unplaced", f"exit 1 without an error line: {text.strip()[:300]!r}")
    return result


KEEP = b"known content: a failing run must leave this file alone\n"
PROVER_ALLOWED = (0, 1, 2, _PROVER_UNKNOWN)


def _stderr(result) -> str:
    try:
        return result.stderr
    except ValueError:          # click < 8.2 without mix_stderr=False
        return ""


# -- mutation --------------------------------------------------------------------------
# Values that have broken readers before: past u32/u64, past Python's int-string limit,
# floats where ints belong, signs, other digit systems.
NUMBERS = ["0", "1", "-1", "-0", "255", "256", "65535", "65536", "4294967295", "4294967296",
           "0xffffffff", "0x100000000", "0x1ffffffff", "18446744073709551615",
           "18446744073709551616", "0x1ffffffffffffffff", "-4294967296", "9" * 4400,
           "0x" + "f" * 4400, "1" + "0" * 40, "1e40", "1e400", "nan", "inf", "-inf", "4.0",
           "1_000", "0b101", "0o17", "017", "0x", "٣", "１", "true", "null", "\"1\""]
NASTY = [b"\x00", b"\xff", b"\xff\xfe", b"\xed\xa0\x80", b"\xc3", b"\r", b"\t", b"\x0b",
         "\u2028".encode(), "\ufeff".encode(), b"\\", b"'", b'"', b"[" * 100_000,
         b"{\"a\":" * 20_000, b"(" * 3000, b"-" * 3000, b"a" * 70_000, b"\n" * 5000,
         b"%s%n", b"${X}"]

_NUMBER = re.compile(rb"-?(?:0[xX][0-9a-fA-F]+|\d+)")


def mutate(rng: random.Random, seeds: list[bytes], tokens: list[bytes], *,
           max_ops: int = 4, repeat: int = 5000) -> bytes:
    """A seed with a few structure-aware edits: numbers, lines, tokens, bytes, splices.

    ``repeat`` bounds how often a line or a few bytes may be repeated: where each line is a
    command that takes milliseconds (a dbg script), thousands of them are slow, not a hang.
    """
    buf = rng.choice(seeds)
    limits = {"repeat": repeat}
    # Mostly one edit: an input that is nearly right gets past the first check to deep code.
    for _ in range(1 if rng.random() < 0.6 else rng.randint(2, max_ops)):
        buf = _EDITS[rng.randrange(len(_EDITS))](rng, buf, seeds, tokens, limits)
        if len(buf) > 400_000:
            buf = buf[:400_000]
    return buf


def _number(rng, buf, seeds, tokens, limits):
    hits = list(_NUMBER.finditer(buf[:200_000]))
    if not hits:
        return _token(rng, buf, seeds, tokens, limits)
    m = rng.choice(hits)
    if rng.random() < 0.5:
        new = rng.choice(NUMBERS).encode()
    else:
        try:
            n = int(m.group(), 0) if len(m.group()) < 100 else 0
        except ValueError:
            n = 0
        new = str(rng.choice([n + 1, n - 1, n << rng.randint(1, 64), ~n, n ^ 0x80000000])).encode()
    return buf[:m.start()] + new + buf[m.end():]


def _lines(rng, buf, seeds, tokens, limits):
    lines = buf.splitlines(keepends=True) or [b""]
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    op = rng.randrange(5)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(j, lines[i])
    elif op == 2:
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 3:              # splice a line of another seed
        other = rng.choice(seeds).splitlines(keepends=True) or [b"\n"]
        lines.insert(j, rng.choice(other))
    else:                      # repeat a line many times (deep chains, big programs)
        lines[i:i + 1] = [lines[i]] * min(rng.choice([2, 100, 5000]), limits["repeat"])
    return b"".join(lines)


def _token(rng, buf, seeds, tokens, limits):
    pos = rng.randrange(len(buf) + 1)
    new = rng.choice(tokens) if tokens and rng.random() < 0.7 else rng.choice(NASTY)
    if rng.random() < 0.5:                       # replace a word instead of inserting
        end = pos + len(re.match(rb"\w*", buf[pos:pos + 64]).group())
        return buf[:pos] + new + buf[end:]
    return buf[:pos] + new + buf[pos:]


def _bytes(rng, buf, seeds, tokens, limits):
    b = bytearray(buf)
    pos = rng.randrange(len(b) + 1)
    op = rng.randrange(4)
    if op == 0:
        b[pos:pos] = bytes([rng.randrange(256)])
    elif op == 1 and b:
        del b[pos:pos + rng.randint(1, 16)]
    elif op == 2 and b:
        b[min(pos, len(b) - 1)] ^= 1 << rng.randrange(8)
    else:
        end = min(len(b), pos + rng.randint(1, 64))
        b[pos:pos] = b[pos:end]
    return bytes(b)


def _stutter(rng, buf, seeds, tokens, limits):
    """Repeat a few bytes in place: deep nesting, long operator chains, long words."""
    pos = rng.randrange(len(buf) + 1)
    piece = buf[pos:pos + rng.randint(1, 8)] or b"("
    return buf[:pos] + piece * min(rng.choice([2, 50, 300, 5000]), limits["repeat"]) + buf[pos:]


def _truncate(rng, buf, seeds, tokens, limits):
    return buf[:rng.randrange(len(buf) + 1)]


_EDITS = [_number, _number, _lines, _lines, _token, _token, _bytes, _stutter, _truncate]


# -- known bugs (being fixed on other branches) ----------------------------------------
@dataclass(frozen=True)
class KnownBug:
    """A class of failure another branch fixes: the bounded run does not report it."""

    branch: str
    item: int           # the item of issue 17
    what: str
    matches: object     # Failure -> bool


def _has(*needles):
    return lambda f: any(n in f.detail for n in needles)


# Remove an entry when its branch is merged (and run the harness: it must stay green).
KNOWN_BUGS: list[KnownBug] = []   # every branch of issue 17 is merged: nothing is excused


def known(failure: Failure) -> KnownBug | None:
    """The known bug this failure belongs to, if any."""
    return next((k for k in KNOWN_BUGS if k.matches(failure)), None)


# -- found inputs ----------------------------------------------------------------------
def found_cases() -> list[tuple[str, Path, KnownBug | None]]:
    """Every saved input: (target name, path, the known bug its note names, or None)."""
    cases = []
    for path in sorted(FOUND.glob("*/*.input")):
        cases.append((path.parent.name, path, known(_noted(path))))
    return cases


def _noted(path: Path) -> Failure:
    """The failure a saved input's ``.txt`` note records."""
    note = path.with_suffix(".txt")
    kind, _, detail = (note.read_text() if note.exists() else "").partition(": ")
    return Failure(path.parent.name, kind, detail.strip(), path.read_bytes())


def save(failure: Failure) -> Path:
    """Write a failing input and a note of how it failed (``<sha1>.input``, ``<sha1>.txt``)."""
    folder = FOUND / failure.target
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha1(failure.data).hexdigest()[:16]
    path = folder / f"{name}.input"
    path.write_bytes(failure.data)
    (folder / f"{name}.txt").write_text(f"{failure.kind}: {failure.detail[:2000]}\n")
    return path


def minimize(target, failure: Failure, tmp: Path, *, seconds: float = 30.0) -> Failure:
    """Delete chunks of the input while it still fails the same way (bounded in time)."""
    best = failure
    want = failure.signature()
    end = time.monotonic() + seconds
    chunk = max(1, len(best.data) // 2)
    while chunk >= 1 and time.monotonic() < end:
        i, shrunk = 0, False
        while i < len(best.data) and time.monotonic() < end:
            trial = best.data[:i] + best.data[i + chunk:]
            got = check(target, trial, tmp, limit=min(TIME_LIMIT, 5.0)
                        if failure.kind != "hang" else TIME_LIMIT)
            if got is not None and got.signature() == want:
                best, shrunk = got, True
            else:
                i += chunk
        if not shrunk:
            chunk //= 2
    return best


# -- the long run ----------------------------------------------------------------------
KNOWN_KEPT = 2      # saved examples per known bug (in all)


def long_run(seconds: float, names=None, seed: int | None = None, report=print) -> int:
    """Fuzz every target round robin for ``seconds``; save each new kind of failure."""
    import tempfile

    from fuzz_targets import TARGETS
    targets = [t for t in TARGETS if not names or t.name in names]
    seed = seed if seed is not None else int(time.time())
    rng = random.Random(seed)
    seen = set(_saved_signatures())
    report(f"fuzz: seed {seed}, {len(targets)} targets, {seconds:g} s")
    end = time.monotonic() + seconds
    runs = new = fresh = 0
    per_bug: dict[KnownBug, int] = {}      # examples kept, in tests/data/fuzz_found/ too
    for _, _, bug in found_cases():
        if bug is not None:
            per_bug[bug] = per_bug.get(bug, 0) + 1
    with tempfile.TemporaryDirectory(prefix="bpfio-fuzz-") as tmpdir:
        tmp = Path(tmpdir)
        while time.monotonic() < end:
            target = targets[runs % len(targets)]
            data = mutate(rng, target.seeds(), target.tokens, repeat=target.repeat)
            runs += 1
            failure = check(target, data, tmp)
            if failure is None or failure.signature() in seen:
                continue
            seen.add(failure.signature())
            bug = known(failure)
            if bug is not None:            # keep a few examples of a known bug, no more
                per_bug[bug] = per_bug.get(bug, 0) + 1
                if per_bug[bug] > KNOWN_KEPT:
                    continue
            failure = minimize(target, failure, tmp, seconds=10 if bug else 60)
            seen.add(failure.signature())
            path = save(failure)
            new += 1
            bug = known(failure)
            fresh += bug is None
            report(f"fuzz: NEW {failure} -> {path.relative_to(ROOT)}"
                   + (f" (known: {bug.branch} item {bug.item})" if bug else ""))
    report(f"fuzz: {runs} inputs, {new} new failures ({fresh} not known)")
    return 1 if fresh else 0


def _saved_signatures():
    for _, path, _ in found_cases():
        yield _noted(path).signature()


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(description="bpfio's long fuzz run (docs/fuzzing.md)")
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("BPFIO_FUZZ_SECONDS", "600")))
    parser.add_argument("--target", action="append", help="only these targets (repeatable)")
    parser.add_argument("--seed", type=int, help="the random seed (default: the time)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        from fuzz_targets import TARGETS
        for t in TARGETS:
            print(f"{t.name:16} {t.doc}")
        return 0
    return long_run(args.seconds, args.target, args.seed)


if __name__ == "__main__":
    # Import ourselves by name, so that the targets and this runner share one module.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import fuzzing
    sys.exit(fuzzing.main())
