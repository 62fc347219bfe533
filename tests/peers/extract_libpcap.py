"""Extract libpcap's filter test tables into tests/peers/libpcap_filters.json (run by hand).

    python tests/peers/extract_libpcap.py LIBPCAP_CHECKOUT COMMIT

``testprogs/TESTrun`` keeps its tests as Perl data: ``@filter_accept_blocks``
(a DLT, filter expressions that must compile, options such as ``snaplen``),
``@filter_apply_blocks`` (an expression run over a savefile in
``tests/filter/`` with the expected per-packet return values) and
``@filter_reject_tests``.  Perl itself evaluates those three tables (with the
TESTrun helper subs that build error strings; its ``skip_*`` probes of the
host are recorded as text, not run).  We keep, per expression: the DLT, the
snaplen, the libpcap skip condition and where it came from; for apply blocks
also the savefile's packets (hex) and the expected results.  Reject tests
compile to no program and are not kept (their count goes into the header).
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from bpfio.exec.pcap import read_packets  # noqa: E402

_PERL = r"""
no strict; no warnings;
use JSON::PP;
our $nonexistent = 'host.invalid.';
sub AUTOLOAD { my $n = $AUTOLOAD; $n =~ s/.*:://; return "$n(" . join(', ', @_) . ")"; }
%s
print JSON::PP->new->canonical->encode({accept => \@filter_accept_blocks,
    apply => \@filter_apply_blocks, reject => \@filter_reject_tests});
"""


def _section(text: str, start: str) -> str:
    """From the line starting with ``start`` to the first following line that is ``);``."""
    i = text.index(start)
    j = text.index("\n);\n", i)
    return text[i:j + 4]


def perl_tables(testrun: str) -> dict:
    """The three tables, evaluated by perl."""
    subs = "".join(m.group(0) for m in re.finditer(r"(?ms)^sub errstr_\w+ \{.*?^\}\n", testrun))
    body = "\n".join([
        re.search(r"(?ms)^my \$valid_opcodes_enumeration = '.*?^';\n", testrun).group(0),
        subs,
        _section(testrun, "my @filter_accept_blocks = ("),
        _section(testrun, "my @filter_apply_blocks = ("),
        _section(testrun, "my @filter_reject_tests = ("),
    ]).replace("my @filter", "our @filter").replace("my $valid", "our $valid")
    out = subprocess.run(["perl"], input=_PERL % body, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout)


def savefile_snaplen(raw: bytes) -> int:
    """The snapshot length in a savefile's header (classic pcap) or first interface block (pcapng)."""
    if raw[:4] == b"\x0a\x0d\x0d\x0a":                     # pcapng: SHB, then the IDB
        order = "<" if raw[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        shb_len = struct.unpack_from(order + "I", raw, 4)[0]
        return struct.unpack_from(order + "I", raw, shb_len + 12)[0]
    order = "<" if raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    return struct.unpack_from(order + "I", raw, 16)[0]


def main(argv) -> int:
    root, commit = Path(argv[0]), argv[1]
    tables = perl_tables((root / "testprogs" / "TESTrun").read_text())
    filters, seen = [], set()

    def add(expr, dlt, block, kind, **extra):
        key = (expr, dlt, extra.get("snaplen"), extra.get("savefile"))
        if key in seen:
            return
        seen.add(key)
        filters.append({"expr": expr, "dlt": dlt, "block": block, "kind": kind, **extra})

    for b in tables["accept"]:
        extra = {k: b[k] for k in ("snaplen", "skip", "linuxext", "netmask", "generate_offline_filter")
                 if b.get(k) not in (None, "")}
        if "opt" in b and b["opt"] is None:    # TESTrun: the optimizer rejects it; only unopt compiles
            extra["optimizer_rejects"] = True
        for expr in b["aliases"]:
            if expr.startswith("_"):        # filtertest's own commands (_enumerate_bpf_image), not filters
                continue
            add(expr, b["DLT"], b["name"], "accept", **extra)
    savefiles = {}
    for b in tables["apply"]:
        name = b["savefile"]
        if name not in savefiles:
            raw = (root / "tests" / "filter" / name).read_bytes()
            pkts = read_packets(raw, filename=name)
            savefiles[name] = {"linktype": pkts[0].linktype if pkts else None,
                               "snaplen": savefile_snaplen(raw),
                               "packets": [[p.data.hex(), p.wirelen] for p in pkts]}
        extra = {k: b[k] for k in ("snaplen", "skip", "netmask") if b.get(k) not in (None, "")}
        add(b["expr"], savefiles[name]["linktype"], b["name"], "apply",
            savefile=name, results=b["results"], **extra)
    header = {
        "source": "libpcap testprogs/TESTrun",
        "repository": "https://github.com/the-tcpdump-group/libpcap",
        "commit": commit,
        "paths": ["testprogs/TESTrun (@filter_accept_blocks, @filter_apply_blocks)", "tests/filter/*.pcap*"],
        "license": "BSD (The Tcpdump Group); test vectors, facts only -- no code copied",
        "extracted_by": "tests/peers/extract_libpcap.py",
        "semantics": ("Each filter: a pcap-filter expression and its DLT (a name, or for apply "
                      "blocks the savefile's numeric link type). 'skip' is TESTrun's skip condition "
                      "(host probes such as skip_no_hosts() are kept as text); 'optimizer_rejects' marks "
                      "blocks whose expected optimized program is undef. Apply blocks give the "
                      "savefile and the expected bpf_filter() result per packet (libpcap HEAD)."),
        "reject_tests_not_kept": len(tables["reject"]),
        "accept_blocks": len(tables["accept"]),
        "apply_blocks": len(tables["apply"]),
    }
    out = {"header": header, "savefiles": savefiles, "filters": filters}
    (HERE / "libpcap_filters.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"{len(filters)} filters ({len(tables['accept'])} accept blocks, {len(tables['apply'])} apply blocks)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
