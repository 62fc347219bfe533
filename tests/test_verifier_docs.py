"""Every rule example in docs/verifier.md, run through ``bpfio check``.

A fenced block whose info string carries ``rule=`` must be rejected under
that rule (at ``pc=`` when given); one with ``lint=`` must be accepted with
that warning.  This keeps the documentation true.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "verifier.md"
FENCE = re.compile(r"^```(\w+) ([^\n]*(?:rule|lint)=[^\n]*)\n(.*?)^```", re.M | re.S)


def examples():
    out = []
    for m in FENCE.finditer(DOC.read_text()):
        opts = dict(item.split("=", 1) for item in m.group(2).split())
        out.append(pytest.param(opts, m.group(3), id=opts.get("rule") or opts["lint"]))
    return out


EXAMPLES = examples()


def test_every_rule_has_an_example():
    ids = {p.id for p in EXAMPLES}
    documented = set(re.findall(r"^### `([a-z0-9-]+)`", DOC.read_text(), re.M))
    assert documented - {"too-long", "convert-jump-range"} <= ids
    assert len(EXAMPLES) >= 24


@pytest.mark.parametrize("opts,source", EXAMPLES)
def test_doc_example(runner, cli, opts, source):
    args = ["check", "--json", "--profile", opts["profile"], "-"]
    for key in ("mem_words", "notifiers"):
        if key in opts:
            args += [f"--{key.replace('_', '-')}", opts[key]]
    result = runner.invoke(cli, args, input=source)
    report = json.loads(result.stdout)
    if "rule" in opts:
        assert result.exit_code == 1, result.stdout
        assert report["accepted"] is False
        assert report["error"]["rule"] == opts["rule"]
        assert report["error"]["errno_name"] == "EINVAL"
        if "pc" in opts:
            assert report["error"]["pc"] == int(opts["pc"])
        # The plain CLI explains it in one line on stderr.
        plain = runner.invoke(cli, [a for a in args if a != "--json"], input=source)
        assert plain.exit_code == 1
        lines = plain.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("<stdin>: error: ")
        assert lines[0].endswith(f"[{opts['rule']}, EINVAL]")
    else:
        assert result.exit_code == 0, result.stdout
        assert opts["lint"] in {w["rule"] for w in report["warnings"]}
