"""The opcode table against the kernel's list, and the binary instruction layout."""

import struct

import pytest
from hypothesis import given, strategies as st

from bpfio import DecodeError, Insn, Program
from bpfio.isa import KERNEL_CODES, OPCODES, SECCOMP_CODES, SKF_AD_OFF, ANCILLARY

# chk_code_allowed's codes[] (net/core/filter.c), re-derived from kernel-cbpf.md §2 and
# confirmed there by trying all 65,536 codes with SO_ATTACH_FILTER.
KERNEL_49 = {0x00, 0x01, 0x02, 0x03, 0x04, 0x0c, 0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3c, 0x44, 0x4c,
             0x54, 0x5c, 0x64, 0x6c, 0x74, 0x7c, 0x84, 0x94, 0x9c, 0xa4, 0xac, 0x05, 0x15, 0x1d,
             0x25, 0x2d, 0x35, 0x3d, 0x45, 0x4d, 0x06, 0x16, 0x07, 0x87, 0x20, 0x28, 0x30, 0x40,
             0x48, 0x50, 0x60, 0x61, 0x80, 0x81, 0xb1}
SECCOMP_DENIED = {0x94, 0x9c, 0x28, 0x30, 0x40, 0x48, 0x50, 0xb1}


def test_kernel_codes_are_exactly_chk_code_allowed():
    assert KERNEL_CODES == KERNEL_49


def test_seccomp_codes_are_the_41_of_seccomp_check_filter():
    assert SECCOMP_CODES == KERNEL_49 - SECCOMP_DENIED


def test_ret_x_is_assemblable_but_not_kernel_allowed():
    info = OPCODES[0x0e]
    assert info.mnemonic == "ret" and not info.kernel and not info.seccomp


def test_table_fields_agree_with_the_code_bits():
    for code, info in OPCODES.items():
        assert info.code == code
        assert info.cls == code & 0x07
        if info.cls in (0, 1) and info.mode:
            assert info.mode == code & 0xe0


def test_ancillary_offsets():
    assert [a.offset for a in ANCILLARY] == list(range(0, 64, 4))
    assert ANCILLARY[0].k == SKF_AD_OFF


@given(st.integers(0, 0xffff), st.integers(0, 0xff), st.integers(0, 0xff), st.integers(0, 0xffffffff))
def test_pack_unpack_round_trip(code, jt, jf, k):
    insn = Insn(code, jt, jf, k)
    raw = insn.pack()
    assert raw == struct.pack("<HBBI", code, jt, jf, k)
    assert Insn.unpack(raw) == insn


@given(st.lists(st.tuples(st.integers(0, 0xffff), st.integers(0, 0xff), st.integers(0, 0xff),
                          st.integers(0, 0xffffffff)), max_size=20))
def test_program_bytes_round_trip(rows):
    prog = Program(rows)
    assert Program.from_bytes(bytes(prog)) == prog
    assert len(bytes(prog)) == 8 * len(rows)


def test_from_bytes_rejects_partial_instruction():
    with pytest.raises(DecodeError) as exc:
        Program.from_bytes(b"\x06\x00\x00\x00\x00\x00\x00", filename="x.bin")
    assert str(exc.value) == "x.bin: byte 0: error: raw program is 7 bytes, not a multiple of 8"


def test_program_rejects_out_of_range_fields():
    with pytest.raises(ValueError):
        Program([(0x10000, 0, 0, 0)])
    with pytest.raises(ValueError):
        Program([(6, 0, 0, 1 << 32)])


def test_program_slices_are_programs():
    prog = Program([(6, 0, 0, 1), (6, 0, 0, 2)])
    assert isinstance(prog[:1], Program) and prog[1] == Insn(6, 0, 0, 2)
