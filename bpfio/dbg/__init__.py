"""Looking inside programs: the bpf_dbg-class debugger and control-flow graphs.

Stage 9.  It owns :mod:`.debugger` (the command set and its REPL), :mod:`.inputs`
(packets, syscalls, port events and machine bindings to debug against),
:mod:`.format` (how state is shown) and :mod:`.cfg` (DOT/SVG graphs).  It may import
every stage below it (core, text, check, exec, pio); nothing imports it but the
commands.
"""
