"""Tiny initramfs archives (cpio "newc") written in Python, for boots that need no disk:
the accelerator probe, and tests that only need a kernel to reach userspace."""

from __future__ import annotations

import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from rig import proc

_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    path: str  # inside the archive, no leading slash
    mode: int  # including the file type bits
    data: bytes = b""


def _header(ino: int, entry: Entry) -> bytes:
    name = entry.path.encode() + b"\0"
    fields = [ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, 0, 0, len(name), 0]
    head = b"070701" + b"".join(f"{value:08X}".encode() for value in fields) + name
    return head + b"\0" * (-len(head) % 4)


def cpio_newc(entries: list[Entry]) -> bytes:
    out = bytearray()
    for ino, entry in enumerate([*entries, Entry(_TRAILER, 0)], start=1):
        out += _header(ino, entry)
        out += entry.data + b"\0" * (-len(entry.data) % 4)
    return bytes(out)


def busybox_initramfs(init_script: str, path: Path) -> Path:
    """An initramfs with a static busybox and `init_script` (run by busybox sh) as /init."""
    busybox = Path(proc.require_tool("busybox", "busybox-static"))
    data = busybox.read_bytes()
    entries = [
        Entry("bin", stat.S_IFDIR | 0o755),
        Entry("bin/busybox", stat.S_IFREG | 0o755, data),
        Entry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
        Entry("dev", stat.S_IFDIR | 0o755),
        Entry("proc", stat.S_IFDIR | 0o755),
        Entry("sys", stat.S_IFDIR | 0o755),
        Entry("init", stat.S_IFREG | 0o755, ("#!/bin/busybox sh\n" + init_script).encode()),
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(cpio_newc(entries))
    shutil.move(tmp, path)
    return path
