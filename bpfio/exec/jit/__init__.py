"""Native execution: an x86-64 JIT for verified classic BPF programs.

Part of the ``exec`` stage.  :mod:`.x86` is the instruction emitter (one function
per form, checked against capstone and iced-x86 in the tests), :mod:`.mem` the W^X
executable memory.  See ``docs/jit.md``.
"""
