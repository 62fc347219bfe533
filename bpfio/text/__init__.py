"""Program text and files: the bpf_asm-exact assembler, the disassembler, the formats.

Stage 1, right above the core.  It owns turning text into :class:`~bpfio.insn.Insn`
lists and back: :mod:`.lexer` (flex-equivalent scanner), :mod:`.parser` (ply grammar,
tables shipped in :mod:`._parsetab`), :mod:`.preprocess` (``#include``/``#define``),
:mod:`.assembler` (labels, ranges), :mod:`.disasm` and :mod:`.formats` (every output
format, detected on input).  It may import only the core (:mod:`bpfio.errors`,
:mod:`bpfio.isa`, :mod:`bpfio.insn`, :mod:`bpfio.resources`, :mod:`bpfio.abi`).
"""
