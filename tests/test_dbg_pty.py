"""bpfio dbg driven through a pseudo-terminal, as a person at a keyboard would."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest

from test_dbg import FILTER, PACKETS, pcap_file
from devtools import bpfio_exe

pty = pytest.importorskip("pty")


class Terminal:
    """The installed ``bpfio dbg`` on a pty; ``expect`` reads until a text shows up."""

    def __init__(self, args, env):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([bpfio_exe(), "dbg", *args], stdin=slave, stdout=slave,
                                     stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.seen = b""

    def expect(self, text: str, timeout: float = 20.0) -> str:
        want = text.encode()
        end = time.monotonic() + timeout
        while want not in self.seen:
            left = end - time.monotonic()
            if left <= 0 or self.proc.poll() is not None and not self._ready(0):
                raise AssertionError(f"waited for {text!r}; the terminal shows {self.seen[-600:]!r}")
            if self._ready(min(left, 0.2)):
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # the child closed the pty
                    pass
        head, _, self.seen = self.seen.partition(want)
        return (head + want).decode(errors="replace").replace("\r\n", "\n")

    def _ready(self, timeout) -> bool:
        return bool(select.select([self.master], [], [], timeout)[0])

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> int:
        try:
            return self.proc.wait(20)
        finally:
            os.close(self.master)


@pytest.fixture
def term(tmp_path):
    (tmp_path / "f.asm").write_text(FILTER)
    (tmp_path / "t.pcap").write_bytes(pcap_file(PACKETS))
    env = dict(os.environ, TERM="xterm", HOME=str(tmp_path),
               BPFIO_DBG_HISTORY=str(tmp_path / "history"), PYTHONUNBUFFERED="1")
    t = Terminal([str(tmp_path / "f.asm"), "--pcap", str(tmp_path / "t.pcap")], env)
    yield t
    if t.proc.poll() is None:
        t.proc.kill()
        t.close()


@pytest.mark.skipif(sys.platform != "linux", reason="GNU readline on a Linux pty")
def test_interactive_session(term, tmp_path):
    banner = term.expect("\n> ")
    assert "bpfio dbg (socket profile)" in banner and "pcap: 3 packets" in banner
    term.send("disas\t")                     # Tab completes the command name
    term.expect("disassemble ")
    term.send("6\r")
    assert "l6:\tjeq #0x50, l7, l8" in term.expect("\n> ")
    term.send("sel\t2\r")
    assert "packet #2 of 3: 54 bytes" in term.expect("\n> ")
    term.send("break\t6\r")
    term.expect("breakpoint at: l6:")
    term.expect("\n> ")
    term.send("run\r")
    out = term.expect("(breakpoint)")
    assert "A:        [0x000050][80]" in out
    term.expect("\n> ")
    term.send("step\r")
    assert "A 0x50 == 0x50: true -> l7" in term.expect("\n> ")
    term.send("load p\t\t")                 # ambiguous: a second Tab lists both
    listing = term.expect("\n> load p")
    assert "pcap" in listing and "packet" in listing
    term.send("\x15frob\r")                 # ^U clears the line; errors do not end the session
    assert "error: unknown command 'frob'" in term.expect("\n> ")
    term.send("\x1b[A\r")                  # history: one line up is `step` (a failed line is not kept)
    assert "returns 0x40000" in term.expect("\n> ")
    term.send("quit\r")
    assert term.close() == 0
    history = (tmp_path / "history").read_text().splitlines()
    assert history[-3:] == ["run", "step", "quit"] and "run" in history and "frob" not in history


def test_end_of_input_leaves(term):
    term.expect("\n> ")
    term.send("\x04")                        # ^D at an empty prompt
    assert term.close() == 0
