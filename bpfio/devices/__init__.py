"""Userspace reference device models, one module per device (QEMU-like, whole).

Stage 7.  Each model is what a binding falls back to on ``PIO_EXIT``; :mod:`.base`
assembles the device's fast-path program from ``asm/``.  It may import the core and
the text stage; the engine finds models by name, so nothing below imports them.
"""
