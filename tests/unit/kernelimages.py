"""Files that pass rig's kernel image check (rig.kernel_image) without being kernels:
the header's magic at its offset and nothing else, for tests that never boot them."""

from __future__ import annotations

from pathlib import Path

from rig.kernel_image import FORMATS


def fake_kernel_image(path: Path, arch: str = "x86_64") -> Path:
    fmt = FORMATS[arch]
    head = bytearray(0x400)
    head[fmt.offset:fmt.offset + len(fmt.magic)] = fmt.magic
    path.write_bytes(bytes(head) + b"not really a kernel")
    return path
