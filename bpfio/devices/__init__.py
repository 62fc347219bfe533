"""Userspace reference device models, one module per device."""
