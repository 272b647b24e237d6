"""QEMU: the argv (pure) and the running machine (QMP, console, shutdown)."""
