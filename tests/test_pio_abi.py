"""The PIO ABI constants: one source (asm/pio.inc), the values the contract fixes."""

from __future__ import annotations

import pytest

from bpfio.abi import pio as abi
from bpfio.resources import asm_dir

# docs/pio-abi.md, "The event context" and "Verdicts" tables: the contract itself.
CONTEXT = {"PIO_PORT": 0, "PIO_SIZE": 4, "PIO_DIR": 8, "PIO_DATA": 12, "PIO_OFFSET": 16,
           "PIO_VCPU": 20, "PIO_TICKS": 24, "PIO_TICKS_HI": 28, "PIO_NS": 32, "PIO_NS_HI": 36,
           "PIO_MEM": 40}
OTHER = {"PIO_IN": 0, "PIO_OUT": 1, "PIO_EXIT": 0, "PIO_DONE": 0x10000, "PIO_NOTIFY": 0x20000,
         "PIO_MEM_MIN": 1, "PIO_MEM_MAX": 1024, "PIO_MEM_DEFAULT": 16, "PIO_ABI_VERSION": 1}


@pytest.mark.parametrize("name,value", sorted({**CONTEXT, **OTHER}.items()))
def test_abi_table(name, value):
    assert abi.CONSTANTS[name] == value
    assert getattr(abi, name) == value


def test_python_names_come_from_the_include_file():
    text = (asm_dir() / "pio.inc").read_text()
    defined = [line.split()[1] for line in text.splitlines() if line.startswith("#define")]
    assert sorted(defined) == sorted(abi.CONSTANTS)
    for i in range(16):
        assert abi.CONSTANTS[f"PIO_NOTIFY_{i}"] == abi.PIO_NOTIFY | i


def test_context_fields_are_consecutive_words():
    offsets = [abi.CONSTANTS[f] for f in abi.FIELDS]
    assert offsets == list(range(0, 40, 4)) and abi.PIO_HDR_LEN == 40


def test_context_bytes_layout_big_endian():
    ev = abi.PioEvent(port=0x608, size=4, direction=abi.PIO_OUT, data=0xdeadbeef, offset=2,
                      vcpu=3, ticks=(7 << 32) | 9, ns=(5 << 32) | 6)
    ctx = abi.context_bytes(ev, [0x01020304, 0xffffffff])
    assert len(ctx) == abi.PIO_HDR_LEN + 8

    def word(off):
        return int.from_bytes(ctx[off:off + 4], "big")

    assert [word(abi.CONSTANTS[f]) for f in abi.FIELDS] == [0x608, 4, 1, 0xdeadbeef, 2, 3,
                                                            9, 7, 6, 5]
    assert ctx[abi.PIO_MEM:abi.PIO_MEM + 4] == b"\x01\x02\x03\x04"


@pytest.mark.parametrize("ns,hz,ticks", [
    (0, 3579545, 0), (10 ** 9, 3579545, 3579545), (999_999_999, 1193182, 1193181),
    (12345, None, 0), ((1 << 63), 1_000_000_000, 1 << 63)])
def test_ticks_at_is_exact_floor(ns, hz, ticks):
    assert abi.ticks_at(ns, hz) == ticks


@pytest.mark.parametrize("verdict,decoded", [
    (0, ("EXIT", 0)), (0x1234, ("EXIT", 0x1234)), (0x10000, ("DONE", 0)),
    (0x20005, ("NOTIFY", 5)), (0x30000, ("BAD", 0)), (0xffffffff, ("BAD", 0xffff))])
def test_decode_verdict(verdict, decoded):
    assert abi.decode_verdict(verdict) == decoded
