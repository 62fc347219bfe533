"""The port-I/O engine: a 64K-entry port table, bindings, notifiers, configs and replay.

Stage 6.  It owns :mod:`.machine` (dispatch: program, then model, then unmapped),
:mod:`.program` (the fast path a binding runs), :mod:`.state`, :mod:`.notify`,
:mod:`.config`, :mod:`.events`, :mod:`.replay` and :mod:`.stats`.  Its ABI lives one floor
down in :mod:`bpfio.abi.pio`.  It may import the core, text, check and exec stages.
"""
