"""Native execution: an x86-64 JIT for verified classic BPF programs.

Part of the ``exec`` stage.  :mod:`.x86` is the instruction emitter (one function
per form, checked against capstone and iced-x86 in the tests), :mod:`.operands` its
registers and memory operands, :mod:`.mem` the W^X executable memory,
:mod:`.layout` the multi-pass jump sizing, :mod:`.translate` cBPF -> x86-64 and
:mod:`.program` the :func:`~bpfio.exec.jit.program.jit` API.  See ``docs/jit.md``.
"""
